"""GameServer ↔ pod synchronisation as pure functions (spec §2.4, §4.2, §4.4).

`gs_to_pod` decides the pod labels and annotations that carry the GameServer's spec (what scale-in reads);
`pod_to_gs` decides the GameServer's spec/metadata changes (service-quality actions) and its status. Both
return only what differs, so an unchanged world costs no write.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from gamekeeper.api.models import (
    API_VERSION,
    GS_DELETE_PRIORITY_KEY,
    GS_NETWORK_DISABLED_KEY,
    GS_OPS_STATE_KEY,
    GS_OPS_STATE_LAST_CHANGED_KEY,
    GS_STATE_KEY,
    GS_STATE_LAST_CHANGED_KEY,
    GS_SYNC_PREFIX,
    GS_TEMPLATE_METADATA_HASH_KEY,
    GS_UPDATE_PRIORITY_KEY,
    OWNER_GSS_KEY,
    ServiceQuality,
)
from gamekeeper.api.times import format_time
from gamekeeper.core.network import game_server_network_status
from gamekeeper.core.service_quality import Event, sync_service_qualities
from gamekeeper.core.state import derive_state, ops_state_change_event, state_change_event

NODE_NAME_KEY = "game.kruise.io/node-name"
HISTORY_LIMIT = 20


def int_or_string_text(value: Any) -> str:
    """Go IntOrString.String(): ints in decimal, strings verbatim, nil as ""."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def template_metadata_hash(labels: Mapping[str, str] | None, annotations: Mapping[str, str] | None) -> str:
    data = json.dumps({"labels": labels or {}, "annotations": annotations or {}}, sort_keys=True)
    return str(int(hashlib.sha256(data.encode()).hexdigest()[:8], 16))


def gss_name_for(pod: Mapping[str, Any] | None, gs: Mapping[str, Any] | None, name: str) -> str:
    for obj in (pod, gs):
        if obj is not None:
            owner = ((obj.get("metadata") or {}).get("labels") or {}).get(OWNER_GSS_KEY)
            if owner:
                return str(owner)
    return name.rsplit("-", 1)[0]


def new_game_server(pod: Mapping[str, Any], gss: Mapping[str, Any]) -> dict[str, Any]:
    """Upstream InitGameServer: defaults, template labels/annotations, owned by the pod under Cascade."""
    template = gss["spec"]["gameServerTemplate"]
    tmeta = template.get("metadata") or {}
    labels = {**(tmeta.get("labels") or {}), OWNER_GSS_KEY: gss["metadata"]["name"]}
    annotations = {
        **(tmeta.get("annotations") or {}),
        GS_TEMPLATE_METADATA_HASH_KEY: template_metadata_hash(tmeta.get("labels"), tmeta.get("annotations")),
    }
    if template.get("reclaimPolicy") == "Delete":
        owner = {
            "apiVersion": API_VERSION, "kind": "GameServerSet", "name": gss["metadata"]["name"],
            "uid": gss["metadata"]["uid"], "controller": True, "blockOwnerDeletion": True,
        }
    else:
        owner = {
            "apiVersion": "v1", "kind": "Pod", "name": pod["metadata"]["name"],
            "uid": pod["metadata"]["uid"], "controller": True, "blockOwnerDeletion": True,
        }
    return {
        "apiVersion": API_VERSION,
        "kind": "GameServer",
        "metadata": {
            "name": pod["metadata"]["name"],
            "namespace": pod["metadata"]["namespace"],
            "labels": labels,
            "annotations": annotations,
            "ownerReferences": [owner],
        },
        "spec": {"opsState": "None", "updatePriority": 0, "deletionPriority": 0, "networkDisabled": False},
    }


@dataclass
class PodSync:
    """Labels/annotations to merge into the pod (None value = remove), and the events it raises."""

    labels: dict[str, str | None] = field(default_factory=dict)
    annotations: dict[str, str | None] = field(default_factory=dict)
    events: list[Event] = field(default_factory=list)

    def patch(self) -> dict[str, Any] | None:
        meta: dict[str, Any] = {}
        if self.labels:
            meta["labels"] = self.labels
        if self.annotations:
            meta["annotations"] = self.annotations
        return {"metadata": meta} if meta else None


