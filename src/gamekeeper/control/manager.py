"""Wires the reconcilers and the prober to the store's change feed (the controller-runtime "manager")."""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Callable
from datetime import datetime
from typing import Any

from gamekeeper.api.models import OWNER_GSS_KEY
from gamekeeper.control.autoscale import Autoscaler
from gamekeeper.control.gameserver import GameServerController
from gamekeeper.control.gameserverset import GameServerSetController, spec_mark
from gamekeeper.control.gameserverset import pod_mark as set_pod_mark
from gamekeeper.control.prober import Prober
from gamekeeper.control.queue import WorkQueue
from gamekeeper.control.recovery import RecoveryController
from gamekeeper.control.workload import WorkloadController
from gamekeeper.control.workload import pod_mark as workload_pod_mark
from gamekeeper.ports.runtime import ContainerRestarter, Runtime
from gamekeeper.ports.store import Change, Store, spec_version

log = logging.getLogger("gamekeeper.manager")

# Each set-wide reconcile (GameServerSet, Workload) takes at most 1/(1 + SET_SPACING) of the event loop.
SET_SPACING = 4.0

# What the resync lists; each kind's objects route to the queues in `on_change`.
RESYNC_KINDS = ("GameServerSet", "Workload", "Pod", "GameServer")

_MASK = (1 << 64) - 1

PodListener = Callable[[str, str], None]
ChangeListener = Callable[[Change], None]


def owner_name(name: str) -> str:
    """The set a pod or GameServer belongs to, from its name (`<set>-<ordinal>`)."""
    return name.rsplit("-", 1)[0]


