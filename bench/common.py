"""Shared pieces of the benchmark programs: tables, JSON results, machine facts, process figures, the bare loops."""

from __future__ import annotations

import contextlib
import ctypes
import json
import math
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
EXAMPLES = ROOT / "examples"

# -- the table ----------------------------------------------------------------------------------------------


@dataclass
class Table:
    """A named table of rows; printed aligned, saved as JSON (with the machine it ran on)."""

    name: str
    title: str
    columns: list[str]
    rows: list[list[Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)
    # Read when the program starts (a table is made before the measurements): the load average at the end
    # is mostly the benchmark's own.
    started_on: dict[str, Any] = field(default_factory=lambda: machine())

    def add(self, *cells: Any) -> None:
        self.rows.append(list(cells))

    def render(self) -> str:
        cells = [[str(c) for c in self.columns]] + [[fmt(c) for c in row] for row in self.rows]
        widths = [max(len(r[i]) for r in cells) for i in range(len(self.columns))]
        lines = [self.title, ""]
        for n, row in enumerate(cells):
            lines.append("  ".join(c.rjust(w) if n and i else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths,
                                                                                                     strict=True))))
            if n == 0:
                lines.append("  ".join("-" * w for w in widths))
        lines.extend(f"  * {note}" for note in self.notes)
        return "\n".join(lines)

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "title": self.title,
            "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "machine": {**self.started_on, "load_at_end": machine()["load_at_start"]},
            "params": self.params,
            "columns": self.columns,
            "rows": self.rows,
            "notes": self.notes,
        }

    def emit(self, out: Path | None = None) -> Path:
        """Print the table and write it as JSON (default bench/results/<name>.json); returns the path."""
        print(self.render(), flush=True)
        path = out or RESULTS / f"{self.name}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.as_json(), indent=2, default=str) + "\n")
        print(f"\n(written to {path})", flush=True)
        return path


def fmt(value: Any) -> str:
    if isinstance(value, float):
        if value != value:  # NaN
            return "-"
        if abs(value) >= 100:
            return f"{value:,.0f}"
        if abs(value) >= 10:
            return f"{value:.1f}"
        return f"{value:.3g}" if value else "0"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    if value is None:
        return "-"
    return str(value)


