"""Hostile input (issue 12, items 7f and 8): the Kubernetes API server's rules, loader hardening, one admission path.

Each case runs the real `gk apply` / `gk patch` in-process against a real SQLite state directory: it is refused
with one line naming the field, nothing is written (the store's write counter is unchanged), and no traceback.
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from gamekeeper.api.kube_rules import label_value, qualified_name, relative_dir_escapes
from gamekeeper.cli.main import app
from gamekeeper.runtime.local import container_cwd
from gamekeeper.store.sqlite import SqliteState
from tests.fleet import EXAMPLES, IMAGES, seed_yaml, state

SEED = (EXAMPLES / "minecraft.yaml").read_text()
GOOD_IMAGE = "registry.cn-hangzhou.aliyuncs.com/gs-demo/gameserver:idle"


class Gk:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.state_dir = tmp / "state"
        self.runner = CliRunner()

    def __call__(self, *args: str, stdin: bytes | None = None) -> Any:
        result = self.runner.invoke(app, [*args, "--state-dir", str(self.state_dir)], input=stdin,
                                    env={"COLUMNS": "100000"})
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise result.exception
        return result

    def apply_bytes(self, data: bytes) -> Any:
        path = self.tmp / "in.yaml"
        path.write_bytes(data)
        return self("apply", "-f", str(path), "--images", str(IMAGES))

    def writes(self) -> int:
        db_path = self.state_dir / "state.db"
        if not db_path.exists():
            return 0
        with sqlite3.connect(db_path) as db:
            rv = int(db.execute("SELECT rv FROM counter").fetchone()[0])
        db.close()
        return rv


@pytest.fixture
def gk(tmp_path: Path) -> Gk:
    return Gk(tmp_path)


def _errors(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("error:")]


def _refused(gk: Gk, result: Any, expected: str) -> None:
    assert result.exit_code == 1, result.output
    assert expected in result.output, result.output
    assert "Traceback" not in result.output
    for line in _errors(result.output):
        assert len(line) < 600, line


def _with_spec(extra: str) -> str:
    return SEED.replace("  replicas: 3\n", f"  replicas: 3\n{extra}", 1)


BOMB = "\n".join(
    ['x0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    + [f"x{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 9)]
) + "\n"

APPLY_CASES = [
    pytest.param(SEED.replace("minecraft", "mînecraft").encode("latin-1"), "not UTF-8 at line", id="latin-1"),
    pytest.param(b"\xff\xfe\x00\xd8" + b"a\x00", "not valid UTF-16", id="utf-16-broken"),
    pytest.param(SEED.encode("utf-16-le"), "UTF-16 or UTF-32 without a byte-order mark", id="utf-16-no-bom"),
    pytest.param((SEED + "---\n" + SEED.replace("replicas: 3", "replicas: [1]")).encode(),
                 "(document 2): spec.replicas: expected an integer", id="bad-second-document"),
    pytest.param((SEED + "---\n- 1\n").encode(), "(document 2): expected a mapping", id="list-second-document"),
    pytest.param(("spec: " + "[" * 5000 + "]" * 5000 + "\n").encode(), "nested deeper than 64 levels at line 1",
                 id="deep-lists"),
    pytest.param(("spec:\n" + "".join(" " * i + f"k{i}:\n" for i in range(1, 100))).encode(),
                 "nested deeper than 64 levels at line", id="deep-maps"),
    pytest.param(_with_spec("  ? [a, b]\n  : c\n").encode(), "a mapping key is a sequence", id="complex-key"),
    pytest.param((BOMB + SEED).encode(), "aliases expand to more than", id="billion-laughs"),
    pytest.param(b"a: &a [*a]\n", "an alias refers to its own anchor", id="recursive-alias"),
    pytest.param(_with_spec('  reserveGameServerIds: ["0-100000000000"]\n').encode(),
                 "spec.reserveGameServerIds[0]: range '0-100000000000' ends beyond 2147483647",
                 id="huge-reserve-range"),
    pytest.param(_with_spec('  reserveGameServerIds: ["0-2000000"]\n').encode(),
                 "at most 100000 ids can be reserved", id="many-reserved-ids"),
    pytest.param(SEED.replace("replicas: 3", "replicas: 1" + "0" * 5000).encode(), "an integer of 5001 characters",
                 id="integer-of-5000-digits"),
    pytest.param(SEED.replace("replicas: 3", "replicas: 2147483648").encode(),
                 "spec.replicas: must be <= 2147483647 (a Kubernetes int32)", id="replicas-beyond-int32"),
    pytest.param(SEED.replace("exec:\n", "exec: null\n      x:\n", 1).encode(),
                 "spec.serviceQualities[0].exec: is null", id="exec-null"),
    pytest.param(SEED.replace("          name: minecraft\n", "          name: minecraft\n        - image: "
                              f"{GOOD_IMAGE}\n          name: minecraft\n").encode(),
                 "containers[1].name: 'minecraft' is already the name of", id="duplicate-container-names"),
    pytest.param(SEED.replace("  namespace: default\n", "  namespace: default\n  labels: {'a b': x}\n").encode(),
                 "metadata.labels: key 'a b' is not a valid key", id="label-key-space"),
    pytest.param(SEED.replace("  namespace: default\n", "  namespace: default\n  labels: {'/x': y}\n").encode(),
                 "metadata.labels: key '/x': the prefix before '/' must not be empty", id="label-key-slash"),
    pytest.param(SEED.replace("  namespace: default\n",
                              f"  namespace: default\n  labels: {{k: {'v' * 64}}}\n").encode(),
                 "metadata.labels[k]: 'vvvv", id="label-value-64"),
    pytest.param(SEED.replace("  namespace: default\n",
                              f"  namespace: default\n  labels: {{k: {'v' * 10_000_000}}}\n").encode(),
                 "is 10000000 characters; a label value has at most 63", id="label-value-10MB"),
    pytest.param(SEED.replace("namespace: default", "namespace: " + "n" * 64).encode(),
                 "metadata.namespace: 'nnnn", id="namespace-64"),
    pytest.param(SEED.replace("          name: minecraft\n", "          name: minecraft\n          env: [{name: "
                              "'A=B', value: x}]\n").encode(), "env[0].name: 'A=B' contains '='", id="env-name-equals"),
    pytest.param(SEED.replace("          name: minecraft\n", "          name: minecraft\n          env: [{name: A, "
                              'value: "x\\0y"}]\n').encode(), "env[0].value: contains a NUL byte", id="nul-env-value"),
    pytest.param(SEED.replace("          name: minecraft\n", '          name: minecraft\n          command: ["a\\0"]\n'
                              ).encode(), "containers[0].command[0]: contains a NUL byte", id="nul-command"),
    pytest.param(SEED.replace("if ./idle.sh", "if ./idle.sh\\0").replace('["bash", "-c", "', '["bash", "-c", "')
                 .encode(), "spec.serviceQualities[0].exec.command[2]: contains a NUL byte", id="nul-probe-command"),
    pytest.param(SEED.replace("          name: minecraft\n", "          name: minecraft\n          workingDir: "
                              "../../../../\n").encode(), "workingDir: '../../../../' climbs out",
                 id="working-dir-escape"),
    pytest.param(SEED.replace("name: minecraft\n  namespace", "name: mine/craft\n  namespace").encode(),
                 "metadata.name: \"mine/craft\" is not a valid name", id="name-with-slash"),
    pytest.param(SEED.replace("opsState: WaitToBeDeleted", "opsState: gone for now").encode(),
                 "serviceQualityAction[0].opsState: 'gone for now' is not a valid label value", id="ops-state-space"),
    pytest.param(_with_spec("  lifecycle: {x: .nan}\n").encode(), "spec.lifecycle.x: nan is not a JSON number",
                 id="nan"),
    pytest.param(_with_spec("  lifecycle: {x: !!binary AAEC}\n").encode(), "spec.lifecycle.x: a bytes value",
                 id="binary-tag"),
]


@pytest.mark.parametrize(("data", "expected"), APPLY_CASES)
def test_hostile_apply_is_refused_with_one_line_and_nothing_written(gk: Gk, data: bytes, expected: str) -> None:
    before = gk.writes()
    _refused(gk, gk.apply_bytes(data), expected)
    assert gk.writes() == before


def test_dates_stay_strings_and_utf16_with_a_bom_applies(gk: Gk) -> None:
    # YAML allows UTF-16 with a byte-order mark; an unquoted date is a string, as in JSON.
    text = _with_spec("  lifecycle: {since: 2024-01-01}\n")
    assert gk.apply_bytes(text.encode("utf-16")).exit_code == 0
    stored = SqliteState(gk.state_dir).get("GameServerSet", "default", "minecraft")
    assert stored is not None and stored["spec"]["lifecycle"] == {"since": "2024-01-01"}


def test_a_valid_label_prefix_and_a_63_character_value_are_accepted(gk: Gk) -> None:
    text = SEED.replace("  namespace: default\n",
                        f"  namespace: default\n  labels: {{game.example.com/tier: {'v' * 63}}}\n")
    assert gk.apply_bytes(text.encode()).exit_code == 0


# --- one admission path for apply and patch ------------------------------------------------------------------


@pytest.fixture
def applied(gk: Gk) -> Gk:
    assert gk.apply_bytes(SEED.encode()).exit_code == 0
    state = SqliteState(gk.state_dir)
    labels = {"game.kruise.io/owner-gss": "minecraft"}
    state.create({"apiVersion": "game.kruise.io/v1alpha1", "kind": "GameServer",
                  "metadata": {"name": "minecraft-0", "namespace": "default", "labels": labels}, "spec": {}})
    state.create({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "minecraft-0", "namespace": "default",
                                                                  "labels": labels},
                  "spec": {"containers": [{"name": "minecraft", "image": GOOD_IMAGE}]}})
    return gk


PATCH_CASES = [
    pytest.param("gss", {"spec": {"gameServerTemplate": {"spec": {"containers": [{"name": "minecraft",
                                                                                   "image": "nope:1"}]}}}},
                 "spec.gameServerTemplate.spec.containers[0].image: image 'nope:1' is not in the image map",
                 id="gss-unknown-image"),
    pytest.param("gss", {"spec": {"reserveGameServerIds": ["5-1"]}},
                 "spec.reserveGameServerIds[0]: invalid range '5-1': start 5 is greater than end 1",
                 id="gss-inverted-reserve-range"),
    pytest.param("gss", {"spec": {"replicas": 2**31}}, "spec.replicas: must be <= 2147483647", id="gss-int32"),
    pytest.param("gss", {"status": {"replicas": 9}}, "status: is written by the controllers", id="gss-status"),
    pytest.param("gss", {"metadata": {"name": "other"}}, "metadata.name: is set by the system", id="gss-rename"),
    pytest.param("gs", {"spec": {"opsState": "a b"}}, "spec.opsState: 'a b' is not a valid label value",
                 id="gs-ops-state"),
    pytest.param("gs", {"spec": {"deletionPriority": 2**40}}, "spec.deletionPriority: must be <= 2147483647",
                 id="gs-priority-int32"),
    pytest.param("gs", {"metadata": {"labels": {"k": "x\u0000"}}}, "metadata.labels.k: contains a NUL byte",
                 id="gs-nul-label"),
    pytest.param("pod", {"metadata": {"labels": {"game.kruise.io/gs-opsState": 5}}},
                 "metadata.labels[game.kruise.io/gs-opsState]: expected a string, got int", id="pod-label-int"),
    pytest.param("pod", {"metadata": {"labels": {"a b": "x"}}}, "metadata.labels: key 'a b' is not a valid key",
                 id="pod-label-key"),
    pytest.param("pod", {"metadata": {"annotations": {"k": "v" * 300_000}}},
                 "metadata.annotations: 300001 bytes in total", id="pod-annotations-size"),
    pytest.param("pod", {"spec": {"nodeName": "elsewhere"}}, "spec.nodeName: a pod's spec cannot change",
                 id="pod-spec-immutable"),
    pytest.param("pod", {"spec": {"containers": [{"name": "minecraft", "image": "bad:1"}]}},
                 "spec.containers[0].image: image 'bad:1' is not in the image map", id="pod-unknown-image"),
    pytest.param("pod", {"spec": None}, "spec: expected a mapping", id="pod-spec-null"),
    pytest.param("pod", {"metadata": None}, "metadata: cannot be removed", id="pod-metadata-null"),
    pytest.param("pod", {"metadata": {"finalizers": ["a b"]}}, "metadata.finalizers[0]: 'a b' is not a valid key",
                 id="pod-finalizer"),
]


@pytest.mark.parametrize(("resource", "body", "expected"), PATCH_CASES)
def test_patch_checks_what_apply_checks(applied: Gk, resource: str, body: Any, expected: str) -> None:
    before = applied.writes()
    _refused(applied, applied("patch", resource, "minecraft" if resource == "gss" else "minecraft-0",
                              "-p", json.dumps(body)), expected)
    assert applied.writes() == before


@pytest.mark.parametrize("text", ["{not json", "[1]", '{"a":' * 5000 + "1" + "}" * 5000, "[" * 100_000])
def test_patch_text_that_is_not_a_json_object_is_refused(applied: Gk, text: str) -> None:
    before = applied.writes()
    result = applied("patch", "gss", "minecraft", "-p", text)
    assert result.exit_code == 1 and "--patch:" in result.output, result.output
    assert applied.writes() == before


def test_good_patches_still_apply(applied: Gk) -> None:
    assert applied("patch", "gss", "minecraft", "-p", '{"spec":{"replicas":5}}').exit_code == 0
    assert applied("patch", "gs", "minecraft-0", "-p", '{"spec":{"opsState":"Allocated"}}').exit_code == 0
    pod_patch = {"metadata": {"labels": {"team": "red"}}, "spec": {"activeDeadlineSeconds": 60}}
    assert applied("patch", "pod", "minecraft-0", "-p", json.dumps(pod_patch)).exit_code == 0
    pod = SqliteState(applied.state_dir).get("Pod", "default", "minecraft-0")
    assert pod is not None and pod["metadata"]["labels"]["team"] == "red"


# --- the rules themselves, and the kubelet's own workingDir check ----------------------------------------------


def test_rules_match_the_api_server() -> None:
    assert qualified_name("game.kruise.io/gs-opsState") is None
    assert qualified_name("app") is None
    assert qualified_name("a" * 63) is None and qualified_name("a" * 64) is not None
    assert qualified_name("Example.com/x") is not None  # prefixes are lower-case DNS subdomains
    assert label_value("") is None and label_value("a.b_c-d") is None
    assert label_value("-a") is not None and label_value("a\x01") is not None
    assert relative_dir_escapes("../x") and relative_dir_escapes("/a/../../b")
    assert not relative_dir_escapes("/data/../logs") and not relative_dir_escapes("a/./b")


def test_the_kubelet_keeps_a_working_dir_inside_the_container(tmp_path: Path) -> None:
    workdir = tmp_path / "pods" / "p" / "c"
    workdir.mkdir(parents=True)
    (workdir / "out").symlink_to(tmp_path)
    assert container_cwd(workdir, "/data") == workdir / "data"
    assert container_cwd(workdir, None) == workdir
    for escaping in ("../../../../", "/../x", "out/y"):
        with pytest.raises(OSError, match="leaves the container's directory"):
            container_cwd(workdir, escaping)


# --- junk that passes admission must not break the controller -------------------------------------------------

JUNK_POD_PATCHES = [
    {"metadata": {"labels": {"game.kruise.io/gs-opsState": "Weird", "game.kruise.io/gs-state": "x",
                             "game.kruise.io/gs-delete-priority": "nan", "game.kruise.io/gs-update-priority": "minus",
                             "lifecycle.apps.kruise.io/state": "Nope", "game.kruise.io/owner-gss": "nobody",
                             "game.kruise.io/network-disabled": "maybe"}}},
    {"metadata": {"annotations": {"game.kruise.io/network-status": "{not json", "game.kruise.io/network-conf": "[1]",
                                  "game.kruise.io/network-type": "", "gamekeeper.io/inplace-update-state":
                                  '{"lastContainerIDs": 5}', "game.kruise.io/gs-updating-containers": "[",
                                  "game.kruise.io/gsTemplate-metadata-hash": "x" * 300}}},
    {"metadata": {"annotations": {"game.kruise.io/network-status": '{"currentNetworkState": 5, '
                                  '"externalAddresses": "x", "internalAddresses": [1]}',
                                  "gamekeeper.io/inplace-update-state": '{"lastContainerIDs": {"minecraft": 5}}'}}},
    {"metadata": {"labels": {"game.kruise.io/gs-opsState": None, "game.kruise.io/owner-gss": None}}},
]


@pytest.mark.slow
def test_junk_pod_patches_that_pass_admission_leave_no_traceback(fleet: Any) -> None:
    doc = seed_yaml("minecraft.yaml")
    doc["spec"]["replicas"] = 1
    fleet.start()
    fleet.apply_yaml(doc)
    fleet.wait_gs("minecraft-0", lambda gs: "minecraft-0" in gs and state(gs["minecraft-0"]) == "Ready", 60)
    for body in JUNK_POD_PATCHES:
        fleet.gk("patch", "pod", "minecraft-0", "-p", json.dumps(body))
        time.sleep(1)
    # The controller reconciles the junk away (or ignores it) and keeps serving.
    fleet.wait_gs("minecraft-0 Ready again", lambda gs: state(gs["minecraft-0"]) == "Ready", 30)
    fleet.gk("scale", "gss", "minecraft", "--replicas", "2")
    fleet.wait_gs("minecraft-1", lambda gs: "minecraft-1" in gs and state(gs["minecraft-1"]) == "Ready", 60)
    assert fleet.controller is not None and fleet.controller.poll() is None
    assert "Traceback" not in fleet.log(), fleet.log()[-3000:]
