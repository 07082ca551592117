"""Probe path (a): one OpenKruise PodProbeMarker per GameServerSet, exactly as upstream builds it (spec §2.1).

With OpenKruise installed, kruise-daemon on every node runs the probes of the pods on that node and
kruise-manager writes each result as the pod condition `game.kruise.io/<quality>`; the shared
GameServer controller reads those conditions as it reads the embedded prober's. Nothing probes from the
operator, so probing scales with the nodes rather than with one process.

Reconcile of one set (upstream `SyncPodProbeMarker`, first matching row wins):
  no PPM, no serviceQualities      -> nothing
  no PPM, serviceQualities         -> create it; Event Normal CreatePpm "create PodProbeMarker"
  PPM, serviceQualities absent     -> delete it
  hash(serviceQualities) changed   -> rebuild the probes, new hash; Event Normal UpdatePpm "update PodProbeMarker"
An explicit empty list (`serviceQualities: []`) is not absent: it keeps a PPM with no probes, as upstream.
The PPM is owned by the set (controller ownerReference), so the garbage collector deletes it with the set.

Differences from upstream, on purpose: a quality without containerName probes the template's first
container (upstream passes an empty name, which Kruise rejects); and the set's own reconcile does not wait for
the PPM's observedGeneration (it is the shared controller's; waiting only delays scaling).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from gamekeeper.api.models import OWNER_GSS_KEY, PROBE_DEFAULTS, SQ_CONDITION_PREFIX
from gamekeeper.control.gameserverset import owner_reference
from gamekeeper.kube.resources import POD_PROBE_MARKER
from gamekeeper.ports.store import AlreadyExists, NotFound, Obj, Store

log = logging.getLogger("gamekeeper.kube.ppm")

PPM_HASH_KEY = "game.kruise.io/ppm-hash"
PROBE_HANDLERS = ("exec", "httpGet", "tcpSocket", "grpc")


def ppm_hash(service_qualities: list[dict[str, Any]]) -> str:
    """Equality is all that matters (upstream's FNV over a Go dump cannot be reproduced); decimal like it."""
    digest = hashlib.sha256(json.dumps(service_qualities, sort_keys=True).encode()).hexdigest()
    return str(int(digest[:8], 16))


def construct_probes(gss: Obj) -> list[dict[str, Any]]:
    """Upstream constructProbes: one probe per quality, in order, OKG's defaults for fields that are 0."""
    containers = gss["spec"]["gameServerTemplate"]["spec"]["containers"]
    first = containers[0]["name"] if containers else ""
    probes = []
    for sq in gss["spec"].get("serviceQualities") or []:
        probe: dict[str, Any] = {h: sq[h] for h in PROBE_HANDLERS if sq.get(h) is not None}
        for field, default in PROBE_DEFAULTS.items():
            probe[field] = sq.get(field) or default
        if sq.get("terminationGracePeriodSeconds") is not None:
            probe["terminationGracePeriodSeconds"] = sq["terminationGracePeriodSeconds"]
        probes.append({
            "name": sq["name"],
            "containerName": sq.get("containerName") or first,
            "probe": probe,
            "podConditionType": SQ_CONDITION_PREFIX + sq["name"],
        })
    return probes


def desired_ppm(gss: Obj) -> Obj:
    meta = gss["metadata"]
    return {
        "apiVersion": POD_PROBE_MARKER.api_version,
        "kind": POD_PROBE_MARKER.kind,
        "metadata": {
            "name": meta["name"],
            "namespace": meta["namespace"],
            "annotations": {PPM_HASH_KEY: ppm_hash(gss["spec"].get("serviceQualities") or [])},
            "ownerReferences": [owner_reference(gss)],
        },
        "spec": {
            "selector": {"matchLabels": {OWNER_GSS_KEY: meta["name"]}},
            "probes": construct_probes(gss),
        },
    }


class PodProbeMarkerController:
    def __init__(self, store: Store, clock: Callable[[], datetime]) -> None:
        self.store = store
        self.clock = clock

    async def reconcile(self, namespace: str, name: str) -> None:
        gss = await self.store.get("GameServerSet", namespace, name)
        if gss is None:
            return  # the garbage collector removes the PPM through its ownerReference
        ppm = await self.store.get(POD_PROBE_MARKER.kind, namespace, name)
        qualities = gss["spec"].get("serviceQualities")
        if ppm is None:
            if qualities is None:
                return
            try:
                await self.store.create(desired_ppm(gss))
            except AlreadyExists:
                return  # our cache is behind; the watch brings it and we look again
            log.info("created PodProbeMarker %s/%s (%d probes)", namespace, name, len(qualities))
            await self.store.record_event(gss, "Normal", "CreatePpm", "create PodProbeMarker")
            return
        if qualities is None:
            with contextlib.suppress(NotFound):
                await self.store.delete(
                    POD_PROBE_MARKER.kind, namespace, name, resource_version=ppm["metadata"]["resourceVersion"]
                )
            log.info("deleted PodProbeMarker %s/%s (no service qualities)", namespace, name)
            return
        digest = ppm_hash(qualities)
        if (ppm["metadata"].get("annotations") or {}).get(PPM_HASH_KEY) != digest:
            await self.store.patch(
                POD_PROBE_MARKER.kind, namespace, name,
                {"metadata": {"annotations": {PPM_HASH_KEY: digest}}, "spec": {"probes": construct_probes(gss)}},
                resource_version=ppm["metadata"]["resourceVersion"],
            )
            log.info("updated PodProbeMarker %s/%s", namespace, name)
            await self.store.record_event(gss, "Normal", "UpdatePpm", "update PodProbeMarker")
