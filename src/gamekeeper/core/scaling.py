"""Which game servers a GameServerSet keeps, adds and removes (spec §3).

Inputs are plain values (pod names, labels, flags), outputs are sets of ordinals: the controllers do the I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from gamekeeper.api.models import GS_DELETE_PRIORITY_KEY, GS_OPS_STATE_KEY, LIFECYCLE_STATE_KEY
from gamekeeper.core.ordinals import atoi_or_zero, index_from_name

OPS_STATE_RANK = {"Kill": 100, "WaitToBeDeleted": 1, "None": 0, "Allocated": -1, "Maintaining": -2}


@dataclass(frozen=True)
class PodView:
    """What scaling needs to know about one pod."""

    name: str
    labels: Mapping[str, str] = field(default_factory=dict)
    terminating: bool = False

    @property
    def ordinal(self) -> int:
        return index_from_name(self.name)

    @property
    def ops_state(self) -> str:
        return self.labels.get(GS_OPS_STATE_KEY, "")


def deletion_key(pod: PodView) -> tuple[int, int, int, str]:
    """Sort key, ascending = deleted first.

    opsState rank, then deletionPriority, then ordinal, all descending. Upstream compares priorities only when
    the label *strings* differ and leaves "01" vs "1" to an unstable sort; here equal numbers fall through to
    the ordinal, so the order is always fully determined (documented in docs/semantics.md).
    """
    rank = OPS_STATE_RANK.get(pod.ops_state, 0)
    priority = atoi_or_zero(pod.labels.get(GS_DELETE_PRIORITY_KEY, ""))
    return (-rank, -priority, -pod.ordinal, pod.name)


def deletion_order(pods: Iterable[PodView]) -> list[PodView]:
    return sorted(pods, key=deletion_key)


def replicas_after_killing(
    gss_replicas: int, workload_replicas: int, pods: Sequence[PodView]
) -> int:
    """Kill is a user-initiated scale-in of exactly those servers (spec §3.2)."""
    if gss_replicas != workload_replicas or gss_replicas != len(pods) or any(p.terminating for p in pods):
        return gss_replicas
    return gss_replicas - sum(1 for p in pods if p.ops_state == "Kill")


@dataclass(frozen=True)
class ScalePlan:
    manage: frozenset[int]
    reserved: frozenset[int]
    to_delete: tuple[int, ...]
    to_create: tuple[int, ...]


def compute_to_scale(
    new_explicit: set[int],
    old_explicit: set[int],
    implicit: set[int],
    expected: int,
    pods: Iterable[PodView],
) -> ScalePlan:
    """Upstream computeToScaleGs (spec §3.5).

    Returns the ordinals to manage, the new reserved set (implicit holes plus explicit reserves), and for
    convenience the ordinals removed and added by this step, in the order they were chosen.
    """
    add_explicit = new_explicit - old_explicit
    del_explicit = old_explicit - new_explicit
    new_implicit = (implicit - add_explicit) | del_explicit

    manage: set[int] = set()
    candidates: list[PodView] = []
    pre_deleting: set[int] = set()
    for pod in pods:
        ordinal = pod.ordinal
        if pod.terminating:
            continue
        if pod.labels.get(LIFECYCLE_STATE_KEY) == "PreparingDelete":
            pre_deleting.add(ordinal)
            continue
        if ordinal in new_explicit:
            continue
        manage.add(ordinal)
        candidates.append(pod)

    exist = len(manage)
    to_delete: list[int] = []
    to_create: list[int] = []
    if exist < expected:
        i = 0
        while len(to_create) < expected - exist:
            if i not in manage and i not in new_explicit and i not in pre_deleting:
                new_implicit.discard(i)
                manage.add(i)
                to_create.append(i)
            i += 1
    elif exist > expected:
        for pod in deletion_order(candidates)[: exist - expected]:
            manage.discard(pod.ordinal)
            new_implicit.add(pod.ordinal)
            to_delete.append(pod.ordinal)
    return ScalePlan(
        manage=frozenset(manage),
        reserved=frozenset(new_implicit | new_explicit),
        to_delete=tuple(to_delete),
        to_create=tuple(to_create),
    )


def managed_ordinals(replicas: int, reserved: Iterable[int]) -> list[int]:
    """What a StatefulSet with reserveOrdinals keeps: the first `replicas` ordinals that are not reserved."""
    skip = set(reserved)
    out: list[int] = []
    i = 0
    while len(out) < replicas:
        if i not in skip:
            out.append(i)
        i += 1
    return out
