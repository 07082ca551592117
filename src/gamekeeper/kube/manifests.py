"""What `gk install` puts on a cluster: the CRDs, least-privilege RBAC and the operator Deployment.

The same objects are committed under deploy/ (plain YAML, and the Helm chart's templates render to them);
tests/kube/test_manifests.py fails when they drift from this module. Regenerate the plain files with
`python -m gamekeeper.kube.manifests deploy/`.

Least privilege, rule by rule (each verb is used by a named piece of the operator):
- game.kruise.io gameserversets/gameservers (+ /status): the set and GameServer controllers read, create,
  patch and delete them (a GameServer under reclaimPolicy Delete is deleted by the controller);
- gamekeeper.io workloads (+ /status): the set controller's Workload (our Advanced StatefulSet);
- pods: the workload controller creates and deletes them, the GameServer controller patches their labels;
  pods/status: the exec prober (path b) writes the `game.kruise.io/<quality>` conditions; pods/exec: the
  exec prober (websocket exec is authorised as `get` by older API servers and `create` by newer ones);
- apps controllerrevisions: the workload controller's template history;
- events.k8s.io events: create, and patch to bump a repeated event's series;
- apps.kruise.io podprobemarkers: the PodProbeMarker reconciler (path a; unused, and harmless, without Kruise);
- coordination.k8s.io leases, in the operator's namespace only: leader election (`create` cannot be limited
  by name in RBAC; get/update/patch are limited to the one Lease).
Probe-path detection uses API discovery, which every authenticated client may read: no rule needed.
"""

from __future__ import annotations

import importlib.metadata
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from gamekeeper.kube.crds import all_crds
from gamekeeper.kube.names import DEFAULT_NAMESPACE as DEFAULT_NAMESPACE
from gamekeeper.kube.names import NAME as NAME


def _version() -> str:
    try:
        return importlib.metadata.version("gamekeeper")
    except importlib.metadata.PackageNotFoundError:
        return "0.1.0"


DEFAULT_IMAGE = f"gamekeeper:{_version()}"
HEALTH_PORT = 8081
ALL_VERBS = ["get", "list", "watch", "create", "update", "patch", "delete"]


@dataclass
class InstallOptions:
    namespace: str = DEFAULT_NAMESPACE
    image: str = DEFAULT_IMAGE
    replicas: int = 2
    watch_namespace: str | None = None  # None: every namespace (ClusterRoleBinding)
    probe: str = "auto"
    leader_elect: bool = True
    resources: dict[str, Any] = field(default_factory=lambda: {
        "requests": {"cpu": "100m", "memory": "128Mi"},
        "limits": {"memory": "512Mi"},
    })

    def __post_init__(self) -> None:
        if self.replicas < 1:
            raise ValueError("replicas must be at least 1")
        if self.replicas > 1 and not self.leader_elect:
            raise ValueError("more than one replica needs leader election (two replicas must never both act)")
        if self.probe not in ("auto", "kruise", "exec"):
            raise ValueError(f"probe must be auto, kruise or exec (got {self.probe!r})")


def labels() -> dict[str, str]:
    return {"app.kubernetes.io/name": NAME, "app.kubernetes.io/part-of": "gamekeeper"}


def cluster_role() -> dict[str, Any]:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": NAME, "labels": labels()},
        "rules": [
            {"apiGroups": ["game.kruise.io"], "resources": ["gameserversets", "gameservers"], "verbs": ALL_VERBS},
            {"apiGroups": ["game.kruise.io"], "resources": ["gameserversets/status", "gameservers/status"],
             "verbs": ["get", "update", "patch"]},
            {"apiGroups": ["gamekeeper.io"], "resources": ["workloads"], "verbs": ALL_VERBS},
            {"apiGroups": ["gamekeeper.io"], "resources": ["workloads/status"], "verbs": ["get", "update", "patch"]},
            {"apiGroups": [""], "resources": ["pods"], "verbs": ALL_VERBS},
            {"apiGroups": [""], "resources": ["pods/status"], "verbs": ["get", "update", "patch"]},
            {"apiGroups": [""], "resources": ["pods/exec"], "verbs": ["get", "create"]},
            {"apiGroups": ["apps"], "resources": ["controllerrevisions"], "verbs": ALL_VERBS},
            {"apiGroups": ["events.k8s.io"], "resources": ["events"], "verbs": ["create", "patch"]},
            {"apiGroups": ["apps.kruise.io"], "resources": ["podprobemarkers"], "verbs": ALL_VERBS},
        ],
    }


