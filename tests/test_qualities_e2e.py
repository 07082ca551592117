"""Qualities that write the same field, and rendered template values (issue 12, items 2 and 6).

The core cases drive `sync_service_qualities` directly; the end-to-end ones run a real controller with real
probes (each a few seconds).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from gamekeeper.api.loading import load_documents
from gamekeeper.api.models import ServiceQuality
from gamekeeper.core.service_quality import sync_service_qualities
from gamekeeper.store.sqlite import SqliteState
from tests.fleet import Fleet, ops, wait_for
from tests.test_resilience import custom_images

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def _quality(name: str, actions: list[dict[str, Any]], **probe: Any) -> dict[str, Any]:
    return {"name": name, "permanent": False, "initialDelaySeconds": 1, "periodSeconds": 1,
            "exec": {"command": ["sh", "-c", "true"]}, "serviceQualityAction": actions, **probe}


IDLE = _quality("idle", [{"state": True, "result": "idle", "opsState": "WaitToBeDeleted"},
                         {"state": True, "result": "active", "opsState": "None"}])
HEALTH = _quality("health", [{"state": False, "opsState": "Maintaining"}])


def _cond(name: str, status: str, message: str) -> dict[str, Any]:
    return {"type": f"game.kruise.io/{name}", "status": status, "message": message,
            "lastProbeTime": "2026-01-01T00:00:00Z"}


def _sync(qualities: list[dict[str, Any]], conds: list[dict[str, Any]], spec: dict[str, Any],
          old: list[dict[str, Any]] | None, reapply: bool) -> Any:
    models = [ServiceQuality.model_validate(q) for q in qualities]
    return sync_service_qualities(models, conds, spec, old, NOW, reapply=reapply)


def test_edge_triggered_qualities_leave_maintaining_and_reapply_does_not() -> None:
    qualities = [IDLE, HEALTH]
    # Both observed: active and unhealthy -> Maintaining (health is later in the list).
    first = _sync(qualities, [_cond("idle", "True", "active"), _cond("health", "False", "")], {}, None, False)
    assert first.spec == {"opsState": "Maintaining"}
    # Health recovers; idle saw nothing new. Edge-triggered: nothing acts, Maintaining stays.
    recovered = [_cond("idle", "True", "active"), _cond("health", "True", "")]
    stuck = _sync(qualities, recovered, {"opsState": "Maintaining"}, first.conditions, False)
    assert stuck.spec == {}
    # Re-applied: idle's "active" action holds, so opsState is None again; health's action does not match.
    healed = _sync(qualities, recovered, {"opsState": "Maintaining"}, first.conditions, True)
    assert healed.spec.get("opsState") == "None" and healed.acted == ["idle"]
    assert not healed.events and not healed.history[1:]  # re-application adds no events
    # Steady state: nothing differs, so pod_to_gs will write nothing; conditions keep their action times.
    steady = _sync(qualities, recovered, {"opsState": "None"}, healed.conditions, True)
    assert steady.spec == {"opsState": "None"} and steady.acted == []
    assert [c.get("lastActionTransitionTime") for c in steady.conditions] == [
        c.get("lastActionTransitionTime") for c in healed.conditions]


def test_rendered_values_are_validated_and_one_warning_is_raised() -> None:
    quality = _quality("r", [{"state": True, "opsState": "{{.Result}}", "labels": {"r": "{{.Result}}"},
                              "annotations": {"a": "{{.Result}}"}, "deletionPriority": "{{.Result}}"}])
    junk = ("\x01\x02\x1b[31m" + "y" * 80)
    out = _sync([quality], [_cond("r", "True", junk)], {"opsState": "None", "deletionPriority": 3}, None, False)
    assert "opsState" not in out.spec and "r" not in out.labels  # old values kept
    assert out.annotations == {"a": junk}  # annotation values may hold any text (but no NUL)
    warnings = [e for e in out.events if e.reason == "InvalidRenderedValue"]
    assert len(warnings) == 1
    assert "opsState" in warnings[0].message and "labels[r]" in warnings[0].message
    assert [e.reason for e in out.events if e.reason != "InvalidRenderedValue"] == ["InvalidDeletionPriority"]
    good = _sync([quality], [_cond("r", "True", "12")], {}, None, False)
    assert good.spec == {"opsState": "12", "deletionPriority": 12} and good.labels == {"r": "12"}
    assert not good.events
    huge = _sync([quality], [_cond("r", "True", "99999999999")], {"deletionPriority": 3}, None, False)
    # Beyond int32: the old priority is kept (unchanged, so nothing is written), as upstream does for a bad parse.
    assert huge.spec["opsState"] == "99999999999" and huge.spec["deletionPriority"] == 3
    assert [e.reason for e in huge.events] == ["InvalidDeletionPriority"]


def test_apply_warns_about_qualities_that_write_one_field() -> None:
    doc: dict[str, Any] = {
           "apiVersion": "game.kruise.io/v1alpha1", "kind": "GameServerSet",
           "metadata": {"name": "arena", "annotations": {}},
           "spec": {"replicas": 1, "gameServerTemplate": {"spec": {"containers": [{"name": "main", "image": "x"}]}},
                    "serviceQualities": [IDLE, HEALTH, _quality("tag", [{"state": True, "labels": {"k": "v"}}])]}}
    [obj] = load_documents(yaml.safe_dump(doc), "arena.yaml")
    conflicts = [w for w in obj.warnings if "both write" in w]
    assert len(conflicts) == 1
    assert ("spec.serviceQualities[0].serviceQualityAction[0].opsState, "
            "spec.serviceQualities[1].serviceQualityAction[0].opsState") in conflicts[0]
    assert "'idle' and 'health'" in conflicts[0] and "gamekeeper.io/reapply-qualities" in conflicts[0]
    doc["metadata"]["annotations"] = {"gamekeeper.io/reapply-qualities": "true"}
    [obj] = load_documents(yaml.safe_dump(doc), "arena.yaml")
    [conflict] = [w for w in obj.warnings if "both write" in w]
    assert "'health' wins while its action matches" in conflict
    doc["metadata"]["annotations"] = {"gamekeeper.io/reapply-qualities": "yes"}
    [obj] = load_documents(yaml.safe_dump(doc), "arena.yaml")
    assert any('"yes" is neither "true" nor "false"' in w for w in obj.warnings)


# --- end to end ---------------------------------------------------------------------------------------------


def _arena(name: str, reapply: bool) -> dict[str, Any]:
    # The stall makes both probes fail; health reports it after one failure, idle only after ten, so a stall
    # of a few seconds is seen by health alone (the case OKG #43 complained about).
    idle = _quality("idle", IDLE["serviceQualityAction"], failureThreshold=10,
                    exec={"command": ["sh", "-c", "test ! -e stalled && cat state"]})
    health = _quality("health", HEALTH["serviceQualityAction"], failureThreshold=1,
                      exec={"command": ["sh", "-c", "test ! -e stalled"]})
    annotations = {"gamekeeper.io/reapply-qualities": "true"} if reapply else {}
    return {"apiVersion": "game.kruise.io/v1alpha1", "kind": "GameServerSet",
            "metadata": {"name": name, "namespace": "default", "annotations": annotations},
            "spec": {"replicas": 1,
                     "gameServerTemplate": {"spec": {"containers": [{"name": "main", "image": "arena:1"}]}},
                     "serviceQualities": [idle, health]}}


def _workdir(fleet: Fleet, pod: str) -> Path:
    return fleet.state_dir / "pods" / "default" / pod / "main"


@pytest.mark.slow
def test_health_and_idle_end_none_after_a_short_stall_when_reapplied(fleet: Fleet) -> None:
    images = custom_images(fleet, {"arena:1": {"command": ["sleep", "100000"]}})
    (images.parent / "images" / "arena_1" / "state").write_text("active\n")
    fleet.start()
    applied = fleet.apply_yaml(_arena("fixed", reapply=True), "fixed.yaml")
    assert "'idle' and 'health' both write the GameServer's spec.opsState" in applied.stderr
    assert "'idle' and 'health'" in fleet.apply_yaml(_arena("plain", reapply=False), "plain.yaml").stderr
    servers = ("fixed-0", "plain-0")
    def settled(gs: dict[str, Any], n: str) -> bool:
        conds = {c["name"]: c for c in (gs.get(n) or {}).get("status", {}).get("serviceQualitiesConditions") or []}
        return (ops(gs[n]) == "None" and conds.get("idle", {}).get("result") == "active"
                and conds.get("health", {}).get("status") == "True")

    # Both qualities must have reported before the stall: None is also what a server starts with.
    fleet.wait_gs("both None after first results", lambda gs: all(n in gs and settled(gs, n) for n in servers), 60)

    for name in servers:
        (_workdir(fleet, name) / "stalled").write_text("")
    fleet.wait_gs("both Maintaining", lambda gs: all(ops(gs[n]) == "Maintaining" for n in servers), 30)
    for name in servers:
        (_workdir(fleet, name) / "stalled").unlink()

    def healthy(gs: dict[str, Any]) -> bool:
        conds = {c["name"]: c.get("status") for c in gs["status"].get("serviceQualitiesConditions") or []}
        return conds.get("health") == "True"

    last = fleet.wait_gs("health recovered on both", lambda gs: all(healthy(gs[n]) for n in servers), 30)
    fleet.wait_gs("fixed-0 None", lambda gs: ops(gs["fixed-0"]) == "None", 15)
    # Without the annotation nothing re-acts: the stall's Maintaining outlives it (upstream's behaviour too).
    assert ops(last["plain-0"]) == "Maintaining"
    idle = {c["name"]: c for c in last["fixed-0"]["status"]["serviceQualitiesConditions"]}["idle"]
    assert idle["status"] == "True" and idle["result"] == "active"  # idle never reported the stall


@pytest.mark.slow
def test_a_junk_probe_result_keeps_label_and_ops_state_valid_with_one_warning(fleet: Fleet) -> None:
    custom_images(fleet, {"junk:1": {"command": ["sleep", "100000"]}})
    # 578 bytes with control characters (the attack's probe), printed on every run.
    script = "python3 -c \"import sys; sys.stdout.write(('\\x01\\x07\\x1b[31mjunk' * 60)[:578])\""
    doc = {"apiVersion": "game.kruise.io/v1alpha1", "kind": "GameServerSet",
           "metadata": {"name": "junk", "namespace": "default"},
           "spec": {"replicas": 1,
                    "gameServerTemplate": {"spec": {"containers": [{"name": "main", "image": "junk:1"}]}},
                    "serviceQualities": [_quality("r", [{"state": True, "opsState": "{{.Result}}",
                                                        "labels": {"r": "{{.Result}}"}}],
                                                  exec={"command": ["sh", "-c", script]})]}}
    fleet.start()
    fleet.apply_yaml(doc)
    state = SqliteState(fleet.state_dir)

    def warned() -> bool:
        return any(e.reason == "InvalidRenderedValue" for e in state.list_events(name="junk-0"))

    wait_for(warned, "an InvalidRenderedValue warning", 60)
    time.sleep(3)  # three more probe periods: the same result must not raise the warning again
    warnings = [e for e in state.list_events(name="junk-0") if e.reason == "InvalidRenderedValue"]
    assert len(warnings) == 1 and warnings[0].count == 1 and warnings[0].type == "Warning"
    assert "labels[r]" in warnings[0].message and "opsState" in warnings[0].message
    gs = fleet.gameservers()["junk-0"]
    assert ops(gs) == "None" and "r" not in gs["metadata"]["labels"]
    assert len(gs["status"]["serviceQualitiesConditions"][0]["result"]) >= 500  # the probe did report it
    pod = fleet.pods()["junk-0"]
    assert pod["metadata"]["labels"]["game.kruise.io/gs-opsState"] == "None"