def gs_to_pod(gs: Mapping[str, Any], pod: Mapping[str, Any], now: datetime) -> PodSync:
    """Upstream SyncGsToPod: push spec to pod labels, write the derived state, emit change events."""
    out = PodSync()
    spec = gs.get("spec") or {}
    labels = (pod.get("metadata") or {}).get("labels") or {}
    annotations = (pod.get("metadata") or {}).get("annotations") or {}
    stamp = format_time(now)

    for key, value, what in (
        (GS_DELETE_PRIORITY_KEY, int_or_string_text(spec.get("deletionPriority")), "DeletionPriority"),
        (GS_UPDATE_PRIORITY_KEY, int_or_string_text(spec.get("updatePriority")), "UpdatePriority"),
    ):
        old = labels.get(key, "")
        if old != value:
            out.labels[key] = value
            if old:
                out.events.append(Event("Normal", "GsStateChanged", f"{what} turn from {old} to {value} "))

    ops = str(spec.get("opsState") or "")
    old_ops = labels.get(GS_OPS_STATE_KEY, "")
    if old_ops != ops:
        out.labels[GS_OPS_STATE_KEY] = ops
        out.annotations[GS_OPS_STATE_LAST_CHANGED_KEY] = stamp
        change = ops_state_change_event(old_ops, ops)
        if change:
            out.events.append(Event(change[0], "GsStateChanged", change[1]))

    disabled = "true" if spec.get("networkDisabled") else "false"
    old_disabled = labels.get(GS_NETWORK_DISABLED_KEY, "")
    if old_disabled != disabled:
        out.labels[GS_NETWORK_DISABLED_KEY] = disabled
        if old_disabled:
            out.events.append(
                Event("Normal", "GsStateChanged", f"NetworkDisabled turn from {old_disabled} to {disabled} ")
            )

    state = derive_state(pod)
    old_state = labels.get(GS_STATE_KEY, "")
    if old_state != state or GS_STATE_KEY not in labels:
        out.labels[GS_STATE_KEY] = state
        change = state_change_event(old_state, state)
        if change:
            out.annotations[GS_STATE_LAST_CHANGED_KEY] = stamp
            out.events.append(Event(change[0], "GsStateChanged", change[1]))

    gs_meta = gs.get("metadata") or {}
    for source, target, current in (
        (gs_meta.get("labels") or {}, out.labels, labels),
        (gs_meta.get("annotations") or {}, out.annotations, annotations),
    ):
        for key, value in source.items():
            if key.startswith(GS_SYNC_PREFIX) and current.get(key) != value:
                target[key] = value
    return out


@dataclass
class GameServerSync:
    patch: dict[str, Any] | None
    status: dict[str, Any] | None
    events: list[Event]
    acted: list[str]
    # One entry per quality whose probe output changed: quality, time, status, result, action taken.
    decisions: list[dict[str, Any]] = field(default_factory=list)


def _pod_normal(pod: Mapping[str, Any]) -> dict[str, Any]:
    """A simplified PodNormal condition: False with the reasons containers are not running."""
    status = pod.get("status") or {}
    reasons, messages = [], []
    for cs in status.get("containerStatuses") or []:
        st = cs.get("state") or {}
        if "waiting" in st and (st["waiting"] or {}).get("reason"):
            reasons.append(st["waiting"]["reason"])
            messages.append(st["waiting"].get("message", ""))
        elif "terminated" in st and (st["terminated"] or {}).get("reason"):
            reasons.append(f"ContainerTerminated:{st['terminated']['reason']}")
            messages.append(f"{st['terminated'].get('message', '')} ExitCode: {st['terminated'].get('exitCode')}")
    if not reasons:
        return {"type": "PodNormal", "status": "True"}
    return {
        "type": "PodNormal",
        "status": "False",
        "reason": "; ".join(reasons),
        "message": "; ".join(m for m in messages if m.strip()),
    }


