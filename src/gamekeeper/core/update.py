"""Rolling updates of a GameServerSet's pods (spec §5), as pure functions: the workload controller does the I/O.

Upstream the GameServerSet's Advanced StatefulSet (Kruise) performs the update. What is reproduced here, from
Kruise's `stateful_set_control.go` / `stateful_update_utils.go` / `updatesort/priority_sort.go`:

- A pod's revision is its `controller-revision-hash` label: the name of the revision of the pod *template*
  (not of the update strategy) it was made from, so pausing or changing the partition never rolls a pod.
- Order (`sort_pods_to_update`): pods already on the update revision (or terminating) first, then the rest by
  `game.kruise.io/gs-update-priority`: a pod without the label first, then the larger integer parsed from the
  label's trailing digits, then the higher ordinal (Kruise's comparator falls back to the index, so the order is
  fully determined). Only the first `replicas - partition` of that list may be updated. Without
  `rollingUpdate` OKG sets no priority order, and Kruise updates by descending ordinal.
- `maxUnavailable`: an int, or a percentage of `replicas` rounded down; at least 1; default 1. A pod that is
  missing, terminating, not Ready, or in the middle of an in-place update is unavailable. Walking the order, an
  available pod is only taken while fewer than `maxUnavailable` pods are unavailable; the first pod that cannot
  be taken ends the walk, so a lower-priority pod never overtakes it.
- `paused` stops new updates; `type: OnDelete` never updates on its own.
- `podUpdatePolicy`: `ReCreate` (the default) deletes the pod; `InPlaceIfPossible` updates in place when only
  container images and template labels/annotations changed between the two revisions, else recreates;
  `InPlaceOnly` refuses a pod it cannot update in place and goes no further (Kruise returns an error there).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from gamekeeper.api.models import GS_UPDATE_PRIORITY_KEY, LIFECYCLE_STATE_KEY
from gamekeeper.api.times import format_time, parse_time

UPDATING_CONTAINERS_KEY = "game.kruise.io/gs-updating-containers"
# Kruise keeps its bookkeeping in `apps.kruise.io/inplace-update-state`; ours has a different shape, so it has a
# different key rather than pretending to be readable by Kruise tools.
INPLACE_STATE_KEY = "gamekeeper.io/inplace-update-state"

LIFECYCLE_NORMAL = "Normal"
LIFECYCLE_PREPARING_UPDATE = "PreparingUpdate"
LIFECYCLE_UPDATING = "Updating"
IN_PLACE_STATES = frozenset({LIFECYCLE_PREPARING_UPDATE, LIFECYCLE_UPDATING})

RECREATE = "ReCreate"
IN_PLACE_IF_POSSIBLE = "InPlaceIfPossible"
IN_PLACE_ONLY = "InPlaceOnly"

REVISION_HISTORY_LIMIT = 10  # StatefulSet's default revisionHistoryLimit
GO_INT64_MAX = 2**63 - 1


# --- revisions -------------------------------------------------------------------------------------------------


def revision_hash(template: Mapping[str, Any]) -> str:
    data = json.dumps(template, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(data.encode()).hexdigest()[:10]


def revision_name(workload: str, template: Mapping[str, Any]) -> str:
    """`<set>-<hash>`: the form of a ControllerRevision name, which is what Kruise puts in the pod label."""
    return f"{workload}-{revision_hash(template)}"


# --- the strategy ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class UpdateStrategy:
    """The workload's `updateStrategy` after Kruise's defaulting."""

    type: str = "RollingUpdate"
    prioritized: bool = False  # rollingUpdate was given: OKG then orders by gs-update-priority (unordered update)
    partition: int = 0
    max_unavailable: int | str = 1
    pod_update_policy: str = RECREATE
    paused: bool = False
    min_ready_seconds: int = 0

    @property
    def in_place(self) -> bool:
        return self.pod_update_policy in (IN_PLACE_IF_POSSIBLE, IN_PLACE_ONLY)


def parse_update_strategy(raw: Mapping[str, Any] | None) -> UpdateStrategy:
    raw = raw or {}
    rolling = raw.get("rollingUpdate")
    if rolling is None:
        # No rollingUpdate: OKG copies only the type, Kruise defaults the rest and orders by ordinal.
        return UpdateStrategy(type=raw.get("type") or "RollingUpdate")
    max_unavailable = rolling.get("maxUnavailable")
    return UpdateStrategy(
        type="RollingUpdate",  # OKG forces RollingUpdate whenever rollingUpdate is set
        prioritized=True,
        partition=max(0, int(rolling.get("partition") or 0)),
        max_unavailable=1 if max_unavailable is None else max_unavailable,
        pod_update_policy=rolling.get("podUpdatePolicy") or RECREATE,
        paused=bool(rolling.get("paused")),
        min_ready_seconds=max(0, int(rolling.get("minReadySeconds") or 0)),
    )


def resolve_max_unavailable(value: int | str, replicas: int) -> int:
    """Go GetValueFromIntOrPercent(value, replicas, roundUp=false), then at least 1. ValueError if malformed."""
    if isinstance(value, bool):
        raise ValueError(f"invalid maxUnavailable {value!r}")
    if isinstance(value, int):
        number = value
    else:
        if not value.endswith("%"):
            raise ValueError(f"invalid maxUnavailable {value!r}: a string must be a percentage such as \"25%\"")
        text = value[:-1]
        body = text[1:] if text[:1] in "+-" else text
        if not body.isascii() or not body.isdigit():
            raise ValueError(f"invalid maxUnavailable {value!r}")
        number = math.floor(int(text) * replicas / 100)
    return max(1, number)


# --- ordering --------------------------------------------------------------------------------------------------


def int_from_string_suffix(value: str) -> int:
    """Kruise getIntFromStringSuffix: the trailing decimal digits ("-5" gives 5, "v2" 2, "abc" 0)."""
    start = len(value)
    while start > 0 and value[start - 1].isascii() and value[start - 1].isdigit():
        start -= 1
    if start == len(value):
        return 0
    number = int(value[start:])
    return number if number <= GO_INT64_MAX else 0  # strconv.ParseInt fails on overflow, and that gives 0


def priority_key(labels: Mapping[str, str] | None) -> tuple[int, int]:
    """(level, order) as Kruise's orderPriority gives it: no label is level -1 and sorts first."""
    value = (labels or {}).get(GS_UPDATE_PRIORITY_KEY)
    if value is None:
        return (-1, 0)
    return (0, int_from_string_suffix(value))


