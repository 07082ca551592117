from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from gamekeeper.store.sqlite import SqliteState
from tests.faults.harness import use_fault_images
from tests.faults.settings import FaultConfig, fault_settings
from tests.fleet import Fleet


@pytest.fixture
def faults(request: pytest.FixtureRequest) -> FaultConfig:
    return fault_settings(request.config)


@pytest.fixture
def state(fleet: Fleet) -> Iterator[SqliteState]:
    use_fault_images(fleet)
    # The database is made before the controller starts, as it was when a controller opening a brand-new state.db
    # beside another process once died with "database is locked" on the WAL switch (now retried: store/sqlite.py).
    s = SqliteState(fleet.state_dir)
    fleet.start()
    try:
        yield s
    finally:
        s.close()


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    from tests.faults import harness

    if harness.CRASHERS:
        settings = fault_settings(config)
        failed = [r.nodeid for r in terminalreporter.stats.get("failed", []) if "tests/faults/" in r.nodeid]
        terminalreporter.write_line(f"fault suite (seed {settings.seed}, {settings.iterations} rounds per "
                                    f"scenario): {harness.summary()}; {len(failed)} failed tests")
