"""KEDA's external-scaler gRPC API (`externalscaler.ExternalScaler`), served by `gk operator`.

An OpenKruiseGame user's ScaledObject works against it after changing only `scalerAddress` (upstream's is
`kruise-game-external-scaler.kruise-game-system:6000`; ours is `gamekeeper-external-scaler.<namespace>:6000`).
The answers are the embedded loop's: both read the fleet with `read_fleet` and decide with
`core.autoscale.desired_replicas`. KEDA does the rest (HPA behavior, min/max, cooldown) in the cluster.

Like upstream, the ScaledObject's name is the GameServerSet's name, and an error (set missing, no status yet,
metadata the scaler cannot parse) is a gRPC error, on which KEDA keeps the current replicas.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import grpc

from gamekeeper.control.autoscale import read_fleet
from gamekeeper.core.autoscale import METRIC_NAME, METRIC_TARGET, ScalerError, desired_replicas, is_active
from gamekeeper.kube.scalerpb import externalscaler_pb2 as pb
from gamekeeper.kube.scalerpb import externalscaler_pb2_grpc as pb_grpc
from gamekeeper.ports.store import NotFound, Obj, Store, StoreError

log = logging.getLogger("gamekeeper.kube.externalscaler")

DEFAULT_PORT = 6000


class ExternalScaler(pb_grpc.ExternalScalerServicer):  # type: ignore[misc]
    def __init__(self, store: Store) -> None:
        self.store = store
        # The last branch per ScaledObject, as the embedded loop keeps it (WaitToBeDeleted removal takes turns
        # with a minAvailable scale-up). Lost on restart or leader change: the next answer is upstream's.
        self.previous: dict[tuple[str, str], str] = {}

    async def _fleet(self, ref: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        try:
            return await read_fleet(self.store, ref.namespace or "default", ref.name)
        except NotFound as e:
            await context.abort(grpc.StatusCode.NOT_FOUND, str(e))
        except StoreError as e:
            await context.abort(grpc.StatusCode.UNAVAILABLE, f"cannot read GameServerSet: {e}")
        raise AssertionError("unreachable")  # abort raises

    async def IsActive(self, request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        gss: Obj
        gss, _ = await self._fleet(request, context)
        status = gss.get("status") or {}
        try:
            active = is_active(int(status.get("currentReplicas", 0)), status.get("waitToBeDeletedReplicas"),
                               dict(request.scalerMetadata))
        except ScalerError as e:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, f"GameServerSet {request.name}: {e}")
        return pb.IsActiveResponse(result=active)

    async def StreamIsActive(self, request: Any, context: Any) -> AsyncIterator[Any]:
        # As upstream: no push; KEDA polls IsActive at pollingInterval.
        return
        yield

    async def GetMetricSpec(self, request: Any, context: Any) -> Any:
        return pb.GetMetricSpecResponse(metricSpecs=[
            pb.MetricSpec(metricName=METRIC_NAME, targetSize=METRIC_TARGET, targetSizeFloat=float(METRIC_TARGET))])

    async def GetMetrics(self, request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        ref = request.scaledObjectRef
        _, counts = await self._fleet(ref, context)
        key = (ref.namespace or "default", ref.name)
        try:
            decision = desired_replicas(counts, dict(ref.scalerMetadata), self.previous.get(key))
        except ScalerError as e:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"ScaledObject {ref.name}: {e}")
        self.previous[key] = decision.branch
        for note in decision.notes:
            log.warning("scaler: %s", note, extra={"scaledobject": ref.name})
        log.info("autoscale decision", extra={
            "scaledobject": ref.name, "namespace": ref.namespace, "gss": ref.name, **counts.as_dict(),
            "desired": decision.desired, "branch": decision.branch, "why": decision.reason})
        return pb.GetMetricsResponse(metricValues=[
            pb.MetricValue(metricName=METRIC_NAME, metricValue=decision.desired,
                           metricValueFloat=float(decision.desired))])


async def start_external_scaler(store: Store, address: str) -> tuple[grpc.aio.Server, int]:
    """Serve on HOST:PORT (port 0: any free one); returns the server and the port bound."""
    server = grpc.aio.server()
    pb_grpc.add_ExternalScalerServicer_to_server(ExternalScaler(store), server)
    port = server.add_insecure_port(address)
    if port == 0:
        raise OSError(f"cannot listen on {address} for the external scaler")
    await server.start()
    log.info("external scaler (KEDA externalscaler.ExternalScaler) listening on %s", address.rsplit(":", 1)[0] +
             f":{port}")
    return server, port
