"""GameServerSet reconciler (upstream gameserverset_controller.go, spec §3.1) and the workload it drives.

Upstream a GameServerSet owns an Advanced StatefulSet that owns the pods. Here the same role is played by a
small `Workload` object (name = the set's) holding `replicas`, `reserveOrdinals` and the pod template, and by
`WorkloadController`, which keeps exactly the pods on the first `replicas` non-reserved ordinals. Keeping
that object makes scaling decisions identical to upstream: the set controller decides which ordinals go,
the workload controller (control/workload.py) only carries it out.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from gamekeeper.api.models import (
    GS_DELETING_KEY,
    GS_OPS_STATE_KEY,
    GS_STATE_KEY,
    GSS_RESERVE_IDS_KEY,
    OWNER_GSS_KEY,
    WORKLOAD_HASH_KEY,
)
from gamekeeper.control.pace import in_slices
from gamekeeper.core.ordinals import (
    index_from_name,
    ordinal_set_to_int_str_slice,
    ordinal_set_to_string,
    reserve_ordinal_set,
    string_to_int_str_slice,
    string_to_ordinal_set,
)
from gamekeeper.core.scaling import PodView, compute_to_scale, replicas_after_killing
from gamekeeper.ports.store import AlreadyExists, NotFound, Obj, Store, fingerprint, project

log = logging.getLogger("gamekeeper.gameserverset")

WORKLOAD_API = "gamekeeper.io/v1alpha1"
TEMPLATE_HASH_LABEL = "controller-revision-hash"
# What the set controller reads of its pods (with their names): a projection, not 10,000 whole pods.
POD_VIEW_PATHS = ("metadata.labels", "metadata.deletionTimestamp")


def pod_mark(pod: Obj) -> int:
    """What this controller reads of a pod (POD_VIEW_PATHS), as a number: a pod change that leaves it as it was (a
    probe result, a container restart) cannot change the set's decisions or counts, and does not queue the set."""
    view = project(pod, POD_VIEW_PATHS)
    view["metadata"].pop("resourceVersion", None)
    return fingerprint(view)


def spec_mark(gss: Obj) -> int:
    """All of a set but its status and version, as a number: the set's own status write (every count change) does
    not queue it again. This reconcile reads its status only to leave an unchanged one unwritten, so a status
    written by someone else stays until the set's next change (as controller-runtime's GenerationChangedPredicate
    would leave it; annotations count here, which that predicate ignores)."""
    meta = {k: v for k, v in gss["metadata"].items() if k not in ("resourceVersion", "managedFields")}
    return fingerprint({"metadata": meta, "spec": gss.get("spec")})


def workload_hash(gss: Obj) -> str:
    """What a change of must reach the pods: template, update strategy, network config (spec §5)."""
    spec = gss["spec"]
    data = json.dumps(
        {
            "template": spec["gameServerTemplate"],
            "updateStrategy": spec.get("updateStrategy"),
            "networkConf": (spec.get("network") or {}).get("networkConf"),
        },
        sort_keys=True,
    )
    return hashlib.sha256(data.encode()).hexdigest()[:10]


def pod_views(pods: Sequence[Obj]) -> list[PodView]:
    return [
        PodView(
            name=p["metadata"]["name"],
            labels=p["metadata"].get("labels") or {},
            terminating=bool(p["metadata"].get("deletionTimestamp")),
        )
        for p in pods
    ]


