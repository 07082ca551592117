"""KEDA's `ScaledObject` (`keda.sh/v1alpha1`), as far as Gamekeeper runs it: one `external` trigger served by
the built-in OpenKruiseGame scaler, scaling a GameServerSet.

The fields are KEDA's (`apis/keda/v1alpha1/scaledobject_types.go`), so an OpenKruiseGame user's file loads
unchanged. A KEDA field Gamekeeper does not carry out is refused with its path, never ignored. The trigger's
metadata is parsed here as upstream's scaler parses it (Go's `strconv`), so a value the scaler would choke on at
every poll is refused at apply instead.
"""

from __future__ import annotations

import math
import re
import struct
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import Field

from gamekeeper.api.models import API_VERSION, Model, ObjectMeta

KEDA_API_VERSION = "keda.sh/v1alpha1"
MIN_AVAILABLE_KEY = "minAvailable"
MAX_AVAILABLE_KEY = "maxAvailable"
SCALE_DOWN_THRESHOLD_KEY = "scaleDownThreshold"
SCALER_ADDRESS_KEY = "scalerAddress"
METADATA_KEYS = (SCALER_ADDRESS_KEY, MIN_AVAILABLE_KEY, MAX_AVAILABLE_KEY, SCALE_DOWN_THRESHOLD_KEY)
# KEDA's defaults.
DEFAULT_POLLING_INTERVAL = 30
DEFAULT_COOLDOWN_PERIOD = 300
DEFAULT_MIN_REPLICA_COUNT = 0
DEFAULT_MAX_REPLICA_COUNT = 100

# Go's ParseFloat syntax for decimals (hex floats and underscores are rejected here; nobody writes them).
_GO_FLOAT = re.compile(r"^[+-]?(?:(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|[iI][nN][fF](?:[iI][nN][iI][tT][yY])?|"
                       r"[nN][aA][nN])$")
_GO_INT = re.compile(r"^[+-]?\d+$")


class ScalerError(ValueError):
    """A metadata value upstream refuses (GetMetrics returns an error: KEDA keeps the current replicas)."""


def parse_go_float32(text: str) -> float:
    """`strconv.ParseFloat(text, 32)`: the nearest float32, widened to float64 exactly as Go returns it."""
    if not _GO_FLOAT.match(text):
        raise ScalerError(f'strconv.ParseFloat: parsing "{text}": invalid syntax')
    value = float(text)
    if math.isinf(value) or math.isnan(value):
        return value
    try:
        return float(struct.unpack("f", struct.pack("f", value))[0])
    except OverflowError:
        raise ScalerError(f'strconv.ParseFloat: parsing "{text}": value out of range') from None


def parse_go_int32(text: str) -> int:
    """`strconv.ParseInt(text, 10, 32)`."""
    if not _GO_INT.match(text):
        raise ScalerError(f'strconv.ParseInt: parsing "{text}": invalid syntax')
    value = int(text)
    if not -(2**31) <= value < 2**31:
        raise ScalerError(f'strconv.ParseInt: parsing "{text}": value out of range')
    return value




def metadata_problems(metadata: Mapping[str, object]) -> list[tuple[str, str]]:
    """(key, problem) for values Gamekeeper refuses at apply; upstream would error at every poll or ignore them."""
    out: list[tuple[str, str]] = []
    for key, value in metadata.items():
        if key not in METADATA_KEYS:
            out.append((key, f"unknown key (known: {', '.join(METADATA_KEYS)})"))
        elif not isinstance(value, str):
            out.append((key, f"expected a string (quote it: {key}: \"{value}\")"))
    if out:
        return out
    text = str(metadata.get(MIN_AVAILABLE_KEY, ""))
    if text:
        try:
            n = parse_go_float32(text)
            if math.isnan(n) or math.isinf(n) or n < 0:
                raise ScalerError("")
        except ScalerError:
            out.append((MIN_AVAILABLE_KEY, f"{text!r} is not a number >= 0; use an integer (e.g. \"2\") or a "
                        "fraction 0<n<1 (e.g. \"0.2\")"))
    text = str(metadata.get(MAX_AVAILABLE_KEY, ""))
    if text:
        try:
            if parse_go_int32(text) < 0:
                raise ScalerError("")
        except ScalerError:
            out.append((MAX_AVAILABLE_KEY, f"{text!r} is not an integer >= 0 (upstream would silently ignore it)"))
    text = str(metadata.get(SCALE_DOWN_THRESHOLD_KEY, ""))
    if text:
        ok = True
        try:
            n = parse_go_float32(text)
            ok = not (math.isnan(n) or math.isinf(n) or n <= 0)
        except ScalerError:
            ok = False
        if not ok:
            out.append((SCALE_DOWN_THRESHOLD_KEY, f"{text!r} is neither an integer >= 1 nor a fraction 0<n<1 "
                        "(upstream would silently ignore it)"))
    return out


