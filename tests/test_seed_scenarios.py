"""The seed's two scenarios end to end: real controller, real game-server processes, the real `gk` CLI."""

from __future__ import annotations

import re

import pytest

from tests.fleet import Fleet, ops, seed_yaml, state

pytestmark = pytest.mark.slow

GS_HEADER = re.compile(r"^NAME\s+STATE\s+OPSSTATE\s+DP\s+UP\s+AGE$")


def table_rows(text: str) -> list[list[str]]:
    lines = text.strip().splitlines()
    assert GS_HEADER.match(lines[0]), lines[0]
    return [line.split()[:5] for line in lines[1:]]


def test_idle_servers_wait_to_be_deleted_and_scale_in_keeps_the_busy_one(fleet: Fleet) -> None:
    fleet.start()
    out = fleet.apply_yaml(seed_yaml("minecraft.yaml"))
    assert "gameserverset.game.kruise.io/minecraft created" in out.stdout
    names = ["minecraft-0", "minecraft-1", "minecraft-2"]
    fleet.wait_gs(
        "all idle servers WaitToBeDeleted",
        lambda gs: all(n in gs and state(gs[n]) == "Ready" and ops(gs[n]) == "WaitToBeDeleted" for n in names),
    )
    assert table_rows(fleet.gk("get", "gs").stdout) == [
        ["minecraft-0", "Ready", "WaitToBeDeleted", "0", "0"],
        ["minecraft-1", "Ready", "WaitToBeDeleted", "0", "0"],
        ["minecraft-2", "Ready", "WaitToBeDeleted", "0", "0"],
    ]

    joined = fleet.gk("exec", "minecraft-1", "--", "./player.sh", "join", "alice")
    assert joined.returncode == 0
    fleet.wait_gs("minecraft-1 None", lambda gs: ops(gs["minecraft-1"]) == "None")
    assert table_rows(fleet.gk("get", "gs").stdout) == [
        ["minecraft-0", "Ready", "WaitToBeDeleted", "0", "0"],
        ["minecraft-1", "Ready", "None", "0", "0"],
        ["minecraft-2", "Ready", "WaitToBeDeleted", "0", "0"],
    ]

    fleet.gk("scale", "gss", "minecraft", "--replicas", "1")
    fleet.wait_gs("only minecraft-1 left", lambda gs: list(gs) == ["minecraft-1"])
    assert table_rows(fleet.gk("get", "gs").stdout) == [["minecraft-1", "Ready", "None", "0", "0"]]
    # The player is still connected to the server that was kept.
    assert "alice" in fleet.gk("exec", "minecraft-1", "--", "./player.sh", "list").stdout

    events = fleet.gk("events", "--for", "gs/minecraft-1").stdout
    assert "OpsState turn from WaitToBeDeleted to None" in events
    gss_events = fleet.gk("events", "--for", "gss/minecraft").stdout
    assert "scale from 3 to 1" in gss_events

    gss_table = fleet.gk("get", "gss").stdout.splitlines()
    assert gss_table[0].split() == [
        "NAME", "DESIRED", "CURRENT", "UPDATED", "READY", "MAINTAINING", "WAITTOBEDELETED", "PREDELETE", "AGE"
    ]


def test_unhealthy_server_turns_maintaining_with_a_warning_event(fleet: Fleet) -> None:
    fleet.start()
    fleet.apply_yaml(seed_yaml("demo-gs.yaml"))
    names = ["demo-gs-0", "demo-gs-1", "demo-gs-2"]
    fleet.wait_gs(
        "all healthy servers None, by the probe's verdict (None is also the initial opsState)",
        lambda gs: all(n in gs and state(gs[n]) == "Ready" and ops(gs[n]) == "None"
                       and gs[n]["status"]["serviceQualitiesConditions"][0].get("result") == "healthy"
                       for n in names),
    )
    assert table_rows(fleet.gk("get", "gs").stdout) == [
        ["demo-gs-0", "Ready", "None", "0", "0"],
        ["demo-gs-1", "Ready", "None", "0", "0"],
        ["demo-gs-2", "Ready", "None", "0", "0"],
    ]
    assert "fault injected" in fleet.gk("exec", "demo-gs-0", "--", "./fault.sh").stdout
    fleet.wait_gs("demo-gs-0 Maintaining", lambda gs: ops(gs["demo-gs-0"]) == "Maintaining")
    assert table_rows(fleet.gk("get", "gs").stdout) == [
        ["demo-gs-0", "Ready", "Maintaining", "0", "0"],
        ["demo-gs-1", "Ready", "None", "0", "0"],
        ["demo-gs-2", "Ready", "None", "0", "0"],
    ]
    warnings = fleet.gk("events", "--type", "Warning").stdout
    assert re.search(r"Warning\s+GsStateChanged\s+gameserver/demo-gs-0\s+OpsState turn from None to Maintaining",
                     warnings), warnings
    assert "Normal" not in warnings
    status = fleet.gk("get", "gss", "demo-gs").stdout.splitlines()[1].split()
    assert status[5] == "1"  # MAINTAINING

    describe = fleet.gk("describe", "gs", "demo-gs-0").stdout
    assert "Service Qualities:" in describe
    assert "'unhealthy'" in describe
    assert "OpsState turn from None to Maintaining" in describe

    # Recovery is edge-triggered back to None.
    fleet.gk("exec", "demo-gs-0", "--", "./recover.sh")
    fleet.wait_gs("demo-gs-0 back to None", lambda gs: ops(gs["demo-gs-0"]) == "None")
