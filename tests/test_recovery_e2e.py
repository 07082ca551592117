"""Automatic recovery with real processes (docs/recovery.md): seed scenario 2 repaired, attempts that cannot
succeed escalating to people, the set's budget, and a controller SIGKILLed mid-recovery."""

from __future__ import annotations

import contextlib
import random
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.fleet import EXAMPLES, Fleet, ops, state, wait_for
from tests.test_notify_e2e import Receiver

pytestmark = pytest.mark.slow


def recovery_yaml(replicas: int = 3, **recovery: Any) -> dict[str, Any]:
    """examples/demo-gs-recovery.yaml with fast probes, and `recovery` fields overridden."""
    doc: dict[str, Any] = yaml.safe_load((EXAMPLES / "demo-gs-recovery.yaml").read_text())
    doc["spec"]["replicas"] = replicas
    sq = doc["spec"]["serviceQualities"][0]
    sq["initialDelaySeconds"] = 3
    sq["periodSeconds"] = 1
    policy = recovery.pop("policy", None)
    if policy is not None:
        doc["spec"]["recoveryPolicy"] = policy
    action = sq["serviceQualityAction"][1]
    if recovery.pop("no_ops_state", False):
        action.pop("opsState")
    action["recovery"].update(recovery)
    return doc


def free_port() -> int:
    """A free port below Linux's ephemeral range, so that no game server's ephemeral port can take it first."""
    rng = random.Random()
    for _ in range(100):
        port = rng.randrange(20000, 32000)
        with socket.socket() as s, contextlib.suppress(OSError):
            s.bind(("127.0.0.1", port))
            return port
    raise AssertionError("no free port")


def record(gs: dict[str, Any]) -> dict[str, Any]:
    return dict((gs.get("status") or {}).get("recovery") or {})


def result(gs: dict[str, Any]) -> str | None:
    conditions = (gs.get("status") or {}).get("serviceQualitiesConditions") or [{}]
    value = conditions[0].get("result")
    return None if value is None else str(value)


def all_healthy(names: list[str]) -> Any:
    return lambda gs: all(n in gs and state(gs[n]) == "Ready" and result(gs[n]) == "healthy" for n in names)


def workdir(fleet: Fleet, name: str) -> Path:
    return fleet.state_dir / "pods" / "default" / name / "minecraft"


def fault(fleet: Fleet, name: str) -> None:
    out = subprocess.run(["./fault.sh"], cwd=workdir(fleet, name), capture_output=True, text=True, check=True)
    assert "fault injected" in out.stdout, out.stdout + out.stderr


def stamp(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    r.thread.start()
    yield r
    r.server.shutdown()
    r.server.server_close()


def _line(sock: socket.socket) -> str:
    data = b""
    while not data.endswith(b"\n"):
        chunk = sock.recv(1024)
        if not chunk:
            break
        data += chunk
    return data.decode().strip()


def test_killed_helper_is_repaired_game_and_player_untouched(fleet: Fleet) -> None:
    metrics_port = free_port()
    fleet.start("--metrics-addr", f"127.0.0.1:{metrics_port}")
    fleet.apply_yaml(recovery_yaml())
    names = ["demo-gs-0", "demo-gs-1", "demo-gs-2"]
    fleet.wait_gs("every server healthy", all_healthy(names))
    game_pid = (workdir(fleet, "demo-gs-0") / "server.pid").read_text().strip()
    port = int((workdir(fleet, "demo-gs-0") / "server.port").read_text())
    player = socket.create_connection(("127.0.0.1", port), timeout=10)
    player.sendall(b"JOIN alice\n")
    assert _line(player) == "OK alice"

    assert "fault injected" in fleet.gk("exec", "demo-gs-0", "--", "./fault.sh").stdout
    gs = fleet.wait_gs("demo-gs-0 repaired by its recovery",
                       lambda gs: record(gs["demo-gs-0"]).get("phase") == "Healthy"
                       and result(gs["demo-gs-0"]) == "healthy", timeout=60)
    rec = record(gs["demo-gs-0"])
    assert rec["attempt"] == 1 and [e["outcome"] for e in rec["history"]] == ["Succeeded"]
    assert rec["history"][0]["kind"] == "exec" and "recovered: started helper pid" in rec["history"][0]["output"]
    # Judged by the next probe results (period 1 s): two periods, plus whole-second stamps and a loaded machine.
    assert (stamp(rec["history"][0]["judgedAt"]) - stamp(rec["history"][0]["finishedAt"])).total_seconds() <= 5
    fleet.wait_gs("demo-gs-0 back to None", lambda gs: ops(gs["demo-gs-0"]) == "None", timeout=20)
    assert all(not record(gs[n]) for n in names[1:])

    assert (workdir(fleet, "demo-gs-0") / "server.pid").read_text().strip() == game_pid
    assert Path(f"/proc/{game_pid}").exists()
    status = socket.create_connection(("127.0.0.1", port), timeout=10)
    status.sendall(b"STATUS\n")
    assert _line(status) == "PLAYERS 1 alice"
    player.sendall(b"LEAVE\n")
    assert _line(player) == "BYE"  # the player's own connection was never dropped

    describe = fleet.gk("describe", "gs", "demo-gs-0").stdout
    assert re.search(r"Recovery:\s+Healthy \(quality healthy, attempts 1\)", describe), describe
    assert re.search(r"1\s+exec\s+\S+ ago\s+\S+ ago\s+Succeeded\s+recovered: started helper pid", describe), describe
    assert re.search(r"Maintaining\s+None\s+serviceQuality:healthy", describe), describe
    events = fleet.gk("events", "--for", "gs/demo-gs-0").stdout
    assert "RecoveryStarted" in events and "RecoverySucceeded" in events, events
    wide = fleet.gk("get", "gs", "-o", "wide").stdout
    assert wide.splitlines()[0].split()[-1] == "RECOVERY"
    assert next(x for x in wide.splitlines() if x.startswith("demo-gs-0")).split()[-1] == "Healthy(1)"
    assert 'recovery decision gss="demo-gs" gs="demo-gs-0" decision="start"' in fleet.log()

    metrics = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).read().decode()
    for outcome in ("started", "succeeded"):
        assert (f'gamekeeper_recoveries_total{{kind="exec",outcome="{outcome}",quality="healthy",set="demo-gs"}} 1.0'
                in metrics), metrics
    assert 'gamekeeper_recoveries_in_flight{set="demo-gs"} 0.0' in metrics


