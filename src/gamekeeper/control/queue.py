"""A level-triggered work queue: each key is queued at most once; failures come back with back-off."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from gamekeeper.ports.store import Conflict

log = logging.getLogger("gamekeeper.queue")

Key = tuple[str, str]


class WorkQueue:
    def __init__(
        self,
        name: str,
        handler: Callable[[str, str], Awaitable[None]],
        observe: Callable[[str, float], None] | None = None,
    ) -> None:
        self.name = name
        self.handler = handler
        self.observe = observe
        self._queue: asyncio.Queue[Key] = asyncio.Queue()
        self._pending: set[Key] = set()
        self._failures: dict[Key, int] = {}
        self.processed = 0

    def add(self, namespace: str, name: str) -> None:
        key = (namespace, name)
        if key not in self._pending:
            self._pending.add(key)
            self._queue.put_nowait(key)

    def add_after(self, delay: float, namespace: str, name: str) -> None:
        asyncio.get_running_loop().call_later(delay, self.add, namespace, name)

    def depth(self) -> int:
        return self._queue.qsize()

    async def run(self) -> None:
        while True:
            key = await self._queue.get()
            self._pending.discard(key)
            started = time.perf_counter()
            try:
                await self.handler(*key)
                self._failures.pop(key, None)
            except Conflict:
                # Someone wrote in between: read again at once (level-triggered, nothing is lost).
                self.add(*key)
            except Exception:
                failures = self._failures.get(key, 0) + 1
                self._failures[key] = failures
                delay = min(0.2 * 2**failures, 30.0)
                log.exception("%s: reconcile %s/%s failed (retry in %.1fs)", self.name, *key, delay)
                self.add_after(delay, *key)
            self.processed += 1
            if self.observe is not None:
                self.observe(self.name, time.perf_counter() - started)
