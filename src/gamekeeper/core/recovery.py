"""Automatic recovery: what to do next for one game server (docs/recovery.md).

Everything here is a pure function of the service qualities, the probe results in the GameServer's status, the
recovery record kept beside them (`status.recovery`), the set's budget and `now`. The controller
(control/recovery.py) carries a decision out and stores the new record *before* it acts, so a controller that
dies mid-step never runs that step again: it finds the record saying the step was started and judges it.

Phases of `status.recovery.phase`:
  Idle        nothing to do (no attempts remembered)
  Blocked     the quality calls for a recovery but a budget or the Allocated guard holds it (`blockedBy`)
  Acting      a step was started at `startedAt` (intent written before acting)
  Judging     the step finished at `finishedAt`; the probe has `successWithinSeconds` to leave the trigger
  BackingOff  the attempt failed; the next one may start at `retryAt`
  Exhausted   every attempt failed: escalated (`escalation.opsState`), nothing more is tried
  Healthy     the quality left the trigger at `since`; the attempt count resets after healthyResetSeconds
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from gamekeeper.api.models import Recovery, RecoveryPolicy, RecoveryStep, ServiceQuality
from gamekeeper.api.times import format_time, parse_time
from gamekeeper.core.service_quality import _GO_BOOLS, Event, clean_result

DEFAULT_BACKOFF_SECONDS = 10
DEFAULT_TIMEOUT_SECONDS = 30
DEFAULT_HEALTHY_RESET_SECONDS = 600
DEFAULT_MAX_IN_FLIGHT: int | str = "25%"
HISTORY_LIMIT = 20
HOUR = timedelta(hours=1)
# A busy set is re-checked this often while it waits for a slot (another server's recovery ending frees it).
IN_FLIGHT_RECHECK = timedelta(seconds=2)
# Kinds that disturb connected players: never run on an Allocated server unless the action allows it.
DISRUPTIVE_KINDS = ("restartContainer", "recreatePod")
IN_FLIGHT_PHASES = ("Acting", "Judging", "BackingOff")
ALLOCATED = "Allocated"


@dataclass(frozen=True)
class Trigger:
    """A service quality whose current probe result matches an action that has a recovery."""

    quality: ServiceQuality
    action: int
    recovery: Recovery


@dataclass(frozen=True)
class Budget:
    """The set-wide counts the budget rules need, derived from the stored records (see `tally`)."""

    total: int = 1
    in_flight: int = 0  # other servers of the set with a recovery in progress
    started_last_hour: int = 0  # attempts started in the set in the last hour
    oldest_in_hour: datetime | None = None  # the earliest of those (when a per-hour slot frees)
    unhealthy: int = 0  # servers of the set whose probe currently calls for a recovery


@dataclass(frozen=True)
class RecoveryInput:
    qualities: Sequence[ServiceQuality]
    conditions: Sequence[Mapping[str, Any]]  # status.serviceQualitiesConditions
    record: Mapping[str, Any] | None  # status.recovery
    policy: RecoveryPolicy | None
    budget: Budget
    ops_state: str | None
    now: datetime
    acting_here: bool = False  # this controller is carrying out the record's Acting step right now


@dataclass
class Decision:
    """`action`: what happens; `record`: the new status.recovery (None: nothing to write)."""

    action: str
    record: dict[str, Any] | None = None
    step: RecoveryStep | None = None
    container: str | None = None
    wake_at: datetime | None = None
    reason: str = ""
    events: list[Event] = field(default_factory=list)
    blocked_by: str | None = None
    ops_state: str | None = None  # the escalation's opsState, for action apply-escalation


def scaled(value: int | str, total: int, round_up: bool) -> int:
    """Kubernetes' GetScaledValueFromIntOrPercent."""
    if isinstance(value, int):
        return value
    exact = int(value.strip().rstrip("%")) * total / 100
    return math.ceil(exact) if round_up else math.floor(exact)


def _matches(sq: ServiceQuality, action_index: int, cond: Mapping[str, Any] | None) -> bool | None:
    """Does the probe result match the action? None while the quality has no result (a new pod)."""
    if cond is None or "status" not in cond:
        return None
    actions = sq.service_quality_action or []
    if action_index >= len(actions):
        return False
    action = actions[action_index]
    parsed = _GO_BOOLS.get(str(cond.get("status") or ""))
    if parsed is None or parsed != action.state:
        return False
    return not action.result or action.result == clean_result(str(cond.get("result") or ""))


def _condition(conditions: Sequence[Mapping[str, Any]], name: str) -> Mapping[str, Any] | None:
    return next((c for c in conditions if c.get("name") == name), None)


