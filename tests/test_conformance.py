"""Conformance tests: the upstream OKG cases in tests/data/conformance/*.yaml against gamekeeper.core.

The yaml files are byte-for-byte copies of the project's shared conformance data (one provenance comment line
added); their README explains the conventions (symbolic times, IntOrString, sets, `expected` versus
`expected_derived`). Each case is one pytest parameter whose id is the case id. `expected` is what upstream
asserts; `expected_derived` (code-reading results) is asserted too, after `expected`, in the same test.

The last section holds property-style tests: deletion order is a total order, and the worked scaling examples of
spec §3.6 through `compute_to_scale` and `managed_ordinals`.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from gamekeeper.api.models import (
    GS_DELETE_PRIORITY_KEY,
    GS_NETWORK_DISABLED_KEY,
    GS_OPS_STATE_KEY,
    GS_STATE_KEY,
    GS_STATE_LAST_CHANGED_KEY,
    GS_UPDATE_PRIORITY_KEY,
    LIFECYCLE_STATE_KEY,
    ServiceQuality,
)
from gamekeeper.api.times import ZERO, format_time, parse_time
from gamekeeper.core.gameserver import gs_to_pod
from gamekeeper.core.ordinals import (
    index_from_name,
    ordinal_set_to_int_str_slice,
    ordinal_set_to_string,
    string_to_ordinal_set,
)
from gamekeeper.core.scaling import (
    PodView,
    ScalePlan,
    compute_to_scale,
    deletion_order,
    managed_ordinals,
    replicas_after_killing,
)
from gamekeeper.core.service_quality import Event, ServiceQualityOutcome, sync_service_qualities
from gamekeeper.core.state import derive_state

DATA = Path(__file__).parent / "data" / "conformance"

Case = dict[str, Any]


def load_cases(filename: str) -> list[Any]:
    """The cases of one conformance file, each a pytest param whose id is the case id."""
    doc = yaml.safe_load((DATA / filename).read_text(encoding="utf-8"))
    cases: list[Case] = doc["cases"]
    return [pytest.param(case, id=str(case["id"])) for case in cases]


# --- symbolic times ------------------------------------------------------------------------------------------

T_PROBE = datetime(2026, 1, 1, 0, 0, 0, tzinfo=UTC)
T_ACTION = datetime(2026, 1, 1, 0, 0, 1, tzinfo=UTC)
NOW = datetime(2026, 1, 1, 0, 0, 10, tzinfo=UTC)
TIME_TOKENS: dict[str, datetime] = {"T_PROBE": T_PROBE, "T_ACTION": T_ACTION, "NOW": NOW, "ZERO": ZERO}


def token_time(token: str) -> datetime:
    return TIME_TOKENS[token]


def with_times(value: Any) -> Any:
    """Replace the time tokens in case input by RFC 3339 strings; ZERO means the field is absent."""
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if item == "ZERO":
                continue
            out[key] = with_times(item)
        return out
    if isinstance(value, list):
        return [with_times(item) for item in value]
    if isinstance(value, str) and value in TIME_TOKENS:
        return format_time(TIME_TOKENS[value])
    return value


# --- sync_service_qualities.yaml ---------------------------------------------------------------------------


def go_spec(spec: Mapping[str, Any]) -> dict[str, Any]:
    """A GS spec as Go deep-equality sees it: nil pointers, "" opsState and false networkDisabled are unset."""
    zero: dict[str, Any] = {"opsState": "", "networkDisabled": False}
    return {k: v for k, v in spec.items() if v is not None and not (k in zero and v == zero[k])}


def merged(before: Mapping[str, str] | None, updates: Mapping[str, str]) -> dict[str, str] | None:
    """GS labels/annotations after the call: a nil map stays nil when nothing was merged into it."""
    if before is None and not updates:
        return None
    return {**(before or {}), **updates}


def condition_named(conditions: list[dict[str, Any]], name: str) -> dict[str, Any]:
    found = [c for c in conditions if c.get("name") == name]
    assert len(found) == 1, f"expected exactly one condition named {name!r}, got {conditions!r}"
    return found[0]


@pytest.mark.parametrize("case", load_cases("sync_service_qualities.yaml"))
def test_sync_service_qualities(case: Case) -> None:
    given = with_times(case["input"])
    expected: dict[str, Any] = case.get("expected") or {}
    derived: dict[str, Any] = case.get("expected_derived") or {}
    gs: dict[str, Any] = given["gs"]
    qualities = [ServiceQuality.model_validate(raw) for raw in given["serviceQualities"]]
    old_conditions = (gs.get("status") or {}).get("serviceQualitiesConditions")

    outcome: ServiceQualityOutcome = sync_service_qualities(
        qualities, given["podConditions"], gs["spec"], old_conditions, NOW
    )
    spec = {**gs["spec"], **outcome.spec}
    labels = merged(gs.get("labels"), outcome.labels)
    annotations = merged(gs.get("annotations"), outcome.annotations)
    conditions = outcome.conditions

    # What upstream asserts.
    if "spec" in expected:
        assert go_spec(spec) == go_spec(expected["spec"])
    if "labels" in expected:
        assert labels == expected["labels"]
    if "annotations" in expected:
        assert annotations == expected["annotations"]
    for key, subset in expected.get("labels_contains", {}).items():
        assert (labels or {}).get(key) == subset, f"label {key}"
    for key, subset in expected.get("annotations_contains", {}).items():
        assert (annotations or {}).get(key) == subset, f"annotation {key}"
    if "opsState" in expected:
        assert spec.get("opsState") == expected["opsState"]
    for field in ("updatePriority", "deletionPriority"):
        if f"{field}_string" in expected:
            assert str(spec.get(field)) == expected[f"{field}_string"], field
    if "conditions" in expected:
        assert len(conditions) == len(expected["conditions"])
        for want in expected["conditions"]:
            got = condition_named(conditions, want["name"])
            assert (got.get("status") or "") == want["status"], "status"
            assert parse_time(got.get("lastProbeTime")) == token_time(want["lastProbeTime"]), "lastProbeTime"
            action_time_is_zero = parse_time(got.get("lastActionTransitionTime")) == ZERO
            assert action_time_is_zero == want["lastActionTransitionTimeIsZero"], "lastActionTransitionTime"

    # Derived from the code (not asserted upstream; high confidence).
    if "spec" in derived:
        assert spec == derived["spec"], "derived spec (types included: 75 is an int)"
    if "labels" in derived:
        assert labels == derived["labels"], "derived labels"
    if "annotations" in derived:
        assert annotations == derived["annotations"], "derived annotations"
    for want in derived.get("conditions", []):
        got = condition_named(conditions, want["name"])
        if "result" in want:
            assert (got.get("result") or "") == want["result"], "derived result"
        if "lastActionTransitionTime" in want:
            assert parse_time(got.get("lastActionTransitionTime")) == token_time(want["lastActionTransitionTime"]), (
                "derived lastActionTransitionTime"
            )
        if "lastTransitionTime" in want:
            assert parse_time(got.get("lastTransitionTime")) == token_time(want["lastTransitionTime"]), (
                "derived lastTransitionTime"
            )


# --- delete_sequence_gs.yaml, get_replicas_after_killing.yaml ------------------------------------------------


def pod_views(pods: Iterable[Mapping[str, Any]]) -> list[PodView]:
    return [PodView(p["name"], dict(p.get("labels") or {}), terminating=bool(p.get("deletionTimestamp"))) for p in pods]


@pytest.mark.parametrize("case", load_cases("delete_sequence_gs.yaml"))
def test_delete_sequence_gs(case: Case) -> None:
    order = deletion_order(pod_views(case["input"]["pods"]))
    assert [p.ordinal for p in order] == case["expected"]["order"]


@pytest.mark.parametrize("case", load_cases("get_replicas_after_killing.yaml"))
def test_get_replicas_after_killing(case: Case) -> None:
    given = case["input"]
    replicas = replicas_after_killing(given["gssReplicas"], given["astsReplicas"], pod_views(given["pods"]))
    assert replicas == case["expected"]


# --- derived_gs_state_from_pod.yaml ------------------------------------------------------------------------

TRANSITION_KEYS = ("events", "stateLastChangedTimeWritten", "podPatched")
# A GS spec and the pod labels gs_to_pod writes for it, already in agreement, so only the state logic acts.
QUIET_GS_SPEC: dict[str, Any] = {
    "opsState": "None",
    "deletionPriority": 0,
    "updatePriority": 0,
    "networkDisabled": False,
}
QUIET_POD_LABELS: dict[str, str] = {
    GS_DELETE_PRIORITY_KEY: "0",
    GS_UPDATE_PRIORITY_KEY: "0",
    GS_OPS_STATE_KEY: "None",
    GS_NETWORK_DISABLED_KEY: "false",
}


def state_pod(given: Mapping[str, Any], extra_labels: Mapping[str, str] | None = None) -> dict[str, Any]:
    """A Kubernetes-shaped pod from a case input."""
    labels: dict[str, str] = dict(extra_labels or {})
    if given.get("lifecycle"):
        labels[LIFECYCLE_STATE_KEY] = given["lifecycle"]
    metadata: dict[str, Any] = {"name": "gss-0", "namespace": "default", "labels": labels}
    if given.get("deletionTimestamp"):
        metadata["deletionTimestamp"] = format_time(T_PROBE)
    status: dict[str, Any] = {"phase": given["phase"]}
    if given.get("conditions") is not None:
        status["conditions"] = given["conditions"]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "status": status}


@pytest.mark.parametrize("case", load_cases("derived_gs_state_from_pod.yaml"))
def test_derived_gs_state_from_pod(case: Case) -> None:
    given = case["input"]
    expected = case["expected"]
    assert derive_state(state_pod(given)) == expected["state"]

    if not any(key in expected for key in TRANSITION_KEYS):
        return
    labels = dict(QUIET_POD_LABELS)
    if given.get("oldStateLabel"):
        labels[GS_STATE_KEY] = given["oldStateLabel"]
    pod = state_pod(given, labels)
    gs = {"metadata": {"name": "gss-0", "namespace": "default"}, "spec": dict(QUIET_GS_SPEC)}
    sync = gs_to_pod(gs, pod, NOW)

    assert {**labels, **sync.labels}.get(GS_STATE_KEY) == expected["state"], "gs-state label after the sync"
    if "events" in expected:
        assert sync.events == [Event(e["type"], e["reason"], e["message"]) for e in expected["events"]]
    if "stateLastChangedTimeWritten" in expected:
        written = GS_STATE_LAST_CHANGED_KEY in sync.annotations
        assert written == expected["stateLastChangedTimeWritten"]
    if "podPatched" in expected:
        assert (sync.patch() is not None) == expected["podPatched"]


# --- reserve-id helpers ------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", load_cases("get_index_from_gs_name.yaml"))
def test_get_index_from_gs_name(case: Case) -> None:
    assert index_from_name(case["input"]) == case["expected"]


@pytest.mark.parametrize("case", load_cases("int_set_to_string.yaml"))
def test_int_set_to_string(case: Case) -> None:
    given = case["input"]
    assert ordinal_set_to_string(set(given["set"]), given["delimiter"]) == case["expected"]


@pytest.mark.parametrize("case", load_cases("ordinal_set_to_int_str_slice.yaml"))
def test_ordinal_set_to_int_str_slice(case: Case) -> None:
    got = ordinal_set_to_int_str_slice(set(case["input"]))
    assert got == case["expected"]
    # IntOrString variants must match too (an int is not "5"): compare the element types one by one.
    assert [type(x) for x in got or []] == [type(x) for x in case["expected"] or []]


@pytest.mark.parametrize("case", load_cases("string_to_ordinal_int_set.yaml"))
def test_string_to_ordinal_int_set(case: Case) -> None:
    given = case["input"]
    assert string_to_ordinal_set(given["str"], given["delimiter"]) == set(case["expected"] or [])


# --- properties: deletion order ----------------------------------------------------------------------------

OPS_STATES: list[str | None] = ["Kill", "WaitToBeDeleted", "None", "Allocated", "Maintaining", "user-define", None]
# Distinct strings give distinct integers here (missing counts as 0, so no "0"): spec §3.5's comparator is then
# a strict weak order that ties only on equal (rank, priority) and is broken by the ordinal.
DETERMINED_PRIORITIES: list[str | None] = [None, "3", "10", "-1", "7"]
# Includes strings that differ but parse equal ("01"/"1", "abc"/"0"/missing): upstream leaves their order to an
# unstable sort; gamekeeper must still give one order whatever the input order.
AMBIGUOUS_PRIORITIES: list[str | None] = [None, "0", "1", "01", "abc", "10", "010"]
SPEC_RANK = {"Kill": 100, "WaitToBeDeleted": 1, "Allocated": -1, "Maintaining": -2}


def random_pods(rng: random.Random, count: int, priorities: list[str | None]) -> list[PodView]:
    ordinals = rng.sample(range(count * 3), count)
    pods = []
    for ordinal in ordinals:
        labels: dict[str, str] = {}
        ops = rng.choice(OPS_STATES)
        if ops is not None:
            labels[GS_OPS_STATE_KEY] = ops
        priority = rng.choice(priorities)
        if priority is not None:
            labels[GS_DELETE_PRIORITY_KEY] = priority
        pods.append(PodView(f"gss-{ordinal}", labels))
    return pods


def spec_less(a: PodView, b: PodView) -> bool:
    """Upstream DeleteSequenceGs.Less as spec §3.5 states it (true = a is deleted before b)."""
    rank_a = SPEC_RANK.get(a.labels.get(GS_OPS_STATE_KEY, ""), 0)
    rank_b = SPEC_RANK.get(b.labels.get(GS_OPS_STATE_KEY, ""), 0)
    if rank_a != rank_b:
        return rank_a > rank_b
    label_a = a.labels.get(GS_DELETE_PRIORITY_KEY, "")
    label_b = b.labels.get(GS_DELETE_PRIORITY_KEY, "")
    if label_a != label_b:

        def atoi(text: str) -> int:
            try:
                return int(text)
            except ValueError:
                return 0

        return atoi(label_a) > atoi(label_b)
    return a.ordinal > b.ordinal


@pytest.mark.parametrize("priorities", [DETERMINED_PRIORITIES, AMBIGUOUS_PRIORITIES], ids=["determined", "ambiguous"])
@pytest.mark.parametrize("seed", range(5))
def test_deletion_order_is_a_total_order(seed: int, priorities: list[str | None]) -> None:
    rng = random.Random(seed)
    pods = random_pods(rng, 30, priorities)
    reference = [p.name for p in deletion_order(pods)]
    for _ in range(20):
        shuffled = list(pods)
        rng.shuffle(shuffled)
        assert [p.name for p in deletion_order(shuffled)] == reference
    assert [p.name for p in deletion_order(reversed(pods))] == reference


@pytest.mark.parametrize("seed", range(5))
def test_deletion_order_agrees_with_the_upstream_comparator(seed: int) -> None:
    rng = random.Random(100 + seed)
    order = deletion_order(random_pods(rng, 30, DETERMINED_PRIORITIES))
    for i, earlier in enumerate(order):
        for later in order[i + 1 :]:
            assert not spec_less(later, earlier), f"{later} should be deleted before {earlier}"


# --- properties: compute_to_scale, spec §3.6 worked examples -----------------------------------------------


def gss_pods(ordinals: Iterable[int], labels: Mapping[int, Mapping[str, str]] | None = None) -> list[PodView]:
    return [PodView(f"minecraft-{i}", dict((labels or {}).get(i, {}))) for i in ordinals]


def step(
    pods: list[PodView], new_explicit: set[int], old_explicit: set[int], asts_reserved: set[int], replicas: int
) -> ScalePlan:
    """One GameServerScale step as spec §3.4 builds its inputs (implicit = astsReserved minus oldExplicit)."""
    plan = compute_to_scale(new_explicit, old_explicit, asts_reserved - old_explicit, replicas, pods)
    assert managed_ordinals(replicas, plan.reserved) == sorted(plan.manage), "workload keeps what the plan manages"
    assert len(plan.manage) == replicas
    assert not plan.manage & plan.reserved
    return plan


def removed(pods: Iterable[PodView], plan: ScalePlan) -> set[int]:
    """Ordinals whose pods the workload removes: every listed pod that the plan does not manage."""
    return {p.ordinal for p in pods} - plan.manage


def test_scale_reserve_ids_deletes_them_and_creates_past_the_end() -> None:
    # Ids 0-4, reserveGameServerIds=[3,4], replicas 5: 3 and 4 go, 5 and 6 are created.
    pods = gss_pods(range(5))
    plan = step(pods, {3, 4}, set(), set(), 5)
    assert removed(pods, plan) == {3, 4}
    assert plan.to_create == (5, 6)
    assert plan.manage == {0, 1, 2, 5, 6}
    assert plan.reserved == {3, 4}

    # Then reserveGameServerIds=[3,4,5,6] with replicas 3: 5 and 6 go.
    pods = gss_pods(sorted(plan.manage))
    plan = step(pods, {3, 4, 5, 6}, {3, 4}, set(plan.reserved), 3)
    assert removed(pods, plan) == {5, 6}
    assert plan.to_create == ()
    assert plan.manage == {0, 1, 2}
    assert plan.reserved == {3, 4, 5, 6}


def test_scale_reserve_ids_mode_deletes_highest_ordinals_and_reserves_them() -> None:
    # ReserveIds mode, ids 0-4, replicas 5→3: 4 then 3 are deleted; reserveGameServerIds becomes [3,4].
    pods = gss_pods(range(5))
    plan = step(pods, set(), set(), set(), 3)
    assert plan.to_delete == (4, 3)
    assert removed(pods, plan) == {3, 4}
    assert plan.reserved == {3, 4}
    assert ordinal_set_to_int_str_slice(plan.reserved) == [3, 4]
    assert ordinal_set_to_string(plan.reserved) == "3,4"

    # Continuing (annotation reserve-ids = "3,4"): reserveGameServerIds=[3] with replicas 4 recreates 4.
    pods = gss_pods(sorted(plan.manage))
    plan = step(pods, {3}, {3, 4}, set(plan.reserved), 4)
    assert plan.to_create == (4,)
    assert plan.manage == {0, 1, 2, 4}
    assert plan.reserved == {3}


def test_scale_general_mode_follows_priority_and_refills_lowest_holes() -> None:
    # General mode, replicas 5→4 with gs-2 at deletionPriority 10: gs-2 is deleted.
    pods = gss_pods(range(5), {2: {GS_DELETE_PRIORITY_KEY: "10"}})
    plan = step(pods, set(), set(), set(), 4)
    assert plan.to_delete == (2,)
    assert plan.reserved == {2}

    # 4→3 with gs-3 WaitToBeDeleted (the docs' next step): gs-3 is deleted.
    pods = gss_pods(sorted(plan.manage), {3: {GS_OPS_STATE_KEY: "WaitToBeDeleted"}})
    plan = step(pods, set(), set(), set(plan.reserved), 3)
    assert plan.to_delete == (3,)
    assert plan.manage == {0, 1, 4}
    assert plan.reserved == {2, 3}

    # 3→5 refills the lowest free ordinals, 2 and 3.
    pods = gss_pods(sorted(plan.manage))
    plan = step(pods, set(), set(), set(plan.reserved), 5)
    assert plan.to_create == (2, 3)
    assert plan.manage == {0, 1, 2, 3, 4}
    assert plan.reserved == set()
