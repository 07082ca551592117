"""The ops HTTP API (and the dashboard's files), served by the controller process in both modes.

Reads: GameServers / GameServerSets (with kubectl's label and field selectors), events, each server's service
quality history and opsState timeline, logs, and one server-sent-events stream of changes. Writes: merge patches
(one object or many), scale. Every write is validated as `gk patch` validates, is conditional on
resourceVersion when the caller gives one (409 when stale, nothing written), needs the bearer token, and is
recorded as an Event naming the caller. Objects are the Kubernetes-shaped dicts `gk get -o json` prints.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hmac
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from importlib import resources
from pathlib import Path
from typing import Any

from aiohttp import web

from gamekeeper.core.selectors import (
    Selection,
    SelectorError,
    check_field_selector,
    parse_field_selector,
    parse_label_selector,
    sort_objects,
)
from gamekeeper.observe.api_auth import TOKEN_ENV, check_api_options, is_loopback
from gamekeeper.observe.api_write import BadBody, merged_checked, scale_replicas, split_patch
from gamekeeper.ports.store import Change, Conflict, EventRecord, NotFound, Obj, Store, StoreError

log = logging.getLogger("gamekeeper.api")

KINDS = {"gameservers": "GameServer", "gameserversets": "GameServerSet"}
API_VERSION = "game.kruise.io/v1alpha1"
SOURCE = "gamekeeper-api"

LogReader = Callable[[Obj, str, int], Awaitable[str]]


def event_object(r: EventRecord) -> Obj:
    """An EventRecord in the core/v1 Event shape."""
    return {
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"namespace": r.namespace, "resourceVersion": str(r.resource_version)},
        "involvedObject": {"kind": r.kind, "name": r.name, "namespace": r.namespace},
        "type": r.type, "reason": r.reason, "message": r.message, "count": r.count,
        "firstTimestamp": r.first_timestamp, "lastTimestamp": r.last_timestamp,
        "source": {"component": r.source},
    }


def _status(code: int, reason: str, message: str, causes: list[tuple[str, str]] | None = None,
            extra: Mapping[str, Any] | None = None) -> web.Response:
    body: Obj = {"apiVersion": "v1", "kind": "Status", "status": "Failure", "code": code, "reason": reason,
                 "message": message}
    if causes:
        body["details"] = {"causes": [{"field": f, "message": m} for f, m in causes]}
    if extra:
        body.update(extra)
    return web.json_response(body, status=code)


def _list(kind: str, items: list[Obj]) -> Obj:
    return {"apiVersion": API_VERSION, "kind": f"{kind}List", "metadata": {"resourceVersion": ""}, "items": items}


class OpsApi:
    def __init__(
        self, store: Store, clock: Callable[[], datetime], address: str, token: str | None = None,
        logs: LogReader | None = None, dashboard: bool = True,
    ) -> None:
        self.store = store
        self.clock = clock
        self.host, self.port = check_api_options(address, token)
        self.token = token
        self.logs = logs
        self.dashboard = dashboard
        self.loopback = is_loopback(self.host)
        self._runner: web.AppRunner | None = None
        self._subscribers: set[asyncio.Queue[tuple[str, str] | None]] = set()  # (namespace, SSE text)
        self._tasks: list[asyncio.Task[Any]] = []
        self._event_marks: dict[tuple[str, ...], tuple[int, str]] | None = None
        self._events_due = asyncio.Event()

    # -- lifecycle ----------------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{'127.0.0.1' if host in ('0.0.0.0', '[::]') else host}:{self.port}/"

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._auth])
        r = app.router
        r.add_get("/api/openapi.json", self.openapi)
        for plural, kind in KINDS.items():
            r.add_get(f"/api/v1/{plural}", functools.partial(self.list_objects, kind))
            r.add_get(f"/api/v1/namespaces/{{ns}}/{plural}", functools.partial(self.list_objects, kind))
            r.add_get(f"/api/v1/namespaces/{{ns}}/{plural}/{{name}}", functools.partial(self.get_object, kind))
            r.add_patch(f"/api/v1/namespaces/{{ns}}/{plural}/{{name}}", functools.partial(self.patch_object, kind))
            r.add_post(f"/api/v1/namespaces/{{ns}}/{plural}/bulk-patch", functools.partial(self.bulk_patch, kind))
        r.add_get("/api/v1/namespaces/{ns}/gameserversets/{name}/scale", self.get_scale)
        r.add_put("/api/v1/namespaces/{ns}/gameserversets/{name}/scale", self.put_scale)
        r.add_patch("/api/v1/namespaces/{ns}/gameserversets/{name}/scale", self.put_scale)
        r.add_get("/api/v1/namespaces/{ns}/gameservers/{name}/history", self.history)
        r.add_get("/api/v1/namespaces/{ns}/gameservers/{name}/log", self.log_tail)
        r.add_get("/api/v1/events", self.events)
        r.add_get("/api/v1/namespaces/{ns}/events", self.events)
        r.add_get("/api/v1/stream", self.stream)
        r.add_get("/api/v1/whoami", self.whoami)
        if self.dashboard:
            r.add_get("/", self.index)
            r.add_get("/dashboard/{file}", self.static)
        return app

    async def start(self) -> str:
        self._runner = web.AppRunner(self.app(), access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        addresses = self._runner.addresses
        if addresses:
            self.port = int(addresses[0][1])
        self._tasks.append(asyncio.create_task(self._pump(), name="api-watch"))
        self._tasks.append(asyncio.create_task(self._event_poller(), name="api-events"))
        log.info("ops API on %s (%s)", self.url, "read-write with a token" if self.token else "read-only: no token")
        return self.url

    async def stop(self) -> None:
        for queue in list(self._subscribers):
            queue.put_nowait(None)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._runner is not None:
            await self._runner.cleanup()

    async def serve_forever(self) -> None:
        await self.start()
        try:
            await asyncio.Event().wait()
        finally:
            await self.stop()

    # -- auth ---------------------------------------------------------------------------------------------

    @web.middleware
    async def _auth(self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                    ) -> web.StreamResponse:
        path = request.path
        public = path == "/" or path.startswith("/dashboard/") or path == "/api/openapi.json"
        write = request.method not in ("GET", "HEAD", "OPTIONS")
        if public or (not write and self.loopback):
            return await handler(request)
        if write and not self.token:
            return _status(403, "Forbidden", "the API is read-only: start the controller with --api-token-file "
                           f"FILE or {TOKEN_ENV} to allow writes")
        header = request.headers.get("Authorization", "")
        if not header.startswith("Bearer "):
            return _status(401, "Unauthorized", "this needs the API token: send 'Authorization: Bearer TOKEN'")
        assert self.token is not None
        if not hmac.compare_digest(header.removeprefix("Bearer ").strip().encode(), self.token.encode()):
            return _status(403, "Forbidden", "the token is wrong")
        return await handler(request)

    @staticmethod
    def caller(request: web.Request) -> str:
        name = "".join(c for c in request.headers.get("X-Gamekeeper-Caller", "api") if c.isprintable())[:64]
        return f"{name or 'api'} from {request.remote or 'unknown'}"

    async def whoami(self, request: web.Request) -> web.Response:
        return web.json_response({"writable": bool(self.token), "tokenRequiredForReads": not self.loopback,
                                  "caller": self.caller(request)})

    # -- reads --------------------------------------------------------------------------------------------

    async def list_objects(self, kind: str, request: web.Request) -> web.Response:
        q = request.query
        try:
            selection = _selection(kind, q.get("labelSelector"), q.get("fieldSelector"))
        except BadBody as e:
            field, message = e.causes[0]
            return _status(400, "BadRequest", f"{field}: {message}", e.causes)
        items = [o for o in await self.store.list(kind, request.match_info.get("ns")) if selection.matches(o)]
        items.sort(key=lambda o: (o["metadata"].get("namespace", ""), _natural(o["metadata"]["name"])))
        if q.get("sortBy"):
            try:
                items = [dict(o) for o in sort_objects(items, q["sortBy"])]
            except SelectorError as e:
                return _status(400, "BadRequest", f"sortBy: {e}", [("sortBy", str(e))])
        return web.json_response(_list(kind, items))

    async def _get(self, request: web.Request, kind: str) -> Obj:
        ns, name = request.match_info["ns"], request.match_info["name"]
        obj = await self.store.get(kind, ns, name)
        if obj is None:
            raise web.HTTPNotFound(text=json.dumps({"apiVersion": "v1", "kind": "Status", "status": "Failure",
                                                    "code": 404, "reason": "NotFound",
                                                    "message": f'{kind} "{ns}/{name}" not found'}),
                                   content_type="application/json")
        return obj

    async def get_object(self, kind: str, request: web.Request) -> web.Response:
        return web.json_response(await self._get(request, kind))

    async def history(self, request: web.Request) -> web.Response:
        gs = await self._get(request, "GameServer")
        status = gs.get("status") or {}
        meta = gs["metadata"]
        events = await self.store.list_events(meta["namespace"], "GameServer", meta["name"])
        pod = await self.store.get("Pod", meta["namespace"], meta["name"])
        return web.json_response({
            "containers": [c["name"] for c in ((pod or {}).get("spec") or {}).get("containers") or []],
            "name": meta["name"], "namespace": meta["namespace"], "now": _stamp(self.clock()),
            "opsState": (gs.get("spec") or {}).get("opsState", "None"),
            "serviceQualitiesConditions": status.get("serviceQualitiesConditions") or [],
            "serviceQualityHistory": status.get("serviceQualityHistory") or {},
            "opsStateHistory": status.get("opsStateHistory") or [],
            "events": [event_object(e) for e in events[-50:]],
        })

    async def log_tail(self, request: web.Request) -> web.Response:
        ns, name = request.match_info["ns"], request.match_info["name"]
        pod = await self.store.get("Pod", ns, name)
        if pod is None:
            return _status(404, "NotFound", f'game server "{ns}/{name}" has no pod')
        containers = [c["name"] for c in pod["spec"]["containers"]]
        container = request.query.get("container") or containers[0]
        if container not in containers:
            return _status(400, "BadRequest", f'container: "{container}" is not in {name} (containers: '
                           f'{", ".join(containers)})', [("container", "unknown container")])
        try:
            tail = int(request.query.get("tailLines", "200"))
        except ValueError:
            return _status(400, "BadRequest", "tailLines: expected a whole number", [("tailLines", "not a number")])
        if self.logs is None:
            return _status(501, "NotImplemented", "logs are not available in this mode")
        try:
            text = await self.logs(pod, container, max(0, min(tail, 10_000)))
        except FileNotFoundError:
            text = ""  # not started yet
        except NotFound:
            return _status(404, "NotFound", f"no log for {ns}/{name} container {container} (not started yet?)")
        except StoreError as e:
            return _status(502, "BadGateway", f"reading the log of {ns}/{name}: {e}")
        return web.Response(text=text, content_type="text/plain")

    async def events(self, request: web.Request) -> web.Response:
        q = request.query
        records = await self.store.list_events(request.match_info.get("ns"), q.get("kind"), q.get("name"))
        if q.get("type"):
            records = [r for r in records if r.type == q["type"]]
        try:
            limit = int(q.get("limit", "500"))
        except ValueError:
            return _status(400, "BadRequest", "limit: expected a whole number", [("limit", "not a number")])
        items = [event_object(r) for r in records[-limit:]] if limit > 0 else []
        return web.json_response({"apiVersion": "v1", "kind": "EventList", "metadata": {}, "items": items})

    async def get_scale(self, request: web.Request) -> web.Response:
        return web.json_response(_scale(await self._get(request, "GameServerSet")))

    # -- writes -------------------------------------------------------------------------------------------

    async def _body(self, request: web.Request) -> Any:
        try:
            return await request.json()
        except ValueError as e:
            raise BadBody([("body", f"invalid JSON: {e}")]) from None

    async def _patch_one(self, kind: str, ns: str, name: str, patch: Mapping[str, Any], rv: str | None,
                         caller: str) -> tuple[int, Obj]:
        """(HTTP code, object or Status). A given rv makes the write conditional; without one, re-read on a race."""
        for _ in range(20):
            current = await self.store.get(kind, ns, name)
            if current is None:
                return 404, {"reason": "NotFound", "message": f'{kind} "{ns}/{name}" not found'}
            if rv is not None and str(current["metadata"].get("resourceVersion")) != rv:
                return 409, {"reason": "Conflict", "message": f'{kind} "{ns}/{name}" changed since resourceVersion '
                             f'{rv} (now {current["metadata"].get("resourceVersion")}); read it again and retry'}
            try:
                merged = merged_checked(kind, current, patch)
            except BadBody as e:
                return 422, {"reason": "Invalid", "message": str(e),
                             "details": {"causes": [{"field": f, "message": m} for f, m in e.causes]}}
            if merged == current:
                return 200, {**current, "_unchanged": True}
            try:
                result = await self.store.patch(kind, ns, name, patch,
                                                resource_version=str(current["metadata"]["resourceVersion"]))
            except Conflict:
                if rv is not None:
                    return 409, {"reason": "Conflict", "message": f'{kind} "{ns}/{name}" changed while writing; '
                                 "read it again and retry"}
                continue
            except NotFound:
                return 404, {"reason": "NotFound", "message": f'{kind} "{ns}/{name}" not found'}
            await self.store.record_event(result, "Normal", "ApiPatch",
                                          f"patched by {caller}: {json.dumps(patch, sort_keys=True)}", SOURCE)
            return 200, result
        return 409, {"reason": "Conflict", "message": f'{kind} "{ns}/{name}" kept changing; try again'}

    async def patch_object(self, kind: str, request: web.Request) -> web.Response:
        try:
            patch, rv = split_patch(await self._body(request))
        except BadBody as e:
            return _status(422, "Invalid", str(e), e.causes)
        code, obj = await self._patch_one(kind, request.match_info["ns"], request.match_info["name"], patch, rv,
                                          self.caller(request))
        if code != 200:
            return _status(code, obj["reason"], obj["message"], extra={k: v for k, v in obj.items()
                                                                        if k == "details"})
        obj.pop("_unchanged", None)
        return web.json_response(obj)

    async def bulk_patch(self, kind: str, request: web.Request) -> web.Response:
        """One merge patch to many objects: the ones named in `items` (each optionally with the
        resourceVersion the caller saw) or those the selectors match. Each object is written or not on its own;
        the answer lists every one."""
        ns = request.match_info["ns"]
        try:
            body = await self._body(request)
            if not isinstance(body, dict):
                raise BadBody([("body", 'expected {"patch": {...}, "items": [{"name": ..., "resourceVersion": ...}]}'
                                " or labelSelector/fieldSelector")])
            patch, _ = split_patch(body.get("patch"), "patch")
            targets = await self._targets(kind, ns, body)
        except BadBody as e:
            return _status(422, "Invalid", str(e), e.causes)
        caller = self.caller(request)
        results = []
        for name, rv in targets:
            code, obj = await self._patch_one(kind, ns, name, patch, rv, caller)
            entry: Obj = {"name": name, "namespace": ns, "code": code}
            if code == 200:
                entry["result"] = "unchanged" if obj.pop("_unchanged", False) else "patched"
                entry["resourceVersion"] = obj["metadata"].get("resourceVersion")
            else:
                entry["result"] = obj["reason"]
                entry["message"] = obj["message"]
            results.append(entry)
        summary = {k: sum(1 for r in results if r["result"] == k) for k in {r["result"] for r in results}}
        return web.json_response({"kind": "BulkPatchResult", "patch": patch, "matched": len(results),
                                  "summary": summary, "items": results},
                                 status=200 if all(r["code"] == 200 for r in results) else 207)

    async def _targets(self, kind: str, ns: str, body: Mapping[str, Any]) -> list[tuple[str, str | None]]:
        items = body.get("items")
        if items is not None:
            if not isinstance(items, list) or not items:
                raise BadBody([("items", "expected a non-empty list of {name, resourceVersion}")])
            out: list[tuple[str, str | None]] = []
            for i, item in enumerate(items):
                if not isinstance(item, dict) or not isinstance(item.get("name"), str):
                    raise BadBody([(f"items[{i}].name", "expected a string")])
                rv = item.get("resourceVersion")
                out.append((item["name"], None if rv is None else str(rv)))
            return out
        labels, fields = body.get("labelSelector"), body.get("fieldSelector")
        if not labels and not fields:
            raise BadBody([("items", "name the objects (items) or select them (labelSelector, fieldSelector); "
                            "an empty selection would patch everything")])
        for key, value in (("labelSelector", labels), ("fieldSelector", fields)):
            if value is not None and not isinstance(value, str):
                raise BadBody([(key, "expected a string such as game.kruise.io/owner-gss=minecraft")])
        selection = _selection(kind, labels, fields)
        objs = [o for o in await self.store.list(kind, ns) if selection.matches(o)]
        objs.sort(key=lambda o: _natural(o["metadata"]["name"]))
        return [(o["metadata"]["name"], None) for o in objs]

    async def put_scale(self, request: web.Request) -> web.Response:
        ns, name = request.match_info["ns"], request.match_info["name"]
        try:
            replicas, rv = scale_replicas(await self._body(request))
        except BadBody as e:
            return _status(422, "Invalid", str(e), e.causes)
        current = await self.store.get("GameServerSet", ns, name)
        if current is None:
            return _status(404, "NotFound", f'GameServerSet "{ns}/{name}" not found')
        if rv is not None and str(current["metadata"].get("resourceVersion")) != rv:
            return _status(409, "Conflict", f'GameServerSet "{ns}/{name}" changed since resourceVersion {rv}; '
                           "read it again and retry")
        before = (current.get("spec") or {}).get("replicas")
        if before == replicas:
            return web.json_response(_scale(current))
        try:
            result = await self.store.patch("GameServerSet", ns, name, {"spec": {"replicas": replicas}},
                                            resource_version=str(current["metadata"]["resourceVersion"]))
        except Conflict:
            return _status(409, "Conflict", f'GameServerSet "{ns}/{name}" changed while scaling; try again')
        await self.store.record_event(result, "Normal", "ApiScale",
                                      f"scaled from {before} to {replicas} by {self.caller(request)}", SOURCE)
        return web.json_response(_scale(result))

    # -- the stream ---------------------------------------------------------------------------------------

    async def stream(self, request: web.Request) -> web.StreamResponse:
        """Server-sent events: `gameserver` / `gameserverset` ({"type", "object"}) and `event` (an Event)."""
        namespace = request.query.get("namespace")
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache",
                                           "X-Accel-Buffering": "no"})
        await resp.prepare(request)
        queue: asyncio.Queue[tuple[str, str] | None] = asyncio.Queue(maxsize=20_000)
        self._subscribers.add(queue)
        try:
            await resp.write(b"retry: 1000\nevent: hello\ndata: {}\n\n")
            while True:
                try:
                    async with asyncio.timeout(15):
                        item = await queue.get()
                except TimeoutError:
                    await resp.write(b": keep-alive\n\n")
                    continue
                if item is None:
                    break
                if namespace and item[0] != namespace:
                    continue
                await resp.write(item[1].encode())
        except ConnectionResetError:
            pass  # the reader went away
        finally:
            self._subscribers.discard(queue)
        return resp

    def _broadcast(self, event: str, data: Obj) -> None:
        namespace = str((data.get("object") or data).get("metadata", {}).get("namespace", ""))
        item = (namespace, f"event: {event}\ndata: {json.dumps(data)}\n\n")
        for queue in list(self._subscribers):
            try:
                queue.put_nowait(item)
            except asyncio.QueueFull:  # a reader this far behind reconnects and re-lists
                self._subscribers.discard(queue)
                with contextlib.suppress(asyncio.QueueFull):
                    queue.put_nowait(None)

    async def _pump(self) -> None:
        async for change in self.store.watch({"GameServer", "GameServerSet", "Event"}):
            if change.kind == "Event" or change.type == "TICK":
                self._events_due.set()
                continue
            if change.kind not in ("GameServer", "GameServerSet") or not self._subscribers:
                continue
            await self._send_change(change)

    async def _send_change(self, change: Change) -> None:
        event = change.kind.lower()
        obj = await self.store.get(change.kind, change.namespace, change.name)
        if obj is None:
            self._broadcast(event, {"type": "DELETED", "object": {
                "apiVersion": API_VERSION, "kind": change.kind,
                "metadata": {"name": change.name, "namespace": change.namespace}}})
        else:
            self._broadcast(event, {"type": change.type if change.type != "DELETED" else "MODIFIED", "object": obj})

    async def _event_poller(self) -> None:
        """Events reach subscribers within about half a second of being recorded, in either store."""
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1.0):
                    await self._events_due.wait()
            self._events_due.clear()
            if not self._subscribers and self._event_marks is not None:
                continue  # nobody is listening: no need to list (in Kubernetes mode, an API call)
            try:
                records = await self.store.list_events()
            except Exception as e:  # a flaky API server must not end the stream
                log.debug("listing events failed: %s", e)
                await asyncio.sleep(1.0)
                continue
            marks: dict[tuple[str, ...], tuple[int, str]] = {
                (r.namespace, r.kind, r.name, r.type, r.reason, r.message): (r.count, r.last_timestamp)
                     for r in records}
            if self._event_marks is not None:
                for r in records:
                    key = (r.namespace, r.kind, r.name, r.type, r.reason, r.message)
                    if self._event_marks.get(key) != marks[key]:
                        self._broadcast("event", event_object(r))
            self._event_marks = marks
            await asyncio.sleep(0.3)

    # -- documents ----------------------------------------------------------------------------------------

    async def openapi(self, request: web.Request) -> web.Response:
        from gamekeeper.observe.openapi import openapi_document

        return web.json_response(openapi_document())

    async def index(self, request: web.Request) -> web.Response:
        return self._file("index.html")

    async def static(self, request: web.Request) -> web.Response:
        return self._file(request.match_info["file"])

    def _file(self, name: str) -> web.Response:
        types = {".html": "text/html", ".js": "application/javascript", ".css": "text/css", ".svg": "image/svg+xml",
                 ".txt": "text/plain"}
        suffix = Path(name).suffix
        if "/" in name or name.startswith(".") or suffix not in types:
            raise web.HTTPNotFound()
        resource = resources.files("gamekeeper.observe").joinpath("dashboard", name)
        if not resource.is_file():
            raise web.HTTPNotFound()
        return web.Response(body=resource.read_bytes(), content_type=types[suffix],
                            headers={"Cache-Control": "no-cache"})


def _selection(kind: str, labels: str | None, fields: str | None) -> Selection:
    """Both selectors, parsed as Kubernetes parses them; BadBody names the one that does not parse."""
    try:
        label_selector = parse_label_selector(labels or "")
    except SelectorError as e:
        raise BadBody([("labelSelector", str(e))]) from None
    try:
        field_selector = parse_field_selector(fields or "")
        check_field_selector(field_selector, kind)
    except SelectorError as e:
        raise BadBody([("fieldSelector", str(e))]) from None
    return Selection(kind, label_selector, field_selector)


def _scale(gss: Obj) -> Obj:
    meta = gss["metadata"]
    return {"apiVersion": "autoscaling/v1", "kind": "Scale",
            "metadata": {"name": meta["name"], "namespace": meta.get("namespace", "default"),
                         "resourceVersion": meta.get("resourceVersion")},
            "spec": {"replicas": (gss.get("spec") or {}).get("replicas", 0)},
            "status": {"replicas": (gss.get("status") or {}).get("replicas", 0),
                       "selector": f"game.kruise.io/owner-gss={meta['name']}"}}


def _natural(name: str) -> tuple[str, int]:
    base, _, tail = name.rpartition("-")
    return (base, int(tail)) if tail.isdigit() else (name, -1)


def _stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def kube_log_reader(client: Any) -> LogReader:
    """Kubernetes mode: the pod's log through the API server (pods/log)."""

    async def read(pod: Obj, container: str, tail: int) -> str:
        meta = pod["metadata"]
        text = await client.request(
            "GET", f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}/log",
            params={"container": container, "tailLines": str(tail)}, accept="text/plain", what="pod log")
        # The client decodes JSON answers; a log that happens to be one JSON value is still text here.
        return text if isinstance(text, str) else json.dumps(text)

    return read


def local_log_reader(state_dir: Path) -> LogReader:
    """Embedded mode: the tail of a container's log file (all its runs)."""
    from gamekeeper.runtime.local import LocalPaths

    paths = LocalPaths(state_dir)

    async def read(pod: Obj, container: str, tail: int) -> str:
        path = paths.log_file(pod, container)
        size = path.stat().st_size
        with open(path, "rb") as f:
            f.seek(max(0, size - 256 * 1024))  # the tail only: a long-lived server's log can be large
            lines = f.read().splitlines(keepends=True)
        return b"".join(lines[-tail:] if tail else []).decode(errors="replace")

    return read
