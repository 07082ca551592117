"""KEDA + HorizontalPodAutoscaler, reduced to what a ScaledObject with one external trigger does.

KEDA turns the trigger's metric into an HPA (`AverageValue`, target 1, so the HPA's raw answer is the metric
itself), scales to zero and back itself (`minReplicaCount: 0`, `cooldownPeriod`), and leaves the rest to the
HPA's `behavior`: stabilization windows (scale-down takes the highest recommendation of the window, scale-up the
lowest) and rate policies (`Pods` / `Percent` per `periodSeconds`, chosen by `selectPolicy`), as in Kubernetes'
`pkg/controller/podautoscaler/horizontal.go`. Not copied: the HPA's 10% tolerance, which would ignore e.g. the
removal of 1 WaitToBeDeleted server out of 20 (the scaler's answer is exact, so it is applied exactly).

Time is seconds (any epoch), passed in; the state (recent recommendations and scale events) is the caller's.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

POLICY_TYPES = ("Pods", "Percent")
SELECT_POLICIES = ("Max", "Min", "Disabled")
DEFAULT_POLLING_INTERVAL = 30
DEFAULT_COOLDOWN_PERIOD = 300
DEFAULT_MIN_REPLICAS = 0
DEFAULT_MAX_REPLICAS = 100


@dataclass(frozen=True)
class Policy:
    type: str  # Pods or Percent
    value: int
    period_seconds: int


@dataclass(frozen=True)
class Rules:
    stabilization_window_seconds: int
    select_policy: str
    policies: tuple[Policy, ...]


DEFAULT_SCALE_UP = Rules(0, "Max", (Policy("Percent", 100, 15), Policy("Pods", 4, 15)))
DEFAULT_SCALE_DOWN = Rules(300, "Max", (Policy("Percent", 100, 15),))


@dataclass(frozen=True)
class Behavior:
    scale_up: Rules = DEFAULT_SCALE_UP
    scale_down: Rules = DEFAULT_SCALE_DOWN


def _rules(spec: Mapping[str, Any] | None, default: Rules) -> Rules:
    # As Kubernetes' defaulting: each field left out takes the default of its direction.
    if not spec:
        return default
    policies = tuple(Policy(str(p["type"]), int(p["value"]), int(p["periodSeconds"]))
                     for p in spec.get("policies") or [])
    return Rules(
        int(spec.get("stabilizationWindowSeconds", default.stabilization_window_seconds)),
        str(spec.get("selectPolicy", default.select_policy)),
        policies or default.policies,
    )


def behavior_from_spec(spec: Mapping[str, Any] | None) -> Behavior:
    """`advanced.horizontalPodAutoscalerConfig.behavior` (already validated) to rules with defaults filled in."""
    spec = spec or {}
    return Behavior(_rules(spec.get("scaleUp"), DEFAULT_SCALE_UP), _rules(spec.get("scaleDown"), DEFAULT_SCALE_DOWN))


@dataclass
class HpaState:
    """What the HPA controller remembers per autoscaler (in memory there; hpa_record / hpa_restore keep it here)."""

    recommendations: list[tuple[float, int]] = field(default_factory=list)
    scale_up_events: list[tuple[float, int]] = field(default_factory=list)
    scale_down_events: list[tuple[float, int]] = field(default_factory=list)


def hpa_record(state: HpaState) -> dict[str, Any]:
    """The state in a form that changes only when a decision could: for status.gamekeeper.hpa (minimal writes).

    Every poll adds a recommendation, but stabilization reads only the latest time of each run of equal ones;
    so a run is kept as `[its last time, value]` once another value has followed it, and the run still going on
    as its value alone (`recommending`): a poll repeating it changes nothing that is written."""
    runs: list[list[float | int]] = []
    for at, value in state.recommendations:
        if runs and runs[-1][1] == value:
            runs[-1][0] = at
        else:
            runs.append([at, value])
    record: dict[str, Any] = {"recommendations": runs[:-1]}
    if runs:
        record["recommending"] = runs[-1][1]
    if state.scale_up_events:
        record["scaleUpEvents"] = [list(e) for e in state.scale_up_events]
    if state.scale_down_events:
        record["scaleDownEvents"] = [list(e) for e in state.scale_down_events]
    return record


def hpa_restore(record: Mapping[str, Any] | None, now: float) -> HpaState:
    """The state from hpa_record's form, read at a restart at `now`; a malformed record is an empty state.

    The run still going on when the record was written counts as recommended until `now`: when the controller
    stopped is not known, and counting it longer only holds a scale-down (or up) back, never hurries one."""
    if not isinstance(record, Mapping):
        return HpaState()
    try:
        def pairs(key: str) -> list[tuple[float, int]]:
            return [(float(at), int(value)) for at, value in record.get(key) or []]

        recommendations = pairs("recommendations")
        if isinstance(record.get("recommending"), int):
            recommendations.append((now, int(record["recommending"])))
        return HpaState(recommendations, pairs("scaleUpEvents"), pairs("scaleDownEvents"))
    except (TypeError, ValueError):
        return HpaState()


def _changed_in_period(events: list[tuple[float, int]], now: float, period: int) -> int:
    return sum(change for at, change in events if at > now - period)


def _scale_up_limit(current: int, state: HpaState, rules: Rules, now: float) -> int:
    if rules.select_policy == "Disabled":
        return current
    pick = max if rules.select_policy == "Max" else min
    result: int | None = None
    for p in rules.policies:
        start = (current - _changed_in_period(state.scale_up_events, now, p.period_seconds)
                 + _changed_in_period(state.scale_down_events, now, p.period_seconds))
        proposed = start + p.value if p.type == "Pods" else math.ceil(start * (1 + p.value / 100))
        result = proposed if result is None else pick(result, proposed)
    return current if result is None else result


def _scale_down_limit(current: int, state: HpaState, rules: Rules, now: float) -> int:
    if rules.select_policy == "Disabled":
        return current
    # "Max" means the policy allowing the biggest change, i.e. the lowest limit.
    pick = min if rules.select_policy == "Max" else max
    result: int | None = None
    for p in rules.policies:
        start = (current - _changed_in_period(state.scale_up_events, now, p.period_seconds)
                 + _changed_in_period(state.scale_down_events, now, p.period_seconds))
        proposed = start - p.value if p.type == "Pods" else int(start * (1 - p.value / 100))
        result = proposed if result is None else pick(result, proposed)
    return current if result is None else result


def _stabilize(recommended: int, current: int, state: HpaState, behavior: Behavior, now: float) -> int:
    up, down = recommended, recommended
    up_cutoff = now - behavior.scale_up.stabilization_window_seconds
    down_cutoff = now - behavior.scale_down.stabilization_window_seconds
    for at, value in state.recommendations:
        if at > up_cutoff:
            up = min(up, value)
        if at > down_cutoff:
            down = max(down, value)
    keep = max(behavior.scale_up.stabilization_window_seconds, behavior.scale_down.stabilization_window_seconds)
    state.recommendations = [(at, v) for at, v in state.recommendations if at > now - keep]
    state.recommendations.append((now, recommended))
    result = current
    if result < up:
        result = up
    if result > down:
        result = down
    return result


def hpa_desired(
    now: float, current: int, recommended: int, min_replicas: int, max_replicas: int, behavior: Behavior,
    state: HpaState,
) -> tuple[int, str]:
    """One HPA decision: (replicas, why). Records the scale event in `state` when the answer differs."""
    if current > max_replicas:
        desired, why = max_replicas, f"current replicas above maxReplicaCount {max_replicas}"
    elif current < min_replicas:
        desired, why = min_replicas, f"current replicas below minReplicaCount {min_replicas}"
    else:
        stabilized = _stabilize(recommended, current, state, behavior, now)
        desired, why = stabilized, "scaler's answer"
        if stabilized != recommended:
            why = f"held at {stabilized} by the stabilization window (scaler says {recommended})"
        if desired > current:
            limit = max(current, _scale_up_limit(current, state, behavior.scale_up, now))
            top = min(max_replicas, limit)
            if desired > top:
                why = (f"limited by scaleUp policies to {top}" if limit < max_replicas
                       else f"capped at maxReplicaCount {max_replicas}")
                desired = top
        elif desired < current:
            limit = min(current, _scale_down_limit(current, state, behavior.scale_down, now))
            bottom = max(min_replicas, limit)
            if desired < bottom:
                why = (f"limited by scaleDown policies to {bottom}" if limit > min_replicas
                       else f"floored at minReplicaCount {min_replicas}")
                desired = bottom
    if desired > current:
        state.scale_up_events.append((now, desired - current))
    elif desired < current:
        state.scale_down_events.append((now, current - desired))
    longest = max([p.period_seconds for p in behavior.scale_up.policies + behavior.scale_down.policies] or [0])
    state.scale_up_events = [e for e in state.scale_up_events if e[0] > now - longest]
    state.scale_down_events = [e for e in state.scale_down_events if e[0] > now - longest]
    return desired, why


@dataclass(frozen=True)
class KedaSpec:
    min_replicas: int = DEFAULT_MIN_REPLICAS
    max_replicas: int = DEFAULT_MAX_REPLICAS
    cooldown_period: int = DEFAULT_COOLDOWN_PERIOD
    behavior: Behavior = field(default_factory=Behavior)


def keda_desired(
    now: float, current: int, metric: int, active: bool, last_active: float, spec: KedaSpec, state: HpaState,
) -> tuple[int, str]:
    """KEDA's part (to and from zero) and then the HPA's, for one poll; `metric` is the scaler's gssReplicas."""
    if current == 0:
        if active:
            return max(spec.min_replicas, 1), "scaler is active: scaling from zero"
        return 0, "scaler is not active"
    if not active and spec.min_replicas == 0 and now - last_active >= spec.cooldown_period:
        return 0, f"scaler not active for cooldownPeriod {spec.cooldown_period}s"
    # The HPA under KEDA never goes below 1: zero is KEDA's decision alone.
    recommended = max(0, math.ceil(metric / 1))
    return hpa_desired(now, current, recommended, max(spec.min_replicas, 1), spec.max_replicas, spec.behavior,
                       state)