def test_failing_recovery_backs_off_then_escalates_to_people(fleet: Fleet, receiver: Receiver) -> None:
    notify = fleet.tmp / "notify.yaml"
    notify.write_text(yaml.safe_dump({"sinks": [{"type": "webhook", "urlFrom": {"env": "GK_TEST_WEBHOOK"}}]}))
    fleet.env["GK_TEST_WEBHOOK"] = receiver.url + "/webhook"
    fleet.start("--notify", str(notify))
    fleet.apply_yaml(recovery_yaml(
        replicas=1, policy={}, no_ops_state=True, attempts=2, backoffSeconds=3, successWithinSeconds=4,
        steps=[{"kind": "exec", "command": ["bash", "-c", "echo run >> runs.log; echo cannot repair; exit 3"]}]))
    fleet.wait_gs("healthy", all_healthy(["demo-gs-0"]))
    fault(fleet, "demo-gs-0")
    gs = fleet.wait_gs("escalated", lambda gs: ops(gs["demo-gs-0"]) == "Maintaining"
                       and record(gs["demo-gs-0"]).get("phase") == "Exhausted", timeout=60)
    rec = record(gs["demo-gs-0"])
    history = rec["history"]
    assert [e["outcome"] for e in history] == ["Failed", "Failed"] and [e["exitCode"] for e in history] == [3, 3]
    assert "cannot repair" in history[0]["output"]
    gap = (stamp(history[1]["startedAt"]) - stamp(history[0]["finishedAt"])).total_seconds()
    assert gap >= 2, history  # backoffSeconds 3, whole-second stamps
    assert rec["escalation"] == {"opsState": "Maintaining", "applied": True}
    timeline = gs["demo-gs-0"]["status"]["opsStateHistory"]
    assert timeline[-1]["to"] == "Maintaining" and timeline[-1]["by"] == "recovery:healthy", timeline

    wait_for(lambda: any(b["event"]["reason"] == "RecoveryFailed" for _, b in receiver.requests),
             "the RecoveryFailed Warning delivered", 30)
    delivered = next(b for _, b in receiver.requests if b["event"]["reason"] == "RecoveryFailed")
    assert delivered["event"]["type"] == "Warning" and "gave up after 2 attempt(s)" in delivered["event"]["message"]
    events = fleet.gk("events", "--for", "gs/demo-gs-0").stdout
    assert events.count("RecoveryStarted") == 2 and events.count("RecoveryAttemptFailed") == 1, events
    # Nothing more is tried: exactly the configured number of runs.
    time.sleep(4)
    assert (workdir(fleet, "demo-gs-0") / "runs.log").read_text().count("run") == 2
    assert len(record(fleet.gameservers()["demo-gs-0"])["history"]) == 2


