"""Recovery in Kubernetes mode against the emulator (docs/recovery.md): a command through pods/exec; a
container restart through OpenKruise's ContainerRecreateRequest when its CRD is served; otherwise the
documented fallback, recreating the pod (the GameServer survives)."""

from __future__ import annotations

import asyncio
import itertools
import logging
from typing import Any

import pytest
import yaml

from tests.kube.conftest import EXAMPLES, Cluster
from tests.kube.kmock_plus import Kind

pytestmark = pytest.mark.asyncio

CRR_KINDS = {
    "apps.kruise.io/v1alpha1/containerrecreaterequests": Kind(
        "ContainerRecreateRequest", "apps.kruise.io/v1alpha1", status=True),
}


def recovery_yaml(steps: list[dict[str, Any]]) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((EXAMPLES / "demo-gs-recovery.yaml").read_text())
    doc["spec"]["replicas"] = 1
    doc["spec"]["recoveryPolicy"] = {}
    sq = doc["spec"]["serviceQualities"][0]
    sq["initialDelaySeconds"] = 1
    sq["periodSeconds"] = 1
    recovery = sq["serviceQualityAction"][1]["recovery"]
    recovery.update(steps=steps, attempts=1, successWithinSeconds=8)
    return doc


def record(cluster: Cluster) -> dict[str, Any]:
    gs = cluster.gameservers().get("demo-gs-0") or {}
    return dict((gs.get("status") or {}).get("recovery") or {})


def result(cluster: Cluster) -> str | None:
    gs = cluster.gameservers().get("demo-gs-0") or {}
    conditions = (gs.get("status") or {}).get("serviceQualitiesConditions") or [{}]
    value = conditions[0].get("result")
    return None if value is None else str(value)


async def healthy_then_fault(cluster: Cluster, steps: list[dict[str, Any]]) -> dict[str, Any]:
    await cluster.apply(recovery_yaml(steps))
    await cluster.eventually("demo-gs-0 healthy", lambda: result(cluster) == "healthy")
    pod: dict[str, Any] | None = cluster.world.find("Pod", "default", "demo-gs-0")
    assert pod is not None
    cluster.games.broken.add("demo-gs-0")
    return pod


def restart_log(caplog: pytest.LogCaptureFixture) -> str:
    return "\n".join(r.getMessage() for r in caplog.records if "recovery container restart" in r.getMessage())


async def test_command_runs_through_pods_exec(cluster: Cluster) -> None:
    cluster.start_operator()
    await healthy_then_fault(cluster, [{"kind": "exec", "command": ["./recover.sh"], "timeoutSeconds": 5}])
    await cluster.eventually("repaired", lambda: record(cluster).get("phase") == "Healthy", timeout=30)
    rec = record(cluster)
    assert rec["history"][0]["outcome"] == "Succeeded" and "recovered" in rec["history"][0]["output"]
    assert [r for r in cluster.emulator.exec_requests if r[3] == ["./recover.sh"]] == [
        ("default", "demo-gs-0", "minecraft", ["./recover.sh"])]
    await cluster.eventually("the RecoverySucceeded event", lambda: bool(cluster.events(reason="RecoverySucceeded")))
    assert len(cluster.events(name="demo-gs-0", reason="RecoveryStarted")) == 1


async def test_container_restart_uses_container_recreate_request(
    cluster: Cluster, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="gamekeeper")
    cluster.emulator.declare(CRR_KINDS)
    cluster.start_operator()
    pod = await healthy_then_fault(cluster, [{"kind": "restartContainer"}])
    await cluster.eventually("a ContainerRecreateRequest", lambda: bool(
        cluster.world.all("ContainerRecreateRequest", "default")), timeout=30)
    crr = cluster.world.all("ContainerRecreateRequest", "default")[0]
    assert crr["spec"]["podName"] == "demo-gs-0" and crr["spec"]["containers"] == [{"name": "minecraft"}]
    assert crr["metadata"]["ownerReferences"][0]["uid"] == pod["metadata"]["uid"]
    cluster.games.broken.discard("demo-gs-0")  # kruise-daemon recreated the container: the helper is back
    await cluster.eventually("repaired", lambda: record(cluster).get("phase") == "Healthy", timeout=30)
    assert "created ContainerRecreateRequest" in record(cluster)["history"][0]["output"]
    now = cluster.world.find("Pod", "default", "demo-gs-0")
    assert now is not None and now["metadata"]["uid"] == pod["metadata"]["uid"]  # the pod stayed
    assert len(cluster.world.all("ContainerRecreateRequest", "default")) == 1
    assert "OpenKruise ContainerRecreateRequest" in restart_log(caplog)


