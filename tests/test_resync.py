"""Issue 14 item 2: the periodic resync re-queues only what could have changed, and no decision waits for it.

Real SQLite store, real controllers (the manager's), no kubelet: the test writes the pods' status itself, as the
kubelet would. Counted, not timed: reconciles (the work queues' `processed`), store writes, resyncs.
"""

from __future__ import annotations

import asyncio
import builtins
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from gamekeeper.api.loading import load_documents
from gamekeeper.api.models import GS_OPS_STATE_KEY
from gamekeeper.api.times import format_time
from gamekeeper.control.manager import ControllerManager
from gamekeeper.ports.store import Change
from gamekeeper.runtime.images import ImageMap
from gamekeeper.runtime.local import LocalRuntime
from gamekeeper.store.sqlite import SqliteState, SqliteStore

NS = "default"


def now() -> datetime:
    return datetime.now(UTC)


def set_yaml(name: str, replicas: int, min_ready_seconds: int = 0) -> str:
    rolling = f"updateStrategy: {{rollingUpdate: {{minReadySeconds: {min_ready_seconds}}}}}" if min_ready_seconds \
        else ""
    return f"""
apiVersion: game.kruise.io/v1alpha1
kind: GameServerSet
metadata: {{name: {name}, namespace: {NS}}}
spec:
  replicas: {replicas}
  {rolling}
  gameServerTemplate:
    spec:
      containers: [{{name: main, image: "bench/cheap:1"}}]
"""


class MutableFeed(SqliteStore):
    """A real SQLite store whose change feed can be made to drop changes (as a feed that lost some would),
    and that counts what it is asked to list."""

    def __init__(self, state: SqliteState, resync_seconds: float) -> None:
        super().__init__(state, resync_seconds=resync_seconds)
        self.muted = False
        self.lost = False  # say RESYNC once, as SqliteStore does when the changes were pruned before read
        self.full_lists: list[str] = []

    async def list(self, kind: str, namespace: str | None = None, labels: Any = None) -> builtins.list[Any]:
        if namespace is None and labels is None:
            self.full_lists.append(kind)
        return await super().list(kind, namespace, labels)

    def watch(self, kinds: set[str] | None = None) -> AsyncIterator[Change]:
        return self._filtered(super().watch(kinds))

    async def _filtered(self, changes: AsyncIterator[Change]) -> AsyncIterator[Change]:
        async for change in changes:
            if self.lost and not self.muted:
                self.lost = False
                yield Change(change.resource_version, "*", "", "", "RESYNC")
            if not self.muted or change.type == "TICK":
                yield change


class Running:
    def __init__(self, tmp_path: Path, resync_seconds: float) -> None:
        self.state = SqliteState(tmp_path / "state")
        self.store = MutableFeed(self.state, resync_seconds=min(resync_seconds, 0.1))
        self.manager = ControllerManager(self.store, LocalRuntime(tmp_path, ImageMap(None, {}), spawner=False), now,
                                         resync_seconds=resync_seconds, autoscale=False)
        self.resyncs: list[bool] = []
        self.queued: list[int] = []
        original = self.manager.resync

        async def counted(full: bool = False) -> int:
            self.resyncs.append(full)
            n = await original(full)
            self.queued.append(n)
            return n

        self.manager.resync = counted  # type: ignore[method-assign]
        self.task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Running:
        self.task = asyncio.create_task(self.manager.run())
        await asyncio.wait_for(self.manager.ready.wait(), 10)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.task is not None
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)
        self.state.close()

    async def apply(self, text: str) -> None:
        for obj in load_documents(text, "test"):
            await self.store.create(obj.body)

    def reconciles(self) -> int:
        return sum(q.processed for q in self.manager.queues())

    async def until(self, what: str, check: Callable[[], Any], timeout: float = 10.0) -> None:
        deadline = asyncio.get_running_loop().time() + timeout
        while not await check():
            assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for {what}"
            await asyncio.sleep(0.02)

    async def settled(self, quiet: float = 0.5) -> None:
        """Until nothing is written and nothing reconciled for `quiet` seconds."""
        loop = asyncio.get_running_loop()
        mark, since = (self.state.writes, self.reconciles()), loop.time()
        while loop.time() - since < quiet:
            await asyncio.sleep(0.05)
            if (self.state.writes, self.reconciles()) != mark:
                mark, since = (self.state.writes, self.reconciles()), loop.time()

    async def ready_pod(self, name: str) -> None:
        """What the kubelet writes once the pod's containers run."""
        stamp = format_time(now())
        await self.store.patch("Pod", NS, name, {"status": {"phase": "Running", "conditions": [
            {"type": "Ready", "status": "True", "lastTransitionTime": stamp},
            {"type": "ContainersReady", "status": "True", "lastTransitionTime": stamp}]}}, subresource="status")


