from __future__ import annotations

import pytest

from tests.faults.harness import FaultConfig
from tests.faults.settings import fault_settings


@pytest.fixture
def faults(request: pytest.FixtureRequest) -> FaultConfig:
    return fault_settings(request.config)

