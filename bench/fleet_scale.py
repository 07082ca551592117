"""Fleet scale: embedded fleets of 100, 1,000 and 10,000 game servers at a 10 s probe period.

Each fleet runs in a fresh process holding the whole controller (store, kubelet, controllers, prober with the
probe spawner). The game servers' containers run `sleep` (a cheap command) and their service quality runs
`cat mode` (prints `idle`: opsState WaitToBeDeleted; `active`: None). Once every game server is
WaitToBeDeleted, no store write has come for 3 s, the probes the set-up left waiting for a slot have started
(their number and the time they took are reported) and every probe has run once more, the program measures over a
steady window:

- probes run per second, against the demand (servers / period) and against the spawn limit of `cat mode`
  measured beforehand by the bare loops at the same concurrency;
- missed periods (ticks skipped because the previous run had not finished) and late runs (started more than a
  tenth of the period after their tick);
- store writes in the window (nothing changes, so it must be 0);
- controller CPU (this process; the probe commands' own CPU apart) and resident memory: RSS after the fleet
  minus RSS of the same process before the fleet, divided by the servers (heap trimmed before each reading);

then detection latency: a separate process flips `mode` to `active` on some servers at random moments and
polls the state database the way `gk get` reads it, until each one's opsState is None (p50, p99, max).

The kubelet is the real one (a `/bin/sh` supervisor and a `sleep` per game server) up to 1,000; at 10,000,
20,000 processes would exhaust this machine's pid space, so a kubelet double reports containers as running
without starting them; everything else, including the real probe command in each container's directory, is
the same.

    python -m bench.fleet_scale [--fleets 100:real,1000:real,1000:pretend,10000:pretend] [--period 10]
                                [--window 30] [--flips 30] [--quick]

The JSON output also holds, per fleet, the memory figure split (live Python objects, free space inside
pymalloc's arenas, the rest) and a per-second series of the probes waiting for a slot and the late starts;
with GK_BENCH_HEAP_SERIES=1, a series of the arenas held and the live bytes every 2 s from the apply on (when the
arenas' high-water mark forms; it costs a few ms per sample at 10,000).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import (
    ROOT,
    Table,
    bare_c,
    bare_c_binary,
    bare_python,
    cpu_seconds,
    heap_breakdown,
    machine,
    percentile,
    raise_fd_limit,
    ratio,
    rss_bytes,
    trim_heap,
)
from bench.harness import NAMESPACE, Controller, apply, cheap_image, gss_yaml, stop_processes, utc_now
from gamekeeper.api.keys import GS_OPS_STATE_KEY
from gamekeeper.control.prober import _Pod
from gamekeeper.control.workload import WorkloadController

GSS = "fleet"
QUIET = 3.0
PROBE = ["cat", "mode"]


# -- one fleet (a child process) --------------------------------------------------------------------------


def count_ops(db: sqlite3.Connection, ops: str) -> int:
    row = db.execute(
        "SELECT count(*) FROM objects WHERE kind = 'GameServer' AND json_extract(body, '$.spec.opsState') = ?",
        (ops,),
    ).fetchone()
    return int(row[0])


async def precreate_pods(state_dir: Path, images: Any, size: int, period: int) -> float:
    """Bring a fleet of `size` to its steady state with the controllers' own code, one object at a time.

    The set is created with no replicas and the controllers make its workload and revision; then, with no
    controller loop running, the workload controller's pod builder creates every pod, the kubelet double starts
    each, the GameServer controller creates each GameServer, the prober's condition writer records each first
    probe result (`idle`) and the GameServer controller acts on it. The controllers started afterwards find a
    complete, settled fleet. Not the default: the running controllers now settle 10,000 themselves in minutes;
    this only shortens a run that is after the steady state alone. Returns the seconds it took."""
    t0 = time.monotonic()
    controller = Controller(state_dir, images, kubelet="pretend")
    controller.start()
    try:
        await asyncio.wait_for(controller.manager.ready.wait(), 30)
        apply(controller.state, gss_yaml(GSS, 0, "bench/cheap:1", PROBE, period, delay=1))
        while not controller.state.list("ControllerRevision", NAMESPACE):
            if time.monotonic() - t0 > 60:
                raise TimeoutError("the set's workload and revision were not created")
            await asyncio.sleep(0.2)
        await asyncio.sleep(1)
    finally:
        await controller.stop()
    builder = WorkloadController(controller.store, utc_now)
    workload = controller.state.get("Workload", NAMESPACE, GSS)
    assert workload is not None
    _, revision = await builder._sync_revisions(workload)
    template = workload["spec"]["template"]
    names = [f"{GSS}-{ordinal}" for ordinal in range(size)]
    for ordinal in range(size):
        await builder._create_pod(workload, ordinal, template, revision)
    controller.state.patch("GameServerSet", NAMESPACE, GSS, {"spec": {"replicas": size}})
    kubelet = controller.kubelet
    gameservers = controller.manager.gameservers
    prober = controller.manager.prober
    for name in names:
        await kubelet.sync_pod(NAMESPACE, name)
    for name in names:
        await gameservers.reconcile(NAMESPACE, name)
    for name in names:
        pod = controller.state.get("Pod", NAMESPACE, name)
        assert pod is not None
        await prober._write_condition(_Pod(NAMESPACE, name, pod["metadata"]["uid"], GSS), "idle", True, "idle\n")
    for _ in range(3):
        for name in names:
            await gameservers.reconcile(NAMESPACE, name)
    controller.close()
    return time.monotonic() - t0


async def one_fleet(size: int, kubelet: str, period: int, window: float, flips: int, concurrency: int,
                    setup_timeout: float, precreate: bool) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="gk-fleet-"))
    try:
        return await _one_fleet(tmp, size, kubelet, period, window, flips, concurrency, setup_timeout, precreate)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


async def _one_fleet(tmp: Path, size: int, kubelet: str, period: int, window: float, flips: int, concurrency: int,
                     setup_timeout: float, precreate: bool) -> dict[str, Any]:
    state_dir = tmp / "state"
    images = cheap_image(tmp)
    fd_limit = raise_fd_limit()
    rss_before_precreate = 0
    result: dict[str, Any] = {"size": size, "kubelet": kubelet, "period": period, "fd_limit": fd_limit,
                              "precreated": precreate}
    if precreate:
        trim_heap()
        rss_before_precreate = rss_bytes()
        result["precreate_seconds"] = await precreate_pods(state_dir, images, size, period)
    controller = Controller(state_dir, images, kubelet=kubelet)
    controller.manager.prober.concurrency = concurrency
    result["spawner"] = getattr(getattr(controller.runtime, "probe_spawner", None), "backend", None)
    if not precreate:
        controller.start()
        await asyncio.wait_for(controller.manager.ready.wait(), 30)
        await asyncio.sleep(1)
    trim_heap()
    rss0 = rss_before_precreate if precreate else rss_bytes()
    heap0 = heap_breakdown()
    reader = controller.state.db  # the controller's own connection: no second page cache in this process
    try:
        t0 = time.monotonic()
        setup_before = queue_counts(controller), cpu_seconds()
        heap_series: list[tuple[float, float, float, float]] = []
        heap_sampler = asyncio.create_task(sample_heap(heap_series)) if os.environ.get("GK_BENCH_HEAP_SERIES") else None
        if precreate:
            controller.start()
        else:
            apply(controller.state, gss_yaml(GSS, size, "bench/cheap:1", PROBE, period, delay=1))
        while count_ops(reader, "WaitToBeDeleted") < size:
            if time.monotonic() - t0 > setup_timeout:
                raise TimeoutError(f"fleet of {size} not WaitToBeDeleted after {setup_timeout:g}s "
                                   f"({count_ops(reader, 'WaitToBeDeleted')} are)")
            await asyncio.sleep(1)
        result["ops_seconds"] = time.monotonic() - t0 + result.get("precreate_seconds", 0.0)
        # Every opsState is there; the pods' labels, the GameServers' status and the set's counts follow. Set up
        # means settled: no write for QUIET seconds.
        last, quiet_since = controller.state.writes, time.monotonic()
        while time.monotonic() - quiet_since < QUIET:
            if time.monotonic() - t0 > setup_timeout:
                raise TimeoutError(f"fleet of {size} still writing after {setup_timeout:g}s")
            await asyncio.sleep(0.5)
            if controller.state.writes != last:
                last, quiet_since = controller.state.writes, time.monotonic()
        result["setup_seconds"] = quiet_since - t0 + result.get("precreate_seconds", 0.0)
        result["setup_phase"] = loop_shares(controller, *setup_before, time.monotonic() - t0)
        prober = controller.manager.prober
        # The set-up leaves the probes behind (the controller near a full core while it builds the fleet, the
        # probes already due): the steady window starts once none waits for a slot and every probe has run once
        # more, and how large that backlog was and how long it took to drain is reported, not hidden.
        settle_series: list[tuple[float, int, int, int]] = []
        settle_sampler = asyncio.create_task(sample_queue(prober, settle_series))
        caught_up = time.monotonic()
        while prober._pending:
            if time.monotonic() - t0 > setup_timeout:
                raise TimeoutError(f"fleet of {size}: {len(prober._pending)} probes still waiting for a slot after "
                                   f"{setup_timeout:g}s")
            await asyncio.sleep(0.2)
        result["backlog_at_setup"] = settle_series[0][1] if settle_series else 0
        result["backlog_drain_seconds"] = time.monotonic() - caught_up
        await asyncio.sleep(period)  # every probe has run at least once more
        settle_sampler.cancel()
        result["settle_series"] = settle_series

        stats = prober.stats
        rv_before = controller.state.current_rv()
        reconciles_before = {q.name: q.processed for q in controller.manager.queues()}
        before = (stats.runs, stats.skipped, stats.late, controller.state.writes, *cpu_seconds(), time.monotonic())
        stats.max_delay = 0.0
        lag = LoopLag()
        lag_task = asyncio.create_task(lag.run())
        series: list[tuple[float, int, int, int]] = []
        sampler = asyncio.create_task(sample_queue(prober, series))
        await asyncio.sleep(window)
        after = (stats.runs, stats.skipped, stats.late, controller.state.writes, *cpu_seconds(), time.monotonic())
        lag_task.cancel()
        sampler.cancel()
        elapsed = after[6] - before[6]
        runs = after[0] - before[0]
        result.update({
            "window": elapsed,
            "probes_per_second": runs / elapsed,
            "demand_per_second": size / period,
            "missed": after[1] - before[1],
            "late": after[2] - before[2],
            "max_start_delay": stats.max_delay,
            "writes": after[3] - before[3],
            "controller_cpu_percent": 100 * (after[4] - before[4]) / elapsed,
            "probe_cpu_percent": 100 * (after[5] - before[5]) / elapsed,
            "controller_cpu_us_per_probe": (after[4] - before[4]) / max(runs, 1) * 1e6,
            "loop_lag_max": lag.worst,
            # Every second of the window: (seconds in, probes waiting for a slot, running, late so far): where a
            # late start comes from (a backlog that drains, or a burst at one moment).
            "queue_series": series,
            # Every work queue's reconciles in the window (a resync falls in it): nothing changes, so ideally 0.
            "reconciles": sum(q.processed - reconciles_before[q.name] for q in controller.manager.queues()),
            "reconciles_by_queue": {q.name: q.processed - reconciles_before[q.name]
                                    for q in controller.manager.queues()},
            # What was written in the window, if anything (the change feed keeps the last 50,000 changes).
            "writes_by_kind": dict(reader.execute(
                "SELECT kind, count(*) FROM changes WHERE rv > ? GROUP BY kind", (rv_before,)).fetchall()),
        })
        if heap_sampler is not None:
            heap_sampler.cancel()
            result["heap_series"] = heap_series
            import gc

            result["gc_stats"] = gc.get_stats()
        trim_heap()
        rss1 = rss_bytes()
        heap1 = heap_breakdown()
        result.update({"rss0_mib": rss0 / 2**20, "rss_mib": rss1 / 2**20, "bytes_per_gs": (rss1 - rss0) / size,
                       # The same difference split: live Python objects, free space held in pymalloc's arenas
                       # (a past peak's fragmentation), and the rest (malloc: SQLite's cache, buffers).
                       "heap_per_gs": {k: (heap1[k] - heap0[k]) / size for k in heap1}})

        # Detection latency, measured by another process reading the database as `gk get` does.
        names = random.Random(size).sample([f"{GSS}-{i}" for i in range(size)], min(flips, size))
        tracer = FlipTracer(controller, set(names))
        queues_before, cpu_before, flips_started = queue_counts(controller), cpu_seconds(), time.monotonic()
        flip_series: list[tuple[float, int, int, int]] = []
        flip_sampler = asyncio.create_task(sample_queue(prober, flip_series))
        watcher = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bench.fleet_scale", "--watch", str(state_dir), "--period", str(period),
            "--names", ",".join(names), stdout=subprocess.PIPE, cwd=ROOT,
        )
        out, _ = await watcher.communicate()
        watched = json.loads(out.decode().strip().splitlines()[-1])
        tracer.close()
        flip_sampler.cancel()
        flip_elapsed = time.monotonic() - flips_started
        # While the flips are detected: what each queue took of the loop, and the controller's CPU: where the
        # headroom the probes' slots need goes.
        result["flip_phase"] = {**loop_shares(controller, queues_before, cpu_before, flip_elapsed),
                                "queue_series": flip_series}
        latencies = watched["seen"]
        values = [v for v in latencies.values() if v is not None]
        result["latency_stages"] = tracer.stages(watched["flipped"], latencies)
        result["latency_marks"] = tracer.raw(watched["flipped"])
        result.update({
            "flips": len(names),
            "detected": len(values),
            "latency_p50": percentile(values, 50),
            "latency_p99": percentile(values, 99),
            "latency_max": max(values) if values else math.nan,
        })
    finally:
        await controller.stop()
        controller.close()
        if kubelet == "real":
            stop_processes(state_dir)
    return result


def queue_counts(controller: Any) -> dict[str, tuple[int, float]]:
    return {q.name: (q.processed, q.busy) for q in controller.manager.queues()}


def loop_shares(controller: Any, before: dict[str, tuple[int, float]], cpu_before: tuple[float, ...],
                elapsed: float) -> dict[str, Any]:
    """Since `before`: the controller's CPU, and each queue's reconciles and the wall time spent inside its handler
    (a handler that awaits, as the set-wide ones do between slices, counts the others' time meanwhile too)."""
    return {
        "seconds": elapsed,
        "controller_cpu_percent": 100 * (cpu_seconds()[0] - cpu_before[0]) / elapsed,
        "queues": {q.name: {"reconciles": q.processed - before[q.name][0],
                            "busy_percent": 100 * (q.busy - before[q.name][1]) / elapsed}
                   for q in controller.manager.queues()},
    }


async def sample_queue(prober: Any, series: list[tuple[float, int, int, int]]) -> None:
    start, late0 = time.monotonic(), prober.stats.late
    while True:
        series.append((round(time.monotonic() - start, 2), len(prober._pending), prober._inflight,
                       prober.stats.late - late0))
        await asyncio.sleep(1.0)


async def sample_heap(series: list[tuple[float, float, float, float]]) -> None:
    """GK_BENCH_HEAP_SERIES=1: every 2 s from the apply on, (seconds, MiB held in pymalloc arenas, MiB live, RSS MiB):
    when the arenas' high-water mark forms."""
    start = time.monotonic()
    while True:
        heap = heap_breakdown()
        series.append((round(time.monotonic() - start, 1), round(heap["pymalloc_arenas"] / 2**20, 1),
                       round(heap["pymalloc_live"] / 2**20, 1), round(rss_bytes() / 2**20, 1)))
        await asyncio.sleep(2.0)


class LoopLag:
    """The worst lateness of a 100 ms ticker: how long the event loop was held up at once."""

    def __init__(self) -> None:
        self.worst = 0.0

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            start = loop.time()
            await asyncio.sleep(0.1)
            self.worst = max(self.worst, loop.time() - start - 0.1)


class FlipTracer:
    """Where a flip's detection latency goes: for the flipped servers only, the wall-clock moments of the probe
    tick whose run saw `active`, its result, the pod's condition written, the first GameServer reconcile after
    that, the opsState written, and the pod's opsState label written (OKG #321's figure). Wraps the controller's
    own objects in this process; cost: a set lookup per call."""

    def __init__(self, controller: Any, names: set[str]) -> None:
        self.marks: dict[str, dict[str, float]] = {name: {} for name in names}
        self._undo: list[tuple[Any, str, Any]] = []
        prober = controller.manager.prober
        loop = asyncio.get_running_loop()
        observe = prober._observe

        def traced_observe(probe: Any, success: bool, message: str) -> None:
            marks = self.marks.get(probe.pod.name)
            if marks is not None and "result" not in marks and "active" in message:
                now = time.time()
                marks["result"] = now
                marks["tick"] = now - (loop.time() - probe.tick)
            observe(probe, success, message)

        start = prober._start

        def traced_start(probe: Any, now: float) -> None:
            marks = self.marks.get(probe.pod.name)
            if marks is not None and "result" not in marks:
                marks["start"] = time.time()  # the last start before the result: the run that saw `active`
            start(probe, now)

        state = controller.state
        patch = state.patch

        def traced_patch(kind: str, namespace: str, name: str, body: Any, *args: Any, **kwargs: Any) -> Any:
            written = patch(kind, namespace, name, body, *args, **kwargs)
            marks = self.marks.get(name)
            if marks is not None:
                if kind == "Pod" and "pod_written" not in marks and "result" in marks:
                    marks["pod_written"] = time.time()
                elif kind == "GameServer" and "gs_written" not in marks and \
                        (body.get("spec") or {}).get("opsState") == "None":
                    marks["gs_written"] = time.time()
                elif kind == "Pod" and "gs_written" in marks and "label_written" not in marks and \
                        ((body.get("metadata") or {}).get("labels") or {}).get(GS_OPS_STATE_KEY) == "None":
                    marks["label_written"] = time.time()  # OKG #321's figure: opsState → the pod's label
            return written

        queue = controller.manager.gs_queue
        handler = queue.handler

        async def traced_handler(namespace: str, name: str) -> None:
            marks = self.marks.get(name)
            if marks is not None and "pod_written" in marks and "reconcile" not in marks:
                marks["reconcile"] = time.time()
            await handler(namespace, name)

        for obj, attr, value in ((prober, "_observe", traced_observe), (prober, "_start", traced_start),
                                 (state, "patch", traced_patch),
                                 (queue, "handler", traced_handler)):
            self._undo.append((obj, attr, vars(obj).get(attr)))
            setattr(obj, attr, value)

    def close(self) -> None:
        for obj, attr, original in self._undo:
            if original is None:
                delattr(obj, attr)  # the method shows through again
            else:
                setattr(obj, attr, original)
        self._undo.clear()

    def stages(self, flipped: dict[str, float], seen: dict[str, float | None]) -> dict[str, dict[str, float]]:
        """Per stage, p50 / p99 / max seconds over the flips that went through it."""
        order = [("flip", "tick", "wait for the next tick"), ("tick", "start", "tick to start (a free slot)"),
                 ("start", "result", "start to result (the run)"),
                 ("result", "pod_written", "result to pod condition"),
                 ("pod_written", "reconcile", "pod write to GameServer reconcile (watch + queue)"),
                 ("reconcile", "gs_written", "reconcile to opsState written"),
                 ("gs_written", "seen", "opsState written to read by the poller"),
                 ("gs_written", "label_written", "opsState written to the pod's opsState label written")]
        out: dict[str, dict[str, float]] = {}
        for start, end, label in order:
            values = []
            for name, at in flipped.items():
                marks = dict(self.marks.get(name, {}), flip=at)
                visible = seen.get(name)
                if visible is not None:
                    marks["seen"] = at + visible
                if start in marks and end in marks:
                    values.append(marks[end] - marks[start])
            if values:
                out[label] = {"n": len(values), "p50": percentile(values, 50), "p99": percentile(values, 99),
                              "max": max(values)}
        return out

    def raw(self, flipped: dict[str, float]) -> dict[str, dict[str, float]]:
        """Per flip, each mark in seconds after the flip."""
        return {name: {k: round(v - at, 3) for k, v in self.marks.get(name, {}).items()}
                for name, at in flipped.items()}


def watch(state_dir: Path, names: list[str], period: int) -> dict[str, dict[str, float | None]]:
    """Flip each server's probe output to `active` at a random moment within one period; poll every 50 ms
    until its opsState reads None. Returns, per server, the wall-clock moment of the flip (`flipped`) and the
    seconds from flip to visible (`seen`; None: not seen)."""
    rng = random.Random(len(names))
    db = sqlite3.connect(state_dir / "state.db", timeout=30)
    start = time.time()
    plan = sorted((start + rng.uniform(0, period), name) for name in names)
    flipped: dict[str, float] = {}
    seen: dict[str, float | None] = {name: None for name in names}
    deadline = start + period + 3 * period + 10
    while time.time() < deadline and (plan or any(seen[n] is None for n in flipped)):
        now = time.time()
        while plan and plan[0][0] <= now:
            _, name = plan.pop(0)
            path = state_dir / "pods" / NAMESPACE / name / "main" / "mode"
            tmp = path.with_suffix(".tmp")
            tmp.write_text("active\n")
            os.replace(tmp, path)
            flipped[name] = time.time()
        waiting = [n for n in flipped if seen[n] is None]
        if waiting:
            marks = ",".join("?" * len(waiting))
            rows = db.execute(
                f"SELECT name, json_extract(body, '$.spec.opsState') FROM objects WHERE kind = 'GameServer' "
                f"AND namespace = ? AND name IN ({marks})", (NAMESPACE, *waiting),
            ).fetchall()
            now = time.time()
            for name, ops in rows:
                if ops == "None":
                    seen[name] = now - flipped[name]
        time.sleep(0.05)
    db.close()
    return {"seen": seen, "flipped": flipped}


# -- the table (the parent) ---------------------------------------------------------------------------------


def spawn_limit(concurrency: int, seconds: float) -> dict[str, float]:
    """The machine's rate for `cat mode` at this concurrency: the bare loops, in a directory like a container's."""
    with tempfile.TemporaryDirectory(prefix="gk-limit-") as tmp_name:
        tmp = Path(tmp_name)
        (tmp / "mode").write_text("idle\n")
        limits = {"bare Python": bare_python(PROBE, tmp, concurrency, seconds).rate}
        binary = bare_c_binary(tmp)
        if binary is not None:
            limits["bare C"] = bare_c(binary, PROBE, tmp, concurrency, seconds).rate
    return limits


def run_child(size: int, kubelet: str, args: argparse.Namespace) -> dict[str, Any]:
    command = [sys.executable, "-m", "bench.fleet_scale", "--one", str(size), "--kubelet", kubelet,
               "--period", str(args.period), "--window", str(args.window), "--flips", str(args.flips),
               "--concurrency", str(args.concurrency), "--setup-timeout", str(args.setup_timeout)]
    if args.precreate:
        command.append("--precreate")
    proc = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        sys.stderr.write(proc.stderr[-3000:])
        return {"size": size, "kubelet": kubelet, "error": (proc.stderr.strip().splitlines() or ["?"])[-1]}
    data: dict[str, Any] = json.loads(lines[-1].removeprefix("RESULT "))
    return data


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fleets", default="100:real,1000:real,1000:pretend,10000:pretend",
                        help="SIZE:KUBELET,... where KUBELET is real or pretend")
    parser.add_argument("--period", type=int, default=10)
    parser.add_argument("--window", type=float, default=30.0, help="steady window in seconds (default 30)")
    parser.add_argument("--flips", type=int, default=30, help="servers flipped for the latency (default 30)")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--setup-timeout", type=float, default=900.0)
    parser.add_argument("--precreate", action="store_true",
                        help="assist the setup: create, start and probe every fleet's pods in one pass before the "
                             "controllers run (precreate_pods); by default the running controllers build the fleet")
    parser.add_argument("--quick", action="store_true", help="tiny run (smoke test)")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--kubelet", default="real", help=argparse.SUPPRESS)
    parser.add_argument("--watch", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--names", default="", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.watch is not None:
        print(json.dumps(watch(args.watch, args.names.split(","), args.period)), flush=True)
        return 0
    if args.one is not None:
        result = asyncio.run(one_fleet(args.one, args.kubelet, args.period, args.window, args.flips,
                                       args.concurrency, args.setup_timeout, args.precreate))
        print("RESULT " + json.dumps(result), flush=True)
        return 0
    if args.quick:
        args.fleets, args.period, args.window, args.flips = "5:pretend", 1, 1.0, 2
    fleets = [(int(size), kubelet) for size, _, kubelet in (f.partition(":") for f in args.fleets.split(","))]
    started_on = machine()
    # The limit moves with whatever else runs on the machine: measured before and after the fleets, averaged.
    seconds = 0.3 if args.quick else 5.0
    before = spawn_limit(args.concurrency, seconds)
    results = []
    for size, kubelet in fleets:
        results.append(run_child(size, kubelet, args))
    after = spawn_limit(args.concurrency, seconds)
    limits = {k: (before[k] + after[k]) / 2 for k in before}
    limit = max(limits.values())
    table = Table(
        "fleet_scale",
        f"Fleet scale: probe period {args.period} s, steady window {args.window:g} s, concurrency "
        f"{args.concurrency}; spawn limit of `cat mode` (bare loops, mean of before and after): "
        + ", ".join(f"{k} {v:,.0f}/s" for k, v in limits.items()),
        ["game servers", "kubelet", "probes/s", "of demand", "of limit", "missed", "late", "writes",
         "seen", "latency p50 s", "p99 s", "ctl CPU %", "µs/probe", "RSS MiB", "KB/GS", "setup s", "assisted"],
        params={"period": args.period, "window": args.window, "flips": args.flips,
                "concurrency": args.concurrency, "spawn_limit": limits, "spawn_limit_before": before,
                "spawn_limit_after": after},
        started_on=started_on,
    )
    for data in results:
        size, kubelet = data["size"], data["kubelet"]
        if "error" in data:
            table.add(size, kubelet, *(["-"] * 14), f"failed: {data['error']}")
            continue
        rate = data["probes_per_second"]
        table.add(size, kubelet, rate, ratio(rate, data["demand_per_second"]), ratio(rate, limit), data["missed"],
                  data["late"], data["writes"], f"{data['detected']}/{data['flips']}", data["latency_p50"],
                  data["latency_p99"],
                  data["controller_cpu_percent"], data["controller_cpu_us_per_probe"], data["rss_mib"],
                  data["bytes_per_gs"] / 1024, data["setup_seconds"], "yes" if data.get("precreated") else "no")
    table.params["fleets"] = results
    for data in results:
        heap = data.get("heap_per_gs")
        if heap:
            table.notes.append(
                f"KB/GS at {data['size']:,} split: {heap['pymalloc_live'] / 1024:.2f} live Python objects, "
                f"{heap['pymalloc_free'] / 1024:.2f} free inside pymalloc's arenas, "
                f"{heap['outside_pymalloc'] / 1024:.2f} outside them (malloc: SQLite's page cache, buffers)")
    for data in results:
        stages = data.get("latency_stages")
        if stages:
            table.notes.append(
                f"latency at {data['size']:,} by stage, p50 / p99 s: "
                + "; ".join(f"{label} {v['p50']:.2f} / {v['p99']:.2f}" for label, v in stages.items()))
    for data in results:
        if data.get("backlog_at_setup"):
            table.notes.append(
                f"at {data['size']:,} the set-up left {data['backlog_at_setup']:,} probes waiting for a slot; they "
                f"drained in {data['backlog_drain_seconds']:.1f} s, before the window (settle_series in the JSON)")
    for data in results:
        for key, during in (("setup_phase", "during the setup"), ("flip_phase", "while the flips were detected")):
            phase = data.get(key)
            if phase:
                busy = {name: q["busy_percent"] for name, q in phase["queues"].items() if q["reconciles"]}
                table.notes.append(
                    f"{during} at {data['size']:,} ({phase['seconds']:.0f} s): controller CPU "
                    f"{phase['controller_cpu_percent']:.0f} %; time in each queue's handler, % of the phase "
                    f"(reconciles; set-wide ones yield to the loop mid-way, so shares overlap): "
                    + ", ".join(f"{name} {share:.1f} % ({phase['queues'][name]['reconciles']:,})"
                                for name, share in sorted(busy.items(), key=lambda kv: -kv[1])))
    table.notes.append("of demand: probes/s ÷ (servers / period); of limit: probes/s ÷ the faster bare loop's rate")
    table.notes.append("missed: ticks skipped because the previous run had not finished; late: runs started more "
                       "than period/10 after their tick (both over the window)")
    table.notes.append("latency: flip of the probe's output → opsState None read from the state database "
                       "(what `gk get` reads); it includes the wait for the next probe, uniform over one period; "
                       "seen: flips whose result was visible within 4 periods + 10 s")
    table.notes.append(f"setup s: applying the set → every server WaitToBeDeleted and no store write for {QUIET:g} s, "
                       "through the running controllers (it includes initialDelaySeconds and the first probe's "
                       "random phase within one period)"
                       + ("; assisted (--precreate): the pods were created, started and probed once in one pass "
                          "before the controllers ran" if args.precreate else ""))
    table.notes.append("KB/GS: (RSS with the fleet − RSS before it) ÷ servers, same process, heap trimmed before "
                       "each reading (gc.collect + malloc_trim); 'pretend' kubelet: no container processes, so "
                       "the real kubelet's own per-pod state is not in that figure")
    table.emit(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
