"""Scaling, Kill, reserved ids, reclaim policies and history, end to end through the CLI."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml

from tests.fleet import Fleet, ops, seed_yaml, state, wait_for
from tests.test_resilience import custom_images, gss_doc

pytestmark = pytest.mark.slow


def sleeper_fleet(fleet: Fleet, name: str = "pool", replicas: int = 3, **spec: Any) -> dict[str, Any]:
    custom_images(fleet, {"sleeper:1": {"command": ["sleep", "100000"]}})
    doc = gss_doc(name, "sleeper:1", replicas=replicas)
    doc["spec"]["gameServerTemplate"]["spec"]["terminationGracePeriodSeconds"] = 1
    doc["spec"].update(spec)
    fleet.start()
    fleet.apply_yaml(doc)
    return doc


def names_are(expected: list[str]) -> Any:
    return lambda gs: sorted(gs) == sorted(expected) and all(state(g) == "Ready" for g in gs.values())


def gss(fleet: Fleet, name: str) -> dict[str, Any]:
    return json.loads(fleet.gk("get", "gss", name, "-o", "json").stdout)  # type: ignore[no-any-return]


def test_kill_lowers_replicas_and_removes_exactly_that_server(fleet: Fleet) -> None:
    sleeper_fleet(fleet)
    fleet.wait_gs("three ready", names_are(["pool-0", "pool-1", "pool-2"]))
    fleet.gk("patch", "gs", "pool-0", "--type", "merge", "-p", '{"spec":{"opsState":"Kill"}}')
    fleet.wait_gs("pool-0 gone", names_are(["pool-1", "pool-2"]))
    assert gss(fleet, "pool")["spec"]["replicas"] == 2


def test_scale_in_honours_opsstate_then_deletion_priority_then_ordinal(fleet: Fleet) -> None:
    sleeper_fleet(fleet, replicas=5)
    fleet.wait_gs("five ready", names_are([f"pool-{i}" for i in range(5)]))
    fleet.gk("patch", "gs", "pool-4", "-p", '{"spec":{"opsState":"Maintaining"}}')
    fleet.gk("patch", "gs", "pool-3", "-p", '{"spec":{"opsState":"Allocated"}}')
    fleet.gk("patch", "gs", "pool-0", "-p", '{"spec":{"deletionPriority":10}}')
    fleet.gk("patch", "gs", "pool-1", "-p", '{"spec":{"opsState":"WaitToBeDeleted"}}')
    wait_for(lambda: "10" in fleet.gk("get", "gs", "pool-0").stdout.split(), "DP column shows 10", 30)
    fleet.gk("scale", "gss", "pool", "--replicas", "3")
    # WaitToBeDeleted first (pool-1), then among None the higher deletionPriority (pool-0).
    fleet.wait_gs("pool-1 and pool-0 removed", names_are(["pool-2", "pool-3", "pool-4"]))
    fleet.gk("scale", "gss", "pool", "--replicas", "2")
    # None (pool-2) before Allocated (pool-3) before Maintaining (pool-4).
    fleet.wait_gs("pool-2 removed", names_are(["pool-3", "pool-4"]))
    fleet.gk("scale", "gss", "pool", "--replicas", "1")
    fleet.wait_gs("Allocated before Maintaining", names_are(["pool-4"]))
    fleet.gk("scale", "gss", "pool", "--replicas", "3")
    # Scale-out fills the lowest free ordinals.
    fleet.wait_gs("refilled 0 and 1", names_are(["pool-0", "pool-1", "pool-4"]))


def test_reserved_ids_general_and_reserve_ids_backfill(fleet: Fleet) -> None:
    doc = sleeper_fleet(fleet, replicas=3)
    fleet.wait_gs("three ready", names_are(["pool-0", "pool-1", "pool-2"]))
    doc["spec"]["reserveGameServerIds"] = [1]
    fleet.apply_yaml(doc)
    fleet.wait_gs("id 1 reserved, 3 created", names_are(["pool-0", "pool-2", "pool-3"]))
    assert gss(fleet, "pool")["metadata"]["annotations"]["game.kruise.io/reserve-ids"] == "1"

    doc["spec"]["reserveGameServerIds"] = ["1-2"]
    doc["spec"]["scaleStrategy"] = {"scaleDownStrategyType": "ReserveIds"}
    doc["spec"]["replicas"] = 2
    fleet.apply_yaml(doc)
    fleet.wait_gs("range 1-2 reserved", names_are(["pool-0", "pool-3"]))
    fleet.gk("scale", "gss", "pool", "--replicas", "1")
    fleet.wait_gs("highest ordinal removed", names_are(["pool-0"]))
    # ReserveIds mode writes the removed ordinal back into the spec.
    wait_for(lambda: gss(fleet, "pool")["spec"].get("reserveGameServerIds") == ["1-3"], "backfilled ids", 30)


def test_reclaim_policy_delete_keeps_the_gameserver_across_pod_recreation(fleet: Fleet) -> None:
    custom_images(fleet, {"sleeper:1": {"command": ["sleep", "100000"]}})
    delete = gss_doc("keep", "sleeper:1", replicas=1)
    delete["spec"]["gameServerTemplate"]["reclaimPolicy"] = "Delete"
    delete["spec"]["gameServerTemplate"]["spec"]["terminationGracePeriodSeconds"] = 1
    cascade = gss_doc("fresh", "sleeper:1", replicas=1)
    cascade["spec"]["gameServerTemplate"]["spec"]["terminationGracePeriodSeconds"] = 1
    fleet.start()
    fleet.apply_yaml(delete, "delete.yaml")
    fleet.apply_yaml(cascade, "cascade.yaml")
    fleet.wait_gs("both ready", names_are(["keep-0", "fresh-0"]))
    for name in ("keep-0", "fresh-0"):
        fleet.gk("patch", "gs", name, "-p", '{"spec":{"opsState":"Allocated","deletionPriority":7}}')
    fleet.wait_gs("both Allocated", lambda gs: all(ops(g) == "Allocated" for g in gs.values()))
    uids = {n: g["metadata"]["uid"] for n, g in fleet.gameservers().items()}
    pod_uids = {n: p["metadata"]["uid"] for n, p in fleet.pods().items()}
    for name in ("keep-0", "fresh-0"):
        fleet.gk("delete", "pod", name)

    def recreated() -> bool:
        pods = fleet.pods()
        return len(pods) == 2 and all(p["metadata"]["uid"] != pod_uids[n] for n, p in pods.items())

    wait_for(recreated, "pods recreated", 60)
    gs = fleet.wait_gs("both ready again", lambda gs: len(gs) == 2 and all(state(g) == "Ready" for g in gs.values())
                       and gs["fresh-0"]["metadata"]["uid"] != uids["fresh-0"])
    assert gs["keep-0"]["metadata"]["uid"] == uids["keep-0"]
    assert ops(gs["keep-0"]) == "Allocated" and gs["keep-0"]["spec"]["deletionPriority"] == 7
    assert ops(gs["fresh-0"]) == "None" and gs["fresh-0"]["spec"]["deletionPriority"] == 0
    # Under Delete, scale-in marks the GameServer and it goes with its pod.
    fleet.gk("scale", "gss", "keep", "--replicas", "0")
    fleet.wait_gs("keep-0 gone", lambda gs: "keep-0" not in gs)


def test_history_and_timeline_in_describe(fleet: Fleet) -> None:
    fleet.start()
    fleet.apply_yaml(seed_yaml("minecraft.yaml") | {"spec": {**seed_yaml("minecraft.yaml")["spec"], "replicas": 1}})
    fleet.wait_gs("WaitToBeDeleted", lambda gs: ops(gs.get("minecraft-0", {})) == "WaitToBeDeleted")
    fleet.gk("exec", "minecraft-0", "--", "./player.sh", "join", "ann")
    fleet.wait_gs("None", lambda gs: ops(gs["minecraft-0"]) == "None")
    fleet.gk("patch", "gs", "minecraft-0", "-p", '{"spec":{"opsState":"Allocated"}}')
    wait_for(lambda: "manual" in fleet.gk("describe", "gs", "minecraft-0").stdout, "manual change recorded", 30)
    text = fleet.gk("describe", "gs", "minecraft-0").stdout
    assert "Service Quality History" in text
    assert "'idle'" in text and "'active'" in text and "opsState=None" in text and "opsState=WaitToBeDeleted" in text
    timeline = json.loads(fleet.gk("get", "gs", "minecraft-0", "-o", "json").stdout)["status"]["opsStateHistory"]
    assert [(e["from"], e["to"], e["by"]) for e in timeline] == [
        ("", "None", "created"),
        ("None", "WaitToBeDeleted", "serviceQuality:idle"),
        ("WaitToBeDeleted", "None", "serviceQuality:idle"),
        ("None", "Allocated", "manual"),
    ]
    # A manual change is not reverted while the probe keeps saying the same (edge-triggered).
    assert ops(fleet.gameservers()["minecraft-0"]) == "Allocated"


def test_near_miss_opsstate_is_refused_with_a_suggestion(fleet: Fleet) -> None:
    fleet.apply_yaml(seed_yaml("minecraft.yaml"))
    doc = seed_yaml("minecraft.yaml")
    doc["spec"]["serviceQualities"][0]["serviceQualityAction"][0]["opsState"] = "waittobedeleted"
    path = fleet.tmp / "typo.yaml"
    path.write_text(yaml.safe_dump(doc))
    proc = fleet.gk("apply", "-f", str(path), check=False)
    assert proc.returncode != 0
    assert "did you mean 'WaitToBeDeleted'?" in proc.stderr
    custom = fleet.tmp / "custom.yaml"
    doc["spec"]["serviceQualities"][0]["serviceQualityAction"][0]["opsState"] = "Draining"
    custom.write_text(yaml.safe_dump(doc))
    proc = fleet.gk("apply", "-f", str(custom))
    assert "custom opsState" in proc.stderr and "configured" in proc.stdout
