"""Scale-in choice: the time to pick the game servers to delete among 100,000 candidates.

`core.scaling.compute_to_scale` (what the GameServerSet controller calls on every scale) over 100,000 pod
views with a realistic mix of opsStates (WaitToBeDeleted, None, Allocated, Maintaining, a few Kill) and
deletion priorities, for several numbers of servers to delete. Side by side in the same run:

- reference: the same decision computed as before (sort every candidate by the full deletion key); both must
  give identical plans, which the program checks;
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
from collections.abc import Callable, Iterable
from pathlib import Path

from bench.common import Table, median, ratio
from gamekeeper.api.models import GS_DELETE_PRIORITY_KEY, GS_OPS_STATE_KEY, LIFECYCLE_STATE_KEY
from gamekeeper.core.scaling import PodView, ScalePlan, compute_to_scale, deletion_order


def reference_compute_to_scale(
    new_explicit: set[int], old_explicit: set[int], implicit: set[int], expected: int, pods: Iterable[PodView],
) -> ScalePlan:
    """compute_to_scale as it was before the fast path (commit ea780f8), kept here as the reference."""
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
    return ScalePlan(frozenset(manage), frozenset(new_implicit | new_explicit), tuple(to_delete), tuple(to_create))


def floor_pass(pods: list[PodView]) -> int:
    seen = 0
    for pod in pods:
        if pod.terminating:
            continue
        labels = pod.labels
        seen += len(pod.name) + len(labels.get(GS_OPS_STATE_KEY, "")) + len(labels.get(GS_DELETE_PRIORITY_KEY, ""))
        if labels.get(LIFECYCLE_STATE_KEY) == "PreparingDelete":
            seen += 1
    return seen


def fleet(count: int, seed: int = 1) -> list[PodView]:
    rng = random.Random(seed)
    states = ["None"] * 50 + ["WaitToBeDeleted"] * 25 + ["Allocated"] * 20 + ["Maintaining"] * 4 + ["Kill"]
    pods = []
    for ordinal in rng.sample(range(count), count):  # listed in no particular order
        labels = {"game.kruise.io/owner-gss": "big", "controller-revision-hash": "7d9f8c6b5",
                  GS_OPS_STATE_KEY: rng.choice(states)}
        if rng.random() < 0.3:
            labels[GS_DELETE_PRIORITY_KEY] = str(rng.randint(0, 20))
        pods.append(PodView(name=f"big-{ordinal}", labels=labels))
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
    pods = fleet(n)
    table = Table(
        "scale_in",
        f"Scale-in choice among {n:,} candidates (compute_to_scale; best of {args.repeat}, CPU ms)",
        ["to delete", "ms", "median ms", "wall ms", "reference ms", "speed-up", "floor ms", "vs floor"],
        params={"candidates": n, "repeat": args.repeat},
    )
    floor = best(lambda: floor_pass(pods), args.repeat)
    for delete in (1, 100, 1_000, 10_000, n // 2):
        if delete >= n:
            continue
        ours = compute_to_scale(set(), set(), set(), n - delete, pods)
        reference = reference_compute_to_scale(set(), set(), set(), n - delete, pods)
        if ours != reference:
            raise SystemExit(f"plans differ when deleting {delete}: the fast path is wrong")
        keep = n - delete
        fast = best(functools.partial(compute_to_scale, set(), set(), set(), keep, pods), args.repeat)
        slow = best(functools.partial(reference_compute_to_scale, set(), set(), set(), keep, pods),
                    max(3, args.repeat // 3))
        table.add(delete, fast[0] * 1e3, fast[1] * 1e3, fast[2] * 1e3, slow[0] * 1e3, ratio(slow[0], fast[0]),
                  floor[0] * 1e3, ratio(fast[0], floor[0]))
    table.notes.append("reference: the previous implementation (sort all candidates by the full key); plans "
                       "checked identical")
    table.notes.append("floor: one pass reading each candidate's name and labels, nothing decided")
    table.emit(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
