"""A level-triggered work queue: each key is queued at most once; failures come back with back-off."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from gamekeeper.ports.store import Conflict, StoreDamaged

log = logging.getLogger("gamekeeper.queue")

Key = tuple[str, str]
T = TypeVar("T")

# Spacing applies only to keys whose reconcile took at least this long (a set's, over all its pods); cheap keys
# never wait.
SPACED_ABOVE = 0.01
MAX_SPACING = 5.0
# How long a queue works through waiting keys before it lets the event loop run something else.
SLICE = 0.01


def log_failure(logger: logging.Logger, e: BaseException, message: str, *args: object) -> None:
    """A failure with its traceback, but StoreDamaged in one line: its message names the file and the fix, and the
    stack adds nothing."""
    if isinstance(e, StoreDamaged):
        logger.error(message + ": %s", *args, e)
    else:
        logger.error(message, *args, exc_info=e)


class Slices:
    """Takes keys from a queue one consumer works through, letting the event loop run other work after each
    SLICE of it.

    `get` returns at once while keys wait, and a store that never suspends (SQLite) makes a handler that never
    suspends either: without this a resync's thousands of keys held the event loop for seconds, and timers (the
    prober's ticks) and the other queues waited. Yielding before every key instead would give a queue of cheap
    keys one key per turn of a loop that other work makes long."""

    def __init__(self) -> None:
        self._started = time.perf_counter()

    async def next(self, queue: asyncio.Queue[T]) -> T:
        if queue.empty():
            key = await queue.get()  # suspends: the loop runs everything else meanwhile
            self._started = time.perf_counter()
            return key
        if time.perf_counter() - self._started >= SLICE:
            await asyncio.sleep(0)
            self._started = time.perf_counter()
        return queue.get_nowait()  # still there: nothing else takes from this queue


class WorkQueue:
    def __init__(
        self,
        name: str,
        handler: Callable[[str, str], Awaitable[None]],
        observe: Callable[[str, float], None] | None = None,
        spacing: float = 0.0,
        exclusive: asyncio.Lock | None = None,
    ) -> None:
        """`spacing`: a key whose reconcile took d seconds is not reconciled again within spacing × d (at most
        MAX_SPACING), so that one expensive key re-queued by every change of a large fleet (a set's reconcile
        lists all its pods) takes at most 1 / (1 + spacing) of the event loop; the changes meanwhile are
        coalesced into the one pending reconcile.

        `exclusive`: a lock the queues of the set-wide reconciles share, so that one of them runs at a time, its
        slices' yields included: each lists every pod of a set, and two listings alive at once set the high-water
        mark of the interpreter's arenas, which RSS keeps after they are freed. The wait for it is not counted in
        the reconcile's duration (nor in the spacing)."""
        self.name = name
        self.handler = handler
        self.observe = observe
        self.spacing = spacing
        self.exclusive = exclusive
        self._queue: asyncio.Queue[Key] = asyncio.Queue()
        self._pending: set[Key] = set()
        self._failures: dict[Key, int] = {}
        self._not_before: dict[Key, float] = {}
        self.processed = 0
        # Wall seconds inside the handler, all keys together (a handler that awaits also counts what ran meanwhile).
        self.busy = 0.0

    def add(self, namespace: str, name: str) -> None:
        key = (namespace, name)
        if key in self._pending:
            return
        self._pending.add(key)
        wait = self._not_before[key] - time.monotonic() if key in self._not_before else 0.0
        if wait > 0:
            asyncio.get_running_loop().call_later(wait, self._queue.put_nowait, key)
        else:
            self._queue.put_nowait(key)

    def add_after(self, delay: float, namespace: str, name: str) -> None:
        asyncio.get_running_loop().call_later(delay, self.add, namespace, name)

    def depth(self) -> int:
        return self._queue.qsize()

    async def run(self) -> None:
        slices = Slices()
        while True:
            key = await slices.next(self._queue)
            if self.exclusive is not None:
                await self.exclusive.acquire()
            self._pending.discard(key)
            started = time.perf_counter()
            try:
                await self.handler(*key)
                self._failures.pop(key, None)
            except Conflict:
                # Someone wrote in between: read again at once (level-triggered, nothing is lost).
                self.add(*key)
            except Exception as e:
                failures = self._failures.get(key, 0) + 1
                self._failures[key] = failures
                delay = min(0.2 * 2**failures, 30.0)
                log_failure(log, e, "%s: reconcile %s/%s failed (retry in %.1fs)", self.name, *key, delay)
                self.add_after(delay, *key)
            finally:
                if self.exclusive is not None:
                    self.exclusive.release()
            self.processed += 1
            took = time.perf_counter() - started
            self.busy += took
            if self.observe is not None:
                self.observe(self.name, took)
            if self.spacing:
                if took >= SPACED_ABOVE:
                    self._not_before[key] = time.monotonic() + min(took * self.spacing, MAX_SPACING)
                else:
                    self._not_before.pop(key, None)
