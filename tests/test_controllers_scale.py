"""What a change costs the controllers: work per change must not grow with the fleet when it need not.

Counted, not timed: reconcile-time store lists, pod views computed, and whether the event loop gets a turn.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Coroutine, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from gamekeeper.api.loading import load_documents
from gamekeeper.api.models import OWNER_GSS_KEY
from gamekeeper.control.gameserver import GameServerController
from gamekeeper.control.gameserverset import GameServerSetController
from gamekeeper.control.manager import ControllerManager
from gamekeeper.control.queue import SLICE, WorkQueue
from gamekeeper.control.workload import WorkloadController
from gamekeeper.ports.runtime import ExecResult
from gamekeeper.ports.store import Change, Obj
from gamekeeper.runtime.images import ImageMap
from gamekeeper.runtime.local import LocalKubelet
from gamekeeper.store.sqlite import SqliteState, SqliteStore
from tests.fleet import Fleet, ops, wait_for
from tests.test_resilience import custom_images, gss_doc

NS = "default"


def now() -> datetime:
    return datetime.now(UTC)


class CountingStore(SqliteStore):
    """A real SQLite store that counts its lists, by kind and label selector (`lists`: whole and projected,
    `whole`: those that return whole objects)."""

    def __init__(self, state: SqliteState) -> None:
        super().__init__(state)
        self.lists: list[tuple[str, str | None, dict[str, str] | None]] = []
        self.whole: list[tuple[str, str | None, dict[str, str] | None]] = []

    async def list(
        self, kind: str, namespace: str | None = None, labels: Mapping[str, str] | None = None
    ) -> list[Obj]:
        self.lists.append((kind, namespace, dict(labels) if labels is not None else None))
        self.whole.append(self.lists[-1])
        return await super().list(kind, namespace, labels)

    async def list_projected(
        self, kind: str, paths: Sequence[str], namespace: str | None = None,
        labels: Mapping[str, str] | None = None,
    ) -> list[Obj]:
        self.lists.append((kind, namespace, dict(labels) if labels is not None else None))
        return await super().list_projected(kind, paths, namespace, labels)

    def pod_lists(self) -> int:
        return sum(1 for kind, _, _ in self.lists if kind == "Pod")


class NoRuntime:
    async def exec(self, pod: dict[str, Any], container: str, command: Any, timeout: float) -> ExecResult:
        raise AssertionError("no probe runs in these tests")


def set_yaml(name: str, replicas: int, command: str = "idle") -> str:
    return f"""
apiVersion: game.kruise.io/v1alpha1
kind: GameServerSet
metadata: {{name: {name}, namespace: {NS}}}
spec:
  replicas: {replicas}
  gameServerTemplate:
    spec:
      containers: [{{name: main, image: "bench/cheap:1"}}]
  serviceQualities:
  - name: idle
    containerName: main
    permanent: false
    periodSeconds: 10
    exec: {{command: [echo, {command}]}}
    serviceQualityAction:
    - {{state: true, result: idle, opsState: WaitToBeDeleted}}
