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

The cache keeps each object as compact JSON compressed against a per-informer dictionary (`Codec`), not as
parsed dicts: a parsed pod is several KB of Python objects, while the objects of one fleet share nearly all their
text (one template), so against the first object seen a pod compresses to a few dozen bytes. `get` decodes
(17 us for a small pod, less than a deepcopy of it), so every caller gets its own mutable copy and nothing
a caller does can corrupt the cache. Objects are kept whole (managedFields apart): nothing is lost when the
operator writes back what it read, and `gk`'s `-o yaml` and the ops API show objects as the server has them.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import sys
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from gamekeeper.kube.client import Gone, KubeClient
from gamekeeper.kube.resources import Resource
from gamekeeper.ports.store import NotFound, Obj, project

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


# zlib's window: a dictionary longer than this is truncated by zlib itself.
ZDICT_MAX = 32 * 1024
# Distinct path sets whose projections are memoised; callers ask for a few fixed ones, so more means a caller
# builds paths on the fly, and the oldest memo is dropped rather than growing without bound.
PROJECTIONS_MAX = 8


class Codec:
    """Compact JSON deflated against a preset dictionary: the first object encoded, fixed for the codec's life
    (every blob needs the dictionary it was made with). Objects of one kind in one fleet are built from one
    template, so the dictionary holds most of each one's text; an unlike object only compresses less."""

    def __init__(self) -> None:
        self.zdict: bytes | None = None

    def encode(self, obj: Obj) -> bytes:
        text = json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()
        if self.zdict is None:
            self.zdict = text[-ZDICT_MAX:]
        deflate = zlib.compressobj(6, zlib.DEFLATED, -15, 9, zlib.Z_DEFAULT_STRATEGY, zdict=self.zdict)
        return deflate.compress(text) + deflate.flush()

    def _inflate(self, blob: bytes) -> bytes:
        assert self.zdict is not None  # a blob exists only once encode has set it
        inflate = zlib.decompressobj(-15, zdict=self.zdict)
        return inflate.decompress(blob) + inflate.flush()

    def decode(self, blob: bytes) -> Obj:
        obj: Obj = json.loads(self._inflate(blob))
        return obj

    def decode_many(self, blobs: Sequence[bytes]) -> list[Obj]:
        """One parse for all: json's parser shares the key strings of the objects it builds in one call, so
        the listing's objects do not each carry their own copy of "metadata", "labels", ..."""
        if not blobs:
            return []
        objs: list[Obj] = json.loads(b"[" + b",".join(self._inflate(blob) for blob in blobs) + b"]")
        return objs


