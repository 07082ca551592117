"""The pure service-quality core beyond the upstream cases: thresholds, messages, minimal writes, templates."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from gamekeeper.api.models import ServiceQuality
from gamekeeper.core.gameserver import gs_to_pod, pod_to_gs
from gamekeeper.core.service_quality import (
    ProbeWorker,
    clean_result,
    probe_condition,
    probe_message,
    sync_service_qualities,
)

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def sq(actions: list[dict[str, Any]], permanent: bool = False, name: str = "q") -> ServiceQuality:
    return ServiceQuality.model_validate(
        {"name": name, "permanent": permanent, "exec": {"command": ["true"]}, "serviceQualityAction": actions}
    )


def cond(status: str, message: str, name: str = "q") -> dict[str, Any]:
    return {"type": f"game.kruise.io/{name}", "status": status, "message": message,
            "lastProbeTime": "2026-01-01T00:00:00Z"}


def test_failed_probe_keeps_stdout_unlike_upstream_297() -> None:
    assert probe_message(1, b"busy\n", b"warning: x") == "busy\n"
    assert probe_message(1, b"", b"only stderr") == "only stderr"
    assert probe_message(0, b"ok", b"noise") == "ok"
    assert len(probe_message(0, "é".encode() * 600, b"")) == 512  # capped at 1024 bytes, never mid-character


def test_result_cleaning_removes_only_pipes_and_newlines() -> None:
    assert clean_result(" a|b\nc\r ") == " abc\r "


def test_thresholds_count_consecutive_results() -> None:
    worker = ProbeWorker(success_threshold=2, failure_threshold=3)
    assert worker.observe(True, "ok") is None
    assert worker.observe(True, "ok") == (True, "ok")
    assert worker.observe(True, "ok") is None  # unchanged: nothing to report, nothing to write
    assert worker.observe(True, "busy") == (True, "busy")  # a new message of the same result is reported at once
    assert worker.observe(False, "e1") is None
    assert worker.observe(False, "e2") is None
    assert worker.observe(True, "ok") is None  # the failure run is broken
    assert [worker.observe(False, f"e{i}") for i in range(3)] == [None, None, (False, "e2")]


def test_condition_is_rewritten_only_when_status_or_message_changes() -> None:
    first = probe_condition("game.kruise.io/q", True, "idle", None, NOW)
    assert first is not None and first["status"] == "True" and first["lastTransitionTime"] == first["lastProbeTime"]
    assert probe_condition("game.kruise.io/q", True, "idle", first, NOW + timedelta(seconds=3)) is None
    second = probe_condition("game.kruise.io/q", True, "active", first, NOW + timedelta(seconds=6))
    assert second is not None
    assert second["lastTransitionTime"] == first["lastTransitionTime"]  # status did not change
    assert second["lastProbeTime"] != first["lastProbeTime"]


def test_an_action_writes_only_the_fields_it_sets() -> None:
    spec = {"opsState": "None", "deletionPriority": 5, "updatePriority": 9}
    out = sync_service_qualities([sq([{"state": True, "opsState": "Allocated"}])], [cond("True", "x")], spec, None, NOW)
    assert out.spec == {"opsState": "Allocated"}


def test_later_matching_actions_win_field_by_field_and_labels_merge() -> None:
    actions = [
        {"state": True, "opsState": "Allocated", "deletionPriority": 1, "labels": {"a": "1", "b": "1"}},
        {"state": True, "result": "x", "deletionPriority": 2, "labels": {"b": "2"}},
        {"state": False, "opsState": "Maintaining"},
    ]
    out = sync_service_qualities([sq(actions)], [cond("True", "x")], {}, None, NOW)
    assert out.spec == {"opsState": "Allocated", "deletionPriority": 2}
    assert out.labels == {"a": "1", "b": "2"}


def test_invalid_priority_template_keeps_the_old_value_and_warns() -> None:
    actions = [{"state": True, "deletionPriority": "{{.Result}}", "updatePriority": "{{.Result}}"}]
    out = sync_service_qualities([sq(actions)], [cond("True", "lots")], {"deletionPriority": 4}, None, NOW)
    assert out.spec == {"deletionPriority": 4}  # unchanged (no write follows), updatePriority untouched
    assert [(e.type, e.reason) for e in out.events] == [
        ("Warning", "InvalidDeletionPriority"), ("Warning", "InvalidUpdatePriority")]
    assert "Failed to parse DeletionPriority template '{{.Result}}' with result 'lots'" in out.events[0].message
    ok = sync_service_qualities([sq(actions)], [cond("True", "12")], {}, None, NOW)
    assert ok.spec == {"deletionPriority": 12, "updatePriority": 12} and not ok.events


def test_unknown_status_matches_no_action() -> None:
    out = sync_service_qualities([sq([{"state": False, "opsState": "Maintaining"}])], [cond("Unknown", "")], {},
                                 None, NOW)
    assert out.spec == {} and "lastActionTransitionTime" not in out.conditions[0]


def gs(spec: dict[str, Any], status: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"metadata": {"name": "g-0", "labels": {}, "annotations": {}}, "spec": spec, "status": status or {}}


def pod(labels: dict[str, str], conditions: list[dict[str, Any]]) -> dict[str, Any]:
    return {"metadata": {"name": "g-0", "labels": labels},
            "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}, *conditions]}}


def test_steady_state_needs_no_writes() -> None:
    quality = sq([{"state": True, "result": "idle", "opsState": "WaitToBeDeleted"}])
    g = gs({"opsState": "None", "deletionPriority": 0, "updatePriority": 0, "networkDisabled": False})
    p = pod({}, [cond("True", "idle")])
    first = pod_to_gs(g, p, [quality], None, NOW)
    assert first.patch is not None and first.patch["spec"] == {"opsState": "WaitToBeDeleted"}
    g = {**g, "spec": {**g["spec"], **first.patch["spec"]},
         "metadata": {**g["metadata"], "annotations": first.patch["metadata"]["annotations"]},
         "status": first.status}
    sync = gs_to_pod(g, p, NOW)
    labels = {k: v for k, v in sync.labels.items() if v is not None}
    p = {**p, "metadata": {**p["metadata"], "labels": labels}}
    assert gs_to_pod(g, p, NOW).patch() is None
    again = pod_to_gs(g, p, [quality], None, NOW + timedelta(seconds=30))
    if again.status is not None:  # the status picks up the pod labels written in between, once
        g = {**g, "status": again.status}
        again = pod_to_gs(g, p, [quality], None, NOW + timedelta(seconds=60))
    assert again.patch is None and again.status is None