def owner_reference(obj: Obj) -> dict[str, Any]:
    return {
        "apiVersion": obj["apiVersion"],
        "kind": obj["kind"],
        "name": obj["metadata"]["name"],
        "uid": obj["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def pod_ready(pod: Obj) -> bool:
    return any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in (pod.get("status") or {}).get("conditions") or []
    )


class GameServerSetController:
    def __init__(self, store: Store, clock: Callable[[], datetime]) -> None:
        self.store = store
        self.clock = clock

    async def reconcile(self, namespace: str, name: str) -> None:
        gss = await self.store.get("GameServerSet", namespace, name)
        if gss is None:
            return
        spec = gss["spec"]
        workload = await self.store.get("Workload", namespace, name)
        if workload is None:
            await self._create_workload(gss)
            return
        pods = await self.store.list_projected("Pod", POD_VIEW_PATHS, namespace, {OWNER_GSS_KEY: name})
        views: list[PodView] = []
        async for part in in_slices(pods):
            views += pod_views(part)

        replicas = replicas_after_killing(spec["replicas"], workload["spec"]["replicas"], views)
        if replicas != spec["replicas"]:
            log.info("Kill lowers %s/%s replicas %d -> %d", namespace, name, spec["replicas"], replicas)
            await self.store.patch(
                "GameServerSet", namespace, name, {"spec": {"replicas": replicas}},
                resource_version=gss["metadata"]["resourceVersion"],
            )
            return

        annotations = gss["metadata"].get("annotations") or {}
        annotated = annotations.get(GSS_RESERVE_IDS_KEY, "")
        new_explicit = reserve_ordinal_set(spec.get("reserveGameServerIds"))
        if spec["replicas"] != workload["spec"]["replicas"] or string_to_ordinal_set(annotated) != new_explicit:
            await self._scale(gss, workload, views, new_explicit)
            return

        digest = workload_hash(gss)
        if (workload["metadata"].get("annotations") or {}).get(WORKLOAD_HASH_KEY) != digest:
            # A whole replace, not a merge patch: a key removed from the set (say `paused`) must go too.
            updated = copy.deepcopy(workload)
            updated["metadata"].setdefault("annotations", {})[WORKLOAD_HASH_KEY] = digest
            updated["spec"]["template"] = self._pod_template(gss)
            updated["spec"]["templateHash"] = digest
            if spec.get("updateStrategy") is None:
                updated["spec"].pop("updateStrategy", None)
            else:
                updated["spec"]["updateStrategy"] = spec["updateStrategy"]
            await self.store.replace(updated)
            await self.store.record_event(gss, "Normal", "UpdateWorkload", "updated workload")
            return

        await self._sync_status(gss, workload, pods)

    @staticmethod
    def _pod_template(gss: Obj) -> dict[str, Any]:
        template = gss["spec"]["gameServerTemplate"]
        return {"metadata": template.get("metadata") or {}, "spec": template["spec"]}

    async def _create_workload(self, gss: Obj) -> None:
        meta = gss["metadata"]
        digest = workload_hash(gss)
        workload = {
            "apiVersion": WORKLOAD_API,
            "kind": "Workload",
            "metadata": {
                "name": meta["name"],
                "namespace": meta["namespace"],
                "labels": {OWNER_GSS_KEY: meta["name"]},
                "annotations": {WORKLOAD_HASH_KEY: digest},
                "ownerReferences": [owner_reference(gss)],
            },
            "spec": {
                "replicas": gss["spec"]["replicas"],
                "reserveOrdinals": gss["spec"].get("reserveGameServerIds") or [],
                "template": self._pod_template(gss),
                "updateStrategy": gss["spec"].get("updateStrategy"),
                "templateHash": digest,
                "serviceName": gss["spec"].get("serviceName") or meta["name"],
            },
        }
        try:
            await self.store.create(workload)
        except AlreadyExists:
            return
        await self.store.record_event(gss, "Normal", "CreateWorkload", "created workload")

    async def _scale(self, gss: Obj, workload: Obj, views: list[PodView], new_explicit: set[int]) -> None:
        """Upstream GameServerScale (spec §3.4)."""
        meta, spec = gss["metadata"], gss["spec"]
        namespace, name = meta["namespace"], meta["name"]
        current, expected = workload["spec"]["replicas"], spec["replicas"]
        annotations = meta.get("annotations") or {}
        old_explicit = reserve_ordinal_set(string_to_int_str_slice(annotations.get(GSS_RESERVE_IDS_KEY, "")))
        implicit = reserve_ordinal_set(workload["spec"].get("reserveOrdinals")) - old_explicit
        if current != expected:
            await self.store.record_event(gss, "Normal", "Scale", f"scale from {current} to {expected}")
        plan = compute_to_scale(new_explicit, old_explicit, implicit, expected, views)
        log.info(
            "scale %s/%s %d -> %d: delete %s, create %s", namespace, name, current, expected,
            list(plan.to_delete), list(plan.to_create),
        )

        if spec["gameServerTemplate"].get("reclaimPolicy") == "Delete":
            await self._mark_deleting(namespace, name, set(plan.manage), {index_from_name(v.name) for v in views})

        await self.store.patch(
            "Workload", namespace, name,
            {"spec": {"replicas": expected, "reserveOrdinals": ordinal_set_to_int_str_slice(plan.reserved) or []}},
            resource_version=workload["metadata"]["resourceVersion"],
        )

        strategy = (spec.get("scaleStrategy") or {}).get("scaleDownStrategyType")
        target = set(plan.reserved) if strategy == "ReserveIds" else new_explicit
        patch: dict[str, Any] = {}
        text = ordinal_set_to_string(target)
        if not annotations or annotations.get(GSS_RESERVE_IDS_KEY) != text:
            patch["metadata"] = {"annotations": {GSS_RESERVE_IDS_KEY: text}}
        if strategy == "ReserveIds" and target != new_explicit:
            patch["spec"] = {"reserveGameServerIds": ordinal_set_to_int_str_slice(target)}
        if patch:
            await self.store.patch("GameServerSet", namespace, name, patch)

    async def _mark_deleting(self, namespace: str, gss_name: str, new_ids: set[int], old_ids: set[int]) -> None:
        """reclaimPolicy Delete: a GameServer whose id leaves the set is marked for deletion with its pod."""
        for ordinal, value in [(i, "false") for i in new_ids - old_ids] + [(i, "true") for i in old_ids - new_ids]:
            gs_name = f"{gss_name}-{ordinal}"
            gs = await self.store.get("GameServer", namespace, gs_name)
            if gs is None:
                continue
            current = (gs["metadata"].get("labels") or {}).get(GS_DELETING_KEY)
            if (value == "false" and current == "true") or (value == "true" and current != "true"):
                try:
                    await self.store.patch(
                        "GameServer", namespace, gs_name, {"metadata": {"labels": {GS_DELETING_KEY: value}}}
                    )
                except NotFound:
                    continue

    async def _sync_status(self, gss: Obj, workload: Obj, pods: list[Obj]) -> None:
        wl_status = workload.get("status") or {}
        labels = [p["metadata"].get("labels") or {} for p in pods]
        status = {
            "replicas": gss["spec"]["replicas"],
            "currentReplicas": len(pods),
            "readyReplicas": wl_status.get("readyReplicas", 0),
            "availableReplicas": wl_status.get("availableReplicas", 0),
            "updatedReplicas": wl_status.get("updatedReplicas", 0),
            "updatedReadyReplicas": wl_status.get("updatedReadyReplicas", 0),
            "maintainingReplicas": sum(1 for lb in labels if lb.get(GS_OPS_STATE_KEY) == "Maintaining"),
            "waitToBeDeletedReplicas": sum(1 for lb in labels if lb.get(GS_OPS_STATE_KEY) == "WaitToBeDeleted"),
            "preDeleteReplicas": sum(1 for lb in labels if lb.get(GS_STATE_KEY) == "PreDelete"),
            "labelSelector": f"{OWNER_GSS_KEY}={gss['metadata']['name']}",
            "observedGeneration": gss["metadata"].get("generation", 1),
        }
        if (gss.get("status") or {}) != status:
            await self.store.patch(
                "GameServerSet", gss["metadata"]["namespace"], gss["metadata"]["name"], {"status": status},
                subresource="status",
            )