def _rv(text: object) -> int | None:
    """A resourceVersion as the change feed carries it (an int), or None if it is not a number (Kubernetes calls
    it opaque): such an object is queued by every resync."""
    return int(text) if isinstance(text, str) and text.isdigit() else None


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
        restarter: ContainerRestarter | None = None,
        autoscale: bool = True,
    ) -> None:
        self.store = store
        self.clock = clock
        self.resync_seconds = resync_seconds
        self.gss = GameServerSetController(store, clock)
        self.workloads = WorkloadController(store, clock)
        self.gameservers = GameServerController(store, clock)
        self.prober = Prober(store, runtime, clock)
        # Embedded mode's KEDA; in Kubernetes, KEDA itself asks the operator's gRPC scaler instead.
        self.autoscaler = Autoscaler(store, clock) if autoscale else None
        # A set's reconcile reads all its pods and comes back on every pod change: spaced, so that at 10,000 pods
        # it does not crowd out the per-server work (see WorkQueue).
        set_wide = asyncio.Lock()
        self.gss_queue = WorkQueue("gameserverset", self.gss.reconcile, observe_reconcile, spacing=SET_SPACING,
                                   exclusive=set_wide)
        self.workload_queue = WorkQueue("workload", self.workloads.reconcile, observe_reconcile, spacing=SET_SPACING,
                                        exclusive=set_wide)
        self.gs_queue = WorkQueue("gameserver", self.gameservers.reconcile, observe_reconcile)
        self.probe_queue = WorkQueue("prober", self.prober.sync_pod, observe_reconcile)
        self.recovery = RecoveryController(store, runtime, clock, restarter)
        self.recovery_queue = WorkQueue("recovery", self.recovery.reconcile, observe_reconcile)
        self.recovery.requeue = self.recovery_queue.add
        self.recovery.requeue_after = self.recovery_queue.add_after
        # A set's change reaches its pods' probes through this queue, so that a burst of status updates of one set
        # is looked at once.
        self.probe_set_queue = WorkQueue("prober-set", self._probe_set, observe_reconcile)
        # A pod's or a set's change reaches the set-wide reconciles through these, which read the changed object
        # and queue each set-wide reconcile only if what it reads of it changed (`_pod_changed`, `_set_changed`): at
        # 10,000 pods a set's reconcile lists them all, and most pod changes (probe results, opsState labels for the
        # workload) cannot change its outcome.
        self.pod_changes_queue = WorkQueue("pod-changes", self._pod_changed, observe_reconcile)
        self.set_changes_queue = WorkQueue("gameserverset-changes", self._set_changed, observe_reconcile)
        # Per namespace, pod name → what the set's and the workload's reconciles last saw of it, one 128-bit number
        # (set mark << 64 | workload mark); per set, its spec_mark. ~100 bytes a pod.
        self._pod_marks: dict[str, dict[str, int]] = {}
        self._set_marks: dict[tuple[str, str], int] = {}
        # (uid, generation) of each set whose pods' probes were last re-synced.
        self._probed_specs: dict[tuple[str, str], tuple[str, object]] = {}
        # minReadySeconds: a pod that is Ready but not yet available is looked at again when it will be.
        self.workloads.requeue_after = self.workload_queue.add_after
        self.pod_listeners = pod_listeners or []
        self.change_listeners = change_listeners or []
        self.ready = asyncio.Event()
        # Per kind, namespace → name → the resourceVersion last queued: what the periodic resync compares the
        # store's listing with. About 100 bytes per object (a dict slot and an int; names interned, so a pod and
        # its GameServer share one string): ~200 bytes per game server.
        self._seen: dict[str, dict[str, dict[str, int]]] = {kind: {} for kind in RESYNC_KINDS}

    def queues(self) -> list[WorkQueue]:
        return [self.gss_queue, self.workload_queue, self.gs_queue, self.probe_queue, self.probe_set_queue,
                self.recovery_queue, self.pod_changes_queue, self.set_changes_queue]

    async def enqueue_all(self) -> None:
        """Queue every object for every controller: at start, and when the change feed was lost (RESYNC)."""
        await self.resync(full=True)

    async def resync(self, full: bool = False) -> int:
        """Queue what the change feed may not have delivered; return how many objects were queued.

        `full=False` (the periodic resync): only objects whose resourceVersion differs from the one last queued
        (through the feed or a listing), or that are new, and those gone since, from an identity-only listing.
        Nothing waits for this to re-look at an unchanged object: every decision that depends on time passing
        arms its own wake-up (ARCHITECTURE.md, Reconciling). `full=True`: every object, and those gone."""
        queued = 0
        for kind in RESYNC_KINDS:
            seen = self._seen[kind]
            listed: set[tuple[str, str]] = set()
            for obj in await self.store.list_projected(kind, ()):
                meta = obj["metadata"]
                ns, name = meta["namespace"], meta["name"]
                listed.add((ns, name))
                rv = _rv(meta.get("resourceVersion"))
                if full or rv is None or seen.get(ns, {}).get(name) != rv:
                    queued += 1
                    self.on_change(Change(rv or 0, kind, ns, name, "SYNC"))
            for ns, names in list(seen.items()):
                for name in [n for n in names if (ns, n) not in listed]:
                    queued += 1
                    self.on_change(Change(0, kind, ns, name, "DELETED"))
            # A listing of 10,000 objects holds the loop (SQLite never suspends): one kind at a time.
            await asyncio.sleep(0)
        return queued

    def on_change(self, change: Change) -> None:
        ns, name = change.namespace, change.name
        self._remember(change)
        for change_listener in self.change_listeners:
            change_listener(change)
        if self.autoscaler is not None:
            self.autoscaler.on_change(change)
        # A SYNC (a listing's, not the feed's) queues the set-wide reconciles straight away: what they last saw of
        # the object is not known to be current then.
        if change.kind == "GameServerSet":
            # Not the workload: it reads its own object and the pods, and the set's changes reach it as writes to
            # the Workload.
            self.probe_set_queue.add(ns, name)
            if change.type == "SYNC":
                self.gss_queue.add(ns, name)
            else:
                self.set_changes_queue.add(ns, name)
        elif change.kind == "Workload":
            self.workload_queue.add(ns, name)
            self.gss_queue.add(ns, name)
        elif change.kind == "Pod":
            self.gs_queue.add(ns, name)
            self.probe_queue.add(ns, name)
            if change.type == "SYNC":
                self.gss_queue.add(ns, owner_name(name))
                self.workload_queue.add(ns, owner_name(name))
            else:
                self.pod_changes_queue.add(ns, name)
            for listener in self.pod_listeners:
                listener(ns, name)
        elif change.kind == "GameServer":
            self.gs_queue.add(ns, name)
            self.recovery_queue.add(ns, name)

    def _remember(self, change: Change) -> None:
        seen = self._seen.get(change.kind)
        if seen is None:
            return
        if change.type == "DELETED" or change.resource_version <= 0:
            # Gone, or a version that is not a number (opaque): the next resync queues it if it is there.
            names = seen.get(change.namespace)
            if names is not None:
                names.pop(change.name, None)
                if not names:
                    del seen[change.namespace]
        else:
            # Interned: a pod and its GameServer share one name string here.
            ns = seen.setdefault(sys.intern(change.namespace), {})
            ns[sys.intern(change.name)] = change.resource_version

    async def _pod_changed(self, namespace: str, name: str) -> None:
        """Queue the pod's set and workload if what each reads of the pod changed, or the pod is new or gone."""
        pod = await self.store.get("Pod", namespace, name)
        marks = self._pod_marks.get(namespace)
        old = None if marks is None else marks.get(name)
        owner = owner_name(name)
        if pod is None:
            if marks is not None:
                marks.pop(name, None)
                if not marks:
                    del self._pod_marks[namespace]
            self.gss_queue.add(namespace, owner)
            self.workload_queue.add(namespace, owner)
            return
        new = (set_pod_mark(pod) & _MASK) << 64 | (workload_pod_mark(pod) & _MASK)
        self._pod_marks.setdefault(sys.intern(namespace), {})[sys.intern(name)] = new
        if old is None or old >> 64 != new >> 64:
            self.gss_queue.add(namespace, owner)
        if old is None or old & _MASK != new & _MASK:
            self.workload_queue.add(namespace, owner)

    async def _set_changed(self, namespace: str, name: str) -> None:
        """Queue the set's reconcile unless only its status changed (see gameserverset.spec_mark)."""
        key = (namespace, name)
        gss = await self.store.get("GameServerSet", namespace, name)
        if gss is None:
            self._set_marks.pop(key, None)
            self.gss_queue.add(namespace, name)
            return
        mark = spec_mark(gss)
        if self._set_marks.get(key) != mark:
            self._set_marks[key] = mark
            self.gss_queue.add(namespace, name)

    async def _probe_set(self, namespace: str, name: str) -> None:
        """Re-sync the probes of a set's pods when its spec changed (serviceQualities live there), or it is gone.

        Not on a status update: a set's status changes with every GameServer state change, and re-syncing every
        pod of the set each time made each such change cost O(servers)."""
        key = (namespace, name)
        gss = await self.store.get("GameServerSet", namespace, name)
        mark = None if gss is None else spec_version(gss)
        if mark is not None and self._probed_specs.get(key) == mark:
            return
        for pod in await self.store.list_projected("Pod", (), namespace, {OWNER_GSS_KEY: name}):
            self.probe_queue.add(namespace, pod["metadata"]["name"])
        if mark is None:
            self._probed_specs.pop(key, None)
        else:
            self._probed_specs[key] = mark

    async def run(self) -> None:
        tasks: list[asyncio.Task[Any]] = [asyncio.create_task(q.run(), name=q.name) for q in self.queues()]
        if self.autoscaler is not None:
            tasks.append(asyncio.create_task(self.autoscaler.run(), name="autoscaler"))
        # Watch before list: a change between the listing and the subscription (a probe result right after a
        # restart) would otherwise wait for the next resync.
        changes = self.store.watch()
        try:
            await self.enqueue_all()
            self.ready.set()
            loop = asyncio.get_running_loop()
            last_resync = loop.time()
            async for change in changes:
                if change.type == "RESYNC":  # the store lost part of the feed: everything could have changed
                    last_resync = loop.time()
                    await self.enqueue_all()
                    continue
                if change.type != "TICK":
                    self.on_change(change)
                # Looked at on every change too: a feed that never pauses brings no TICK.
                if loop.time() - last_resync >= self.resync_seconds:
                    last_resync = loop.time()
                    queued = await self.resync()
                    if queued:  # the feed missed these, or the listing saw a change the feed had yet to bring
                        log.debug("resync queued %d objects", queued)
        finally:
            self.prober.stop()
            self.recovery.stop()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
