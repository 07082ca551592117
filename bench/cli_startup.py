"""CLI start-up: wall and CPU time of `gk --help` and `gk get gs` on a stored fleet, against the interpreter alone.

Each command runs as a fresh process (as a user types it), in alternating rounds so that load from elsewhere
falls on all of them alike. The fleet is written straight into a state directory (no controller running):
what is measured is the CLI, from process start to exit. Goals (issue 13): `gk get gs` on 100 servers within
0.2 s wall, `gk --help` within 0.15 s.

    python -m bench.cli_startup [--servers 100] [--rounds 15] [--quick]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import ROOT, Table, median
from gamekeeper.store.sqlite import SqliteState

OWNER = "game.kruise.io/owner-gss"
# What every command imported before the CLI was made lazy (commit 7ac866f): the reference for the import cost.
EAGER = ("import gamekeeper.cli.main, gamekeeper.embedded.fleet, gamekeeper.kube.client, gamekeeper.kube.operator, "
         "gamekeeper.kube.manifests, gamekeeper.api.loading, gamekeeper.observe.server, gamekeeper.runtime.local, "
         "gamekeeper.control.gameserverset, rich.console, rich.live, asyncio, subprocess")


def seed(state_dir: Path, servers: int) -> None:
    state = SqliteState(state_dir)
    for i in range(servers):
        state.create({
            "apiVersion": "game.kruise.io/v1alpha1", "kind": "GameServer",
            "metadata": {"name": f"minecraft-{i}", "namespace": "default", "labels": {OWNER: "minecraft"}},
            "spec": {"opsState": "WaitToBeDeleted" if i % 3 else "None", "deletionPriority": 0,
                     "updatePriority": 0, "networkDisabled": False},
            "status": {"currentState": "Ready", "deletionPriority": 0, "updatePriority": 0},
        })
    state.close()


def run_once(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall s, CPU s) of one process, CPU from the kernel's accounting of the child."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    proc = subprocess.run(argv, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {proc.returncode}: {proc.stderr.decode()[-500:]}")
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def imported(argv: list[str], env: dict[str, str]) -> int:
    """How many modules the command imports (python -X importtime lines)."""
    proc = subprocess.run([sys.executable, "-X", "importtime", *argv[1:]], env=env, cwd=ROOT,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, check=False)
    return sum(1 for line in proc.stderr.splitlines() if line.startswith("import time:") and "|" in line) - 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--servers", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--quick", action="store_true", help="tiny run (smoke test)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    if args.quick:
        args.servers, args.rounds = 5, 2
    tmp = Path(tempfile.mkdtemp(prefix="gk-cli-"))
    state_dir = tmp / "state"
    seed(state_dir, args.servers)
    env = {**os.environ, "GAMEKEEPER_HOME": str(state_dir)}
    gk = [sys.executable, "-m", "gamekeeper"]
    commands = {
        "python -c pass (floor)": ([sys.executable, "-c", "pass"], None),
        "reference: the eager imports": ([sys.executable, "-c", EAGER], None),
        "gk --help": ([*gk, "--help"], 0.15),
        f"gk get gs ({args.servers} servers)": ([*gk, "get", "gs"], 0.2),
        "gk get gs -l … --field-selector …": ([*gk, "get", "gs", "-l", f"{OWNER}=minecraft", "--field-selector",
                                               "spec.opsState=WaitToBeDeleted"], 0.2),
        "gk get gs -o json": ([*gk, "get", "gs", "-o", "json"], None),
    }
    walls: dict[str, list[float]] = {name: [] for name in commands}
    cpus: dict[str, list[float]] = {name: [] for name in commands}
    for command, _ in commands.values():
        run_once(command, env)  # warm the page cache and the bytecode cache
    for _ in range(args.rounds):
        for name, (command, _) in commands.items():
            wall, cpu = run_once(command, env)
            walls[name].append(wall)
            cpus[name].append(cpu)
    table = Table(
        "cli_startup",
        f"CLI start-up, fresh process each run ({args.rounds} alternating rounds; {args.servers} stored servers)",
        ["command", "modules", "median wall s", "best wall s", "median CPU s", "goal s", "median / goal",
         "vs floor"],
        params={"servers": args.servers, "rounds": args.rounds, "walls": walls, "cpus": cpus},
    )
    floor = median(walls["python -c pass (floor)"])
    for name, (command, goal) in commands.items():
        wall = median(walls[name])
        table.add(name, imported(command, env), wall, min(walls[name]), median(cpus[name]),
                  goal if goal is not None else "", wall / goal if goal else "", wall / floor if floor else "")
    table.notes.append("modules: imported by that command (python -X importtime), the interpreter's own included")
    table.notes.append("vs floor: median wall over the bare interpreter's (what no CLI can go below)")
    table.notes.append("reference: importing what every command loaded before start-up was made lazy (7ac866f), "
                       "nothing run")
    table.emit(args.out)
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
