"""Event notifications: exact payloads of the three sinks, the DingTalk signature, retries, folding, filters,
the dead-letter file, secrets kept out of logs, and that a dead receiver never stalls the submitting side.

Every delivery goes over real HTTP to a stdlib server on 127.0.0.1; nothing of the HTTP layer is mocked. Only
the backoff sleeps (and, for folding, the clock) are injected, so retries run without waiting.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import inspect
import json
import logging
import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from gamekeeper.api.loading import InvalidObject
from gamekeeper.observe.notify import Notifier, SinkStats
from gamekeeper.observe.notify_config import NotifyConfig, parse_notify_config
from gamekeeper.observe.notify_source import follow_events, notifications_running
from gamekeeper.ports.store import EventRecord
from gamekeeper.store.sqlite import SqliteState

ROOT = Path(__file__).resolve().parent.parent
MAINTAINING = "OpsState turn from None to Maintaining "
TOKEN = "tok-5f3a9c1e7b2d4a60"  # a webhook URL token
AUTH = "Bearer hdr-8c1f2e9a7d3b"  # a header value
SIGNING = "SECa1b2c3d4e5f60718293a4b5c6d7e8f9"  # a DingTalk signing secret


# -- a real HTTP receiver ----------------------------------------------------------------------------------


@dataclass
class Received:
    path: str
    query: dict[str, list[str]]
    raw_query: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Reply:
    status: int = 200
    body: bytes = b"ok"
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds to sleep before answering (cut short when the test ends)


class Receiver:
    """Records every POST; answers with the scripted replies in order, then with `default`."""

    def __init__(self) -> None:
        self.requests: list[Received] = []
        self.script: list[Reply] = []
        self.default = Reply()
        self.by_path: dict[str, Reply] = {}  # a fixed reply for one path, before the script
        self.release = threading.Event()
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                parts = urlsplit(self.path)
                with receiver._lock:
                    receiver.requests.append(
                        Received(parts.path, parse_qs(parts.query), parts.query, dict(self.headers.items()), body)
                    )
                    reply = receiver.by_path.get(parts.path) or (
                        receiver.script.pop(0) if receiver.script else receiver.default
                    )
                if reply.delay:
                    receiver.release.wait(reply.delay)
                try:
                    self.send_response(reply.status)
                    for name, value in reply.headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(reply.body)))
                    self.end_headers()
                    self.wfile.write(reply.body)
                except OSError:
                    pass  # the client gave up (a timeout under test)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    try:
        yield r
    finally:
        r.close()


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    # urllib honours *_proxy variables; the receiver is local and must be reached directly.
    for name in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)


# -- helpers -----------------------------------------------------------------------------------------------


def event(
    type: str = "Warning",
    reason: str = "GsStateChanged",
    message: str = MAINTAINING,
    name: str = "minecraft-1",
    kind: str = "GameServer",
    namespace: str = "default",
    count: int = 1,
) -> EventRecord:
    return EventRecord(namespace, kind, name, type, reason, message, count, "2024-05-01T12:00:00Z",
                       "2024-05-01T12:00:05Z", "gamekeeper", 7)


def game_server(name: str = "minecraft-1", gss: str = "minecraft", namespace: str = "default") -> dict[str, Any]:
    return {
        "apiVersion": "game.kruise.io/v1alpha1",
        "kind": "GameServer",
        "metadata": {"name": name, "namespace": namespace, "labels": {"game.kruise.io/owner-gss": gss}},
        "spec": {"opsState": "Maintaining"},
        "status": {
            "currentState": "Ready",
            "serviceQualitiesConditions": [
                {"name": "idle", "status": "False", "result": "players: 1", "lastProbeTime": "2024-05-01T12:00:04Z"}
            ],
        },
    }


def config(text: str, tmp_path: Path, env: dict[str, str] | None = None) -> NotifyConfig:
    return parse_notify_config(text, "notify.yaml", tmp_path, env or {})


def problems(text: str, tmp_path: Path, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(InvalidObject) as err:
        config(text, tmp_path, env)
    return err.value.problems


class Sleeps:
    """Backoff sleeps recorded instead of slept (each still yields to the loop)."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        await asyncio.sleep(0)


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Ceiling(random.Random):
    """Full jitter at its ceiling, so the backoff schedule is exact."""

    def uniform(self, a: float, b: float) -> float:
        return b


async def until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


def done(notifier: Notifier, count: int) -> Callable[[], bool]:
    """True once `count` notices were delivered or dead-lettered, over all sinks."""
    return lambda: sum(s.sent + s.failed for s in notifier.stats().values()) >= count


