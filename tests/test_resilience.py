"""Controller crashes, container crashes and hanging probes, with real processes."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import pytest
import yaml

from gamekeeper.runtime.local import alive
from tests.fleet import EXAMPLES, Fleet, ops, processes_under, seed_yaml, state, wait_for

pytestmark = pytest.mark.slow


def container_ids(fleet: Fleet) -> dict[str, str]:
    return {
        name: pod["status"]["containerStatuses"][0]["containerID"]
        for name, pod in fleet.pods().items()
        if pod.get("status", {}).get("containerStatuses") and "containerID" in pod["status"]["containerStatuses"][0]
    }


def server_processes(fleet: Fleet) -> list[int]:
    out = []
    for pid in processes_under(fleet.state_dir / "pods"):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"server.py" in cmdline and b"gk-container" not in cmdline:
            out.append(pid)
    return out


def test_controller_killed_mid_run_neither_loses_nor_duplicates_game_servers(fleet: Fleet) -> None:
    fleet.start()
    fleet.apply_yaml(seed_yaml("minecraft.yaml"))
    fleet.wait_gs("all WaitToBeDeleted", lambda gs: len(gs) == 3 and all(
        ops(g) == "WaitToBeDeleted" and state(g) == "Ready" for g in gs.values()))
    before = container_ids(fleet)
    assert len(before) == 3 and len(server_processes(fleet)) == 3

    fleet.kill_controller(signal.SIGKILL)
    assert all(alive(cid) for cid in before.values()), "game servers must survive the controller"

    # While no controller runs: a player joins one server, and another server's process dies.
    fleet.gk("exec", "minecraft-1", "--", "./player.sh", "join", "bob")
    victim_dir = str((fleet.state_dir / "pods/default/minecraft-2").resolve())
    victim = [p for p in server_processes(fleet) if os.readlink(f"/proc/{p}/cwd").startswith(victim_dir)]
    assert len(victim) == 1
    os.kill(victim[0], signal.SIGKILL)  # the game process crashes; its supervisor shell records how
    wait_for(lambda: not alive(before["minecraft-2"]), "minecraft-2 to die")

    fleet.start()
    fleet.wait_gs("minecraft-1 None after restart", lambda gs: ops(gs["minecraft-1"]) == "None")
    wait_for(lambda: len(container_ids(fleet)) == 3 and alive(container_ids(fleet)["minecraft-2"]),
             "minecraft-2 restarted", 60)
    after = container_ids(fleet)
    assert after["minecraft-0"] == before["minecraft-0"]  # adopted, not restarted
    assert after["minecraft-1"] == before["minecraft-1"]
    assert after["minecraft-2"] != before["minecraft-2"]  # it had died: started again, once
    pods = fleet.pods()
    assert pods["minecraft-0"]["status"]["containerStatuses"][0]["restartCount"] == 0
    restarted = pods["minecraft-2"]["status"]["containerStatuses"][0]
    assert restarted["restartCount"] == 1
    assert restarted["lastState"]["terminated"]["exitCode"] == 137
    wait_for(lambda: len(server_processes(fleet)) == 3, "exactly three game server processes", 30)
    assert sorted(fleet.gameservers()) == ["minecraft-0", "minecraft-1", "minecraft-2"]

    # The restarted controller still scales by the probe's verdict.
    fleet.gk("scale", "gss", "minecraft", "--replicas", "1")
    fleet.wait_gs("only the busy server left", lambda gs: list(gs) == ["minecraft-1"])
    wait_for(lambda: len(server_processes(fleet)) == 1, "stopped servers' processes gone", 30)


def custom_images(fleet: Fleet, extra: dict[str, dict[str, Any]]) -> Path:
    """The example image map plus small test images (each an empty directory and a command)."""
    data = yaml.safe_load((EXAMPLES / "images.yaml").read_text())
    images = {ref: {**entry, "path": str((EXAMPLES / entry["path"]).resolve())} for ref, entry in
              data["images"].items()}
    for ref, entry in extra.items():
        directory = fleet.tmp / "images" / ref.replace(":", "_").replace("/", "_")
        directory.mkdir(parents=True, exist_ok=True)
        images[ref] = {"path": str(directory), **entry}
    path = fleet.tmp / "images.yaml"
    path.write_text(yaml.safe_dump({"images": images}))
    fleet.env["GAMEKEEPER_IMAGES"] = str(path)
    return path


def gss_doc(name: str, image: str, qualities: list[dict[str, Any]] | None = None,
            restart_policy: str | None = None, replicas: int = 1) -> dict[str, Any]:
    pod_spec: dict[str, Any] = {"containers": [{"name": "main", "image": image}]}
    if restart_policy:
        pod_spec["restartPolicy"] = restart_policy
    spec: dict[str, Any] = {"replicas": replicas, "gameServerTemplate": {"spec": pod_spec}}
    if qualities:
        spec["serviceQualities"] = qualities
    return {"apiVersion": "game.kruise.io/v1alpha1", "kind": "GameServerSet",
            "metadata": {"name": name, "namespace": "default"}, "spec": spec}


def test_hanging_probe_is_killed_with_its_process_group(fleet: Fleet) -> None:
    custom_images(fleet, {"sleeper:1": {"command": ["sleep", "100000"]}})
    fleet.start()
    fleet.apply_yaml(gss_doc("hang", "sleeper:1", [{
        "name": "slow", "permanent": False, "initialDelaySeconds": 1, "periodSeconds": 2, "timeoutSeconds": 1,
        "failureThreshold": 1,
        "exec": {"command": ["bash", "-c", "sleep 3011 & sleep 3012; echo never"]},
        "serviceQualityAction": [{"state": False, "opsState": "Maintaining"}],
    }]))
    gs = fleet.wait_gs("hang-0 Maintaining", lambda gs: "hang-0" in gs and ops(gs["hang-0"]) == "Maintaining")
    condition = gs["hang-0"]["status"]["serviceQualitiesConditions"][0]
    assert condition["status"] == "False"
    assert "timed out after 1s" in condition["result"]

    def probe_leftovers() -> list[int]:
        found = []
        for pid in processes_under(fleet.state_dir):
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
            if b"3011" in cmd or b"3012" in cmd:
                found.append(pid)
        return found

    # Each probe run leaves nothing behind once it is killed (a new one may be running right now).
    wait_for(lambda: not probe_leftovers(), "no probe processes outliving their timeout", 10, 0.05)
    assert fleet.controller is not None
    zombies = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                stat = Path(f"/proc/{entry.name}/stat").read_bytes().rsplit(b")", 1)[1].split()
            except OSError:
                continue
            if stat[0] == b"Z" and int(stat[1]) == fleet.controller.pid:
                zombies.append(int(entry.name))
    assert zombies == []


def test_crashing_container_restarts_with_backoff(fleet: Fleet) -> None:
    custom_images(fleet, {"crasher:1": {"command": ["sh", "-c", "echo starting; sleep 1; exit 3"]}})
    fleet.start()
    fleet.apply_yaml(gss_doc("crash", "crasher:1"))

    def restarts() -> int:
        pod = fleet.pods().get("crash-0") or {}
        statuses = pod.get("status", {}).get("containerStatuses") or [{}]
        return int(statuses[0].get("restartCount", 0))

    wait_for(lambda: restarts() >= 2, "two restarts", 60)
    status = fleet.pods()["crash-0"]["status"]["containerStatuses"][0]
    assert status["lastState"]["terminated"]["exitCode"] == 3
    assert fleet.gk("logs", "crash-0").stdout.count("starting") >= 2
    events = fleet.gk("events", "--for", "gs/crash-0").stdout
    assert "State turn from Ready to NotReady" in events


def test_failed_pod_with_restart_policy_never_is_a_crash_with_a_warning(fleet: Fleet) -> None:
    custom_images(fleet, {"oneshot:1": {"command": ["sh", "-c", "sleep 2; exit 1"]}})
    fleet.start()
    fleet.apply_yaml(gss_doc("once", "oneshot:1", restart_policy="Never"))
    fleet.wait_gs("once-0 Crash", lambda gs: "once-0" in gs and state(gs["once-0"]) == "Crash")
    warnings = fleet.gk("events", "--type", "Warning").stdout
    assert "State turn from Ready to Crash" in warnings
    assert fleet.pods()["once-0"]["status"]["phase"] == "Failed"


def test_deleting_a_pod_recreates_it_on_the_same_ordinal(fleet: Fleet) -> None:
    fleet.start()
    fleet.apply_yaml(seed_yaml("demo-gs.yaml"))
    fleet.wait_gs("three None", lambda gs: len(gs) == 3 and all(ops(g) == "None" and state(g) == "Ready"
                                                                for g in gs.values()))
    old = container_ids(fleet)["demo-gs-1"]
    fleet.gk("delete", "pod", "demo-gs-1")
    wait_for(lambda: "demo-gs-1" in container_ids(fleet) and container_ids(fleet)["demo-gs-1"] != old
             and alive(container_ids(fleet)["demo-gs-1"]), "demo-gs-1 recreated", 60)
    assert not alive(old)
    fleet.wait_gs("demo-gs-1 Ready again", lambda gs: state(gs.get("demo-gs-1", {})) == "Ready")
    assert sorted(fleet.gameservers()) == ["demo-gs-0", "demo-gs-1", "demo-gs-2"]
