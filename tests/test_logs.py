"""Structured logs: one JSON line per service-quality decision."""

from __future__ import annotations

import json

import pytest

from tests.fleet import Fleet, ops, seed_yaml, wait_for

pytestmark = pytest.mark.slow


def test_json_log_has_one_line_per_decision(fleet: Fleet) -> None:
    fleet.start("--log-format", "json")
    doc = seed_yaml("minecraft.yaml")
    doc["spec"]["replicas"] = 1
    fleet.apply_yaml(doc)
    fleet.wait_gs("WaitToBeDeleted", lambda gs: ops(gs.get("minecraft-0", {})) == "WaitToBeDeleted")

    def decisions() -> list[dict[str, object]]:
        lines = [json.loads(line) for line in fleet.log().splitlines() if line.startswith("{")]
        return [r for r in lines if r["msg"] == "service quality decision"]

    wait_for(lambda: bool(decisions()), "a decision line", 20)
    record = decisions()[0]
    assert {k: record[k] for k in ("gss", "gs", "quality", "status", "result", "action")} == {
        "gss": "minecraft", "gs": "minecraft-0", "quality": "idle", "status": "True", "result": "idle",
        "action": "opsState=WaitToBeDeleted",
    }
    assert record["level"] == "info" and record["logger"] == "gamekeeper.gameserver"
