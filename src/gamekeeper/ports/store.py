"""The Store port: what the controllers need from a Kubernetes-like API, and nothing more.

Objects are Kubernetes-shaped dicts. Every write is compare-and-swap on `metadata.resourceVersion` when the
caller passes one, and atomic (read-modify-write in one transaction) otherwise. Deleting an object whose
`finalizers` are not empty only marks it (`deletionTimestamp`); removing its last finalizer removes it, and
its dependents (ownerReferences) go with it.
"""

from __future__ import annotations

import builtins
import functools
import json
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

Obj = dict[str, Any]


def spec_version(obj: Obj) -> tuple[str, object]:
    """What changes when an object's spec does: its uid and generation (resourceVersion where a store keeps no
    generation, which changes more often but never misses a spec change). A set's status changes with every
    GameServer state change; what is derived from its spec alone is recomputed only when this changes."""
    meta = obj["metadata"]
    return str(meta.get("uid", "")), meta.get("generation", meta.get("resourceVersion"))


# Always part of a projection: what identifies the object and what a CAS write needs.
IDENTITY_PATHS = ("metadata.namespace", "metadata.name", "metadata.resourceVersion")


def project(obj: Obj, paths: Sequence[str]) -> Obj:
    """The part of `obj` at the dotted `paths` (plus IDENTITY_PATHS), in the object's own shape, so code reading
    `p["metadata"]["labels"]` reads a projection unchanged. A path the object lacks is absent from the result.
    A path may end in a filter on a list of objects, `status.conditions[type=Ready]`: only the items whose field
    has that value are kept (a list, possibly empty). The values are the object's own (not copied): a projection
    is for reading."""
    out: Obj = {}
    for path in (*IDENTITY_PATHS, *paths):
        keys, keep = split_path(path)
        src: Any = obj
        for key in keys:
            if not isinstance(src, dict) or key not in src:
                break
            src = src[key]
        else:
            dst = out
            for key in keys[:-1]:
                dst = dst.setdefault(key, {})
            dst[keys[-1]] = src if keep is None else kept(src, keep)
    return out


def fingerprint(value: Any) -> int:
    """A number that changes when `value` (JSON-shaped) does, for telling whether what a controller reads of an
    object changed. Keys in any order; 64 bits of the text's hash (per process, never stored)."""
    return hash(json.dumps(value, sort_keys=True, separators=(",", ":"), default=str))


@functools.lru_cache(maxsize=256)
def split_path(path: str) -> tuple[tuple[str, ...], tuple[str, str] | None]:
    """A projection path's keys, and its closing filter (field, value) if it has one."""
    keep = None
    if path.endswith("]") and "[" in path:
        path, _, condition = path[:-1].partition("[")
        field, equals, value = condition.partition("=")
        if not equals or not field:
            raise ValueError(f"projection path filter must be [field=value], not [{condition}]")
        keep = (field, value)
    return tuple(path.split(".")), keep


def kept(value: Any, keep: tuple[str, str]) -> Any:
    """The items of a list of objects whose `keep[0]` field equals `keep[1]`; any other value as it is."""
    if not isinstance(value, list):
        return value
    field, wanted = keep
    return [item for item in value if isinstance(item, dict) and item.get(field) == wanted]


class StoreError(Exception):
    pass


class StoreDamaged(StoreError):
    """The store's own files are damaged where a request met them; the message names the file and the fix.
    Retrying cannot help until someone repairs them, so a reconcile that meets it says so in one line, not with a
    traceback, and backs off as with any failure."""


class NotFound(StoreError):
    pass


class Conflict(StoreError):
    """The object changed since it was read (stale resourceVersion) or already exists."""


class AlreadyExists(Conflict):
    pass


@dataclass(frozen=True)
class Change:
    resource_version: int
    kind: str
    namespace: str
    name: str
    type: str  # ADDED, MODIFIED, DELETED


@dataclass(frozen=True)
class EventRecord:
    namespace: str
    kind: str
    name: str
    type: str
    reason: str
    message: str
    count: int
    first_timestamp: str
    last_timestamp: str
    source: str
    resource_version: int


class Store(Protocol):
    async def get(self, kind: str, namespace: str, name: str) -> Obj | None: ...

    async def list(
        self, kind: str, namespace: str | None = None, labels: Mapping[str, str] | None = None
    ) -> builtins.list[Obj]: ...

    async def list_projected(
        self,
        kind: str,
        paths: Sequence[str],
        namespace: str | None = None,
        labels: Mapping[str, str] | None = None,
    ) -> builtins.list[Obj]:
        """`list`, but each object reduced to `project(obj, paths)`: what set-wide steps read of 10,000 pods
        (names, labels, a condition) without building 10,000 whole objects. Same order and filters as `list`."""
        ...

    async def create(self, obj: Obj) -> Obj: ...

    async def replace(self, obj: Obj) -> Obj:
        """Write the whole object; requires metadata.resourceVersion to match (409 otherwise)."""
        ...

    async def patch(
        self,
        kind: str,
        namespace: str,
        name: str,
        patch: Mapping[str, Any],
        resource_version: str | None = None,
        subresource: str | None = None,
    ) -> Obj:
        """JSON merge patch (RFC 7386). `subresource='status'` changes only status; otherwise status is kept."""
        ...

    async def delete(self, kind: str, namespace: str, name: str, resource_version: str | None = None) -> None: ...

    async def record_event(
        self, involved: Obj, type: str, reason: str, message: str, source: str = "gamekeeper"
    ) -> None: ...

    async def list_events(
        self, namespace: str | None = None, kind: str | None = None, name: str | None = None
    ) -> builtins.list[EventRecord]: ...

    def watch(self, kinds: set[str] | None = None) -> AsyncIterator[Change]:
        """Changes after the moment of the call, in order; the first item may be a resync marker."""
        ...