def deliver(
    cfg: NotifyConfig,
    items: list[tuple[EventRecord, dict[str, Any] | None]],
    expect: int,
    dead_letter: Path | None = None,
    **kwargs: Any,
) -> dict[str, SinkStats]:
    """Submit the items, wait until `expect` notices are finished, and return the stats."""

    async def main() -> dict[str, SinkStats]:
        kwargs.setdefault("sleep", Sleeps())
        async with Notifier(cfg, dead_letter=dead_letter, **kwargs) as notifier:
            for record, gs in items:
                notifier.submit(record, gs)
            await until(done(notifier, expect))
            return notifier.stats()

    return asyncio.run(main())


def webhook_yaml(url: str, extra: str = "", sink_extra: str = "") -> str:
    return f"""
{extra}
sinks:
  - name: hook
    type: webhook
    url: {url}
{sink_extra}
"""


# -- payloads ----------------------------------------------------------------------------------------------


EXPECTED_EVENT = {
    "type": "Warning",
    "reason": "GsStateChanged",
    "message": MAINTAINING,
    "count": 1,
    "firstTimestamp": "2024-05-01T12:00:00Z",
    "lastTimestamp": "2024-05-01T12:00:05Z",
    "source": "gamekeeper",
    "involvedObject": {"kind": "GameServer", "namespace": "default", "name": "minecraft-1"},
}


def test_webhook_payload_is_the_event_and_its_game_server(receiver: Receiver, tmp_path: Path) -> None:
    cfg = config("""
sinks:
  - name: oncall
    type: webhook
    urlFrom: {env: HOOK_URL}
    headers:
      - {name: Authorization, valueFrom: {env: HOOK_AUTH}}
      - {name: X-Team, value: games}
""", tmp_path, {"HOOK_URL": receiver.url(f"/hooks/{TOKEN}"), "HOOK_AUTH": AUTH})
    stats = deliver(cfg, [(event(), game_server())], expect=1)
    assert stats["oncall"].sent == 1
    (req,) = receiver.requests
    assert req.path == f"/hooks/{TOKEN}"
    assert req.headers["Content-Type"] == "application/json; charset=utf-8"
    assert req.headers["Authorization"] == AUTH
    assert req.headers["X-Team"] == "games"
    assert req.json() == {
        "event": EXPECTED_EVENT,
        "gameServer": {
            "name": "minecraft-1",
            "namespace": "default",
            "gameServerSet": "minecraft",
            "opsState": "Maintaining",
            "currentState": "Ready",
            "serviceQualitiesConditions": [{"name": "idle", "status": "False", "result": "players: 1"}],
        },
        "folded": None,
    }


def test_webhook_payload_without_a_game_server(receiver: Receiver, tmp_path: Path) -> None:
    cfg = config(webhook_yaml(receiver.url(), sink_extra="    filter: {types: [Normal, Warning]}"), tmp_path)
    record = event(type="Normal", reason="Scale", message="scale from 3 to 1", name="minecraft",
                   kind="GameServerSet")
    deliver(cfg, [(record, None)], expect=1)
    body = receiver.requests[0].json()
    assert body["gameServer"] is None
    assert body["event"]["involvedObject"] == {"kind": "GameServerSet", "namespace": "default", "name": "minecraft"}


def test_slack_payload_is_one_readable_line(receiver: Receiver, tmp_path: Path) -> None:
    cfg = config("""
sinks:
  - type: slack
    urlFrom: {env: SLACK_URL}
""", tmp_path, {"SLACK_URL": receiver.url("/services/T000/B000/" + TOKEN)})
    odd = event(message="State <b> & more")
    deliver(cfg, [(event(), game_server()), (odd, game_server())], expect=2)
    assert [r.json() for r in receiver.requests] == [
        {"text": ':warning: Warning GsStateChanged on GameServer default/minecraft-1 (gss minecraft, opsState '
                 'Maintaining, state Ready, probe idle False "players: 1"): OpsState turn from None to Maintaining'},
        {"text": ':warning: Warning GsStateChanged on GameServer default/minecraft-1 (gss minecraft, opsState '
                 'Maintaining, state Ready, probe idle False "players: 1"): State &lt;b&gt; &amp; more'},
    ]