async def workload_status(running: Running, name: str) -> dict[str, Any]:
    workload = await running.store.get("Workload", NS, name)
    return dict((workload or {}).get("status") or {})


@pytest.mark.asyncio
async def test_min_ready_seconds_fires_without_a_store_change_or_a_resync(tmp_path: Path) -> None:
    async with Running(tmp_path, resync_seconds=3600) as running:
        await running.apply(set_yaml("a", 1, min_ready_seconds=1))

        async def pod_made() -> bool:
            return await running.store.get("Pod", NS, "a-0") is not None

        await running.until("the pod", pod_made)
        await running.ready_pod("a-0")

        async def ready_not_available() -> bool:
            status = await workload_status(running, "a")
            return status.get("readyReplicas") == 1

        await running.until("readyReplicas 1", ready_not_available)
        # Ready, not yet available: only time passing (minReadySeconds) can change that, and nothing is written
        # meanwhile that could bring the workload back.
        assert (await workload_status(running, "a")).get("availableReplicas") == 0

        async def available() -> bool:
            return (await workload_status(running, "a")).get("availableReplicas") == 1

        await running.until("availableReplicas 1 after minReadySeconds", available, timeout=5)
        assert running.resyncs == [True]  # the start's listing only: no periodic or full resync brought it


@pytest.mark.asyncio
async def test_periodic_resync_with_nothing_changed_reconciles_and_writes_nothing(tmp_path: Path) -> None:
    async with Running(tmp_path, resync_seconds=0.2) as running:
        await three_ready(running)

        reconciles, writes, resyncs = running.reconciles(), running.state.writes, len(running.resyncs)
        running.store.full_lists.clear()
        await asyncio.sleep(1.0)
        periodic = running.resyncs[resyncs:]
        assert len(periodic) >= 3 and not any(periodic), running.resyncs  # several ran, none of them full
        assert running.queued[resyncs:] == [0] * len(periodic)
        assert running.reconciles() == reconciles
        assert running.state.writes == writes
        assert running.store.full_lists == []  # identity-only listings, never whole objects

        # The count can tell: a full resync queues every object (set, workload, 3 pods, 3 GameServers) and
        # its reconciles are seen, but still write nothing.
        assert await running.manager.resync(full=True) == 8
        await running.settled()
        assert running.reconciles() > reconciles
        assert running.state.writes == writes


@pytest.mark.asyncio
async def test_changes_the_feed_did_not_deliver_are_picked_up_by_the_periodic_resync(tmp_path: Path) -> None:
    async with Running(tmp_path, resync_seconds=0.3) as running:
        await running.apply(set_yaml("a", 2))

        async def pods_made() -> bool:
            return all([await running.store.get("Pod", NS, f"a-{i}") for i in range(2)])

        await running.until("the pods", pods_made)
        await running.settled()
        old_uid = (await running.store.get("Pod", NS, "a-1") or {})["metadata"]["uid"]

        # A deletion only (nothing else changes that could bring the workload back) ...
        running.store.muted = True
        await running.store.delete("Pod", NS, "a-1")
        await asyncio.sleep(0.05)
        running.store.muted = False

        async def pod_recreated() -> bool:
            pod = await running.store.get("Pod", NS, "a-1")
            return pod is not None and pod["metadata"]["uid"] != old_uid

        await running.until("the deleted pod made again", pod_recreated)
        await running.settled()

        # ... then a change.
        running.store.muted = True
        await running.store.patch("GameServer", NS, "a-0", {"spec": {"opsState": "Maintaining"}})
        await asyncio.sleep(0.05)
        running.store.muted = False

        async def label_synced() -> bool:
            pod = await running.store.get("Pod", NS, "a-0")
            return pod is not None and pod["metadata"]["labels"].get(GS_OPS_STATE_KEY) == "Maintaining"

        await running.until("the opsState on the pod's label", label_synced)
        assert not any(running.resyncs[1:])  # by periodic resyncs, not a full one


