"""Which API resource serves each kind the operator touches, and how its URLs are built."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote

from gamekeeper.api.models import GROUP, VERSION

WORKLOAD_GROUP = "gamekeeper.io"
WORKLOAD_VERSION = "v1alpha1"


@dataclass(frozen=True)
class Resource:
    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool = True
    status_subresource: bool = False

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def base(self) -> str:
        return f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"

    def path(self, namespace: str | None = None, name: str | None = None, subresource: str | None = None) -> str:
        """The collection URL (name None) or the object URL; namespace None lists across all namespaces."""
        if self.namespaced and namespace is not None:
            path = f"{self.base}/namespaces/{quote(namespace, safe='')}/{self.plural}"
        else:
            path = f"{self.base}/{self.plural}"
        if name is not None:
            path += "/" + quote(name, safe="")
            if subresource:
                path += "/" + subresource
        return path


GAME_SERVER_SET = Resource(GROUP, VERSION, "gameserversets", "GameServerSet", status_subresource=True)
GAME_SERVER = Resource(GROUP, VERSION, "gameservers", "GameServer", status_subresource=True)
# The stand-in for upstream's Advanced StatefulSet (control/workload.py). It is a CRD of ours so that it is
# durable, watchable, has its own uid for ownerReferences (the garbage collector cascades GSS -> Workload ->
# Pod -> GameServer) and a status subresource: see docs/kubernetes.md, "Where the Workload lives".
WORKLOAD = Resource(WORKLOAD_GROUP, WORKLOAD_VERSION, "workloads", "Workload", status_subresource=True)
POD = Resource("", "v1", "pods", "Pod", status_subresource=True)
# The workload controller keeps each pod template it rolled out as a ControllerRevision (as StatefulSets do).
CONTROLLER_REVISION = Resource("apps", "v1", "controllerrevisions", "ControllerRevision")
EVENT = Resource("events.k8s.io", "v1", "events", "Event")
LEASE = Resource("coordination.k8s.io", "v1", "leases", "Lease")
POD_PROBE_MARKER = Resource("apps.kruise.io", "v1alpha1", "podprobemarkers", "PodProbeMarker", status_subresource=True)
CONTAINER_RECREATE_REQUEST = Resource("apps.kruise.io", "v1alpha1", "containerrecreaterequests",
                                      "ContainerRecreateRequest", status_subresource=True)
CRD = Resource("apiextensions.k8s.io", "v1", "customresourcedefinitions", "CustomResourceDefinition", namespaced=False)
NAMESPACE = Resource("", "v1", "namespaces", "Namespace", namespaced=False)
SERVICE_ACCOUNT = Resource("", "v1", "serviceaccounts", "ServiceAccount")
SERVICE = Resource("", "v1", "services", "Service")
DEPLOYMENT = Resource("apps", "v1", "deployments", "Deployment")
CLUSTER_ROLE = Resource("rbac.authorization.k8s.io", "v1", "clusterroles", "ClusterRole", namespaced=False)
CLUSTER_ROLE_BINDING = Resource(
    "rbac.authorization.k8s.io", "v1", "clusterrolebindings", "ClusterRoleBinding", namespaced=False
)
ROLE = Resource("rbac.authorization.k8s.io", "v1", "roles", "Role")
ROLE_BINDING = Resource("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding")

BY_KIND: dict[str, Resource] = {
    r.kind: r
    for r in (
        GAME_SERVER_SET, GAME_SERVER, WORKLOAD, POD, CONTROLLER_REVISION, EVENT, LEASE, POD_PROBE_MARKER,
        CONTAINER_RECREATE_REQUEST, CRD, NAMESPACE, SERVICE_ACCOUNT, SERVICE, DEPLOYMENT, CLUSTER_ROLE,
        CLUSTER_ROLE_BINDING, ROLE, ROLE_BINDING,
    )
}


class UnknownKind(ValueError):
    pass


def resource_for(kind: str) -> Resource:
    try:
        return BY_KIND[kind]
    except KeyError:
        known = ", ".join(BY_KIND)
        raise UnknownKind(f"kind {kind!r} is not served by the Kubernetes store (known: {known})") from None