def test_dingtalk_markdown_and_signature(receiver: Receiver, tmp_path: Path) -> None:
    receiver.default = Reply(body=b'{"errcode":0,"errmsg":"ok"}')
    (tmp_path / "ding.secret").write_text(SIGNING + "\n")
    cfg = config("""
sinks:
  - name: ding
    type: dingtalk
    urlFrom: {env: DING_URL}
    secretFrom: {file: ding.secret}
    atMobiles: ["13800000000"]
""", tmp_path, {"DING_URL": receiver.url("/robot/send?access_token=" + TOKEN)})
    wall = 1_714_564_805.123
    stats = deliver(cfg, [(event(), game_server())], expect=1, wall_clock=lambda: wall)
    assert stats["ding"].sent == 1
    (req,) = receiver.requests
    assert req.path == "/robot/send"
    assert req.query["access_token"] == [TOKEN]
    assert req.query["timestamp"] == ["1714564805123"]
    # The signature, computed here from DingTalk's definition rather than by the code under test.
    expected = base64.b64encode(
        hmac.new(SIGNING.encode(), f"1714564805123\n{SIGNING}".encode(), hashlib.sha256).digest()
    ).decode()
    assert req.query["sign"] == [expected]
    raw_sign = req.raw_query.split("sign=", 1)[1]
    assert "+" not in raw_sign and "/" not in raw_sign and "=" not in raw_sign  # URL-encoded on the wire
    assert req.json() == {
        "msgtype": "markdown",
        "markdown": {
            "title": "Gamekeeper Warning: GsStateChanged",
            "text": "Level: **Warning**\n\nKind: **GameServer**\n\nNamespace: default\n\nName: **minecraft-1**\n\n"
                    "GameServerSet: minecraft\n\nOpsState: **Maintaining**\n\nState: Ready\n\n"
                    'Probe idle: False "players: 1"\n\nReason: **GsStateChanged**\n\n'
                    "Timestamp: **2024-05-01T12:00:05Z**\n\n"
                    "Message: **OpsState turn from None to Maintaining**\n\n@13800000000",
        },
        "at": {"atMobiles": ["13800000000"], "isAtAll": False},
    }


def test_dingtalk_errcode_decides_success(receiver: Receiver, tmp_path: Path) -> None:
    receiver.script = [
        Reply(body=b'{"errcode":130101,"errmsg":"send too fast"}'),  # throttled: retried
        Reply(body=b'{"errcode":0,"errmsg":"ok"}'),
        Reply(body=b'{"errcode":310000,"errmsg":"sign not match"}'),  # will not get better: not retried
    ]
    cfg = config(f"""
sinks:
  - {{name: ding, type: dingtalk, url: "{receiver.url('/robot/send?access_token=' + TOKEN)}"}}
""", tmp_path)
    sleeps = Sleeps()
    stats = deliver(cfg, [(event(), None), (event(message="other"), None)], expect=2, sleep=sleeps)
    assert (stats["ding"].sent, stats["ding"].retries, stats["ding"].failed) == (1, 1, 1)
    assert len(receiver.requests) == 3
    assert "sign" not in receiver.requests[0].query  # no secret configured: unsigned


# -- retries, timeouts, dead letters ----------------------------------------------------------------------------


def test_retries_after_500s_then_success_with_exponential_backoff(receiver: Receiver, tmp_path: Path) -> None:
    receiver.script = [Reply(500), Reply(502), Reply(503)]
    cfg = config(webhook_yaml(receiver.url(), """
delivery: {maxAttempts: 5, initialBackoffSeconds: 1, maxBackoffSeconds: 3}
"""), tmp_path)
    sleeps = Sleeps()
    stats = deliver(cfg, [(event(), game_server())], expect=1, sleep=sleeps, rng=Ceiling())
    assert (stats["hook"].sent, stats["hook"].retries, stats["hook"].failed) == (1, 3, 0)
    assert sleeps.delays == [1.0, 2.0, 3.0]  # doubling, capped at maxBackoffSeconds
    bodies = {r.body for r in receiver.requests}
    assert len(receiver.requests) == 4 and len(bodies) == 1  # the same notice every time


def test_backoff_has_full_jitter(receiver: Receiver, tmp_path: Path) -> None:
    receiver.script = [Reply(500)] * 4
    cfg = config(webhook_yaml(receiver.url(), "delivery: {maxAttempts: 5, initialBackoffSeconds: 2}"), tmp_path)
    sleeps = Sleeps()
    deliver(cfg, [(event(), None)], expect=1, sleep=sleeps, rng=random.Random(7))
    ceilings = [2.0, 4.0, 8.0, 16.0]
    assert len(sleeps.delays) == 4
    assert all(0 <= d <= c for d, c in zip(sleeps.delays, ceilings, strict=True))
    assert sleeps.delays != ceilings


