"""Notifications where events do not live in SQLite (Kubernetes mode): tap the store's `record_event`.

The tap is a Store that forwards every call, and hands each event the controllers record to the Notifier as
well. The notifier queues and returns at once, so a slow or dead sink never slows a reconcile.
"""

from __future__ import annotations

import builtins
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from gamekeeper.api.times import format_time
from gamekeeper.observe.notify import Notifier
from gamekeeper.ports.store import Change, EventRecord, Obj, Store


class EventTap:
    def __init__(self, store: Store, notifier: Notifier, clock: Callable[[], datetime]) -> None:
        self.inner = store
        self.notifier = notifier
        self.clock = clock

    async def record_event(
        self, involved: Obj, type: str, reason: str, message: str, source: str = "gamekeeper"
    ) -> None:
        await self.inner.record_event(involved, type, reason, message, source)
        meta = involved["metadata"]
        namespace = meta.get("namespace", "default")
        gs = None
        if involved.get("kind") == "GameServer":
            gs = await self.inner.get("GameServer", namespace, meta["name"]) or involved
        stamp = format_time(self.clock())
        self.notifier.submit(
            EventRecord(namespace, involved["kind"], meta["name"], type, reason, message, 1, stamp, stamp, source, 0),
            gs,
        )

    # -- everything else goes straight through ----------------------------------------------------------

    async def get(self, kind: str, namespace: str, name: str) -> Obj | None:
        return await self.inner.get(kind, namespace, name)

    async def list(
        self, kind: str, namespace: str | None = None, labels: Mapping[str, str] | None = None
    ) -> builtins.list[Obj]:
        return await self.inner.list(kind, namespace, labels)

    async def list_projected(
        self,
        kind: str,
        paths: Sequence[str],
        namespace: str | None = None,
        labels: Mapping[str, str] | None = None,
    ) -> builtins.list[Obj]:
        return await self.inner.list_projected(kind, paths, namespace, labels)

    async def create(self, obj: Obj) -> Obj:
        return await self.inner.create(obj)

    async def replace(self, obj: Obj) -> Obj:
        return await self.inner.replace(obj)

    async def patch(
        self,
        kind: str,
        namespace: str,
        name: str,
        patch: Mapping[str, Any],
        resource_version: str | None = None,
        subresource: str | None = None,
    ) -> Obj:
        return await self.inner.patch(kind, namespace, name, patch, resource_version, subresource)

    async def delete(self, kind: str, namespace: str, name: str, resource_version: str | None = None) -> None:
        await self.inner.delete(kind, namespace, name, resource_version)

    async def list_events(
        self, namespace: str | None = None, kind: str | None = None, name: str | None = None
    ) -> builtins.list[EventRecord]:
        return await self.inner.list_events(namespace, kind, name)

    def watch(self, kinds: set[str] | None = None) -> AsyncIterator[Change]:
        return self.inner.watch(kinds)