@dataclass(frozen=True)
class PodView:
    """What the update decision needs to know about one pod of the set."""

    name: str
    ordinal: int
    revision: str
    available: bool = True
    terminating: bool = False
    priority: tuple[int, int] = (-1, 0)
    in_place_possible: bool = False


def sort_pods_to_update(
    pods: Sequence[PodView], update_revision: str, replicas: int, strategy: UpdateStrategy
) -> list[PodView]:
    """Kruise sortPodsToUpdate: the pods that may be on the update revision, in the order to update them."""
    max_update = replicas - strategy.partition
    if max_update <= 0:
        return []
    by_ordinal = sorted(pods, key=lambda p: p.ordinal, reverse=True)
    if not strategy.prioritized:
        return [p for p in by_ordinal if p.ordinal >= strategy.partition][:max_update]
    done = [p for p in by_ordinal if p.terminating or p.revision == update_revision]
    waiting = [p for p in by_ordinal if not (p.terminating or p.revision == update_revision)]
    waiting.sort(key=lambda p: (p.priority[0], -p.priority[1], -p.ordinal))
    return (done + waiting)[:max_update]


# --- the decision ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PodUpdate:
    pod: PodView
    in_place: bool


@dataclass(frozen=True)
class RolloutPlan:
    updates: tuple[PodUpdate, ...] = ()
    refused: PodView | None = None  # InPlaceOnly, and this pod cannot be updated in place
    max_unavailable: int = 1
    unavailable: frozenset[str] = frozenset()
    note: str = ""  # why nothing (more) is updated now, for the log