def find_trigger(qualities: Sequence[ServiceQuality], conditions: Sequence[Mapping[str, Any]]) -> Trigger | None:
    """The first quality (in spec order) whose result matches one of its recovery actions."""
    for sq in qualities:
        cond = _condition(conditions, sq.name)
        for j, action in enumerate(sq.service_quality_action or []):
            if action.recovery is not None and _matches(sq, j, cond):
                return Trigger(sq, j, action.recovery)
    return None


def _recorded(qualities: Sequence[ServiceQuality], record: Mapping[str, Any]) -> Trigger | None:
    sq = next((q for q in qualities if q.name == record.get("quality")), None)
    index = int(record.get("action") or 0)
    actions = (sq.service_quality_action or []) if sq is not None else []
    if sq is None or index >= len(actions) or actions[index].recovery is None:
        return None
    recovery = actions[index].recovery
    assert recovery is not None
    return Trigger(sq, index, recovery)


def attempts_of(recovery: Recovery) -> int:
    return len(recovery.steps) if recovery.attempts is None else recovery.attempts


def step_for(recovery: Recovery, attempt: int) -> RecoveryStep:
    """Attempt k (0-based) runs step k; attempts past the last step repeat the last (mildest first)."""
    return recovery.steps[min(attempt, len(recovery.steps) - 1)]


def step_container(trigger: Trigger, step: RecoveryStep, first_container: str | None) -> str | None:
    return step.container or trigger.quality.container_name or first_container


def step_timeout(step: RecoveryStep) -> int:
    return step.timeout_seconds or DEFAULT_TIMEOUT_SECONDS


def success_within(trigger: Trigger, step: RecoveryStep) -> int:
    """How long the probe has to leave the trigger after a step: stated, or three probe periods (plus the
    initial delay when the step gives the server a new process, whose probes start over)."""
    if trigger.recovery.success_within_seconds:
        return trigger.recovery.success_within_seconds
    base = 3 * trigger.quality.effective("period_seconds")
    if step.kind == "recreatePod":
        base += trigger.quality.effective("initial_delay_seconds")
    return base


def healthy_reset(policy: RecoveryPolicy | None) -> int:
    if policy is None or policy.healthy_reset_seconds is None:
        return DEFAULT_HEALTHY_RESET_SECONDS
    return policy.healthy_reset_seconds


def is_in_flight(record: Mapping[str, Any] | None) -> bool:
    return bool(record) and (record or {}).get("phase") in IN_FLIGHT_PHASES


def tally(
    records: Sequence[Mapping[str, Any] | None], unhealthy: int, total: int, now: datetime, self_index: int | None
) -> Budget:
    """The budget counts of a set from its servers' stored records (never from memory: a restarted controller
    counts the same). `self_index`: the server being decided, left out of the in-flight count."""
    in_flight = 0
    starts: list[datetime] = []
    for i, record in enumerate(records):
        if not record:
            continue
        if i != self_index and is_in_flight(record):
            in_flight += 1
        for entry in record.get("history") or []:
            started = parse_time(entry.get("startedAt"))
            if now - started < HOUR:
                starts.append(started)
    return Budget(total=total, in_flight=in_flight, started_last_hour=len(starts),
                  oldest_in_hour=min(starts) if starts else None, unhealthy=unhealthy)


def _history_update(record: dict[str, Any], **changes: Any) -> None:
    history = [dict(e) for e in record.get("history") or []]
    if history and history[-1].get("attempt") == record.get("attempt"):
        history[-1].update(changes)
    record["history"] = history


def _base(record: Mapping[str, Any] | None) -> dict[str, Any]:
    return {k: v for k, v in (record or {}).items()}


