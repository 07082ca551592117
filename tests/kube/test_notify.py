"""Kubernetes mode: the Maintaining Warning reaches a notification sink (the store's events are tapped)."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from gamekeeper.observe.notify_config import load_notify_config
from tests.kube.conftest import Cluster, seed_yaml

pytestmark = pytest.mark.asyncio


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    received: list[dict[str, Any]] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            received.append(json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0))))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook", received
    server.shutdown()
    server.server_close()


async def test_maintaining_warning_reaches_the_webhook(
    cluster: Cluster, receiver: tuple[str, list[dict[str, Any]]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, received = receiver
    monkeypatch.setenv("GK_TEST_HOOK", url)
    path = tmp_path / "notify.yaml"
    path.write_text(yaml.safe_dump({"sinks": [{"type": "webhook", "urlFrom": {"env": "GK_TEST_HOOK"}}],
                                    "deadLetterFile": str(tmp_path / "dead.jsonl")}))
    cluster.start_operator(notify=load_notify_config(path))
    await cluster.apply(seed_yaml("demo-gs.yaml"))
    await cluster.eventually("all None", lambda: all(
        cluster.gs_summary().get(f"demo-gs-{i}") == ("Ready", "None") for i in range(3)))
    assert received == []  # Normal events are not sent by default
    await cluster.client().exec("default", "demo-gs-0", "minecraft", ["./fault.sh"], 5)
    await cluster.eventually("one delivery", lambda: len(received) >= 1)
    event = received[0]["event"]
    assert (event["type"], event["reason"]) == ("Warning", "GsStateChanged")
    assert "OpsState turn from None to Maintaining" in event["message"]
    assert "demo-gs-0" in json.dumps(received[0]) and len(received) == 1