def ratio(a: float, b: float) -> float:
    return a / b if b else float("nan")


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def percentile(values: Sequence[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = (len(ordered) - 1) * p / 100
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


# -- the machine and the process ----------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    cpu = ""
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = 0
    with contextlib.suppress(OSError), open("/proc/meminfo") as f:
        mem = int(f.readline().split()[1]) * 1024
    load = ""
    with contextlib.suppress(OSError), open("/proc/loadavg") as f:
        load = " ".join(f.read().split()[:3])
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(mem / 2**30, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "libc": " ".join(platform.libc_ver()),
        "load_at_start": load,
    }


def rss_bytes() -> int:
    """Resident set size of this process (VmRSS)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def trim_heap() -> None:
    """Give freed memory back to the OS before measuring RSS: a full collection, then glibc's malloc_trim."""
    import gc

    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).malloc_trim(0)


def heap_breakdown() -> dict[str, int]:
    """Where this process's memory is, in bytes: CPython's small-object allocator (arenas held, bytes in live
    blocks, bytes free inside them) from `sys._debugmallocstats`, and the RSS outside those arenas (malloc'd
    buffers such as SQLite's page cache, code, shared libraries). Arenas held far above live blocks is
    fragmentation: memory a past peak left behind that the allocator cannot return."""
    import tempfile

    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as capture:
        try:
            os.dup2(capture.fileno(), 2)
            sys._debugmallocstats()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        capture.seek(0)
        text = capture.read().decode(errors="replace")
    figures: dict[str, int] = {}
    wanted = {"# arenas allocated current": "arenas", "# bytes in allocated blocks": "live",
              "# bytes in available blocks": "free_blocks"}
    for line in text.splitlines():
        name, _, value = line.partition("=")
        name = name.strip()
        if name in wanted:
            figures[wanted[name]] = int(value.strip().replace(",", ""))
        elif name.endswith("bytes/arena"):  # "N arenas * S bytes/arena = total"
            figures["arena_bytes"] = int(value.strip().replace(",", ""))
    arena_bytes = figures.get("arena_bytes", 0)
    return {"pymalloc_arenas": arena_bytes, "pymalloc_live": figures.get("live", 0),
            "pymalloc_free": arena_bytes - figures.get("live", 0), "outside_pymalloc": rss_bytes() - arena_bytes}


def cpu_seconds() -> tuple[float, float]:
    """(this process, its reaped children) user+system CPU seconds."""
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime, kids.ru_utime + kids.ru_stime


def raise_fd_limit() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


@contextlib.contextmanager
def chdir(path: Path | str) -> Iterator[None]:
    old = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


# -- the bare loops: the machine's limit for starting a command ----------------------------------------------


def resolve(argv0: str) -> str:
    if "/" in argv0:
        return argv0
    found = shutil.which(argv0)
    if found is None:
        raise FileNotFoundError(argv0)
    return found


@dataclass
class Bare:
    """What a bare loop did: commands per second over the window, commands counted, and CPU seconds per command
    of the loop and its commands together (user + system, every command it ran)."""

    rate: float
    counted: int
    cpu_per_command: float
    parent_cpu_per_command: float = math.nan


def bare_python(argv: Sequence[str], cwd: Path, concurrency: int, seconds: float) -> Bare:
    """The least a Python program can do to run a command `concurrency` at a time: posix_spawn it (path resolved
    once, new session, stdin /dev/null, stdout/stderr to memory files), wait for any child, read its output.

    Counting starts once `concurrency` commands have finished (the pipeline is full) and lasts `seconds`."""
    path = resolve(argv[0])
    env = dict(os.environ)
    devnull = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
    inflight: dict[int, tuple[int, int]] = {}
    finished = 0
    counted = 0
    start = deadline = math.inf
    cpu0 = cpu_seconds()
    with chdir(cwd):
        while True:
            now = time.perf_counter()
            while len(inflight) < concurrency and now < deadline:
                out = os.memfd_create("o", os.MFD_CLOEXEC)
                err = os.memfd_create("e", os.MFD_CLOEXEC)
                pid = os.posix_spawn(path, list(argv), env, setsid=True, file_actions=[
                    (os.POSIX_SPAWN_DUP2, devnull, 0), (os.POSIX_SPAWN_DUP2, out, 1), (os.POSIX_SPAWN_DUP2, err, 2)])
                inflight[pid] = (out, err)
            if not inflight:
                break
            pid, _ = os.wait()
            fds = inflight.pop(pid, None)
            if fds is None:
                continue
            os.pread(fds[0], 1024, 0)
            os.pread(fds[1], 1024, 0)
            os.close(fds[0])
            os.close(fds[1])
            finished += 1
            now = time.perf_counter()
            if finished == concurrency:
                start, deadline = now, now + seconds
            elif start < now <= deadline:
                counted += 1
    os.close(devnull)
    cpu1 = cpu_seconds()
    runs = max(finished, 1)
    return Bare(counted / seconds, counted, (sum(cpu1) - sum(cpu0)) / runs, (cpu1[0] - cpu0[0]) / runs)


_C_SOURCE = Path(__file__).with_name("bare_spawn.c")


def bare_c_binary(workdir: Path) -> Path | None:
    """Compile bench/bare_spawn.c when a C compiler is there (else the C row is left out)."""
    cc = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if cc is None:
        return None
    binary = workdir / "bare_spawn"
    proc = subprocess.run([cc, "-O2", "-o", str(binary), str(_C_SOURCE)], capture_output=True, text=True,
                          check=False)
    if proc.returncode != 0:
        print(f"(bare C loop not built: {proc.stderr.strip()[:200]})", file=sys.stderr)
        return None
    return binary


def bare_c(binary: Path, argv: Sequence[str], cwd: Path, concurrency: int, seconds: float) -> Bare:
    cpu0 = cpu_seconds()[1]
    proc = subprocess.run([str(binary), f"{seconds}", str(concurrency), str(cwd), resolve(argv[0]), *argv],
                          capture_output=True, text=True, check=True)
    rate, counted = proc.stdout.split()
    finished = proc.stderr.split()[-1]
    # The C loop is our child, its commands are its children: all of it is in RUSAGE_CHILDREN once reaped.
    return Bare(float(rate), int(counted), (cpu_seconds()[1] - cpu0) / max(int(finished), 1))
