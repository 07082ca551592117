"""KubeStore (the Store port over the API) against the emulator: conditional writes, the cache, watch
restarts, status isolation, events."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from gamekeeper.kube.client import Gone, exit_code_of
from gamekeeper.kube.informer import rv_older
from gamekeeper.kube.resources import GAME_SERVER, POD
from gamekeeper.kube.store import KubeStore
from gamekeeper.ports.store import AlreadyExists, Change, Conflict, NotFound, StoreError
from tests.kube.conftest import Cluster
from tests.kube.kmock_plus import KubernetesEmulatorPlus, World

pytestmark = pytest.mark.asyncio


def gs(name: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "game.kruise.io/v1alpha1", "kind": "GameServer",
        "metadata": {"name": name, "namespace": "default", "labels": labels or {}},
        "spec": {"opsState": "None"},
    }


async def started(cluster: Cluster, **kwargs: Any) -> KubeStore:
    store = KubeStore(cluster.client(), tick_seconds=0.1, **kwargs)
    await store.start()
    cluster.tasks.append(asyncio.create_task(asyncio.sleep(3600)))  # keeps the fixture's teardown uniform
    return store


async def collect(store: KubeStore, kinds: set[str], until: int, timeout: float = 10) -> list[Change]:
    out: list[Change] = []

    async def run() -> None:
        async for change in store.watch(kinds):
            if change.type != "TICK":
                out.append(change)
                if len(out) >= until:
                    return

    await asyncio.wait_for(run(), timeout)
    return out


async def test_writes_are_conditional_and_a_conflict_refreshes_the_cache(cluster: Cluster) -> None:
    store = await started(cluster)
    created = await store.create(gs("a"))
    assert created["metadata"]["uid"] and created["metadata"]["resourceVersion"]
    # Write-through: readable at once, before any watch event.
    assert (await store.get("GameServer", "default", "a")) == created
    with pytest.raises(AlreadyExists):
        await store.create(gs("a"))

    # Someone else writes: our version is stale.
    cluster.world.update("game.kruise.io/v1alpha1/gameservers", "default", "a",
                         lambda o: {**o, "metadata": {**o["metadata"], "labels": {"other": "writer"}}}, None, None)
    stale = created["metadata"]["resourceVersion"]
    with pytest.raises(Conflict):
        await store.patch("GameServer", "default", "a", {"spec": {"opsState": "Maintaining"}}, resource_version=stale)
    # The 409 made the store re-read: the retry starts from the current version and succeeds.
    current = await store.get("GameServer", "default", "a")
    assert current is not None and current["metadata"]["labels"] == {"other": "writer"}
    patched = await store.patch("GameServer", "default", "a", {"spec": {"opsState": "Maintaining"}},
                                resource_version=current["metadata"]["resourceVersion"])
    assert patched["spec"]["opsState"] == "Maintaining" and patched["metadata"]["labels"] == {"other": "writer"}
    assert patched["metadata"]["generation"] == 2

    with pytest.raises(Conflict):
        await store.delete("GameServer", "default", "a", resource_version=stale)
    await store.delete("GameServer", "default", "a", resource_version=patched["metadata"]["resourceVersion"])
    assert await store.get("GameServer", "default", "a") is None
    with pytest.raises(NotFound):
        await store.patch("GameServer", "default", "a", {"spec": {"opsState": "None"}})
    with pytest.raises(NotFound):
        await store.delete("GameServer", "default", "a")


async def test_status_goes_only_through_the_status_subresource(cluster: Cluster) -> None:
    store = await started(cluster)
    await store.create(gs("a"))
    main = await store.patch("GameServer", "default", "a", {"spec": {"opsState": "Allocated"}, "status": {"x": 1}})
    assert "status" not in main and main["spec"]["opsState"] == "Allocated"
    status = await store.patch("GameServer", "default", "a", {"spec": {"opsState": "Kill"}, "status": {"x": 2}},
                               subresource="status")
    assert status["status"] == {"x": 2} and status["spec"]["opsState"] == "Allocated"
    with pytest.raises(ValueError, match="no status subresource"):
        await store.patch("Event", "default", "e", {"status": {}}, subresource="status")
    # The merge patch went out as one (the emulator applies JSON patches only to list bodies).
    patches = cluster.emulator.requests_for("PATCH", "gameservers")
    assert all(r.headers.get("Content-Type") == "application/merge-patch+json" for r in patches)


async def test_lists_come_from_the_cache_and_honour_labels(cluster: Cluster) -> None:
    store = await started(cluster)
    await store.create(gs("a", {"team": "red"}))
    await store.create(gs("b", {"team": "blue"}))
    lists_before = len(cluster.emulator.requests_for("GET", "gameservers"))
    assert [o["metadata"]["name"] for o in await store.list("GameServer", "default", {"team": "blue"})] == ["b"]
    assert [o["metadata"]["name"] for o in await store.list("GameServer")] == ["a", "b"]
    assert await store.list("GameServer", "other") == []
    assert len(cluster.emulator.requests_for("GET", "gameservers")) == lists_before  # no API call
    # Only pods of a set are cached (label selector on the pod informer).
    await cluster.client().create(POD, {"metadata": {"name": "stranger", "namespace": "default"},
                                         "spec": {"containers": [{"name": "c", "image": "x"}]}})
    await cluster.client().create(POD, {"metadata": {"name": "s-0", "namespace": "default",
                                                     "labels": {"game.kruise.io/owner-gss": "s"}},
                                         "spec": {"containers": [{"name": "c", "image": "x"}]}})
    await asyncio.sleep(0.3)
    assert [p["metadata"]["name"] for p in await store.list("Pod")] == ["s-0"]


async def test_watch_restarts_after_410_gone_and_relists(cluster: Cluster) -> None:
    store = await started(cluster)
    await store.create(gs("keep"))
    await store.create(gs("gone"))
    informer = store.informers["GameServer"]
    lists = informer.stats.lists
    feed = asyncio.create_task(collect(store, {"GameServer"}, until=2))
    await asyncio.sleep(0.1)
    # While the watch is cut, one object is deleted and one created, and the history is compacted away:
    # resuming from our last resourceVersion is impossible, so the informer must re-list and diff.
    world: World = cluster.world
    world.delete("game.kruise.io/v1alpha1/gameservers", "default", "gone")
    world.create("game.kruise.io/v1alpha1/gameservers", "default", gs("new"))
    world.compact()
    world.break_watches()
    changes = await feed
    assert {(c.name, c.type) for c in changes} == {("gone", "DELETED"), ("new", "ADDED")}
    assert informer.stats.gone >= 1 and informer.stats.lists > lists
    assert sorted(informer.cache) == [("default", "keep"), ("default", "new")]


async def test_watch_resumes_from_its_resource_version_after_a_broken_stream(cluster: Cluster) -> None:
    store = await started(cluster)
    await store.create(gs("a"))
    informer = store.informers["GameServer"]
    lists = informer.stats.lists
    informer.backoff_max = 0.2
    world: World = cluster.world
    feed = asyncio.create_task(collect(store, {"GameServer"}, until=1))
    await asyncio.sleep(0.1)
    world.break_watches()
    world.update("game.kruise.io/v1alpha1/gameservers", "default", "a",
                 lambda o: {**o, "spec": {"opsState": "Maintaining"}}, None, None)
    changes = await feed
    assert [(c.name, c.type) for c in changes] == [("a", "MODIFIED")]
    assert informer.stats.lists == lists  # resumed from history: no re-list needed
    assert informer.stats.watches >= 2
    cached = await store.get("GameServer", "default", "a")
    assert cached is not None and cached["spec"]["opsState"] == "Maintaining"


async def test_events_are_folded_into_a_series(cluster: Cluster) -> None:
    store = await started(cluster)
    obj = await store.create(gs("a"))
    for _ in range(3):
        await store.record_event(obj, "Warning", "GsStateChanged", "OpsState turn from None to Maintaining ")
    await store.record_event(obj, "Normal", "Other", "something else")
    events = cluster.world.all("Event")
    assert len(events) == 2
    warning = next(e for e in events if e["type"] == "Warning")
    assert warning["series"]["count"] == 3 and warning["regarding"]["uid"] == obj["metadata"]["uid"]
    assert warning["reportingController"] == "gamekeeper.io/gamekeeper" and warning["eventTime"].endswith("Z")
    records = await store.list_events("default", "GameServer", "a")
    assert [(r.type, r.reason, r.count) for r in records if r.type == "Warning"] == [
        ("Warning", "GsStateChanged", 3)]


async def test_a_missing_crd_is_a_clear_error() -> None:
    import kmock

    from gamekeeper.kube.client import KubeClient
    from tests.kube.kmock_plus import STANDARD_KINDS

    emulator = KubernetesEmulatorPlus()
    emulator.declare({k: v for k, v in STANDARD_KINDS.items() if "gameservers" not in k})
    async with emulator, kmock.Server(emulator) as server:
        client = KubeClient(str(server.url))
        store = KubeStore(client)
        with pytest.raises(StoreError, match=r"gameservers\.game\.kruise\.io/v1alpha1: is its CustomResource"):
            await store.start()
        await client.close()
        emulator.world.break_watches()


async def test_helpers() -> None:
    assert exit_code_of({"status": "Success"}) == 0
    assert exit_code_of({"status": "Failure", "details": {"causes": [{"reason": "ExitCode", "message": "7"}]}}) == 7
    assert exit_code_of(None) == 1
    assert rv_older("9", "10") and not rv_older("10", "9") and not rv_older("a", "b")
    assert Gone(410, "Expired", "x").status == 410
    assert GAME_SERVER.path("ns", "a", "status") == "/apis/game.kruise.io/v1alpha1/namespaces/ns/gameservers/a/status"
    assert POD.path(None) == "/api/v1/pods"