def decide(inp: RecoveryInput) -> Decision:
    record = _base(inp.record)
    phase = record.get("phase") or "Idle"
    now = inp.now
    active = phase in ("Acting", "Judging", "BackingOff", "Exhausted")
    trigger = _recorded(inp.qualities, record) if record.get("quality") else None
    if active and trigger is None:
        record.update(phase="Idle", attempt=0, since=format_time(now))
        for key in ("startedAt", "finishedAt", "retryAt", "escalation", "blockedBy"):
            record.pop(key, None)
        return Decision("abandon", record, reason="the recovery action is no longer in the set's spec")
    matched: bool | None
    if active:
        assert trigger is not None
        matched = _matches(trigger.quality, trigger.action, _condition(inp.conditions, trigger.quality.name))
    else:
        # Between episodes the trigger is whatever the probe says now.
        current = find_trigger(inp.qualities, inp.conditions)
        if current is not None and trigger is not None and current.quality.name != trigger.quality.name:
            record["attempt"] = 0  # another quality's recovery keeps its own count
        matched = current is not None
        trigger = current or trigger

    if phase == "Acting":
        if inp.acting_here:
            return Decision("wait", reason="the step is running")
        record.update(phase="Judging", finishedAt=format_time(now), outcome="Interrupted",
                      output="the controller stopped while this step ran; it is not run again")
        _history_update(record, finishedAt=format_time(now), outcome="Interrupted")
        return Decision("interrupted", record, reason="found a step started by an earlier controller")

    assert trigger is not None or phase in ("Idle", "Healthy", "Blocked")
    if phase == "Judging":
        assert trigger is not None
        attempt = int(record.get("attempt") or 0)
        step = step_for(trigger.recovery, attempt - 1)
        if matched is False:
            return _succeed(record, trigger, now)
        judged_from = parse_time(record.get("finishedAt"))
        if record.get("outcome") == "Interrupted" and step.kind == "exec":
            # The command of a controller that died may still be running (in its own session) until its timeout.
            judged_from = max(judged_from, parse_time(record.get("startedAt")) + timedelta(seconds=step_timeout(step)))
        deadline = judged_from + timedelta(seconds=success_within(trigger, step))
        if record.get("outcome") != "Failed" and now < deadline:
            return Decision("wait", wake_at=deadline, reason="waiting for the probe to judge the step")
        outcome = "Failed" if record.get("outcome") == "Failed" else "NotRepaired"
        _history_update(record, outcome=outcome)
        return _attempt_failed(record, trigger, inp.ops_state, outcome, now)

    if phase == "BackingOff":
        assert trigger is not None
        if matched is False:
            return _succeed(record, trigger, now)
        retry_at = parse_time(record.get("retryAt"))
        if now < retry_at:
            return Decision("wait", wake_at=retry_at, reason="backing off before the next attempt")
        return _try_start(record, trigger, inp)

    if phase == "Exhausted":
        assert trigger is not None
        escalation = record.get("escalation") or {}
        if escalation.get("opsState") and not escalation.get("applied"):
            record["escalation"] = {**escalation, "applied": True}
            return Decision("apply-escalation", record, ops_state=escalation["opsState"],
                            reason="escalated: setting the opsState")
        if matched is False:
            record.update(phase="Healthy", since=format_time(now))
            record.pop("escalation", None)
            return Decision("cleared", record, reason="the probe no longer calls for a recovery")
        return Decision("idle", reason="attempts exhausted; waiting for a person")

    # Idle, Healthy, Blocked: between episodes.
    attempt = int(record.get("attempt") or 0)
    if trigger is None or not matched:
        if phase == "Blocked":
            record.pop("blockedBy", None)
            record.update(phase="Healthy" if attempt else "Idle", since=format_time(now))
            return Decision("cleared", record, reason="the probe no longer calls for a recovery")
        if phase == "Healthy":
            reset_at = parse_time(record.get("since")) + timedelta(seconds=healthy_reset(inp.policy))
            if now >= reset_at:
                record.update(phase="Idle", attempt=0, since=format_time(now))
                return Decision("reset", record, reason="healthy long enough: the attempt count starts over")
            return Decision("wait", wake_at=reset_at, reason="healthy; the attempt count resets later")
        return Decision("idle")
    record["quality"], record["action"] = trigger.quality.name, trigger.action
    return _try_start(record, trigger, inp)


def _succeed(record: dict[str, Any], trigger: Trigger, now: datetime) -> Decision:
    attempt = int(record.get("attempt") or 0)
    _history_update(record, outcome="Succeeded", judgedAt=format_time(now))
    record.update(phase="Healthy", since=format_time(now), outcome="Succeeded")
    for key in ("retryAt", "blockedBy"):
        record.pop(key, None)
    message = (f"quality {trigger.quality.name!r} left the state that triggered recovery after attempt {attempt} "
               f"({record.get('kind')})")
    return Decision("succeed", record, reason=message, events=[Event("Normal", "RecoverySucceeded", message)])


def _attempt_failed(
    record: dict[str, Any], trigger: Trigger, ops_state: str | None, outcome: str, now: datetime
) -> Decision:
    attempt = int(record.get("attempt") or 0)
    total = attempts_of(trigger.recovery)
    if attempt >= total:
        return _escalate(record, trigger, ops_state, now, f"attempt {attempt}/{total} {outcome}")
    backoff = trigger.recovery.backoff_seconds
    retry_at = now + timedelta(seconds=DEFAULT_BACKOFF_SECONDS if backoff is None else backoff)
    record.update(phase="BackingOff", retryAt=format_time(retry_at), since=format_time(now))
    message = (f"recovery attempt {attempt}/{total} ({record.get('kind')}) of quality {trigger.quality.name!r}: "
               f"{outcome}; next attempt at {format_time(retry_at)}")
    return Decision("attempt-failed", record, wake_at=retry_at, reason=message,
                    events=[Event("Normal", "RecoveryAttemptFailed", message)])


