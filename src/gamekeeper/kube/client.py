"""A small raw-JSON client for the Kubernetes API: CRUD, merge patches, watch streams, pods/exec, discovery.

Objects stay plain dicts end to end (the controllers are written against Kubernetes-shaped dicts), so no
generated model classes are involved. kubernetes_asyncio is used only to load credentials (kubeconfig with
its auth plugins and token refresh, or the in-cluster service account) and for its TLS-configured aiohttp
session; every request is built here, which is how merge patches always go out as
`application/merge-patch+json` (kubernetes_asyncio's own default for a dict body is a JSON patch).
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import functools
import json
import logging
import os
import shlex
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp

from gamekeeper.kube.resources import Resource
from gamekeeper.ports.runtime import ExecResult
from gamekeeper.ports.store import AlreadyExists, Conflict, NotFound, Obj, StoreError

log = logging.getLogger("gamekeeper.kube.client")

MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
JSON = "application/json"
EXEC_PROTOCOL = "v4.channel.k8s.io"
# Watch events can carry large objects; etcd's request limit is 1.5 MiB.
READ_BUFFER = 2**21
MAX_OUTPUT = 1024 * 1024

AuthHeaders = Callable[[], Awaitable[dict[str, str]]]


class ApiError(StoreError):
    """A non-2xx answer that is not one of the port's NotFound / Conflict / AlreadyExists."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message


class Gone(ApiError):
    """410: the requested resourceVersion is older than the server keeps (the watcher must re-list)."""


class KubeNotFound(NotFound):
    def __init__(self, message: str, reason: str = "NotFound") -> None:
        super().__init__(message)
        self.reason = reason


def error_for(status: int, body: Any, what: str) -> StoreError:
    """Turn an API error answer (a Status object, or anything) into the port's exceptions."""
    reason, message = "", ""
    if isinstance(body, Mapping):
        reason = str(body.get("reason") or "")
        message = str(body.get("message") or "")
    elif body:
        message = str(body)[:500]
    message = message or f"HTTP {status}"
    if status == 404:
        return KubeNotFound(f"{what}: {message}", reason or "NotFound")
    if status == 409:
        if reason == "AlreadyExists":
            return AlreadyExists(f"{what}: {message}")
        return Conflict(f"{what}: {message}")
    if status == 410:
        return Gone(status, reason or "Expired", message)
    return ApiError(status, reason or "Error", f"{what}: {message}")


@dataclass(frozen=True)
class WatchEvent:
    type: str  # ADDED, MODIFIED, DELETED, BOOKMARK, ERROR
    object: Obj


