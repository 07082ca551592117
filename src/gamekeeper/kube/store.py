"""The Store port over the Kubernetes API.

Reads come from a watch-and-list cache per kind (kube/informer.py), as controller-runtime's do: a reconcile
costs no API call, and a thousand game servers cost one watch per kind, not one poll each. Writes go to the
API and are put into the cache at once. Every write that names a resourceVersion is conditional (the API
answers 409 on a stale one); on a 409 the store re-reads the object into the cache before raising Conflict,
so the caller's retry (the work queue re-adds the key at once) starts from the current version.

- patch: always a JSON merge patch (`application/merge-patch+json`), with `metadata.resourceVersion` in the
  body when the caller passes one; `subresource='status'` goes to the status subresource.
- delete: background propagation, so the garbage collector removes dependents (GameServerSet -> Workload ->
  Pod -> GameServer under reclaimPolicy Cascade), as ownerReferences say.
- events: `events.k8s.io/v1`; a repeat of the same event (object, type, reason, message) bumps its series
  count instead of creating another object, like client-go's recorder.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import copy
import logging
import secrets
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from gamekeeper.api.models import OWNER_GSS_KEY
from gamekeeper.api.times import format_time, parse_time
from gamekeeper.kube.client import KubeClient
from gamekeeper.kube.informer import Informer
from gamekeeper.kube.resources import EVENT, Resource, resource_for
from gamekeeper.ports.store import Change, Conflict, EventRecord, NotFound, Obj, StoreError, project

log = logging.getLogger("gamekeeper.kube.store")

# What the controllers read, and which objects of each kind: only pods of a GameServerSet are cached, so the
# operator's memory follows the fleet, not the cluster.
CACHED_KINDS: dict[str, str | None] = {
    "GameServerSet": None,
    "GameServer": None,
    "Workload": None,
    "Pod": OWNER_GSS_KEY,
    "ControllerRevision": OWNER_GSS_KEY,
}
EVENT_CACHE = 4096
DECODE_SLICE = 256  # cached objects decoded between two turns of the event loop (a few ms)
NOTE_LIMIT = 1024


def _matches(obj: Obj, labels: Mapping[str, str] | None) -> bool:
    return not labels or all((obj["metadata"].get("labels") or {}).get(k) == v for k, v in labels.items())


def micro_time(moment: datetime) -> str:
    """metav1.MicroTime, as events.k8s.io and Lease require."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class _Series:
    name: str
    namespace: str
    count: int