def _escalate(
    record: dict[str, Any], trigger: Trigger, ops_state: str | None, now: datetime, why: str
) -> Decision:
    target = (trigger.recovery.on_exhausted.ops_state if trigger.recovery.on_exhausted else None) or "Maintaining"
    total = attempts_of(trigger.recovery)
    record.update(phase="Exhausted", since=format_time(now),
                  escalation={"opsState": target, "applied": ops_state == target})
    for key in ("retryAt", "blockedBy"):
        record.pop(key, None)
    message = (f"recovery of quality {trigger.quality.name!r} gave up after {total} attempt(s) ({why}); "
               f"opsState set to {target}: the server needs a person")
    return Decision("escalate", record, reason=message, ops_state=target,
                    events=[Event("Warning", "RecoveryFailed", message)])


def _blocked(record: dict[str, Any], by: str, reason: str, wake_at: datetime | None, now: datetime) -> Decision:
    changed = record.get("phase") != "Blocked" or record.get("blockedBy") != by
    if changed:
        record.update(phase="Blocked", blockedBy=by, since=format_time(now))
    return Decision("blocked", record if changed else None, wake_at=wake_at, reason=reason, blocked_by=by)


def _try_start(record: dict[str, Any], trigger: Trigger, inp: RecoveryInput) -> Decision:
    now, budget, policy = inp.now, inp.budget, inp.policy or RecoveryPolicy()
    attempt = int(record.get("attempt") or 0)
    total = attempts_of(trigger.recovery)
    if attempt >= total:
        return _escalate(record, trigger, inp.ops_state, now,
                         f"{attempt} attempt(s) already made since the server was last healthy")
    step = step_for(trigger.recovery, attempt)
    if step.kind in DISRUPTIVE_KINDS and inp.ops_state == ALLOCATED and not trigger.recovery.allow_allocated:
        return _blocked(record, "Allocated", f"{step.kind} would disturb the players of an Allocated server "
                        "(set allowAllocated: true to allow it)", None, now)
    if policy.max_unhealthy is not None:
        limit = scaled(policy.max_unhealthy, budget.total, round_up=False)
        if budget.unhealthy > limit:
            return _blocked(record, "maxUnhealthy", f"{budget.unhealthy} of {budget.total} servers call for "
                            f"recovery, more than maxUnhealthy {policy.max_unhealthy}: recovery stops for the set",
                            now + IN_FLIGHT_RECHECK, now)
    if policy.max_per_hour is not None and budget.started_last_hour >= policy.max_per_hour:
        frees = (budget.oldest_in_hour or now) + HOUR
        return _blocked(record, "maxPerHour", f"{budget.started_last_hour} recoveries started in the last hour "
                        f"(maxPerHour {policy.max_per_hour})", frees, now)
    max_in_flight = DEFAULT_MAX_IN_FLIGHT if policy.max_in_flight is None else policy.max_in_flight
    slots = max(1, scaled(max_in_flight, budget.total, round_up=True)) if max_in_flight != 0 else 0
    if budget.in_flight >= slots:
        return _blocked(record, "maxInFlight", f"{budget.in_flight} servers of the set are in recovery "
                        f"(maxInFlight {max_in_flight})", now + IN_FLIGHT_RECHECK, now)
    first = None
    container = step_container(trigger, step, first)
    attempt += 1
    stamp = format_time(now)
    record.update(quality=trigger.quality.name, action=trigger.action, phase="Acting", attempt=attempt,
                  step=min(attempt - 1, len(trigger.recovery.steps) - 1), kind=step.kind, startedAt=stamp,
                  since=stamp)
    for key in ("finishedAt", "retryAt", "blockedBy", "outcome", "output", "escalation"):
        record.pop(key, None)
    entry: dict[str, Any] = {"attempt": attempt, "kind": step.kind, "startedAt": stamp, "outcome": "Running"}
    if container:
        entry["container"] = container
    record["history"] = [*(dict(e) for e in record.get("history") or []), entry][-HISTORY_LIMIT:]
    what = f"exec {' '.join(step.command or [])}" if step.kind == "exec" else step.kind
    message = (f"attempt {attempt}/{total}: {what}" + (f" in container {container}" if container else "")
               + f" (quality {trigger.quality.name!r})")
    return Decision("start", record, step=step, container=container, reason=message,
                    events=[Event("Normal", "RecoveryStarted", message)])


def step_finished(
    record: Mapping[str, Any], ok: bool, output: str, now: datetime, exit_code: int | None = None
) -> dict[str, Any]:
    """The record once the step the controller carried out has returned (judged later by the probe)."""
    out = _base(record)
    stamp = format_time(now)
    outcome = "Done" if ok else "Failed"
    short = output[-512:]
    out.update(phase="Judging", finishedAt=stamp, outcome=outcome, output=short)
    changes: dict[str, Any] = {"finishedAt": stamp, "outcome": outcome, "output": short}
    if exit_code is not None:
        changes["exitCode"] = exit_code
    _history_update(out, **changes)
    return out

