"""The workload controller: keeps one pod on each of the first `replicas` ordinals that are not reserved.

It plays the part of upstream's Advanced StatefulSet: the GameServerSet controller decides which ordinals are
kept (`spec.replicas`, `spec.reserveOrdinals`), this controller only creates and deletes pods to match.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from gamekeeper.api.models import OWNER_GSS_KEY
from gamekeeper.control.gameserverset import TEMPLATE_HASH_LABEL, owner_reference, pod_ready
from gamekeeper.core.ordinals import index_from_name, reserve_ordinal_set
from gamekeeper.core.scaling import managed_ordinals
from gamekeeper.ports.store import AlreadyExists, NotFound, Obj, Store

log = logging.getLogger("gamekeeper.workload")


class WorkloadController:
    """Keeps one pod on each of the first `replicas` ordinals that are not reserved (StatefulSet-like)."""

    def __init__(self, store: Store, clock: Callable[[], datetime]) -> None:
        self.store = store
        self.clock = clock

    async def reconcile(self, namespace: str, name: str) -> None:
        workload = await self.store.get("Workload", namespace, name)
        if workload is None:
            return
        spec = workload["spec"]
        pods = await self.store.list("Pod", namespace, {OWNER_GSS_KEY: name})
        wanted = set(managed_ordinals(spec["replicas"], reserve_ordinal_set(spec.get("reserveOrdinals"))))
        by_ordinal: dict[int, Obj] = {}
        for pod in pods:
            ordinal = index_from_name(pod["metadata"]["name"])
            by_ordinal[ordinal] = pod
            if ordinal not in wanted and not pod["metadata"].get("deletionTimestamp"):
                log.info("deleting pod %s/%s", namespace, pod["metadata"]["name"])
                with contextlib.suppress(NotFound):
                    await self.store.delete("Pod", namespace, pod["metadata"]["name"])
        for ordinal in sorted(wanted - set(by_ordinal)):
            await self._create_pod(workload, ordinal)
        await self._sync_status(workload, [p for p in pods if index_from_name(p["metadata"]["name"]) in wanted])

    async def _create_pod(self, workload: Obj, ordinal: int) -> None:
        meta, spec = workload["metadata"], workload["spec"]
        template = spec["template"]
        tmeta = template.get("metadata") or {}
        labels = {
            **(tmeta.get("labels") or {}),
            OWNER_GSS_KEY: meta["name"],
            TEMPLATE_HASH_LABEL: spec.get("templateHash", ""),
            "statefulset.kubernetes.io/pod-name": f"{meta['name']}-{ordinal}",
        }
        pod: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": f"{meta['name']}-{ordinal}",
                "namespace": meta["namespace"],
                "labels": labels,
                "annotations": dict(tmeta.get("annotations") or {}),
                "ownerReferences": [owner_reference(workload)],
            },
            "spec": {**template["spec"], "hostname": f"{meta['name']}-{ordinal}"},
        }
        try:
            await self.store.create(pod)
            log.info("created pod %s/%s", meta["namespace"], pod["metadata"]["name"])
        except AlreadyExists:
            pass

    async def _sync_status(self, workload: Obj, pods: list[Obj]) -> None:
        live = [p for p in pods if not p["metadata"].get("deletionTimestamp")]
        digest = workload["spec"].get("templateHash", "")
        updated = [p for p in live if (p["metadata"].get("labels") or {}).get(TEMPLATE_HASH_LABEL) == digest]
        status = {
            "replicas": len(live),
            "readyReplicas": sum(1 for p in live if pod_ready(p)),
            "availableReplicas": sum(1 for p in live if pod_ready(p)),
            "updatedReplicas": len(updated),
            "updatedReadyReplicas": sum(1 for p in updated if pod_ready(p)),
            "observedGeneration": workload["metadata"].get("generation", 1),
        }
        if (workload.get("status") or {}) != status:
            await self.store.patch(
                "Workload", workload["metadata"]["namespace"], workload["metadata"]["name"], {"status": status},
                subresource="status",
            )

