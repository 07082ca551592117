"""The embedded autoscaler against a real SQLite store: decisions, writes, events, status, safety."""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from gamekeeper.api.models import GS_OPS_STATE_KEY, GS_STATE_KEY, OWNER_GSS_KEY
from gamekeeper.control.autoscale import Autoscaler
from gamekeeper.store.sqlite import SqliteState, SqliteStore

NS = "default"


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def scaled_object(metadata: dict[str, str] | None = None, **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject",
        "metadata": {"name": "minecraft", "namespace": NS},
        "spec": {
            "scaleTargetRef": {"apiVersion": "game.kruise.io/v1alpha1", "kind": "GameServerSet", "name": "minecraft"},
            "pollingInterval": 1, "minReplicaCount": 1,
            "advanced": {"horizontalPodAutoscalerConfig": {"behavior": {"scaleDown": {
                "stabilizationWindowSeconds": 0}}}},
            "triggers": [{"type": "external", "metricType": "AverageValue", "metadata": {
                "scalerAddress": "kruise-game-external-scaler.kruise-game-system:6000", **(metadata or {})}}],
        },
    }
    body["spec"].update(spec)
    return body


@pytest.fixture
def state(tmp_path: Path) -> SqliteState:
    return SqliteState(tmp_path)


def fleet(state: SqliteState, ops: list[str], status: bool = True) -> None:
    """A set and its pods as the controllers would leave them: pod labels carry opsState and state."""
    gss = {"apiVersion": "game.kruise.io/v1alpha1", "kind": "GameServerSet",
           "metadata": {"name": "minecraft", "namespace": NS}, "spec": {"replicas": len(ops)}}
    if state.get("GameServerSet", NS, "minecraft") is None:
        state.create(gss)
    state.patch("GameServerSet", NS, "minecraft", {"spec": {"replicas": len(ops)}})
    for pod in state.list("Pod", NS):
        state.delete("Pod", NS, pod["metadata"]["name"])
    for i, op in enumerate(ops):
        state.create({"apiVersion": "v1", "kind": "Pod", "metadata": {
            "name": f"minecraft-{i}", "namespace": NS,
            "labels": {OWNER_GSS_KEY: "minecraft", GS_OPS_STATE_KEY: op, GS_STATE_KEY: "Ready"}}, "spec": {}})
    if status:
        state.patch("GameServerSet", NS, "minecraft", {"status": {
            "currentReplicas": len(ops), "waitToBeDeletedReplicas": ops.count("WaitToBeDeleted")}},
            subresource="status")


def replicas(state: SqliteState) -> int:
    return int(state.get("GameServerSet", NS, "minecraft")["spec"]["replicas"])


async def poll(scaler: Autoscaler, state: SqliteState) -> Any:
    so = state.get("ScaledObject", NS, "minecraft")
    assert so is not None
    return await scaler.poll(so)