def plan_rolling_update(
    pods: Sequence[PodView], update_revision: str, replicas: int, strategy: UpdateStrategy
) -> RolloutPlan:
    """Which pods to update now, and how (Kruise rollingUpdateStatefulsetPods). ValueError: bad maxUnavailable."""
    if strategy.type == "OnDelete":
        return RolloutPlan(note="updateStrategy OnDelete: pods change only when deleted")
    if strategy.paused:
        return RolloutPlan(note="paused")
    limit = resolve_max_unavailable(strategy.max_unavailable, replicas)
    unavailable = {p.name for p in pods if p.terminating or not p.available}
    updates: list[PodUpdate] = []
    refused: PodView | None = None
    note = ""
    for pod in sort_pods_to_update(pods, update_revision, replicas, strategy):
        if pod.revision == update_revision or pod.terminating:
            continue
        if len(unavailable) >= limit and pod.name not in unavailable:
            note = f"{len(unavailable)} unavailable, maxUnavailable {limit}: waiting before {pod.name}"
            break
        if strategy.in_place and pod.in_place_possible:
            updates.append(PodUpdate(pod, in_place=True))
        elif strategy.pod_update_policy == IN_PLACE_ONLY:
            refused = pod
            note = f"InPlaceOnly: {pod.name} cannot be updated in place"
            break
        else:
            updates.append(PodUpdate(pod, in_place=False))
        unavailable.add(pod.name)
    return RolloutPlan(tuple(updates), refused, limit, frozenset(unavailable), note)


def is_current_revision_needed(
    strategy: UpdateStrategy, update_revision: str, ordinal: int, pods: Iterable[PodView]
) -> bool:
    """Kruise isCurrentRevisionNeeded: is a pod (re)created on `ordinal` made from the old revision?

    With a partition, a re-created pod stays on the current (old) revision while fewer than `partition` of the
    other pods are on an old revision, so a partitioned rollout keeps its old pods even when one is deleted.
    """
    if strategy.type != "RollingUpdate" or not strategy.prioritized:
        return False  # the ordered default has partition 0
    old = sum(1 for p in pods if p.ordinal != ordinal and p.revision != update_revision)
    return old < strategy.partition


# --- what changed between two revisions ------------------------------------------------------------------------


@dataclass(frozen=True)
class TemplateDiff:
    images: Mapping[str, str] = field(default_factory=dict)  # container -> new image, for the changed ones
    labels: Mapping[str, str | None] = field(default_factory=dict)  # None: removed
    annotations: Mapping[str, str | None] = field(default_factory=dict)
    other: tuple[str, ...] = ()  # fields that cannot change in place, e.g. "spec.containers[main].command"

    @property
    def in_place_possible(self) -> bool:
        return not self.other


def _map_diff(old: Mapping[str, str] | None, new: Mapping[str, str] | None) -> dict[str, str | None]:
    old, new = old or {}, new or {}
    out: dict[str, str | None] = {k: v for k, v in new.items() if old.get(k) != v}
    out.update({k: None for k in old if k not in new})
    return out


def template_diff(old: Mapping[str, Any], new: Mapping[str, Any]) -> TemplateDiff:
    """Compare two pod templates as Kruise's in-place check does: only images and metadata may change in place."""
    old_spec, new_spec = old.get("spec") or {}, new.get("spec") or {}
    other: list[str] = []
    for key in sorted(set(old_spec) | set(new_spec)):
        if key != "containers" and old_spec.get(key) != new_spec.get(key):
            other.append(f"spec.{key}")
    images: dict[str, str] = {}
    old_containers = old_spec.get("containers") or []
    new_containers = new_spec.get("containers") or []
    if [c.get("name") for c in old_containers] != [c.get("name") for c in new_containers]:
        other.append("spec.containers (added, removed, renamed or reordered)")
    else:
        for before, after in zip(old_containers, new_containers, strict=True):
            for key in sorted(set(before) | set(after)):
                if key == "image":
                    if before.get("image") != after.get("image"):
                        images[after["name"]] = after.get("image") or ""
                elif before.get(key) != after.get(key):
                    other.append(f"spec.containers[{after['name']}].{key}")
    old_meta, new_meta = old.get("metadata") or {}, new.get("metadata") or {}
    for key in sorted(set(old_meta) | set(new_meta)):
        if key not in ("labels", "annotations") and old_meta.get(key) != new_meta.get(key):
            other.append(f"metadata.{key}")
    return TemplateDiff(
        images=images,
        labels=_map_diff(old_meta.get("labels"), new_meta.get("labels")),
        annotations=_map_diff(old_meta.get("annotations"), new_meta.get("annotations")),
        other=tuple(other),
    )


