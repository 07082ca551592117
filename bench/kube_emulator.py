"""A small Kubernetes API emulator for the Kubernetes-mode bench (bench/kube_scale.py).

Just what `gk operator` uses, over plain HTTP on 127.0.0.1: discovery, list (equality and existence label
selectors; limit/continue pages from one snapshot, 410 for an unknown token), watch from a resourceVersion
(replayed from a bounded history, 410 Gone before it), get, create, JSON merge patch (a
`metadata.resourceVersion` in the body is a precondition: 409 when stale), PUT, the status subresource (the
main resource ignores status and vice versa), delete with background cascade through ownerReferences. One
global resourceVersion; generation bumps on spec changes.

It is not tests/kube/kmock_plus.py (the tests' emulator, built on kmock): that one is made for semantics
and request injection, this one for holding 10,000 pods cheaply, counting requests by verb and kind, and
timing when a write reaches it (the bench reads `requests`, `marks` and `on_write` in-process).
"""

from __future__ import annotations

import asyncio
import collections
import copy
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from gamekeeper.kube.resources import BY_KIND, Resource

Obj = dict[str, Any]
Key = tuple[str, str]  # (namespace, name)
WriteHook = Callable[[str, str, Obj], None]  # (verb, plural, the object as stored)
ExecAnswer = Callable[[str, str, str, list[str]], tuple[int, bytes]]  # (namespace, pod, container, argv)
EXEC_PROTOCOL = "v4.channel.k8s.io"
SERVED = ("GameServerSet", "GameServer", "Workload", "Pod", "ControllerRevision", "Event", "Lease")


