"""Recovery in Kubernetes mode against the emulator (docs/recovery.md): a command through pods/exec; a
container restart through OpenKruise's ContainerRecreateRequest when its CRD is served; otherwise the
documented fallback, recreating the pod (the GameServer survives)."""

from __future__ import annotations

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