@pytest.mark.asyncio
async def test_a_resync_marker_queues_everything(tmp_path: Path) -> None:
    async with Running(tmp_path, resync_seconds=3600) as running:
        await running.apply(set_yaml("a", 2))

        async def pods_made() -> bool:
            return all([await running.store.get("Pod", NS, f"a-{i}") for i in range(2)])

        await running.until("the pods", pods_made)
        await running.settled()
        running.store.muted = True
        await running.store.patch("GameServer", NS, "a-0", {"spec": {"opsState": "Maintaining"}})
        await asyncio.sleep(0.05)
        running.store.lost, running.store.muted = True, False

        async def label_synced() -> bool:
            pod = await running.store.get("Pod", NS, "a-0")
            return pod is not None and pod["metadata"]["labels"].get(GS_OPS_STATE_KEY) == "Maintaining"

        await running.until("the opsState on the pod's label", label_synced)
        assert running.resyncs == [True, True]  # the start's, and the marker's (the periodic one is an hour off)


async def three_ready(running: Running, name: str = "a") -> None:
    await running.apply(set_yaml(name, 3))
    for i in range(3):
        async def made(i: int = i) -> bool:
            return await running.store.get("Pod", NS, f"{name}-{i}") is not None

        await running.until(f"pod {name}-{i}", made)
        await running.ready_pod(f"{name}-{i}")
    await running.settled()


def set_wide(running: Running) -> tuple[int, int]:
    return running.manager.gss_queue.processed, running.manager.workload_queue.processed


@pytest.mark.asyncio
async def test_a_probe_result_queues_no_set_wide_reconcile(tmp_path: Path) -> None:
    """Issue 14: at 10,000 pods each set-wide reconcile lists every pod; a probe result (a pod condition neither
    reads) must not bring them back, while the GameServer still sees it."""
    async with Running(tmp_path, resync_seconds=3600) as running:
        await three_ready(running)
        before, gs_before = set_wide(running), running.manager.gs_queue.processed
        pod = await running.store.get("Pod", NS, "a-1")
        assert pod is not None
        conditions = [*pod["status"]["conditions"],
                      {"type": "game.kruise.io/healthy", "status": "True", "message": "ok"}]
        await running.store.patch("Pod", NS, "a-1", {"status": {"conditions": conditions}}, subresource="status")
        await running.settled()
        assert set_wide(running) == before
        assert running.manager.gs_queue.processed > gs_before

        # Ready is read by the workload (readiness, availability), not by the set.
        conditions = [dict(c, status="False") if c["type"] == "Ready" else c for c in conditions]
        await running.store.patch("Pod", NS, "a-1", {"status": {"conditions": conditions}}, subresource="status")

        async def not_ready() -> bool:
            return (await workload_status(running, "a")).get("readyReplicas") == 2

        await running.until("readyReplicas 2", not_ready)
        await running.settled()
        after = set_wide(running)
        assert after[1] > before[1]


@pytest.mark.asyncio
async def test_an_ops_state_change_reaches_the_set_and_not_the_workload(tmp_path: Path) -> None:
    async with Running(tmp_path, resync_seconds=3600) as running:
        await three_ready(running)
        before = set_wide(running)
        await running.store.patch("GameServer", NS, "a-2", {"spec": {"opsState": "Maintaining"}})

        async def counted() -> bool:
            gss = await running.store.get("GameServerSet", NS, "a")
            return ((gss or {}).get("status") or {}).get("maintainingReplicas") == 1

        await running.until("maintainingReplicas 1", counted)
        await running.settled()
        pod = await running.store.get("Pod", NS, "a-2")
        assert pod is not None and pod["metadata"]["labels"][GS_OPS_STATE_KEY] == "Maintaining"
        gss_runs, workload_runs = set_wide(running)
        assert gss_runs > before[0]
        assert workload_runs == before[1]  # the opsState label and its stamp are not read by the rollout


@pytest.mark.asyncio
async def test_the_sets_own_status_write_does_not_queue_it_again_and_a_spec_change_does(tmp_path: Path) -> None:
    async with Running(tmp_path, resync_seconds=3600) as running:
        await three_ready(running)
        before = set_wide(running)
        await running.store.patch("GameServerSet", NS, "a", {"status": {"replicas": 3, "readyReplicas": 0}},
                                  subresource="status")
        await running.settled()
        assert set_wide(running) == before  # status only: nothing the set decides from changed

        await running.store.patch("GameServerSet", NS, "a", {"spec": {"replicas": 2}})

        async def scaled() -> bool:
            return await running.store.get("Pod", NS, "a-2") is None

        await running.until("a-2 deleted", scaled)
        await running.settled()
        gss_runs, workload_runs = set_wide(running)
        assert gss_runs > before[0] and workload_runs > before[1]
        # A deleted pod reaches both: the set's counts are right again.
        gss = await running.store.get("GameServerSet", NS, "a")
        assert gss is not None and gss["status"]["currentReplicas"] == 2
