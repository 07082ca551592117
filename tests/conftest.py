from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fleet import Fleet


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Fleet]:
    f = Fleet(tmp_path)
    try:
        yield f
    finally:
        f.stop()


def pytest_addoption(parser: pytest.Parser) -> None:
    # The fault suite's (tests/faults) seed and length; here because options must be known before collection.
    group = parser.getgroup("faults", "fault injection (tests/faults)")
    group.addoption("--fault-seed", type=int, default=None, help="seed of the random crash points (default: "
                    "$GK_FAULT_SEED, else random; printed in the header and in every failure)")
    group.addoption("--fault-iterations", type=int, default=None, help="rounds per scenario (default: "
                    "$GK_FAULT_ITERATIONS, else the short run's)")


def pytest_report_header(config: pytest.Config) -> str:
    from tests.faults.settings import fault_settings

    settings = fault_settings(config)
    return f"fault seed: {settings.seed} (--fault-seed), rounds per scenario: {settings.iterations}"