# --- the object ---------------------------------------------------------------------------------------------


class ScaleTargetRef(Model):
    api_version: str | None = None
    kind: str | None = None
    name: str = Field(min_length=1)
    env_source_container_name: Any = None


class ScalingPolicy(Model):
    type: str
    value: int
    period_seconds: int


class ScalingRules(Model):
    stabilization_window_seconds: int | None = None
    select_policy: str | None = None
    policies: list[ScalingPolicy] | None = None
    tolerance: Any = None


class Behavior(Model):
    scale_up: ScalingRules | None = None
    scale_down: ScalingRules | None = None


class HorizontalPodAutoscalerConfig(Model):
    name: str | None = None
    behavior: Behavior | None = None


class Advanced(Model):
    horizontal_pod_autoscaler_config: HorizontalPodAutoscalerConfig | None = None
    restore_to_original_replica_count: Any = None
    scaling_modifiers: Any = None


class Trigger(Model):
    type: str
    name: str | None = None
    metadata: dict[str, Any]
    metric_type: str | None = None
    use_cached_metrics: Any = None
    authentication_ref: Any = None


class ScaledObjectSpec(Model):
    scale_target_ref: ScaleTargetRef
    polling_interval: int | None = Field(default=None, ge=1)
    cooldown_period: int | None = Field(default=None, ge=0)
    initial_cooldown_period: Any = None
    idle_replica_count: Any = None
    min_replica_count: int | None = Field(default=None, ge=0)
    max_replica_count: int | None = Field(default=None, ge=0)
    advanced: Advanced | None = None
    triggers: list[Trigger] = Field(min_length=1)
    fallback: Any = None


class ScaledObject(Model):
    api_version: Literal["keda.sh/v1alpha1"]
    kind: Literal["ScaledObject"]
    metadata: ObjectMeta
    spec: ScaledObjectSpec
    # KEDA's fields, and `gamekeeper` (the embedded autoscaler's windows and last branch, control/autoscale.py):
    # the controllers' to write, so not checked here.
    status: dict[str, Any] | None = None


# KEDA fields that are valid there but that Gamekeeper does not carry out: refused, with what to do instead.
_UNSUPPORTED = {
    "spec.scaleTargetRef.envSourceContainerName": "only used by triggers that read container env; remove it",
    "spec.initialCooldownPeriod": "remove it (cooldownPeriod applies from the start)",
    "spec.idleReplicaCount": "remove it; use minReplicaCount",
    "spec.fallback": "remove it: when the built-in scaler cannot read the set it keeps the current replicas",
    "spec.advanced.restoreToOriginalReplicaCount": "remove it; the set keeps its replicas when the "
                                                   "ScaledObject is deleted",
    "spec.advanced.scalingModifiers": "remove it; one external trigger needs no formula",
    "spec.advanced.horizontalPodAutoscalerConfig.behavior.scaleUp.tolerance": "remove it",
    "spec.advanced.horizontalPodAutoscalerConfig.behavior.scaleDown.tolerance": "remove it",
}