# --- per-GameServer container overrides (GameServer.spec.containers) --------------------------------------------


def _overrides(gs_containers: Iterable[Mapping[str, Any]] | None) -> dict[str, Mapping[str, Any]]:
    return {c["name"]: c for c in gs_containers or [] if c.get("name")}


def creation_containers(
    containers: Sequence[Mapping[str, Any]], gs_containers: Iterable[Mapping[str, Any]] | None
) -> list[dict[str, Any]]:
    """Upstream's pod mutating webhook (patchContainers): at creation the GameServer's image wins, and its cpu and
    memory requests/limits are copied onto the container (other resource names are ignored)."""
    overrides = _overrides(gs_containers)
    out = []
    for container in containers:
        c = dict(container)
        gs = overrides.get(c.get("name", ""))
        if gs is not None:
            if gs.get("image") and gs["image"] != c.get("image"):
                c["image"] = gs["image"]
            resources = dict(c.get("resources") or {})
            for kind in ("requests", "limits"):
                given = (gs.get("resources") or {}).get(kind) or {}
                picked = {k: v for k, v in given.items() if k in ("cpu", "memory")}
                if picked:
                    resources[kind] = {**(resources.get(kind) or {}), **picked}
            if resources:
                c["resources"] = resources
        out.append(c)
    return out


def synced_container_images(
    pod_containers: Sequence[Mapping[str, Any]], gs_containers: Iterable[Mapping[str, Any]] | None
) -> list[dict[str, Any]] | None:
    """Upstream syncPodContainers: a GameServer container image that is set and differs is written into the live
    pod (the runtime then restarts just that container). None when nothing differs, so no write is made."""
    overrides = _overrides(gs_containers)
    changed = False
    out = []
    for container in pod_containers:
        c = dict(container)
        image = (overrides.get(c.get("name", "")) or {}).get("image")
        if image and image != c.get("image"):
            c["image"] = image
            changed = True
        out.append(c)
    return out if changed else None


def in_place_containers(
    pod_containers: Sequence[Mapping[str, Any]],
    images: Mapping[str, str],
    gs_containers: Iterable[Mapping[str, Any]] | None,
) -> tuple[list[dict[str, Any]], list[str]]:
    """The pod's containers after an in-place update to `images`, and the names of those that really change.

    A GameServer image override still wins for its container (as the webhook would at creation), so an update
    of a template image that a server overrides does not restart that server's container at all (upstream would
    set the template image, then syncPodContainers would set the override again: two restarts).
    """
    overrides = _overrides(gs_containers)
    out, changed = [], []
    for container in pod_containers:
        c = dict(container)
        name = c.get("name", "")
        if name in images:
            target = (overrides.get(name) or {}).get("image") or images[name]
            if c.get("image") != target:
                c["image"] = target
                changed.append(name)
        out.append(c)
    return out, changed


# --- in-place progress -----------------------------------------------------------------------------------------


def lifecycle_state(pod: Mapping[str, Any]) -> str:
    return str(((pod.get("metadata") or {}).get("labels") or {}).get(LIFECYCLE_STATE_KEY) or "")


def in_place_state(revision: str, now: datetime, container_ids: Mapping[str, str | None]) -> str:
    """The annotation recording an in-place update: which containers change, and the IDs they had before."""
    return json.dumps(
        {"revision": revision, "updateTimestamp": format_time(now), "lastContainerIDs": dict(container_ids)},
        sort_keys=True,
    )