"""


@pytest.fixture
def store(tmp_path: Path) -> Any:
    state = SqliteState(tmp_path / "state")
    try:
        yield CountingStore(state)
    finally:
        state.close()


async def make_set(store: CountingStore, name: str, replicas: int) -> None:
    for obj in load_documents(set_yaml(name, replicas), "test"):
        await store.create(obj.body)
    await GameServerSetController(store, now).reconcile(NS, name)  # makes the workload
    assert await store.get("Workload", NS, name) is not None


@pytest.mark.asyncio
async def test_workload_creates_n_pods_with_o_n_views(store: CountingStore, monkeypatch: pytest.MonkeyPatch) -> None:
    n = 60
    await make_set(store, "big", n)
    views = 0
    original = WorkloadController._view

    def counting_view(self: WorkloadController, *args: Any) -> Any:
        nonlocal views
        views += 1
        return original(self, *args)

    monkeypatch.setattr(WorkloadController, "_view", counting_view)
    await WorkloadController(store, now).reconcile(NS, "big")
    assert len(await store.list("Pod", NS, {OWNER_GSS_KEY: "big"})) == n
    # Once per pod made, once more for the rolling-update plan: recomputing all of them per pod made is n²/2.
    assert views <= 3 * n, views


@pytest.mark.asyncio
async def test_set_status_update_does_not_resync_its_probes(store: CountingStore) -> None:
    await make_set(store, "a", 3)
    await make_set(store, "b", 2)
    await WorkloadController(store, now).reconcile(NS, "a")
    await WorkloadController(store, now).reconcile(NS, "b")
    manager = ControllerManager(store, NoRuntime(), now)

    def drained() -> set[tuple[str, str]]:
        keys = set(manager.probe_queue._pending)
        manager.probe_queue = WorkQueue("prober", manager.prober.sync_pod)
        return keys

    # First sight of the set: its own pods only, found by the owner label (not every pod of the namespace).
    store.lists.clear()
    await manager._probe_set(NS, "a")
    assert store.lists == [("Pod", NS, {OWNER_GSS_KEY: "a"})]
    assert drained() == {(NS, "a-0"), (NS, "a-1"), (NS, "a-2")}

    # A status update (what every GameServer state change causes): nothing to re-sync, no pod is listed.
    await store.patch("GameServerSet", NS, "a", {"status": {"replicas": 3, "readyReplicas": 1}},
                      subresource="status")
    store.lists.clear()
    await manager._probe_set(NS, "a")
    assert store.pod_lists() == 0 and drained() == set()

    # So is a change of metadata only (labels, annotations: no new generation).
    await store.patch("GameServerSet", NS, "a", {"metadata": {"annotations": {"note": "x"}}})
    await manager._probe_set(NS, "a")
    assert store.pod_lists() == 0 and drained() == set()

    # A spec change (here the service qualities) reaches every pod's probes.
    gss = await store.get("GameServerSet", NS, "a")
    assert gss is not None
    qualities = gss["spec"]["serviceQualities"]
    qualities[0]["periodSeconds"] = 5
    await store.patch("GameServerSet", NS, "a", {"spec": {"serviceQualities": qualities}})
    await manager._probe_set(NS, "a")
    assert store.pod_lists() == 1
    assert drained() == {(NS, "a-0"), (NS, "a-1"), (NS, "a-2")}

    # The set gone: its pods' probes are looked at (and stopped by the prober).
    await store.delete("GameServerSet", NS, "b")
    await manager._probe_set(NS, "b")
    assert {name for _, name in drained()} <= {"b-0", "b-1"}


@pytest.mark.asyncio
async def test_set_changes_are_coalesced_before_the_probe_resync(store: CountingStore) -> None:
    await make_set(store, "a", 1)
    manager = ControllerManager(store, NoRuntime(), now)
    for _ in range(5):
        manager.on_change(Change(0, "GameServerSet", NS, "a", "MODIFIED"))
    assert manager.probe_set_queue.depth() == 1


async def run_keys(monkeypatch: pytest.MonkeyPatch, seconds_per_key: float) -> list[str]:
    """Three keys whose handler never suspends (as with the SQLite store) and "takes" `seconds_per_key`, beside a
    task that wants the loop all the time; the order in which they ran."""
    import gamekeeper.control.queue as queue_module

    clock = FakeTime()
    monkeypatch.setattr(queue_module, "time", clock)
    order: list[str] = []

    async def handler(namespace: str, name: str) -> None:
        order.append(name)
        clock.now += seconds_per_key

    queue = WorkQueue("test", handler)
    for name in ("k1", "k2", "k3"):
        queue.add(NS, name)

    return await beside_a_bystander(queue.run(), order, ["k1", "k2", "k3"])


async def beside_a_bystander(work: Coroutine[Any, Any, None], order: list[str], keys: list[str]) -> list[str]:
    """Run `work` (which appends each key it handles to `order`) beside a task that wants the loop all the time
    and appends "other" on each turn; the order from the first key to the last."""

    async def other() -> None:
        while True:
            order.append("other")
            await asyncio.sleep(0)

    worker = asyncio.create_task(work)
    bystander = asyncio.create_task(other())
    while len([item for item in order if item != "other"]) < len(keys):
        await asyncio.sleep(0)
    worker.cancel()
    bystander.cancel()
    await asyncio.gather(worker, bystander, return_exceptions=True)
    handled = [i for i, item in enumerate(order) if item != "other"]
    assert [order[i] for i in handled] == keys
    return order[handled[0]:handled[-1] + 1]


@pytest.mark.asyncio
async def test_queue_lets_other_tasks_run_between_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    assert await run_keys(monkeypatch, SLICE * 1.5) == ["k1", "other", "k2", "other", "k3"]


@pytest.mark.asyncio
async def test_queue_runs_cheap_keys_in_one_turn(monkeypatch: pytest.MonkeyPatch) -> None:
    """Yielding after every key would give a queue of cheap keys one key per turn of the loop, however long the
    others make that turn."""
    assert await run_keys(monkeypatch, SLICE / 10) == ["k1", "k2", "k3"]


@pytest.mark.asyncio
async def test_kubelet_lets_other_tasks_run_between_pods(tmp_path: Path) -> None:
    """A resync brings every pod to the local kubelet at once; like the work queues it must let the loop run
    (the probes' timer) between slices of pods, not only when its queue is empty."""
    kubelet = LocalKubelet(SqliteStore(SqliteState(tmp_path)), tmp_path, ImageMap(None, {}))
    order: list[str] = []

    async def sync_pod(namespace: str, name: str) -> None:
        order.append(name)
        busy_until = time.perf_counter() + SLICE * 1.5  # a pod that never suspends and takes more than a slice
        while time.perf_counter() < busy_until:
            pass

    kubelet.sync_pod = sync_pod  # type: ignore[method-assign]
    for name in ("p1", "p2", "p3"):
        kubelet.enqueue(NS, name)
    assert await beside_a_bystander(kubelet.run(), order, ["p1", "p2", "p3"]) == [
        "p1", "other", "p2", "other", "p3"]


@pytest.mark.asyncio
async def test_gameserver_controller_validates_a_set_spec_once_per_generation(
    store: CountingStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    await make_set(store, "a", 1)
    controller = GameServerController(store, now)
    gss = await store.get("GameServerSet", NS, "a")
    assert gss is not None
    first = controller._specs.get(gss)
    for replicas in (1, 2, 3):
        gss = await store.patch("GameServerSet", NS, "a", {"status": {"readyReplicas": replicas}},
                                subresource="status")
        assert controller._specs.get(gss) is first
    gss = await store.patch("GameServerSet", NS, "a", {"spec": {"replicas": 2}})
    second = controller._specs.get(gss)
    assert second is not first and second.replicas == 2


@pytest.mark.slow
def test_changing_a_sets_probe_command_reaches_the_running_probes(fleet: Fleet) -> None:
    """End to end: the probes follow a change of the set's serviceQualities (the prober re-syncs on spec changes
    only, so this must still arrive)."""
    custom_images(fleet, {"sleeper:1": {"command": ["sleep", "100000"]}})
    fleet.start()

    def doc(result: str) -> dict[str, Any]:
        return gss_doc("swap", "sleeper:1", [{
            "name": "idle", "permanent": False, "initialDelaySeconds": 1, "periodSeconds": 1,
            "exec": {"command": ["echo", result]},
            "serviceQualityAction": [{"state": True, "result": "idle", "opsState": "WaitToBeDeleted"},
                                     {"state": True, "result": "busy", "opsState": "None"}],
        }], replicas=2)

    fleet.apply_yaml(doc("idle"))
    fleet.wait_gs("both WaitToBeDeleted", lambda gs: len(gs) == 2 and all(
        ops(g) == "WaitToBeDeleted" for g in gs.values()))
    fleet.apply_yaml(doc("busy"))
    fleet.wait_gs("both None after the probe command changed", lambda gs: len(gs) == 2 and all(
        ops(g) == "None" for g in gs.values()))
    wait_for(lambda: all(ops(g) == "None" for g in fleet.gameservers().values()), "still None", 5)


class FakeTime:
    """Stands in for the queue's `time` module: a handler "takes" as long as it advances `now`."""

    def __init__(self) -> None:
        self.now = 1000.0

    def perf_counter(self) -> float:
        return self.now

    def monotonic(self) -> float:
        return self.now


@pytest.mark.asyncio
async def test_set_wide_queues_sharing_a_lock_never_run_at_once_and_the_wait_is_not_their_duration(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The set's and the workload's reconciles each list every pod of a set and yield mid-way; with a shared lock
    their listings are never alive together, and the one that waited is not spaced for the other's time."""
    import gamekeeper.control.queue as queue_module

    clock = FakeTime()
    monkeypatch.setattr(queue_module, "time", clock)
    lock = asyncio.Lock()
    running: set[str] = set()
    overlaps: list[set[str]] = []
    took: dict[str, list[float]] = {"a": [], "b": []}

    def make(queue_name: str) -> Any:
        async def handler(namespace: str, name: str) -> None:
            running.add(queue_name)
            if len(running) > 1:
                overlaps.append(set(running))
            for _ in range(5):  # slices of a long reconcile (0.01 s of fake time each), the loop free between them
                clock.now += 0.01
                await asyncio.sleep(0)
            running.discard(queue_name)
        return handler

    def observe(queue_name: str, seconds: float) -> None:
        took[queue_name].append(seconds)

    queues = {n: WorkQueue(n, make(n), observe=observe, exclusive=lock) for n in ("a", "b")}
    workers = [asyncio.create_task(q.run()) for q in queues.values()]
    try:
        for _ in range(3):
            queues["a"].add(NS, "set")
            queues["b"].add(NS, "set")
            for _ in range(30):
                await asyncio.sleep(0)
    finally:
        for worker in workers:
            worker.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
    assert len(took["a"]) == 3 and len(took["b"]) == 3
    assert overlaps == []
    # Each run took its own five slices, never the other's too (which the one that waited would count without it).
    assert max(took["a"] + took["b"]) == pytest.approx(0.05)
    assert not lock.locked()


@pytest.mark.asyncio
async def test_an_expensive_key_is_spaced_and_its_changes_coalesced(monkeypatch: pytest.MonkeyPatch) -> None:
    import gamekeeper.control.queue as queue_module

    clock = FakeTime()
    monkeypatch.setattr(queue_module, "time", clock)
    runs: list[str] = []

    async def handler(namespace: str, name: str) -> None:
        runs.append(name)
        clock.now += 0.5 if name == "set" else 0.0001  # a set-wide reconcile vs a per-server one

    queue = WorkQueue("test", handler, spacing=4.0)
    worker = asyncio.create_task(queue.run())
    try:
        queue.add(NS, "set")
        queue.add(NS, "gs")
        for _ in range(5):
            await asyncio.sleep(0)
        assert runs == ["set", "gs"]
        # Changes right after: the cheap key runs again at once; the expensive one waits (2 s of fake time,
        # which never pass here) as one pending key, however many changes come.
        for _ in range(10):
            queue.add(NS, "set")
            queue.add(NS, "gs")
            for _ in range(3):
                await asyncio.sleep(0)
        assert runs.count("set") == 1 and runs.count("gs") == 11
        assert (NS, "set") in queue._pending
    finally:
        worker.cancel()
        await asyncio.gather(worker, return_exceptions=True)


@pytest.mark.asyncio
async def test_set_wide_reconciles_read_projections_and_decide_as_before(store: CountingStore) -> None:
    from gamekeeper.api.models import GS_DELETE_PRIORITY_KEY, GS_OPS_STATE_KEY, GS_STATE_KEY
    from gamekeeper.control.gameserverset import pod_views
    from gamekeeper.core.scaling import compute_to_scale

    await make_set(store, "a", 6)
    await WorkloadController(store, now).reconcile(NS, "a")
    marks = {1: {GS_OPS_STATE_KEY: "WaitToBeDeleted"}, 4: {GS_OPS_STATE_KEY: "WaitToBeDeleted"},
             2: {GS_OPS_STATE_KEY: "Maintaining"}, 5: {GS_DELETE_PRIORITY_KEY: "10", GS_STATE_KEY: "PreDelete"}}
    for ordinal, labels in marks.items():
        await store.patch("Pod", NS, f"a-{ordinal}", {"metadata": {"labels": labels}})
    # Status counts, from the projected labels.
    store.whole.clear()
    await GameServerSetController(store, now).reconcile(NS, "a")
    status = (await store.get("GameServerSet", NS, "a") or {})["status"]
    assert (status["currentReplicas"], status["waitToBeDeletedReplicas"], status["maintainingReplicas"],
            status["preDeleteReplicas"]) == (6, 2, 1, 1)

    # Scale-in order: WaitToBeDeleted first, then the higher deletion priority (upstream's order).
    whole_views = pod_views(await store.list("Pod", NS, {OWNER_GSS_KEY: "a"}))
    expected = compute_to_scale(set(), set(), set(), 3, whole_views)
    await store.patch("GameServerSet", NS, "a", {"spec": {"replicas": 3}})
    store.whole.clear()
    await GameServerSetController(store, now).reconcile(NS, "a")
    workload = await store.get("Workload", NS, "a") or {}
    assert workload["spec"]["replicas"] == 3
    assert sorted(workload["spec"]["reserveOrdinals"]) == sorted(expected.reserved) == [1, 4, 5]
    await WorkloadController(store, now).reconcile(NS, "a")
    left = [p["metadata"]["name"] for p in await store.list("Pod", NS, {OWNER_GSS_KEY: "a"})]
    assert left == ["a-0", "a-2", "a-3"]
    store.whole.pop()  # the check's own listing just above
    assert [w for w in store.whole if w[0] == "Pod"] == []
    assert any(kind == "Pod" for kind, _, _ in store.lists)


@pytest.mark.asyncio
async def test_set_wide_reconciles_let_other_tasks_run(store: CountingStore) -> None:
    from gamekeeper.control.pace import SLICE

    size = 2 * SLICE + 1  # three slices: at least two yields per walk
    await make_set(store, "big", size)
    await WorkloadController(store, now).reconcile(NS, "big")
    assert len(await store.list_projected("Pod", (), NS, {OWNER_GSS_KEY: "big"})) == size
    turns = 0

    async def bystander() -> None:
        nonlocal turns
        while True:
            turns += 1
            await asyncio.sleep(0)

    task = asyncio.create_task(bystander())
    await asyncio.sleep(0)
    try:
        # The SQLite store never suspends: without the yields, the bystander would not run until each returned.
        for reconcile in (GameServerSetController(store, now).reconcile, WorkloadController(store, now).reconcile):
            before = turns
            await reconcile(NS, "big")
            assert turns - before >= 2, reconcile
    finally:
        task.cancel()
