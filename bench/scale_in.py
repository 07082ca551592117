"""Scale-in choice: the time to pick the game servers to delete among 100,000 candidates.

`core.scaling.compute_to_scale` (what the GameServerSet controller calls on every scale) over 100,000 pod
views with a realistic mix of opsStates (WaitToBeDeleted, None, Allocated, Maintaining, a few Kill) and
deletion priorities, for several numbers of servers to delete. Side by side in the same run:

- reference: the same decision computed as before (views as a frozen dataclass that parsed the name and
  looked the labels up on every access; every candidate sorted by the full deletion key); both must give
  identical plans, which the program checks;
- "views + choice": what the GameServerSet controller pays from the pods it listed: building the views
  (`control.gameserverset.pod_views`) and choosing; the views now read the fields scale-in needs once, so
  part of the choice's former cost moved there, and this column says what is left of it in all;
- floor: one pass over the candidates reading what the decision needs (name, opsState, priority, lifecycle
  label), the work no implementation can skip.

Times are the best of `--repeat` runs of CPU time of this thread (wall-clock time suffers from other
processes on a shared machine; both are in the JSON).

    python -m bench.scale_in [--candidates 100000] [--repeat 15] [--quick]
"""

from __future__ import annotations

import argparse
import functools
import random
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.common import Table, median, ratio
from gamekeeper.api.models import GS_DELETE_PRIORITY_KEY, GS_OPS_STATE_KEY, LIFECYCLE_STATE_KEY
from gamekeeper.control.gameserverset import pod_views
from gamekeeper.core.ordinals import atoi_or_zero, index_from_name
from gamekeeper.core.scaling import OPS_STATE_RANK, PodView, ScalePlan, compute_to_scale


@dataclass(frozen=True)
class ReferencePodView:
    """core.scaling.PodView as it was before (commit 14a2a53): a frozen dataclass, fields derived on access."""

    name: str
    labels: Mapping[str, str] = field(default_factory=dict)
    terminating: bool = False

    @property
    def ordinal(self) -> int:
        return index_from_name(self.name)

    @property
    def ops_state(self) -> str:
        return self.labels.get(GS_OPS_STATE_KEY, "")


def reference_views(pods: list[dict[str, Any]]) -> list[ReferencePodView]:
    return [ReferencePodView(name=p["metadata"]["name"], labels=p["metadata"].get("labels") or {},
                             terminating=bool(p["metadata"].get("deletionTimestamp"))) for p in pods]


def reference_key(pod: ReferencePodView) -> tuple[int, int, int, str]:
    rank = OPS_STATE_RANK.get(pod.ops_state, 0)
    return (-rank, -atoi_or_zero(pod.labels.get(GS_DELETE_PRIORITY_KEY, "")), -pod.ordinal, pod.name)


def reference_compute_to_scale(
    new_explicit: set[int], old_explicit: set[int], implicit: set[int], expected: int,
    pods: Iterable[ReferencePodView],
) -> ScalePlan:
    """compute_to_scale as it was before the fast path (commit ea780f8), kept here as the reference."""
    add_explicit = new_explicit - old_explicit
    del_explicit = old_explicit - new_explicit
    new_implicit = (implicit - add_explicit) | del_explicit
    manage: set[int] = set()
    candidates: list[ReferencePodView] = []
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
        for pod in sorted(candidates, key=reference_key)[: exist - expected]:
            manage.discard(pod.ordinal)
            new_implicit.add(pod.ordinal)
            to_delete.append(pod.ordinal)
    return ScalePlan(frozenset(manage), frozenset(new_implicit | new_explicit), tuple(to_delete), tuple(to_create))


def floor_pass(pods: list[ReferencePodView]) -> int:
    seen = 0
    for pod in pods:
        if pod.terminating:
            continue
        labels = pod.labels
        seen += len(pod.name) + len(labels.get(GS_OPS_STATE_KEY, "")) + len(labels.get(GS_DELETE_PRIORITY_KEY, ""))
        if labels.get(LIFECYCLE_STATE_KEY) == "PreparingDelete":
            seen += 1
    return seen


def fleet(count: int, seed: int = 1) -> list[dict[str, Any]]:
    """`count` pods as the store lists them (only what scaling reads), in no particular order."""
    rng = random.Random(seed)
    states = ["None"] * 50 + ["WaitToBeDeleted"] * 25 + ["Allocated"] * 20 + ["Maintaining"] * 4 + ["Kill"]
    pods = []
    for ordinal in rng.sample(range(count), count):  # listed in no particular order
        labels = {"game.kruise.io/owner-gss": "big", "controller-revision-hash": "7d9f8c6b5",
                  GS_OPS_STATE_KEY: rng.choice(states)}
        if rng.random() < 0.3:
            labels[GS_DELETE_PRIORITY_KEY] = str(rng.randint(0, 20))
        pods.append({"metadata": {"name": f"big-{ordinal}", "namespace": "default", "labels": labels}})
    return pods


def best(run: Callable[[], object], repeat: int) -> tuple[float, float, float]:
    """(best CPU seconds, median CPU seconds, best wall seconds) over `repeat` runs."""
    cpu, wall = [], []
    for _ in range(repeat):
        w0, c0 = time.perf_counter(), time.thread_time()
        run()
        cpu.append(time.thread_time() - c0)
        wall.append(time.perf_counter() - w0)
    return min(cpu), median(cpu), min(wall)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--candidates", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--quick", action="store_true", help="tiny run (smoke test)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    if args.quick:
        args.candidates, args.repeat = 2_000, 3
    n = args.candidates
    listed = fleet(n)
    pods: list[PodView] = pod_views(listed)
    old_pods = reference_views(listed)
    table = Table(
        "scale_in",
        f"Scale-in choice among {n:,} candidates (compute_to_scale; best of {args.repeat}, CPU ms)",
        ["to delete", "ms", "median ms", "wall ms", "views + choice ms", "reference ms", "reference views + choice",
         "speed-up", "floor ms", "vs floor"],
        params={"candidates": n, "repeat": args.repeat},
    )
    floor = best(lambda: floor_pass(old_pods), args.repeat)
    views = best(lambda: pod_views(listed), args.repeat)
    old_views = best(lambda: reference_views(listed), max(3, args.repeat // 3))
    for delete in (1, 100, 1_000, 10_000, n // 2):
        if delete >= n:
            continue
        ours = compute_to_scale(set(), set(), set(), n - delete, pods)
        reference = reference_compute_to_scale(set(), set(), set(), n - delete, old_pods)
        if ours != reference:
            raise SystemExit(f"plans differ when deleting {delete}: the fast path is wrong")
        keep = n - delete
        fast = best(functools.partial(compute_to_scale, set(), set(), set(), keep, pods), args.repeat)
        slow = best(functools.partial(reference_compute_to_scale, set(), set(), set(), keep, old_pods),
                    max(3, args.repeat // 3))
        table.add(delete, fast[0] * 1e3, fast[1] * 1e3, fast[2] * 1e3, (views[0] + fast[0]) * 1e3, slow[0] * 1e3,
                  (old_views[0] + slow[0]) * 1e3, ratio(slow[0], fast[0]), floor[0] * 1e3, ratio(fast[0], floor[0]))
    table.notes.append("reference: the previous implementation (frozen-dataclass views deriving fields on access; "
                       "sort all candidates by the full key); plans checked identical")
    table.notes.append("views + choice: building the views from the listed pods (best of the runs) plus the choice; "
                       "speed-up compares the choices alone")
    table.notes.append("floor: one pass reading each candidate's name and labels, nothing decided")
    table.emit(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
