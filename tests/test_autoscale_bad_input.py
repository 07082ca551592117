"""Bad ScaledObjects are refused at apply with the field path, and nothing is written (not even the set beside)."""

from __future__ import annotations

import json

import pytest

from tests.fleet import EXAMPLES, Fleet

SET = (EXAMPLES / "minecraft.yaml").read_text()
SO = (EXAMPLES / "minecraft-scaledobject.yaml").read_text()
TRIGGER = "    - type: external\n      metricType: AverageValue\n      metadata:\n"


def apply(fleet: Fleet, so_text: str) -> tuple[int, str]:
    path = fleet.tmp / "bad.yaml"
    path.write_text(SET + "---\n" + so_text)
    proc = fleet.gk("apply", "-f", str(path), check=False)
    return proc.returncode, proc.stderr


def stored(fleet: Fleet, kind: str) -> list[str]:
    return [o["metadata"]["name"] for o in json.loads(fleet.gk("get", kind, "-o", "json").stdout)["items"]]


@pytest.mark.parametrize(("text", "expected"), [
    pytest.param(SO.replace("- type: external", "- type: cpu"),
                 "spec.triggers[0].type: 'cpu' is not supported (supported: external", id="unknown-trigger-type"),
    pytest.param(SO.replace("minReplicaCount: 1", "minReplicaCount: 5\n  maxReplicaCount: 2"),
                 "spec.minReplicaCount: 5 is greater than spec.maxReplicaCount 2", id="min-above-max"),
    pytest.param(SO.replace(TRIGGER, TRIGGER + '        minAvailable: "abc"\n'),
                 "spec.triggers[0].metadata.minAvailable: 'abc' is not a number >= 0", id="min-available-abc"),
    pytest.param(SO.replace(TRIGGER, TRIGGER + '        minAvailable: "-1"\n'),
                 "spec.triggers[0].metadata.minAvailable: '-1' is not a number >= 0", id="min-available-negative"),
    pytest.param(SO.replace(TRIGGER, TRIGGER + "        minAvailable: 2\n"),
                 "spec.triggers[0].metadata.minAvailable: expected a string", id="min-available-unquoted"),
    pytest.param(SO.replace("    kind: GameServerSet", "    kind: Deployment"),
                 "spec.scaleTargetRef.kind: 'Deployment' is not a GameServerSet", id="target-not-a-gss"),
    pytest.param(SO.replace("    apiVersion: game.kruise.io/v1alpha1\n    kind: GameServerSet\n", ""),
                 "spec.scaleTargetRef.kind: required: GameServerSet", id="target-kind-missing"),
    pytest.param(SO.replace("  pollingInterval: 2", "  pollingInterval: 2\n  fallback:\n    replicas: 3"),
                 "spec.fallback: not supported by Gamekeeper's built-in scaler", id="unsupported-keda-field"),
    pytest.param(SO.replace("  pollingInterval: 2", "  pollingIntervall: 2"),
                 "spec.pollingIntervall: unknown field", id="unknown-field"),
    pytest.param(SO.replace("type: Percent", "type: Percentage"),
                 "behavior.scaleDown.policies[0].type: expected Pods or Percent", id="bad-policy-type"),
    pytest.param(SO.replace("name: minecraft # the GameServerSet's name", "name: other"),
                 "metadata.name: 'other' must equal spec.scaleTargetRef.name 'minecraft'", id="name-differs"),
    pytest.param(SO.replace("metricType: AverageValue", "metricType: Value"),
                 "spec.triggers[0].metricType: expected AverageValue", id="metric-type"),
])
def test_refused_with_field_path_and_nothing_written(fleet: Fleet, text: str, expected: str) -> None:
    code, stderr = apply(fleet, text)
    assert code == 1
    assert expected in stderr, stderr
    assert "nothing was applied" in stderr
    assert stored(fleet, "so") == [] and stored(fleet, "gss") == []


def test_okg_users_file_is_accepted_unchanged(fleet: Fleet) -> None:
    code, stderr = apply(fleet, SO)
    assert code == 0, stderr
    assert stored(fleet, "so") == ["minecraft"]
    table = fleet.gk("get", "so").stdout.splitlines()
    assert table[0].split() == ["NAME", "SCALETARGETKIND", "SCALETARGETNAME", "MIN", "MAX", "DESIRED", "LAST-SCALE",
                                "AGE"]
    assert table[1].split()[:5] == ["minecraft", "game.kruise.io/v1alpha1.GameServerSet", "minecraft", "1", "100"]


def test_patch_is_validated(fleet: Fleet) -> None:
    assert apply(fleet, SO)[0] == 0
    proc = fleet.gk("patch", "so", "minecraft", "-p", '{"spec":{"minReplicaCount":200}}', check=False)
    assert proc.returncode == 1 and "spec.minReplicaCount: 200 is greater than" in proc.stderr
    assert json.loads(fleet.gk("get", "so", "minecraft", "-o", "json").stdout)["spec"]["minReplicaCount"] == 1
    fleet.gk("delete", "so", "minecraft")
    assert stored(fleet, "so") == []
