"""The fault suite's checks can fail: each invariant is shown to catch the fault it is there for."""

from __future__ import annotations

import subprocess

import pytest

from gamekeeper.store.sqlite import SqliteState
from tests.faults.harness import (
    Observer,
    census,
    cli_agrees,
    expected_survivors,
    games_by_pod,
    gss_doc,
    kill_pid,
    settle,
    settled_problems,
)
from tests.fleet import Fleet, wait_for

pytestmark = [pytest.mark.faults]


def pod(name: str, ops: str | None = None, priority: str | None = None) -> dict[str, object]:
    labels = {}
    if ops is not None:
        labels["game.kruise.io/gs-opsState"] = ops
    if priority is not None:
        labels["game.kruise.io/gs-delete-priority"] = priority
    return {"metadata": {"name": name, "labels": labels}}


def test_expected_survivors_follow_the_scale_in_order() -> None:
    pods = {
        "a-0": pod("a-0", "Maintaining"), "a-1": pod("a-1", "WaitToBeDeleted"), "a-2": pod("a-2", "None", "5"),
        "a-3": pod("a-3", "Allocated"), "a-4": pod("a-4", "None"), "a-5": pod("a-5", "Kill"), "a-6": pod("a-6"),
    }
    # Deleted first: Kill, WaitToBeDeleted, then None by priority (a-2) then ordinal (a-6, a-4), Allocated, Maintaining.
    assert expected_survivors(pods, 2) == {"a-0", "a-3"}
    assert expected_survivors(pods, 4) == {"a-0", "a-3", "a-4", "a-6"}
    assert expected_survivors(pods, 5) == {"a-0", "a-3", "a-4", "a-6", "a-2"}
    assert expected_survivors(pods, 0) == set()


@pytest.mark.slow
def test_the_checks_catch_a_duplicate_an_orphan_and_an_untracked_process(fleet: Fleet, state: SqliteState) -> None:
    fleet.apply_yaml(gss_doc("hx", 1))
    settle(fleet, state, "hx", 1, "harness")
    observer = Observer(fleet.state_dir, "hx")
    observer.start()
    workdir = fleet.state_dir / "pods" / "default" / "hx-0" / "main"
    # A second copy of the game in the pod's directory: what a duplicate start looks like from /proc.
    twin = subprocess.Popen(["sh", "game.sh"], cwd=workdir, stdout=subprocess.DEVNULL, start_new_session=True)
    ghost_dir = fleet.state_dir / "pods" / "default" / "ghost-0" / "main"
    ghost_dir.mkdir(parents=True)
    ghost = subprocess.Popen(["sleep", "100000"], cwd=ghost_dir, start_new_session=True)
    try:
        wait_for(lambda: len(games_by_pod(census(fleet.state_dir)).get(("hx-0", "main"), [])) == 2, "the twin", 10)
        problems = settled_problems(fleet, state, "hx", 1)
        assert any("hx-0/main: 2 game processes" in p for p in problems), problems
        assert any("of deleted pod ghost-0" in p for p in problems), problems
        wait_for(lambda: observer.samples > 3, "observer samples", 10)
        assert any("duplicate game processes for hx-0/main" in v for v in observer.stop())
        # Only the twin left running, the recorded one killed: `gk get` no longer matches what runs.
        recorded = next(p for p in census(fleet.state_dir) if p.pod == "hx-0" and p.is_supervisor)
        fleet.kill_controller()
        kill_pid(recorded.pid)
        for p in census(fleet.state_dir):
            if p.pod == "hx-0" and p.is_game and p.pid != twin.pid:
                kill_pid(p.pid)
        wait_for(lambda: len(games_by_pod(census(fleet.state_dir)).get(("hx-0", "main"), [])) == 1, "one left", 10)
        problems = settled_problems(fleet, state, "hx", 1)
        assert any("is not the supervisor of the running game process" in p for p in problems), problems
        assert any("running as local://" in p for p in cli_agrees(fleet, "hx"))
    finally:
        for proc in (twin, ghost):
            proc.kill()
            proc.wait()
