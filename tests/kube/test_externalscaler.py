"""KEDA's view: a real gRPC client calls `gk operator`'s external scaler, backed by the kmock cluster, and gets
the desired replicas the embedded loop computes for the same fleet."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
import pytest

from gamekeeper.control.autoscale import Autoscaler
from gamekeeper.kube.scalerpb import externalscaler_pb2 as pb
from gamekeeper.kube.scalerpb import externalscaler_pb2_grpc as pb_grpc
from gamekeeper.store.sqlite import SqliteState, SqliteStore
from tests.kube.conftest import Cluster, seed_yaml

pytestmark = pytest.mark.asyncio

# The metadata an OpenKruiseGame user's ScaledObject sends (KEDA passes the trigger's metadata through).
METADATA = {"scalerAddress": "gamekeeper-external-scaler.gamekeeper-system:6000", "minAvailable": "1"}


def ref(name: str = "minecraft", metadata: dict[str, str] | None = None) -> Any:
    return pb.ScaledObjectRef(name=name, namespace="default", scalerMetadata=metadata or METADATA)


async def embedded_answer(cluster: Cluster, tmp: Path, metadata: dict[str, str]) -> int | None:
    """The same fleet copied into a SQLite store, polled by the embedded autoscaler."""
    state = SqliteState(tmp)
    for kind in ("GameServerSet", "Pod"):
        for obj in cluster.world.all(kind, "default"):
            body = copy.deepcopy(obj)
            body["metadata"] = {k: v for k, v in body["metadata"].items()
                                if k in ("name", "namespace", "labels", "annotations")}
            state.create(body)
            if body.get("status"):
                state.patch(kind, "default", body["metadata"]["name"], {"status": obj["status"]},
                            subresource="status")
    so = {"apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject", "metadata": {"name": "minecraft",
          "namespace": "default"}, "spec": {
          "scaleTargetRef": {"apiVersion": "game.kruise.io/v1alpha1", "kind": "GameServerSet", "name": "minecraft"},
          "triggers": [{"type": "external", "metadata": metadata}]}}
    state.create(so)
    outcome = await Autoscaler(SqliteStore(state), lambda: datetime.now(UTC)).poll(
        state.get("ScaledObject", "default", "minecraft") or {})
    state.close()
    return outcome.scaler_desired


async def test_grpc_scaler_answers_like_the_embedded_loop(cluster: Cluster, tmp_path: Path) -> None:
    operator, _, _ = cluster.start_operator(external_scaler_addr="127.0.0.1:0", probe="exec")
    await cluster.apply(seed_yaml("minecraft.yaml"))
    await cluster.eventually("all three servers are WaitToBeDeleted", lambda: len(cluster.gameservers()) == 3 and all(
        (g.get("spec") or {}).get("opsState") == "WaitToBeDeleted" for g in cluster.gameservers().values()))
    await cluster.eventually("the set's status counts them", lambda: (
        (cluster.world.find("GameServerSet", "default", "minecraft") or {}).get("status") or {}).get(
            "waitToBeDeletedReplicas") == 3)
    # The pod labels follow the GameServers (opsState is synced to the pod).
    await cluster.eventually("pod labels carry WaitToBeDeleted", lambda: all(
        p["metadata"]["labels"].get("game.kruise.io/gs-opsState") == "WaitToBeDeleted"
        for p in cluster.world.all("Pod", "default")))
    assert operator.external_scaler_port
    async with grpc.aio.insecure_channel(f"127.0.0.1:{operator.external_scaler_port}") as channel:
        stub = pb_grpc.ExternalScalerStub(channel)
        spec = await stub.GetMetricSpec(ref())
        assert [(m.metricName, m.targetSize) for m in spec.metricSpecs] == [("gssReplicas", 1)]
        assert (await stub.IsActive(ref())).result is True  # minAvailable > 0
        assert (await stub.IsActive(ref(metadata={"scalerAddress": "x"}))).result is False  # 3 - 3 WTBD
        metrics = await stub.GetMetrics(pb.GetMetricsRequest(scaledObjectRef=ref(), metricName="gssReplicas"))
        grpc_answer = metrics.metricValues[0].metricValue
        assert metrics.metricValues[0].metricName == "gssReplicas"
        assert grpc_answer == 4  # no None server: minAvailable 1 asks for one more first
        assert grpc_answer == await embedded_answer(cluster, tmp_path, METADATA)
        # Then the three WaitToBeDeleted servers' turn (#302), whatever minAvailable says.
        again = await stub.GetMetrics(pb.GetMetricsRequest(scaledObjectRef=ref(), metricName="gssReplicas"))
        assert again.metricValues[0].metricValue == 0

        with pytest.raises(grpc.aio.AioRpcError) as missing:
            await stub.GetMetrics(pb.GetMetricsRequest(scaledObjectRef=ref("nosuchset")))
        assert missing.value.code() == grpc.StatusCode.NOT_FOUND
        with pytest.raises(grpc.aio.AioRpcError) as bad:
            await stub.GetMetrics(pb.GetMetricsRequest(scaledObjectRef=ref(metadata={"minAvailable": "abc"})))
        assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        stream = stub.StreamIsActive(ref())
        assert [r async for r in stream] == []
