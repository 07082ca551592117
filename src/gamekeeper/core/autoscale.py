"""The external scaler's decision: how many game servers a GameServerSet should have (spec §3.7).

`upstream_desired` is OpenKruiseGame's `GetMetrics` exactly (v1.1, with `scaleDownThreshold`), kept for the
conformance tables and for comparison. `desired_replicas` is what Gamekeeper serves and acts on: the same rules
with two deliberate changes, documented in docs/autoscaling.md:

- **Servers on their way count as None (OKG #302).** Upstream counts only pods labelled None, so while a
  scale-up's pods are being created every poll asks for them again, and replicas climb. Here pods not created
  yet (spec.replicas above the pods) and pods without an opsState label yet count as the None they will be.
- **WaitToBeDeleted removal takes turns (OKG #302).** Upstream checks `minAvailable` first and returns early,
  so while fewer than `minAvailable` servers are None (players take them, or the probe marks them idle) the
  WaitToBeDeleted ones are never removed and replicas climb to `maxReplicaCount`. Here, when the last answer
  was a `minAvailable` scale-up and WaitToBeDeleted servers wait, this answer removes them; the scale-up comes
  again at the next poll. (Removing them first, always, would deadlock at `minReplicaCount`: one
  WaitToBeDeleted server and `minAvailable: 1` would never get its free server.)
- **The threshold branch counts from `spec.replicas` (OKG #356).** v1.1 answers `total - WaitToBeDeleted`
  (pods that exist), which cancels a scale-up whose pods are not created yet. Here it is `spec.replicas -
  WaitToBeDeleted`, with no floor (as v1.1: `minReplicaCount` is the only floor).

Numbers are parsed as upstream does (Go `strconv.ParseFloat(s, 32)` and `ParseInt(s, 10, 32)`), so `"0.8"` is
0.800000011920929 and the rounding is Go's `math.Round` (half away from zero).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from gamekeeper.api.models import GS_OPS_STATE_KEY, GS_STATE_KEY
from gamekeeper.api.scaledobject import (
    MAX_AVAILABLE_KEY,
    MIN_AVAILABLE_KEY,
    SCALE_DOWN_THRESHOLD_KEY,
    ScalerError,
    metadata_problems,
    parse_go_float32,
    parse_go_int32,
)

__all__ = ["ScalerError", "metadata_problems", "parse_go_float32", "parse_go_int32"]

METRIC_NAME = "gssReplicas"
METRIC_TARGET = 1

def go_round(x: float) -> float:
    """Go's math.Round: half away from zero (Python's round() is half to even)."""
    whole = math.trunc(x)
    if abs(x - whole) >= 0.5:
        whole += int(math.copysign(1, x))
    return float(whole)


def handle_min_num(total: int, none: int, min_available: str) -> int:
    """Upstream `handleMinNum`: how many `None` servers `minAvailable` asks for, given the fleet now."""
    if min_available == "":
        return 0
    n = parse_go_float32(min_available)
    if 0 < n < 1:
        # (none + delta) / (total + delta) >= n  =>  delta >= (total*n - none) / (1 - n)
        delta = (float(total) * n - float(none)) / (1 - n)
        if delta <= 0:
            return 0
        delta = go_round(delta * 100) / 100
        return math.ceil(delta) + none
    if n >= 1 or n == 0:
        if math.isinf(n):
            raise ScalerError(f"invalid min number {min_available!r}: not a finite number")
        return math.ceil(n)
    raise ScalerError("invalid min number: must be greater than 0 or a valid percentage between 0 and 1")


@dataclass(frozen=True)
class FleetCounts:
    """What the scaler reads of a set: its `spec.replicas` and, from the pods' labels, three counts."""

    replicas: int
    total: int  # pods of the set
    none: int  # pods whose opsState label is None
    wait_to_be_deleted: int  # opsState WaitToBeDeleted and not already Deleting
    # Servers on their way: pods not created yet (spec.replicas above the pods) or without an opsState label yet.
    # Every new GameServer starts None; Gamekeeper counts them as None, upstream does not.
    pending: int = 0

    def as_dict(self) -> dict[str, int]:
        return {"replicas": self.replicas, "total": self.total, "none": self.none,
                "waitToBeDeleted": self.wait_to_be_deleted, "pending": self.pending}


def count_pods(replicas: int, pod_labels: Iterable[Mapping[str, str] | None]) -> FleetCounts:
    total = none = wtbd = unlabeled = 0
    for labels in pod_labels:
        labels = labels or {}
        total += 1
        ops = labels.get(GS_OPS_STATE_KEY)
        if ops == "None":
            none += 1
        elif ops == "WaitToBeDeleted" and labels.get(GS_STATE_KEY) != "Deleting":
            wtbd += 1
        elif ops is None:
            unlabeled += 1
    return FleetCounts(replicas=replicas, total=total, none=none, wait_to_be_deleted=wtbd,
                       pending=unlabeled + max(0, replicas - total))


@dataclass(frozen=True)
class Decision:
    desired: int
    branch: str  # min, waitToBeDeleted, threshold, max, steady
    reason: str
    notes: tuple[str, ...] = field(default=())  # metadata upstream logs and ignores