def in_place_update_completed(pod: Mapping[str, Any]) -> bool:
    """Every container the update changed runs again, as a new container, with the image of the pod spec."""
    annotations = (pod.get("metadata") or {}).get("annotations") or {}
    specs = {c["name"]: c for c in (pod.get("spec") or {}).get("containers") or []}
    try:
        recorded: Mapping[str, str | None] = json.loads(annotations[INPLACE_STATE_KEY])["lastContainerIDs"]
    except (KeyError, TypeError, ValueError):
        recorded = {name: None for name in specs}  # no record: every container must run what the spec says
    statuses = {s.get("name"): s for s in (pod.get("status") or {}).get("containerStatuses") or []}
    for name, old_id in recorded.items():
        status, spec = statuses.get(name), specs.get(name)
        if spec is None:
            continue
        if status is None or "running" not in (status.get("state") or {}):
            return False
        if status.get("image") != spec.get("image"):
            return False
        if old_id is not None and status.get("containerID") == old_id:
            return False
    return True


def pod_ready(pod: Mapping[str, Any]) -> bool:
    """Ready, and not in an in-place update (Kruise's InPlaceUpdateReady readiness gate is False meanwhile)."""
    if lifecycle_state(pod) == LIFECYCLE_UPDATING:
        return False
    return any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in (pod.get("status") or {}).get("conditions") or []
    )


def pod_available(pod: Mapping[str, Any], min_ready_seconds: int, now: datetime) -> tuple[bool, float]:
    """Counts as available for maxUnavailable; else how long until it may be (0 when unknown)."""
    meta = pod.get("metadata") or {}
    if meta.get("deletionTimestamp") or lifecycle_state(pod) in IN_PLACE_STATES or not pod_ready(pod):
        return (False, 0.0)
    if min_ready_seconds <= 0:
        return (True, 0.0)
    ready = next(c for c in (pod.get("status") or {}).get("conditions") or [] if c.get("type") == "Ready")
    waited = (now - parse_time(ready.get("lastTransitionTime"))).total_seconds()
    if waited >= min_ready_seconds:
        return (True, 0.0)
    return (False, min_ready_seconds - waited)


# --- rollout progress (gk rollout status) ----------------------------------------------------------------------


@dataclass(frozen=True)
class RolloutStatus:
    done: bool
    message: str
    replicas: int
    target: int  # pods that should end on the update revision: replicas - partition
    updated: int
    updated_ready: int
    ready: int
    paused: bool


def rollout_status(
    kind_name: str, replicas: int, strategy: UpdateStrategy, status: Mapping[str, Any], observed: bool
) -> RolloutStatus:
    """kubectl rollout status for a StatefulSet, in game-server words. `observed`: the workload's status is about
    the GameServerSet's current spec (the caller compares hashes and generations)."""
    target = max(0, replicas - strategy.partition)
    updated = int(status.get("updatedReplicas") or 0)
    updated_ready = int(status.get("updatedReadyReplicas") or 0)
    ready = int(status.get("readyReplicas") or 0)
    paused = strategy.paused

    def result(done: bool, message: str) -> RolloutStatus:
        return RolloutStatus(done, message, replicas, target, updated, updated_ready, ready, paused)

    suffix = " (paused)" if paused else ""
    if not observed:
        return result(False, f"Waiting for {kind_name} spec update to be observed...")
    if strategy.type == "OnDelete":
        return result(True, f"{kind_name} uses updateStrategy OnDelete: game servers change only when deleted")
    if updated < target:
        return result(False, f"Waiting for rollout to finish: {updated} out of {target} new game servers have "
                             f"been updated...{suffix}")
    if updated_ready < target:
        return result(False, f"Waiting for rollout to finish: {updated_ready} of {target} updated game servers "
                             f"are ready...{suffix}")
    if strategy.partition > 0:
        return result(True, f"partitioned roll out complete: {target} new game servers have been updated "
                            f"({min(strategy.partition, replicas)} left on the old revision by the partition)")
    revision = status.get("updateRevision") or ""
    return result(True, f"{kind_name} rolling update complete {target} game servers at revision {revision}")