def test_whole_set_failing_stops_at_the_budget_with_one_warning(fleet: Fleet) -> None:
    fleet.start()
    fleet.apply_yaml(recovery_yaml(policy={"maxInFlight": "100%", "maxPerHour": 2}))
    names = ["demo-gs-0", "demo-gs-1", "demo-gs-2"]
    fleet.wait_gs("every server healthy", all_healthy(names))
    for name in names:
        fault(fleet, name)
    gs = fleet.wait_gs("two repaired, one held by maxPerHour", lambda gs: sorted(
        record(gs[n]).get("phase", "") for n in names) == ["Blocked", "Healthy", "Healthy"], timeout=60)
    held = next(n for n in names if record(gs[n])["phase"] == "Blocked")
    assert record(gs[held])["blockedBy"] == "maxPerHour" and record(gs[held]).get("attempt", 0) == 0
    assert ops(gs[held]) == "Maintaining" and result(gs[held]) == "unhealthy"
    # Fail a repaired one again: held too, and still one Warning.
    repaired = next(n for n in names if n != held)
    fault(fleet, repaired)
    fleet.wait_gs("the second failure held as well", lambda gs: record(gs[repaired]).get("phase") == "Blocked")
    warnings = [line for line in fleet.gk("events", "--type", "Warning").stdout.splitlines()
                if "RecoveryBudgetExhausted" in line]
    assert len(warnings) == 1 and "gameserverset/demo-gs" in warnings[0] and "maxPerHour (2)" in warnings[0], warnings
    events = fleet.gk("events").stdout
    assert events.count("RecoveryStarted") == 2, events
    wide = fleet.gk("get", "gs", "-o", "wide").stdout
    assert "Blocked(maxPerHour)" in wide


def test_controller_killed_mid_recovery_runs_nothing_twice(fleet: Fleet) -> None:
    # The step fails on its first run and repairs on later runs; each run leaves a line in runs.log.
    # Long enough (5 s step, 8 s back-off) for the test to see each phase while polling a loaded machine.
    command = 'n=$(cat runs.log 2>/dev/null | wc -l); echo run >> runs.log; sleep 5; [ "$n" -ge 1 ] && ./recover.sh'
    fleet.start()
    fleet.apply_yaml(recovery_yaml(replicas=1, policy={}, attempts=3, backoffSeconds=8, successWithinSeconds=6,
                                   steps=[{"kind": "exec", "command": ["bash", "-c", command]}]))
    fleet.wait_gs("healthy", all_healthy(["demo-gs-0"]))
    runs = workdir(fleet, "demo-gs-0") / "runs.log"
    fault(fleet, "demo-gs-0")

    fleet.wait_gs("backing off after the failed first run",
                  lambda gs: record(gs["demo-gs-0"]).get("phase") == "BackingOff", timeout=30)
    fleet.kill_controller(signal.SIGKILL)  # point 1: during the back-off
    before = record(fleet.gameservers()["demo-gs-0"])
    fleet.start()
    gs = fleet.wait_gs("second attempt running", lambda gs: record(gs["demo-gs-0"]).get("phase") == "Acting"
                       and record(gs["demo-gs-0"]).get("attempt") == 2, timeout=30)
    started = stamp(record(gs["demo-gs-0"])["startedAt"])
    assert (started - stamp(before["retryAt"])).total_seconds() >= 0, "the back-off survived the restart"
    fleet.kill_controller(signal.SIGKILL)  # point 2: while the step runs (it goes on in its own session)
    fleet.start()
    gs = fleet.wait_gs("repaired", lambda gs: record(gs["demo-gs-0"]).get("phase") == "Healthy", timeout=40)
    rec = record(gs["demo-gs-0"])
    assert rec["attempt"] == 2 and [e["attempt"] for e in rec["history"]] == [1, 2]
    assert rec["history"][0]["outcome"] == "Failed" and rec["history"][1]["outcome"] == "Succeeded"
    fleet.kill_controller(signal.SIGKILL)  # point 3: after the success
    fleet.start()
    fleet.wait_gs("still healthy after the restart", lambda gs: result(gs["demo-gs-0"]) == "healthy"
                  and record(gs["demo-gs-0"]).get("phase") == "Healthy")
    time.sleep(2)
    assert runs.read_text().count("run") == 2  # each attempt's step ran once, across three controller deaths
    rec = record(fleet.gameservers()["demo-gs-0"])
    assert rec["attempt"] == 2 and len(rec["history"]) == 2
    assert fleet.gk("events", "--for", "gs/demo-gs-0").stdout.count("RecoveryStarted") == 2