def pod_to_gs(
    gs: Mapping[str, Any],
    pod: Mapping[str, Any],
    qualities: Sequence[ServiceQuality],
    template_meta: Mapping[str, Any] | None,
    now: datetime,
    reapply: bool = False,
) -> GameServerSync:
    """Upstream SyncPodToGs: service-quality actions into the GameServer, pod state into its status."""
    spec = gs.get("spec") or {}
    meta = gs.get("metadata") or {}
    labels = dict(meta.get("labels") or {})
    annotations = dict(meta.get("annotations") or {})
    status = gs.get("status") or {}
    pod_status = pod.get("status") or {}
    pod_labels = (pod.get("metadata") or {}).get("labels") or {}

    outcome = sync_service_qualities(
        qualities, pod_status.get("conditions") or [], spec, status.get("serviceQualitiesConditions"), now,
        reapply=reapply,
    )
    spec_patch = {k: v for k, v in outcome.spec.items() if spec.get(k) != v}
    new_labels = {**labels, **outcome.labels}
    new_annotations = {**annotations, **outcome.annotations}

    tmeta = template_meta or {}
    digest = template_metadata_hash(tmeta.get("labels"), tmeta.get("annotations"))
    if new_annotations.get(GS_TEMPLATE_METADATA_HASH_KEY) != digest:
        new_labels.update(tmeta.get("labels") or {})
        new_annotations.update(tmeta.get("annotations") or {})
        new_annotations[GS_TEMPLATE_METADATA_HASH_KEY] = digest
    node = (pod.get("spec") or {}).get("nodeName")
    if node and new_labels.get(NODE_NAME_KEY) != node:
        new_labels[NODE_NAME_KEY] = node

    patch: dict[str, Any] = {}
    if spec_patch:
        patch["spec"] = spec_patch
    label_diff = {k: v for k, v in new_labels.items() if labels.get(k) != v}
    annotation_diff = {k: v for k, v in new_annotations.items() if annotations.get(k) != v}
    if label_diff or annotation_diff:
        patch["metadata"] = {}
        if label_diff:
            patch["metadata"]["labels"] = label_diff
        if annotation_diff:
            patch["metadata"]["annotations"] = annotation_diff

    history = _quality_history(status.get("serviceQualityHistory"), outcome.history, qualities)
    timeline = _ops_timeline(status.get("opsStateHistory"), spec, spec_patch, outcome.acted, now)
    new_status: dict[str, Any] = {
        "desiredState": "Ready",
        "currentState": pod_labels.get(GS_STATE_KEY, ""),
        "deletionPriority": pod_labels.get(GS_DELETE_PRIORITY_KEY, ""),
        "updatePriority": pod_labels.get(GS_UPDATE_PRIORITY_KEY, ""),
        "podStatus": pod_status,
        "serviceQualitiesConditions": outcome.conditions,
        "conditions": _conditions(status.get("conditions") or [], [_pod_normal(pod)], now),
    }
    network = game_server_network_status(status.get("networkStatus"), pod, now)
    if network is not None:
        new_status["networkStatus"] = network
    elif "networkStatus" in status:
        new_status["networkStatus"] = None  # the pod has no network (any more): the merge patch removes it
    if history:
        new_status["serviceQualityHistory"] = history
    if timeline:
        new_status["opsStateHistory"] = timeline
    # status.recovery belongs to the recovery controller (control/recovery.py): not ours to compare or write.
    compare = {k: v for k, v in status.items() if k not in ("lastTransitionTime", "recovery")}
    status_out = None if compare == new_status else {**new_status, "lastTransitionTime": format_time(now)}
    return GameServerSync(patch or None, status_out, outcome.events, outcome.acted, outcome.history)


def _quality_history(
    old: Mapping[str, Any] | None, new: Sequence[Mapping[str, Any]], qualities: Sequence[ServiceQuality]
) -> dict[str, list[dict[str, Any]]]:
    """The last HISTORY_LIMIT observed results of each quality (recorded when the output changes)."""
    names = {sq.name for sq in qualities}
    history = {k: list(v) for k, v in (old or {}).items() if k in names}
    for entry in new:
        item = {k: v for k, v in entry.items() if k != "quality"}
        history[entry["quality"]] = [*history.get(entry["quality"], []), item][-HISTORY_LIMIT:]
    return history


def _ops_timeline(
    old: Sequence[Mapping[str, Any]] | None,
    spec: Mapping[str, Any],
    spec_patch: Mapping[str, Any],
    acted: Sequence[str],
    now: datetime,
) -> list[dict[str, Any]]:
    """Every opsState the GameServer has had (bounded), and what set it: qualities, or a person."""
    timeline = [dict(e) for e in old or []]
    current = spec_patch.get("opsState", spec.get("opsState"))
    last = timeline[-1]["to"] if timeline else None
    if current is None or current == last:
        return timeline
    if "opsState" in spec_patch:
        by = "serviceQuality:" + ",".join(dict.fromkeys(acted))
    else:
        by = "created" if last is None else "manual"
    timeline.append({"time": format_time(now), "from": last or "", "to": current, "by": by})
    return timeline[-HISTORY_LIMIT:]


def _conditions(
    old: Sequence[Mapping[str, Any]], new: Sequence[dict[str, Any]], now: datetime
) -> list[dict[str, Any]]:
    by_type = {c.get("type"): c for c in old}
    out = []
    for cond in new:
        previous = by_type.get(cond["type"])
        same = previous is not None and all(
            previous.get(k) == cond.get(k) for k in ("status", "reason", "message")
        )
        stamp = previous.get("lastTransitionTime") if same and previous else format_time(now)
        out.append({**cond, "lastTransitionTime": stamp})
    return out
