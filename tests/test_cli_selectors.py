"""`gk get/patch/label/annotate/delete` with -l, --field-selector and --sort-by: the real CLI on a real store."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from gamekeeper.cli import selection as sel
from gamekeeper.store.sqlite import SqliteState
from tests.fleet import Fleet

OWNER = "game.kruise.io/owner-gss"


def _gs(name: str, ops: str, gss: str = "minecraft", priority: int = 0, state: str = "Ready") -> dict[str, Any]:
    return {
        "apiVersion": "game.kruise.io/v1alpha1", "kind": "GameServer",
        "metadata": {"name": name, "namespace": "default", "labels": {OWNER: gss}},
        "spec": {"opsState": ops, "deletionPriority": priority, "updatePriority": 0, "networkDisabled": False},
        "status": {"currentState": state, "deletionPriority": priority},
    }


FLEET = [
    _gs("minecraft-0", "WaitToBeDeleted", priority=3),
    _gs("minecraft-1", "None", priority=10),
    _gs("minecraft-2", "WaitToBeDeleted", priority=-1),
    _gs("minecraft-10", "Maintaining", state="NotReady"),
    _gs("other-0", "WaitToBeDeleted", gss="other"),
]
IDLE = ["-l", f"{OWNER}=minecraft", "--field-selector", "spec.opsState=WaitToBeDeleted"]


@pytest.fixture
def seeded(fleet: Fleet) -> Fleet:
    state = SqliteState(fleet.state_dir)
    for body in FLEET:
        state.create(json.loads(json.dumps(body)))
    state.close()
    return fleet


def _names(fleet: Fleet, *args: str) -> list[str]:
    out = fleet.gk("get", "gs", *args, "-o", "name").stdout.split()
    return [line.split("/", 1)[1] for line in out if "/" in line]


def _ops(fleet: Fleet) -> dict[str, str]:
    return {n: g["spec"]["opsState"] for n, g in fleet.gameservers().items()}


def test_get_with_selectors_lists_exactly_the_matches(seeded: Fleet) -> None:
    assert _names(seeded, *IDLE) == ["minecraft-0", "minecraft-2"]
    table = seeded.gk("get", "gs", *IDLE).stdout.splitlines()
    assert table[0].split() == ["NAME", "STATE", "OPSSTATE", "DP", "UP", "AGE"]
    assert [line.split()[0] for line in table[1:]] == ["minecraft-0", "minecraft-2"]
    assert _names(seeded, "-l", f"{OWNER} in (minecraft,other),{OWNER}!=minecraft") == ["other-0"]
    assert _names(seeded, "--field-selector", "status.currentState!=Ready") == ["minecraft-10"]
    assert _names(seeded, "--field-selector", "gss=other") == ["other-0"]
    assert _names(seeded, "-l", "!" + OWNER) == []
    # Name order is by ordinal, as before; -o json carries the same selection.
    assert _names(seeded, "-l", OWNER) == ["minecraft-0", "minecraft-1", "minecraft-2", "minecraft-10", "other-0"]
    items = json.loads(seeded.gk("get", "gs", *IDLE, "-o", "json").stdout)["items"]
    assert [i["metadata"]["name"] for i in items] == ["minecraft-0", "minecraft-2"]


def test_a_selector_that_matches_nothing_says_so(seeded: Fleet) -> None:
    for args in (["-l", "app=nothing"], ["--field-selector", "spec.opsState=Kill"]):
        assert seeded.gk("get", "gs", *args).stdout.strip() == "No resources found in default namespace."
    assert seeded.gk("get", "gss", "-l", "x").stdout.strip() == "No resources found in default namespace."


def test_bad_selectors_are_refused_with_kubernetes_texts(seeded: Fleet) -> None:
    bad = seeded.gk("get", "gs", "-l", "x in (a", check=False)
    assert bad.returncode == 1
    assert "--selector 'x in (a': unable to parse requirement: found '', expected: ',' or ')'" in bad.stderr
    bad = seeded.gk("get", "gs", "--field-selector", "spec.opsstate=Kill", check=False)
    assert bad.returncode == 1 and "field label not supported: spec.opsstate" in bad.stderr
    assert "spec.opsState" in bad.stderr  # the fix: the fields that can be selected on
    bad = seeded.gk("get", "gs", "minecraft-0", "-l", "x", check=False)
    assert bad.returncode == 1 and "name cannot be provided when a selector is specified" in bad.stderr
    bad = seeded.gk("get", "gs", "--sort-by", ".spec.nope", check=False)
    assert bad.returncode == 1 and "couldn't find any field with path \"{.spec.nope}\"" in bad.stderr


def test_sort_by_and_show_labels(seeded: Fleet) -> None:
    assert _names(seeded, "-l", f"{OWNER}=minecraft", "--sort-by", "{.spec.deletionPriority}") == [
        "minecraft-2", "minecraft-10", "minecraft-0", "minecraft-1"]
    assert _names(seeded, "--sort-by", ".metadata.name") == [
        "minecraft-0", "minecraft-1", "minecraft-10", "minecraft-2", "other-0"]
    lines = seeded.gk("get", "gs", "--field-selector", "gss=other", "--show-labels").stdout.splitlines()
    assert lines[0].split()[-1] == "LABELS" and lines[1].split()[-1] == f"{OWNER}=other"


def test_bulk_patch_kills_exactly_the_idle_servers(seeded: Fleet) -> None:
    out = seeded.gk("patch", "gs", *IDLE, "-p", '{"spec":{"opsState":"Kill"}}').stdout.splitlines()
    assert out == ["gameserver.game.kruise.io/minecraft-0 patched", "gameserver.game.kruise.io/minecraft-2 patched"]
    assert _ops(seeded) == {"minecraft-0": "Kill", "minecraft-1": "None", "minecraft-2": "Kill",
                            "minecraft-10": "Maintaining", "other-0": "WaitToBeDeleted"}
    again = seeded.gk("patch", "gs", "minecraft-0", "minecraft-2", "-p", '{"spec":{"opsState":"Kill"}}').stdout
    assert again.splitlines() == ["gameserver.game.kruise.io/minecraft-0 patched (no change)",
                                  "gameserver.game.kruise.io/minecraft-2 patched (no change)"]
    assert seeded.gk("patch", "gs", *IDLE, "-p", '{"spec":{"opsState":"Kill"}}').stdout.strip() == (
        "No resources found in default namespace.")


def test_bulk_patch_that_would_break_any_match_writes_nothing(seeded: Fleet) -> None:
    before = seeded.gameservers()
    bad = seeded.gk("patch", "gs", "-l", OWNER, "-p", '{"spec":{"networkDisabled":"yes","opsState":"Kill"}}',
                    check=False)
    assert bad.returncode == 1
    assert "gameserver.game.kruise.io/minecraft-0: spec.networkDisabled" in bad.stderr
    assert "nothing was patched" in bad.stderr
    assert seeded.gameservers() == before
    bad = seeded.gk("patch", "gs", "minecraft-0", "-l", OWNER, "-p", "{}", check=False)
    assert bad.returncode == 1 and "name cannot be provided when a selector is specified" in bad.stderr
    missing = seeded.gk("patch", "gs", "minecraft-0", "nope", "-p", '{"spec":{"opsState":"Allocated"}}', check=False)
    assert missing.returncode == 1 and 'gameserver.game.kruise.io "nope" not found' in missing.stderr
    assert missing.stdout.strip() == "gameserver.game.kruise.io/minecraft-0 patched"


def test_label_and_annotate(seeded: Fleet) -> None:
    out = seeded.gk("label", "gs", "-l", f"{OWNER}=minecraft", "--field-selector", "spec.opsState=None",
                    "tier=gold").stdout
    assert out.strip() == "gameserver.game.kruise.io/minecraft-1 labeled"
    assert _names(seeded, "-l", "tier=gold") == ["minecraft-1"]
    clash = seeded.gk("label", "gs", "minecraft-1", "tier=silver", check=False)
    assert clash.returncode == 1 and "'tier' already has a value (gold), and --overwrite is false" in clash.stderr
    assert seeded.gk("label", "gs", "minecraft-1", "tier=silver", "--overwrite").stdout.strip().endswith(" labeled")
    assert seeded.gk("label", "gs", "minecraft-1", "tier=silver").stdout.strip().endswith(" not labeled")
    out = seeded.gk("label", "gs", "minecraft-1", "minecraft-0", "tier-").stdout.splitlines()
    assert out == ["gameserver.game.kruise.io/minecraft-1 unlabeled",
                   "gameserver.game.kruise.io/minecraft-0 not labeled", 'label "tier" not found.']
    assert _names(seeded, "-l", "tier") == []
    bad = seeded.gk("label", "gs", "minecraft-1", "bad key=x", check=False)
    assert bad.returncode == 1 and "invalid label key 'bad key'" in bad.stderr
    bad = seeded.gk("label", "gs", "minecraft-1", "k=a b", check=False)
    assert bad.returncode == 1 and "invalid label value" in bad.stderr

    out = seeded.gk("annotate", "gs", "--field-selector", "gss=other", "note=draining soon, see #42").stdout
    assert out.strip() == "gameserver.game.kruise.io/other-0 annotated"
    assert seeded.gameservers()["other-0"]["metadata"]["annotations"] == {"note": "draining soon, see #42"}
    assert seeded.gk("annotate", "gs", "other-0", "note-").stdout.strip().endswith(" unannotated")


def test_delete_by_selector(seeded: Fleet) -> None:
    out = seeded.gk("delete", "gs", *IDLE).stdout.splitlines()
    assert out == ['gameserver.game.kruise.io "minecraft-0" deleted', 'gameserver.game.kruise.io "minecraft-2" deleted']
    assert sorted(seeded.gameservers()) == ["minecraft-1", "minecraft-10", "other-0"]
    assert seeded.gk("delete", "gs", *IDLE).stdout.strip() == "No resources found in default namespace."
    bad = seeded.gk("delete", "gs", check=False)
    assert bad.returncode == 1 and "-l/--selector" in bad.stderr


def test_a_concurrent_write_is_recomputed_not_overwritten(tmp_path: Path) -> None:
    state = SqliteState(tmp_path)
    state.create(_gs("minecraft-0", "WaitToBeDeleted"))
    calls = 0

    def change(obj: dict[str, Any]) -> dict[str, Any] | None:
        nonlocal calls
        calls += 1
        if calls == 2:  # the first write attempt: someone else writes in between
            state.patch("GameServer", "default", "minecraft-0", {"metadata": {"labels": {"by": "controller"}}})
        labels = obj["metadata"].get("labels") or {}
        return {"metadata": {"labels": {"seen": str(len(labels))}}}

    objects = sel.select(state, "GameServer", "default")
    [outcome] = sel.apply_each(state, "GameServer", objects, change)
    assert outcome.changed and outcome.error is None and calls == 3
    labels = state.get("GameServer", "default", "minecraft-0")["metadata"]["labels"]  # type: ignore[index]
    # The label written meanwhile survives, and the change was computed from the object that contained it.
    assert labels == {OWNER: "minecraft", "by": "controller", "seen": "2"}


@pytest.mark.slow
def test_done_when_select_the_idle_servers_and_kill_them(fleet: Fleet) -> None:
    """Issue 13's check, on the seed's scenario: a real controller, real game servers, a real player."""
    from tests.fleet import ops, seed_yaml

    fleet.start()
    fleet.apply_yaml(seed_yaml("minecraft.yaml"))
    fleet.wait_gs("all idle", lambda gs: len(gs) == 3 and all(ops(g) == "WaitToBeDeleted" for g in gs.values()))
    assert fleet.gk("exec", "minecraft-1", "--", "./player.sh", "join", "alice").returncode == 0
    fleet.wait_gs("minecraft-1 None", lambda gs: ops(gs["minecraft-1"]) == "None")

    assert _names(fleet, *IDLE) == ["minecraft-0", "minecraft-2"]
    out = fleet.gk("patch", "gs", *IDLE, "-p", '{"spec":{"opsState":"Kill"}}').stdout.splitlines()
    assert out == ["gameserver.game.kruise.io/minecraft-0 patched", "gameserver.game.kruise.io/minecraft-2 patched"]
    fleet.wait_gs("only minecraft-1 left", lambda gs: list(gs) == ["minecraft-1"])
    assert "alice" in fleet.gk("exec", "minecraft-1", "--", "./player.sh", "list").stdout
    assert json.loads(fleet.gk("get", "gss", "minecraft", "-o", "json").stdout)["spec"]["replicas"] == 1
