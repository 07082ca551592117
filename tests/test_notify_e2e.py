"""The seed's Maintaining scenario delivers one Warning to each configured sink (`gk serve --notify`)."""

from __future__ import annotations

import http.server
import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from tests.fleet import Fleet, ops, seed_yaml, state, wait_for

pytestmark = pytest.mark.slow


class Receiver:
    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, Any]]] = []
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                receiver.requests.append((self.path, json.loads(body)))
                reply = b'{"errcode":0,"errmsg":"ok"}' if self.path.startswith("/dingtalk") else b"ok"
                self.send_response(200)
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    r.thread.start()
    yield r
    r.server.shutdown()
    r.server.server_close()


def test_maintaining_reaches_every_sink_once(fleet: Fleet, receiver: Receiver) -> None:
    config = {
        "sinks": [
            {"type": "webhook", "urlFrom": {"env": "GK_TEST_WEBHOOK"}},
            {"type": "slack", "urlFrom": {"env": "GK_TEST_SLACK"}},
            {"type": "dingtalk", "urlFrom": {"env": "GK_TEST_DINGTALK"}, "secretFrom": {"env": "GK_TEST_SECRET"}},
        ]
    }
    path = fleet.tmp / "notify.yaml"
    path.write_text(yaml.safe_dump(config))
    fleet.env.update({
        "GK_TEST_WEBHOOK": receiver.url + "/webhook",
        "GK_TEST_SLACK": receiver.url + "/slack/T0/B0/secret-path",
        "GK_TEST_DINGTALK": receiver.url + "/dingtalk?access_token=tok123",
        "GK_TEST_SECRET": "SECsecret",
    })
    fleet.state_dir.mkdir(parents=True, exist_ok=True)
    log = open(fleet.tmp / "controller.log", "ab")  # noqa: SIM115 - closed with the process
    fleet.controller = subprocess.Popen(
        [sys.executable, "-m", "gamekeeper", "serve", "--notify", str(path)],
        env=fleet.env, stdout=log, stderr=log, start_new_session=True)
    wait_for(lambda: (fleet.state_dir / "controller.pid").exists(), "controller", 20)
    fleet.apply_yaml(seed_yaml("demo-gs.yaml"))
    fleet.wait_gs("three None", lambda gs: len(gs) == 3 and all(ops(g) == "None" and state(g) == "Ready"
                                                               for g in gs.values()))
    assert receiver.requests == []  # Normal events are not sent by default
    fleet.gk("exec", "demo-gs-0", "--", "./fault.sh")
    fleet.wait_gs("Maintaining", lambda gs: ops(gs["demo-gs-0"]) == "Maintaining")
    wait_for(lambda: len(receiver.requests) >= 3, "three deliveries", 30)
    by_sink = {p.split("/")[1].split("?")[0]: body for p, body in receiver.requests}
    assert sorted(by_sink) == ["dingtalk", "slack", "webhook"] and len(receiver.requests) == 3
    webhook = by_sink["webhook"]
    assert webhook["event"]["type"] == "Warning" and webhook["event"]["reason"] == "GsStateChanged"
    assert "OpsState turn from None to Maintaining" in webhook["event"]["message"]
    text = json.dumps(webhook)
    assert "demo-gs-0" in text and "Maintaining" in text and "unhealthy" in text
    assert "demo-gs-0" in by_sink["slack"]["text"]
    assert by_sink["dingtalk"]["msgtype"] == "markdown" and "demo-gs-0" in by_sink["dingtalk"]["markdown"]["text"]
    signed = next(p for p, _ in receiver.requests if p.startswith("/dingtalk"))
    assert "timestamp=" in signed and "sign=" in signed
    controller_log = fleet.log()
    for secret in ("tok123", "SECsecret", "secret-path"):
        assert secret not in controller_log
