"""A watch-and-list cache of one kind (client-go's reflector + store, in small).

`run()` lists, then watches from the list's resourceVersion; when the stream ends (the server's timeout) it
watches again from the last resourceVersion seen; when the server says 410 Gone (that version is no longer
kept) or the connection fails it backs off and re-lists. A re-list is diffed against the cache, so an object
that disappeared while nobody was watching still produces a DELETED change: consumers are level-triggered,
but they do need to hear about every key that changed.

Writes made through the store are put into the cache at once ("write-through"), so a reconcile that runs
right after its own write reads what it wrote rather than the version before it. To keep a late watch event
from rolling the cache back, a cached object is only replaced by one with a higher resourceVersion.
The API says resourceVersions are opaque; etcd's are integers, and where both are not, any difference counts
as newer (the plain client-go behaviour).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from gamekeeper.kube.client import Gone, KubeClient
from gamekeeper.kube.resources import Resource
from gamekeeper.ports.store import NotFound, Obj

log = logging.getLogger("gamekeeper.kube.informer")

Key = tuple[str, str]
Listener = Callable[[str, Obj], None]  # (ADDED | MODIFIED | DELETED, object)


def rv_older(candidate: str | None, current: str | None) -> bool:
    """Whether `candidate` is known to be an earlier resourceVersion than `current` (see the module docstring).

    Only integer versions can be ordered; anything else is never "older", so it replaces what is cached.
    """
    if candidate is None or current is None or not (candidate.isdigit() and current.isdigit()):
        return False
    return int(candidate) < int(current)


def key_of(obj: Obj) -> Key:
    meta = obj.get("metadata") or {}
    return (str(meta.get("namespace") or ""), str(meta.get("name") or ""))


def strip(obj: Obj) -> None:
    """Drop what no reconcile reads before caching (controller-runtime's TransformStripManagedFields).

    managedFields is the API server's record of who wrote which field: often a third of an object or more, read
    by nothing here, and kept by the server on an update that omits it, so a replace of a cached object loses
    nothing."""
    meta = obj.get("metadata")
    if isinstance(meta, dict):
        meta.pop("managedFields", None)


@dataclass
class InformerStats:
    lists: int = 0
    watches: int = 0
    gone: int = 0
    errors: int = 0
    events: int = 0
    last_error: str = ""
    restarts: list[str] = field(default_factory=list)


class CrdMissing(Exception):
    pass


class Informer:
    def __init__(
        self,
        client: KubeClient,
        resource: Resource,
        namespace: str | None = None,
        label_selector: str | None = None,
        watch_timeout: int = 300,
        backoff_max: float = 30.0,
        rng: random.Random | None = None,
    ) -> None:
        self.client = client
        self.resource = resource
        self.namespace = namespace
        self.label_selector = label_selector
        self.watch_timeout = watch_timeout
        self.backoff_max = backoff_max
        self.rng = rng or random.Random()
        self.cache: dict[Key, Obj] = {}
        self.synced = asyncio.Event()
        self.error: Exception | None = None
        self.stats = InformerStats()
        self.listeners: list[Listener] = []
        self._tombstones: dict[Key, str] = {}  # resourceVersion at which we saw a delete

    @property
    def kind(self) -> str:
        return self.resource.kind

    # -- the cache --------------------------------------------------------------------------------------

    def get(self, namespace: str, name: str) -> Obj | None:
        return self.cache.get((namespace if self.resource.namespaced else "", name))

    def objects(self) -> list[Obj]:
        return list(self.cache.values())

    def observe(self, obj: Obj, deleted: bool = False) -> bool:
        """Put what the API said about an object into the cache; True (and listeners told) if it changed."""
        strip(obj)
        key = key_of(obj)
        rv = (obj.get("metadata") or {}).get("resourceVersion")
        current = self.cache.get(key)
        current_rv = None if current is None else current["metadata"].get("resourceVersion")
        if deleted:
            if current is None or rv_older(rv, current_rv):
                return False  # nothing cached, or the delete of an older incarnation
            del self.cache[key]
            if rv:
                self._tombstones[key] = rv
            self._emit("DELETED", current)
            return True
        if current is not None and (rv == current_rv or rv_older(rv, current_rv)):
            return False
        tombstone = self._tombstones.get(key)
        if current is None and tombstone is not None and (rv == tombstone or rv_older(rv, tombstone)):
            return False  # an event from before the delete we already saw
        self._tombstones.pop(key, None)
        self.cache[key] = obj
        self._emit("MODIFIED" if current is not None else "ADDED", obj)
        return True

    def forget(self, namespace: str, name: str) -> None:
        """The API said 404 for this object: drop it (we cannot know the deletion's resourceVersion)."""
        current = self.cache.pop((namespace if self.resource.namespaced else "", name), None)
        if current is not None:
            self._emit("DELETED", current)

    def _emit(self, change: str, obj: Obj) -> None:
        for listener in self.listeners:
            listener(change, obj)

    # -- list and watch -----------------------------------------------------------------------------------

    async def relist(self) -> str:
        items, rv = await self.client.list(self.resource, self.namespace, self.label_selector)
        self.stats.lists += 1
        seen: set[Key] = set()
        for item in items:
            seen.add(key_of(item))
            self.observe(item)
        for key in [k for k in self.cache if k not in seen]:
            cached_rv = self.cache[key]["metadata"].get("resourceVersion")
            if rv and cached_rv and rv.isdigit() and cached_rv.isdigit() and int(cached_rv) > int(rv):
                continue  # written through after the list was taken: not gone
            obj = self.cache.pop(key)
            self._emit("DELETED", obj)
        self._tombstones.clear()
        return rv

    async def run(self) -> None:
        failures = 0
        rv: str | None = None
        while True:
            try:
                if rv is None:
                    rv = await self.relist()
                    self.synced.set()
                self.stats.watches += 1
                async for event in self.client.watch(
                    self.resource, self.namespace, rv, self.label_selector, self.watch_timeout
                ):
                    failures = 0
                    self.stats.events += 1
                    event_rv = (event.object.get("metadata") or {}).get("resourceVersion")
                    if event.type == "BOOKMARK":
                        rv = event_rv or rv
                        continue
                    self.observe(event.object, deleted=event.type == "DELETED")
                    if event_rv:
                        rv = event_rv
                # The server ended the stream (timeoutSeconds): watch again from where we are.
            except asyncio.CancelledError:
                raise
            except Gone:
                # Too old: re-list at once (no back-off: this is the normal way to catch up).
                self.stats.gone += 1
                self.stats.restarts.append("gone")
                log.info("watch %s: resourceVersion %s expired (410); re-listing", self.resource.plural, rv)
                rv = None
            except NotFound as err:
                self._fail(err, first=not self.synced.is_set())
                rv = None
                failures += 1
                await asyncio.sleep(self._backoff(failures))
            except Exception as err:
                self._fail(err, first=False)
                self.stats.restarts.append("error")
                failures += 1
                await asyncio.sleep(self._backoff(failures))

    def _fail(self, err: Exception, first: bool) -> None:
        self.stats.errors += 1
        self.stats.last_error = str(err)
        if first and isinstance(err, NotFound):
            # The kind is not served at all: most likely its CRD is not installed. Say so once, clearly.
            self.error = CrdMissing(
                f"the API server does not serve {self.resource.plural}.{self.resource.group or 'core'}"
                f"/{self.resource.version}: is its CustomResourceDefinition installed? (gk install)"
            )
            self.synced.set()
        log.warning("watch %s failed: %s", self.resource.plural, err)

    def _backoff(self, failures: int) -> float:
        delay: float = min(0.5 * 2 ** (failures - 1), self.backoff_max)
        return delay * (0.5 + self.rng.random() / 2)
