"""Bad input gets one clear line per problem, a non-zero exit, and nothing stored."""

from __future__ import annotations

import json

import pytest

from tests.fleet import EXAMPLES, Fleet, seed_yaml


def stored_sets(fleet: Fleet) -> list[str]:
    data = json.loads(fleet.gk("get", "gss", "-o", "json").stdout)
    return [o["metadata"]["name"] for o in data["items"]]


def apply_text(fleet: Fleet, text: str) -> tuple[int, str]:
    path = fleet.tmp / "bad.yaml"
    path.write_text(text)
    proc = fleet.gk("apply", "-f", str(path), check=False)
    return proc.returncode, proc.stderr


SEED = (EXAMPLES / "minecraft.yaml").read_text()


@pytest.mark.parametrize(
    ("text", "expected_lines"),
    [
        pytest.param(
            SEED.replace("permanent: false", 'permanent: "no"'),
            ['spec.serviceQualities[0].permanent: expected true or false, got "no"'],
            id="string-for-bool",
        ),
        pytest.param(
            SEED.replace("- state: true\n          result: active", '- state: "yes"\n          result: active'),
            ['spec.serviceQualities[0].serviceQualityAction[1].state: expected true or false, got "yes"'],
            id="issue-example",
        ),
        pytest.param(
            SEED.replace("- state: true\n          result: active", "- state: yes\n          result: active"),
            ['spec.serviceQualities[0].serviceQualityAction[1].state: expected true or false, got "yes"'],
            id="yaml-1.1-yes-is-not-a-bool",
        ),
        pytest.param(
            SEED.replace("replicas: 3", 'replicas: "3"'),
            ['spec.replicas: expected an integer, got "3"'],
            id="string-for-int",
        ),
        pytest.param(
            SEED.replace("replicas: 3", "replicas: -1"),
            ["spec.replicas: must be >= 0, got -1"],
            id="negative-replicas",
        ),
        pytest.param(
            SEED.replace("  replicas: 3\n", "  replicas: 3\n  replica: 4\n"),
            ["spec.replica: unknown field"],
            id="unknown-field",
        ),
        pytest.param(
            SEED.replace("          name: minecraft\n", "          name: minecraft\n          imagePulPolicy: x\n"),
            ["spec.gameServerTemplate.spec.containers[0].imagePulPolicy: unknown field"],
            id="unknown-container-field",
        ),
        pytest.param(
            SEED.replace("      permanent: false\n", ""),
            ["spec.serviceQualities[0].permanent: required field is missing"],
            id="missing-required",
        ),
        pytest.param(
            SEED.replace("containerName: minecraft", "containerName: mc"),
            ["containerName: 'mc' is not a container of gameServerTemplate"],
            id="unknown-container-name",
        ),
        pytest.param(
            SEED.replace("gs-demo/gameserver:idle", "gs-demo/gameserver:nope"),
            ["spec.gameServerTemplate.spec.containers[0].image: image 'registry.cn-hangzhou.aliyuncs.com/"
             "gs-demo/gameserver:nope' is not in the image map"],
            id="unknown-image",
        ),
        pytest.param(
            SEED.replace("  replicas: 3\n", "  replicas: 3\n  reserveGameServerIds: [1, \"5-2\", -3, 1]\n"),
            ["spec.reserveGameServerIds[1]: invalid range '5-2': start 5 is greater than end 2",
             "spec.reserveGameServerIds[2]: -3 is negative",
             "spec.reserveGameServerIds[3]: id 1 is already reserved by item [0]"],
            id="reserve-ids",
        ),
        pytest.param(
            SEED.replace("kind: GameServerSet", "kind: GameServerSett"),
            ["kind: expected one of GameServerSet, GameServer, ScaledObject, got \"GameServerSett\""],
            id="unknown-kind",
        ),
        pytest.param(
            SEED.replace("  name: minecraft\n  namespace", "  name: Minecraft_1\n  namespace"),
            ['metadata.name: "Minecraft_1" is not a valid name'],
            id="bad-name",
        ),
        pytest.param(
            SEED.replace("spec:\n  replicas: 3", "spec:\n  replicas: 3\n   oops: [", 1),
            ["invalid YAML at line"],
            id="malformed-yaml",
        ),
    ],
)
def test_bad_input_is_refused_with_field_paths(fleet: Fleet, text: str, expected_lines: list[str]) -> None:
    code, stderr = apply_text(fleet, text)
    assert code != 0
    for line in expected_lines:
        assert line in stderr, stderr
    assert "nothing was applied" in stderr
    assert stored_sets(fleet) == []


def test_all_problems_are_reported_at_once(fleet: Fleet) -> None:
    text = SEED.replace("replicas: 3", 'replicas: "3"').replace("permanent: false", "permanent: 1")
    code, stderr = apply_text(fleet, text)
    assert code != 0
    assert 'spec.replicas: expected an integer, got "3"' in stderr
    assert "spec.serviceQualities[0].permanent: expected true or false, got 1" in stderr


def test_one_bad_document_stores_nothing_of_the_others(fleet: Fleet) -> None:
    good = SEED
    bad = SEED.replace("name: minecraft\n  namespace", "name: other\n  namespace").replace(
        "replicas: 3", "replicas: x")
    code, stderr = apply_text(fleet, good + "---\n" + bad)
    assert code != 0
    assert "(document 2)" in stderr
    assert stored_sets(fleet) == []


def test_bad_patch_is_refused_and_the_object_is_unchanged(fleet: Fleet) -> None:
    fleet.apply_yaml(seed_yaml("minecraft.yaml"))
    before = fleet.gk("get", "gss", "minecraft", "-o", "json").stdout
    proc = fleet.gk("patch", "gss", "minecraft", "--type", "merge", "-p", '{"spec":{"replicas":"two"}}', check=False)
    assert proc.returncode != 0
    assert 'spec.replicas: expected an integer, got "two"' in proc.stderr
    proc = fleet.gk("patch", "gss", "minecraft", "-p", "{not json", check=False)
    assert proc.returncode != 0 and "invalid JSON" in proc.stderr
    assert fleet.gk("get", "gss", "minecraft", "-o", "json").stdout == before


def test_a_good_apply_then_reapply_is_unchanged(fleet: Fleet) -> None:
    assert "created" in fleet.apply_yaml(seed_yaml("minecraft.yaml")).stdout
    assert "unchanged" in fleet.apply_yaml(seed_yaml("minecraft.yaml")).stdout
    doc = seed_yaml("minecraft.yaml")
    doc["spec"]["replicas"] = 5
    assert "configured" in fleet.apply_yaml(doc).stdout
    obj = json.loads(fleet.gk("get", "gss", "minecraft", "-o", "json").stdout)
    assert obj["spec"]["replicas"] == 5
    assert obj["metadata"]["generation"] == 2


def test_the_seed_yaml_loads_unchanged(fleet: Fleet) -> None:
    for name in ("minecraft.yaml", "demo-gs.yaml"):
        proc = fleet.gk("apply", "-f", str(EXAMPLES / name))
        assert "created" in proc.stdout
        assert proc.stderr.count("warning") == 0
