"""The benchmark programs run at a tiny size, print their table and write it as JSON (no speed is asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PROGRAMS = {
    "prober_throughput": ["prober", "bare Python", "probes/s"],
    "fleet_scale": ["game servers", "probes/s", "KB/GS"],
    "writes": ["writes/round, nothing changed", "writes for one change"],
    "scale_in": ["to delete", "reference ms"],
    "cli_startup": ["gk --help", "gk get gs", "median wall s", "vs floor"],
    "kube_scale": ["game servers", "steady req/min", "req/change", "label p50 s"],
}


Run = tuple[subprocess.CompletedProcess[str], Path]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Run]]:
    """All the programs at once (they are small; together they finish in a few seconds)."""
    tmp = tmp_path_factory.mktemp("bench")
    started = {}
    for name in PROGRAMS:
        out = tmp / f"{name}.json"
        proc = subprocess.Popen([sys.executable, "-m", f"bench.{name}", "--quick", "--out", str(out)], cwd=ROOT,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        started[name] = (proc, out)
    done = {}
    try:
        for name, (proc, out) in started.items():
            stdout, stderr = proc.communicate(timeout=120)
            done[name] = (subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr), out)
        yield done
    finally:
        for proc, _ in started.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()


@pytest.mark.parametrize("name", list(PROGRAMS))
def test_bench_program_prints_its_table_and_writes_json(runs: dict[str, Run], name: str) -> None:
    result, out = runs[name]
    assert result.returncode == 0, result.stderr[-2000:]
    for heading in PROGRAMS[name]:
        assert heading in result.stdout, result.stdout
    data = json.loads(out.read_text())
    assert data["name"] == name and data["rows"], data
    assert data["machine"]["cores"] >= 1
    assert all(len(row) == len(data["columns"]) for row in data["rows"])


def test_kube_scale_is_quiet_when_nothing_changes_and_sees_every_change(runs: dict[str, Run]) -> None:
    """Not speed: the operator's correctness at rest, as the quick run measured it against the emulator."""
    result, out = runs["kube_scale"]
    assert result.returncode == 0, result.stderr[-2000:]
    runs_by_path = {raw["path"]: raw for raw in json.loads(out.read_text())["params"]["raw"]}
    assert set(runs_by_path) == {"kruise", "exec"}
    for raw in runs_by_path.values():
        assert raw["sync_writes"] == 0, raw["sync_requests"]  # the grown fleet is what the operator would build
        assert raw["steady_per_minute"] == 0, raw["steady_requests"]  # a resync falls inside the window
        assert raw["seen"] == raw["flips"] > 0, raw
    assert runs_by_path["kruise"]["steady_requests"] == {}  # not even a probe: kruise-daemon probes
    assert runs_by_path["exec"]["exec_per_minute"] > 0


def test_fleet_scale_traces_where_each_flips_latency_went(runs: dict[str, Run]) -> None:
    _, out = runs["fleet_scale"]
    fleet = json.loads(out.read_text())["params"]["fleets"][0]
    marks = fleet["latency_marks"]
    assert len(marks) == fleet["flips"]
    for name, mark in marks.items():
        # Every flip went through the whole path, in order (seconds after the flip, read by this process).
        assert mark["start"] <= mark["result"] <= mark["pod_written"] <= mark["reconcile"] <= mark["gs_written"], name
    assert {"start to result (the run)", "pod write to GameServer reconcile (watch + queue)"} <= set(
        fleet["latency_stages"])
