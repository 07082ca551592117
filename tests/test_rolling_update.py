"""Rolling updates end to end (spec §5): the real controller, real processes, real SQLite, the real CLI.

Images are tiny: a directory holding a VERSION file and a shell command, so two "versions" of an image are two
directories. `gk rollout` is run as `python -c "...rollout_app()"` so that these tests do not depend on its
registration in cli/main.py (see test_rollout_is_registered_in_gk).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from gamekeeper.api.models import (
    GS_DELETE_PRIORITY_KEY,
    GS_OPS_STATE_KEY,
    GS_UPDATE_PRIORITY_KEY,
    LIFECYCLE_STATE_KEY,
    OWNER_GSS_KEY,
)
from gamekeeper.control.gameserverset import GameServerSetController
from gamekeeper.control.workload import REVISION_KIND, WorkloadController
from gamekeeper.core.update import INPLACE_STATE_KEY, UPDATING_CONTAINERS_KEY, pod_ready, revision_name
from gamekeeper.store.sqlite import SqliteState, SqliteStore
from tests.fleet import Fleet, wait_for

slow = pytest.mark.slow

SERVE = ["sh", "-c", "echo started $(cat VERSION); exec sleep 100000"]
# Ignores SIGTERM, so each deletion takes the whole grace period (1 s): rollout windows are wide enough to sample.
STUBBORN = ["sh", "-c", "trap '' TERM; echo started $(cat VERSION); while true; do sleep 1; done"]
IMAGES: dict[str, tuple[str, list[str]]] = {
    "game:v1": ("1", SERVE),
    "game:v2": ("2", SERVE),
    "game:v3": ("3", SERVE),
    "stubborn:v1": ("1", STUBBORN),
    "stubborn:v2": ("2", STUBBORN),
    "side:1": ("side", ["sleep", "100000"]),
}
ROLLOUT = "from gamekeeper.cli.rollout import rollout_app; rollout_app(prog_name='gk rollout')"


# --- helpers ---------------------------------------------------------------------------------------------------


def use_test_images(fleet: Fleet) -> None:
    entries = {}
    for ref, (version, command) in IMAGES.items():
        directory = fleet.tmp / "images" / ref.replace(":", "_")
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "VERSION").write_text(version + "\n")
        entries[ref] = {"path": str(directory), "command": command}
    path = fleet.tmp / "images.yaml"
    path.write_text(yaml.safe_dump({"images": entries}))
    fleet.env["GAMEKEEPER_IMAGES"] = str(path)


def gss(name: str, replicas: int, containers: list[tuple[str, str]], rolling: dict[str, Any] | None = None,
        reclaim: str | None = None) -> dict[str, Any]:
    template: dict[str, Any] = {"spec": {
        "terminationGracePeriodSeconds": 1,
        "containers": [{"name": c, "image": image} for c, image in containers],
    }}
    if reclaim:
        template["reclaimPolicy"] = reclaim
    spec: dict[str, Any] = {"replicas": replicas, "gameServerTemplate": template}
    if rolling is not None:
        spec["updateStrategy"] = {"rollingUpdate": rolling}
    return {"apiVersion": "game.kruise.io/v1alpha1", "kind": "GameServerSet",
            "metadata": {"name": name, "namespace": "default"}, "spec": spec}


def rollout(fleet: Fleet, *args: str, check: bool = True, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([sys.executable, "-c", ROLLOUT, *args], capture_output=True, text=True, env=fleet.env,
                          timeout=timeout, check=False)
    if check and proc.returncode != 0:
        raise AssertionError(f"gk rollout {' '.join(args)} -> {proc.returncode}\n{proc.stdout}\n{proc.stderr}\n"
                             f"--- log:\n{fleet.log()[-4000:]}")
    return proc


def pods(state: SqliteState, name: str) -> dict[str, dict[str, Any]]:
    return {p["metadata"]["name"]: p for p in state.list("Pod", "default", {OWNER_GSS_KEY: name})}


def game_servers(state: SqliteState, name: str) -> dict[str, dict[str, Any]]:
    return {g["metadata"]["name"]: g for g in state.list("GameServer", "default", {OWNER_GSS_KEY: name})}


def labels(obj: dict[str, Any]) -> dict[str, str]:
    return dict(obj["metadata"].get("labels") or {})


def revision(pod: dict[str, Any]) -> str:
    return labels(pod).get("controller-revision-hash", "")


def container(pod: dict[str, Any], name: str) -> dict[str, Any]:
    return next(c for c in (pod.get("status") or {}).get("containerStatuses") or [] if c["name"] == name)


def cid(pod: dict[str, Any], name: str) -> str:
    return str(container(pod, name).get("containerID"))


def uid(obj: dict[str, Any]) -> str:
    return str(obj["metadata"]["uid"])


def wait_ready(fleet: Fleet, state: SqliteState, name: str, replicas: int, timeout: float = 60) -> None:
    def ok() -> bool:
        p, g = pods(state, name), game_servers(state, name)
        return (len(p) == replicas and all(pod_ready(x) and not x["metadata"].get("deletionTimestamp")
                                           for x in p.values())
                and len(g) == replicas and all((x.get("status") or {}).get("currentState") == "Ready"
                                               for x in g.values()))
    try:
        wait_for(ok, f"{replicas} ready game servers of {name}", timeout)
    except AssertionError:
        raise AssertionError(f"{name} not ready\n--- log:\n{fleet.log()[-4000:]}") from None


def events(state: SqliteState, kind: str, name: str, reason: str | None = None) -> list[str]:
    return [e.message for e in state.list_events("default", kind, name) if reason is None or e.reason == reason]


class UnavailableSampler(threading.Thread):
    """Reads the pods every few milliseconds; records the most game servers ever unavailable at once."""

    def __init__(self, state_dir: Path, name: str, replicas: int) -> None:
        super().__init__(daemon=True)
        self.state = SqliteState(state_dir)
        self.name, self.replicas = name, replicas
        self.worst = 0
        self.samples = 0
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.is_set():
            current = pods(self.state, self.name).values()
            up = sum(1 for p in current if not p["metadata"].get("deletionTimestamp") and pod_ready(p)
                     and labels(p).get(LIFECYCLE_STATE_KEY) not in ("PreparingUpdate", "Updating"))
            self.worst = max(self.worst, self.replicas - up)
            self.samples += 1
            time.sleep(0.01)

    def stop(self) -> None:
        self.halt.set()
        self.join(5)
        self.state.close()


# --- ReCreate --------------------------------------------------------------------------------------------------


@slow
def test_recreate_stays_within_max_unavailable_and_leaves_the_partition(fleet: Fleet) -> None:
    use_test_images(fleet)
    fleet.start()
    rolling = {"maxUnavailable": 2, "partition": 2}
    fleet.apply_yaml(gss("rc", 5, [("main", "stubborn:v1")], rolling))
    state = SqliteState(fleet.state_dir)
    wait_ready(fleet, state, "rc", 5)
    old = {n: revision(p) for n, p in pods(state, "rc").items()}
    assert len(set(old.values())) == 1
    old_gs = {n: uid(g) for n, g in game_servers(state, "rc").items()}

    sampler = UnavailableSampler(fleet.state_dir, "rc", 5)
    sampler.start()
    try:
        fleet.apply_yaml(gss("rc", 5, [("main", "stubborn:v2")], rolling))
        out = rollout(fleet, "status", "gss", "rc", "--timeout", "60").stdout
        assert "partitioned roll out complete: 3 new game servers have been updated" in out
        now = pods(state, "rc")
        # Equal update priorities: the higher ordinals go first, so the partition keeps rc-0 and rc-1.
        assert sorted(n for n, p in now.items() if revision(p) == old["rc-0"]) == ["rc-0", "rc-1"]
        new_revision = revision(now["rc-4"])
        assert new_revision != old["rc-0"]
        assert all(container(now[n], "main")["image"] == "stubborn:v2" for n in ("rc-2", "rc-3", "rc-4"))
        # ReCreate under reclaimPolicy Cascade: the updated servers' GameServers were made anew.
        wait_for(lambda: len(game_servers(state, "rc")) == 5, "game servers back")
        gs = game_servers(state, "rc")
        assert uid(gs["rc-0"]) == old_gs["rc-0"] and uid(gs["rc-4"]) != old_gs["rc-4"]

        fleet.gk("patch", "gss", "rc", "-p", json.dumps({"spec": {"updateStrategy": {"rollingUpdate": {
            "partition": 0}}}}))
        out = rollout(fleet, "status", "gss", "rc", "--timeout", "60").stdout
        assert f"rolling update complete 5 game servers at revision {new_revision}" in out
    finally:
        sampler.stop()
    assert {revision(p) for p in pods(state, "rc").values()} == {new_revision}
    assert sampler.samples > 50
    assert sampler.worst <= 2, f"{sampler.worst} game servers were unavailable at once (maxUnavailable 2)"
    assert sampler.worst == 2, "two servers at a time should have been updated"
    table = fleet.gk("get", "gss", "rc").stdout.splitlines()
    assert table[0].split()[:5] == ["NAME", "DESIRED", "CURRENT", "UPDATED", "READY"]
    wait_for(lambda: fleet.gk("get", "gss", "rc").stdout.splitlines()[1].split()[1:5] == ["5", "5", "5", "5"],
             "gss UPDATED 5 READY 5", 20)
    assert len(events(state, "GameServerSet", "rc", "SuccessfulDelete")) == 5


# --- in place --------------------------------------------------------------------------------------------------


@slow
def test_in_place_update_keeps_the_game_server_and_restarts_only_the_changed_container(fleet: Fleet) -> None:
    use_test_images(fleet)
    fleet.start()
    rolling = {"podUpdatePolicy": "InPlaceIfPossible"}
    fleet.apply_yaml(gss("ip", 2, [("main", "game:v1"), ("side", "side:1")], rolling))
    state = SqliteState(fleet.state_dir)
    wait_ready(fleet, state, "ip", 2)
    fleet.gk("patch", "gs", "ip-0", "--type", "merge", "-p",
             '{"spec":{"opsState":"Allocated","deletionPriority":7,"updatePriority":3}}')
    wait_for(lambda: labels(pods(state, "ip")["ip-0"]).get(GS_UPDATE_PRIORITY_KEY) == "3", "priorities on the pod")
    before = pods(state, "ip")
    before_gs = game_servers(state, "ip")
    scheduled = next(c for c in before["ip-0"]["status"]["conditions"] if c["type"] == "PodScheduled")

    fleet.apply_yaml(gss("ip", 2, [("main", "game:v2"), ("side", "side:1")], rolling))
    rollout(fleet, "status", "gss", "ip", "--timeout", "60")

    after = pods(state, "ip")
    gs = game_servers(state, "ip")
    for name in ("ip-0", "ip-1"):
        assert uid(after[name]) == uid(before[name]), "the pod record is kept"
        assert uid(gs[name]) == uid(before_gs[name]), "the GameServer is kept"
        assert cid(after[name], "side") == cid(before[name], "side"), "the unchanged container is not restarted"
        assert container(after[name], "side")["restartCount"] == 0
        main = container(after[name], "main")
        assert main["containerID"] != cid(before[name], "main") and main["image"] == "game:v2"
        assert main["restartCount"] == 1 and "running" in main["state"]
        assert after[name]["spec"]["containers"][0]["image"] == "game:v2"
        assert labels(after[name])[LIFECYCLE_STATE_KEY] == "Normal"
        assert UPDATING_CONTAINERS_KEY not in (after[name]["metadata"].get("annotations") or {})
        assert json.loads(after[name]["metadata"]["annotations"][INPLACE_STATE_KEY])["lastContainerIDs"] == {
            "main": cid(before[name], "main")}
    assert gs["ip-0"]["spec"]["opsState"] == "Allocated" and gs["ip-0"]["spec"]["deletionPriority"] == 7
    pod_labels = labels(after["ip-0"])
    assert (pod_labels[GS_OPS_STATE_KEY], pod_labels[GS_DELETE_PRIORITY_KEY], pod_labels[GS_UPDATE_PRIORITY_KEY]) == (
        "Allocated", "7", "3")
    assert next(c for c in after["ip-0"]["status"]["conditions"] if c["type"] == "PodScheduled") == scheduled
    wait_for(lambda: game_servers(state, "ip")["ip-0"]["status"]["currentState"] == "Ready", "ip-0 Ready", 20)

    # The GameServer went through PreUpdate and Updating, and back to Ready.
    transitions = events(state, "GameServer", "ip-0", "GsStateChanged")
    assert transitions[-3:] == ["State turn from Ready to PreUpdate ", "State turn from PreUpdate to Updating ",
                                "State turn from Updating to Ready "], transitions
    # updatePriority 3 put ip-0 first although its ordinal is lower.
    updates = events(state, "GameServerSet", "ip", "SuccessfulUpdatePodInPlace")
    assert [m.split()[3] for m in updates] == ["ip-0", "ip-1"]
    # A new image is a fresh copy of the image directory; the log goes on across the restart.
    assert fleet.gk("exec", "ip-0", "-c", "main", "--", "cat", "VERSION").stdout.strip() == "2"
    log = fleet.gk("logs", "ip-0", "-c", "main").stdout
    assert log.index("started 1") < log.index("started 2")


@slow
def test_in_place_if_possible_recreates_when_more_than_images_change(fleet: Fleet) -> None:
    use_test_images(fleet)
    fleet.start()
    rolling = {"podUpdatePolicy": "InPlaceIfPossible"}
    fleet.apply_yaml(gss("cmd", 1, [("main", "game:v1")], rolling))
    state = SqliteState(fleet.state_dir)
    wait_ready(fleet, state, "cmd", 1)
    fleet.gk("patch", "gs", "cmd-0", "-p", '{"spec":{"opsState":"Allocated"}}')
    wait_for(lambda: labels(pods(state, "cmd")["cmd-0"]).get(GS_OPS_STATE_KEY) == "Allocated", "Allocated on pod")
    before_pod, before_gs = pods(state, "cmd")["cmd-0"], game_servers(state, "cmd")["cmd-0"]

    doc = gss("cmd", 1, [("main", "game:v2")], rolling)
    doc["spec"]["gameServerTemplate"]["spec"]["containers"][0]["command"] = [
        "sh", "-c", "echo changed $(cat VERSION); exec sleep 100000"]
    fleet.apply_yaml(doc)
    rollout(fleet, "status", "gss", "cmd", "--timeout", "60")
    wait_ready(fleet, state, "cmd", 1)

    pod, gs = pods(state, "cmd")["cmd-0"], game_servers(state, "cmd")["cmd-0"]
    assert uid(pod) != uid(before_pod), "a command change cannot be made in place: the pod was recreated"
    # Under reclaimPolicy Cascade the GameServer goes with its pod and comes back with the defaults (upstream).
    assert uid(gs) != uid(before_gs) and gs["spec"]["opsState"] == "None"
    assert LIFECYCLE_STATE_KEY not in labels(pod)
    assert "changed 2" in fleet.gk("logs", "cmd-0").stdout
    assert any("cmd-0" in m for m in events(state, "GameServerSet", "cmd", "SuccessfulDelete"))
    assert not events(state, "GameServerSet", "cmd", "SuccessfulUpdatePodInPlace")


@slow
def test_in_place_only_refuses_other_changes_with_a_warning_and_takes_image_changes(fleet: Fleet) -> None:
    use_test_images(fleet)
    fleet.start()
    rolling = {"podUpdatePolicy": "InPlaceOnly", "maxUnavailable": "100%"}
    fleet.apply_yaml(gss("only", 2, [("main", "game:v1")], rolling))
    state = SqliteState(fleet.state_dir)
    wait_ready(fleet, state, "only", 2)
    before = pods(state, "only")

    doc = gss("only", 2, [("main", "game:v1")], rolling)
    doc["spec"]["gameServerTemplate"]["spec"]["containers"][0]["env"] = [{"name": "MODE", "value": "hard"}]
    fleet.apply_yaml(doc)

    def warned() -> bool:
        return "FailedUpdatePodInPlace" in fleet.gk("events", "--for", "gss/only", "--type", "Warning").stdout
    wait_for(warned, "a Warning event on the GameServerSet", 30)
    warning = events(state, "GameServerSet", "only", "FailedUpdatePodInPlace")
    assert len(warning) == 1, warning
    assert "can not update in-place" in warning[0] and "spec.containers[main].env" in warning[0]
    time.sleep(1.5)  # give it every chance to do something wrong
    now = pods(state, "only")
    for name in before:
        assert uid(now[name]) == uid(before[name]) and cid(now[name], "main") == cid(before[name], "main")
        assert revision(now[name]) == revision(before[name])
    assert len(events(state, "GameServerSet", "only", "FailedUpdatePodInPlace")) == 1, "warned once, not per pass"
    status = rollout(fleet, "status", "gss", "only", "--no-watch", check=False)
    assert status.returncode == 1 and "0 out of 2 new game servers" in status.stdout

    # An image-only change (from the pods' own revision) can be made in place.
    fleet.apply_yaml(gss("only", 2, [("main", "game:v2")], rolling))
    rollout(fleet, "status", "gss", "only", "--timeout", "60")
    now = pods(state, "only")
    for name in before:
        assert uid(now[name]) == uid(before[name]) and cid(now[name], "main") != cid(before[name], "main")
        assert container(now[name], "main")["image"] == "game:v2"


# --- pause, resume, priorities ---------------------------------------------------------------------------------


@slow
def test_pause_stops_the_rollout_and_resume_continues_it(fleet: Fleet) -> None:
    use_test_images(fleet)
    fleet.start()
    fleet.apply_yaml(gss("pz", 3, [("main", "game:v1")], {"maxUnavailable": 1}))
    state = SqliteState(fleet.state_dir)
    wait_ready(fleet, state, "pz", 3)
    before = pods(state, "pz")

    assert rollout(fleet, "pause", "gss", "pz").stdout.strip() == "gameserverset.game.kruise.io/pz paused"
    again = rollout(fleet, "pause", "gss", "pz", check=False)
    assert again.returncode == 1 and "already paused" in again.stderr
    fleet.gk("patch", "gss", "pz", "-p", json.dumps({"spec": {"gameServerTemplate": {"spec": {"containers": [
        {"name": "main", "image": "game:v2"}]}}}}))
    old_revision = revision(before["pz-0"])
    wait_for(lambda: (state.get("Workload", "default", "pz") or {}).get("status", {}).get("updateRevision")
             not in (None, old_revision), "the new revision seen by the workload controller")
    time.sleep(2)
    assert {n: uid(p) for n, p in pods(state, "pz").items()} == {n: uid(p) for n, p in before.items()}
    status = rollout(fleet, "status", "gss", "pz", "--no-watch", check=False)
    assert status.returncode == 1 and "0 out of 3" in status.stdout and "(paused)" in status.stdout

    assert rollout(fleet, "resume", "gss", "pz").stdout.strip() == "gameserverset.game.kruise.io/pz resumed"
    again = rollout(fleet, "resume", "gss", "pz", check=False)
    assert again.returncode == 1 and "not paused" in again.stderr
    out = rollout(fleet, "status", "gss", "pz", "--timeout", "60").stdout
    assert "rolling update complete 3 game servers" in out
    assert all(uid(p) != uid(before[n]) for n, p in pods(state, "pz").items())
    assert rollout(fleet, "status", "gss", "pz", "--no-watch").returncode == 0


@slow
def test_higher_update_priority_goes_first_partition_by_partition(fleet: Fleet) -> None:
    use_test_images(fleet)
    fleet.start()
    rolling: dict[str, Any] = {"podUpdatePolicy": "InPlaceIfPossible", "partition": 3}
    fleet.apply_yaml(gss("pri", 3, [("main", "game:v1")], rolling))
    state = SqliteState(fleet.state_dir)
    wait_ready(fleet, state, "pri", 3)
    fleet.gk("patch", "gs", "pri-0", "-p", '{"spec":{"updatePriority":10}}')
    wait_for(lambda: labels(pods(state, "pri")["pri-0"]).get(GS_UPDATE_PRIORITY_KEY) == "10", "priority label")
    old = revision(pods(state, "pri")["pri-0"])

    def updated() -> list[str]:
        return sorted(n for n, p in pods(state, "pri").items() if revision(p) != old)

    fleet.apply_yaml(gss("pri", 3, [("main", "game:v2")], {**rolling, "partition": 2}))
    rollout(fleet, "status", "gss", "pri", "--timeout", "60")
    assert updated() == ["pri-0"], "the highest updatePriority first"
    for partition, expected in ((1, ["pri-0", "pri-2"]), (0, ["pri-0", "pri-1", "pri-2"])):
        fleet.gk("patch", "gss", "pri", "-p", json.dumps({"spec": {"updateStrategy": {"rollingUpdate": {
            "partition": partition}}}}))
        rollout(fleet, "status", "gss", "pri", "--timeout", "60")
        assert updated() == expected, "equal priorities: the higher ordinal first"


# --- per-GameServer image --------------------------------------------------------------------------------------


@slow
def test_game_server_image_overrides_the_template(fleet: Fleet) -> None:
    use_test_images(fleet)
    fleet.start()
    rolling = {"podUpdatePolicy": "InPlaceIfPossible"}
    fleet.apply_yaml(gss("ov", 1, [("main", "game:v1"), ("side", "side:1")], rolling, reclaim="Delete"))
    state = SqliteState(fleet.state_dir)
    wait_ready(fleet, state, "ov", 1)
    before, gs_uid = pods(state, "ov")["ov-0"], uid(game_servers(state, "ov")["ov-0"])

    fleet.gk("patch", "gs", "ov-0", "-p", '{"spec":{"containers":[{"name":"main","image":"game:v2"}]}}')

    def main_runs(image: str, not_id: str | None = None) -> bool:
        pod = pods(state, "ov").get("ov-0")
        if pod is None or not (pod.get("status") or {}).get("containerStatuses"):
            return False
        main = container(pod, "main")
        return (main.get("image") == image and "running" in main["state"] and pod_ready(pod)
                and main.get("containerID") != not_id)

    wait_for(lambda: main_runs("game:v2", cid(before, "main")), "main restarted on the GameServer's image", 30)
    pod = pods(state, "ov")["ov-0"]
    assert uid(pod) == uid(before) and pod["spec"]["containers"][0]["image"] == "game:v2"
    assert cid(pod, "side") == cid(before, "side")
    assert fleet.gk("exec", "ov-0", "--", "cat", "VERSION").stdout.strip() == "2"

    # A new pod of this GameServer (reclaimPolicy Delete keeps it) is created with its image straight away.
    fleet.gk("delete", "pod", "ov-0")
    wait_for(lambda: (p := pods(state, "ov").get("ov-0")) is not None and uid(p) != uid(before)
             and main_runs("game:v2"), "ov-0 recreated", 30)
    pod = pods(state, "ov")["ov-0"]
    assert container(pod, "main")["restartCount"] == 0
    assert uid(game_servers(state, "ov")["ov-0"]) == gs_uid

    # An in-place update of the template image leaves an overridden container alone: no restart at all.
    running_id = cid(pod, "main")
    fleet.apply_yaml(gss("ov", 1, [("main", "game:v3"), ("side", "side:1")], rolling, reclaim="Delete"))
    rollout(fleet, "status", "gss", "ov", "--timeout", "60")
    pod = pods(state, "ov")["ov-0"]
    assert revision(pod) == state.get("Workload", "default", "ov")["status"]["updateRevision"]  # type: ignore[index]
    assert cid(pod, "main") == running_id and pod["spec"]["containers"][0]["image"] == "game:v2"


# --- the CLI without a fleet -----------------------------------------------------------------------------------


def test_rollout_cli_errors(fleet: Fleet) -> None:
    use_test_images(fleet)
    missing = rollout(fleet, "status", "gss", "nope", check=False)
    assert missing.returncode == 1 and 'gameserverset.game.kruise.io "nope" not found' in missing.stderr
    wrong = rollout(fleet, "pause", "gs", "x", check=False)
    assert wrong.returncode == 1 and "rollout works on gss" in wrong.stderr
    doc = gss("od", 1, [("main", "game:v1")])
    doc["spec"]["updateStrategy"] = {"type": "OnDelete"}
    fleet.apply_yaml(doc)
    on_delete = rollout(fleet, "pause", "gss", "od", check=False)
    assert on_delete.returncode == 1 and "OnDelete" in on_delete.stderr


def test_rollout_is_registered_in_gk(fleet: Fleet) -> None:
    if "rollout" not in fleet.gk("--help").stdout:
        pytest.skip("`gk rollout` is not registered in cli/main.py yet (app.add_typer(rollout_app, name='rollout'))")
    out = fleet.gk("rollout", "--help").stdout
    assert all(word in out for word in ("status", "pause", "resume"))


# --- the GameServerSet controller's copy of the strategy --------------------------------------------------------


def test_a_key_removed_from_the_set_is_removed_from_the_workload(tmp_path: Path) -> None:
    async def main() -> dict[str, Any]:
        state = SqliteState(tmp_path)
        store = SqliteStore(state)
        controller = GameServerSetController(store, lambda: datetime.now(UTC))
        state.create(gss("x", 1, [("main", "game:v1")], {"paused": True, "maxUnavailable": 1}))
        await controller.reconcile("default", "x")
        current = state.get("GameServerSet", "default", "x")
        assert current is not None
        current["spec"]["updateStrategy"] = {"rollingUpdate": {"maxUnavailable": 1}}  # resumed by re-applying
        state.replace(current)
        await controller.reconcile("default", "x")
        workload = state.get("Workload", "default", "x")
        assert workload is not None
        return dict(workload["spec"]["updateStrategy"])

    assert asyncio.run(main()) == {"rollingUpdate": {"maxUnavailable": 1}}


# --- revisions, in process (no processes needed) ---------------------------------------------------------------


def test_workload_revisions_are_kept_renumbered_on_rollback_and_pruned(tmp_path: Path) -> None:
    async def main() -> None:
        state = SqliteState(tmp_path)
        store = SqliteStore(state)
        controller = WorkloadController(store, lambda: datetime.now(UTC))
        gss_controller = GameServerSetController(store, lambda: datetime.now(UTC))
        doc = gss("w", 2, [("main", "game:v1")], {"paused": True})
        state.create(doc)
        await gss_controller.reconcile("default", "w")  # creates the workload
        workload = state.get("Workload", "default", "w")
        assert workload is not None
        # A pod made by an earlier version carries the set's templateHash: it is relabelled, not restarted.
        legacy = {"apiVersion": "v1", "kind": "Pod", "metadata": {
            "name": "w-0", "namespace": "default",
            "labels": {OWNER_GSS_KEY: "w", "controller-revision-hash": workload["spec"]["templateHash"]}},
            "spec": workload["spec"]["template"]["spec"]}
        state.create(legacy)
        await controller.reconcile("default", "w")
        first = revision_name("w", workload["spec"]["template"])
        assert revision(pods(state, "w")["w-0"]) == first
        assert revision(pods(state, "w")["w-1"]) == first  # created
        assert state.get(REVISION_KIND, "default", first)["revision"] == 1  # type: ignore[index]

        def set_image(image: str) -> str:
            current = state.get("GameServerSet", "default", "w")
            assert current is not None
            current["spec"]["gameServerTemplate"]["spec"]["containers"][0]["image"] = image
            state.replace(current)
            return image

        for image in ("game:v2", "game:v3"):
            set_image(image)
            await gss_controller.reconcile("default", "w")
            await controller.reconcile("default", "w")
        names = {r["metadata"]["name"]: r["revision"] for r in state.list(REVISION_KIND, "default")}
        assert len(names) == 3 and names[first] == 1 and sorted(names.values()) == [1, 2, 3]
        status = state.get("Workload", "default", "w")["status"]  # type: ignore[index]
        assert status["currentRevision"] == first and status["updatedReplicas"] == 0  # paused: nothing moved
        set_image("game:v1")  # back to the first template: the same revision, made newest again
        await gss_controller.reconcile("default", "w")
        await controller.reconcile("default", "w")
        names = {r["metadata"]["name"]: r["revision"] for r in state.list(REVISION_KIND, "default")}
        assert names[first] == 4 and len(names) == 3
        assert state.get("Workload", "default", "w")["status"]["updatedReplicas"] == 2  # type: ignore[index]

        # Old revisions nobody uses are pruned beyond the history limit; they go with the workload.
        for i in range(12):
            set_image(f"game:x{i}")
            await gss_controller.reconcile("default", "w")
            await controller.reconcile("default", "w")
        assert len(state.list(REVISION_KIND, "default")) == 10 + 2  # history + the two in use
        state.delete("Workload", "default", "w")
        assert state.list(REVISION_KIND, "default") == []

    asyncio.run(main())