class KubeClient:
    """The Kubernetes API at `host` through one aiohttp session (TLS and credentials already configured)."""

    def __init__(
        self,
        host: str,
        session: aiohttp.ClientSession | None = None,
        auth: AuthHeaders | None = None,
        server_hostname: str | None = None,
        request_timeout: float = 30.0,
        on_close: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.host = host.rstrip("/")
        self._own_session = session is None
        self.session = session or aiohttp.ClientSession(read_bufsize=READ_BUFFER)
        self._auth = auth
        self._server_hostname = server_hostname
        self.request_timeout = request_timeout
        self._on_close = on_close

    # -- construction -----------------------------------------------------------------------------------

    @classmethod
    async def connect(cls, kubeconfig: str | None = None, context: str | None = None) -> KubeClient:
        """In-cluster credentials when running in a pod (and no kubeconfig was named), else the kubeconfig.

        The kubeconfig is `kubeconfig`, else $KUBECONFIG, else ~/.kube/config, as kubectl does.
        """
        from kubernetes_asyncio import config as kconfig  # the credential loaders only
        from kubernetes_asyncio.client import ApiClient, Configuration

        configuration = Configuration()
        in_cluster = kubeconfig is None and context is None and bool(os.environ.get("KUBERNETES_SERVICE_HOST"))
        try:
            if in_cluster:
                kconfig.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
                source = "in-cluster service account"
            else:
                path = kubeconfig or os.environ.get("KUBECONFIG") or str(Path.home() / ".kube" / "config")
                await kconfig.load_kube_config(
                    config_file=path, context=context, client_configuration=configuration, persist_config=False
                )
                source = f"kubeconfig {path}" + (f" (context {context})" if context else "")
        except (kconfig.ConfigException, OSError) as err:
            raise StoreError(f"cannot load Kubernetes credentials: {err}") from None
        api_client = ApiClient(configuration)
        rest = api_client.rest_client

        async def auth() -> dict[str, str]:
            settings = await configuration.auth_settings()
            token = settings.get("BearerToken")
            return {"Authorization": str(token["value"])} if token and token.get("value") else {}

        async def close() -> None:
            await api_client.close()

        log.info("Kubernetes API %s (%s)", configuration.host, source)
        return cls(
            str(configuration.host), session=rest.pool_manager, auth=auth,
            server_hostname=rest.server_hostname, on_close=close,
        )

    async def close(self) -> None:
        if self._on_close is not None:
            await self._on_close()
        elif self._own_session:
            await self.session.close()

    # -- plumbing ---------------------------------------------------------------------------------------

    async def _headers(self, content_type: str | None = None) -> dict[str, str]:
        headers = {"Accept": JSON}
        if content_type:
            headers["Content-Type"] = content_type
        if self._auth is not None:
            headers.update(await self._auth())
        return headers

    def _url(self, path: str, params: Mapping[str, str | Sequence[str]] | None = None) -> str:
        url = self.host + path
        if params:
            url += "?" + urlencode({k: v for k, v in params.items() if v is not None}, doseq=True)
        return url

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str | Sequence[str]] | None = None,
        body: Any = None,
        content_type: str = JSON,
        what: str = "",
        accept: str = JSON,
    ) -> Any:
        """One API call; the decoded JSON answer, or the port's exception for an error answer."""
        data = None if body is None else json.dumps(body)
        kwargs: dict[str, Any] = {}
        if self._server_hostname:
            kwargs["server_hostname"] = self._server_hostname
        headers = await self._headers(content_type if data is not None else None)
        headers["Accept"] = accept
        async with self.session.request(
            method, self._url(path, params), data=data, headers=headers,
            timeout=aiohttp.ClientTimeout(total=self.request_timeout), **kwargs,
        ) as resp:
            raw = await resp.read()
            try:
                decoded = json.loads(raw) if raw else None
            except ValueError:
                decoded = raw.decode(errors="replace")
            if not 200 <= resp.status < 300:
                raise error_for(resp.status, decoded, what or f"{method} {path}")
            return decoded

    # -- objects ----------------------------------------------------------------------------------------

    @staticmethod
    def _what(res: Resource, namespace: str | None, name: str | None) -> str:
        where = f"{namespace}/" if namespace and res.namespaced else ""
        return f'{res.kind} "{where}{name}"' if name else f"{res.kind} list"

    async def get(
        self, res: Resource, namespace: str | None, name: str, subresource: str | None = None
    ) -> Obj | None:
        try:
            obj = await self.request(
                "GET", res.path(namespace, name, subresource), what=self._what(res, namespace, name)
            )
        except NotFound:
            return None
        return _as_obj(obj, res)

    async def list(
        self, res: Resource, namespace: str | None = None, label_selector: str | None = None
    ) -> tuple[list[Obj], str]:
        """All objects (optionally in one namespace, matching a label selector) and the list's resourceVersion."""
        params = {"labelSelector": label_selector} if label_selector else None
        data = await self.request("GET", res.path(namespace), params=params, what=self._what(res, namespace, None))
        items = [_as_obj(item, res) for item in (data or {}).get("items") or []]
        return items, str(((data or {}).get("metadata") or {}).get("resourceVersion") or "")

    async def list_pages(
        self, res: Resource, namespace: str | None = None, label_selector: str | None = None, limit: int = 500
    ) -> AsyncIterator[tuple[builtins.list[Obj], str]]:
        """A listing in pages of at most `limit` (the API's limit/continue), each with the list's resourceVersion
        (one snapshot across the pages). A continue token that has expired is 410 Gone, raised as `Gone`: the
        caller lists again from the start. A server that ignores `limit` answers in one page."""
        token: str | None = None
        while True:
            params: dict[str, str] = {"limit": str(limit)}
            if label_selector:
                params["labelSelector"] = label_selector
            if token:
                params["continue"] = token
            data = await self.request("GET", res.path(namespace), params=params,
                                      what=self._what(res, namespace, None)) or {}
            meta = data.get("metadata") or {}
            yield [_as_obj(item, res) for item in data.get("items") or []], str(meta.get("resourceVersion") or "")
            token = meta.get("continue") or None
            if token is None:
                return

    async def create(self, res: Resource, obj: Obj) -> Obj:
        namespace = (obj.get("metadata") or {}).get("namespace")
        name = (obj.get("metadata") or {}).get("name")
        created = await self.request(
            "POST", res.path(namespace), body=obj, what=self._what(res, namespace, name)
        )
        return _as_obj(created, res)

    async def replace(self, res: Resource, obj: Obj, subresource: str | None = None) -> Obj:
        meta = obj["metadata"]
        namespace = meta.get("namespace")
        replaced = await self.request(
            "PUT", res.path(namespace, meta["name"], subresource), body=obj,
            what=self._what(res, namespace, meta["name"]),
        )
        return _as_obj(replaced, res)

    async def patch(
        self,
        res: Resource,
        namespace: str | None,
        name: str,
        patch: Mapping[str, Any],
        subresource: str | None = None,
    ) -> Obj:
        """A JSON merge patch (RFC 7386); a `metadata.resourceVersion` in it makes the write conditional."""
        patched = await self.request(
            "PATCH", res.path(namespace, name, subresource), body=dict(patch), content_type=MERGE_PATCH,
            what=self._what(res, namespace, name),
        )
        return _as_obj(patched, res)

    async def json_patch(
        self, res: Resource, namespace: str | None, name: str, operations: builtins.list[dict[str, Any]]
    ) -> Obj:
        """A JSON patch (RFC 6902): for edits by list index, which a merge patch cannot express."""
        patched = await self.request(
            "PATCH", res.path(namespace, name), body=operations, content_type=JSON_PATCH,
            what=self._what(res, namespace, name),
        )
        return _as_obj(patched, res)

    async def delete(
        self, res: Resource, namespace: str | None, name: str, resource_version: str | None = None,
        propagation: str = "Background",
    ) -> Obj | None:
        """Delete (the garbage collector removes dependents); the object as it is now, if it still exists."""
        options: dict[str, Any] = {"apiVersion": "v1", "kind": "DeleteOptions", "propagationPolicy": propagation}
        if resource_version is not None:
            options["preconditions"] = {"resourceVersion": resource_version}
        result = await self.request(
            "DELETE", res.path(namespace, name), body=options, what=self._what(res, namespace, name)
        )
        if isinstance(result, dict) and result.get("kind") == res.kind:
            return _as_obj(result, res)
        return None

    async def watch(
        self,
        res: Resource,
        namespace: str | None,
        resource_version: str,
        label_selector: str | None = None,
        timeout_seconds: int = 300,
    ) -> AsyncIterator[WatchEvent]:
        """Changes after `resource_version` until the server ends the stream (timeoutSeconds) or it breaks.

        An ERROR event is turned into an exception: `Gone` for 410 (the caller re-lists), ApiError otherwise.
        """
        params: dict[str, str] = {
            "watch": "true",
            "resourceVersion": resource_version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(timeout_seconds),
        }
        if label_selector:
            params["labelSelector"] = label_selector
        kwargs: dict[str, Any] = {}
        if self._server_hostname:
            kwargs["server_hostname"] = self._server_hostname
        # No total timeout: the stream is long-lived; a silent connection is cut after the server's own
        # timeout plus a margin, so a half-open TCP connection cannot hang the informer forever.
        timeout = aiohttp.ClientTimeout(total=None, connect=self.request_timeout, sock_read=timeout_seconds + 30)
        async with self.session.get(
            self._url(res.path(namespace), params), headers=await self._headers(), timeout=timeout, **kwargs
        ) as resp:
            if resp.status != 200:
                raw = await resp.read()
                try:
                    body: Any = json.loads(raw)
                except ValueError:
                    body = raw.decode(errors="replace")
                raise error_for(resp.status, body, f"watch {res.plural}")
            while True:
                line = await resp.content.readline()
                if not line:
                    return
                line = line.strip()
                if not line:
                    continue
                event = json.loads(line)
                kind = str(event.get("type") or "")
                obj = event.get("object") or {}
                if kind == "ERROR":
                    raise error_for(int(obj.get("code") or 500), obj, f"watch {res.plural}")
                yield WatchEvent(kind, _as_obj(obj, res) if kind != "BOOKMARK" else obj)

    # -- discovery ----------------------------------------------------------------------------------------

    async def served_resources(self, group_version: str) -> set[str] | None:
        """The resource names a group/version serves, or None when the API server does not serve it."""
        path = f"/apis/{group_version}" if "/" in group_version else f"/api/{group_version}"
        try:
            data = await self.request("GET", path, what=f"discovery {group_version}")
        except NotFound:
            return None
        return {str(r.get("name")) for r in (data or {}).get("resources") or []}

    # -- exec -------------------------------------------------------------------------------------------

    async def exec(
        self, namespace: str, pod: str, container: str, command: Sequence[str], timeout: float
    ) -> ExecResult:
        """Run a command through `pods/exec` (websocket, v4.channel.k8s.io) and collect its output.

        At `timeout` the stream is closed and the result marked timed out. Kubernetes offers no way to kill
        the process from here: it goes on in the container (documented in docs/kubernetes.md).
        """
        if not command:
            raise ValueError("exec: empty command")
        url = f"{self.host}/api/v1/namespaces/{namespace}/pods/{pod}/exec?{_exec_query(container, tuple(command))}"
        kwargs: dict[str, Any] = {}
        if self._server_hostname:
            kwargs["server_hostname"] = self._server_hostname
        stdout, stderr = bytearray(), bytearray()
        status: dict[str, Any] | None = None

        async def run() -> None:
            nonlocal status
            async with self.session.ws_connect(
                url, protocols=(EXEC_PROTOCOL,), headers=await self._headers(),
                timeout=aiohttp.ClientWSTimeout(ws_close=2.0), **kwargs,
            ) as ws:
                async for msg in ws:
                    if msg.type != aiohttp.WSMsgType.BINARY or not msg.data:
                        if msg.type in (aiohttp.WSMsgType.ERROR, aiohttp.WSMsgType.CLOSE):
                            break
                        continue
                    channel, payload = msg.data[0], msg.data[1:]
                    if channel == 1 and len(stdout) < MAX_OUTPUT:
                        stdout.extend(payload)
                    elif channel == 2 and len(stderr) < MAX_OUTPUT:
                        stderr.extend(payload)
                    elif channel == 3:
                        with contextlib.suppress(ValueError):
                            status = json.loads(bytes(payload))

        try:
            async with asyncio.timeout(timeout):
                await run()
        except TimeoutError:
            return ExecResult(-1, bytes(stdout), f"command timed out after {timeout:g}s".encode(), timed_out=True)
        except aiohttp.WSServerHandshakeError as err:
            return ExecResult(1, b"", f"exec {shlex.join(command)} in {namespace}/{pod}: {err.status} "
                                      f"{err.message}".encode())
        code = exit_code_of(status)
        if code != 0 and status is not None and not _has_exit_code(status) and status.get("message"):
            # Not the command's own failure (no such container, runtime error): say what the API said.
            stderr.extend(str(status["message"]).encode())
        return ExecResult(code, bytes(stdout), bytes(stderr))


