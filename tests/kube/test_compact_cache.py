"""The watch cache keeps objects compactly and hands out copies; listings come in pages; list_projected agrees
with list. Against bench/kube_emulator.py (real HTTP on 127.0.0.1, limit/continue as the API server)."""

from __future__ import annotations

import copy
import json
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from bench.kube_emulator import Emulator

from gamekeeper.kube.client import Gone, KubeClient
from gamekeeper.kube.resources import POD
from gamekeeper.kube.store import DECODE_SLICE, KubeStore
from gamekeeper.ports.store import project

pytestmark = pytest.mark.asyncio

OWNER = "game.kruise.io/owner-gss"


@pytest_asyncio.fixture
async def api() -> AsyncIterator[tuple[Emulator, KubeClient]]:
    emulator = Emulator()
    client = KubeClient(await emulator.start())
    try:
        yield emulator, client
    finally:
        await client.close()
        await emulator.stop()


def pod(name: str, owner: str = "s", namespace: str = "ns") -> dict[str, object]:
    return {
        "metadata": {"name": name, "namespace": namespace, "labels": {OWNER: owner, "pod-name": name},
                     "annotations": {"note": "x" * 200}},
        "spec": {"containers": [{"name": "main", "image": "game:1", "args": ["--port", "7777"]}],
                 "hostname": name, "nodeName": "node-1"},
        "status": {"phase": "Running", "podIP": "10.0.0.1",
                   "conditions": [{"type": "Ready", "status": "True"}]},
    }


async def started(client: KubeClient, page_size: int = 500) -> KubeStore:
    store = KubeStore(client, None, kinds={"Pod": OWNER})
    store.informers["Pod"].page_size = page_size
    await store.start()
    return store


async def test_get_returns_independent_copies(api: tuple[Emulator, KubeClient]) -> None:
    emulator, client = api
    emulator.seed("Pod", pod("a"))
    store = await started(client)
    try:
        first = await store.get("Pod", "ns", "a")
        assert first is not None
        first["metadata"]["labels"]["pod-name"] = "changed"
        first["spec"]["containers"].clear()
        second = await store.get("Pod", "ns", "a")
        assert second is not None and second is not first
        assert second["metadata"]["labels"]["pod-name"] == "a" and second["spec"]["containers"][0]["name"] == "main"
        listed = await store.list("Pod")
        listed[0]["status"]["phase"] = "Failed"
        again = await store.get("Pod", "ns", "a")
        assert again is not None and again["status"]["phase"] == "Running"
    finally:
        await store.stop()


async def test_cached_objects_are_whole_and_compact(api: tuple[Emulator, KubeClient]) -> None:
    emulator, client = api
    for i in range(50):
        emulator.seed("Pod", pod(f"p-{i}"))
    store = await started(client)
    try:
        server = emulator.objects["pods"][("ns", "p-7")]
        cached = await store.get("Pod", "ns", "p-7")
        expected = copy.deepcopy(server)
        expected["metadata"].pop("managedFields")
        assert cached == expected  # every field but managedFields, as the server has it
        informer = store.informers["Pod"]
        text = sum(len(json.dumps(o, separators=(",", ":"))) for o in await store.list("Pod"))
        blobs = sum(len(entry.blob) for entry in informer.cache.values())
        # Objects built from one template share nearly all their text with the codec's dictionary.
        assert blobs * 4 < text, (blobs, text)
    finally:
        await store.stop()


async def test_replace_of_a_cached_object_keeps_the_servers_fields(api: tuple[Emulator, KubeClient]) -> None:
    emulator, client = api
    emulator.seed("Pod", pod("a"))
    store = await started(client)
    try:
        before = copy.deepcopy(emulator.objects["pods"][("ns", "a")])
        cached = await store.get("Pod", "ns", "a")
        assert cached is not None
        cached["metadata"]["labels"]["extra"] = "1"
        replaced = await store.replace(cached)
        after = emulator.objects["pods"][("ns", "a")]
        assert after["metadata"]["labels"] == {**before["metadata"]["labels"], "extra": "1"}
        for part in ("spec", "status"):
            assert after[part] == before[part]
        assert after["metadata"]["annotations"] == before["metadata"]["annotations"]
        assert after["metadata"]["uid"] == before["metadata"]["uid"]
        now = await store.get("Pod", "ns", "a")
        assert now is not None and now["metadata"]["resourceVersion"] == replaced["metadata"]["resourceVersion"]
    finally:
        await store.stop()


