"""Probe result → GameServer actions (spec §2.3), and the probe worker's threshold logic (spec §2.2).

Everything here is a pure function of its arguments; `now` is passed in.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from gamekeeper.api.kube_rules import label_value, ops_state_value, priority_value
from gamekeeper.api.models import SQ_CONDITION_PREFIX, ServiceQuality
from gamekeeper.api.times import ZERO, format_time, parse_time
from gamekeeper.core.templates import parse_int_from_template, render_template

MAX_MESSAGE_BYTES = 1024

_GO_BOOLS = {
    "1": True, "t": True, "T": True, "TRUE": True, "true": True, "True": True,
    "0": False, "f": False, "F": False, "FALSE": False, "false": False, "False": False,
}


@dataclass(frozen=True)
class Event:
    type: str
    reason: str
    message: str


@dataclass
class ServiceQualityOutcome:
    """What syncing the service qualities decided.

    `spec` holds only the fields some matching action set (rendered), so the caller can patch exactly those;
    `labels`/`annotations` hold only keys to merge. `conditions` replaces status.serviceQualitiesConditions.
    """

    spec: dict[str, Any] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    conditions: list[dict[str, Any]] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    acted: list[str] = field(default_factory=list)
    # One entry per quality whose probe output changed: what was observed and what it led to.
    history: list[dict[str, Any]] = field(default_factory=list)


def clean_result(message: str) -> str:
    """The result actions match on: the message with every '|' and newline removed (nothing else)."""
    return message.replace("|", "").replace("\n", "")


def _priority(
    value: int | str, result: str, field_name: str, current: Any, events: list[Event]
) -> int | str | None:
    """A priority from an action; a template that does not give an integer keeps the old value."""
    if not (isinstance(value, str) and "{{" in value):
        return value
    try:
        parsed = parse_int_from_template(value, result)
        problem = priority_value(parsed)
        if problem:
            raise ValueError(problem)
        return parsed
    except ValueError as err:
        label = "DeletionPriority" if field_name == "deletionPriority" else "UpdatePriority"
        events.append(
            Event(
                "Warning",
                f"Invalid{label}",
                f"Failed to parse {label} template '{value}' with result '{result}': {err}",
            )
        )
        return None if current is None else current


def sync_service_qualities(
    qualities: Sequence[ServiceQuality],
    pod_conditions: Sequence[Mapping[str, Any]],
    gs_spec: Mapping[str, Any],
    old_conditions: Sequence[Mapping[str, Any]] | None,
    now: datetime,
    reapply: bool = False,
) -> ServiceQualityOutcome:
    """Upstream syncServiceQualities, with minimal writes.

    Actions are edge-triggered: they run on the first observation, then only when status or result changes,
    and for a `permanent` quality only while no action has matched yet (its memory is a non-zero
    lastActionTransitionTime). All matching actions apply in order; later ones win field by field.

    `reapply` (the set's annotation gamekeeper.io/reapply-qualities: "true") makes non-permanent qualities
    level-triggered: every sync re-applies the actions that match each quality's current result, in the order
    of the qualities, so the fields they write are a function of the current results alone (the last quality
    in the list whose action matches wins) and no short stall seen by one quality can leave a stale value. It
    writes only when a value differs, and keeps the conditions' action times, history and events edge-triggered.
    """
    out = ServiceQualityOutcome()
    old_by_name = {c.get("name"): c for c in old_conditions or []}
    spec_view = dict(gs_spec)
    now_text = format_time(now)
    for sq in qualities:
        cond_type = SQ_CONDITION_PREFIX + sq.name
        pod_cond = next((c for c in pod_conditions if c.get("type") == cond_type), None)
        if pod_cond is None:
            out.conditions.append({"name": sq.name})
            continue
        result = clean_result(str(pod_cond.get("message") or ""))
        status = str(pod_cond.get("status") or "")
        probe_time = pod_cond.get("lastProbeTime") or ""
        old = old_by_name.get(sq.name)
        old_action_time = (old or {}).get("lastActionTransitionTime") or ""
        gate_open = old is None or (
            (old.get("status") != status or (old.get("result") or "") != result)
            and (parse_time(old_action_time) == ZERO or not sq.permanent)
        )
        action_time = old_action_time
        changed = old is None or old.get("status") != status or (old.get("result") or "") != result
        applied: dict[str, Any] = {}
        invalid: list[str] = []
        if gate_open:
            action_time = ""
            for action in _matching(sq, status, result):
                applied.update(_apply(action, result, spec_view, out, invalid))
                action_time = now_text
                out.acted.append(sq.name)
            if invalid:
                shown = result if len(result) <= 64 else result[:64] + "…"
                out.events.append(Event(
                    "Warning", "InvalidRenderedValue",
                    f"serviceQuality {sq.name}: result {shown!r} renders {'; '.join(invalid)}; kept the old value",
                ))
        elif reapply and not sq.permanent:
            # Re-applied without a new observation: events, history and action times belong to the change.
            before = (dict(spec_view), dict(out.labels), dict(out.annotations))
            scratch = ServiceQualityOutcome(spec=out.spec, labels=out.labels, annotations=out.annotations)
            for action in _matching(sq, status, result):
                _apply(action, result, spec_view, scratch, [])
            if (dict(spec_view), out.labels, out.annotations) != before:
                out.acted.append(sq.name)
        if changed:
            if applied:
                taken = ", ".join(f"{k}={v}" for k, v in applied.items())
            elif gate_open:
                taken = "no action matched"
            else:
                taken = "none (permanent quality already acted)"
            out.history.append(
                {"quality": sq.name, "time": probe_time or now_text, "status": status, "result": result,
                 "action": taken}
            )
        condition: dict[str, Any] = {"name": sq.name, "status": status, "result": result}
        if probe_time:
            condition["lastProbeTime"] = probe_time
        if action_time:
            condition["lastActionTransitionTime"] = action_time
        transition = action_time if parse_time(action_time) > parse_time(probe_time) else probe_time
        if transition:
            condition["lastTransitionTime"] = transition
        out.conditions.append(condition)
    return out


def _matching(sq: ServiceQuality, status: str, result: str) -> list[Any]:
    parsed = _GO_BOOLS.get(status)
    return [a for a in sq.service_quality_action or []
            if parsed is not None and parsed == a.state and not (a.result and a.result != result)]


def _rendered(value: str, result: str, check: Any, where: str, invalid: list[str]) -> str | None:
    """A rendered template value, or None (keep the old value) when Kubernetes would refuse it."""
    text = render_template(value, result)
    if "{{" not in value:
        return text
    problem = check(text)
    if problem:
        invalid.append(f"an invalid {where}: {problem}")
        return None
    return text


def _annotation_value(text: str) -> str | None:
    return "contains a NUL byte" if "\x00" in text else None


def _apply(
    action: Any, result: str, spec_view: dict[str, Any], out: ServiceQualityOutcome, invalid: list[str]
) -> dict[str, Any]:
    """Apply one matching action; returns what it set (for the history).

    Rendered values are held to the rules typed ones meet at apply (opsState and labels are label values), as
    upstream does for priorities: an invalid rendering keeps the old value and is reported in `invalid`.
    """
    applied: dict[str, Any] = {}
    for key, value in (
        ("deletionPriority", action.deletion_priority),
        ("updatePriority", action.update_priority),
    ):
        if value is None:
            continue
        new = _priority(value, result, key, spec_view.get(key), out.events)
        if new is not None:
            spec_view[key] = out.spec[key] = applied[key] = new
    if action.ops_state:
        ops = _rendered(action.ops_state, result, ops_state_value, "opsState", invalid)
        if ops is not None:
            spec_view["opsState"] = out.spec["opsState"] = applied["opsState"] = ops
    if action.network_disabled is not None:
        spec_view["networkDisabled"] = out.spec["networkDisabled"] = applied["networkDisabled"] = (
            action.network_disabled
        )
    for key, value in (action.labels or {}).items():
        text = _rendered(value, result, label_value, f"labels[{key}]", invalid)
        if text is not None:
            out.labels[key] = applied[f"labels[{key}]"] = text
    for key, value in (action.annotations or {}).items():
        text = _rendered(value, result, _annotation_value, f"annotations[{key}]", invalid)
        if text is not None:
            out.annotations[key] = applied[f"annotations[{key}]"] = text
    return applied


# --- the probe worker (kruise-daemon / kubelet semantics) ----------------------------------------------------


def probe_message(exit_code: int, stdout: bytes, stderr: bytes) -> str:
    """The message a probe reports, capped at 1024 bytes.

    Upstream reports stderr when the command fails, so `echo busy; exit 1` loses "busy" (OKG #297). Here a
    failed probe keeps its stdout and falls back to stderr only when stdout is empty.
    """
    raw = stdout if exit_code == 0 or stdout else stderr
    return raw[:MAX_MESSAGE_BYTES].decode("utf-8", errors="ignore")


@dataclass(slots=True)  # one per (game server, quality): no instance dict
class ProbeWorker:
    """Consecutive-result thresholds for one (game server, quality), as kubelet's probe worker counts them."""

    success_threshold: int
    failure_threshold: int
    last_success: bool | None = None
    run: int = 0
    reported: tuple[bool, str] | None = None

    def observe(self, success: bool, message: str) -> tuple[bool, str] | None:
        """Feed one probe outcome; returns (success, message) when it should be reported, else None.

        A result is reported once it has repeated its threshold's number of times in a row; while it keeps
        repeating, changes of message are reported at once (a message is the result actions match on).
        """
        if success == self.last_success:
            self.run += 1
        else:
            self.last_success, self.run = success, 1
        needed = self.success_threshold if success else self.failure_threshold
        if self.run < max(needed, 1):
            return None
        report = (success, message)
        if report == self.reported:
            return None
        self.reported = report
        return report


def probe_condition(
    condition_type: str,
    success: bool,
    message: str,
    existing: Mapping[str, Any] | None,
    now: datetime,
) -> dict[str, Any] | None:
    """The pod condition for a reported probe result, or None when the existing one already says it.

    As kruise-manager: the condition is replaced only when its status or message changed, so lastProbeTime
    is in effect the time of the last change, and nothing is written while the probe keeps saying the same.
    """
    status = "True" if success else "False"
    if existing is not None and existing.get("status") == status and (existing.get("message") or "") == message:
        return None
    stamp = format_time(now)
    changed_status = existing is None or existing.get("status") != status
    return {
        "type": condition_type,
        "status": status,
        "message": message,
        "lastProbeTime": stamp,
        "lastTransitionTime": stamp if changed_status else (existing or {}).get("lastTransitionTime", stamp),
    }
