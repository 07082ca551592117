"""kmock's Kubernetes emulator, wrapped to add what the operator relies on and kmock 0.8 lacks.

kmock keeps the HTTP server, request parsing, API discovery, the request log (`emulator.requests`) and its
reaction DSL (a test can still inject any answer with `emulator[...] << ...`, which wins over the default
handlers). The default handlers are replaced by `World`, an in-memory API server with the semantics the
operator depends on:

- a global resourceVersion; a write carrying a stale one (merge-patch body, PUT body, delete preconditions)
  gets 409 Conflict; create answers 201 and a duplicate 409 AlreadyExists; generation bumps on spec changes;
- label selectors (equality and set-based) on list and watch;
- status isolation: the main resource ignores status, `/status` changes only status; `/scale` for
  GameServerSets (what `kubectl scale` uses);
- watch from a resourceVersion (replay from a bounded history, 410 Gone when it was compacted away),
  timeoutSeconds, and helpers to cut streams or compact history;
- finalizers, graceful pod deletion (deletionTimestamp, a fake kubelet finishes it) and background
  cascading deletion through ownerReferences (the garbage collector);
- a fake `pods/exec` websocket endpoint speaking `v4.channel.k8s.io`, answered by a Python callable;
- with `World(managed_fields=True)`, `metadata.managedFields` as a real API server keeps it (kmock has none), for
  tests of what the operator must not cache.

Strategic merge patches are applied as JSON merge patches (lists replaced, not merged by key); the
operator itself only sends merge patches.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import re
import secrets
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aiohttp.web
import attrs
import jsonpatch
import kmock

ExecHandler = Callable[[str, str, str, list[str]], Awaitable[tuple[int, bytes, bytes]]]
WriteHook = Callable[["World", str, str, str, str], None]


def now_text() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def merge_patch(target: Any, patch: Any) -> Any:
    if not isinstance(patch, Mapping):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, Mapping) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def fields_v1(value: Any) -> Any:
    """The shape of the fields in `value` as managedFields' FieldsV1 records them (lists of named items by key)."""
    if isinstance(value, Mapping):
        return {f"f:{k}": fields_v1(v) for k, v in value.items()
                if k not in ("resourceVersion", "uid", "creationTimestamp", "generation", "managedFields")}
    if isinstance(value, list) and value and all(isinstance(v, Mapping) for v in value):
        out: dict[str, Any] = {}
        for item in value:
            key = next((k for k in ("name", "type", "uid") if k in item), None)
            label = f'k:{{"{key}":{json.dumps(item[key])}}}' if key else f"v:{json.dumps(item, sort_keys=True)}"
            out[label] = {".": {}, **fields_v1(item)}
        return out
    return {}


class ApiFailure(Exception):
    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.status, self.reason, self.message = status, reason, message


# -- label selectors -----------------------------------------------------------------------------------

_SET_RE = re.compile(r"^\s*([A-Za-z0-9./_-]+)\s+(in|notin)\s+\(([^)]*)\)\s*$")


def _split_selector(text: str) -> list[str]:
    parts, depth, current = [], 0, ""
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += ch
    if current.strip():
        parts.append(current)
    return parts


def parse_selector(text: str | None) -> Callable[[Mapping[str, str]], bool]:
    """A label selector (`a=b,c!=d,e,!f,g in (x,y),h notin (z)`) as a predicate; bad syntax is a 400."""
    if not text:
        return lambda labels: True
    tests: list[Callable[[Mapping[str, str]], bool]] = []
    for raw in _split_selector(text):
        term = raw.strip()
        if m := _SET_RE.match(term):
            key, op, values = m.group(1), m.group(2), {v.strip() for v in m.group(3).split(",")}
            if op == "in":
                tests.append(lambda lb, k=key, vs=values: lb.get(k) in vs)
            else:
                tests.append(lambda lb, k=key, vs=values: lb.get(k) not in vs)
        elif "!=" in term:
            key, value = (s.strip() for s in term.split("!=", 1))
            tests.append(lambda lb, k=key, v=value: lb.get(k) != v)
        elif "==" in term or "=" in term:
            key, value = (s.strip() for s in re.split("==|=", term, maxsplit=1))
            tests.append(lambda lb, k=key, v=value: lb.get(k) == v)
        elif term.startswith("!"):
            absent = term[1:].strip()
            tests.append(lambda lb, k=absent: k not in lb)
        elif re.fullmatch(r"[A-Za-z0-9./_-]+", term):
            tests.append(lambda lb, k=term: k in lb)
        else:
            raise ApiFailure(400, "BadRequest", f"unable to parse requirement: {term!r}")
    return lambda labels: all(t(labels) for t in tests)


