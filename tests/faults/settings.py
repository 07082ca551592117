"""The fault suite's seed and length, from the command line, the environment, or a fresh random seed."""

from __future__ import annotations

import os
import random
from dataclasses import dataclass

import pytest


@dataclass
class FaultConfig:
    seed: int
    iterations: int  # rounds per scenario (each with one to three crash points)

    def rng(self, scenario: str) -> random.Random:
        # One stream per scenario: running one test alone with the same seed replays exactly its crash points.
        return random.Random(f"{self.seed}:{scenario}")

    def tag(self, scenario: str, iteration: int | None = None) -> str:
        at = f" iteration {iteration}" if iteration is not None else ""
        return f"[{scenario}{at}; reproduce with --fault-seed={self.seed} --fault-iterations={self.iterations}]"


SHORT_ITERATIONS = 1  # rounds per scenario in the normal suite; `make faults` runs many more
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
