"""Event notifications: a Notifier that delivers events to webhook, Slack and DingTalk sinks beside the controller.

The controller side only ever calls `submit()`, which filters, folds repeats and enqueues without awaiting
anything, so a dead receiver costs the controller nothing. Each sink has its own bounded queue and workers (a
hung Slack does not hold back DingTalk); when a queue is full the oldest waiting notice is dropped, because the
newest one describes the fleet as it is now. Workers POST with urllib on daemon threads of their own: not on
asyncio's default executor, which the probes use (a hanging receiver must not delay a probe), and not blocking
the interpreter's exit. A failed POST is retried with exponential backoff and full jitter; after the last try
the notice is appended, with every secret redacted, to a dead-letter file of JSON lines.

See docs/notifications.md for the config file, the payloads and the delivery rules.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import logging
import os
import random
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from gamekeeper.api.times import format_time
from gamekeeper.observe.notify_config import (
    NotifyConfig,
    Redactor,
    SinkConfig,
    load_notify_config,
    parse_notify_config,
    safe_url,
)
from gamekeeper.observe.notify_payloads import (
    GameServerInfo,
    Notice,
    dingtalk_body,
    dingtalk_signed_url,
    event_json,
    slack_body,
    webhook_body,
)
from gamekeeper.ports.store import EventRecord, Obj

__all__ = [
    "Notifier",
    "NotifyConfig",
    "SinkStats",
    "load_notify_config",
    "parse_notify_config",
]

log = logging.getLogger("gamekeeper.notify")

T = TypeVar("T")

USER_AGENT = "gamekeeper-notify/0.1"
MAX_RESPONSE_BYTES = 64 * 1024
# DingTalk answers 200 with a JSON errcode; 130101 is its "send too fast" throttle (20 messages a minute per
# robot), worth retrying; any other non-zero errcode (bad token, signature, keyword) will not get better.
DINGTALK_RETRYABLE_ERRCODES = frozenset({130101})
# Repeats are remembered per (object, type, reason, message); the table is pruned every this many submits and
# never grows past FOLD_MAX_KEYS (the oldest entries go first).
FOLD_PRUNE_EVERY = 256
FOLD_MAX_KEYS = 50_000
# A full queue is logged on the first drop and then once per this many, not on every event.
DROP_LOG_EVERY = 100


@dataclass
class SinkStats:
    """Counters of one sink; the tests and the metrics read them."""

    matched: int = 0  # events that passed the filter
    filtered: int = 0  # events the filter rejected
    folded: int = 0  # matched repeats inside the fold window (sent later as a count)
    queued: int = 0
    dropped: int = 0  # pushed out of a full queue
    sent: int = 0
    retries: int = 0
    failed: int = 0  # written to the dead-letter file (after the last try, or undelivered at shutdown)


@dataclass
class _Fold:
    last_sent: float
    suppressed: int = 0


@dataclass(frozen=True)
class _Outcome:
    ok: bool
    retryable: bool
    detail: str  # already redacted
    retry_after: float | None = None


@dataclass
class _SinkRunner:
    sink: SinkConfig
    queue: asyncio.Queue[Notice]
    stats: SinkStats = field(default_factory=SinkStats)
    folds: dict[tuple[str, str, str, str, str, str], _Fold] = field(default_factory=dict)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirect is reported, not followed: urllib would turn the POST into a GET and drop the body, and the
    Location may be another host that must not see the token."""

    def redirect_request(
        self, req: urllib.request.Request, fp: Any, code: int, msg: str, headers: Any, newurl: str
    ) -> urllib.request.Request | None:
        return None


