"""Recovery controller: carries out core.recovery's decisions for one GameServer (docs/recovery.md).

Crash safety comes from the order of writes: the record saying "attempt n, step k, started at t" is stored
(compare-and-swap on the GameServer's status) *before* the step runs, and the step's result is stored after it.
A controller that dies in between finds an `Acting` record that no task of its own is carrying out: it judges
that attempt by the probe and never runs the step again. Budget counts are read from the stored records of the
set's servers, so a restart forgets nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from gamekeeper.api.models import API_VERSION, OWNER_GSS_KEY
from gamekeeper.api.times import format_time, parse_time
from gamekeeper.control.queue import log_failure
from gamekeeper.control.specs import SpecCache
from gamekeeper.core.recovery import (
    Budget,
    Decision,
    RecoveryInput,
    decide,
    find_trigger,
    is_in_flight,
    step_finished,
    step_timeout,
    tally,
)
from gamekeeper.ports.runtime import CommandRunner, ContainerNotRunning, ContainerRestarter, Runtime
from gamekeeper.ports.store import Conflict, NotFound, Obj, Store

log = logging.getLogger("gamekeeper.recovery")

# While a recreatePod step runs, the GameServer is owned by its set, so that deleting the pod does not delete it
# (garbage collection follows ownerReferences); the annotation holds the old pod's uid until the new pod is here.
REOWNED_KEY = "recovery.gamekeeper.io/recreating-pod"
BUDGET_REASON = "RecoveryBudgetExhausted"
BUDGET_CACHE_SECONDS = 1.0


@dataclass
class RecoveryStats:
    """Counters for /metrics, read at scrape time."""

    outcomes: dict[tuple[str, str, str, str], int] = field(default_factory=dict)
    # The servers of each set whose stored record says a recovery is in progress (as last seen).
    flying: dict[str, set[str]] = field(default_factory=dict)

    def count(self, gss: str, quality: str, kind: str, outcome: str) -> None:
        key = (gss, quality, kind, outcome)
        self.outcomes[key] = self.outcomes.get(key, 0) + 1

    def seen(self, gss: str, name: str, record: dict[str, Any] | None) -> None:
        members = self.flying.setdefault(gss, set())
        if is_in_flight(record):
            members.add(name)
        else:
            members.discard(name)

    def in_flight(self) -> dict[str, int]:
        return {gss: len(names) for gss, names in self.flying.items()}


def _record_patch(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """A merge patch turning `old` into `new` (keys that went away become null)."""
    patch: dict[str, Any] = {k: v for k, v in new.items() if old.get(k) != v}
    patch.update({k: None for k in old if k not in new})
    return patch


class RecoveryController:
    def __init__(
        self,
        store: Store,
        runtime: Runtime,
        clock: Callable[[], datetime],
        restarter: ContainerRestarter | None = None,
        commands: CommandRunner | None = None,
    ) -> None:
        self.store = store
        self.runtime = runtime
        # Recovery commands go through `commands` where the runtime has one (embedded: not swept as probes are).
        self.commands = commands
        self.clock = clock
        self.restarter = restarter
        self.stats = RecoveryStats()
        self.requeue: Callable[[str, str], None] = lambda ns, name: None
        self.requeue_after: Callable[[float, str, str], None] = lambda delay, ns, name: None
        self._acting: dict[tuple[str, str], asyncio.Task[None]] = {}
        self._specs = SpecCache()
        # Set-wide warnings already raised, by set and budget, until a recovery starts there again.
        self._warned: dict[tuple[str, str], str] = {}
        # (loop time, budget counts, servers in flight) per set: see _budget.
        self._tallies: dict[tuple[str, str], tuple[float, Budget, set[str]]] = {}

    def stop(self) -> None:
        for task in list(self._acting.values()):
            task.cancel()

    async def reconcile(self, namespace: str, name: str) -> None:
        gs = await self.store.get("GameServer", namespace, name)
        if gs is None or gs["metadata"].get("deletionTimestamp"):
            return
        set_name = (gs["metadata"].get("labels") or {}).get(OWNER_GSS_KEY)
        gss = await self.store.get("GameServerSet", namespace, set_name) if set_name else None
        if gss is None or set_name is None:
            return
        spec = self._specs.get(gss)
        qualities = spec.service_qualities or []
        status = gs.get("status") or {}
        record = status.get("recovery")
        has_recovery = any(a.recovery for sq in qualities for a in sq.service_quality_action or [])
        if not has_recovery and not record:
            return
        if REOWNED_KEY in (gs["metadata"].get("annotations") or {}):
            gs = await self._give_back(gs)
        conditions = status.get("serviceQualitiesConditions") or []
        budget = Budget()
        phase = (record or {}).get("phase") or "Idle"
        if phase in ("Idle", "Healthy", "Blocked", "BackingOff") and find_trigger(qualities, conditions):
            budget = await self._budget(namespace, set_name, name, qualities)
        now = self.clock()
        key = (namespace, name)
        decision = decide(RecoveryInput(
            qualities=qualities, conditions=conditions, record=record, policy=spec.recovery_policy, budget=budget,
            ops_state=(gs.get("spec") or {}).get("opsState"), now=now, acting_here=key in self._acting,
        ))
        if decision.record is not None:  # one line per change of the record, not per look
            log.info("recovery decision", extra={
                "gss": set_name, "gs": name, "decision": decision.action, "reason": decision.reason,
                "quality": (decision.record or record or {}).get("quality"),
                "attempt": (decision.record or record or {}).get("attempt")})
        await self._carry_out(gs, gss, decision, now)
        self.stats.seen(set_name, name, decision.record if decision.record is not None else record)
        if decision.wake_at is not None:
            self.requeue_after(max(0.05, (decision.wake_at - now).total_seconds() + 0.05), namespace, name)

    async def _budget(self, namespace: str, set_name: str, name: str, qualities: Any) -> Budget:
        """The set's counts, read from its servers' records at most once a second.

        In a set-wide outage every held server looks again every few seconds; reading the whole set each time
        would cost O(servers²). Only this controller writes records, and each of its writes updates the cached
        counts (`_note`), so the in-flight and per-hour counts are never stale; the unhealthy count may be a
        second old."""
        key = (namespace, set_name)
        loop_now = asyncio.get_running_loop().time()
        cached = self._tallies.get(key)
        if cached is None or loop_now - cached[0] > BUDGET_CACHE_SECONDS:
            members = await self.store.list_projected(
                "GameServer", ("status.recovery", "status.serviceQualitiesConditions"), namespace,
                {OWNER_GSS_KEY: set_name},
            )
            records = [(m.get("status") or {}).get("recovery") for m in members]
            unhealthy = sum(1 for m in members if find_trigger(
                qualities, (m.get("status") or {}).get("serviceQualitiesConditions") or []))
            flying = {m["metadata"]["name"] for m, r in zip(members, records, strict=True) if is_in_flight(r)}
            cached = (loop_now, tally(records, unhealthy, max(len(members), 1), self.clock(), None), flying)
            self._tallies[key] = cached
        _, budget, flying = cached
        return replace(budget, in_flight=len(flying - {name}))

    async def _write(self, gs: Obj, record: dict[str, Any], extra_status: dict[str, Any] | None = None) -> Obj:
        meta = gs["metadata"]
        old = (gs.get("status") or {}).get("recovery") or {}
        status: dict[str, Any] = {"recovery": _record_patch(old, record) if old else record}
        status.update(extra_status or {})
        written = await self.store.patch("GameServer", meta["namespace"], meta["name"], {"status": status},
                                         resource_version=meta["resourceVersion"], subresource="status")
        self._note(gs, old, record)
        return written

    def _note(self, gs: Obj, old: dict[str, Any], new: dict[str, Any]) -> None:
        """Keep the cached counts of the set exact across our own write (a watch cache may not have it yet)."""
        meta = gs["metadata"]
        key = (meta["namespace"], (meta.get("labels") or {}).get(OWNER_GSS_KEY, ""))
        cached = self._tallies.get(key)
        if cached is None:
            return
        at, budget, flying = cached
        if is_in_flight(new):
            flying.add(meta["name"])
        else:
            flying.discard(meta["name"])
        if new.get("phase") == "Acting" and new.get("startedAt") != old.get("startedAt"):
            started = parse_time(new.get("startedAt"))
            budget = replace(budget, started_last_hour=budget.started_last_hour + 1,
                             oldest_in_hour=min(budget.oldest_in_hour or started, started))
        self._tallies[key] = (at, budget, flying)

    async def _carry_out(self, gs: Obj, gss: Obj, decision: Decision, now: datetime) -> None:
        meta = gs["metadata"]
        namespace, name = meta["namespace"], meta["name"]
        set_name = gss["metadata"]["name"]
        record = decision.record
        if decision.action == "blocked":
            if record is not None:
                await self._write(gs, record)
            await self._warn_budget(gss, decision)
            return
        if record is None:
            return
        extra: dict[str, Any] = {}
        if decision.action == "escalate" and decision.ops_state != (gs.get("spec") or {}).get("opsState"):
            # The opsState timeline says the recovery set it (the GameServer controller sees nothing new).
            timeline = list((gs.get("status") or {}).get("opsStateHistory") or [])
            last = timeline[-1]["to"] if timeline else (gs.get("spec") or {}).get("opsState")
            timeline.append({"time": format_time(now), "from": last or "", "to": decision.ops_state,
                             "by": f"recovery:{record.get('quality')}"})
            extra["opsStateHistory"] = timeline[-20:]
        if decision.action == "apply-escalation" and (gs.get("spec") or {}).get("opsState") != decision.ops_state:
            gs = await self.store.patch("GameServer", namespace, name, {"spec": {"opsState": decision.ops_state}},
                                        resource_version=meta["resourceVersion"])
        written = await self._write(gs, record, extra)
        for event in decision.events:
            await self.store.record_event(gs, event.type, event.reason, event.message)
        quality, kind = str(record.get("quality")), str(record.get("kind") or "-")
        if decision.action == "start":
            for warned in [k for k in self._warned if k[0] == f"{namespace}/{set_name}"]:
                self._warned.pop(warned, None)
            self.stats.count(set_name, quality, kind, "started")
            self._acting[(namespace, name)] = asyncio.get_running_loop().create_task(
                self._run_step(written, decision), name=f"recovery {namespace}/{name}")
        elif decision.action == "succeed":
            self.stats.count(set_name, quality, kind, "succeeded")
        elif decision.action == "attempt-failed":
            self.stats.count(set_name, quality, kind, "failed")
        elif decision.action == "escalate":
            self.stats.count(set_name, quality, kind, "exhausted")
            self.requeue(namespace, name)  # the opsState is set by the next pass (after the record says so)
        elif decision.action == "interrupted":
            self.stats.count(set_name, quality, kind, "interrupted")
        if decision.action in ("succeed", "attempt-failed", "escalate", "interrupted", "cleared", "abandon"):
            # A slot of the set's budget may have freed: its waiting servers look again.
            blocked = await self.store.list_projected(
                "GameServer", ("status.recovery.phase",), namespace, {OWNER_GSS_KEY: set_name}
            )
            for member in blocked:
                if ((member.get("status") or {}).get("recovery") or {}).get("phase") == "Blocked":
                    self.requeue(namespace, member["metadata"]["name"])

    async def _warn_budget(self, gss: Obj, decision: Decision) -> None:
        """One Warning per set and budget (the event recorder folds repeats after a restart into one event)."""
        if decision.blocked_by not in ("maxUnhealthy", "maxPerHour"):
            return
        meta = gss["metadata"]
        key = (f"{meta['namespace']}/{meta['name']}", decision.blocked_by)
        if key in self._warned:
            return
        self._warned[key] = decision.reason
        policy = (gss.get("spec") or {}).get("recoveryPolicy") or {}
        what = {"maxUnhealthy": f"more than maxUnhealthy ({policy.get('maxUnhealthy')}) of the set calls for "
                                "recovery at once: a shared cause is likely, not the servers",
                "maxPerHour": f"maxPerHour ({policy.get('maxPerHour')}) recoveries were started in the last hour"}
        message = f"recovery stopped for GameServerSet {meta['name']}: {what[decision.blocked_by]}"
        log.warning("recovery budget exhausted", extra={"gss": meta["name"], "budget": decision.blocked_by,
                                                         "reason": decision.reason})
        await self.store.record_event(gss, "Warning", BUDGET_REASON, message)

    # -- carrying out a step ---------------------------------------------------------------------------------

    async def _run_step(self, gs: Obj, decision: Decision) -> None:
        meta = gs["metadata"]
        namespace, name = meta["namespace"], meta["name"]
        record = dict((gs.get("status") or {}).get("recovery") or {})
        try:
            ok, output, code = await self._act(gs, record, decision)
            log.info("recovery step done", extra={"gs": name, "attempt": record.get("attempt"),
                                                  "kind": record.get("kind"), "ok": ok, "output": output[-200:]})
            for _ in range(20):
                current = await self.store.get("GameServer", namespace, name)
                rec = ((current or {}).get("status") or {}).get("recovery") or {}
                if current is None or rec.get("phase") != "Acting" or rec.get("startedAt") != record.get("startedAt"):
                    return
                try:
                    await self._write(current, step_finished(rec, ok, output, self.clock(), code))
                    return
                except Conflict:
                    continue
        except asyncio.CancelledError:
            raise
        except Exception as e:
            log_failure(log, e, "recovery step of %s/%s failed", namespace, name)
        finally:
            self._acting.pop((namespace, name), None)
            self.requeue(namespace, name)

    async def _act(self, gs: Obj, record: dict[str, Any], decision: Decision) -> tuple[bool, str, int | None]:
        meta = gs["metadata"]
        namespace, name = meta["namespace"], meta["name"]
        step = decision.step
        assert step is not None
        pod = await self.store.get("Pod", namespace, name)
        if pod is None:
            return False, "the pod is gone", None
        container = decision.container or pod["spec"]["containers"][0]["name"]
        if step.kind == "exec":
            try:
                run = self.commands.run_command if self.commands is not None else self.runtime.exec
                result = await run(pod, container, list(step.command or []), step_timeout(step))
            except ContainerNotRunning as err:
                return False, str(err), None
            output = (result.stdout + result.stderr).decode(errors="replace").strip()
            if result.timed_out:
                return False, f"timed out after {step_timeout(step)}s; {output}".strip(), result.exit_code
            return result.exit_code == 0, output, result.exit_code
        if step.kind == "restartContainer" and self.restarter is not None:
            token = f"{record.get('attempt')}-{record.get('startedAt')}"
            return True, await self.restarter.restart_container(pod, container, token), None
        how = await self._recreate_pod(gs, pod)
        if step.kind == "restartContainer":
            how = "this runtime cannot restart a container in place: " + how
        return True, how, None

    async def _recreate_pod(self, gs: Obj, pod: Obj) -> str:
        meta = gs["metadata"]
        owners = meta.get("ownerReferences") or []
        if any(o.get("kind") == "Pod" for o in owners):
            gss = await self.store.get("GameServerSet", meta["namespace"],
                                       (meta.get("labels") or {}).get(OWNER_GSS_KEY, ""))
            if gss is None:
                return "the set is gone; pod left alone"
            owner = {"apiVersion": API_VERSION, "kind": "GameServerSet", "name": gss["metadata"]["name"],
                     "uid": gss["metadata"]["uid"], "controller": True, "blockOwnerDeletion": True}
            await self.store.patch("GameServer", meta["namespace"], meta["name"], {"metadata": {
                "ownerReferences": [owner], "annotations": {REOWNED_KEY: pod["metadata"]["uid"]}}})
        with contextlib.suppress(NotFound):
            await self.store.delete("Pod", meta["namespace"], meta["name"])
        return "deleted the pod; the workload recreates it on the same ordinal (the GameServer stays)"

    async def _give_back(self, gs: Obj) -> Obj:
        """After a recreatePod step: the new pod owns the GameServer again, as under reclaimPolicy Cascade."""
        meta = gs["metadata"]
        old_uid = (meta.get("annotations") or {}).get(REOWNED_KEY)
        pod = await self.store.get("Pod", meta["namespace"], meta["name"])
        if pod is None or pod["metadata"]["uid"] == old_uid or pod["metadata"].get("deletionTimestamp"):
            return gs
        owner = {"apiVersion": "v1", "kind": "Pod", "name": pod["metadata"]["name"], "uid": pod["metadata"]["uid"],
                 "controller": True, "blockOwnerDeletion": True}
        return await self.store.patch("GameServer", meta["namespace"], meta["name"], {"metadata": {
            "ownerReferences": [owner], "annotations": {REOWNED_KEY: None}}},
            resource_version=meta["resourceVersion"])
