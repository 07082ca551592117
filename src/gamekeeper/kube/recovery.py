"""A recovery's in-place container restart on Kubernetes (docs/recovery.md).

With OpenKruise installed (the API serves `apps.kruise.io/v1alpha1 containerrecreaterequests`), a
ContainerRecreateRequest asks kruise-daemon to recreate that one container: the pod, its other containers,
its IP and host ports stay. The request is named after the restart's token, so asking twice (a controller
restarted mid-step) finds the first request instead of restarting again. Without OpenKruise there is no
in-place restart in Kubernetes (a container cannot be killed through the API), so the recovery controller
recreates the pod instead: `detect_restarter` returns None and says so, and the operator logs it.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any

from gamekeeper.kube.client import KubeClient
from gamekeeper.kube.resources import CONTAINER_RECREATE_REQUEST
from gamekeeper.ports.store import AlreadyExists, Conflict

log = logging.getLogger("gamekeeper.kube.recovery")

# kruise's activeDeadlineSeconds: a request kruise-daemon has not carried out by then is Failed.
CRR_DEADLINE_SECONDS = 300
CRR_TTL_SECONDS = 3600


def crr_name(pod: str, container: str, token: str) -> str:
    digest = hashlib.sha256(f"{container}/{token}".encode()).hexdigest()[:10]
    return f"{pod[:40]}-gk-{digest}"


def container_recreate_request(pod: dict[str, Any], container: str, token: str) -> dict[str, Any]:
    meta = pod["metadata"]
    return {
        "apiVersion": CONTAINER_RECREATE_REQUEST.api_version,
        "kind": CONTAINER_RECREATE_REQUEST.kind,
        "metadata": {
            "name": crr_name(meta["name"], container, token),
            "namespace": meta["namespace"],
            "labels": {"app.kubernetes.io/managed-by": "gamekeeper"},
            "annotations": {"recovery.gamekeeper.io/token": token},
            "ownerReferences": [{"apiVersion": "v1", "kind": "Pod", "name": meta["name"], "uid": meta["uid"]}],
        },
        "spec": {
            "podName": meta["name"],
            "containers": [{"name": container}],
            "strategy": {"failurePolicy": "Fail", "orderedRecreate": False},
            "activeDeadlineSeconds": CRR_DEADLINE_SECONDS,
            "ttlSecondsAfterFinished": CRR_TTL_SECONDS,
        },
    }


class KruiseRestarter:
    """ContainerRestarter through OpenKruise's ContainerRecreateRequest."""

    def __init__(self, client: KubeClient) -> None:
        self.client = client

    async def restart_container(self, pod: dict[str, Any], container: str, token: str) -> str:
        body = container_recreate_request(pod, container, token)
        name = body["metadata"]["name"]
        try:
            await self.client.create(CONTAINER_RECREATE_REQUEST, body)
        except (AlreadyExists, Conflict):
            return f"ContainerRecreateRequest {name} already asked for (not asked twice)"
        log.info("created ContainerRecreateRequest", extra={"pod": pod["metadata"]["name"], "container": container,
                                                            "crr": name})
        return f"created ContainerRecreateRequest {name} for container {container}"


async def detect_restarter(client: KubeClient) -> tuple[KruiseRestarter | None, str]:
    """How a recovery restarts one container here, and why (the reason is logged)."""
    served = await client.served_resources(CONTAINER_RECREATE_REQUEST.api_version)
    if served is not None and CONTAINER_RECREATE_REQUEST.plural in served:
        return KruiseRestarter(client), ("OpenKruise ContainerRecreateRequest: the API serves apps.kruise.io/v1alpha1 "
                                         "containerrecreaterequests, so a container is restarted in place")
    return None, ("recreate the pod: OpenKruise's ContainerRecreateRequest CRD is not installed, and Kubernetes "
                  "cannot restart one container through its API")
