"""bench/kube_emulator.py through the operator's own client: the semantics the Kubernetes bench relies on."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from bench.kube_emulator import Emulator

from gamekeeper.kube.client import Gone, KubeClient
from gamekeeper.kube.resources import GAME_SERVER, POD, WORKLOAD
from gamekeeper.ports.store import AlreadyExists, Conflict

pytestmark = pytest.mark.asyncio


@pytest_asyncio.fixture
async def api() -> AsyncIterator[tuple[Emulator, KubeClient]]:
    emulator = Emulator(history=8)
    client = KubeClient(await emulator.start())
    try:
        yield emulator, client
    finally:
        await client.close()
        await emulator.stop()


def pod(name: str) -> dict[str, object]:
    return {"metadata": {"name": name}, "spec": {"containers": [{"name": "main"}]}}


async def test_create_conflicts_and_counts(api: tuple[Emulator, KubeClient]) -> None:
    emulator, client = api
    created = await client.create(POD, {**pod("a"), "metadata": {"name": "a", "namespace": "ns"}})
    rv = created["metadata"]["resourceVersion"]
    with pytest.raises(AlreadyExists):
        await client.create(POD, {**pod("a"), "metadata": {"name": "a", "namespace": "ns"}})
    patched = await client.patch(POD, "ns", "a", {"metadata": {"labels": {"x": "1"}, "resourceVersion": rv}})
    assert patched["metadata"]["labels"] == {"x": "1"} and patched["metadata"]["resourceVersion"] != rv
    with pytest.raises(Conflict):
        await client.patch(POD, "ns", "a", {"metadata": {"labels": {"x": "2"}, "resourceVersion": rv}})
    same = await client.patch(POD, "ns", "a", {"metadata": {"labels": {"x": "1"}}})
    assert same["metadata"]["resourceVersion"] == patched["metadata"]["resourceVersion"]  # a no-op: no new version
    assert emulator.requests[("POST", "pods", "")] == 2 and emulator.requests[("PATCH", "pods", "")] == 3


async def test_status_subresource_and_generation(api: tuple[Emulator, KubeClient]) -> None:
    _, client = api
    await client.create(GAME_SERVER, {"metadata": {"name": "g", "namespace": "ns"}, "spec": {"opsState": "None"}})
    main = await client.patch(GAME_SERVER, "ns", "g", {"spec": {"opsState": "Allocated"}, "status": {"x": 1}})
    assert main["metadata"]["generation"] == 2 and "status" not in main
    status = await client.patch(GAME_SERVER, "ns", "g", {"spec": {"opsState": "Kill"}, "status": {"x": 1}}, "status")
    assert status["status"] == {"x": 1} and status["spec"]["opsState"] == "Allocated"
    assert status["metadata"]["generation"] == 2


async def test_list_selector_watch_replay_and_gone(api: tuple[Emulator, KubeClient]) -> None:
    emulator, client = api
    emulator.seed("Pod", {**pod("a"), "metadata": {"name": "a", "namespace": "ns", "labels": {"owner": "s"}}})
    _, rv = await client.list(POD, "ns")
    emulator.seed("Pod", {**pod("b"), "metadata": {"name": "b", "namespace": "ns", "labels": {"owner": "s"}}})
    emulator.seed("Pod", {**pod("c"), "metadata": {"name": "c", "namespace": "ns"}})
    items, _ = await client.list(POD, "ns", "owner")
    assert sorted(i["metadata"]["name"] for i in items) == ["a", "b"]
    replayed = [(e.type, e.object["metadata"]["name"]) async for e in client.watch(POD, "ns", rv, "owner=s", 1)]
    assert replayed == [("ADDED", "b")]  # from after the list; c does not match the selector
    for i in range(10):  # past the history of 8: the old version is gone
        emulator.seed("Workload", {"metadata": {"name": f"w{i}", "namespace": "ns"}, "spec": {}})
    with pytest.raises(Gone):
        async for _ in client.watch(WORKLOAD, "ns", rv, timeout_seconds=1):
            pass


async def test_delete_cascades_to_dependents(api: tuple[Emulator, KubeClient]) -> None:
    emulator, client = api
    owner = emulator.seed("Pod", {**pod("a"), "metadata": {"name": "a", "namespace": "ns"}})
    emulator.seed("GameServer", {"metadata": {"name": "a", "namespace": "ns", "ownerReferences": [
        {"kind": "Pod", "name": "a", "uid": owner["metadata"]["uid"]}]}, "spec": {}})
    await client.delete(POD, "ns", "a")
    assert await client.get(GAME_SERVER, "ns", "a") is None