async def test_list_projected_equals_the_projection_of_list(api: tuple[Emulator, KubeClient]) -> None:
    emulator, client = api
    for i in range(6):
        emulator.seed("Pod", pod(f"p-{i}", owner="s" if i % 2 else "t", namespace="ns" if i < 4 else "other"))
    store = await started(client)
    try:
        paths = ["metadata.labels", "spec.nodeName", "status.conditions", "status.absent"]
        for namespace, labels in ((None, None), ("ns", None), (None, {OWNER: "s"}),
                                  ("ns", {OWNER: "t"}), (None, {"pod-name": "p-3"}), (None, {OWNER: "none"})):
            full = await store.list("Pod", namespace, labels)
            projected = await store.list_projected("Pod", paths, namespace, labels)
            assert projected == [project(o, paths) for o in full], (namespace, labels)
        assert [p["metadata"]["name"] for p in await store.list_projected("Pod", [], None, {OWNER: "s"})] == [
            "p-1", "p-3", "p-5"]
        assert [p["metadata"]["name"] for p in await store.list("Pod", "ns")] == ["p-0", "p-1", "p-2", "p-3"]
        # The memoised projections follow writes and deletes.
        await store.patch("Pod", "ns", "p-1", {"spec": {"nodeName": "node-2"}, "metadata": {"labels": {OWNER: "t"}}})
        await store.delete("Pod", "ns", "p-0")
        for namespace, labels in ((None, None), (None, {OWNER: "s"}), (None, {OWNER: "t"})):
            full = await store.list("Pod", namespace, labels)
            projected = await store.list_projected("Pod", paths, namespace, labels)
            assert projected == [project(o, paths) for o in full], (namespace, labels)
        node = await store.list_projected("Pod", paths, "ns", {OWNER: "t"})
        assert [(p["metadata"]["name"], p["spec"]["nodeName"]) for p in node] == [
            ("p-1", "node-2"), ("p-2", "node-1")]
        node[0]["metadata"]["labels"].clear()  # a caller's change stays its own
        again = await store.list_projected("Pod", paths, "ns", {OWNER: "t"})
        assert again[0]["metadata"]["labels"][OWNER] == "t"
    finally:
        await store.stop()


async def test_the_first_listing_comes_in_pages(api: tuple[Emulator, KubeClient]) -> None:
    emulator, client = api
    for i in range(7):
        emulator.seed("Pod", pod(f"p-{i}"))
    store = await started(client, page_size=3)
    try:
        assert emulator.requests[("GET", "pods", "")] == 3  # 3 + 3 + 1
        assert len(await store.list("Pod")) == 7
    finally:
        await store.stop()


async def test_an_expired_continue_token_is_gone(api: tuple[Emulator, KubeClient]) -> None:
    emulator, client = api
    for i in range(4):
        emulator.seed("Pod", pod(f"p-{i}"))
    pages = client.list_pages(POD, None, None, limit=2)
    first, _ = await anext(pages)
    assert len(first) == 2
    emulator._continues.clear()  # the server forgot the snapshot (etcd compacted it)
    with pytest.raises(Gone):
        await anext(pages)


async def test_listings_longer_than_a_decode_slice_are_whole_and_ordered(api: tuple[Emulator, KubeClient]) -> None:
    emulator, client = api
    names = [f"p-{i:03d}" for i in range(DECODE_SLICE + 44)]
    for name in reversed(names):
        emulator.seed("Pod", pod(name))
    store = await started(client, page_size=100)
    try:
        listed = await store.list("Pod", "ns", {OWNER: "s"})
        assert [p["metadata"]["name"] for p in listed] == names
        assert listed[-1] == {**emulator.objects["pods"][("ns", names[-1])], "metadata": {
            k: v for k, v in emulator.objects["pods"][("ns", names[-1])]["metadata"].items() if k != "managedFields"}}
        paths = ["status.phase"]
        assert await store.list_projected("Pod", paths, "ns", {OWNER: "s"}) == [project(o, paths) for o in listed]
    finally:
        await store.stop()
