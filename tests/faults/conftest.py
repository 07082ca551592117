from __future__ import annotations

from typing import Any

import pytest

from tests.faults.settings import FaultConfig, fault_settings


@pytest.fixture
def faults(request: pytest.FixtureRequest) -> FaultConfig:
    return fault_settings(request.config)



def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    from tests.faults import harness

    if harness.CRASHERS:
        settings = fault_settings(config)
        failed = [r.nodeid for r in terminalreporter.stats.get("failed", []) if "tests/faults/" in r.nodeid]
        terminalreporter.write_line(f"fault suite (seed {settings.seed}, {settings.iterations} rounds per "
                                    f"scenario): {harness.summary()}; {len(failed)} failed tests")
