"""Table cases for the pure recovery decision (tests/data/recovery/*.yaml): inputs -> decision.

Times are written `T+N` (N seconds after a fixed base) so that a case reads as a timeline.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from gamekeeper.api.models import RecoveryPolicy, ServiceQuality
from gamekeeper.api.times import format_time
from gamekeeper.core.recovery import Budget, RecoveryInput, decide, step_finished, tally

DATA = Path(__file__).parent / "data" / "recovery"
BASE = datetime(2026, 1, 1, tzinfo=UTC)
_T = re.compile(r"^T\+(\d+)$")


def _times(value: Any) -> Any:
    if isinstance(value, str) and (m := _T.match(value)):
        return format_time(BASE + timedelta(seconds=int(m.group(1))))
    if isinstance(value, dict):
        return {k: _times(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_times(v) for v in value]
    return value


def _cases(kind: str) -> list[Any]:
    out = []
    for path in sorted(DATA.glob("*.yaml")):
        doc = yaml.safe_load(path.read_text())
        for case in doc.get(kind) or []:
            out.append(pytest.param(doc.get("qualities"), case, id=f"{path.stem}:{case['name']}"))
    return out


def _subset(expected: Any, actual: Any, where: str) -> None:
    if isinstance(expected, dict):
        assert isinstance(actual, dict), f"{where}: expected a mapping, got {actual!r}"
        for key, value in expected.items():
            if value is None:
                assert key not in actual, f"{where}.{key}: expected absent, got {actual.get(key)!r}"
            else:
                assert key in actual, f"{where}.{key}: missing in {actual!r}"
                _subset(value, actual[key], f"{where}.{key}")
    elif isinstance(expected, list):
        assert isinstance(actual, list) and len(actual) == len(expected), f"{where}: {actual!r} != {expected!r}"
        for i, (e, a) in enumerate(zip(expected, actual, strict=True)):
            _subset(e, a, f"{where}[{i}]")
    else:
        assert actual == expected, f"{where}: expected {expected!r}, got {actual!r}"


@pytest.mark.parametrize(("qualities", "case"), _cases("cases"))
def test_decide(qualities: list[Any], case: dict[str, Any]) -> None:
    case = _times(case)
    sqs = [ServiceQuality.model_validate(q) for q in case.get("qualities", qualities)]
    budget = case.get("budget") or {}
    decision = decide(RecoveryInput(
        qualities=sqs,
        conditions=case.get("conditions") or [],
        record=case.get("record"),
        policy=RecoveryPolicy.model_validate(case["policy"]) if case.get("policy") else None,
        budget=Budget(total=budget.get("total", 1), in_flight=budget.get("inFlight", 0),
                      started_last_hour=budget.get("startedLastHour", 0),
                      oldest_in_hour=datetime.fromisoformat(budget["oldestInHour"].replace("Z", "+00:00"))
                      if budget.get("oldestInHour") else None,
                      unhealthy=budget.get("unhealthy", 0)),
        ops_state=case.get("opsState"),
        now=datetime.fromisoformat(case["now"].replace("Z", "+00:00")),
        acting_here=case.get("actingHere", False),
    ))
    expect = case["expect"]
    assert decision.action == expect["action"], decision.reason
    if "record" in expect:
        if expect["record"] is None:
            assert decision.record is None, f"expected no write, got {decision.record!r}"
        else:
            assert decision.record is not None, "expected a write"
            _subset(expect["record"], decision.record, "record")
    if "wakeAt" in expect:
        got = None if decision.wake_at is None else format_time(decision.wake_at)
        assert got == expect["wakeAt"]
    assert [e.reason for e in decision.events] == expect.get("events", [])
    if "eventTypes" in expect:
        assert [e.type for e in decision.events] == expect["eventTypes"]
    if "blockedBy" in expect:
        assert decision.blocked_by == expect["blockedBy"]
    if "opsState" in expect:
        assert decision.ops_state == expect["opsState"]
    if "step" in expect:
        assert decision.step is not None and decision.step.kind == expect["step"]
    if "container" in expect:
        assert decision.container == expect["container"]


@pytest.mark.parametrize(("qualities", "case"), _cases("tally"))
def test_tally(qualities: list[Any], case: dict[str, Any]) -> None:
    case = _times(case)
    now = datetime.fromisoformat(case["now"].replace("Z", "+00:00"))
    budget = tally(case["records"], case.get("unhealthy", 0), len(case["records"]), now, case.get("self"))
    expect = case["expect"]
    assert budget.in_flight == expect["inFlight"]
    assert budget.started_last_hour == expect["startedLastHour"]
    if "oldestInHour" in expect:
        assert (None if budget.oldest_in_hour is None else format_time(budget.oldest_in_hour)) == expect["oldestInHour"]


@pytest.mark.parametrize(("qualities", "case"), _cases("finished"))
def test_step_finished(qualities: list[Any], case: dict[str, Any]) -> None:
    case = _times(case)
    now = datetime.fromisoformat(case["now"].replace("Z", "+00:00"))
    record = step_finished(case["record"], case["ok"], case.get("output", ""), now, case.get("exitCode"))
    _subset(case["expect"], record, "record")