def test_retry_after_is_honoured_for_429(receiver: Receiver, tmp_path: Path) -> None:
    receiver.script = [Reply(429, headers={"Retry-After": "7"})]
    cfg = config(webhook_yaml(receiver.url()), tmp_path)
    sleeps = Sleeps()
    stats = deliver(cfg, [(event(), None)], expect=1, sleep=sleeps)
    assert stats["hook"].sent == 1 and sleeps.delays == [7.0]


def test_a_receiver_that_sleeps_is_a_timeout_and_retried(receiver: Receiver, tmp_path: Path) -> None:
    receiver.script = [Reply(delay=5.0)]
    cfg = config(webhook_yaml(receiver.url(), "delivery: {timeoutSeconds: 0.3}"), tmp_path)
    stats = deliver(cfg, [(event(), None)], expect=1)
    assert (stats["hook"].sent, stats["hook"].retries) == (1, 1)
    assert len(receiver.requests) == 2


def test_a_permanent_4xx_is_not_retried_and_goes_to_the_dead_letter_file(
    receiver: Receiver, tmp_path: Path
) -> None:
    receiver.default = Reply(404, b"no such hook")
    dead = tmp_path / "dead.jsonl"
    cfg = config(webhook_yaml(receiver.url()), tmp_path)
    stats = deliver(cfg, [(event(), game_server())], expect=1, dead_letter=dead)
    assert (stats["hook"].sent, stats["hook"].retries, stats["hook"].failed) == (0, 0, 1)
    assert len(receiver.requests) == 1
    (line,) = dead.read_text().splitlines()
    record = json.loads(line)
    assert record["sink"] == "hook" and record["attempts"] == 1
    assert record["error"] == "HTTP 404: no such hook (not retried)"
    assert record["event"] == EXPECTED_EVENT
    assert record["body"]["gameServer"]["opsState"] == "Maintaining"
    assert dead.stat().st_mode & 0o777 == 0o600


def test_dead_letter_after_the_last_try_has_secrets_redacted(receiver: Receiver, tmp_path: Path) -> None:
    # A receiver that echoes the request path (with the token) in its error page.
    receiver.default = Reply(500, f"upstream failed for /hooks/{TOKEN}?key={TOKEN}".encode())
    dead = tmp_path / "dead.jsonl"
    cfg = config("""
deadLetterFile: dead.jsonl
delivery: {maxAttempts: 3}
sinks:
  - name: hook
    type: webhook
    urlFrom: {env: HOOK_URL}
    headers:
      - {name: Authorization, valueFrom: {env: HOOK_AUTH}}
      - {name: X-Team, value: games}  # plain configuration, not a secret
""", tmp_path, {"HOOK_URL": receiver.url(f"/hooks/{TOKEN}?key={TOKEN}"), "HOOK_AUTH": AUTH})
    assert cfg.dead_letter_file == dead
    leaky = event(message=f"someone pasted {AUTH} here", namespace="games")
    stats = deliver(cfg, [(leaky, None)], expect=1, dead_letter=cfg.dead_letter_file)
    assert (stats["hook"].retries, stats["hook"].failed) == (2, 1)
    assert len(receiver.requests) == 3
    text = dead.read_text()
    (line,) = text.splitlines()
    record = json.loads(line)
    assert record["attempts"] == 3
    assert record["error"] == "HTTP 500: upstream failed for <redacted>"
    assert record["url"] == f"http://127.0.0.1:{receiver.server.server_address[1]}/…"
    assert record["event"]["message"] == "someone pasted <redacted> here"
    assert record["event"]["involvedObject"]["namespace"] == "games"
    for secret in (TOKEN, AUTH, "hdr-8c1f2e9a7d3b"):
        assert secret not in text


def test_an_unreachable_receiver_is_retried_then_dead_lettered(tmp_path: Path) -> None:
    # A port nobody listens on: connection refused, retryable, then the dead-letter file.
    with ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler) as probe:
        port = probe.server_address[1]
    cfg = config(webhook_yaml(f"http://127.0.0.1:{port}/hook", "delivery: {maxAttempts: 2}"), tmp_path)
    stats = deliver(cfg, [(event(), None)], expect=1, dead_letter=tmp_path / "dead.jsonl")
    assert (stats["hook"].retries, stats["hook"].failed) == (1, 1)
    assert "connection failed" in json.loads((tmp_path / "dead.jsonl").read_text())["error"]


# -- folding and filters --------------------------------------------------------------------------------------