class KubeStore:
    def __init__(
        self,
        client: KubeClient,
        namespace: str | None = None,
        kinds: Mapping[str, str | None] | None = None,
        identity: str = "gamekeeper",
        clock: Callable[[], datetime] = utc_now,
        tick_seconds: float = 1.0,
        watch_timeout: int = 300,
    ) -> None:
        self.client = client
        self.namespace = namespace
        self.identity = identity
        self.clock = clock
        self.tick_seconds = tick_seconds
        self.watch_timeout = watch_timeout
        self.informers: dict[str, Informer] = {}
        for kind, selector in (kinds if kinds is not None else CACHED_KINDS).items():
            self.add_kind(kind, selector)
        self._subscribers: list[tuple[asyncio.Queue[Change], set[str] | None]] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._series: OrderedDict[tuple[str, str, str, str], _Series] = OrderedDict()

    # -- lifecycle ----------------------------------------------------------------------------------------

    def add_kind(self, kind: str, label_selector: str | None = None) -> Informer:
        """Cache one more kind (before start)."""
        informer = Informer(
            self.client, resource_for(kind), self.namespace, label_selector, watch_timeout=self.watch_timeout,
            index_label=OWNER_GSS_KEY,
        )
        informer.listeners.append(self._on_informer_change)
        self.informers[kind] = informer
        return informer

    async def start(self) -> None:
        """Start every informer and wait for its first list; a kind the server does not serve is an error."""
        for informer in self.informers.values():
            self._tasks.append(asyncio.create_task(informer.run(), name=f"informer {informer.resource.plural}"))
        await asyncio.gather(*(i.synced.wait() for i in self.informers.values()))
        errors = [str(i.error) for i in self.informers.values() if i.error is not None]
        if errors:
            await self.stop()
            raise StoreError("; ".join(errors))
        log.info("caches synced: %s", ", ".join(f"{k} {len(i.cache)}" for k, i in self.informers.items()))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()

    def synced(self) -> bool:
        return all(i.synced.is_set() and i.error is None for i in self.informers.values())

    # -- change feed ----------------------------------------------------------------------------------------

    def _on_informer_change(self, change: str, obj: Obj) -> None:
        meta = obj.get("metadata") or {}
        rv = str(meta.get("resourceVersion") or "")
        event = Change(int(rv) if rv.isdigit() else 0, str(obj.get("kind")), str(meta.get("namespace") or ""),
                       str(meta.get("name") or ""), change)
        for queue, kinds in self._subscribers:
            if kinds is None or event.kind in kinds:
                queue.put_nowait(event)

    def watch(self, kinds: set[str] | None = None) -> AsyncIterator[Change]:
        """Changes from the moment of the call (subscribed before the consumer lists, so nothing falls between
        the two); a TICK at least every `tick_seconds`, even while changes flow, so the consumer's periodic
        resync is never starved by a busy fleet."""
        queue: asyncio.Queue[Change] = asyncio.Queue()
        entry = (queue, kinds)
        self._subscribers.append(entry)
        return self._watch(entry)

    async def _watch(self, entry: tuple[asyncio.Queue[Change], set[str] | None]) -> AsyncIterator[Change]:
        queue = entry[0]
        loop = asyncio.get_running_loop()
        last_tick = loop.time()
        try:
            while True:
                wait = max(0.0, last_tick + self.tick_seconds - loop.time())
                change = None
                if not queue.empty():
                    change = queue.get_nowait()
                elif wait > 0:
                    # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation that arrives
                    # as the queue yields, and this loop would never stop.
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(wait):
                            change = await queue.get()
                if change is None:
                    last_tick = loop.time()
                    yield Change(0, "*", "", "", "TICK")
                    continue
                yield change
        finally:
            self._subscribers.remove(entry)

    # -- reads ------------------------------------------------------------------------------------------

    def _scoped(self, namespace: str | None) -> bool:
        return self.namespace is None or namespace is None or namespace == self.namespace

    async def get(self, kind: str, namespace: str, name: str) -> Obj | None:
        informer = self.informers.get(kind)
        if informer is not None and self._scoped(namespace):
            return informer.get(namespace, name)
        return await self.client.get(resource_for(kind), namespace, name)

    async def list(
        self, kind: str, namespace: str | None = None, labels: Mapping[str, str] | None = None
    ) -> builtins.list[Obj]:
        return [o async for o in self._listing(kind, namespace, labels)]

    async def _listing(
        self, kind: str, namespace: str | None, labels: Mapping[str, str] | None
    ) -> AsyncIterator[Obj]:
        """The objects, sorted by (namespace, name). From the cache, they are decoded DECODE_SLICE at a time
        with a turn of the loop between slices: decoding 10,000 pods takes a few tenths of a second, which
        would otherwise hold every other task (the prober's ticks, the GameServer queue) for that long."""
        informer = self.informers.get(kind)
        if informer is None:
            selector = ",".join(f"{k}={v}" for k, v in (labels or {}).items()) or None
            listed, _ = await self.client.list(resource_for(kind), namespace, selector)
            for obj in sorted(listed, key=lambda o: (o["metadata"].get("namespace") or "", o["metadata"]["name"])):
                if _matches(obj, labels):
                    yield obj
            return
        entries = informer.entries(namespace, (labels or {}).get(OWNER_GSS_KEY))
        for start in range(0, len(entries), DECODE_SLICE):
            if start:
                await asyncio.sleep(0)
            for obj in informer.decode(entries[start:start + DECODE_SLICE]):
                if _matches(obj, labels):
                    yield obj

    async def list_projected(
        self,
        kind: str,
        paths: Sequence[str],
        namespace: str | None = None,
        labels: Mapping[str, str] | None = None,
    ) -> builtins.list[Obj]:
        informer = self.informers.get(kind)
        others = {k: v for k, v in (labels or {}).items() if k != OWNER_GSS_KEY}
        if informer is None or others:
            # A label other than the owner's may be outside the paths: filter on whole objects.
            return [project(o, paths) async for o in self._listing(kind, namespace, labels)]
        entries = informer.entries(namespace, (labels or {}).get(OWNER_GSS_KEY))
        out: builtins.list[Obj] = []
        for start in range(0, len(entries), DECODE_SLICE):
            if start:
                await asyncio.sleep(0)
            out.extend(informer.projected(tuple(paths), entries[start:start + DECODE_SLICE]))
        return out

    # -- writes -----------------------------------------------------------------------------------------

    def _observe(self, kind: str, obj: Obj | None, deleted: bool = False) -> None:
        informer = self.informers.get(kind)
        if informer is not None and obj is not None:
            informer.observe(obj, deleted=deleted)

    async def _refresh(self, res: Resource, namespace: str, name: str) -> None:
        """After a 409: read the object again so that the caller's retry starts from what is there now."""
        informer = self.informers.get(res.kind)
        if informer is None:
            return
        try:
            current = await self.client.get(res, namespace, name)
        except StoreError as err:
            log.debug("re-read of %s %s/%s after a conflict failed: %s", res.kind, namespace, name, err)
            return
        if current is None:
            informer.forget(namespace, name)
        else:
            informer.observe(current)

    async def create(self, obj: Obj) -> Obj:
        obj = copy.deepcopy(obj)
        meta = obj.setdefault("metadata", {})
        res = resource_for(obj["kind"])
        if res.namespaced:
            meta.setdefault("namespace", self.namespace or "default")
        for key in ("resourceVersion", "uid", "creationTimestamp", "generation", "deletionTimestamp"):
            meta.pop(key, None)
        created = await self.client.create(res, obj)
        self._observe(res.kind, created)
        return created

    async def replace(self, obj: Obj) -> Obj:
        res = resource_for(obj["kind"])
        meta = obj["metadata"]
        try:
            replaced = await self.client.replace(res, obj)
        except Conflict:
            await self._refresh(res, meta.get("namespace", ""), meta["name"])
            raise
        except NotFound:
            self._forget(res, meta.get("namespace", ""), meta["name"])
            raise
        self._observe(res.kind, replaced)
        return replaced

    async def patch(
        self,
        kind: str,
        namespace: str,
        name: str,
        patch: Mapping[str, Any],
        resource_version: str | None = None,
        subresource: str | None = None,
    ) -> Obj:
        res = resource_for(kind)
        if subresource not in (None, "status"):
            raise ValueError(f"patch: unsupported subresource {subresource!r}")
        if subresource == "status" and not res.status_subresource:
            raise ValueError(f"patch: {kind} has no status subresource")
        body: dict[str, Any] = copy.deepcopy(dict(patch))
        if subresource == "status":
            # The status subresource ignores everything but status; say only that, plus the precondition.
            body = {"status": body.get("status") or {}}
        if resource_version is not None:
            body.setdefault("metadata", {})["resourceVersion"] = resource_version
        try:
            patched = await self.client.patch(res, namespace, name, body, subresource)
        except Conflict:
            await self._refresh(res, namespace, name)
            raise
        except NotFound:
            self._forget(res, namespace, name)
            raise
        self._observe(kind, patched)
        return patched

    async def delete(self, kind: str, namespace: str, name: str, resource_version: str | None = None) -> None:
        res = resource_for(kind)
        try:
            remaining = await self.client.delete(res, namespace, name, resource_version)
        except Conflict:
            await self._refresh(res, namespace, name)
            raise
        except NotFound:
            self._forget(res, namespace, name)
            raise
        if remaining is not None and (remaining.get("metadata") or {}).get("deletionTimestamp"):
            self._observe(kind, remaining)  # terminating (finalizers or a pod's grace period)
        else:
            self._forget(res, namespace, name)

    def _forget(self, res: Resource, namespace: str, name: str) -> None:
        informer = self.informers.get(res.kind)
        if informer is not None:
            informer.forget(namespace, name)

    # -- events -----------------------------------------------------------------------------------------

    async def record_event(
        self, involved: Obj, type: str, reason: str, message: str, source: str = "gamekeeper"
    ) -> None:
        """An events.k8s.io/v1 Event about `involved`; failures are logged, never raised (as client-go)."""
        meta = involved.get("metadata") or {}
        namespace = str(meta.get("namespace") or self.namespace or "default")
        note = message if len(message) <= NOTE_LIMIT else message[: NOTE_LIMIT - 3] + "..."
        now = micro_time(self.clock())
        key = (str(meta.get("uid") or f"{involved.get('kind')}/{namespace}/{meta.get('name')}"), type, reason, note)
        try:
            series = self._series.get(key)
            if series is not None:
                series.count += 1
                self._series.move_to_end(key)
                try:
                    await self.client.patch(
                        EVENT, series.namespace, series.name,
                        {"series": {"count": series.count, "lastObservedTime": now}},
                    )
                    return
                except NotFound:
                    del self._series[key]  # expired (events live about an hour): start a new one
            name = f"{meta.get('name', 'object')}.{secrets.token_hex(8)}"
            controller = source if "/" in source else f"gamekeeper.io/{source}"
            event = {
                "apiVersion": EVENT.api_version,
                "kind": "Event",
                "metadata": {"name": name, "namespace": namespace},
                "eventTime": now,
                "reportingController": controller[:128],
                "reportingInstance": self.identity[:128],
                "action": reason[:128] or "Update",
                "reason": reason[:128],
                "note": note,
                "type": type,
                "regarding": {
                    "apiVersion": involved.get("apiVersion"),
                    "kind": involved.get("kind"),
                    "name": meta.get("name"),
                    "namespace": meta.get("namespace"),
                    "uid": meta.get("uid"),
                    "resourceVersion": meta.get("resourceVersion"),
                },
            }
            await self.client.create(EVENT, event)
            self._series[key] = _Series(name, namespace, 1)
            while len(self._series) > EVENT_CACHE:
                self._series.popitem(last=False)
        except (TimeoutError, StoreError, OSError) as err:
            log.warning("could not record event %s %s on %s/%s: %s", type, reason, namespace, meta.get("name"), err)

    async def list_events(
        self, namespace: str | None = None, kind: str | None = None, name: str | None = None
    ) -> builtins.list[EventRecord]:
        items, _ = await self.client.list(EVENT, namespace)
        records = []
        for item in items:
            regarding = item.get("regarding") or {}
            if kind is not None and regarding.get("kind") != kind:
                continue
            if name is not None and regarding.get("name") != name:
                continue
            series = item.get("series") or {}
            first = item.get("eventTime") or item.get("deprecatedFirstTimestamp") or ""
            last = series.get("lastObservedTime") or item.get("deprecatedLastTimestamp") or first
            rv = str((item.get("metadata") or {}).get("resourceVersion") or "")
            records.append(EventRecord(
                namespace=str(item["metadata"].get("namespace") or ""),
                kind=str(regarding.get("kind") or ""),
                name=str(regarding.get("name") or ""),
                type=str(item.get("type") or ""),
                reason=str(item.get("reason") or ""),
                message=str(item.get("note") or ""),
                count=int(series.get("count") or item.get("deprecatedCount") or 1),
                first_timestamp=format_time(parse_time(first)),
                last_timestamp=format_time(parse_time(last)),
                source=str(item.get("reportingController") or ""),
                resource_version=int(rv) if rv.isdigit() else 0,
            ))
        return sorted(records, key=lambda r: (r.last_timestamp, r.resource_version))