def _max_available(metadata: Mapping[str, str], notes: list[str]) -> int | None:
    text = metadata.get(MAX_AVAILABLE_KEY, "")
    if text == "":
        return None
    try:
        return parse_go_int32(text)
    except ScalerError as e:
        notes.append(f"maxAvailable should be integer type, err: {e}")
        return None


def _threshold_exceeded(metadata: Mapping[str, str], counts: FleetCounts, notes: list[str]) -> bool:
    text = metadata.get(SCALE_DOWN_THRESHOLD_KEY, "")
    if text == "" or counts.wait_to_be_deleted == 0:
        return False
    try:
        n = parse_go_float32(text)
    except ScalerError as e:
        notes.append(f"scaleDownThreshold ignored: {e}")
        return False
    if 0 < n < 1:
        return counts.total > 0 and counts.wait_to_be_deleted / counts.total > n
    if n >= 1 and not math.isinf(n):
        return counts.wait_to_be_deleted > math.ceil(n)
    notes.append(f"scaleDownThreshold ignored: {text!r} is neither an integer >= 1 nor a fraction 0<n<1")
    return False


def _min_num(metadata: Mapping[str, str], counts: FleetCounts, max_num: int | None) -> int:
    min_num = handle_min_num(counts.total, counts.none, metadata.get(MIN_AVAILABLE_KEY, ""))
    if max_num is not None and min_num > max_num:
        min_num = max_num
    return min_num


def upstream_desired(counts: FleetCounts, metadata: Mapping[str, str]) -> Decision:
    """OpenKruiseGame v1.1 `GetMetrics`, branch for branch. Raises ScalerError where upstream returns an error."""
    notes: list[str] = []
    max_num = _max_available(metadata, notes)
    wtbd = counts.wait_to_be_deleted
    if _threshold_exceeded(metadata, counts, notes):
        return Decision(counts.total - wtbd, "threshold",
                        f"{wtbd} WaitToBeDeleted exceed scaleDownThreshold", tuple(notes))
    min_num = _min_num(metadata, counts, max_num)
    if counts.none < min_num:
        return Decision(counts.replicas + min_num - counts.none, "min",
                        f"{counts.none} None < minAvailable {min_num}", tuple(notes))
    if wtbd:
        return Decision(counts.replicas - wtbd, "waitToBeDeleted", f"{wtbd} WaitToBeDeleted", tuple(notes))
    if max_num is not None and counts.none > max_num:
        return Decision(counts.replicas + max_num - counts.none, "max",
                        f"{counts.none} None > maxAvailable {max_num}", tuple(notes))
    return Decision(counts.replicas, "steady", "no change needed", tuple(notes))


def desired_replicas(counts: FleetCounts, metadata: Mapping[str, str], previous: str | None = None) -> Decision:
    """Gamekeeper's answer: upstream's rules, with servers on their way counted as None, the threshold branch
    counted from spec.replicas, and WaitToBeDeleted removal taking turns with a minAvailable scale-up.

    `previous` is the branch of the last answer for this ScaledObject (None when there is none)."""
    notes: list[str] = []
    max_num = _max_available(metadata, notes)
    none = counts.none + counts.pending
    min_num = _min_num(metadata, dataclasses.replace(counts, none=none), max_num)
    wtbd = counts.wait_to_be_deleted
    if _threshold_exceeded(metadata, counts, notes):
        return Decision(counts.replicas - wtbd, "threshold", f"{wtbd} WaitToBeDeleted exceed scaleDownThreshold",
                        tuple(notes))
    shown = f"{none} None" + (f" (with {counts.pending} on their way)" if counts.pending else "")
    if none < min_num:
        if wtbd and previous == "min":
            return Decision(counts.replicas - wtbd, "waitToBeDeleted",
                            f"{wtbd} WaitToBeDeleted (their turn: the last poll scaled up for minAvailable "
                            f"{min_num}, which comes again at the next)", tuple(notes))
        return Decision(counts.replicas + min_num - none, "min", f"{shown} < minAvailable {min_num}", tuple(notes))
    if wtbd:
        return Decision(counts.replicas - wtbd, "waitToBeDeleted", f"{wtbd} WaitToBeDeleted", tuple(notes))
    if max_num is not None and none > max_num:
        return Decision(counts.replicas + max_num - none, "max", f"{shown} > maxAvailable {max_num}", tuple(notes))
    return Decision(counts.replicas, "steady", "no change needed", tuple(notes))


def is_active(current_replicas: int, wait_to_be_deleted_replicas: int | None, metadata: Mapping[str, str]) -> bool:
    """Upstream `IsActive`, from the set's status. Raises ScalerError before the set's first status."""
    if wait_to_be_deleted_replicas is None:
        raise ScalerError("GameServerSet has not inited (status.waitToBeDeletedReplicas is not set yet)")
    text = metadata.get(MIN_AVAILABLE_KEY, "")
    if text and parse_go_float32(text) > 0:
        return True
    return current_replicas - wait_to_be_deleted_replicas > 0
