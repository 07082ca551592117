"""Connects metrics and health endpoints to a running ControllerManager (both modes use it)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from gamekeeper.control.manager import ControllerManager
from gamekeeper.observe.autoscale_metrics import AutoscaleCollector
from gamekeeper.observe.metrics import FleetMetrics, ProbeStatsCollector, RecoveryStatsCollector
from gamekeeper.observe.server import Health, ObservabilityServer
from gamekeeper.ports.store import Change, Store

log = logging.getLogger("gamekeeper.observe")


class Observability:
    def __init__(self, store: Store, clock: Callable[[], datetime]) -> None:
        self.store = store
        self.clock = clock
        self.metrics = FleetMetrics()
        self.health = Health()
        self._manager: ControllerManager | None = None
        self._pending: set[tuple[str, str, str]] = set()
        self.metrics.registry.register(ProbeStatsCollector(self._stats, self._queues))
        self.metrics.registry.register(RecoveryStatsCollector(
            lambda: self._manager.recovery.stats if self._manager else None))
        self.metrics.registry.register(AutoscaleCollector(lambda: self._manager.autoscaler if self._manager else None))

    def _stats(self) -> Any:
        return self._manager.prober.stats if self._manager else None

    def _queues(self) -> list[tuple[str, int]]:
        return [(q.name, q.depth()) for q in self._manager.queues()] if self._manager else []

    def observe_reconcile(self, controller: str, seconds: float) -> None:
        self.metrics.reconcile_duration.labels(controller).observe(seconds)

    def on_change(self, change: Change) -> None:
        if change.kind not in ("GameServer", "GameServerSet"):
            return
        key = (change.kind, change.namespace, change.name)
        if key in self._pending:
            return  # an update is already on its way; it will read the newest object
        self._pending.add(key)
        asyncio.get_running_loop().create_task(self._update(key))

    async def _update(self, key: tuple[str, str, str]) -> None:
        self._pending.discard(key)
        kind, namespace, name = key
        obj = await self.store.get(kind, namespace, name)
        if kind == "GameServer":
            self.metrics.game_server(namespace, name, obj, self.clock())
        else:
            self.metrics.game_server_set(namespace, name, obj)

    async def serve(self, address: str, manager: ControllerManager) -> None:
        self._manager = manager
        manager.prober.on_probe_done = lambda gss, quality, seconds: self.metrics.probe_duration.labels(
            gss, quality).observe(seconds)
        self.health.ready_checks.append(lambda: (manager.ready.is_set(), "ok" if manager.ready.is_set()
                                                 else "controllers not started yet"))
        server = ObservabilityServer(address, self.metrics.registry, self.health)
        server.start()
        log.info("serving /metrics, /healthz and /readyz on %s (port %d)", address, server.port)
        try:
            await self.health.beat_forever()
        finally:
            with contextlib.suppress(Exception):
                server.stop()
