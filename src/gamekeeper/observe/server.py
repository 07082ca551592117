"""The controller's HTTP endpoints: `/metrics` (Prometheus), `/healthz` (alive) and `/readyz` (ready).

It runs in a thread so a busy or stuck event loop cannot hide itself: `/healthz` fails when the loop's
heartbeat is older than `stale_after` seconds, which is what a liveness probe should restart.
"""

from __future__ import annotations

import asyncio
import http.server
import threading
import time
from collections.abc import Callable
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest


class Health:
    """Shared between the event loop (which beats) and the HTTP thread (which reads)."""

    def __init__(self, stale_after: float = 30.0) -> None:
        self.stale_after = stale_after
        self.last_beat = time.monotonic()
        self.ready_checks: list[Callable[[], tuple[bool, str]]] = []

    async def beat_forever(self, interval: float = 1.0) -> None:
        while True:
            self.last_beat = time.monotonic()
            await asyncio.sleep(interval)

    def alive(self) -> tuple[bool, str]:
        age = time.monotonic() - self.last_beat
        if age > self.stale_after:
            return False, f"event loop unresponsive for {age:.0f}s"
        return True, "ok"

    def ready(self) -> tuple[bool, str]:
        ok, why = self.alive()
        if not ok:
            return ok, why
        for check in self.ready_checks:
            ok, why = check()
            if not ok:
                return ok, why
        return True, "ok"


def parse_address(text: str) -> tuple[str, int]:
    """`HOST:PORT`, `:PORT` (all interfaces) or `PORT`."""
    host, _, port = text.rpartition(":")
    try:
        number = int(port)
    except ValueError:
        raise ValueError(f"expected HOST:PORT, got {text!r}") from None
    if not 0 <= number <= 65535:
        raise ValueError(f"port {number} is out of range")
    return (host.strip("[]") or "0.0.0.0"), number


class ObservabilityServer:
    def __init__(self, address: str, registry: CollectorRegistry, health: Health) -> None:
        host, port = parse_address(address)
        registry_ref, health_ref = registry, health

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path == "/metrics":
                    self._send(200, generate_latest(registry_ref), CONTENT_TYPE_LATEST)
                elif path in ("/healthz", "/livez"):
                    ok, why = health_ref.alive()
                    self._send(200 if ok else 503, why.encode() + b"\n")
                elif path == "/readyz":
                    ok, why = health_ref.ready()
                    self._send(200 if ok else 503, why.encode() + b"\n")
                else:
                    self._send(404, b"not found; try /metrics, /healthz or /readyz\n")

            def _send(self, code: int, body: bytes, content_type: str = "text/plain; charset=utf-8") -> None:
                self.send_response(code)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer((host, port), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="observability", daemon=True)

    @property
    def port(self) -> int:
        return int(self.httpd.server_address[1])

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