def _dig(body: Mapping[str, Any], path: str) -> Any:
    node: Any = body
    for part in path.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def _rules_problems(where: str, rules: Mapping[str, Any]) -> list[str]:
    out = []
    window = rules.get("stabilizationWindowSeconds")
    if window is not None and not 0 <= window <= 3600:
        out.append(f"{where}.stabilizationWindowSeconds: must be from 0 to 3600, got {window}")
    select = rules.get("selectPolicy")
    if select is not None and select not in ("Max", "Min", "Disabled"):
        out.append(f"{where}.selectPolicy: expected one of Max, Min, Disabled, got {select!r}")
    for i, p in enumerate(rules.get("policies") or []):
        if p["type"] not in ("Pods", "Percent"):
            out.append(f"{where}.policies[{i}].type: expected Pods or Percent, got {p['type']!r}")
        if p["value"] <= 0:
            out.append(f"{where}.policies[{i}].value: must be > 0, got {p['value']}")
        if not 0 < p["periodSeconds"] <= 1800:
            out.append(f"{where}.policies[{i}].periodSeconds: must be from 1 to 1800, got {p['periodSeconds']}")
    return out


def scaled_object_problems(body: Mapping[str, Any]) -> list[str]:
    """What is valid KEDA but refused here, each with its field path and the fix."""
    out = [f"{path}: not supported by Gamekeeper's built-in scaler; {fix}"
           for path, fix in _UNSUPPORTED.items() if _dig(body, path) is not None]
    spec = body["spec"]
    ref = spec["scaleTargetRef"]
    kind, api_version = ref.get("kind"), ref.get("apiVersion")
    if kind is None:
        out.append("spec.scaleTargetRef.kind: required: GameServerSet (KEDA would take a Deployment)")
    elif kind != "GameServerSet":
        out.append(f"spec.scaleTargetRef.kind: {kind!r} is not a GameServerSet; Gamekeeper scales GameServerSets "
                   "only")
    if api_version is None and kind == "GameServerSet":
        out.append(f"spec.scaleTargetRef.apiVersion: required: {API_VERSION} (KEDA would take apps/v1)")
    elif api_version is not None and api_version != API_VERSION:
        out.append(f"spec.scaleTargetRef.apiVersion: expected {API_VERSION}, got {api_version!r}")
    name = body["metadata"].get("name")
    if ref.get("name") and name and ref["name"] != name:
        out.append(f"metadata.name: {name!r} must equal spec.scaleTargetRef.name {ref['name']!r} (OpenKruiseGame's "
                   "scaler finds the GameServerSet by the ScaledObject's name)")
    low = spec.get("minReplicaCount", DEFAULT_MIN_REPLICA_COUNT)
    high = spec.get("maxReplicaCount", DEFAULT_MAX_REPLICA_COUNT)
    if low > high:
        which = "" if "maxReplicaCount" in spec else " (the default)"
        out.append(f"spec.minReplicaCount: {low} is greater than spec.maxReplicaCount {high}{which}; lower it or "
                   "raise maxReplicaCount")
    triggers = spec["triggers"]
    if len(triggers) > 1:
        out.append(f"spec.triggers: exactly one trigger (type external) is supported, got {len(triggers)}")
    for i, trigger in enumerate(triggers):
        where = f"spec.triggers[{i}]"
        if trigger["type"] != "external":
            out.append(f"{where}.type: {trigger['type']!r} is not supported (supported: external, served by the "
                       "built-in OpenKruiseGame scaler)")
            continue
        if trigger.get("metricType", "AverageValue") != "AverageValue":
            out.append(f"{where}.metricType: expected AverageValue (the scaler's gssReplicas is a replica count), "
                       f"got {trigger['metricType']!r}")
        if trigger.get("authenticationRef") is not None:
            out.append(f"{where}.authenticationRef: not supported by Gamekeeper's built-in scaler; remove it")
        if trigger.get("useCachedMetrics") is not None:
            out.append(f"{where}.useCachedMetrics: not supported by Gamekeeper's built-in scaler; remove it")
        metadata = trigger["metadata"]
        if not metadata.get(SCALER_ADDRESS_KEY):
            out.append(f"{where}.metadata.scalerAddress: required (e.g. "
                       "kruise-game-external-scaler.kruise-game-system:6000; embedded mode serves it itself)")
        out.extend(f"{where}.metadata.{key}: {problem}" for key, problem in metadata_problems(metadata))
    behavior = _dig(body, "spec.advanced.horizontalPodAutoscalerConfig.behavior") or {}
    for direction in ("scaleUp", "scaleDown"):
        if isinstance(behavior.get(direction), Mapping):
            out.extend(_rules_problems(f"spec.advanced.horizontalPodAutoscalerConfig.behavior.{direction}",
                                       behavior[direction]))
    return out