def test_repeats_are_folded_within_the_window_and_counted_on_the_next_send(
    receiver: Receiver, tmp_path: Path
) -> None:
    cfg = config(f"""
foldWindowSeconds: 60
sinks:
  - {{name: hook, type: webhook, url: "{receiver.url()}"}}
  - {{name: chat, type: slack, url: "{receiver.url('/slack')}"}}
""", tmp_path)
    clock = Clock()

    async def main() -> dict[str, SinkStats]:
        async with Notifier(cfg, clock=clock, sleep=Sleeps()) as notifier:
            for t in (0, 10, 20, 30, 40):  # one sent, four folded
                clock.now = 1000 + t
                notifier.submit(event(), game_server())
            notifier.submit(event(message="a different message"), game_server())  # its own key
            await until(done(notifier, 4))
            clock.now = 1070  # past the window: sent, carrying the count
            notifier.submit(event(), game_server())
            await until(done(notifier, 6))
            return notifier.stats()

    stats = asyncio.run(main())
    assert (stats["hook"].sent, stats["hook"].folded) == (3, 4)
    hook = [r.json() for r in receiver.requests if r.path == "/hook"]
    chat = [r.json()["text"] for r in receiver.requests if r.path == "/slack"]
    assert [b["folded"] for b in hook] == [None, None, {"count": 5, "seconds": 70}]
    assert chat[-1].endswith("OpsState turn from None to Maintaining (x5 in the last 70s)")
    assert not chat[0].endswith("s)")


def test_fold_window_zero_sends_every_repeat(receiver: Receiver, tmp_path: Path) -> None:
    cfg = config(webhook_yaml(receiver.url(), "foldWindowSeconds: 0"), tmp_path)
    stats = deliver(cfg, [(event(), None)] * 3, expect=3)
    assert (stats["hook"].sent, stats["hook"].folded) == (3, 0)


def test_filters_by_type_reason_namespace_kind_and_gss(receiver: Receiver, tmp_path: Path) -> None:
    cfg = config(f"""
foldWindowSeconds: 0
sinks:
  - name: default-filter
    type: webhook
    url: "{receiver.url('/default')}"
  - name: narrow
    type: webhook
    url: "{receiver.url('/narrow')}"
    filter:
      types: [Normal, Warning]
      reasons: [GsStateChanged]
      namespaces: [games]
      kinds: [GameServer]
      gameServerSets: [minecraft]
""", tmp_path)
    items = [
        (event(namespace="games"), game_server(namespace="games")),  # both
        (event(type="Normal", namespace="games", message="State turn from Creating to Ready "),
         game_server(namespace="games")),  # narrow only (default is Warning only)
        (event(namespace="default"), game_server()),  # default only: namespace
        (event(namespace="games", reason="InvalidDeletionPriority"), game_server(namespace="games")),  # reason
        (event(namespace="games"), game_server(gss="terraria", namespace="games")),  # gss
        (event(namespace="games", kind="GameServerSet", name="minecraft"), None),  # kind
        (event(namespace="games", name="gone-3"), None),  # GameServer deleted: gss unknown
    ]
    stats = deliver(cfg, items, expect=7)
    assert (stats["default-filter"].matched, stats["default-filter"].filtered) == (6, 1)
    assert (stats["narrow"].matched, stats["narrow"].filtered) == (2, 5)
    narrow = [r.json()["event"] for r in receiver.requests if r.path == "/narrow"]
    assert sorted(e["type"] for e in narrow) == ["Normal", "Warning"]


# -- a dead receiver never stalls the submitting side ------------------------------------------------------------


def test_a_hung_receiver_never_blocks_submit(receiver: Receiver, tmp_path: Path) -> None:
    receiver.default = Reply(delay=60.0)  # answers only when the test ends
    dead = tmp_path / "dead.jsonl"
    cfg = config(webhook_yaml(receiver.url(), """
queueSize: 10
workers: 2
delivery: {timeoutSeconds: 60, maxAttempts: 1}
"""), tmp_path)
    assert not inspect.iscoroutinefunction(Notifier.submit)  # nothing to await: it cannot wait on the network

    async def main() -> tuple[SinkStats, int, SinkStats]:
        notifier = Notifier(cfg, dead_letter=dead)
        await notifier.start()
        for i in range(2):
            notifier.submit(event(message=f"first {i}"), game_server())
        await until(lambda: len(receiver.requests) == 2)  # both workers are now stuck in a request
        returned = 0
        for i in range(1000):
            notifier.submit(event(message=f"burst {i}"), game_server())
            returned += 1
        during = notifier.stats()["hook"]
        assert notifier.pending() == {"hook": 10}
        # The loop stays free, and asyncio's default executor (the HTTP probes run there) is not occupied.
        ticks = 0
        for _ in range(20):
            await asyncio.sleep(0.001)
            ticks += 1
        assert ticks == 20
        assert await asyncio.wait_for(asyncio.to_thread(lambda: 42), 5) == 42
        await notifier.aclose(drain_seconds=0)
        return during, returned, notifier.stats()["hook"]

    during, returned, after = asyncio.run(main())
    assert returned == 1000
    assert (during.queued, during.dropped, during.sent) == (1002, 990, 0)  # drop-oldest kept the newest 10
    assert after.failed == 12  # 2 in flight + 10 queued: dead-lettered at shutdown, none lost silently
    lines = [json.loads(line) for line in dead.read_text().splitlines()]
    assert {line["error"] for line in lines} == {"not delivered before shutdown"}
    assert sorted(line["event"]["message"] for line in lines if "burst" in line["event"]["message"]) == sorted(
        f"burst {i}" for i in range(990, 1000)
    )


