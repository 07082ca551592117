"""httpGet and tcpSocket probe handlers (exec goes through the Runtime port).

They behave like kubelet's: the host defaults to the pod's IP, a port may be a number or the name of a
container port, an HTTP status from 200 to 399 is a success, TLS certificates are not verified (kubelet does
not either), and the response body is the probe's output (the result actions match on).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import urllib.error
import urllib.request
from typing import Any

from gamekeeper.api.models import HTTPGetAction, TCPSocketAction
from gamekeeper.ports.runtime import ExecResult

MAX_BODY = 10 * 1024


class ProbeConfigError(ValueError):
    pass


def resolve_port(port: int | str, pod: dict[str, Any], container: str) -> int:
    if isinstance(port, int):
        return port
    if port.isdigit():
        return int(port)
    for c in pod["spec"]["containers"]:
        if c["name"] != container:
            continue
        for p in c.get("ports") or []:
            if p.get("name") == port:
                return int(p["containerPort"])
    raise ProbeConfigError(f"port {port!r} is not a named port of container {container}")


def pod_host(pod: dict[str, Any], host: str | None) -> str:
    return host or (pod.get("status") or {}).get("podIP") or "127.0.0.1"


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Kubelet does not follow redirects to other hosts; a 3xx is already a success."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def _http_get(url: str, headers: dict[str, str], timeout: float) -> tuple[int, bytes]:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    opener = urllib.request.build_opener(_NoRedirect, urllib.request.HTTPSHandler(context=context))
    request = urllib.request.Request(url, headers={"User-Agent": "gamekeeper-probe/1", **headers})
    try:
        with opener.open(request, timeout=timeout) as response:
            return response.status, response.read(MAX_BODY)
    except urllib.error.HTTPError as err:
        with contextlib.suppress(Exception):
            return err.code, err.read(MAX_BODY)
        return err.code, b""


async def http_get_probe(action: HTTPGetAction, pod: dict[str, Any], container: str, timeout: float) -> ExecResult:
    try:
        port = resolve_port(action.port, pod, container)
    except ProbeConfigError as err:
        return ExecResult(1, b"", str(err).encode())
    scheme = (action.scheme or "HTTP").lower()
    path = action.path or "/"
    if not path.startswith("/"):
        path = "/" + path
    url = f"{scheme}://{pod_host(pod, action.host)}:{port}{path}"
    headers = {h.name: h.value for h in action.http_headers or []}
    try:
        status, body = await asyncio.wait_for(asyncio.to_thread(_http_get, url, headers, timeout), timeout + 1)
    except (TimeoutError, OSError) as err:
        reason = getattr(err, "reason", err)
        timed_out = isinstance(err, TimeoutError) or "timed out" in str(reason)
        return ExecResult(-1, b"", f"Get {url}: {reason or 'timeout'}".encode(), timed_out=timed_out)
    ok = 200 <= status < 400
    return ExecResult(0 if ok else status, body, b"" if ok or body else f"HTTP probe failed with statuscode: "
                      f"{status}".encode())


async def tcp_socket_probe(
    action: TCPSocketAction, pod: dict[str, Any], container: str, timeout: float
) -> ExecResult:
    try:
        port = resolve_port(action.port, pod, container)
    except ProbeConfigError as err:
        return ExecResult(1, b"", str(err).encode())
    host = pod_host(pod, action.host)
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    except TimeoutError:
        return ExecResult(-1, b"", f"dial tcp {host}:{port}: i/o timeout".encode(), timed_out=True)
    except OSError as err:
        return ExecResult(1, b"", f"dial tcp {host}:{port}: {err.strerror or err}".encode())
    writer.close()
    with contextlib.suppress(Exception):
        await writer.wait_closed()
    return ExecResult(0, b"", b"")
