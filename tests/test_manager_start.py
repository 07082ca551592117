"""Watch before list (issue 12, item 7d): a change made while a controller lists everything at start (a probe
result written right after a restart) reaches it at once, not at the next resync 30 s later."""

from __future__ import annotations

import asyncio
import builtins
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import pytest

from gamekeeper.control.manager import ControllerManager
from gamekeeper.kube.client import KubeClient
from gamekeeper.kube.store import KubeStore
from gamekeeper.ports.store import Change, Obj
from gamekeeper.runtime.images import ImageMap
from gamekeeper.runtime.local import LocalRuntime
from gamekeeper.store.sqlite import SqliteState, SqliteStore


def note(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": "default"}}


class WritesWhileListing(SqliteStore):
    """Someone else writes while the manager is in the middle of its initial listing."""

    wrote = False

    async def list(
        self, kind: str, namespace: str | None = None, labels: Mapping[str, str] | None = None
    ) -> builtins.list[Obj]:
        out = await super().list(kind, namespace, labels)
        if not self.wrote:
            self.wrote = True
            self.state.create(note("written-during-listing"))
        return out


@pytest.mark.asyncio
async def test_a_change_during_the_initial_listing_is_seen_without_a_resync(tmp_path: Path) -> None:
    seen: list[Change] = []
    store = WritesWhileListing(SqliteState(tmp_path), resync_seconds=3600)
    manager = ControllerManager(store, LocalRuntime(tmp_path, ImageMap(None, {}), spawner=False),
                                lambda: datetime.now(UTC), resync_seconds=3600, change_listeners=[seen.append])
    task = asyncio.create_task(manager.run())
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 5
        while not any(c.name == "written-during-listing" for c in seen) and loop.time() < deadline:
            await asyncio.sleep(0.02)
        assert store.wrote
        assert [c.type for c in seen if c.name == "written-during-listing"] == ["ADDED"]
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        store.state.close()


@pytest.mark.asyncio
async def test_sqlite_watch_subscribes_when_called(tmp_path: Path) -> None:
    store = SqliteStore(SqliteState(tmp_path), resync_seconds=3600)
    changes = store.watch()
    store.state.create(note("after-the-call"))
    first = await asyncio.wait_for(changes.__anext__(), 5)
    assert (first.name, first.type) == ("after-the-call", "ADDED")
    store.state.close()


@pytest.mark.asyncio
async def test_kube_store_watch_subscribes_when_called() -> None:
    store = KubeStore(cast(KubeClient, object()), kinds={}, tick_seconds=3600)
    changes = store.watch()
    pod = {"kind": "Pod", "metadata": {"name": "p-0", "namespace": "default", "resourceVersion": "7"}}
    store._on_informer_change("MODIFIED", pod)  # an informer's event before the consumer's first read
    first = await asyncio.wait_for(changes.__anext__(), 5)
    assert (first.kind, first.name, first.type, first.resource_version) == ("Pod", "p-0", "MODIFIED", 7)