def test_set_wide_outage_stops_recovery_until_the_set_is_mostly_healthy(fleet: Fleet) -> None:
    fleet.start()
    doc = recovery_yaml(policy={"maxInFlight": 0})  # recovery off while every server is broken
    fleet.apply_yaml(doc)
    names = ["demo-gs-0", "demo-gs-1", "demo-gs-2"]
    fleet.wait_gs("every server healthy", all_healthy(names))
    for name in names:
        fault(fleet, name)
    fleet.wait_gs("all three unhealthy and held", lambda gs: all(
        result(gs[n]) == "unhealthy" and record(gs[n]).get("blockedBy") == "maxInFlight" for n in names))
    doc["spec"]["recoveryPolicy"] = {"maxInFlight": "100%", "maxUnhealthy": 1}
    fleet.apply_yaml(doc)
    fleet.wait_gs("recovery stopped for the set", lambda gs: all(
        record(gs[n]).get("blockedBy") == "maxUnhealthy" for n in names))
    time.sleep(3)
    gs = fleet.gameservers()
    assert all(record(gs[n]).get("attempt", 0) == 0 and result(gs[n]) == "unhealthy" for n in names)
    warnings = [line for line in fleet.gk("events", "--type", "Warning").stdout.splitlines()
                if "RecoveryBudgetExhausted" in line]
    assert len(warnings) == 1 and "maxUnhealthy (1)" in warnings[0], warnings
    # The shared cause is fixed for two of them: the third is under the threshold and repaired automatically.
    for name in names[:2]:
        fleet.gk("exec", name, "--", "./recover.sh")
    gs = fleet.wait_gs("the last one repaired by its recovery", lambda gs: record(gs["demo-gs-2"]).get(
        "phase") == "Healthy" and result(gs["demo-gs-2"]) == "healthy", timeout=40)
    assert record(gs["demo-gs-2"])["attempt"] == 1
    assert all(record(gs[n]).get("attempt", 0) == 0 for n in names[:2])


def _container_pids(fleet: Fleet, name: str) -> dict[str, str]:
    pod = fleet.pods()[name]
    return {cs["name"]: cs["containerID"] for cs in pod["status"]["containerStatuses"]}


def test_restart_container_in_place_keeps_the_pod_and_its_other_container(fleet: Fleet) -> None:
    doc = recovery_yaml(replicas=1, policy={}, attempts=1, successWithinSeconds=15,
                        steps=[{"kind": "restartContainer"}])
    containers = doc["spec"]["gameServerTemplate"]["spec"]["containers"]
    containers.append({"name": "sidecar", "image": "registry.cn-hangzhou.aliyuncs.com/gs-demo/gameserver:idle"})
    fleet.start()
    fleet.apply_yaml(doc)
    fleet.wait_gs("healthy", all_healthy(["demo-gs-0"]))
    before = _container_pids(fleet, "demo-gs-0")
    pod_uid = fleet.pods()["demo-gs-0"]["metadata"]["uid"]
    fault(fleet, "demo-gs-0")
    gs = fleet.wait_gs("repaired by a container restart", lambda gs: record(gs["demo-gs-0"]).get("phase") == "Healthy",
                       timeout=60)
    assert "asked the local kubelet to restart container minecraft" in record(gs["demo-gs-0"])["history"][0]["output"]
    pod = fleet.pods()["demo-gs-0"]
    after = _container_pids(fleet, "demo-gs-0")
    assert pod["metadata"]["uid"] == pod_uid
    assert after["sidecar"] == before["sidecar"] and after["minecraft"] != before["minecraft"]
    counts = {cs["name"]: cs["restartCount"] for cs in pod["status"]["containerStatuses"]}
    assert counts == {"minecraft": 1, "sidecar": 0}
    # A restarted controller adopts the containers and restarts nothing again.
    fleet.kill_controller(signal.SIGKILL)
    fleet.start()
    fleet.wait_gs("healthy after the restart", all_healthy(["demo-gs-0"]))
    time.sleep(2)
    assert _container_pids(fleet, "demo-gs-0") == after


def test_recreate_pod_keeps_the_gameserver(fleet: Fleet) -> None:
    fleet.start()
    fleet.apply_yaml(recovery_yaml(replicas=1, policy={}, attempts=1, successWithinSeconds=20,
                                   steps=[{"kind": "recreatePod"}]))
    fleet.wait_gs("healthy", all_healthy(["demo-gs-0"]))
    old_pod = fleet.pods()["demo-gs-0"]["metadata"]["uid"]
    gs_uid = fleet.gameservers()["demo-gs-0"]["metadata"]["uid"]
    fault(fleet, "demo-gs-0")
    gs = fleet.wait_gs("repaired by a new pod", lambda gs: "demo-gs-0" in gs and record(gs["demo-gs-0"]).get(
        "phase") == "Healthy", timeout=60)
    new_pod = fleet.pods()["demo-gs-0"]["metadata"]["uid"]
    assert new_pod != old_pod
    meta = gs["demo-gs-0"]["metadata"]
    assert meta["uid"] == gs_uid  # the same GameServer: spec, timeline and recovery record kept
    assert [o["uid"] for o in meta["ownerReferences"]] == [new_pod]  # owned by its pod again
    assert "recovery.gamekeeper.io/recreating-pod" not in (meta.get("annotations") or {})
    assert gs["demo-gs-0"]["status"]["opsStateHistory"][0]["by"] == "created"


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