async def test_without_openkruise_the_pod_is_recreated_and_the_gameserver_stays(
    cluster: Cluster, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="gamekeeper")
    cluster.start_operator()
    pod = await healthy_then_fault(cluster, [{"kind": "restartContainer"}])
    gs_uid = cluster.gameservers()["demo-gs-0"]["metadata"]["uid"]

    def recreated() -> bool:
        now = cluster.world.find("Pod", "default", "demo-gs-0")
        return now is not None and now["metadata"]["uid"] != pod["metadata"]["uid"]

    await cluster.eventually("the pod recreated on the same ordinal", recreated, timeout=30)
    cluster.games.broken.discard("demo-gs-0")  # a new pod: a new helper
    await cluster.eventually("repaired", lambda: record(cluster).get("phase") == "Healthy", timeout=30)
    gs = cluster.gameservers()["demo-gs-0"]
    assert gs["metadata"]["uid"] == gs_uid  # the GameServer, its spec and history survived
    assert "cannot restart a container in place: deleted the pod" in record(cluster)["history"][0]["output"]
    assert "recreate the pod" in restart_log(caplog)


async def test_operator_stopped_mid_step_never_runs_it_again(cluster: Cluster) -> None:
    recover_calls: list[str] = []
    games = cluster.games

    async def slow_recover(namespace: str, pod: str, container: str, command: list[str]) -> tuple[int, bytes, bytes]:
        answer = await games(namespace, pod, container, command)
        if command == ["./recover.sh"]:
            recover_calls.append(pod)  # (after the record said Acting: the intent is stored before acting)
            await asyncio.sleep(2)  # it has repaired the helper; the operator goes away before it answers
        return answer

    cluster.world.exec_handler = slow_recover
    _, task, stop = cluster.start_operator()
    await healthy_then_fault(cluster, [{"kind": "exec", "command": ["./recover.sh"], "timeoutSeconds": 10}])
    await cluster.eventually("the command running in the pod", lambda: bool(recover_calls), timeout=30)
    stop.set()
    await asyncio.wait_for(task, 20)
    assert record(cluster)["phase"] == "Acting"  # the intent was stored before the step ran
    cluster.start_operator(identity="op-test-2")
    await cluster.eventually("judged and repaired", lambda: record(cluster).get("phase") == "Healthy", timeout=40)
    rec = record(cluster)
    assert rec["attempt"] == 1 and [e["outcome"] for e in rec["history"]] == ["Succeeded"]
    assert recover_calls == ["demo-gs-0"]  # run once, across the two operators
    assert len(cluster.events(name="demo-gs-0", reason="RecoveryStarted")) == 1


async def test_max_in_flight_one_recovers_a_broken_set_one_server_at_a_time(cluster: Cluster) -> None:
    games = cluster.games
    running: list[str] = []
    peak = 0

    async def slow_recover(namespace: str, pod: str, container: str, command: list[str]) -> tuple[int, bytes, bytes]:
        nonlocal peak
        if command != ["./recover.sh"]:
            return await games(namespace, pod, container, command)
        running.append(pod)
        peak = max(peak, len(running))
        await asyncio.sleep(0.5)
        running.remove(pod)
        return await games(namespace, pod, container, command)

    cluster.world.exec_handler = slow_recover
    cluster.start_operator()
    doc = recovery_yaml([{"kind": "exec", "command": ["./recover.sh"], "timeoutSeconds": 5}])
    doc["spec"]["replicas"] = 3
    doc["spec"]["recoveryPolicy"] = {"maxInFlight": 1}
    await cluster.apply(doc)
    names = ["demo-gs-0", "demo-gs-1", "demo-gs-2"]

    def results() -> list[str | None]:
        out = []
        for n in names:
            conditions = ((cluster.gameservers().get(n) or {}).get("status") or {}).get(
                "serviceQualitiesConditions") or [{}]
            out.append(conditions[0].get("result"))
        return out

    await cluster.eventually("all healthy", lambda: results() == ["healthy"] * 3)
    games.broken.update(names)

    def records() -> list[dict[str, Any]]:
        return [dict((cluster.gameservers()[n].get("status") or {}).get("recovery") or {}) for n in names]

    await cluster.eventually("all repaired", lambda: [r.get("phase") for r in records()] == ["Healthy"] * 3,
                             timeout=60)
    assert peak == 1
    attempts = sorted((r["history"][0]["startedAt"], r["history"][0]["judgedAt"]) for r in records())
    for (_, judged), (started, _) in itertools.pairwise(attempts):
        assert started >= judged, attempts  # the next one starts only once the previous one has been judged
    assert all(r["attempt"] == 1 for r in records())
