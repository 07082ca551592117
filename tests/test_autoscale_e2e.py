"""Autoscaling end to end: a real controller, real game-server processes, the real `gk` CLI, no `gk scale`."""

from __future__ import annotations

import json

import pytest
import yaml

from tests.fleet import EXAMPLES, Fleet, ops, seed_yaml, state

pytestmark = pytest.mark.slow


def scaled_object() -> dict[str, object]:
    # The example's 10 s scale-down window also covers the seconds before alice's join is probed: the fast
    # probes below (first after 3 s) may see minecraft-1 idle once.
    doc = yaml.safe_load((EXAMPLES / "minecraft-scaledobject.yaml").read_text())
    doc["spec"]["pollingInterval"] = 1
    return dict(doc)


def scale_events(fleet: Fleet, name: str) -> list[str]:
    out = fleet.gk("events", "--for", f"so/{name}").stdout
    return [line for line in out.splitlines() if " Scale " in line]


def test_idle_servers_leave_by_themselves_and_the_busy_one_stays(fleet: Fleet) -> None:
    fleet.start()
    gss = seed_yaml("minecraft.yaml")
    fleet.apply_yaml(yaml.safe_dump(gss) + "---\n" + yaml.safe_dump(scaled_object()))
    first = fleet.wait_gs("minecraft-1 Ready", lambda gs: state(gs.get("minecraft-1", {})) == "Ready")
    uid = first["minecraft-1"]["metadata"]["uid"]
    assert fleet.gk("exec", "minecraft-1", "--", "./player.sh", "join", "alice").returncode == 0
    last = fleet.wait_gs("only minecraft-1 is left", lambda gs: list(gs) == ["minecraft-1"])
    assert last["minecraft-1"]["metadata"]["uid"] == uid and ops(last["minecraft-1"]) == "None"
    assert any("from 3 to 1" in line and "2 WaitToBeDeleted" in line for line in scale_events(fleet, "minecraft"))
    so = json.loads(fleet.gk("get", "so", "minecraft", "-o", "json").stdout)
    assert so["status"]["desiredReplicas"] == 1 and so["status"]["lastScaleTime"]
    decisions = [line for line in fleet.log().splitlines() if "autoscale decision" in line]
    assert any("total=3" in d and "none=1" in d and "waitToBeDeleted=2" in d and "desired=1" in d for d in decisions), (
        decisions[-5:])


def test_min_available_keeps_a_free_server_and_max_available_caps_them(fleet: Fleet) -> None:
    fleet.start()
    docs = list(yaml.safe_load_all((EXAMPLES / "players.yaml").read_text()))
    docs[0]["spec"]["replicas"] = 1
    docs[1]["spec"]["pollingInterval"] = 1
    docs[1]["spec"]["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]["scaleDown"][
        "stabilizationWindowSeconds"] = 2
    docs[1]["spec"]["triggers"][0]["metadata"].update(minAvailable="1", maxAvailable="1")
    fleet.apply_yaml(yaml.safe_dump_all(docs))

    def result(g: dict[str, object]) -> object:
        conditions = (g.get("status") or {}).get("serviceQualitiesConditions") or [{}]  # type: ignore[attr-defined]
        return conditions[0].get("result")

    fleet.wait_gs("players-0 free (0 players)", lambda gs: list(gs) == ["players-0"] and result(gs["players-0"]) == "0")
    assert fleet.gk("exec", "players-0", "--", "./player.sh", "join", "alice").returncode == 0
    fleet.wait_gs("players-0 Allocated and a new free players-1", lambda gs: ops(gs.get("players-0", {})) == "Allocated"
                  and list(gs) == ["players-0", "players-1"] and ops(gs["players-1"]) == "None")
    assert fleet.gk("exec", "players-0", "--", "./player.sh", "leave", "alice").returncode == 0
    fleet.wait_gs("two free servers capped to one", lambda gs: list(gs) == ["players-0"] and result(
        gs["players-0"]) == "0")
    lines = scale_events(fleet, "players")
    assert any("from 1 to 2" in line and "minAvailable 1" in line for line in lines), lines
    assert any("from 2 to 1" in line and "maxAvailable 1" in line for line in lines), lines
