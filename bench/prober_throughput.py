"""Prober throughput: the same probe command started by the bare minimum and by Gamekeeper's prober.

For each command (the seed's `bash -c "if ./idle.sh; then echo active; else echo idle; fi"` against a real
demo game server, and a trivial `echo idle`), in alternating rounds of the same run:

- bare C: bench/bare_spawn.c, posix_spawn + wait in a tight loop, `concurrency` commands at a time;
- bare Python: the same loop in Python (os.posix_spawn, os.wait);
- prober: Gamekeeper's Prober with the probe spawner in its own process (runtime/spawn.py), over a fleet of pod
  records big enough that it never runs out of due probes (period 1 s), `concurrency` slots;
- prober, helper: the same Prober with the spawner in helper processes (runtime/spawn_helper.py, `--helpers`
  of them);
- prober, runtime.exec: the same Prober when the runtime offers no spawner (asyncio subprocesses, what
  `LocalRuntime.exec` does).

Each figure is the median of the rounds; the ratios divide medians measured side by side.

    python -m bench.prober_throughput [--seconds 3] [--rounds 3] [--concurrency 64] [--helpers 1,2] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import EXAMPLES, Table, bare_c, bare_c_binary, bare_python, cpu_seconds, median, ratio
from bench.harness import ExecOnly, link_workdirs, long_ago, pod_record, utc_now, write_image_map
from gamekeeper.control.prober import Prober
from gamekeeper.runtime.images import load_image_map
from gamekeeper.runtime.local import LocalRuntime
from gamekeeper.runtime.spawn import ProbeSpawner, available
from gamekeeper.runtime.spawn_helper import HelperSpawner, default_helpers
from gamekeeper.store.sqlite import SqliteState, SqliteStore

SEED = ["bash", "-c", "if ./idle.sh; then echo 'active'; else echo 'idle'; fi"]
TRIVIAL = ["echo", "idle"]
IMAGE = "registry.cn-hangzhou.aliyuncs.com/gs-demo/gameserver:idle"


class Setup:
    """A state directory whose pod records all point at one real game-server directory."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.workdir = tmp / "server"
        shutil.copytree(EXAMPLES / "images" / "gameserver-idle", self.workdir)
        self.server: subprocess.Popen[bytes] | None = None
        self.images = load_image_map(write_image_map(tmp, {IMAGE: {"path": str(self.workdir),
                                                                   "command": ["python3", "server.py"]}}))
        self.state_dir = tmp / "state"
        self.state = SqliteState(self.state_dir)
        self.store = SqliteStore(self.state)
        self.sets: dict[str, list[str]] = {}

    def start_server(self) -> None:
        self.server = subprocess.Popen([sys.executable, "server.py"], cwd=self.workdir, stdout=subprocess.DEVNULL,
                                       stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 10
        while not (self.workdir / "server.port").exists():
            if time.monotonic() > deadline:
                raise RuntimeError("the demo game server did not start")
            time.sleep(0.05)

    def stop_server(self) -> None:
        if self.server is not None:
            os.killpg(self.server.pid, signal.SIGTERM)
            self.server.wait(10)

    def fleet(self, gss: str, command: list[str], pods: int, period: int) -> list[str]:
        """A set with one exec quality and `pods` running pod records (created once, grown on demand)."""
        names = self.sets.get(gss)
        if names is None:
            self.state.create({"apiVersion": "game.kruise.io/v1alpha1", "kind": "GameServerSet",
                               "metadata": {"name": gss, "namespace": "default"},
                               "spec": {"replicas": 0, "serviceQualities": [{
                                   "name": "idle", "containerName": "main", "permanent": False,
                                   # A timeout long enough that no probe is killed: the bare loops wait for every
                                   # command too.
                                   "periodSeconds": period, "timeoutSeconds": 60, "exec": {"command": command},
                               }]}})
            names = self.sets[gss] = []
        started = long_ago()
        while len(names) < pods:
            record = pod_record(gss, len(names), IMAGE, started)
            self.state.create(record)
            names.append(record["metadata"]["name"])
        link_workdirs(self.state_dir, names, self.workdir)
        return names[:pods]


def with_helpers(cpu: tuple[float, float], spawner: Any) -> tuple[float, float]:
    """`cpu` with the spawn helpers' CPU added to the children's: their own and that of the probes they reaped."""
    extra = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    for helper in getattr(spawner, "helpers", ()):
        if helper.pid is None:
            continue
        try:
            with open(f"/proc/{helper.pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # utime, stime, cutime, cstime: fields 14-17 of proc(5), 12-15 after the name.
        extra += sum(int(x) for x in fields[11:15]) / tick
    return cpu[0], cpu[1] + extra


async def prober_rate(setup: Setup, names: list[str], runtime: Any, concurrency: int, seconds: float,
                      period: float) -> tuple[float, float, float]:
    """(probes per second, parent CPU µs per probe, total CPU µs per probe) over `seconds`, once warm."""
    prober = Prober(setup.store, runtime, utc_now, concurrency=concurrency)
    for name in names:
        await prober.sync_pod("default", name)
    # As the bare loops: count once `concurrency` probes have finished (the pipeline is full).
    deadline = time.monotonic() + period + 60
    await asyncio.sleep(period)
    while prober.stats.runs < concurrency and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    spawner = getattr(runtime, "probe_spawner", None)
    runs0, cpu0, t0 = prober.stats.runs, with_helpers(cpu_seconds(), spawner), time.perf_counter()
    await asyncio.sleep(seconds)
    runs1, cpu1, t1 = prober.stats.runs, with_helpers(cpu_seconds(), spawner), time.perf_counter()
    prober.stop()
    deadline = time.monotonic() + 10
    while prober.inflight > 0 and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    # Probes stopped through runtime.exec are reaped by asyncio's child-watcher threads: let them report back
    # before this loop closes.
    await asyncio.sleep(0.5)
    runs = max(runs1 - runs0, 1)
    # CPU per probe: this process (the parent), and with the probe commands reaped meanwhile (the total).
    return ((runs1 - runs0) / (t1 - t0), (cpu1[0] - cpu0[0]) / runs * 1e6,
            (cpu1[0] + cpu1[1] - cpu0[0] - cpu0[1]) / runs * 1e6)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=2.0, help="length of one measurement (default 2)")
    parser.add_argument("--seed-seconds", type=float, default=6.0,
                        help="length of one measurement of the seed command (slow: default 6)")
    parser.add_argument("--commands", default="seed,trivial", help="which commands (default seed,trivial)")
    parser.add_argument("--rounds", type=int, default=7, help="alternating rounds per figure (default 7)")
    parser.add_argument("--concurrency", type=int, default=64, help="probes at a time, for all (default 64)")
    parser.add_argument("--pods", type=int, help="pod records per command (default: 1.5 × what the bare loop runs "
                        "in one period, so the prober is never idle)")
    parser.add_argument("--quick", action="store_true", help="tiny run (smoke test)")
    parser.add_argument("--helpers", help="helper process counts for the helper rows, comma-separated "
                        "(default: what the spawner chooses on this machine)")
    parser.add_argument("--no-helper", action="store_true", help="skip the helper rows")
    parser.add_argument("--no-exec-path", action="store_true", help="skip the runtime.exec (asyncio) row")
    parser.add_argument("--out", type=Path, help="JSON file (default bench/results/prober_throughput.json)")
    args = parser.parse_args(argv)
    if args.quick:
        args.seconds, args.seed_seconds, args.rounds = 0.3, 0.3, 1
        args.commands, args.concurrency, args.pods = "trivial", 4, 40
    period = 1
    table = Table(
        "prober_throughput",
        f"Prober throughput: probes run per second at concurrency {args.concurrency} "
        f"(median of {args.rounds} alternating rounds of {args.seed_seconds:g} s (seed) / {args.seconds:g} s)",
        ["command", "runner", "probes/s", "vs bare C", "vs bare Python", "(rounds)", "parent CPU µs",
         "total CPU µs", "CPU-bound ratio"],
        params={"seconds": args.seconds, "rounds": args.rounds, "concurrency": args.concurrency, "period": period},
    )
    with tempfile.TemporaryDirectory(prefix="gk-bench-") as tmp_name:
        tmp = Path(tmp_name)
        setup = Setup(tmp)
        setup.start_server()
        binary = bare_c_binary(tmp)
        try:
            for key, label, command in (("seed", "seed idle.sh", SEED), ("trivial", "trivial echo", TRIVIAL)):
                if key in args.commands.split(","):
                    seconds = args.seed_seconds if key == "seed" else args.seconds
                    run_command(setup, table, binary, label, command, args, period, seconds)
        finally:
            setup.stop_server()
            setup.state.close()
    table.notes.append("bare loops: a tight loop that keeps `concurrency` commands running (posix_spawn in a new "
                       "session, output to memory files, wait, read), no framework; prober: a fleet of pod records "
                       "with a 1 s period, more than the machine can probe, so the prober is never idle")
    table.notes.append("probes/s: median over the rounds; vs: median of the per-round ratios (the runners of a round "
                       "ran back to back); (rounds): the lowest and highest per-round ratio to bare Python")
    table.notes.append("parent CPU: the starting process's CPU time per probe (not measured for the C loop; for the "
                       "helper rows the controller's alone); total CPU: with the probe commands' own (user + system, "
                       "reaped children) and the helpers' (theirs and their probes', from /proc, in clock ticks)")
    table.notes.append("CPU-bound ratio: total CPU per command of the bare C loop ÷ the runner's: the share of the "
                       "C loop's rate the runner reaches when the machine's cores are the limit (steadier than the "
                       "rates on a machine shared with other work)")
    table.emit(args.out)
    return 0


def run_command(setup: Setup, table: Table, binary: Path | None, label: str, command: list[str],
                args: argparse.Namespace, period: int, seconds: float) -> None:
    cwd = setup.workdir
    # Size the fleet from a first bare measurement: 1.5 times what the machine can run per period.
    if args.pods:
        pods = args.pods
    else:
        probe_rate = bare_python(command, cwd, args.concurrency, min(seconds, 1.0)).rate
        pods = max(args.concurrency * 2, math.ceil(probe_rate * period * 1.5))
    names = setup.fleet(f"bench-{label.split()[0]}", command, pods, period)
    def spawner_runtime(spawner: ProbeSpawner | HelperSpawner | None) -> LocalRuntime:
        runtime = LocalRuntime(setup.state_dir, setup.images, spawner=False)
        runtime.probe_spawner = spawner
        return runtime

    probers: list[tuple[str, Any]] = [("prober", spawner_runtime(ProbeSpawner() if available() else None))]
    if not args.no_helper and available():
        counts = [int(c) for c in args.helpers.split(",")] if args.helpers else [default_helpers()]
        for count in counts:
            name = "prober, helper" if len(counts) == 1 else f"prober, {count} helper{'s' if count > 1 else ''}"
            probers.append((name, spawner_runtime(HelperSpawner(helpers=count))))
    if not args.no_exec_path:
        probers.append(("prober, runtime.exec", ExecOnly(LocalRuntime(setup.state_dir, setup.images))))
    runners = ["bare C", "bare Python", *(name for name, _ in probers)]
    figures: dict[str, list[float]] = {k: [] for k in runners}
    parent: dict[str, list[float]] = {k: [] for k in runners}
    total: dict[str, list[float]] = {k: [] for k in runners}
    for _ in range(args.rounds):
        if binary is not None:
            bare = bare_c(binary, command, cwd, args.concurrency, seconds)
            figures["bare C"].append(bare.rate)
            total["bare C"].append(bare.cpu_per_command * 1e6)
        bare = bare_python(command, cwd, args.concurrency, seconds)
        figures["bare Python"].append(bare.rate)
        total["bare Python"].append(bare.cpu_per_command * 1e6)
        parent["bare Python"].append(bare.parent_cpu_per_command * 1e6)
        for runner, runtime in probers:
            rate, own, both = asyncio.run(prober_rate(setup, names, runtime, args.concurrency, seconds, period))
            figures[runner].append(rate)
            parent[runner].append(own)
            total[runner].append(both)
    for _, runtime in probers:
        closing = getattr(getattr(runtime, "probe_spawner", None), "close", None)
        if closing is not None:
            closing()
    spawner = getattr(probers[0][1], "probe_spawner", None)
    limit_cpu = median(total["bare C"]) if total["bare C"] else median(total["bare Python"])
    for runner, values in figures.items():
        if not values:
            continue
        # Ratios: the median of the per-round ratios (each round's runners ran back to back, so a burst of load
        # from elsewhere on the machine hits both sides of a ratio alike).
        versus_c = [ratio(v, c) for v, c in zip(values, figures["bare C"], strict=False)]
        versus_py = [ratio(v, p) for v, p in zip(values, figures["bare Python"], strict=False)]
        cpu_total = median(total[runner])
        table.add(label, runner, median(values), median(versus_c) if versus_c else None, median(versus_py),
                  f"{min(versus_py):.2f}–{max(versus_py):.2f}", median(parent[runner]) if parent[runner] else None,
                  cpu_total, ratio(limit_cpu, cpu_total))
    table.params.setdefault("fleet", {})[label] = pods
    table.params.setdefault("rounds_detail", {})[label] = figures
    table.params["spawner"] = getattr(spawner, "backend", None)


if __name__ == "__main__":
    sys.exit(main())