def test_a_hung_sink_does_not_hold_back_the_others(receiver: Receiver, tmp_path: Path) -> None:
    receiver.by_path["/stuck"] = Reply(delay=60.0)
    cfg = config(f"""
foldWindowSeconds: 0
delivery: {{timeoutSeconds: 60, maxAttempts: 1}}
sinks:
  - {{name: stuck, type: webhook, url: "{receiver.url('/stuck')}"}}
  - {{name: fine, type: slack, url: "{receiver.url('/fine')}"}}
""", tmp_path)

    async def main() -> dict[str, SinkStats]:
        notifier = Notifier(cfg)
        await notifier.start()
        for i in range(5):
            notifier.submit(event(message=f"m{i}"), None)
        await until(lambda: notifier.stats()["fine"].sent == 5)
        stats = notifier.stats()
        await notifier.aclose(drain_seconds=0)
        return stats

    stats = asyncio.run(main())
    assert (stats["stuck"].sent, stats["fine"].sent) == (0, 5)
    assert sum(r.path == "/stuck" for r in receiver.requests) == 1  # one worker, stuck on the first


# -- configuration -----------------------------------------------------------------------------------------------


def test_config_errors_name_the_field(tmp_path: Path) -> None:
    found = problems("""
queueSize: 0
colour: blue
delivery: {maxAttempts: "3"}
sinks:
  - type: webhook
    urll: http://x
  - type: teams
    url: http://x
  - type: slack
    urlFrom: {env: NOT_SET_ANYWHERE}
    filter: {types: [Error], reasons: []}
  - type: dingtalk
    url: https://oapi.dingtalk.com/robot/send
  - type: webhook
    url: ftp://example.com/x
    headers: [{name: "Bad Header", value: x}]
  - type: slack
    url: https://hooks.slack.com/a
    urlFrom: {env: X}
  - type: webhook
    urlFrom: {env: A, file: b}
  - type: dingtalk
    url: https://oapi.dingtalk.com/robot/send?access_token=abcd
    secretFrom: {file: missing.secret}
""", tmp_path)
    assert "notify.yaml: queueSize: must be >= 1, got 0" in found
    assert "notify.yaml: colour: unknown field (check the spelling and indentation; see docs/notifications.md)" \
        in found
    assert "notify.yaml: delivery.maxAttempts: expected an integer, got \"3\"" in found
    # The top level is refused before the sinks are looked at; with it right, every sink's problems show.
    found = problems("""
sinks:
  - type: webhook
    urll: http://x
  - type: teams
    url: http://x
  - type: slack
    urlFrom: {env: NOT_SET_ANYWHERE}
    filter: {types: [Error], reasons: []}
  - type: dingtalk
    url: https://oapi.dingtalk.com/robot/send
  - type: webhook
    url: ftp://example.com/x
    headers: [{name: "Bad Header", value: x}]
  - type: slack
    url: https://hooks.slack.com/a
    urlFrom: {env: X}
  - type: webhook
    urlFrom: {env: A, file: b}
  - type: dingtalk
    url: https://oapi.dingtalk.com/robot/send?access_token=abcd
    secretFrom: {file: missing.secret}
  - {type: slack, name: dup, url: "https://hooks.slack.com/a"}
  - {type: slack, name: dup, url: "https://hooks.slack.com/b"}
  - {type: webhook, url: "http://x", delivery: {timeoutSeconds: -1}}
  - {type: webhook, url: "http://x", delivery: {initialBackoffSeconds: 10, maxBackoffSeconds: 2}}
  - {type: webhook, name: "bad name!", url: "http://x", headers: {a: b}}
""", tmp_path)
    assert found == [
        "notify.yaml: sinks[0].urll: unknown field (check the spelling and indentation; see docs/notifications.md)",
        'notify.yaml: sinks[1].type: expected one of webhook, slack, dingtalk, got "teams"',
        "notify.yaml: sinks[2].filter.types[0]: expected one of 'Normal' or 'Warning', got \"Error\"",
        "notify.yaml: sinks[2].filter.reasons: must have at least 1 item(s)",
        "notify.yaml: sinks[3].url: a DingTalk robot URL carries its token: …/robot/send?access_token=TOKEN",
        "notify.yaml: sinks[4].url: expected an http:// or https:// URL",
        'notify.yaml: sinks[4].headers[0].name: "Bad Header" is not a valid HTTP header name',
        "notify.yaml: sinks[5]: give either url or urlFrom, not both",
        "notify.yaml: sinks[6].urlFrom: give exactly one of env or file",
        f"notify.yaml: sinks[7].secretFrom.file: cannot read {tmp_path / 'missing.secret'}: No such file or directory",
        "notify.yaml: sinks[9].name: 'dup' is already the name of sinks[8]; give each sink its own name",
        "notify.yaml: sinks[10].delivery.timeoutSeconds: must be > 0.0, got -1",
        "notify.yaml: sinks[11].delivery.maxBackoffSeconds: must be >= initialBackoffSeconds",
        "notify.yaml: sinks[12].name: \"bad name!\" is not a valid name (letters, digits, '-', '_', '.')",
        "notify.yaml: sinks[12].headers: expected a list, got a mapping",
    ]
    # The slack sink's filter errors stop it before its URL is looked at; alone, the env var is named.
    assert problems("sinks: [{type: slack, urlFrom: {env: NOT_SET_ANYWHERE}}]", tmp_path) == [
        "notify.yaml: sinks[0].urlFrom.env: environment variable NOT_SET_ANYWHERE is not set (or empty)"
    ]
    assert problems("sinks: [{type: slack}]", tmp_path) == [
        "notify.yaml: sinks[0].urlFrom: required field is missing (or give url inline)"
    ]
    assert problems("sinks: []", tmp_path) == ["notify.yaml: sinks: must have at least 1 item(s)"]
    assert problems("sinks: [{url: http://x}]", tmp_path) == [
        "notify.yaml: sinks[0].type: expected one of webhook, slack, dingtalk, got nothing"
    ]


