"""The watch cache keeps no managedFields (the server's field ownership, which no reconcile reads)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from bench.kube_emulator import Emulator

from gamekeeper.kube.client import KubeClient
from gamekeeper.kube.store import KubeStore

pytestmark = pytest.mark.asyncio


@pytest_asyncio.fixture
async def api() -> AsyncIterator[tuple[Emulator, KubeClient]]:
    emulator = Emulator()
    client = KubeClient(await emulator.start())
    try:
        yield emulator, client
    finally:
        await client.close()
        await emulator.stop()


async def test_listed_watched_and_written_objects_are_cached_without_managed_fields(
        api: tuple[Emulator, KubeClient]) -> None:
    emulator, client = api
    pod = {"metadata": {"name": "listed", "namespace": "ns", "labels": {"game.kruise.io/owner-gss": "s"}},
           "spec": {"containers": [{"name": "main"}]}}
    emulator.seed("Pod", pod)
    assert emulator.objects["pods"][("ns", "listed")]["metadata"]["managedFields"]  # the API has them
    store = KubeStore(client, "ns", kinds={"Pod": "game.kruise.io/owner-gss"})
    await store.start()
    try:
        emulator.seed("Pod", {**pod, "metadata": {**pod["metadata"], "name": "watched"}})
        written = await store.patch("Pod", "ns", "listed", {"metadata": {"labels": {"x": "1"}}})
        assert "managedFields" not in written["metadata"] and written["metadata"]["labels"]["x"] == "1"
        for _ in range(100):
            if await store.get("Pod", "ns", "watched") is not None:
                break
            await asyncio.sleep(0.02)
        cached = [await store.get("Pod", "ns", name) for name in ("listed", "watched")]
        assert all(obj is not None and "managedFields" not in obj["metadata"] for obj in cached), cached
        assert emulator.objects["pods"][("ns", "listed")]["metadata"]["managedFields"]  # the server keeps them
    finally:
        await store.stop()
