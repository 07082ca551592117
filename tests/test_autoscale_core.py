"""The external scaler's decision, driven by table cases (tests/data/autoscale/) with no store and no clock."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from gamekeeper.api.models import GS_OPS_STATE_KEY, GS_STATE_KEY
from gamekeeper.core.autoscale import (
    Decision,
    FleetCounts,
    ScalerError,
    count_pods,
    desired_replicas,
    go_round,
    handle_min_num,
    is_active,
    metadata_problems,
    parse_go_float32,
    upstream_desired,
)

DATA = Path(__file__).parent / "data" / "autoscale"
MIN_CASES = yaml.safe_load((DATA / "handle_min_num.yaml").read_text())
METRIC_CASES = yaml.safe_load((DATA / "get_metrics.yaml").read_text())


@pytest.mark.parametrize("case", MIN_CASES, ids=[c["name"] for c in MIN_CASES])
def test_handle_min_num(case: dict[str, Any]) -> None:
    if case.get("error"):
        with pytest.raises(ScalerError):
            handle_min_num(case["total"], case["none"], case["min"])
    else:
        assert handle_min_num(case["total"], case["none"], case["min"]) == case["want"]


@pytest.mark.parametrize("case", METRIC_CASES, ids=[c["name"] for c in METRIC_CASES])
@pytest.mark.parametrize("flavour", ["upstream", "gamekeeper"])
def test_get_metrics_branches(case: dict[str, Any], flavour: str) -> None:
    counts = FleetCounts(replicas=case["replicas"], total=case["total"], none=case["none"],
                         wait_to_be_deleted=case["wtbd"], pending=case.get("pending", 0))
    want = case[flavour]

    def decide() -> Decision:
        if flavour == "upstream":
            return upstream_desired(counts, case["metadata"])
        return desired_replicas(counts, case["metadata"], case.get("previous"))

    if want.get("error"):
        with pytest.raises(ScalerError):
            decide()
        return
    decision = decide()
    assert (decision.desired, decision.branch) == (want["desired"], want["branch"])
    assert len(decision.notes) == want.get("notes", 0)


def test_float32_widening_and_go_rounding() -> None:
    assert parse_go_float32("0.8") == pytest.approx(0.800000011920929, abs=1e-15)
    assert parse_go_float32("0.8") != 0.8
    assert go_round(2.5) == 3.0 and go_round(-2.5) == -3.0 and round(2.5) == 2  # Python's is half to even
    assert go_round(0.49999999999999994) == 0.0


def test_counts_from_pod_labels_exclude_deleting() -> None:
    labels = [
        {GS_OPS_STATE_KEY: "None", GS_STATE_KEY: "Ready"},
        {GS_OPS_STATE_KEY: "WaitToBeDeleted", GS_STATE_KEY: "Ready"},
        {GS_OPS_STATE_KEY: "WaitToBeDeleted", GS_STATE_KEY: "Deleting"},
        {GS_OPS_STATE_KEY: "Allocated"},
        None,
    ]
    assert count_pods(5, labels) == FleetCounts(replicas=5, total=5, none=1, wait_to_be_deleted=1, pending=1)
    assert count_pods(7, labels).pending == 3  # and two pods not created yet


def test_is_active() -> None:
    with pytest.raises(ScalerError):
        is_active(3, None, {})
    assert is_active(0, 0, {"minAvailable": "1"})
    assert not is_active(2, 2, {})
    assert is_active(3, 2, {})


@pytest.mark.parametrize(("metadata", "key"), [
    ({"minAvailable": "abc"}, "minAvailable"),
    ({"minAvailable": "-1"}, "minAvailable"),
    ({"maxAvailable": "1.5"}, "maxAvailable"),
    ({"scaleDownThreshold": "0"}, "scaleDownThreshold"),
    ({"minAvailabel": "2"}, "minAvailabel"),
    ({"minAvailable": 2}, "minAvailable"),
])
def test_metadata_problems(metadata: dict[str, Any], key: str) -> None:
    problems = metadata_problems(metadata)
    assert [k for k, _ in problems] == [key]


def test_valid_metadata_has_no_problems() -> None:
    assert metadata_problems({"scalerAddress": "x:6000", "minAvailable": "0.2", "maxAvailable": "3",
                              "scaleDownThreshold": "2"}) == []