def test_bad_url_errors_never_quote_the_url(tmp_path: Path) -> None:
    found = problems("sinks: [{type: slack, urlFrom: {env: U}}]", tmp_path, {"U": f"hooks.slack.com/{TOKEN}"})
    assert found == ["notify.yaml: sinks[0].urlFrom: expected an http:// or https:// URL"]


def test_the_example_config_is_valid(tmp_path: Path) -> None:
    path = ROOT / "examples" / "notify.yaml"
    env = {
        "GK_ONCALL_WEBHOOK_URL": "https://alerts.example.com/gamekeeper",
        "GK_ONCALL_WEBHOOK_TOKEN": "Bearer t0ken",
        "GK_SLACK_WEBHOOK_URL": "https://hooks.slack.com/services/T000/B000/XXXX",
        "GK_DINGTALK_WEBHOOK_URL": "https://oapi.dingtalk.com/robot/send?access_token=abcdef",
        "GK_DINGTALK_SECRET": "SECabcdef",
    }
    cfg = parse_notify_config(path.read_text(), str(path), path.parent, env)
    assert [(s.name, s.type) for s in cfg.sinks] == [
        ("oncall", "webhook"), ("ops-slack", "slack"), ("ops-dingtalk", "dingtalk")
    ]
    assert cfg.warnings == ()


