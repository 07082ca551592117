"""`gk operator`: the shared controllers against the Kubernetes API.

Wiring, in order:
1. choose the probe path (logged): OpenKruise's PodProbeMarker when the API serves
   `apps.kruise.io/v1alpha1 podprobemarkers` (path a), else exec through the API (path b);
2. serve /healthz and /readyz;
3. with leader election, wait for the Lease; a standby replica keeps waiting and acts on nothing;
4. start the caches (KubeStore), then the shared ControllerManager (GameServerSet, Workload and GameServer
   reconcilers, and in path b the prober), and in path a the PodProbeMarker reconciler;
5. run until stopped or until leadership is lost. Losing the lease stops every reconciler at once and
   `run()` raises LeadershipLost, so the process exits non-zero and Kubernetes restarts it as a standby.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import tempfile
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from aiohttp import web

from gamekeeper.control.manager import ControllerManager
from gamekeeper.control.prober import Prober
from gamekeeper.control.queue import WorkQueue
from gamekeeper.kube.client import KubeClient
from gamekeeper.kube.leader import LeadershipLost, LeaseElector, LeaseTiming
from gamekeeper.kube.ppm import PodProbeMarkerController
from gamekeeper.kube.recovery import detect_restarter
from gamekeeper.kube.resources import POD_PROBE_MARKER
from gamekeeper.kube.runtime import KubeExecRuntime
from gamekeeper.kube.store import KubeStore
from gamekeeper.observe.event_tap import EventTap
from gamekeeper.observe.notify import Notifier
from gamekeeper.observe.notify_config import NotifyConfig
from gamekeeper.observe.wiring import Observability
from gamekeeper.ports.store import Change, Store

log = logging.getLogger("gamekeeper.kube.operator")

ProbeChoice = Literal["auto", "kruise", "exec"]
ProbePath = Literal["kruise", "exec"]


def utc_now() -> datetime:
    return datetime.now(UTC)


def default_identity() -> str:
    """The pod name in a cluster (downward API), else the host name, plus the pid (two local runs differ)."""
    return os.environ.get("POD_NAME") or f"{socket.gethostname()}-{os.getpid()}"


@dataclass
class OperatorConfig:
    namespace: str | None = None  # None: all namespaces
    probe: ProbeChoice = "auto"
    leader_elect: bool = True
    lease_name: str = "gamekeeper-operator"
    lease_namespace: str = "gamekeeper-system"
    identity: str = field(default_factory=default_identity)
    timing: LeaseTiming = field(default_factory=LeaseTiming)
    resync_seconds: float = 300.0
    exec_concurrency: int = 32
    exec_jitter_seconds: float = 0.2
    probe_concurrency: int = 64
    health_host: str = "0.0.0.0"
    health_port: int | None = None
    watch_timeout: int = 300
    tick_seconds: float = 1.0
    metrics_addr: str | None = None  # host:port for /metrics (the leader's; a standby has none)
    notify: NotifyConfig | None = None  # notification sinks for the events the controllers record
    external_scaler_addr: str | None = None  # host:port for KEDA's externalscaler gRPC (the leader's); None: off
    api_addr: str | None = None  # host:port for the ops API and dashboard (the leader's; a standby has none)
    api_token: str | None = None


async def detect_probe_path(client: KubeClient, choice: ProbeChoice) -> tuple[ProbePath, str]:
    """Which probe path to use, and why (the reason is logged)."""
    served = await client.served_resources(POD_PROBE_MARKER.api_version)
    kruise = served is not None and POD_PROBE_MARKER.plural in served
    if choice == "exec":
        return "exec", "exec through the API, as asked (--probe exec)"
    if choice == "kruise":
        if not kruise:
            raise RuntimeError(
                "--probe kruise: the API server does not serve apps.kruise.io/v1alpha1 podprobemarkers "
                "(is OpenKruise installed?)"
            )
        return "kruise", "OpenKruise PodProbeMarker, as asked (--probe kruise)"
    if kruise:
        return "kruise", ("OpenKruise PodProbeMarker: the API serves apps.kruise.io/v1alpha1 podprobemarkers, "
                          "so kruise-daemon probes on each node and results arrive as pod conditions")
    return "exec", ("exec through the API (pods/exec): OpenKruise's PodProbeMarker CRD is not installed; "
                    "httpGet and tcpSocket probes go straight to the pod IP")


class _NoProber(Prober):
    """Path a: kruise-daemon probes, so the operator runs no probe of its own."""

    async def sync_pod(self, namespace: str, name: str) -> None:
        return None


def install_prober(manager: ControllerManager, prober: Prober) -> None:
    """Put a prober into the shared manager in place of the one it built (before `run`).

    The manager has no parameter for it (yet); its probe queue is re-made around the new prober so that
    every route that feeds `probe_queue` reaches it.
    """
    manager.prober = prober
    manager.probe_queue = WorkQueue("prober", prober.sync_pod)


Route = Callable[[Change], Iterable[tuple[str, str]]]


class ReconcileLoop:
    """A work queue fed from the store's change feed, with a periodic full resync (level-triggered)."""

    def __init__(
        self,
        store: Store,
        name: str,
        handler: Callable[[str, str], Awaitable[None]],
        kinds: set[str],
        route: Route,
        resync: Callable[[], Awaitable[Iterable[tuple[str, str]]]],
        resync_seconds: float,
    ) -> None:
        self.store = store
        self.queue = WorkQueue(name, handler)
        self.kinds = kinds
        self.route = route
        self.resync = resync
        self.resync_seconds = resync_seconds

    async def _enqueue_all(self) -> None:
        for key in await self.resync():
            self.queue.add(*key)

    async def run(self) -> None:
        worker = asyncio.create_task(self.queue.run(), name=self.queue.name)
        changes = self.store.watch(self.kinds)  # watch before list: nothing falls between the two
        try:
            await self._enqueue_all()
            loop = asyncio.get_running_loop()
            last = loop.time()
            async for change in changes:
                if change.type in ("TICK", "RESYNC"):
                    if change.type == "RESYNC" or loop.time() - last >= self.resync_seconds:
                        last = loop.time()
                        await self._enqueue_all()
                    continue
                for key in self.route(change):
                    self.queue.add(*key)
        finally:
            worker.cancel()
            await asyncio.gather(worker, return_exceptions=True)


