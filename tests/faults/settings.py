"""The fault suite's seed and length, from the command line, the environment, or a fresh random seed."""

from __future__ import annotations

import os
import random

import pytest

from tests.faults.harness import FaultConfig

SHORT_ITERATIONS = 1  # crash points per scenario in the normal suite; `make faults` runs many more
_KEY = pytest.StashKey[FaultConfig]()


def fault_settings(config: pytest.Config) -> FaultConfig:
    if _KEY not in config.stash:
        seed = config.getoption("--fault-seed", default=None)
        if seed is None:
            seed = int(os.environ["GK_FAULT_SEED"]) if os.environ.get("GK_FAULT_SEED") else random.randrange(10**6)
        iterations = config.getoption("--fault-iterations", default=None)
        if iterations is None:
            iterations = int(os.environ.get("GK_FAULT_ITERATIONS") or SHORT_ITERATIONS)
        config.stash[_KEY] = FaultConfig(seed=seed, iterations=iterations)
    return config.stash[_KEY]