def test_secrets_never_reach_logs_reprs_or_warnings(
    receiver: Receiver, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    receiver.default = Reply(500, f"bad {TOKEN}".encode())
    url = receiver.url(f"/robot/send?access_token={TOKEN}")
    cfg = config(f"""
delivery: {{maxAttempts: 2}}
sinks:
  - name: ding
    type: dingtalk
    url: "{url}"
    secret: {SIGNING}
  - name: hook
    type: webhook
    urlFrom: {{env: HOOK_URL}}
    headers: [{{name: X-Api-Key, value: "{AUTH}"}}]
""", tmp_path, {"HOOK_URL": receiver.url(f"/h/{TOKEN}")})
    assert [w.split(":")[1].strip() for w in cfg.warnings] == [
        "sinks[0].url", "sinks[0].secret", "sinks[1].headers[0].value"
    ]
    caplog.set_level(logging.DEBUG, logger="gamekeeper")
    notifier_repr: list[str] = []

    async def main() -> None:
        async with Notifier(cfg, dead_letter=tmp_path / "dead.jsonl", sleep=Sleeps()) as notifier:
            notifier_repr.append(repr(notifier))
            notifier.submit(event(), game_server())
            await until(done(notifier, 2))

    asyncio.run(main())
    assert len(receiver.requests) == 4
    records = [r for r in caplog.records if r.name.startswith("gamekeeper")]
    assert any("not delivered" in r.getMessage() for r in records)
    shown = [
        *(r.getMessage() for r in records),
        *(str(v) for r in records for v in vars(r).values()),
        *cfg.warnings, repr(cfg), str(cfg), *(repr(s) for s in cfg.sinks), *notifier_repr,
        (tmp_path / "dead.jsonl").read_text(),
    ]
    for secret in (TOKEN, AUTH, SIGNING, url):
        assert not any(secret in text for text in shown), secret
    assert "127.0.0.1" in repr(cfg)  # what may be shown of a URL: scheme, host and port


# -- following the embedded state ------------------------------------------------------------------------------


def _seed_state(state_dir: Path) -> dict[str, Any]:
    state = SqliteState(state_dir)
    gs = game_server()
    status = gs.pop("status")
    created = state.create(gs)
    state.patch("GameServer", "default", "minecraft-1", {"status": status}, subresource="status")
    state.record_event(created, "Warning", "GsStateChanged", "State turn from Ready to Crash ")  # before start
    state.close()
    return created


def test_follow_events_end_to_end(receiver: Receiver, tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    gs = _seed_state(state_dir)
    cfg = config(webhook_yaml(receiver.url()), tmp_path)

    async def main() -> SinkStats:
        async with Notifier(cfg) as notifier:
            ready, stop = asyncio.Event(), asyncio.Event()
            # A long safety wake-up: only the store's wake-up datagram can make this test finish in time.
            task = asyncio.create_task(
                follow_events(state_dir, notifier, ready=ready, stop=stop, safety_wake_seconds=300)
            )
            await ready.wait()
            writer = SqliteState(state_dir)  # another connection, as the controller's would be
            writer.record_event(gs, "Warning", "GsStateChanged", MAINTAINING)
            writer.record_event(gs, "Normal", "GsStateChanged", "State turn from Creating to Ready ")
            writer.close()
            await until(lambda: notifier.stats()["hook"].filtered == 1 and notifier.stats()["hook"].sent == 1)
            stop.set()
            await asyncio.wait_for(task, 5)
            return notifier.stats()["hook"]

    stats = asyncio.run(main())
    assert (stats.matched, stats.sent, stats.filtered) == (1, 1, 1)
    (req,) = receiver.requests  # the Crash event from before the start is not replayed
    body = req.json()
    assert body["event"]["type"] == "Warning" and body["event"]["message"] == MAINTAINING
    assert body["gameServer"] == {
        "name": "minecraft-1",
        "namespace": "default",
        "gameServerSet": "minecraft",
        "opsState": "Maintaining",
        "currentState": "Ready",
        "serviceQualitiesConditions": [{"name": "idle", "status": "False", "result": "players: 1"}],
    }


def test_follow_events_can_replay_kept_events(receiver: Receiver, tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    _seed_state(state_dir)
    cfg = config(webhook_yaml(receiver.url()), tmp_path)

    async def main() -> None:
        async with Notifier(cfg) as notifier:
            stop = asyncio.Event()
            task = asyncio.create_task(follow_events(SqliteState(state_dir), notifier, replay=True, stop=stop))
            await until(done(notifier, 1))
            stop.set()
            await asyncio.wait_for(task, 5)

    asyncio.run(main())
    assert [r.json()["event"]["message"] for r in receiver.requests] == ["State turn from Ready to Crash "]


def test_notifications_running_beside_a_controller(receiver: Receiver, tmp_path: Path) -> None:
    # What the embedded controller wraps around its controllers; dead letters default into the state dir.
    state_dir = tmp_path / "state"
    gs = _seed_state(state_dir)
    receiver.default = Reply(500)
    cfg = config(webhook_yaml(receiver.url(), "delivery: {maxAttempts: 1}"), tmp_path)
    dead = state_dir / "notify-dead-letter.jsonl"

    async def main() -> None:
        async with notifications_running(state_dir, None):
            pass  # not configured: nothing runs
        async with notifications_running(state_dir, cfg):
            # It starts from "now" and gives no ready signal here: write until one event got through.
            writer = SqliteState(state_dir)
            for i in range(200):
                writer.record_event(gs, "Warning", "GsStateChanged", f"attempt {i}")
                await asyncio.sleep(0.02)
                if dead.exists():
                    break
            writer.close()

    asyncio.run(main())
    first = json.loads(dead.read_text().splitlines()[0])
    assert first["sink"] == "hook" and first["error"] == "HTTP 500: ok"
