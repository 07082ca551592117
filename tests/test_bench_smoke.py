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
