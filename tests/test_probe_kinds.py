"""httpGet and tcpSocket probes against real local servers, and `$(VAR)` expansion."""

from __future__ import annotations

import asyncio
import http.server
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from gamekeeper.api.models import HTTPGetAction, TCPSocketAction
from gamekeeper.control.probes import http_get_probe, tcp_socket_probe
from gamekeeper.core.service_quality import probe_message
from gamekeeper.runtime.local import expand_references
from tests.fleet import Fleet, ops, wait_for
from tests.test_resilience import custom_images


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        routes = {
            "/ok": (200, b"players|3\n"),
            "/moved": (302, b""),
            "/busy": (503, b"busy"),
            "/empty-error": (500, b""),
            "/headers": (200, (self.headers.get("X-Token") or "none").encode()),
            "/big": (200, b"x" * 5000),
        }
        status, body = routes.get(self.path, (404, b"nope"))
        self.send_response(status)
        if status == 302:
            self.send_header("Location", "http://198.51.100.1/elsewhere")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def http_port() -> Iterator[int]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def pod(port: int) -> dict[str, Any]:
    return {
        "metadata": {"name": "p-0", "namespace": "default"},
        "spec": {"containers": [{"name": "main", "ports": [{"name": "http", "containerPort": port}]}]},
        "status": {"podIP": "127.0.0.1"},
    }


def run_http(path: str, port: int | str, target: int, headers: list[dict[str, str]] | None = None) -> tuple[int, str]:
    action = HTTPGetAction.model_validate({"path": path, "port": port, "httpHeaders": headers or []})
    result = asyncio.run(http_get_probe(action, pod(target), "main", 2))
    return result.exit_code, probe_message(result.exit_code, result.stdout, result.stderr)


def test_http_probe_success_body_is_the_result(http_port: int) -> None:
    assert run_http("/ok", http_port, http_port) == (0, "players|3\n")
    assert run_http("/ok", "http", http_port) == (0, "players|3\n")  # a named container port
    assert run_http("/moved", http_port, http_port)[0] == 0  # 3xx is a success, not followed


def test_http_probe_failures_keep_their_body(http_port: int) -> None:
    assert run_http("/busy", http_port, http_port) == (503, "busy")
    code, message = run_http("/empty-error", http_port, http_port)
    assert code == 500 and "statuscode: 500" in message
    assert run_http("/missing", http_port, http_port) == (404, "nope")


def test_http_probe_headers_and_cap(http_port: int) -> None:
    assert run_http("/headers", http_port, http_port, [{"name": "X-Token", "value": "s3"}]) == (0, "s3")
    code, message = run_http("/big", http_port, http_port)
    assert code == 0 and len(message) == 1024


def test_http_probe_unknown_named_port_and_refused_connection(http_port: int) -> None:
    code, message = run_http("/ok", "admin", http_port)
    assert code != 0 and "not a named port" in message
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    code, message = run_http("/ok", closed, closed)
    assert code != 0 and "refused" in message.lower()


def test_tcp_probe(http_port: int) -> None:
    ok = asyncio.run(tcp_socket_probe(TCPSocketAction.model_validate({"port": "http"}), pod(http_port), "main", 2))
    assert ok.exit_code == 0
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    bad = asyncio.run(tcp_socket_probe(TCPSocketAction.model_validate({"port": closed}), pod(closed), "main", 2))
    assert bad.exit_code != 0 and b"dial tcp" in bad.stderr


def test_kubernetes_variable_expansion() -> None:
    env = {"PORT": "8080", "NAME": "x"}
    assert expand_references("--port=$(PORT)", env) == "--port=8080"
    assert expand_references("$$(PORT) $(MISSING) $(NAME)", env) == "$(PORT) $(MISSING) x"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
def test_http_and_tcp_qualities_drive_actions_end_to_end(fleet: Fleet) -> None:
    port = free_port()
    images = custom_images(fleet, {"web:1": {"command": ["python3", "-m", "http.server"]}})
    web_dir = images.parent / "images" / "web_1"
    (web_dir / "load.txt").write_text("busy\n")
    fleet.start()
    doc = {
        "apiVersion": "game.kruise.io/v1alpha1", "kind": "GameServerSet",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {
            "replicas": 1,
            "gameServerTemplate": {"spec": {"containers": [{
                "name": "main", "image": "web:1", "args": ["$(PORT)", "--bind", "127.0.0.1"],
                "env": [{"name": "PORT", "value": str(port)}],
                "ports": [{"name": "http", "containerPort": port}],
            }]}},
            "serviceQualities": [
                {"name": "load", "permanent": False, "initialDelaySeconds": 1, "periodSeconds": 1,
                 "httpGet": {"path": "/load.txt", "port": "http"},
                 "serviceQualityAction": [{"state": True, "result": "busy", "opsState": "Allocated"},
                                          {"state": True, "result": "idle", "opsState": "WaitToBeDeleted"}]},
                {"name": "port", "permanent": False, "initialDelaySeconds": 1, "periodSeconds": 1,
                 "tcpSocket": {"port": port},
                 "serviceQualityAction": [{"state": True, "labels": {"tcp": "up"}},
                                          {"state": False, "labels": {"tcp": "down"}}]},
            ],
        },
    }
    fleet.apply_yaml(doc)
    gs = fleet.wait_gs("web-0 Allocated", lambda gs: "web-0" in gs and ops(gs["web-0"]) == "Allocated")
    wait_for(lambda: fleet.gameservers()["web-0"]["metadata"]["labels"].get("tcp") == "up", "tcp label", 30)
    assert gs["web-0"]["status"]["serviceQualitiesConditions"][0]["result"] == "busy"
    (fleet.state_dir / "pods/default/web-0/main/load.txt").write_text("idle\n")
    fleet.wait_gs("web-0 WaitToBeDeleted", lambda gs: ops(gs["web-0"]) == "WaitToBeDeleted")