class Entry:
    """One cached object: what observe/relist compare and list filters on, beside the encoded object."""

    __slots__ = ("blob", "owner", "rv")

    def __init__(self, rv: str | None, owner: str | None, blob: bytes) -> None:
        self.rv = rv
        self.owner = owner
        self.blob = blob


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
        index_label: str | None = None,
        page_size: int = 500,
    ) -> None:
        self.client = client
        self.resource = resource
        self.namespace = namespace
        self.label_selector = label_selector
        self.watch_timeout = watch_timeout
        self.backoff_max = backoff_max
        self.rng = rng or random.Random()
        # The one label whose value every cached entry carries beside its blob (the owning set), so a listing
        # of one set's objects decodes only those.
        self.index_label = index_label
        self.page_size = page_size
        self.codec = Codec()
        self.cache: dict[Key, Entry] = {}
        # paths -> (its codec, key -> (the resourceVersion projected, the projection encoded))
        self._projections: dict[tuple[str, ...], tuple[Codec, dict[Key, tuple[str | None, bytes]]]] = {}
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
        """A fresh copy of the cached object (the caller may change it)."""
        entry = self.cache.get((namespace if self.resource.namespaced else "", name))
        return None if entry is None else self.codec.decode(entry.blob)

    def entries(self, namespace: str | None = None, owner: str | None = None) -> list[tuple[Key, Entry]]:
        """The cached entries by (namespace, name), in one namespace and of one owner (`index_label`) if given.
        Entries are never changed, only replaced, so this is the cache of one moment however long the caller
        takes to decode it."""
        return sorted(
            (item for item in self.cache.items()
             if (namespace is None or item[0][0] == namespace) and (owner is None or item[1].owner == owner)),
            key=lambda item: item[0],
        )

    def decode(self, entries: Sequence[tuple[Key, Entry]]) -> list[Obj]:
        """Fresh copies of these entries' objects."""
        return self.codec.decode_many([entry.blob for _, entry in entries])

    def projected(self, paths: tuple[str, ...], entries: Sequence[tuple[Key, Entry]]) -> list[Obj]:
        """`project(obj, paths)` of these entries' objects, from a memo: a projection is a few fields, so
        decoding it costs a fraction of decoding the object. An entry is projected again when its
        resourceVersion moved (on the next listing that reaches it, so a write costs nothing here)."""
        memo = self._projections.pop(paths, None)
        if memo is None:
            memo = (Codec(), {})
            while len(self._projections) >= PROJECTIONS_MAX:
                self._projections.pop(next(iter(self._projections)))
        self._projections[paths] = memo  # most recently used last
        codec, blobs = memo
        hits: list[bytes] = []
        misses: list[tuple[Key, Entry]] = []
        for key, entry in entries:
            done = blobs.get(key)
            if done is not None and done[0] == entry.rv:
                hits.append(done[1])
            else:
                misses.append((key, entry))
        fresh: dict[Key, Obj] = {}
        for (key, entry), obj in zip(misses, self.decode(misses), strict=True):
            view = fresh[key] = project(obj, paths)
            if self.cache.get(key) is entry:  # not written or deleted since the listing began
                blobs[key] = (entry.rv, codec.encode(view))
        remembered = iter(codec.decode_many(hits))
        return [fresh[key] if key in fresh else next(remembered) for key, _ in entries]

    def _drop(self, key: Key) -> None:
        for _, blobs in self._projections.values():
            blobs.pop(key, None)

    def _entry(self, obj: Obj, rv: str | None) -> Entry:
        owner = None
        if self.index_label is not None:
            value = ((obj.get("metadata") or {}).get("labels") or {}).get(self.index_label)
            # Interned: every server of a set shares one string.
            owner = None if value is None else sys.intern(str(value))
        return Entry(rv, owner, self.codec.encode(obj))

    def observe(self, obj: Obj, deleted: bool = False) -> bool:
        """Put what the API said about an object into the cache; True (and listeners told) if it changed."""
        strip(obj)
        key = key_of(obj)
        rv = (obj.get("metadata") or {}).get("resourceVersion")
        current = self.cache.get(key)
        current_rv = None if current is None else current.rv
        if deleted:
            if current is None or rv_older(rv, current_rv):
                return False  # nothing cached, or the delete of an older incarnation
            del self.cache[key]
            self._drop(key)
            if rv:
                self._tombstones[key] = rv
            self._emit("DELETED", self.codec.decode(current.blob))
            return True
        if current is not None and (rv == current_rv or rv_older(rv, current_rv)):
            return False
        tombstone = self._tombstones.get(key)
        if current is None and tombstone is not None and (rv == tombstone or rv_older(rv, tombstone)):
            return False  # an event from before the delete we already saw
        self._tombstones.pop(key, None)
        self.cache[key] = self._entry(obj, rv)
        self._emit("MODIFIED" if current is not None else "ADDED", obj)
        return True

    def forget(self, namespace: str, name: str) -> None:
        """The API said 404 for this object: drop it (we cannot know the deletion's resourceVersion)."""
        key = (namespace if self.resource.namespaced else "", name)
        current = self.cache.pop(key, None)
        self._drop(key)
        if current is not None:
            self._emit("DELETED", self.codec.decode(current.blob))

    def _emit(self, change: str, obj: Obj) -> None:
        for listener in self.listeners:
            listener(change, obj)

    # -- list and watch -----------------------------------------------------------------------------------

    async def relist(self) -> str:
        # In pages (client-go's pager does the same): the peak is one page of parsed objects, not the whole
        # fleet's, and CPython keeps the arenas of such a peak for the life of the process.
        seen: set[Key] = set()
        rv = ""
        async for items, page_rv in self.client.list_pages(
            self.resource, self.namespace, self.label_selector, self.page_size
        ):
            rv = page_rv
            for item in items:
                seen.add(key_of(item))
                self.observe(item)
        self.stats.lists += 1
        for key in [k for k in self.cache if k not in seen]:
            cached_rv = self.cache[key].rv
            if rv and cached_rv and rv.isdigit() and cached_rv.isdigit() and int(cached_rv) > int(rv):
                continue  # written through after the list was taken: not gone
            entry = self.cache.pop(key)
            self._drop(key)
            self._emit("DELETED", self.codec.decode(entry.blob))
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