def test_removes_wait_to_be_deleted_and_records_event_and_status(state: SqliteState,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    fleet(state, ["WaitToBeDeleted", "None", "WaitToBeDeleted"])
    state.create(scaled_object())
    scaler = Autoscaler(SqliteStore(state), Clock())
    with caplog.at_level(logging.INFO, logger="gamekeeper.autoscale"):
        outcome = asyncio.run(poll(scaler, state))
    assert outcome.scaled and replicas(state) == 1
    events = [e for e in state.list_events(NS, "ScaledObject", "minecraft") if e.reason == "Scale"]
    assert len(events) == 1
    assert "from 3 to 1" in events[0].message and "2 WaitToBeDeleted" in events[0].message
    status = state.get("ScaledObject", NS, "minecraft")["status"]
    assert status["desiredReplicas"] == 1 and status["lastScaleTime"] == "2026-01-01T00:00:00Z"
    record = next(r for r in caplog.records if r.getMessage() == "autoscale decision")
    assert (record.total, record.none, record.waitToBeDeleted, record.desired) == (3, 1, 2, 1)  # type: ignore[attr-defined]


def test_nothing_written_when_nothing_changes(state: SqliteState) -> None:
    fleet(state, ["None", "None"])
    state.create(scaled_object())
    scaler = Autoscaler(SqliteStore(state), Clock())
    asyncio.run(poll(scaler, state))
    rv = state.current_rv()
    outcome = asyncio.run(poll(scaler, state))
    assert not outcome.scaled and state.current_rv() == rv


def test_min_available_keeps_free_servers(state: SqliteState) -> None:
    fleet(state, ["Allocated", "None"])
    state.create(scaled_object({"minAvailable": "2", "maxAvailable": "3"}))
    scaler = Autoscaler(SqliteStore(state), Clock())
    assert asyncio.run(poll(scaler, state)).replicas == 3
    fleet(state, ["None", "None", "None", "None", "None"])
    fresh = Autoscaler(SqliteStore(state), Clock())  # one that did not set the replicas itself
    assert asyncio.run(poll(fresh, state)).replicas == 3  # capped by maxAvailable


@pytest.mark.parametrize("setup", ["missing", "no-status", "bad-metadata"])
def test_a_set_it_cannot_read_is_never_scaled(state: SqliteState, setup: str) -> None:
    if setup != "missing":
        fleet(state, ["WaitToBeDeleted", "WaitToBeDeleted"], status=setup != "no-status")
    meta = {"minAvailable": "abc"} if setup == "bad-metadata" else {}
    state.create(scaled_object(meta, minReplicaCount=0))
    scaler = Autoscaler(SqliteStore(state), Clock())
    outcome = asyncio.run(poll(scaler, state))
    assert not outcome.scaled and outcome.branch == "hold"
    if setup != "missing":
        assert replicas(state) == 2
    ready = state.get("ScaledObject", NS, "minecraft")["status"]["conditions"][0]
    assert ready["status"] == "False" and "not scaling" in ready["message"]


def test_manual_scale_is_overridden_and_said(state: SqliteState) -> None:
    fleet(state, ["None", "WaitToBeDeleted"])
    state.create(scaled_object())
    scaler = Autoscaler(SqliteStore(state), Clock())
    asyncio.run(poll(scaler, state))
    assert replicas(state) == 1
    fleet(state, ["None"])
    state.patch("GameServerSet", NS, "minecraft", {"spec": {"replicas": 4}})  # what `gk scale` writes
    outcome = asyncio.run(poll(scaler, state))
    assert outcome.scaled and replicas(state) == 1
    assert "outside the autoscaler" in outcome.why
    messages = [e.message for e in state.list_events(NS, "ScaledObject", "minecraft") if e.reason == "Scale"]
    assert any("from 4 to 1" in m and "outside the autoscaler" in m for m in messages)


def test_scale_down_stabilization_window(state: SqliteState) -> None:
    fleet(state, ["None", "None", "None"])
    window = {"horizontalPodAutoscalerConfig": {"behavior": {"scaleDown": {"stabilizationWindowSeconds": 30}}}}
    state.create(scaled_object(advanced=window))
    clock = Clock()
    scaler = Autoscaler(SqliteStore(state), clock)
    asyncio.run(poll(scaler, state))
    fleet(state, ["None", "WaitToBeDeleted", "WaitToBeDeleted"])
    clock.advance(10)
    assert not asyncio.run(poll(scaler, state)).scaled
    clock.advance(25)
    assert asyncio.run(poll(scaler, state)).replicas == 1


def test_run_loop_polls_and_scales(state: SqliteState) -> None:
    fleet(state, ["None", "WaitToBeDeleted", "WaitToBeDeleted"])
    state.create(scaled_object())
    scaler = Autoscaler(SqliteStore(state), lambda: datetime.now(UTC))

    async def main() -> None:
        task = asyncio.create_task(scaler.run())
        try:
            for _ in range(100):
                if replicas(state) == 1:
                    return
                await asyncio.sleep(0.05)
        finally:
            task.cancel()

    asyncio.run(main())
    assert replicas(state) == 1
    assert json.dumps(scaler.last[(NS, "minecraft")].counts.as_dict())  # type: ignore[union-attr]


def test_wait_to_be_deleted_removal_takes_turns_with_min_available(state: SqliteState) -> None:
    """OKG #302: new servers are taken at once, so None stays below minAvailable; idle ones are still removed."""
    fleet(state, ["Allocated", "WaitToBeDeleted", "WaitToBeDeleted"])
    state.create(scaled_object({"minAvailable": "1"}))
    scaler = Autoscaler(SqliteStore(state), Clock())
    first = asyncio.run(poll(scaler, state))
    assert (first.branch, first.replicas) == ("min", 4)
    fleet(state, ["Allocated", "WaitToBeDeleted", "WaitToBeDeleted", "Allocated"])  # the new one was taken
    second = asyncio.run(poll(scaler, state))
    assert (second.branch, second.replicas) == ("waitToBeDeleted", 2)


def test_metrics_read_the_last_decisions(state: SqliteState) -> None:
    from prometheus_client import CollectorRegistry, generate_latest

    from gamekeeper.observe.autoscale_metrics import AutoscaleCollector

    fleet(state, ["None", "WaitToBeDeleted", "WaitToBeDeleted"])
    state.create(scaled_object())
    scaler = Autoscaler(SqliteStore(state), Clock())
    asyncio.run(poll(scaler, state))
    registry = CollectorRegistry()
    registry.register(AutoscaleCollector(lambda: scaler))
    text = generate_latest(registry).decode()
    labels = 'namespace="default",scaledObject="minecraft"'
    assert f'gamekeeper_autoscaler_desired_replicas{{gssName="minecraft",{labels}}} 1.0' in text
    assert f'gamekeeper_autoscaler_scalings_total{{direction="down",{labels}}} 1.0' in text


def test_a_new_spec_is_polled_at_once_but_a_status_write_is_not(state: SqliteState) -> None:
    fleet(state, ["None", "None", "None"])
    state.create(scaled_object(pollingInterval=300))
    store = SqliteStore(state)
    scaler = Autoscaler(store, lambda: datetime.now(UTC))
    polls: list[int] = []
    original = scaler.poll

    async def counting(so: dict[str, Any]) -> Any:
        polls.append(1)
        return await original(so)

    scaler.poll = counting  # type: ignore[method-assign]

    async def main() -> None:
        task = asyncio.create_task(scaler.run())
        try:
            for _ in range(40):
                await asyncio.sleep(0.05)
            assert len(polls) == 1  # its own status write woke it, but did not poll again
            state.patch("ScaledObject", NS, "minecraft", {"spec": {"maxReplicaCount": 2}})
            for _ in range(100):
                if replicas(state) == 2:
                    break
                await asyncio.sleep(0.05)
        finally:
            task.cancel()

    asyncio.run(main())
    assert replicas(state) == 2 and len(polls) == 2  # current 3 above maxReplicaCount 2


def test_a_restart_inside_the_stabilization_window_does_not_scale_down_early(state: SqliteState) -> None:
    fleet(state, ["None", "None", "None"])
    window = {"horizontalPodAutoscalerConfig": {"behavior": {"scaleDown": {"stabilizationWindowSeconds": 30}}}}
    state.create(scaled_object(advanced=window))
    clock = Clock()
    assert not asyncio.run(poll(Autoscaler(SqliteStore(state), clock), state)).scaled  # recommends 3 at t=0
    fleet(state, ["None", "WaitToBeDeleted", "WaitToBeDeleted"])
    clock.advance(10)
    restarted = Autoscaler(SqliteStore(state), clock)  # a new process: only the store carries the window
    outcome = asyncio.run(poll(restarted, state))
    assert not outcome.scaled and "stabilization window" in outcome.why
    # When the first process stopped is not recorded, so its last recommendation counts until the restart (t=10):
    # the window ends 30 s after that, never before the one an uninterrupted controller would have kept.
    clock.advance(25)
    assert not asyncio.run(poll(restarted, state)).scaled
    clock.advance(6)
    assert asyncio.run(poll(restarted, state)).replicas == 1


def test_the_window_is_written_only_when_it_changes(state: SqliteState) -> None:
    fleet(state, ["None", "None", "None"])
    window = {"horizontalPodAutoscalerConfig": {"behavior": {"scaleDown": {"stabilizationWindowSeconds": 30}}}}
    state.create(scaled_object(advanced=window))
    clock = Clock()
    scaler = Autoscaler(SqliteStore(state), clock)
    asyncio.run(poll(scaler, state))
    rv = state.current_rv()
    for _ in range(3):  # the same recommendation again: nothing a decision reads has changed
        clock.advance(1)
        asyncio.run(poll(scaler, state))
    assert state.current_rv() == rv
    fleet(state, ["None", "WaitToBeDeleted", "WaitToBeDeleted"])
    clock.advance(1)
    asyncio.run(poll(scaler, state))
    own = state.get("ScaledObject", NS, "minecraft")["status"]["gamekeeper"]
    assert own["hpa"]["recommendations"] == [[clock.now.timestamp() - 1, 3]] and own["hpa"]["recommending"] == 1


def test_a_restart_keeps_the_last_branch(state: SqliteState) -> None:
    """The WaitToBeDeleted turn of OKG #302 (the test above) survives a restart between the two polls."""
    fleet(state, ["Allocated", "WaitToBeDeleted", "WaitToBeDeleted"])
    state.create(scaled_object({"minAvailable": "1"}))
    first = asyncio.run(poll(Autoscaler(SqliteStore(state), Clock()), state))
    assert (first.branch, first.replicas) == ("min", 4)
    assert state.get("ScaledObject", NS, "minecraft")["status"]["gamekeeper"]["lastBranch"] == "min"
    fleet(state, ["Allocated", "WaitToBeDeleted", "WaitToBeDeleted", "Allocated"])
    second = asyncio.run(poll(Autoscaler(SqliteStore(state), Clock()), state))
    assert (second.branch, second.replicas) == ("waitToBeDeleted", 2)


def test_a_restart_keeps_the_cooldown(state: SqliteState) -> None:
    fleet(state, ["None", "None"])
    state.create(scaled_object(minReplicaCount=0, cooldownPeriod=30))
    clock = Clock()
    scaler = Autoscaler(SqliteStore(state), clock)
    asyncio.run(poll(scaler, state))  # active at t=0
    fleet(state, ["WaitToBeDeleted", "WaitToBeDeleted"])
    clock.advance(5)
    asyncio.run(poll(scaler, state))  # inactive from here on: when it was last active is written down
    status = state.get("ScaledObject", NS, "minecraft")["status"]
    assert status["lastActiveTime"] == "2026-01-01T00:00:00Z"
    clock.advance(20)
    restarted = Autoscaler(SqliteStore(state), clock)
    assert asyncio.run(poll(restarted, state)).replicas != 0  # 25 s inactive: the cooldown still runs
    clock.advance(6)
    assert asyncio.run(poll(restarted, state)).replicas == 0
