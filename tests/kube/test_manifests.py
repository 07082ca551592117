"""The manifests, offline: structural CRD schemas, the seed's YAML validates against them, built-in kinds pass
kubernetes-validate --strict, deploy/ is what the code generates, the Helm chart renders to the same objects,
and `gk install` applies idempotently."""

from __future__ import annotations

import copy
import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from openapi_schema_validator import OAS30Validator
from typer.testing import CliRunner

from gamekeeper.kube.cli import apply_manifests, kube_app
from gamekeeper.kube.crds import all_crds, gameserver_crd, gameserverset_crd, structural_problems
from gamekeeper.kube.manifests import DEFAULT_NAMESPACE, InstallOptions, all_manifests, deploy_files, operator_manifests
from tests.kube.conftest import Cluster
from tests.kube.helm_lite import TemplateUnsupported, render, render_chart
from tests.kube.kmock_plus import Kind

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
CHART = DEPLOY / "helm" / "gamekeeper"
# The oldest and newest Kubernetes versions the bundled schemas cover that we support.
K8S_VERSIONS = ["1.25.0", kubernetes_validate.latest_version()]


def schema_of(crd: dict[str, Any]) -> dict[str, Any]:
    schema: dict[str, Any] = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


def errors(crd: dict[str, Any], obj: dict[str, Any]) -> list[str]:
    return sorted(f"{'.'.join(map(str, e.absolute_path))}: {e.message}"
                  for e in OAS30Validator(schema_of(crd)).iter_errors(obj))


def test_crd_schemas_are_structural() -> None:
    for crd in all_crds():
        assert structural_problems(schema_of(crd)) == [], crd["metadata"]["name"]


def test_the_structural_check_catches_what_the_api_server_refuses() -> None:
    assert structural_problems({"type": "object", "properties": {"a": {}}}) == ["a: type is required"]
    assert "a: $ref is not allowed" in structural_problems(
        {"type": "object", "properties": {"a": {"$ref": "#/x", "type": "object"}}})
    assert structural_problems({"type": "object", "properties": {"a": {"anyOf": [{"type": "string"}],
                                                                       "type": "string"}}}) == [
        "a: anyOf is not supported here"]
    assert structural_problems({"x-kubernetes-int-or-string": True, "type": "string"}) == [
        "<root>: x-kubernetes-int-or-string must not set a type"]


@pytest.mark.parametrize("seed", ["minecraft.yaml", "demo-gs.yaml"])
def test_the_seed_yaml_validates_against_the_crd(seed: str) -> None:
    doc = yaml.safe_load((ROOT / "examples" / seed).read_text())
    assert errors(gameserverset_crd(), doc) == []


def test_the_crd_schema_rejects_what_gk_apply_rejects() -> None:
    doc = yaml.safe_load((ROOT / "examples" / "minecraft.yaml").read_text())
    bad = copy.deepcopy(doc)
    bad["spec"]["replicas"] = "3"
    del bad["spec"]["serviceQualities"][0]["permanent"]
    bad["spec"]["updateStrategy"]["rollingUpdate"]["podUpdatePolicy"] = "Sometimes"
    bad["spec"]["serviceQualities"][0]["serviceQualityAction"][0]["state"] = "yes"
    problems = errors(gameserverset_crd(), bad)
    assert any(p.startswith("spec.replicas:") for p in problems), problems
    assert any("'permanent' is a required property" in p for p in problems), problems
    assert any("podUpdatePolicy" in p for p in problems), problems
    assert any("serviceQualityAction.0.state" in p for p in problems), problems
    gs = {"apiVersion": "game.kruise.io/v1alpha1", "kind": "GameServer", "metadata": {"name": "a-0"},
          "spec": {"opsState": "Maintaining", "deletionPriority": "10", "updatePriority": 5}}
    assert errors(gameserver_crd(), gs) == []
    # Pod fields newer than our models are kept (not pruned): the template keeps unknown fields.
    template = schema_of(gameserverset_crd())["properties"]["spec"]["properties"]["gameServerTemplate"]
    assert template["x-kubernetes-preserve-unknown-fields"] is True
    assert template["properties"]["spec"]["x-kubernetes-preserve-unknown-fields"] is True