def parse_field_selector(text: str | None) -> Callable[[Mapping[str, Any]], bool]:
    if not text:
        return lambda obj: True
    tests = []
    for term in text.split(","):
        key, _, value = term.partition("=")
        if key not in ("metadata.name", "metadata.namespace"):
            raise ApiFailure(400, "BadRequest", f'field label not supported: "{key}"')
        attr = key.split(".", 1)[1]
        tests.append(lambda obj, a=attr, v=value: (obj.get("metadata") or {}).get(a) == v)
    return lambda obj: all(t(obj) for t in tests)


# -- the in-memory API server -------------------------------------------------------------------------------


@dataclass
class Kind:
    kind: str
    api_version: str
    namespaced: bool = True
    status: bool = False
    scale: bool = False


@dataclass
class HistoryEntry:
    rv: int
    resource: str
    type: str
    obj: dict[str, Any]


@dataclass(repr=False)
class World:
    """Objects by (resource, namespace, name); resource keys look like `game.kruise.io/v1alpha1/gameservers`."""

    kinds: dict[str, Kind] = field(default_factory=dict)
    objects: dict[tuple[str, str, str], dict[str, Any]] = field(default_factory=dict)
    rv: int = 100
    history: list[HistoryEntry] = field(default_factory=list)
    history_limit: int = 10_000
    pod_grace: bool = True
    exec_handler: ExecHandler | None = None
    before_write: list[WriteHook] = field(default_factory=list)
    conflicts: int = 0
    watch_epoch: int = 0
    managed_fields: bool = False
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    # -- helpers ----------------------------------------------------------------------------------------

    def kind_of(self, resource: str) -> Kind:
        try:
            return self.kinds[resource]
        except KeyError:
            raise ApiFailure(404, "NotFound", f"the server could not find the resource {resource}") from None

    def resource_of_kind(self, kind: str) -> str:
        for key, info in self.kinds.items():
            if info.kind == kind:
                return key
        raise KeyError(kind)

    def _record(self, resource: str, type_: str, obj: dict[str, Any]) -> None:
        self.history.append(HistoryEntry(self.rv, resource, type_, copy.deepcopy(obj)))
        if len(self.history) > self.history_limit:
            del self.history[: len(self.history) - self.history_limit]
        self._changed.set()
        self._changed = asyncio.Event()

    def _bump(self, obj: dict[str, Any]) -> None:
        self.rv += 1
        obj["metadata"]["resourceVersion"] = str(self.rv)

    def compact(self) -> None:
        """Forget all history, as etcd compaction does: a watch from any earlier version gets 410."""
        self.history.clear()

    def break_watches(self) -> None:
        """Cut every open watch stream (as a restarted API server or a dropped connection would)."""
        self.watch_epoch += 1
        self._changed.set()
        self._changed = asyncio.Event()

    async def wait_change(self, timeout: float) -> None:
        """Return after the next write (or after `timeout`)."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._changed.wait()

    def get(self, resource: str, namespace: str, name: str) -> dict[str, Any] | None:
        obj = self.objects.get((resource, namespace, name))
        return copy.deepcopy(obj) if obj is not None else None

    def find(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        return self.get(self.resource_of_kind(kind), namespace, name)

    def all(self, kind: str, namespace: str | None = None) -> list[dict[str, Any]]:
        resource = self.resource_of_kind(kind)
        return [copy.deepcopy(o) for (r, ns, _), o in sorted(self.objects.items())
                if r == resource and (namespace is None or ns == namespace)]

    def _require(self, resource: str, namespace: str, name: str) -> dict[str, Any]:
        obj = self.objects.get((resource, namespace, name))
        if obj is None:
            kind = self.kind_of(resource)
            raise ApiFailure(404, "NotFound", f'{resource.rsplit("/", 1)[-1]} "{name}" not found ({kind.kind})')
        return obj

    def _precondition(self, obj: dict[str, Any], expected: str | None) -> None:
        if expected is not None and expected != obj["metadata"]["resourceVersion"]:
            self.conflicts += 1
            raise ApiFailure(
                409, "Conflict",
                f'Operation cannot be fulfilled on {obj["kind"]} "{obj["metadata"]["name"]}": the object has been '
                "modified; please apply your changes to the latest version and try again",
            )

    def _manage(self, obj: dict[str, Any], written: Any, subresource: str | None) -> None:
        """Record the write in managedFields as one manager ("gamekeeper": the tests' only writer) would."""
        if not self.managed_fields:
            return
        meta = obj["metadata"]
        entries = [dict(e) for e in meta.get("managedFields") or []]
        entry = next((e for e in entries if e.get("subresource", "") == (subresource or "")), None)
        if entry is None:
            entry = {"manager": "gamekeeper", "operation": "Update", "apiVersion": obj["apiVersion"],
                     "fieldsType": "FieldsV1", "fieldsV1": {}, **({"subresource": subresource} if subresource else {})}
            entries.append(entry)
        entry["time"] = now_text()
        entry["fieldsV1"] = merge_patch(entry["fieldsV1"], fields_v1(written))
        meta["managedFields"] = entries

    def _hooks(self, verb: str, resource: str, namespace: str, name: str) -> None:
        for hook in list(self.before_write):
            hook(self, verb, resource, namespace, name)

    # -- writes -------------------------------------------------------------------------------------------

    def create(self, resource: str, namespace: str | None, body: Mapping[str, Any]) -> dict[str, Any]:
        kind = self.kind_of(resource)
        obj = copy.deepcopy(dict(body))
        meta = obj.setdefault("metadata", {})
        if not meta.get("name"):
            if not meta.get("generateName"):
                raise ApiFailure(422, "Invalid", "metadata.name: Required value")
            meta["name"] = meta["generateName"] + secrets.token_hex(3)[:5]
        if kind.namespaced:
            if namespace and meta.get("namespace") and meta["namespace"] != namespace:
                raise ApiFailure(400, "BadRequest", "the namespace of the object does not match the request")
            meta["namespace"] = namespace or meta.get("namespace") or "default"
        else:
            meta.pop("namespace", None)
        ns = meta.get("namespace", "")
        self._hooks("create", resource, ns, meta["name"])
        if (resource, ns, meta["name"]) in self.objects:
            raise ApiFailure(409, "AlreadyExists", f'{kind.kind} "{meta["name"]}" already exists')
        obj["apiVersion"], obj["kind"] = kind.api_version, kind.kind
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = now_text()
        meta["generation"] = 1
        for key in ("deletionTimestamp", "deletionGracePeriodSeconds", "managedFields"):
            meta.pop(key, None)
        if kind.status:
            obj.pop("status", None)
            if kind.kind == "Pod":
                obj["status"] = {"phase": "Pending"}
        self._manage(obj, obj, None)
        self._bump(obj)
        self.objects[(resource, ns, meta["name"])] = obj
        self._record(resource, "ADDED", obj)
        return copy.deepcopy(obj)

    def update(
        self,
        resource: str,
        namespace: str,
        name: str,
        change: Callable[[dict[str, Any]], dict[str, Any]],
        subresource: str | None,
        expected_rv: str | None,
    ) -> dict[str, Any]:
        """Apply `change` to a copy; keep what the (sub)resource may not change; write if anything did."""
        kind = self.kind_of(resource)
        self._hooks("update", resource, namespace, name)
        old = self._require(resource, namespace, name)
        self._precondition(old, expected_rv)
        new = change(copy.deepcopy(old))
        meta, old_meta = new.setdefault("metadata", {}), old["metadata"]
        for key in ("uid", "creationTimestamp", "name", "namespace", "resourceVersion", "generation"):
            if key in old_meta:
                meta[key] = old_meta[key]
        # managedFields are the server's: a writer cannot set them, and a PUT of a stripped copy keeps them.
        for key in ("deletionTimestamp", "deletionGracePeriodSeconds", "managedFields"):
            if key in old_meta:
                meta[key] = old_meta[key]
            else:
                meta.pop(key, None)
        new["apiVersion"], new["kind"] = old["apiVersion"], old["kind"]
        if subresource == "status":
            status = new.get("status")
            new = copy.deepcopy(old)
            if status is None:
                new.pop("status", None)
            else:
                new["status"] = status
        elif kind.status:
            if "status" in old:
                new["status"] = copy.deepcopy(old["status"])
            else:
                new.pop("status", None)
        if new == old:
            return copy.deepcopy(old)
        if new.get("spec") != old.get("spec"):
            meta["generation"] = old_meta.get("generation", 1) + 1
        self._manage(new, new, subresource)
        self._bump(new)
        # An object being deleted goes once its last finalizer is removed; a pod in its grace period waits
        # for the kubelet instead (a delete with gracePeriodSeconds 0).
        if meta.get("deletionTimestamp") and not meta.get("finalizers") and "deletionGracePeriodSeconds" not in meta:
            self._remove(resource, new)
            return copy.deepcopy(new)
        self.objects[(resource, namespace, name)] = new
        self._record(resource, "MODIFIED", new)
        return copy.deepcopy(new)

    def patch(
        self, resource: str, namespace: str, name: str, body: Any, content_type: str, subresource: str | None
    ) -> dict[str, Any]:
        if subresource == "scale":
            replicas = ((body or {}).get("spec") or {}).get("replicas")
            if not isinstance(replicas, int):
                raise ApiFailure(422, "Invalid", "spec.replicas: must be an integer")
            self.update(resource, namespace, name, lambda o: merge_patch(o, {"spec": {"replicas": replicas}}),
                        None, None)
            return self.scale(resource, namespace, name)
        if "json-patch" in content_type:
            if not isinstance(body, list):
                raise ApiFailure(400, "BadRequest", "a JSON patch must be a list")

            def apply(obj: dict[str, Any]) -> dict[str, Any]:
                try:
                    return jsonpatch.apply_patch(obj, body)
                except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as err:
                    raise ApiFailure(422, "Invalid", f"the JSON patch failed: {err}") from None

            return self.update(resource, namespace, name, apply, subresource, None)
        if not isinstance(body, Mapping):
            raise ApiFailure(400, "BadRequest", "a merge patch must be an object")
        expected = (body.get("metadata") or {}).get("resourceVersion")
        return self.update(resource, namespace, name, lambda o: merge_patch(o, body), subresource, expected)

    def replace(
        self, resource: str, namespace: str, name: str, body: Mapping[str, Any], subresource: str | None
    ) -> dict[str, Any]:
        if (body.get("metadata") or {}).get("name") not in (None, name):
            raise ApiFailure(400, "BadRequest", "the name of the object does not match the URL")
        expected = (body.get("metadata") or {}).get("resourceVersion")
        return self.update(resource, namespace, name, lambda o: copy.deepcopy(dict(body)), subresource, expected)

    def delete(
        self, resource: str, namespace: str, name: str, options: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        options = options or {}
        self._hooks("delete", resource, namespace, name)
        obj = self._require(resource, namespace, name)
        self._precondition(obj, (options.get("preconditions") or {}).get("resourceVersion"))
        meta = obj["metadata"]
        grace = options.get("gracePeriodSeconds")
        graceful = self.pod_grace and obj["kind"] == "Pod" and grace != 0 and (obj.get("spec") or {}).get("nodeName")
        if meta.get("finalizers") or graceful:
            if not meta.get("deletionTimestamp"):
                meta["deletionTimestamp"] = now_text()
                if graceful:
                    meta["deletionGracePeriodSeconds"] = grace if grace is not None else (
                        obj["spec"].get("terminationGracePeriodSeconds", 30))
                self._bump(obj)
                self._record(resource, "MODIFIED", obj)
            return copy.deepcopy(obj)
        self._bump(obj)
        self._remove(resource, obj)
        return copy.deepcopy(obj)

    def _remove(self, resource: str, obj: dict[str, Any]) -> None:
        meta = obj["metadata"]
        key = (resource, meta.get("namespace", ""), meta["name"])
        self.objects.pop(key, None)
        self._record(resource, "DELETED", obj)
        # The garbage collector, background propagation: dependents go after their owner.
        uid = meta["uid"]
        for (dep_resource, dep_ns, dep_name), dep in list(self.objects.items()):
            owners = dep["metadata"].get("ownerReferences") or []
            if any(o.get("uid") == uid for o in owners) and (
                not self.kinds[dep_resource].namespaced or dep_ns == meta.get("namespace")
            ) and (dep_resource, dep_ns, dep_name) in self.objects:
                self.delete(dep_resource, dep_ns, dep_name, {"propagationPolicy": "Background"})

    # -- reads ----------------------------------------------------------------------------------------------

    def list(
        self, resource: str, namespace: str | None, label_selector: str | None, field_selector: str | None = None
    ) -> dict[str, Any]:
        kind = self.kind_of(resource)
        match = parse_selector(label_selector)
        fields = parse_field_selector(field_selector)
        items = [
            copy.deepcopy(o) for (r, ns, _), o in sorted(self.objects.items())
            if r == resource and (namespace is None or ns == namespace)
            and match(o["metadata"].get("labels") or {}) and fields(o)
        ]
        group_version = kind.api_version
        return {"apiVersion": group_version, "kind": f"{kind.kind}List",
                "metadata": {"resourceVersion": str(self.rv)}, "items": items}

    def scale(self, resource: str, namespace: str, name: str) -> dict[str, Any]:
        if not self.kind_of(resource).scale:
            raise ApiFailure(404, "NotFound", "the server could not find the requested resource")
        obj = self._require(resource, namespace, name)
        return {
            "apiVersion": "autoscaling/v1", "kind": "Scale",
            "metadata": {k: obj["metadata"][k] for k in ("name", "namespace", "uid", "resourceVersion")},
            "spec": {"replicas": obj["spec"].get("replicas", 0)},
            "status": {"replicas": (obj.get("status") or {}).get("replicas", 0),
                       "selector": (obj.get("status") or {}).get("labelSelector", "")},
        }

    async def watch(
        self,
        resource: str,
        namespace: str | None,
        since: str | None,
        label_selector: str | None,
        timeout: float,
    ) -> AsyncIterator[dict[str, Any]]:
        self.kind_of(resource)
        match = parse_selector(label_selector)
        epoch = self.watch_epoch
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout

        def wanted(entry: HistoryEntry) -> bool:
            meta = entry.obj["metadata"]
            return entry.resource == resource and (namespace is None or meta.get("namespace") == namespace) and (
                match(meta.get("labels") or {}))

        if since in (None, "", "0"):
            for (r, ns, _), obj in sorted(self.objects.items()):
                if r == resource and (namespace is None or ns == namespace) and match(
                        obj["metadata"].get("labels") or {}):
                    yield {"type": "ADDED", "object": copy.deepcopy(obj)}
            cursor = self.rv
        else:
            cursor = int(since)
            oldest = self.history[0].rv if self.history else self.rv + 1
            if cursor < oldest - 1:
                yield {"type": "ERROR", "object": {
                    "apiVersion": "v1", "kind": "Status", "status": "Failure", "code": 410, "reason": "Expired",
                    "message": f"too old resource version: {cursor} ({oldest - 1})"}}
                return
        while True:
            if self.watch_epoch != epoch:
                raise ConnectionResetError("watch stream cut by the test")
            pending = [e for e in self.history if e.rv > cursor]
            for entry in pending:
                cursor = entry.rv
                if wanted(entry):
                    yield {"type": entry.type, "object": copy.deepcopy(entry.obj)}
            changed = self._changed
            remaining = deadline - loop.time()
            if remaining <= 0:
                return
            try:
                async with asyncio.timeout(remaining):
                    await changed.wait()
            except TimeoutError:
                return


# -- the kmock wrapper ------------------------------------------------------------------------------------

STANDARD_KINDS = {
    "game.kruise.io/v1alpha1/gameserversets": Kind("GameServerSet", "game.kruise.io/v1alpha1", status=True, scale=True),
    "game.kruise.io/v1alpha1/gameservers": Kind("GameServer", "game.kruise.io/v1alpha1", status=True),
    "gamekeeper.io/v1alpha1/workloads": Kind("Workload", "gamekeeper.io/v1alpha1", status=True),
    "v1/pods": Kind("Pod", "v1", status=True),
    "apps/v1/controllerrevisions": Kind("ControllerRevision", "apps/v1"),
    "v1/namespaces": Kind("Namespace", "v1", namespaced=False, status=True),
    "events.k8s.io/v1/events": Kind("Event", "events.k8s.io/v1"),
    "coordination.k8s.io/v1/leases": Kind("Lease", "coordination.k8s.io/v1"),
}
KRUISE_KINDS = {
    "apps.kruise.io/v1alpha1/podprobemarkers": Kind("PodProbeMarker", "apps.kruise.io/v1alpha1", status=True),
}


def _resource_key(request: kmock.Request) -> str:
    res = request.resource
    assert res is not None
    return f"{res.group}/{res.version}/{res.plural}" if res.group else f"{res.version}/{res.plural}"


@attrs.define(kw_only=True, repr=False)
class KubernetesEmulatorPlus(kmock.KubernetesEmulator):
    world: World = attrs.field(factory=World)
    exec_requests: list[tuple[str, str, str, list[str]]] = attrs.field(factory=list)
    log: list[kmock.Request] = attrs.field(factory=list)  # every API request, in order, for assertions

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        # kmock routes PUT nowhere by default; a replace is an update with the whole object.
        self.fallback[kmock.method.PUT] << self._serve_replace

    def __repr__(self) -> str:
        return f"<KubernetesEmulatorPlus: {len(self.world.objects)} objects, {len(self.log)} requests>"

    def declare(self, kinds: Mapping[str, Kind]) -> None:
        """Make resources exist (in discovery, and for every verb), as installing their CRDs would."""
        for key, info in kinds.items():
            self.world.kinds[key] = info
            subresources = {"status"} if info.status else set()
            if info.scale:
                subresources.add("scale")
            self.resources[key] = kmock.ResourceInfo(
                kind=info.kind, namespaced=info.namespaced, subresources=subresources,
                verbs={"get", "list", "watch", "create", "update", "patch", "delete"},
            )

    # kmock's own handler mutates its store before dispatching; all state lives in `world` here, so only
    # the dispatch (user reactions first, then the defaults below) is kept.
    async def _handle(self, request: kmock.Request) -> aiohttp.web.StreamResponse:
        self.log.append(request)
        return await kmock.RawHandler._handle(self, request)

    def requests_for(self, method: str, plural: str) -> list[kmock.Request]:
        return [r for r in self.log if r.method == method and r.resource is not None and r.resource.plural == plural]

    async def __call__(self, raw_request: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        if raw_request.headers.get("Upgrade", "").lower() == "websocket" and raw_request.path.endswith("/exec"):
            return await self._serve_exec(raw_request)
        if re.fullmatch(r"/api/v1/namespaces(/[^/]+)?", raw_request.path):
            # kmock 0.8's path parser fails on the cluster-scoped `namespaces` collection itself.
            return await self._serve_namespaces(raw_request)
        return await super().__call__(raw_request)

    async def _serve_namespaces(self, raw_request: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        name = raw_request.path.rstrip("/").split("/")[4] if raw_request.path.count("/") > 3 else None
        body = await raw_request.json() if raw_request.can_read_body else None
        try:
            if raw_request.method == "GET" and name is None:
                result = self.world.list("v1/namespaces", None, raw_request.query.get("labelSelector"))
            elif raw_request.method == "GET":
                result = self.world.get("v1/namespaces", "", name or "")
                if result is None:
                    raise ApiFailure(404, "NotFound", f'namespaces "{name}" not found')
            elif raw_request.method == "POST":
                return aiohttp.web.json_response(self.world.create("v1/namespaces", None, body or {}), status=201)
            elif raw_request.method == "PUT":
                result = self.world.replace("v1/namespaces", "", name or "", body or {}, None)
            elif raw_request.method == "DELETE":
                result = self.world.delete("v1/namespaces", "", name or "", body)
            else:
                raise ApiFailure(405, "MethodNotAllowed", raw_request.method)
        except ApiFailure as err:
            return aiohttp.web.json_response({"kind": "Status", "status": "Failure", "code": err.status,
                                              "reason": err.reason, "message": err.message}, status=err.status)
        return aiohttp.web.json_response(result)

    @staticmethod
    def _failure(err: ApiFailure) -> kmock.KubernetesError:
        return kmock.KubernetesError(status=err.status, reason=err.reason, message=err.message, details={})

    def _call(self, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except ApiFailure as err:
            raise self._failure(err) from None

    async def _serve_list(self, request: kmock.Request) -> Any:
        key = _resource_key(request)
        return self._call(lambda: self.world.list(
            key, request.namespace, request.params.get("labelSelector"), request.params.get("fieldSelector")))

    async def _serve_watch(self, request: kmock.Request) -> AsyncIterator[Any]:
        key = _resource_key(request)
        if key not in self.world.kinds:
            raise self._failure(ApiFailure(404, "NotFound", f"the server could not find the resource {key}"))
        yield b""
        timeout = float(request.params.get("timeoutSeconds") or 1800)
        async for event in self.world.watch(
            key, request.namespace, request.params.get("resourceVersion"), request.params.get("labelSelector"),
            timeout,
        ):
            yield event

    async def _serve_fetch(self, request: kmock.Request) -> Any:
        key = _resource_key(request)
        assert request.name is not None

        def fetch() -> Any:
            if request.subresource == "scale":
                return self.world.scale(key, request.namespace or "", request.name or "")
            self.world.kind_of(key)
            obj = self.world.get(key, request.namespace or "", request.name or "")
            if obj is None:
                raise ApiFailure(404, "NotFound", f'"{request.name}" not found')
            return obj

        return self._call(fetch)

    async def _serve_create(self, request: kmock.Request) -> Any:
        key = _resource_key(request)
        if not isinstance(request.data, dict):
            raise self._failure(ApiFailure(400, "BadRequest", "the body must be a JSON object"))
        obj = self._call(lambda: self.world.create(key, request.namespace, request.data))
        return kmock.Response(status=201, payload=obj)

    async def _serve_update(self, request: kmock.Request) -> Any:
        key = _resource_key(request)
        content_type = request.headers.get("Content-Type", "application/merge-patch+json")
        return self._call(lambda: self.world.patch(
            key, request.namespace or "", request.name or "", request.data, content_type, request.subresource))

    async def _serve_replace(self, request: kmock.Request) -> Any:
        if request.resource is None or request.name is None:
            raise self._failure(ApiFailure(405, "MethodNotAllowed", "PUT needs an object URL"))
        key = _resource_key(request)
        return self._call(lambda: self.world.replace(
            key, request.namespace or "", request.name or "", request.data or {}, request.subresource))

    async def _serve_delete(self, request: kmock.Request) -> Any:
        key = _resource_key(request)
        options = request.data if isinstance(request.data, dict) else {}
        return self._call(lambda: self.world.delete(key, request.namespace or "", request.name or "", options))

    async def _serve_exec(self, raw_request: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        match = re.fullmatch(r"/api/v1/namespaces/([^/]+)/pods/([^/]+)/exec", raw_request.path)
        if match is None:
            return aiohttp.web.Response(status=404)
        namespace, pod_name = match.group(1), match.group(2)
        command = raw_request.query.getall("command", [])
        container = raw_request.query.get("container", "")
        pod = self.world.objects.get(("v1/pods", namespace, pod_name))
        if pod is None:
            return aiohttp.web.json_response(
                {"kind": "Status", "status": "Failure", "code": 404, "reason": "NotFound",
                 "message": f'pods "{pod_name}" not found'}, status=404)
        ws = aiohttp.web.WebSocketResponse(protocols=("v4.channel.k8s.io",))
        await ws.prepare(raw_request)  # type: ignore[arg-type]
        self.exec_requests.append((namespace, pod_name, container, list(command)))
        if self.world.exec_handler is None:
            code, out, err = 126, b"", b"no exec handler in this test\n"
        else:
            code, out, err = await self.world.exec_handler(namespace, pod_name, container, list(command))
        if out:
            await ws.send_bytes(b"\x01" + out)
        if err:
            await ws.send_bytes(b"\x02" + err)
        if code == 0:
            status: dict[str, Any] = {"metadata": {}, "status": "Success"}
        else:
            status = {
                "metadata": {}, "status": "Failure", "reason": "NonZeroExitCode",
                "message": f"command terminated with non-zero exit code: exit status {code}",
                "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]},
            }
        await ws.send_bytes(b"\x03" + json.dumps(status).encode())
        await ws.close()
        return ws
