"""Feed a Notifier from the embedded state: tail the `events` table and attach each event's GameServer.

The tail is woken by the store's watch sockets (one datagram per committed write), never by polling; the
timeout of the wait is only a safety net for a lost datagram. Repeats of an event update its row and its
resourceVersion, so they come back here too, and the Notifier folds them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

from gamekeeper.observe.notify import Notifier
from gamekeeper.observe.notify_config import NotifyConfig, Redactor
from gamekeeper.ports.store import Obj
from gamekeeper.store.sqlite import SqliteState, SqliteStore, Waker

log = logging.getLogger("gamekeeper.notify")


async def follow_events(
    source: Path | str | SqliteState | SqliteStore,
    notifier: Notifier,
    *,
    replay: bool = False,
    since_rv: int | None = None,
    safety_wake_seconds: float = 5.0,
    stop: asyncio.Event | None = None,
    ready: asyncio.Event | None = None,
) -> None:
    """Submit every event written after the call (or after `since_rv`, or all kept ones with `replay`).

    `source` is a state directory (a connection of its own is opened and closed here) or an open state.

    Runs until `stop` is set or the task is cancelled. `ready` is set once the starting point is fixed, so
    a caller (a test) can write events knowing they will be seen.
    """
    if isinstance(source, SqliteStore):
        source = source.state
    own = not isinstance(source, SqliteState)
    state = source if isinstance(source, SqliteState) else SqliteState(Path(source))
    # Bound before the starting point is read: a write in between wakes us instead of being missed.
    waker = Waker(state.watch_dir)
    try:
        last = 0 if replay else since_rv if since_rv is not None else state.current_rv()
        if ready is not None:
            ready.set()
        while stop is None or not stop.is_set():
            last = _submit_new(state, notifier, last)
            await _wait(waker, safety_wake_seconds, stop)
    finally:
        waker.close()
        if own:
            state.close()


def _submit_new(state: SqliteState, notifier: Notifier, last: int) -> int:
    try:
        events = state.list_events(since_rv=last)
    except sqlite3.Error as err:  # a locked or busy database is retried on the next wake-up
        log.warning("cannot read events: %s", err)
        return last
    game_servers: dict[tuple[str, str], Obj | None] = {}
    for event in events:
        last = max(last, event.resource_version)
        gs: Obj | None = None
        if event.kind == "GameServer":
            key = (event.namespace, event.name)
            if key not in game_servers:
                try:
                    game_servers[key] = state.get("GameServer", event.namespace, event.name)
                except sqlite3.Error:
                    game_servers[key] = None
            gs = game_servers[key]
        notifier.submit(event, gs)
    return last


async def _wait(waker: Waker, timeout: float, stop: asyncio.Event | None) -> None:
    if stop is None:
        await waker.wait(timeout)
        return
    wake = asyncio.ensure_future(waker.wait(timeout))
    stopped = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({wake, stopped}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (wake, stopped):
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(wake, stopped, return_exceptions=True)


async def serve_notifications(
    state_dir: Path, config: NotifyConfig, stop: asyncio.Event, drain_seconds: float = 5.0
) -> None:
    """What `gk serve --notify FILE` runs beside the controller: follow the state until `stop`, then drain.

    The dead-letter file defaults to `<state dir>/notify-dead-letter.jsonl`.
    """
    dead_letter = config.dead_letter_file or (Path(state_dir) / "notify-dead-letter.jsonl")
    notifier = Notifier(config, dead_letter=dead_letter)
    await notifier.start()
    log.info("notifications on: %s", ", ".join(f"{s.name} ({s.type})" for s in config.sinks))
    try:
        await follow_events(state_dir, notifier, stop=stop)
    finally:
        await notifier.aclose(drain_seconds)


@contextlib.asynccontextmanager
async def notifications_running(
    state_dir: Path, config: NotifyConfig | None, drain_seconds: float = 5.0
) -> AsyncIterator[None]:
    """Run `serve_notifications` for the duration of the block; with no config, do nothing.

    For the embedded controller: `async with notifications_running(state_dir, config):` around the controllers,
    inside the controller lock (so two controllers never notify twice). Leaving the block drains the queues for up
    to `drain_seconds`. A failure of the notifications is logged, never raised into the controller.
    """
    if config is None:
        yield
        return
    redact = Redactor(config.secrets())
    stop = asyncio.Event()
    task = asyncio.create_task(serve_notifications(state_dir, config, stop, drain_seconds), name="notify")

    def report(finished: asyncio.Task[None]) -> None:
        if not finished.cancelled() and finished.exception() is not None:
            log.error("notifications stopped: %s", redact(repr(finished.exception())))

    task.add_done_callback(report)
    try:
        yield
    finally:
        stop.set()
        with contextlib.suppress(Exception):  # already logged by report()
            await task
