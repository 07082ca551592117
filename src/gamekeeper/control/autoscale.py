"""Embedded mode's KEDA: each ScaledObject is polled at its `pollingInterval` and its GameServerSet scaled.

The scaler is the built-in one (core/autoscale.py, whatever `scalerAddress` says: in embedded mode there is no
other), and KEDA + HPA are core/hpa.py. Scaling writes `spec.replicas` of the set, the same write as `gk scale`,
so scale-in order is the set controller's as always.

What KEDA's HPA keeps in memory (stabilization windows, recent scale events) and the scaler's last branch are
kept in the ScaledObject's `status.gamekeeper`, and the last active time in KEDA's own `status.lastActiveTime`,
both written only when they change, so a restarted controller goes on where it stopped.

Safety: a set that cannot be read (missing, no status yet, pods not listable) or metadata the scaler refuses
means no scaling at all that poll, never a fall to zero. A `spec.replicas` changed by someone else is
overridden at the next poll, as KEDA's HPA would, and the event says so.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from gamekeeper.api.models import OWNER_GSS_KEY
from gamekeeper.api.scaledobject import (
    DEFAULT_COOLDOWN_PERIOD,
    DEFAULT_MAX_REPLICA_COUNT,
    DEFAULT_MIN_REPLICA_COUNT,
    DEFAULT_POLLING_INTERVAL,
)
from gamekeeper.api.times import ZERO, format_time, parse_time
from gamekeeper.core.autoscale import FleetCounts, ScalerError, count_pods, desired_replicas, is_active
from gamekeeper.core.hpa import HpaState, KedaSpec, behavior_from_spec, hpa_record, hpa_restore, keda_desired
from gamekeeper.ports.store import Change, Conflict, NotFound, Obj, Store, StoreError, spec_version

log = logging.getLogger("gamekeeper.autoscale")

KIND = "ScaledObject"


@dataclass
class _Tracked:
    uid: str
    spec: object = None  # the spec version last polled: a new spec is polled at once
    next_poll: float = 0.0
    last_active: float = 0.0
    last_set: int | None = None  # the replicas this autoscaler last wrote
    previous: str | None = None  # the scaler's last branch (WaitToBeDeleted removal takes turns with min)
    hpa: HpaState = field(default_factory=HpaState)


def _restored(so: Obj, now: float) -> _Tracked:
    """What an earlier run of the autoscaler left in the status: its windows, last branch and last active time."""
    status = so.get("status") or {}
    own = status.get("gamekeeper")
    own = own if isinstance(own, dict) else {}
    active = next((c.get("status") for c in status.get("conditions") or [] if c.get("type") == "Active"), None)
    last_active = now
    if active != "True":  # while active, nothing is older than now; else the time it stopped being active
        try:
            seen = parse_time(status.get("lastActiveTime"))
        except (TypeError, ValueError, AttributeError):
            seen = ZERO
        if seen != ZERO:
            last_active = min(now, seen.timestamp())
    previous = own.get("lastBranch")
    return _Tracked(uid=so["metadata"].get("uid", ""), last_active=last_active,
                    previous=previous if isinstance(previous, str) else None, hpa=hpa_restore(own.get("hpa"), now))


@dataclass(frozen=True)
class Outcome:
    """One poll, as logged: inputs, the scaler's answer, what was written (or why nothing was)."""

    namespace: str
    name: str
    target: str
    counts: FleetCounts | None
    scaler_desired: int | None
    branch: str
    active: bool | None
    replicas_before: int | None
    replicas: int | None
    why: str
    scaled: bool


async def read_fleet(store: Store, namespace: str, name: str) -> tuple[Obj, FleetCounts]:
    """A set and the scaler's counts from its pods' labels (as upstream lists them); NotFound if it is missing.

    One reader for both modes, so the gRPC scaler and the embedded loop see a fleet the same way."""
    gss = await store.get("GameServerSet", namespace, name)
    if gss is None:
        raise NotFound(f'GameServerSet "{namespace}/{name}" not found')
    pods = await store.list_projected("Pod", ("metadata.labels",), namespace, {OWNER_GSS_KEY: name})
    return gss, count_pods(int(gss["spec"]["replicas"]), [p["metadata"].get("labels") for p in pods])


