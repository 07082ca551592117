"""The fault-injection harness: seeded crash points, a census of real processes from /proc, invariants.

Every scenario draws its random choices from one `random.Random` seeded by `--fault-seed` / `GK_FAULT_SEED`
(printed at the start of the run and in every failure), so a failing run is reproduced with that seed and the
same `--fault-iterations` / `GK_FAULT_ITERATIONS`.

The game servers are tiny shell scripts (`game.sh`, listed by cmdline) that exit 0 on SIGTERM, as a game that
saves and quits does; each runs under the local kubelet's `/bin/sh` supervisor (cmdline holds `gk-container`).
The census reads /proc only: what the store says is checked against what really runs, never the other way round.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from gamekeeper.api.models import GS_DELETE_PRIORITY_KEY, GS_OPS_STATE_KEY, LIFECYCLE_STATE_KEY, OWNER_GSS_KEY
from gamekeeper.core.update import pod_ready
from gamekeeper.runtime.local import parse_container_id, process_start_time
from gamekeeper.store.sqlite import SqliteState
from tests.fleet import Fleet, wait_for
from tests.procs import cmdline, working_in

NS = "default"
GAME_SH = """\
# A game server that saves and quits on SIGTERM (exit 0), so restartPolicy Never/OnFailure see a clean exit.
trap 'kill "$child" 2>/dev/null; echo stopping; exit 0' TERM
read -r version < VERSION
echo "started $version pid $$"
sleep 100000 &
child=$!
wait "$child"
"""
GAME_CMDLINE = [b"sh", b"game.sh"]
SUPERVISOR_MARK = b"gk-container"

# Deletion order of scale-in, written out independently of core/scaling.py so that the suite checks it.
RANK = {"Kill": 100, "WaitToBeDeleted": 1, "None": 0, "Allocated": -1, "Maintaining": -2}


# --- images -----------------------------------------------------------------------------------------------------


def use_fault_images(fleet: Fleet, extra: Mapping[str, Mapping[str, Any]] | None = None) -> None:
    """game:v1 / game:v2 (game.sh, VERSION 1 / 2) and any `extra` images (each an empty directory)."""
    entries: dict[str, Any] = {}
    for version in ("1", "2"):
        directory = fleet.tmp / "images" / f"game_v{version}"
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "VERSION").write_text(version + "\n")
        (directory / "game.sh").write_text(GAME_SH)
        entries[f"game:v{version}"] = {"path": str(directory), "command": ["sh", "game.sh"]}
    for ref, entry in (extra or {}).items():
        directory = fleet.tmp / "images" / ref.replace(":", "_").replace("/", "_")
        directory.mkdir(parents=True, exist_ok=True)
        entries[ref] = {"path": str(directory), **entry}
    path = fleet.tmp / "images.yaml"
    path.write_text(yaml.safe_dump({"images": entries}))
    fleet.env["GAMEKEEPER_IMAGES"] = str(path)


def gss_doc(name: str, replicas: int, image: str = "game:v1", *, rolling: Mapping[str, Any] | None = None,
            restart_policy: str | None = None, qualities: list[dict[str, Any]] | None = None,
            reserve: list[int] | None = None, grace: int = 2) -> dict[str, Any]:
    pod_spec: dict[str, Any] = {"terminationGracePeriodSeconds": grace,
                                "containers": [{"name": "main", "image": image}]}
    if restart_policy:
        pod_spec["restartPolicy"] = restart_policy
    spec: dict[str, Any] = {"replicas": replicas, "gameServerTemplate": {"spec": pod_spec}}
    if rolling is not None:
        spec["updateStrategy"] = {"rollingUpdate": dict(rolling)}
    if qualities:
        spec["serviceQualities"] = qualities
    if reserve is not None:
        spec["reserveGameServerIds"] = reserve
    return {"apiVersion": "game.kruise.io/v1alpha1", "kind": "GameServerSet",
            "metadata": {"name": name, "namespace": NS}, "spec": spec}


# --- the process census -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Proc:
    pid: int
    ppid: int
    start: int
    cmdline: tuple[bytes, ...]
    pod: str  # the pod directory the process works in ("" outside any)
    container: str

    @property
    def is_game(self) -> bool:
        return list(self.cmdline) == GAME_CMDLINE

    @property
    def is_supervisor(self) -> bool:
        return SUPERVISOR_MARK in self.cmdline


def census(state_dir: Path) -> list[Proc]:
    """Every live (non-zombie) process whose working directory is inside `<state>/pods/<ns>/`."""
    root = str((state_dir / "pods" / NS).resolve())
    out = []
    for pid, cwd, fields in working_in(state_dir / "pods" / NS):
        args = cmdline(pid)
        if cwd == root or args is None:
            continue
        parts = cwd[len(root) + 1:].split(os.sep)
        out.append(Proc(pid, int(fields[1]), int(fields[19]), args, parts[0], parts[1] if len(parts) > 1 else ""))
    return out


def games_by_pod(procs: Iterable[Proc]) -> dict[tuple[str, str], list[Proc]]:
    """The game processes of each (pod, container).

    A shell forks before it execs a background command, so for an instant the game's own child has the game's
    cmdline: a process whose parent is a game process is that child, not a second game.
    """
    games = [p for p in procs if p.is_game]
    pids = {p.pid for p in games}
    out: dict[tuple[str, str], list[Proc]] = {}
    for p in games:
        if p.ppid not in pids:
            out.setdefault((p.pod, p.container), []).append(p)
    return out


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


# --- the store, read directly ------------------------------------------------------------------------------------


def pods_of(state: SqliteState, gss: str) -> dict[str, dict[str, Any]]:
    return {p["metadata"]["name"]: p for p in state.list("Pod", NS, {OWNER_GSS_KEY: gss})}


def game_servers_of(state: SqliteState, gss: str) -> dict[str, dict[str, Any]]:
    return {g["metadata"]["name"]: g for g in state.list("GameServer", NS, {OWNER_GSS_KEY: gss})}


def labels(obj: Mapping[str, Any]) -> dict[str, str]:
    return dict(obj["metadata"].get("labels") or {})


def ordinal(name: str) -> int:
    return int(name.rsplit("-", 1)[1])


def expected_survivors(pods: Mapping[str, Mapping[str, Any]], keep: int) -> set[str]:
    """The `keep` most protected pods: scale-in deletes by opsState rank, then deletionPriority, then ordinal."""
    def key(name: str) -> tuple[int, int, int]:
        lab = labels(pods[name])
        prio = lab.get(GS_DELETE_PRIORITY_KEY, "0")
        return (-RANK.get(lab.get(GS_OPS_STATE_KEY, "None"), 0), -int(prio or 0), -ordinal(name))
    order = sorted(pods, key=key)  # deleted first
    return set(order[len(order) - keep:]) if keep else set()


# --- the observer: invariants that must hold at every instant ---------------------------------------------------


@dataclass(eq=False)
class Observer(threading.Thread):
    """Samples the store and /proc every ~20 ms while faults are injected and records every violation.

    - never two game processes for one (pod, container);
    - no protected pod deleted (its uid gone, changed, or given a deletionTimestamp);
    - at most `max_unavailable` pods of `replicas` unavailable at once (when set).
    """

    state_dir: Path
    gss: str
    protected: dict[str, str] = field(default_factory=dict)  # pod name -> uid
    max_unavailable: int | None = None
    replicas: int = 0
    violations: list[str] = field(default_factory=list)
    samples: int = 0
    worst_unavailable: int = 0

    def __post_init__(self) -> None:
        super().__init__(daemon=True)
        self.halt = threading.Event()

    def run(self) -> None:
        state = SqliteState(self.state_dir)
        try:
            while not self.halt.is_set():
                self.sample(state)
                self.halt.wait(0.02)
        finally:
            state.close()

    def sample(self, state: SqliteState) -> None:
        for key, games in games_by_pod(census(self.state_dir)).items():
            if len(games) > 1:
                self.note(f"duplicate game processes for {key[0]}/{key[1]}: {[g.pid for g in games]}")
        try:
            pods = pods_of(state, self.gss)
        except Exception as e:  # a busy database is not a violation; the next sample reads again
            if "locked" in str(e):
                return
            raise
        for name, uid in self.protected.items():
            pod = pods.get(name)
            if pod is None or pod["metadata"]["uid"] != uid:
                self.note(f"protected pod {name} deleted")
            elif pod["metadata"].get("deletionTimestamp"):
                self.note(f"protected pod {name} being deleted")
        if self.max_unavailable is not None:
            up = sum(1 for p in pods.values() if not p["metadata"].get("deletionTimestamp") and pod_ready(p)
                     and labels(p).get(LIFECYCLE_STATE_KEY) not in ("PreparingUpdate", "Updating"))
            self.worst_unavailable = max(self.worst_unavailable, self.replicas - up)
            if self.replicas - up > self.max_unavailable:
                self.note(f"{self.replicas - up} of {self.replicas} unavailable (maxUnavailable "
                          f"{self.max_unavailable}): up {sorted(n for n, p in pods.items() if pod_ready(p))}")
        self.samples += 1

    def note(self, what: str) -> None:
        if what not in self.violations:
            self.violations.append(what)

    def stop(self) -> list[str]:
        self.halt.set()
        self.join(10)
        return self.violations


# --- invariants once settled -------------------------------------------------------------------------------------


def settled_problems(fleet: Fleet, state: SqliteState, gss: str, replicas: int,
                     extra: Callable[[dict[str, dict[str, Any]]], list[str]] | None = None) -> list[str]:
    """What is wrong now; [] when the fleet has converged and the store agrees with /proc."""
    problems: list[str] = []
    pods = pods_of(state, gss)
    live = {n: p for n, p in pods.items() if not p["metadata"].get("deletionTimestamp")}
    if len(live) != replicas or len(pods) != replicas:
        problems.append(f"{len(live)} pods ({len(pods)} with terminating ones), want {replicas}")
    gs = game_servers_of(state, gss)
    if sorted(gs) != sorted(pods):
        problems.append(f"game servers {sorted(gs)} != pods {sorted(pods)}")
    procs = census(fleet.state_dir)
    games = games_by_pod(procs)
    for name, pod in live.items():
        for c in pod["spec"]["containers"]:
            running = games.get((name, c["name"]), [])
            if len(running) != 1:
                problems.append(f"{name}/{c['name']}: {len(running)} game processes {[g.pid for g in running]}")
                continue
            status = next((s for s in (pod.get("status") or {}).get("containerStatuses") or []
                           if s["name"] == c["name"]), None)
            parsed = parse_container_id((status or {}).get("containerID"))
            if status is None or parsed is None or "running" not in (status.get("state") or {}):
                problems.append(f"{name}/{c['name']}: status not running: {status}")
                continue
            if process_start_time(parsed[0]) != parsed[1] or running[0].ppid != parsed[0]:
                problems.append(f"{name}/{c['name']}: recorded container {status['containerID']} is not the "
                                f"supervisor of the running game process {running[0].pid} (ppid {running[0].ppid})")
        if not pod_ready(pod):
            problems.append(f"{name}: not Ready")
    names = set(pods)
    for p in procs:
        if p.pod not in names:
            problems.append(f"orphan process {p.pid} {b' '.join(p.cmdline)[:60]!r} of deleted pod {p.pod}")
    if extra is not None and not problems:
        problems.extend(extra(pods))
    return problems


def settle(fleet: Fleet, state: SqliteState, gss: str, replicas: int, tag: str, timeout: float = 60,
           extra: Callable[[dict[str, dict[str, Any]]], list[str]] | None = None) -> float:
    """Wait until `settled_problems` is empty; returns the seconds it took. Fails with the last problems."""
    began = time.monotonic()
    problems: list[str] = []
    while time.monotonic() - began < timeout:
        problems = settled_problems(fleet, state, gss, replicas, extra)
        if not problems:
            # Twice in a row, 0.3 s apart: a converged fleet stays converged.
            time.sleep(0.3)
            problems = settled_problems(fleet, state, gss, replicas, extra)
            if not problems:
                return time.monotonic() - began
        time.sleep(0.2)
    raise AssertionError(f"{tag} did not converge in {timeout}s: {problems}\n--- log:\n{fleet.log()[-3000:]}")


def cli_agrees(fleet: Fleet, gss: str) -> list[str]:
    """`gk get gs` / `gk get pod` (the CLI the user sees) name exactly the pods whose game processes run."""
    games = games_by_pod(census(fleet.state_dir))
    running = {pod for (pod, _c), procs in games.items() if procs}
    shown = {n: p for n, p in fleet.pods().items() if labels(p).get(OWNER_GSS_KEY) == gss}
    gs = {n for n, g in fleet.gameservers().items() if labels(g).get(OWNER_GSS_KEY) == gss}
    out = []
    if set(shown) != running:
        out.append(f"gk get pod {sorted(shown)} but game processes run for {sorted(running)}")
    if gs != running:
        out.append(f"gk get gs {sorted(gs)} but game processes run for {sorted(running)}")
    for name, pod in shown.items():
        for status in (pod.get("status") or {}).get("containerStatuses") or []:
            parsed = parse_container_id(status.get("containerID"))
            procs = games.get((name, status["name"]), [])
            if "running" in (status.get("state") or {}) and (
                    parsed is None or [p.ppid for p in procs] != [parsed[0]]
                    or process_start_time(parsed[0]) != parsed[1]):
                out.append(f"gk get pod {name}: {status['name']} running as {status.get('containerID')}, but its "
                           f"game processes are {[(p.pid, p.ppid) for p in procs]} (pid, parent)")
    return out


# --- faults -----------------------------------------------------------------------------------------------------

CRASHERS: list[Crasher] = []  # every Crasher of this session, for the run's summary (conftest.py)


def summary() -> str:
    rounds = sum(c.rounds for c in CRASHERS)
    points = sum(c.crash_points for c in CRASHERS)
    kills = sum(c.process_kills for c in CRASHERS)
    per = ", ".join(f"{c.scenario} {c.crash_points}" for c in CRASHERS)
    return f"{len(CRASHERS)} scenarios, {rounds} rounds checked, {points} controller crash points, " \
        f"{kills} game/supervisor kills ({per})"


@dataclass(eq=False)
class Crasher:
    """Kills and restarts the controller at seeded random moments; counts the crash points."""

    fleet: Fleet
    rng: random.Random
    scenario: str = ""
    crash_points: int = 0
    process_kills: int = 0
    rounds: int = 0  # rounds whose invariants were checked and held
    log: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        CRASHERS.append(self)

    def crash_after(self, low: float, high: float, what: str) -> float:
        delay = self.rng.uniform(low, high)
        time.sleep(delay)
        self.fleet.kill_controller(signal.SIGKILL)
        self.crash_points += 1
        self.log.append(f"{what}: SIGKILL at +{delay:.3f}s")
        return delay

    def storm(self, high: float, what: str, again_high: float = 1.5) -> None:
        """One to three crash points: a kill within `high` s of the change, then, after a restart, maybe more kills
        while the restarted controller is still carrying the change out. Leaves the controller down."""
        self.crash_after(0, high, what)
        for _ in range(self.rng.choice([0, 1, 2, 2])):
            self.restart(0.3)
            self.crash_after(0, again_high, what + " again")

    def restart(self, downtime_high: float = 0.5) -> None:
        time.sleep(self.rng.uniform(0, downtime_high))
        self.fleet.start()


def kill_pid(pid: int, sig: int = signal.SIGKILL) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def wait_until(check: Callable[[], bool], what: str, timeout: float, fleet: Fleet) -> None:
    wait_for(check, what, timeout, detail=lambda: f"--- log:\n{fleet.log()[-3000:]}")