class Operator:
    def __init__(
        self, client: KubeClient, config: OperatorConfig, clock: Callable[[], datetime] = utc_now
    ) -> None:
        self.client = client
        self.config = config
        self.clock = clock
        self.probe_path: ProbePath | None = None
        self.elector: LeaseElector | None = None
        self.store: KubeStore | None = None
        self.external_scaler: Any = None  # grpc.aio.Server (grpc is imported only when it is served)
        self.external_scaler_port: int | None = None
        self.manager: ControllerManager | None = None
        self.runtime: KubeExecRuntime | None = None
        self.ppm: PodProbeMarkerController | None = None
        self.acting = asyncio.Event()  # set while the controllers run (after winning the lease)
        self.alive = True
        self._health: web.AppRunner | None = None
        self.health_port: int | None = None
        self.api: Any = None  # observe.api.OpsApi while leading with --api-addr
        self.api_url: str | None = None

    # -- health -------------------------------------------------------------------------------------------

    def ready(self) -> bool:
        """Ready: a standby waiting for the lease, or a leader whose caches are synced."""
        if self.probe_path is None:
            return False
        if self.acting.is_set():
            return self.store is not None and self.store.synced()
        return self.elector is not None and not self.elector.is_leader

    async def _start_health(self) -> None:
        if self.config.health_port is None:
            return

        async def healthz(_: web.Request) -> web.Response:
            return web.Response(text="ok\n" if self.alive else "stopping\n", status=200 if self.alive else 503)

        async def readyz(_: web.Request) -> web.Response:
            ok = self.ready()
            role = "leader" if self.acting.is_set() else "standby"
            return web.Response(text=f"{'ok' if ok else 'not ready'} ({role})\n", status=200 if ok else 503)

        app = web.Application()
        app.router.add_get("/healthz", healthz)
        app.router.add_get("/readyz", readyz)
        self._health = web.AppRunner(app, access_log=None)
        await self._health.setup()
        site = web.TCPSite(self._health, self.config.health_host, self.config.health_port)
        await site.start()
        addresses = self._health.addresses
        self.health_port = int(addresses[0][1]) if addresses else self.config.health_port
        log.info("health endpoints on %s:%s (/healthz, /readyz)", self.config.health_host, self.health_port)

    # -- run ----------------------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event | None = None) -> None:
        cfg = self.config
        self.probe_path, reason = await detect_probe_path(self.client, cfg.probe)
        log.info("probe path: %s", reason)
        await self._start_health()
        tasks: list[asyncio.Task[Any]] = []
        stopper = asyncio.ensure_future(stop.wait()) if stop is not None else asyncio.get_running_loop(
        ).create_future()
        try:
            if cfg.leader_elect:
                self.elector = LeaseElector(
                    self.client, cfg.lease_namespace, cfg.lease_name, cfg.identity, cfg.timing, clock=self.clock
                )
                acquire = asyncio.ensure_future(self.elector.acquire())
                await asyncio.wait([acquire, stopper], return_when=asyncio.FIRST_COMPLETED)
                if not acquire.done():
                    acquire.cancel()
                    await asyncio.gather(acquire, return_exceptions=True)
                    return
            await self._start_controllers(tasks)
            if self.elector is not None:
                tasks.append(asyncio.create_task(self.elector.hold(), name="lease"))
            done, _ = await asyncio.wait([*tasks, stopper], return_when=asyncio.FIRST_COMPLETED)
            for finished in done:
                if finished is not stopper and not finished.cancelled() and finished.exception() is not None:
                    error = finished.exception()
                    assert error is not None
                    if isinstance(error, LeadershipLost):
                        log.error("leadership lost: %s; stopping every controller", error)
                    raise error
        finally:
            self.acting.clear()
            self.alive = False
            stopper.cancel()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if self.api is not None:
                await self.api.stop()
            if self.manager is not None:
                self.manager.prober.stop()
            if self.external_scaler is not None:
                await self.external_scaler.stop(1.0)
                self.external_scaler = None
            if self.store is not None:
                await self.store.stop()
            if self.elector is not None:
                await self.elector.release()
            if self._health is not None:
                await self._health.cleanup()

    async def _start_controllers(self, tasks: list[asyncio.Task[Any]]) -> None:
        cfg = self.config
        store = KubeStore(
            self.client, cfg.namespace, identity=cfg.identity, clock=self.clock, tick_seconds=cfg.tick_seconds,
            watch_timeout=cfg.watch_timeout,
        )
        if self.probe_path == "kruise":
            store.add_kind(POD_PROBE_MARKER.kind)
        self.store = store
        await store.start()
        self.runtime = KubeExecRuntime(self.client, cfg.exec_concurrency, cfg.exec_jitter_seconds)
        observability = Observability(store, self.clock) if cfg.metrics_addr else None
        controller_store: Store = store
        if cfg.notify is not None:
            notifier = Notifier(cfg.notify, dead_letter=cfg.notify.dead_letter_file
                                or Path(tempfile.gettempdir()) / "gamekeeper-notify-dead-letter.jsonl")
            controller_store = EventTap(store, notifier, self.clock)
            tasks.append(asyncio.create_task(_run_notifier(notifier), name="notify"))
            log.info("notifications on: %s", ", ".join(f"{s.name} ({s.type})" for s in cfg.notify.sinks))
        restarter, why = await detect_restarter(self.client)
        log.info("recovery container restart: %s", why)
        manager = ControllerManager(
            controller_store, self.runtime, self.clock, resync_seconds=cfg.resync_seconds,
            change_listeners=[observability.on_change] if observability else None,
            observe_reconcile=observability.observe_reconcile if observability else None,
            restarter=restarter,
            autoscale=False,
        )
        if self.probe_path == "kruise":
            install_prober(manager, _NoProber(store, self.runtime, self.clock))
        else:
            install_prober(manager, Prober(store, self.runtime, self.clock, concurrency=cfg.probe_concurrency))
        # Come back after minReadySeconds rather than at the next resync (the workload controller's hook).
        manager.workloads.requeue_after = manager.workload_queue.add_after
        self.manager = manager
        tasks.append(asyncio.create_task(manager.run(), name="manager"))
        if cfg.external_scaler_addr:
            from gamekeeper.kube.externalscaler import start_external_scaler

            self.external_scaler, self.external_scaler_port = await start_external_scaler(
                store, cfg.external_scaler_addr)
        if observability is not None and cfg.metrics_addr:
            tasks.append(asyncio.create_task(observability.serve(cfg.metrics_addr, manager), name="metrics"))
        if cfg.api_addr is not None:
            from gamekeeper.observe.api import OpsApi, kube_log_reader

            self.api = OpsApi(controller_store, self.clock, cfg.api_addr, cfg.api_token,
                              logs=kube_log_reader(self.client))
            self.api_url = await self.api.start()
            log.info("ops API and dashboard on %s", self.api_url)

        if self.probe_path == "kruise":
            self.ppm = PodProbeMarkerController(store, self.clock)
            tasks.append(asyncio.create_task(ReconcileLoop(
                store, "podprobemarker", self.ppm.reconcile, {"GameServerSet", POD_PROBE_MARKER.kind},
                lambda c: [(c.namespace, c.name)], lambda: _keys(store, "GameServerSet", POD_PROBE_MARKER.kind),
                cfg.resync_seconds,
            ).run(), name="podprobemarker"))
        await manager.ready.wait()
        self.acting.set()
        log.info("controllers running (%s)", f"namespace {cfg.namespace}" if cfg.namespace else "all namespaces")


async def _run_notifier(notifier: Notifier) -> None:
    await notifier.start()
    try:
        await asyncio.Event().wait()
    finally:
        await notifier.aclose(5.0)  # what is still queued after that goes to the dead-letter file


async def _keys(store: Store, *kinds: str) -> list[tuple[str, str]]:
    keys: list[tuple[str, str]] = []
    for kind in kinds:
        keys.extend((o["metadata"]["namespace"], o["metadata"]["name"]) for o in await store.list(kind))
    return keys


async def run_operator(client: KubeClient, config: OperatorConfig, stop: asyncio.Event | None = None) -> None:
    operator = Operator(client, config)
    try:
        await operator.run(stop)
    finally:
        with contextlib.suppress(Exception):
            await client.close()