def operator_manifests(opts: InstallOptions) -> list[dict[str, Any]]:
    ns = opts.namespace
    subject = [{"kind": "ServiceAccount", "name": NAME, "namespace": ns}]
    role_ref = {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": NAME}
    if opts.watch_namespace:
        binding: dict[str, Any] = {
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": {"name": NAME, "namespace": opts.watch_namespace, "labels": labels()},
            "roleRef": role_ref, "subjects": subject,
        }
    else:
        binding = {
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": {"name": NAME, "labels": labels()}, "roleRef": role_ref, "subjects": subject,
        }
    args = ["operator", f"--probe={opts.probe}", f"--health-port={HEALTH_PORT}"]
    if opts.leader_elect:
        args += ["--leader-elect", f"--lease-namespace={ns}", f"--lease-name={NAME}"]
    else:
        args.append("--no-leader-elect")
    if opts.watch_namespace:
        args.append(f"--namespace={opts.watch_namespace}")
    probe = {"httpGet": {"path": "/healthz", "port": "health"}, "periodSeconds": 10, "timeoutSeconds": 3}
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": NAME, "namespace": ns, "labels": labels()},
        "spec": {
            "replicas": opts.replicas,
            "selector": {"matchLabels": {"app.kubernetes.io/name": NAME}},
            "template": {
                "metadata": {"labels": labels()},
                "spec": {
                    "serviceAccountName": NAME,
                    "securityContext": {"runAsNonRoot": True, "runAsUser": 65532,
                                        "seccompProfile": {"type": "RuntimeDefault"}},
                    "containers": [{
                        "name": "operator",
                        "image": opts.image,
                        "imagePullPolicy": "IfNotPresent",
                        "args": args,
                        "env": [
                            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                            {"name": "POD_NAMESPACE",
                             "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
                        ],
                        "ports": [{"name": "health", "containerPort": HEALTH_PORT, "protocol": "TCP"}],
                        "livenessProbe": {**probe, "initialDelaySeconds": 5},
                        "readinessProbe": {**probe, "httpGet": {"path": "/readyz", "port": "health"}},
                        "resources": opts.resources,
                        "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                            "capabilities": {"drop": ["ALL"]}},
                    }],
                },
            },
        },
    }
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns, "labels": labels()}},
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": NAME, "namespace": ns, "labels": labels()}},
        cluster_role(),
        binding,
        {
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
            "metadata": {"name": f"{NAME}-leader-election", "namespace": ns, "labels": labels()},
            "rules": [
                {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
                {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "resourceNames": [NAME],
                 "verbs": ["get", "update", "patch"]},
            ],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": {"name": f"{NAME}-leader-election", "namespace": ns, "labels": labels()},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": f"{NAME}-leader-election"},
            "subjects": subject,
        },
        deployment,
    ]


def all_manifests(opts: InstallOptions, crds: bool = True, operator: bool = True) -> list[dict[str, Any]]:
    return (all_crds() if crds else []) + (operator_manifests(opts) if operator else [])


def to_yaml(docs: list[dict[str, Any]]) -> str:
    return "".join("---\n" + yaml.safe_dump(d, sort_keys=False, default_flow_style=False) for d in docs)


HEADER = "# Generated by `python -m gamekeeper.kube.manifests deploy/` from src/gamekeeper/kube/; do not edit.\n"


def deploy_files() -> dict[str, str]:
    """The files under deploy/ that are generated (path relative to deploy/ -> text)."""
    files = {}
    for crd in all_crds():
        text = HEADER + to_yaml([crd])
        files[f"crds/{crd['metadata']['name']}.yaml"] = text
        files[f"helm/gamekeeper/crds/{crd['metadata']['name']}.yaml"] = text
    files["operator.yaml"] = HEADER + to_yaml(operator_manifests(InstallOptions()))
    return files


def write_deploy(directory: Path) -> list[Path]:
    written = []
    for relative, text in deploy_files().items():
        path = directory / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        written.append(path)
    return written


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m gamekeeper.kube.manifests DEPLOY_DIR")
    for written in write_deploy(Path(sys.argv[1])):
        print(written)