def now_text() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def merge_patch(target: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def fields_v1(value: Any) -> Any:
    """The shape of the fields in `value` as managedFields' FieldsV1 records them (lists of named items by key)."""
    if isinstance(value, dict):
        return {f"f:{k}": fields_v1(v) for k, v in value.items()
                if k not in ("resourceVersion", "uid", "creationTimestamp", "generation", "managedFields")}
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        out: dict[str, Any] = {}
        for item in value:
            key = next((k for k in ("name", "type", "uid") if k in item), None)
            label = f'k:{{"{key}":{json.dumps(item[key])}}}' if key else f"v:{json.dumps(item, sort_keys=True)}"
            out[label] = {".": {}, **fields_v1(item)}
        return out
    return {}


def selector_matches(selector: str | None, labels: dict[str, str]) -> bool:
    """Equality (`k=v`, `k==v`, `k!=v`) and existence (`k`, `!k`) terms; set-based ones are not needed here."""
    if not selector:
        return True
    for term in selector.split(","):
        term = term.strip()
        if "!=" in term:
            k, v = term.split("!=", 1)
            if labels.get(k.strip()) == v.strip():
                return False
        elif "=" in term:
            k, v = term.replace("==", "=").split("=", 1)
            if labels.get(k.strip()) != v.strip():
                return False
        elif term.startswith("!"):
            if term[1:] in labels:
                return False
        elif term and term not in labels:
            return False
    return True


class Failure(Exception):
    def __init__(self, code: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.code, self.reason, self.message = code, reason, message

    def response(self) -> web.Response:
        body = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": self.message,
                "reason": self.reason, "code": self.code}
        return web.json_response(body, status=self.code)


@dataclass
class Watcher:
    plural: str
    namespace: str | None
    selector: str | None
    queue: asyncio.Queue[bytes] = field(default_factory=asyncio.Queue)


class Emulator:
    def __init__(self, kruise: bool = False, history: int = 200_000, managed_fields: bool = True) -> None:
        # As a real API server, record who wrote which fields (metadata.managedFields): a real object carries
        # them, and they are often a third of its size or more.
        self.managed_fields = managed_fields
        kinds = [*SERVED, *(["PodProbeMarker"] if kruise else [])]
        self.resources: dict[tuple[str, str, str], Resource] = {}
        for kind in kinds:
            res = BY_KIND[kind]
            self.resources[(res.group, res.version, res.plural)] = res
        self.objects: dict[str, dict[Key, Obj]] = {res.plural: {} for res in self.resources.values()}
        self.rv = 1
        self.history: collections.deque[tuple[int, str, str | None, bytes, dict[str, str]]] = collections.deque(
            maxlen=history)
        self.watchers: list[Watcher] = []
        # (method, plural, subresource or "") -> count; watch streams are counted as ("WATCH", plural, "").
        self.requests: collections.Counter[tuple[str, str, str]] = collections.Counter()
        self.on_write: list[WriteHook] = []
        # pods/exec (the operator's exec probe path): the answer comes from this callable, at once.
        self.exec_answer: ExecAnswer = lambda namespace, pod, container, argv: (0, b"")
        self.last_write = time.monotonic()
        self._continues: dict[str, tuple[int, list[Obj]]] = {}  # list continue token -> (rv, the rest)
        self._runner: web.AppRunner | None = None
        self.url = ""

    # -- serving ------------------------------------------------------------------------------------------

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        app = web.Application(client_max_size=64 * 2**20)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        bound = self._runner.addresses[0]
        self.url = f"http://{bound[0]}:{bound[1]}"
        return self.url

    async def stop(self) -> None:
        for watcher in self.watchers:
            watcher.queue.put_nowait(b"")
        if self._runner is not None:
            await self._runner.cleanup()

    def total_requests(self, include_watches: bool = True) -> int:
        return sum(n for (verb, _, _), n in self.requests.items() if include_watches or verb != "WATCH")

    # -- the store --------------------------------------------------------------------------------------

    def _publish(self, kind: str, plural: str, obj: Obj) -> None:
        meta = obj["metadata"]
        line = json.dumps({"type": kind, "object": obj}, separators=(",", ":")).encode() + b"\n"
        labels = dict(meta.get("labels") or {})
        namespace = meta.get("namespace")
        self.history.append((int(meta["resourceVersion"]), plural, namespace, line, labels))
        for watcher in self.watchers:
            if watcher.plural == plural and watcher.namespace in (None, namespace) and selector_matches(
                    watcher.selector, labels):
                watcher.queue.put_nowait(line)

    def put(self, verb: str, res: Resource, obj: Obj, event: str, written: Obj | None = None,
            subresource: str = "") -> Obj:
        """Store one object at the next resourceVersion and tell the watchers (also used by the bench).

        `written`: what the writer sent (a patch, or the whole object when None), for managedFields; the
        writer is named by `verb` unless it is a request (the operator's, "gamekeeper")."""
        self.rv += 1
        meta = obj["metadata"]
        if self.managed_fields and verb != "COPY":  # COPY: the bench's copies keep the original's entries
            manager = "gamekeeper" if verb in ("POST", "PATCH", "PUT") else verb.lower()
            self._manage(meta, manager, res, fields_v1(written if written is not None else obj), subresource)
        meta["resourceVersion"] = str(self.rv)
        self.objects[res.plural][(meta.get("namespace") or "", meta["name"])] = obj
        self._publish(event, res.plural, obj)
        self.last_write = time.monotonic()
        for hook in self.on_write:
            hook(verb, res.plural, obj)
        return obj

    def _manage(self, meta: Obj, manager: str, res: Resource, fields: Any, subresource: str) -> None:
        entries = [dict(e) for e in meta.get("managedFields") or []]
        entry = next((e for e in entries if e["manager"] == manager and e.get("subresource", "") == subresource),
                     None)
        if entry is None:
            entry = {"manager": manager, "operation": "Update", "apiVersion": res.api_version, "fieldsType": "FieldsV1",
                     "fieldsV1": {}, **({"subresource": subresource} if subresource else {})}
            entries.append(entry)
        entry["time"] = now_text()
        entry["fieldsV1"] = merge_patch(entry["fieldsV1"], fields)
        meta["managedFields"] = entries

    def seed(self, kind: str, obj: Obj) -> Obj:
        """Create an object directly (no request counted): how the bench builds a fleet quickly."""
        res = BY_KIND[kind]
        obj = copy.deepcopy(obj)
        obj.setdefault("apiVersion", res.api_version)
        obj.setdefault("kind", res.kind)
        meta = obj["metadata"]
        meta.setdefault("uid", str(uuid.uuid4()))
        meta.setdefault("creationTimestamp", now_text())
        meta.setdefault("generation", 1)
        return self.put("SEED", res, obj, "ADDED")

    def _remove(self, res: Resource, key: Key) -> None:
        obj = self.objects[res.plural].pop(key)
        self.rv += 1
        obj = {**obj, "metadata": {**obj["metadata"], "resourceVersion": str(self.rv)}}
        self._publish("DELETED", res.plural, obj)
        self.last_write = time.monotonic()
        uid = obj["metadata"].get("uid")
        # The garbage collector, background propagation: dependents go after their owner.
        for other in self.resources.values():
            for okey, dep in list(self.objects[other.plural].items()):
                if any(ref.get("uid") == uid for ref in dep["metadata"].get("ownerReferences") or []):
                    self._remove(other, okey)

    # -- requests -----------------------------------------------------------------------------------------

    def _route(self, path: str) -> tuple[Resource | None, str | None, str | None, str | None, bool]:
        """(resource, namespace, name, subresource, discovery?) for an API path."""
        parts = [p for p in path.split("/") if p]
        if parts[:1] == ["api"]:
            group, version, rest = "", parts[1] if len(parts) > 1 else "", parts[2:]
        elif parts[:1] == ["apis"] and len(parts) >= 3:
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            raise Failure(404, "NotFound", f"no such path {path}")
        if not rest:
            if not any(g == group and v == version for g, v, _ in self.resources):
                raise Failure(404, "NotFound", f"{group}/{version} is not served")
            return None, None, None, None, True
        namespace = None
        if rest[0] == "namespaces" and len(rest) >= 3:
            namespace, rest = rest[1], rest[2:]
        res = self.resources.get((group, version, rest[0]))
        if res is None:
            raise Failure(404, "NotFound", f"the server could not find the requested resource ({path})")
        name = rest[1] if len(rest) > 1 else None
        sub = rest[2] if len(rest) > 2 else None
        return res, namespace, name, sub, False

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        try:
            res, namespace, name, sub, discovery = self._route(request.path)
            if discovery:
                return self._discovery(request.path)
            assert res is not None
            if res.plural == "pods" and sub == "exec" and name is not None:
                self.requests[("EXEC", "pods", "")] += 1
                return await self._exec(request, namespace or "", name)
            if request.method == "GET" and name is None and request.query.get("watch") in ("true", "1"):
                self.requests[("WATCH", res.plural, "")] += 1
                return await self._watch(request, res, namespace)
            self.requests[(request.method, res.plural, sub or "")] += 1
            if request.method == "GET":
                if name is None:
                    return self._list(request, res, namespace)
                return web.json_response(self._get(res, namespace, name))
            body: Obj = await request.json() if request.can_read_body else {}
            if request.method == "POST" and name is None:
                return web.json_response(self._create(res, namespace, body), status=201)
            if name is None:
                raise Failure(405, "MethodNotAllowed", f"{request.method} on a collection")
            if request.method == "PATCH":
                if request.content_type != "application/merge-patch+json":
                    raise Failure(415, "UnsupportedMediaType", f"only merge patches here, not {request.content_type}")
                return web.json_response(self._patch(res, namespace, name, sub, body))
            if request.method == "PUT":
                return web.json_response(self._replace(res, namespace, name, sub, body))
            if request.method == "DELETE":
                return web.json_response(self._delete(res, namespace, name, body))
            raise Failure(405, "MethodNotAllowed", request.method)
        except Failure as failure:
            return failure.response()

    async def _exec(self, request: web.Request, namespace: str, name: str) -> web.StreamResponse:
        """The v4 channel protocol: stdout on channel 1, the Status on channel 3, then close."""
        if (namespace, name) not in self.objects["pods"]:
            raise Failure(404, "NotFound", f'pods "{name}" not found')
        ws = web.WebSocketResponse(protocols=(EXEC_PROTOCOL,))
        await ws.prepare(request)
        code, out = self.exec_answer(namespace, name, request.query.get("container", ""),
                                     request.query.getall("command", []))
        if out:
            await ws.send_bytes(b"\x01" + out)
        status: Obj = {"status": "Success"} if code == 0 else {
            "status": "Failure", "reason": "NonZeroExitCode",
            "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]}}
        await ws.send_bytes(b"\x03" + json.dumps(status).encode())
        await ws.close()
        return ws

    def _discovery(self, path: str) -> web.Response:
        parts = [p for p in path.split("/") if p]
        group, version = ("", parts[1]) if parts[0] == "api" else (parts[1], parts[2])
        resources = [{"name": r.plural, "kind": r.kind, "namespaced": r.namespaced}
                     for (g, v, _), r in self.resources.items() if g == group and v == version]
        return web.json_response({"kind": "APIResourceList", "groupVersion": f"{group}/{version}".lstrip("/"),
                                  "resources": resources})

    def _get(self, res: Resource, namespace: str | None, name: str) -> Obj:
        obj = self.objects[res.plural].get((namespace or "", name))
        if obj is None:
            raise Failure(404, "NotFound", f'{res.plural} "{name}" not found')
        return obj

    def _list(self, request: web.Request, res: Resource, namespace: str | None) -> web.Response:
        token = request.query.get("continue")
        if token:
            # Later pages come from the snapshot the first page took, as the API server serves them from one
            # resourceVersion; an unknown (expired) token is 410, as there.
            snapshot = self._continues.pop(token, None)
            if snapshot is None:
                raise Failure(410, "Expired", "the provided continue parameter is too old")
            rv, items = snapshot
        else:
            selector = request.query.get("labelSelector")
            rv = self.rv
            items = [o for (ns, _), o in self.objects[res.plural].items()
                     if namespace in (None, ns) and selector_matches(selector, o["metadata"].get("labels") or {})]
        limit = int(request.query.get("limit") or 0)
        meta: dict[str, Any] = {"resourceVersion": str(rv)}
        if 0 < limit < len(items):
            items, rest = items[:limit], items[limit:]
            meta["continue"] = uuid.uuid4().hex
            self._continues[meta["continue"]] = (rv, rest)
            while len(self._continues) > 64:
                self._continues.pop(next(iter(self._continues)))
        body = {"kind": f"{res.kind}List", "apiVersion": res.api_version, "metadata": meta, "items": items}
        return web.Response(body=json.dumps(body, separators=(",", ":")), content_type="application/json")

    async def _watch(self, request: web.Request, res: Resource, namespace: str | None) -> web.StreamResponse:
        since = request.query.get("resourceVersion") or str(self.rv)
        start = int(since) if since.isdigit() else self.rv
        selector = request.query.get("labelSelector")
        timeout = float(request.query.get("timeoutSeconds") or 300)
        oldest = self.history[0][0] if self.history else self.rv + 1
        if start < oldest - 1 and start < self.rv:
            gone = {"type": "ERROR", "object": {"kind": "Status", "code": 410, "reason": "Expired",
                                                "message": f"too old resource version: {start}"}}
            return web.Response(text=json.dumps(gone) + "\n", content_type="application/json")
        watcher = Watcher(res.plural, namespace, selector)
        # Replay and subscribe with no await in between: no change can fall between the two.
        for rv, plural, ns, line, labels in self.history:
            if rv > start and plural == res.plural and namespace in (None, ns) and selector_matches(selector, labels):
                watcher.queue.put_nowait(line)
        self.watchers.append(watcher)
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)
        try:
            async with asyncio.timeout(timeout):
                while True:
                    line = await watcher.queue.get()
                    if not line:
                        break
                    chunk = [line]
                    while not watcher.queue.empty():
                        chunk.append(watcher.queue.get_nowait())
                    await response.write(b"".join(chunk))
        except (TimeoutError, ConnectionResetError):
            pass
        finally:
            self.watchers.remove(watcher)
        return response

    def _create(self, res: Resource, namespace: str | None, body: Obj) -> Obj:
        obj = copy.deepcopy(body)
        meta = obj.setdefault("metadata", {})
        if res.namespaced:
            meta["namespace"] = namespace or meta.get("namespace") or "default"
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = meta["generateName"] + uuid.uuid4().hex[:5]
        if (meta.get("namespace") or "", meta.get("name")) in self.objects[res.plural]:
            raise Failure(409, "AlreadyExists", f'{res.plural} "{meta.get("name")}" already exists')
        meta.update(uid=str(uuid.uuid4()), creationTimestamp=now_text(), generation=1)
        obj.setdefault("apiVersion", res.api_version)
        obj.setdefault("kind", res.kind)
        if res.status_subresource:
            obj.pop("status", None)
        return self.put("POST", res, obj, "ADDED")

    def _precondition(self, current: Obj, body: Obj | None) -> None:
        wanted = ((body or {}).get("metadata") or {}).get("resourceVersion")
        if wanted and wanted != current["metadata"]["resourceVersion"]:
            raise Failure(409, "Conflict", "the object has been modified; please apply your changes to the latest "
                                           "version and try again")

    def _write(self, verb: str, res: Resource, current: Obj, new: Obj, sub: str | None, written: Obj) -> Obj:
        new["metadata"] = {**new.get("metadata", {}), "resourceVersion": current["metadata"]["resourceVersion"]}
        for fixed in ("uid", "creationTimestamp", "name", "namespace", "managedFields"):
            if fixed in current["metadata"]:
                new["metadata"][fixed] = current["metadata"][fixed]
        if sub == "status":
            new = {**current, "status": new.get("status")}
        elif res.status_subresource:
            new["status"] = current.get("status")
            if new.get("status") is None:
                new.pop("status")
        if new.get("spec") != current.get("spec"):
            new["metadata"]["generation"] = int(current["metadata"].get("generation") or 1) + 1
        if new == current:
            return current  # a no-op write: no new resourceVersion (as the API server)
        return self.put(verb, res, new, "MODIFIED", written, sub or "")

    def _patch(self, res: Resource, namespace: str | None, name: str, sub: str | None, body: Obj) -> Obj:
        current = self._get(res, namespace, name)
        self._precondition(current, body)
        patch = copy.deepcopy(body)
        (patch.get("metadata") or {}).pop("resourceVersion", None)
        return self._write("PATCH", res, current, merge_patch(current, patch), sub, patch)

    def _replace(self, res: Resource, namespace: str | None, name: str, sub: str | None, body: Obj) -> Obj:
        current = self._get(res, namespace, name)
        self._precondition(current, body)
        return self._write("PUT", res, current, copy.deepcopy(body), sub, body)

    def _delete(self, res: Resource, namespace: str | None, name: str, options: Obj) -> Obj:
        current = self._get(res, namespace, name)
        wanted = (options.get("preconditions") or {}).get("resourceVersion")
        if wanted and wanted != current["metadata"]["resourceVersion"]:
            raise Failure(409, "Conflict", "precondition failed: resourceVersion")
        self._remove(res, (namespace or "", name))
        return {"kind": "Status", "apiVersion": "v1", "status": "Success"}