def _keda_spec(spec: dict[str, Any]) -> KedaSpec:
    behavior = ((spec.get("advanced") or {}).get("horizontalPodAutoscalerConfig") or {}).get("behavior")
    return KedaSpec(
        min_replicas=spec.get("minReplicaCount", DEFAULT_MIN_REPLICA_COUNT),
        max_replicas=spec.get("maxReplicaCount", DEFAULT_MAX_REPLICA_COUNT),
        cooldown_period=spec.get("cooldownPeriod", DEFAULT_COOLDOWN_PERIOD),
        behavior=behavior_from_spec(behavior),
    )


class Autoscaler:
    def __init__(self, store: Store, clock: Callable[[], datetime],
                 observe: Callable[[Outcome], None] | None = None) -> None:
        self.store = store
        self.clock = clock
        self.observe = observe
        self._tracked: dict[tuple[str, str], _Tracked] = {}
        self._wake = asyncio.Event()
        self.last: dict[tuple[str, str], Outcome] = {}
        # (namespace, name, up|down) -> scalings written, for the metrics.
        self.scalings: dict[tuple[str, str, str], int] = {}

    def on_change(self, change: Change) -> None:
        if change.kind == KIND:
            self._wake.set()

    async def run(self) -> None:
        while True:
            now = self.clock().timestamp()
            wait = 1.0
            try:
                objects = await self.store.list(KIND)
            except StoreError as e:
                log.warning("cannot list ScaledObjects: %s", e)
                objects = []
            seen = set()
            for so in objects:
                key = (so["metadata"]["namespace"], so["metadata"]["name"])
                seen.add(key)
                tracked = self._tracked.get(key)
                if tracked is None or tracked.uid != so["metadata"].get("uid", ""):
                    tracked = self._tracked[key] = _restored(so, now)
                # A new spec takes effect now, as KEDA re-reads it; a status write (ours) does not re-poll.
                if tracked.spec != spec_version(so):
                    tracked.spec = spec_version(so)
                    tracked.next_poll = now
                if tracked.next_poll <= now:
                    interval = so["spec"].get("pollingInterval", DEFAULT_POLLING_INTERVAL)
                    tracked.next_poll = now + interval
                    try:
                        await self.poll(so)
                    except Exception:  # one bad object must not stop the others
                        log.exception("autoscale poll failed", extra={"scaledobject": key[1]})
                wait = min(wait, max(0.05, tracked.next_poll - now))
            for key in set(self._tracked) - seen:
                del self._tracked[key]
                self.last.pop(key, None)
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), wait)

    async def poll(self, so: Obj) -> Outcome:
        ns, name = so["metadata"]["namespace"], so["metadata"]["name"]
        now_dt = self.clock()
        now = now_dt.timestamp()
        tracked = self._tracked.get((ns, name))
        if tracked is None:
            tracked = self._tracked[(ns, name)] = _restored(so, now)
        spec = so["spec"]
        target = spec["scaleTargetRef"]["name"]
        metadata = {k: str(v) for k, v in spec["triggers"][0].get("metadata", {}).items()}
        outcome = await self._decide(ns, name, target, metadata, _keda_spec(spec), tracked, now)
        if outcome.scaled:
            await self._scale(so, outcome, tracked, now_dt)
        self._log(outcome)
        await self._write_status(so, outcome, tracked, now_dt if outcome.scaled else None)
        self.last[(ns, name)] = outcome
        if self.observe is not None:
            self.observe(outcome)
        return outcome

    async def _decide(self, ns: str, name: str, target: str, metadata: dict[str, str], keda: KedaSpec,
                      tracked: _Tracked, now: float) -> Outcome:
        def hold(why: str, counts: FleetCounts | None = None, replicas: int | None = None) -> Outcome:
            return Outcome(ns, name, target, counts, None, "hold", None, replicas, replicas, why, False)

        try:
            gss, counts = await read_fleet(self.store, ns, target)
        except NotFound:
            return hold(f"GameServerSet {target!r} not found; not scaling")
        except StoreError as e:
            return hold(f"cannot read GameServerSet {target!r} ({e}); not scaling")
        if gss["metadata"].get("deletionTimestamp"):
            return hold(f"GameServerSet {target!r} is being deleted; not scaling")
        replicas = counts.replicas
        overridden = tracked.last_set is not None and replicas != tracked.last_set
        if overridden and tracked.last_set is not None:
            # The scaler's answer is relative to spec.replicas, so a manual scale would simply stick; as with KEDA
            # the ScaledObject owns the replicas, so the answer is computed from the replicas it last set.
            counts = dataclasses.replace(counts, replicas=tracked.last_set)
        status = gss.get("status") or {}
        try:
            decision = desired_replicas(counts, metadata, tracked.previous)
            active = is_active(int(status.get("currentReplicas", 0)), status.get("waitToBeDeletedReplicas"), metadata)
        except ScalerError as e:
            return hold(f"scaler error: {e}; not scaling", counts, replicas)
        tracked.previous = decision.branch
        for note in decision.notes:
            log.warning("scaler: %s", note, extra={"scaledobject": name})
        if active:
            tracked.last_active = now
        desired, why = keda_desired(now, replicas, decision.desired, active, tracked.last_active, keda, tracked.hpa)
        why = f"{decision.reason}; {why}"
        if overridden:
            why += (f"; spec.replicas was set to {replicas} outside the autoscaler (gk scale?): the ScaledObject "
                    f"{name!r} decides the replicas of {target!r}")
        return Outcome(ns, name, target, counts, decision.desired, decision.branch, active, replicas, desired, why,
                       desired != replicas)

    async def _scale(self, so: Obj, outcome: Outcome, tracked: _Tracked, now: datetime) -> None:
        assert outcome.replicas is not None
        tracked.last_set = outcome.replicas
        try:
            await self.store.patch("GameServerSet", outcome.namespace, outcome.target,
                                   {"spec": {"replicas": outcome.replicas}})
        except (NotFound, Conflict) as e:
            log.warning("scale failed: %s", e, extra={"scaledobject": outcome.name})
            return
        direction = "up" if outcome.replicas > (outcome.replicas_before or 0) else "down"
        key = (outcome.namespace, outcome.name, direction)
        self.scalings[key] = self.scalings.get(key, 0) + 1
        c = outcome.counts
        inputs = (f" (total {c.total}, None {c.none}, WaitToBeDeleted {c.wait_to_be_deleted}, scaler desired "
                  f"{outcome.scaler_desired})") if c else ""
        await self.store.record_event(
            so, "Normal", "Scale",
            f"scale gameserverset/{outcome.target} from {outcome.replicas_before} to {outcome.replicas}: "
            f"{outcome.why}{inputs}",
            source="gamekeeper-autoscaler",
        )

    def _log(self, o: Outcome) -> None:
        c = o.counts
        extra: dict[str, Any] = {
            "scaledobject": o.name, "namespace": o.namespace, "gss": o.target,
            "total": c.total if c else None, "none": c.none if c else None,
            "waitToBeDeleted": c.wait_to_be_deleted if c else None, "replicas": o.replicas_before,
            "scalerDesired": o.scaler_desired, "branch": o.branch, "active": o.active, "desired": o.replicas,
            "scaled": o.scaled, "why": o.why,
        }
        log.log(logging.INFO if o.branch != "hold" else logging.WARNING, "autoscale decision", extra=extra)

    async def _write_status(self, so: Obj, o: Outcome, tracked: _Tracked, scaled_at: datetime | None) -> None:
        old = so.get("status") or {}
        ready = o.branch != "hold"
        status: dict[str, Any] = {
            "scaleTargetKind": "game.kruise.io/v1alpha1.GameServerSet",
            "conditions": [
                {"type": "Ready", "status": "True" if ready else "False",
                 "reason": "ScalerReady" if ready else "ScalerCannotRead", "message": "" if ready else o.why},
                {"type": "Active", "status": {True: "True", False: "False", None: "Unknown"}[o.active]},
            ],
            "desiredReplicas": o.scaler_desired if o.scaler_desired is not None else old.get("desiredReplicas"),
        }
        if status["desiredReplicas"] is None:
            del status["desiredReplicas"]
        last_scale = format_time(scaled_at) if scaled_at is not None else old.get("lastScaleTime")
        if last_scale:
            status["lastScaleTime"] = last_scale
        # Written when the scaler stops being active (not at every active poll); rounded up to the second, so
        # that a restart never starts the cooldown earlier.
        last_active = (format_time(datetime.fromtimestamp(math.ceil(tracked.last_active), UTC))
                       if o.active is False else old.get("lastActiveTime"))
        if last_active:
            status["lastActiveTime"] = last_active
        own: dict[str, Any] = {"hpa": hpa_record(tracked.hpa)}
        if tracked.previous is not None:
            own["lastBranch"] = tracked.previous
        status["gamekeeper"] = own
        if {k: old.get(k) for k in status} == status:
            return
        with contextlib.suppress(NotFound):
            await self.store.patch(KIND, o.namespace, o.name, {"status": status}, subresource="status")