@functools.lru_cache(maxsize=256)
def _exec_query(container: str, command: tuple[str, ...]) -> str:
    """An exec's query string; a fleet's probes share a few (one command per probe), and encoding one is a
    tenth of an exec's CPU in this process."""
    return urlencode(
        {"command": list(command), "container": container, "stdout": "true", "stderr": "true"}, doseq=True
    )


def exit_code_of(status: Mapping[str, Any] | None) -> int:
    """The exit code from the error channel's Status (v4 protocol): Success is 0, a NonZeroExitCode carries it."""
    if status is None:
        # The stream ended without a status: the connection was lost, so the outcome is unknown.
        return 1
    if status.get("status") == "Success":
        return 0
    for cause in (status.get("details") or {}).get("causes") or []:
        if cause.get("reason") == "ExitCode":
            try:
                return int(cause.get("message"))
            except (TypeError, ValueError):
                break
    return 1


def _has_exit_code(status: Mapping[str, Any]) -> bool:
    return any(c.get("reason") == "ExitCode" for c in (status.get("details") or {}).get("causes") or [])


def _as_obj(data: Any, res: Resource) -> Obj:
    """An object from the API, with apiVersion/kind filled in (list items and some emulators omit them)."""
    if not isinstance(data, dict):
        raise ApiError(500, "BadResponse", f"expected a {res.kind} object, got {type(data).__name__}")
    data.setdefault("apiVersion", res.api_version)
    data.setdefault("kind", res.kind)
    return data