def test_printer_columns_and_subresources_are_upstreams() -> None:
    gss = gameserverset_crd()["spec"]
    gs = gameserver_crd()["spec"]
    assert gss["names"]["shortNames"] == ["gss"] and gs["names"]["shortNames"] == ["gs"]
    assert [c["name"] for c in gss["versions"][0]["additionalPrinterColumns"]] == [
        "DESIRED", "CURRENT", "UPDATED", "READY", "Maintaining", "WaitToBeDeleted", "PreDelete", "AGE"]
    assert [(c["name"], c["jsonPath"]) for c in gs["versions"][0]["additionalPrinterColumns"]] == [
        ("STATE", ".status.currentState"), ("OPSSTATE", ".spec.opsState"), ("DP", ".status.deletionPriority"),
        ("UP", ".status.updatePriority"), ("AGE", ".metadata.creationTimestamp")]
    assert gss["versions"][0]["subresources"] == {"status": {}, "scale": {
        "specReplicasPath": ".spec.replicas", "statusReplicasPath": ".status.replicas",
        "labelSelectorPath": ".status.labelSelector"}}
    assert gs["versions"][0]["subresources"] == {"status": {}}


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_built_in_kinds_pass_kubernetes_validate_strict(version: str) -> None:
    opts = [InstallOptions(), InstallOptions(watch_namespace="games", replicas=1, leader_elect=False)]
    docs = all_crds() + [d for o in opts for d in operator_manifests(o)]
    for doc in docs:
        kubernetes_validate.validate(doc, version, strict=True)
    broken = copy.deepcopy(operator_manifests(InstallOptions())[-1])
    broken["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = "eighty"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, version, strict=True)


def test_deploy_is_generated_from_the_code() -> None:
    for relative, text in deploy_files().items():
        path = DEPLOY / relative
        assert path.exists() and path.read_text() == text, (
            f"deploy/{relative} is out of date: run `python -m gamekeeper.kube.manifests deploy/`")


def test_install_dry_run_prints_every_manifest() -> None:
    result = CliRunner().invoke(kube_app, ["install", "--dry-run"])
    assert result.exit_code == 0, result.output
    assert list(yaml.safe_load_all(result.stdout)) == all_manifests(InstallOptions())
    crds_only = CliRunner().invoke(kube_app, ["install", "--dry-run", "--crds-only"])
    assert [d["kind"] for d in yaml.safe_load_all(crds_only.stdout)] == ["CustomResourceDefinition"] * 3
    bad = CliRunner().invoke(kube_app, ["install", "--dry-run", "--probe", "sometimes"])
    assert bad.exit_code == 2 and "probe must be auto, kruise or exec" in bad.output


CHART_CASES = [
    ({}, InstallOptions()),
    ({"watchNamespace": "games", "replicaCount": 1, "leaderElection": {"enabled": False}, "probe": "exec",
      "image": {"repository": "registry.example/gk", "tag": "1.2.3"}, "externalScaler": {"enabled": False}},
     InstallOptions(watch_namespace="games", replicas=1, leader_elect=False, probe="exec",
                    image="registry.example/gk:1.2.3", external_scaler=False)),
]


@pytest.mark.parametrize(("values", "opts"), CHART_CASES)
def test_the_helm_chart_renders_the_same_objects(values: dict[str, Any], opts: InstallOptions) -> None:
    expected = [d for d in operator_manifests(opts) if d["kind"] != "Namespace"]  # helm --create-namespace
    rendered = render_chart(CHART, DEFAULT_NAMESPACE, values)
    key = lambda d: (d["kind"], d["metadata"]["name"])  # noqa: E731
    assert sorted(rendered, key=key) == sorted(expected, key=key)
    for crd in all_crds():
        assert yaml.safe_load((CHART / "crds" / f"{crd['metadata']['name']}.yaml").read_text()) == crd


def test_the_template_renderer_refuses_what_it_does_not_know() -> None:
    assert render("a{{- if .Values.x }} yes{{- else }} no{{- end }}", {"Values": {"x": ""}}) == "a no"
    with pytest.raises(TemplateUnsupported):
        render("{{ include \"x\" . }}", {})
    with pytest.raises(TemplateUnsupported):
        render("{{ .Values.x | upper }}", {"Values": {"x": "a"}})


@pytest.mark.skipif(shutil.which("helm") is None, reason="helm is not installed (the chart is checked by helm_lite)")
def test_helm_template_and_lint_agree(tmp_path: Path) -> None:
    out = subprocess.run(["helm", "template", "gamekeeper", str(CHART), "--namespace", DEFAULT_NAMESPACE],
                         capture_output=True, text=True, check=True).stdout
    rendered = [d for d in yaml.safe_load_all(out) if d]
    assert sorted(rendered, key=str) == sorted(render_chart(CHART, DEFAULT_NAMESPACE), key=str)
    subprocess.run(["helm", "lint", str(CHART)], check=True, capture_output=True)


@pytest.mark.asyncio
async def test_install_applies_idempotently(cluster: Cluster) -> None:
    cluster.emulator.declare({
        "apiextensions.k8s.io/v1/customresourcedefinitions": Kind(
            "CustomResourceDefinition", "apiextensions.k8s.io/v1", namespaced=False),
        "rbac.authorization.k8s.io/v1/clusterroles": Kind("ClusterRole", "rbac.authorization.k8s.io/v1",
                                                          namespaced=False),
        "rbac.authorization.k8s.io/v1/clusterrolebindings": Kind(
            "ClusterRoleBinding", "rbac.authorization.k8s.io/v1", namespaced=False),
        "rbac.authorization.k8s.io/v1/roles": Kind("Role", "rbac.authorization.k8s.io/v1"),
        "rbac.authorization.k8s.io/v1/rolebindings": Kind("RoleBinding", "rbac.authorization.k8s.io/v1"),
        "v1/serviceaccounts": Kind("ServiceAccount", "v1"),
        "v1/services": Kind("Service", "v1"),
        "apps/v1/deployments": Kind("Deployment", "apps/v1", status=True, scale=True),
    })
    client = cluster.client()
    docs = all_manifests(InstallOptions())
    first = await apply_manifests(client, docs)
    assert all(line.endswith(" created") for line in first) and len(first) == len(docs)
    assert await apply_manifests(client, docs) == [line.replace("created", "unchanged") for line in first]
    changed = all_manifests(InstallOptions(image="gamekeeper:9.9.9"))
    third = await apply_manifests(client, changed)
    assert [line for line in third if line.endswith("configured")] == [
        "deployments.apps/gamekeeper-operator configured"]
    deployment = cluster.world.find("Deployment", DEFAULT_NAMESPACE, "gamekeeper-operator")
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == "gamekeeper:9.9.9"