def _in_daemon_thread(func: Callable[[], T]) -> asyncio.Future[T]:
    """Run `func` on a fresh daemon thread; the future settles on the loop's thread."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(result: T | None, error: BaseException | None) -> None:
        if future.done():  # the awaiting task gave up (timeout, shutdown)
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)  # type: ignore[arg-type]  # None only when error is set

    def run() -> None:
        try:
            result, error = func(), None
        except BaseException as err:  # handed to the awaiting task, which decides
            result, error = None, err
        # The loop may be closed if the process is shutting down; the result has nobody to go to then.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(settle, result, error)

    threading.Thread(target=run, name="gk-notify-http", daemon=True).start()
    return future


@dataclass(frozen=True)
class _Response:
    status: int
    body: bytes
    retry_after: str | None


def _post(opener: urllib.request.OpenerDirector, url: str, headers: dict[str, str], body: bytes,
          timeout: float) -> _Response:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with opener.open(request, timeout=timeout) as response:
            return _Response(response.status, response.read(MAX_RESPONSE_BYTES), response.headers.get("Retry-After"))
    except urllib.error.HTTPError as err:
        payload = b""
        with contextlib.suppress(Exception):
            payload = err.read(MAX_RESPONSE_BYTES)
        retry_after = err.headers.get("Retry-After") if err.headers is not None else None
        return _Response(err.code, payload, retry_after)


def _retry_after_seconds(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None  # an HTTP-date; the backoff applies instead
    return seconds if seconds >= 0 else None


class Notifier:
    """Deliver events to the configured sinks without ever blocking the caller.

    Use it as `async with Notifier(config) as notifier:` (or `await start()` / `await aclose()`), and call
    `submit(event, gameserver)` from the event loop's thread.
    """

    def __init__(
        self,
        config: NotifyConfig,
        *,
        dead_letter: Path | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self.config = config
        self.dead_letter = dead_letter if dead_letter is not None else config.dead_letter_file
        self._clock = clock
        self._wall_clock = wall_clock
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._redact = Redactor(config.secrets())
        # Built here, not at import, so proxy settings are read from the environment of the process that runs.
        self._opener = urllib.request.build_opener(_NoRedirect)
        self._runners = [
            _SinkRunner(sink, asyncio.Queue(maxsize=config.queue_size)) for sink in config.sinks
        ]
        self._dead_letter_lock = threading.Lock()
        self._submits = 0
        self._started = False
        self._closed = False

    def __repr__(self) -> str:
        sinks = ", ".join(f"{r.sink.name}({r.sink.type} {safe_url(r.sink.url.get_secret_value())})"
                          for r in self._runners)
        return f"Notifier(sinks=[{sinks}])"

    __str__ = __repr__

    # -- lifecycle ------------------------------------------------------------------------------------------

    async def start(self) -> None:
        if self._started:
            return
        self._started = True
        for runner in self._runners:
            for i in range(self.config.workers):
                runner.tasks.append(
                    asyncio.create_task(self._worker(runner), name=f"notify-{runner.sink.name}-{i}")
                )

    async def aclose(self, drain_seconds: float = 5.0) -> None:
        """Stop taking events, give the queues `drain_seconds` to empty, then dead-letter what is left."""
        self._closed = True
        if self._started:
            joins = [asyncio.create_task(r.queue.join()) for r in self._runners]
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.gather(*joins), drain_seconds)
            for task in joins:
                task.cancel()
        for runner in self._runners:
            for task in runner.tasks:
                task.cancel()
            await asyncio.gather(*runner.tasks, return_exceptions=True)
            runner.tasks.clear()
            while not runner.queue.empty():
                notice = runner.queue.get_nowait()
                await self._dead_letter(runner, notice, 0, "not delivered before shutdown")

    async def __aenter__(self) -> Notifier:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    # -- the controller side ---------------------------------------------------------------------------------

    def submit(self, event: EventRecord, gameserver: Obj | None = None) -> None:
        """Offer one event to every sink. Never blocks, never awaits and never raises."""
        if self._closed:
            return
        try:
            self._submit(event, gameserver)
        except Exception as err:  # a notification problem must not become a controller problem
            log.error("notification dropped: %s", self._redact(repr(err)))

    def _submit(self, event: EventRecord, gameserver: Obj | None) -> None:
        info = GameServerInfo.from_object(gameserver) if gameserver is not None else None
        gss = info.game_server_set if info is not None else None
        if gss is None and event.kind == "GameServerSet":
            gss = event.name
        now = self._clock()
        self._submits += 1
        for runner in self._runners:
            stats = runner.stats
            if not runner.sink.filter.matches(event.type, event.reason, event.namespace, event.kind, gss):
                stats.filtered += 1
                continue
            stats.matched += 1
            folded = self._fold(runner, event, now)
            if folded is None:
                stats.folded += 1
                continue
            repeats, seconds = folded
            self._enqueue(runner, Notice(event, info, gss, repeats, seconds))
        if self._submits % FOLD_PRUNE_EVERY == 0:
            self._prune_folds(now)

    def _fold(self, runner: _SinkRunner, event: EventRecord, now: float) -> tuple[int, int] | None:
        """(repeats, seconds since the last notice) to send now, or None when this one is folded."""
        window = self.config.fold_window_seconds
        if window <= 0:
            return 1, 0
        key = (event.kind, event.namespace, event.name, event.type, event.reason, event.message)
        fold = runner.folds.get(key)
        if fold is not None and now - fold.last_sent < window:
            fold.suppressed += 1
            return None
        runner.folds.pop(key, None)  # re-inserted last, so the dict stays ordered by last_sent for pruning
        runner.folds[key] = _Fold(now)
        if fold is None or fold.suppressed == 0:
            return 1, 0
        return fold.suppressed + 1, round(now - fold.last_sent)

    def _prune_folds(self, now: float) -> None:
        window = self.config.fold_window_seconds
        for runner in self._runners:
            folds = runner.folds
            stale = [k for k, f in folds.items() if f.suppressed == 0 and now - f.last_sent >= window]
            for key in stale:
                del folds[key]
            while len(folds) > FOLD_MAX_KEYS:
                del folds[next(iter(folds))]

    def _enqueue(self, runner: _SinkRunner, notice: Notice) -> None:
        if runner.queue.full():
            runner.queue.get_nowait()
            runner.queue.task_done()
            runner.stats.dropped += 1
            if runner.stats.dropped % DROP_LOG_EVERY == 1:
                log.warning(
                    "notification queue full; dropped the oldest waiting notice (%d dropped so far)",
                    runner.stats.dropped, extra={"sink": runner.sink.name},
                )
        runner.queue.put_nowait(notice)
        runner.stats.queued += 1

    # -- introspection --------------------------------------------------------------------------------------

    def stats(self) -> dict[str, SinkStats]:
        return {r.sink.name: SinkStats(**asdict(r.stats)) for r in self._runners}

    def pending(self) -> dict[str, int]:
        return {r.sink.name: r.queue.qsize() for r in self._runners}

    # -- delivery -------------------------------------------------------------------------------------------

    async def _worker(self, runner: _SinkRunner) -> None:
        while True:
            notice = await runner.queue.get()
            try:
                await self._deliver(runner, notice)
            except asyncio.CancelledError:
                runner.queue.task_done()
                raise
            except Exception as err:  # a bug here must not kill the worker and silently stop the sink
                log.error("notification failed unexpectedly: %s", self._redact(repr(err)),
                          extra={"sink": runner.sink.name})
                runner.queue.task_done()
            else:
                runner.queue.task_done()

    def render(self, sink: SinkConfig, notice: Notice) -> dict[str, Any]:
        if sink.type == "slack":
            return slack_body(notice)
        if sink.type == "dingtalk":
            return dingtalk_body(notice, sink.title, sink.at_mobiles, sink.at_all)
        return webhook_body(notice)

    async def _deliver(self, runner: _SinkRunner, notice: Notice) -> None:
        sink = runner.sink
        policy = sink.delivery
        payload = self.render(sink, notice)
        body = json.dumps(payload, ensure_ascii=False).encode()
        outcome = _Outcome(False, False, "not tried")
        attempt = 0
        try:
            for attempt in range(1, policy.max_attempts + 1):
                outcome = await self._attempt(sink, body)
                if outcome.ok:
                    runner.stats.sent += 1
                    return
                if not outcome.retryable or attempt == policy.max_attempts:
                    break
                runner.stats.retries += 1
                ceiling = min(policy.max_backoff_seconds, policy.initial_backoff_seconds * 2 ** (attempt - 1))
                delay = self._rng.uniform(0, ceiling)  # full jitter: receivers recovering are not hit in step
                if outcome.retry_after is not None:
                    delay = max(delay, min(outcome.retry_after, policy.max_backoff_seconds))
                log.info("notification attempt %d/%d failed (%s); retrying in %.1fs", attempt,
                         policy.max_attempts, outcome.detail, delay, extra={"sink": sink.name})
                await self._sleep(delay)
        except asyncio.CancelledError:
            # Shutting down mid-delivery: recorded like the notices still queued, then the cancel goes on.
            await asyncio.shield(self._dead_letter(runner, notice, attempt, "not delivered before shutdown", payload))
            raise
        detail = outcome.detail if outcome.retryable else f"{outcome.detail} (not retried)"
        await asyncio.shield(self._dead_letter(runner, notice, attempt, detail, payload))

    async def _attempt(self, sink: SinkConfig, body: bytes) -> _Outcome:
        url = sink.url.get_secret_value()
        if sink.type == "dingtalk" and sink.secret is not None:
            # Signed per attempt: DingTalk refuses a timestamp more than an hour off its clock.
            url = dingtalk_signed_url(url, sink.secret.get_secret_value(), int(self._wall_clock() * 1000))
        headers = {"Content-Type": "application/json; charset=utf-8", "User-Agent": USER_AGENT}
        headers.update({h.name: h.value.get_secret_value() for h in sink.headers})
        timeout = sink.delivery.timeout_seconds
        try:
            # The socket timeout bounds each connect/read; wait_for bounds a receiver that trickles bytes.
            response = await asyncio.wait_for(
                _in_daemon_thread(lambda: _post(self._opener, url, headers, body, timeout)), timeout + 1.0
            )
        except TimeoutError:
            return _Outcome(False, True, f"timed out after {timeout:g}s")
        except urllib.error.URLError as err:
            reason = err.reason
            if isinstance(reason, TimeoutError) or "timed out" in str(reason):
                return _Outcome(False, True, f"timed out after {timeout:g}s")
            return _Outcome(False, True, f"connection failed: {self._redact(str(reason))}")
        except (ConnectionError, http.client.HTTPException, OSError) as err:
            return _Outcome(False, True, f"connection failed: {self._redact(type(err).__name__ + ': ' + str(err))}")
        except ValueError as err:
            return _Outcome(False, False, f"bad request: {self._redact(str(err))}")
        return self._classify(sink, response)

    def _classify(self, sink: SinkConfig, response: _Response) -> _Outcome:
        status = response.status
        text = self._redact(response.body[:200].decode("utf-8", "replace").strip())
        shown = f"HTTP {status}" + (f": {text}" if text else "")
        if 200 <= status < 300:
            if sink.type == "dingtalk":
                return self._dingtalk_outcome(response.body, status)
            return _Outcome(True, False, f"HTTP {status}")
        if status in (408, 429) or status >= 500:
            return _Outcome(False, True, shown, _retry_after_seconds(response.retry_after))
        if 300 <= status < 400:
            return _Outcome(False, False, f"HTTP {status}: redirected; configure the final URL")
        return _Outcome(False, False, shown)

    def _dingtalk_outcome(self, body: bytes, status: int) -> _Outcome:
        try:
            data = json.loads(body or b"{}")
        except ValueError:
            return _Outcome(False, False, f"HTTP {status}: DingTalk answered something that is not JSON")
        errcode = data.get("errcode", 0) if isinstance(data, dict) else 0
        if errcode in (0, None):
            return _Outcome(True, False, f"HTTP {status}")
        errmsg = self._redact(str(data.get("errmsg", "")))[:200]
        return _Outcome(False, errcode in DINGTALK_RETRYABLE_ERRCODES, f"DingTalk errcode {errcode}: {errmsg}")

    async def _dead_letter(
        self,
        runner: _SinkRunner,
        notice: Notice,
        attempts: int,
        error: str,
        payload: dict[str, Any] | None = None,
    ) -> None:
        runner.stats.failed += 1
        sink = runner.sink
        log.error("notification not delivered after %d attempt(s): %s", attempts, error,
                  extra={"sink": sink.name, "reason": notice.event.reason, "object": notice.event.name})
        if self.dead_letter is None:
            return
        record = {
            "time": format_time(datetime.fromtimestamp(self._wall_clock(), UTC)),
            "sink": sink.name,
            "sinkType": sink.type,
            "url": safe_url(sink.url.get_secret_value()),
            "attempts": attempts,
            "error": error,
            "event": event_json(notice.event),
            "body": payload if payload is not None else self.render(sink, notice),
        }
        # Redacted as a whole line: an event message could quote a secret too.
        line = self._redact(json.dumps(record, ensure_ascii=False)) + "\n"
        path = self.dead_letter
        try:
            await _in_daemon_thread(lambda: self._append(path, line))
        except OSError as err:
            log.error("cannot write the dead-letter file %s: %s", path, err.strerror, extra={"sink": sink.name})

    def _append(self, path: Path, line: str) -> None:
        with self._dead_letter_lock:
            path.parent.mkdir(parents=True, exist_ok=True)
            # Owner-only: the payloads describe the fleet even with the secrets taken out.
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            with open(fd, "a", encoding="utf-8") as handle:
                handle.write(line)
