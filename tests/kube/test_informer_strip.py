"""The watch cache keeps no managedFields (the server's field ownership, which no reconcile reads)."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import AsyncIterator

import kmock
import pytest
import pytest_asyncio

from gamekeeper.kube.client import KubeClient
from gamekeeper.kube.store import KubeStore
from tests.kube.kmock_plus import STANDARD_KINDS, KubernetesEmulatorPlus, World

pytestmark = pytest.mark.asyncio


@pytest_asyncio.fixture
async def api() -> AsyncIterator[tuple[World, KubeClient]]:
    emulator = KubernetesEmulatorPlus(world=World(managed_fields=True))
    emulator.declare(STANDARD_KINDS)
    async with emulator, kmock.Server(emulator) as server:
        client = KubeClient(str(server.url))
        try:
            yield emulator.world, client
        finally:
            await client.close()


async def test_listed_watched_and_written_objects_are_cached_without_managed_fields(
        api: tuple[World, KubeClient]) -> None:
    world, client = api
    pod = {"metadata": {"name": "listed", "namespace": "ns", "labels": {"game.kruise.io/owner-gss": "s"}},
           "spec": {"containers": [{"name": "main"}]}}
    world.create("v1/pods", "ns", copy.deepcopy(pod))
    seeded = world.get("v1/pods", "ns", "listed")
    assert seeded is not None and seeded["metadata"]["managedFields"]  # the API has them
    store = KubeStore(client, "ns", kinds={"Pod": "game.kruise.io/owner-gss"})
    await store.start()
    try:
        world.create("v1/pods", "ns", {**pod, "metadata": {**pod["metadata"], "name": "watched"}})
        written = await store.patch("Pod", "ns", "listed", {"metadata": {"labels": {"x": "1"}}})
        assert "managedFields" not in written["metadata"] and written["metadata"]["labels"]["x"] == "1"
        for _ in range(100):
            if await store.get("Pod", "ns", "watched") is not None:
                break
            await asyncio.sleep(0.02)
        cached = [await store.get("Pod", "ns", name) for name in ("listed", "watched")]
        assert all(obj is not None and "managedFields" not in obj["metadata"] for obj in cached), cached
        server_side = world.get("v1/pods", "ns", "listed")
        assert server_side is not None and server_side["metadata"]["managedFields"]  # the server keeps them
        assert "f:x" in server_side["metadata"]["managedFields"][0]["fieldsV1"]["f:metadata"]["f:labels"]
    finally:
        await store.stop()
