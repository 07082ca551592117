"""The seed's two scenarios in Kubernetes mode, against the emulator, through both probe paths.

Path "exec": no OpenKruise; the operator probes through pods/exec, answered like the demo scripts.
Path "kruise": the PodProbeMarker CRD exists; the operator maintains one PPM per set and never execs; the
test's kruise-daemon runs the PPM's probes and writes the pod conditions.
"""

from __future__ import annotations

import asyncio
import logging

import pytest

from gamekeeper.kube.resources import GAME_SERVER_SET
from tests.kube.conftest import Cluster, seed_yaml
from tests.kube.fakes import HEALTHY_PROBE, IDLE_PROBE
from tests.kube.printing import get_gs, get_gss

pytestmark = pytest.mark.asyncio

GS_HEADER = ["NAME", "STATE", "OPSSTATE", "DP", "UP"]


@pytest.fixture(params=["exec", "kruise"])
def probe_path(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def start(cluster: Cluster, probe_path: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="gamekeeper")
    if probe_path == "kruise":
        cluster.install_kruise()
    cluster.start_operator()


def probe_log(caplog: pytest.LogCaptureFixture) -> str:
    return "\n".join(r.getMessage() for r in caplog.records if r.getMessage().startswith("probe path:"))


def assert_probe_path(cluster: Cluster, probe_path: str, caplog: pytest.LogCaptureFixture, command: list[str]) -> None:
    line = probe_log(caplog)
    if probe_path == "exec":
        assert "exec through the API" in line, line
        probes = [r for r in cluster.emulator.exec_requests if r[3] == command]
        assert probes, "the operator never probed through pods/exec"
        assert cluster.world.all("Pod")  # sanity: pods exist
    else:
        assert "OpenKruise PodProbeMarker" in line, line
        assert not [r for r in cluster.emulator.exec_requests if r[3] == command], "path (a) must not probe by exec"
        assert cluster.daemon is not None and cluster.daemon.writes > 0


async def test_idle_servers_wait_to_be_deleted_and_scale_in_keeps_the_busy_one(
    cluster: Cluster, probe_path: str, caplog: pytest.LogCaptureFixture
) -> None:
    start(cluster, probe_path, caplog)
    await cluster.apply(seed_yaml("minecraft.yaml"))
    names = ["minecraft-0", "minecraft-1", "minecraft-2"]
    await cluster.eventually("all idle servers WaitToBeDeleted", lambda: all(
        cluster.gs_summary().get(n) == ("Ready", "WaitToBeDeleted") for n in names))
    assert get_gs(cluster.world.all("GameServer")) == [
        GS_HEADER,
        ["minecraft-0", "Ready", "WaitToBeDeleted", "0", "0"],
        ["minecraft-1", "Ready", "WaitToBeDeleted", "0", "0"],
        ["minecraft-2", "Ready", "WaitToBeDeleted", "0", "0"],
    ]
    # Upstream's pod labels, so cluster tools see what upstream shows (spec §2.4). The GameServer's spec
    # reaches its pod one reconcile later, as upstream.
    await cluster.eventually("pod labels", lambda: cluster.world.find("Pod", "default", "minecraft-1")[
        "metadata"]["labels"].get("game.kruise.io/gs-opsState") == "WaitToBeDeleted")
    pod = cluster.world.find("Pod", "default", "minecraft-1")
    assert pod["metadata"]["labels"]["game.kruise.io/owner-gss"] == "minecraft"
    assert pod["metadata"]["labels"]["game.kruise.io/gs-opsState"] == "WaitToBeDeleted"
    assert pod["metadata"]["labels"]["game.kruise.io/gs-state"] == "Ready"
    assert pod["metadata"]["labels"]["game.kruise.io/gs-delete-priority"] == "0"
    assert pod["metadata"]["labels"]["game.kruise.io/gs-update-priority"] == "0"
    assert "game.kruise.io/opsState-last-changed-time" in pod["metadata"]["annotations"]
    conditions = {c["type"]: c for c in pod["status"]["conditions"]}
    assert conditions["game.kruise.io/idle"]["message"] == "idle\n"

    # A player joins minecraft-1, as `kubectl exec minecraft-1 -- ./player.sh join alice`.
    joined = await cluster.client().exec("default", "minecraft-1", "minecraft", ["./player.sh", "join", "alice"], 5)
    assert joined.exit_code == 0 and b"alice joined" in joined.stdout
    await cluster.eventually("minecraft-1 None", lambda: cluster.gs_summary()["minecraft-1"] == ("Ready", "None"))
    assert get_gs(cluster.world.all("GameServer"))[1:] == [
        ["minecraft-0", "Ready", "WaitToBeDeleted", "0", "0"],
        ["minecraft-1", "Ready", "None", "0", "0"],
        ["minecraft-2", "Ready", "WaitToBeDeleted", "0", "0"],
    ]
    await cluster.eventually("pod label follows", lambda: cluster.world.find("Pod", "default", "minecraft-1")[
        "metadata"]["labels"]["game.kruise.io/gs-opsState"] == "None")

    # `kubectl scale gss minecraft --replicas 1` (the scale subresource).
    deletes_before = len(_pod_deletes(cluster))
    await cluster.client().patch(GAME_SERVER_SET, "default", "minecraft", {"spec": {"replicas": 1}}, "scale")
    await cluster.eventually("only minecraft-1 left", lambda: list(cluster.gameservers()) == ["minecraft-1"])
    assert get_gs(cluster.world.all("GameServer"))[1:] == [["minecraft-1", "Ready", "None", "0", "0"]]
    # Exactly the pods the shared core chose were deleted, each once.
    assert sorted(_pod_deletes(cluster)[deletes_before:]) == ["minecraft-0", "minecraft-2"]
    assert [p["metadata"]["name"] for p in cluster.world.all("Pod")] == ["minecraft-1"]
    assert cluster.games.players["minecraft-1"] == ["alice"]

    assert [e["note"] for e in cluster.events(kind="GameServer", name="minecraft-1", reason="GsStateChanged")
            if "OpsState" in e["note"]] == ["OpsState turn from None to WaitToBeDeleted ",
                                            "OpsState turn from WaitToBeDeleted to None "]
    assert any(e["note"] == "scale from 3 to 1" for e in cluster.events(kind="GameServerSet", reason="Scale"))
    await cluster.eventually("gss status", lambda: get_gss(cluster.world.all("GameServerSet"))[1][1:3] == ["1", "1"])
    assert get_gss(cluster.world.all("GameServerSet"))[0] == [
        "NAME", "DESIRED", "CURRENT", "UPDATED", "READY", "MAINTAINING", "WAITTOBEDELETED", "PREDELETE"]
    assert_probe_path(cluster, probe_path, caplog, IDLE_PROBE)


async def test_unhealthy_server_turns_maintaining_with_a_warning_event(
    cluster: Cluster, probe_path: str, caplog: pytest.LogCaptureFixture
) -> None:
    start(cluster, probe_path, caplog)
    await cluster.apply(seed_yaml("demo-gs.yaml"))
    names = ["demo-gs-0", "demo-gs-1", "demo-gs-2"]
    await cluster.eventually("all healthy servers None", lambda: all(
        cluster.gs_summary().get(n) == ("Ready", "None") for n in names))
    assert get_gs(cluster.world.all("GameServer")) == [
        GS_HEADER,
        ["demo-gs-0", "Ready", "None", "0", "0"],
        ["demo-gs-1", "Ready", "None", "0", "0"],
        ["demo-gs-2", "Ready", "None", "0", "0"],
    ]
    fault = await cluster.client().exec("default", "demo-gs-0", "minecraft", ["./fault.sh"], 5)
    assert b"fault injected" in fault.stdout
    await cluster.eventually("demo-gs-0 Maintaining", lambda: cluster.gs_summary()["demo-gs-0"][1] == "Maintaining")
    assert get_gs(cluster.world.all("GameServer"))[1:] == [
        ["demo-gs-0", "Ready", "Maintaining", "0", "0"],
        ["demo-gs-1", "Ready", "None", "0", "0"],
        ["demo-gs-2", "Ready", "None", "0", "0"],
    ]
    await cluster.eventually("the Warning event", lambda: bool(cluster.events(type="Warning")))
    warnings = cluster.events(type="Warning")
    assert [(e["reason"], e["regarding"]["kind"], e["regarding"]["name"], e["note"]) for e in warnings] == [
        ("GsStateChanged", "GameServer", "demo-gs-0", "OpsState turn from None to Maintaining ")]
    assert warnings[0]["apiVersion"] == "events.k8s.io/v1" and warnings[0]["reportingController"]
    await cluster.eventually("gss MAINTAINING 1", lambda: get_gss(cluster.world.all("GameServerSet"))[1][5] == "1")
    gs = cluster.gameservers()["demo-gs-0"]
    sq = gs["status"]["serviceQualitiesConditions"][0]
    assert sq["name"] == "healthy" and sq["result"] == "unhealthy" and sq["status"] == "True"

    # Recovery is edge-triggered back to None.
    await cluster.client().exec("default", "demo-gs-0", "minecraft", ["./recover.sh"], 5)
    await cluster.eventually("demo-gs-0 back to None", lambda: cluster.gs_summary()["demo-gs-0"][1] == "None")
    assert_probe_path(cluster, probe_path, caplog, HEALTHY_PROBE)
    await asyncio.sleep(0)


def _pod_deletes(cluster: Cluster) -> list[str]:
    return [r.name for r in cluster.emulator.requests_for("DELETE", "pods") if r.name]
