"""Wires the reconcilers and the prober to the store's change feed (the controller-runtime "manager")."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from gamekeeper.control.gameserver import GameServerController
from gamekeeper.control.gameserverset import GameServerSetController
from gamekeeper.control.prober import Prober
from gamekeeper.control.queue import WorkQueue
from gamekeeper.control.workload import WorkloadController
from gamekeeper.ports.runtime import Runtime
from gamekeeper.ports.store import Change, Store

log = logging.getLogger("gamekeeper.manager")

PodListener = Callable[[str, str], None]
ChangeListener = Callable[[Change], None]


def owner_name(name: str) -> str:
    """The set a pod or GameServer belongs to, from its name (`<set>-<ordinal>`)."""
    return name.rsplit("-", 1)[0]


class ControllerManager:
    def __init__(
        self,
        store: Store,
        runtime: Runtime,
        clock: Callable[[], datetime],
        resync_seconds: float = 30.0,
        pod_listeners: list[PodListener] | None = None,
        change_listeners: list[ChangeListener] | None = None,
        observe_reconcile: Callable[[str, float], None] | None = None,
    ) -> None:
        self.store = store
        self.clock = clock
        self.resync_seconds = resync_seconds
        self.gss = GameServerSetController(store, clock)
        self.workloads = WorkloadController(store, clock)
        self.gameservers = GameServerController(store, clock)
        self.prober = Prober(store, runtime, clock)
        self.gss_queue = WorkQueue("gameserverset", self.gss.reconcile, observe_reconcile)
        self.workload_queue = WorkQueue("workload", self.workloads.reconcile, observe_reconcile)
        self.gs_queue = WorkQueue("gameserver", self.gameservers.reconcile, observe_reconcile)
        self.probe_queue = WorkQueue("prober", self.prober.sync_pod, observe_reconcile)
        # minReadySeconds: a pod that is Ready but not yet available is looked at again when it will be.
        self.workloads.requeue_after = self.workload_queue.add_after
        self.pod_listeners = pod_listeners or []
        self.change_listeners = change_listeners or []
        self.ready = asyncio.Event()

    def queues(self) -> list[WorkQueue]:
        return [self.gss_queue, self.workload_queue, self.gs_queue, self.probe_queue]

    async def enqueue_all(self) -> None:
        for kind in ("GameServerSet", "Workload", "Pod", "GameServer"):
            for obj in await self.store.list(kind):
                self.on_change(Change(0, kind, obj["metadata"]["namespace"], obj["metadata"]["name"], "SYNC"))

    def on_change(self, change: Change) -> None:
        ns, name = change.namespace, change.name
        for change_listener in self.change_listeners:
            change_listener(change)
        if change.kind == "GameServerSet":
            self.gss_queue.add(ns, name)
            self.workload_queue.add(ns, name)
            asyncio.get_running_loop().create_task(self._probe_set(ns, name))
        elif change.kind == "Workload":
            self.workload_queue.add(ns, name)
            self.gss_queue.add(ns, name)
        elif change.kind == "Pod":
            self.gs_queue.add(ns, name)
            self.gss_queue.add(ns, owner_name(name))
            self.workload_queue.add(ns, owner_name(name))
            self.probe_queue.add(ns, name)
            for listener in self.pod_listeners:
                listener(ns, name)
        elif change.kind == "GameServer":
            self.gs_queue.add(ns, name)

    async def _probe_set(self, namespace: str, name: str) -> None:
        for pod in await self.store.list("Pod", namespace):
            if owner_name(pod["metadata"]["name"]) == name:
                self.probe_queue.add(namespace, pod["metadata"]["name"])

    async def run(self) -> None:
        tasks: list[asyncio.Task[Any]] = [asyncio.create_task(q.run(), name=q.name) for q in self.queues()]
        try:
            await self.enqueue_all()
            self.ready.set()
            loop = asyncio.get_running_loop()
            last_resync = loop.time()
            async for change in self.store.watch():
                if change.type in ("RESYNC", "TICK"):
                    if change.type == "RESYNC" or loop.time() - last_resync >= self.resync_seconds:
                        last_resync = loop.time()
                        await self.enqueue_all()
                    continue
                self.on_change(change)
        finally:
            self.prober.stop()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
