"""Writes: committed store writes per probe round, when nothing changed and when one game server changed.

A fleet runs in this process with the whole controller (period 2 s, resync every 5 s so that resyncs fall in
the window). Once every server is WaitToBeDeleted:

1. nothing changes for `--rounds` probe rounds: every probe runs and says `idle` again; the writes committed
   (`SqliteState.writes`, which counts committed writing transactions) must be 0;
2. one server's probe output flips to `active`: the writes until its opsState is None and `--rounds` more
   rounds have passed, by kind (from the store's change feed).

The second figure must not grow with the fleet: the program runs two fleet sizes side by side.

    python -m bench.writes [--fleets 100:real,1000:pretend] [--rounds 5] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import Table, raise_fd_limit
from bench.harness import NAMESPACE, Controller, apply, cheap_image, gss_yaml, stop_processes

GSS = "w"
PROBE = ["cat", "mode"]


def ops_of(db: sqlite3.Connection, name: str) -> str | None:
    row = db.execute("SELECT json_extract(body, '$.spec.opsState') FROM objects WHERE kind = 'GameServer' AND "
                     "namespace = ? AND name = ?", (NAMESPACE, name)).fetchone()
    return None if row is None else str(row[0])


def by_kind(db: sqlite3.Connection, since: int) -> dict[str, int]:
    rows = db.execute("SELECT kind, count(*) FROM changes WHERE rv > ? GROUP BY kind ORDER BY kind", (since,))
    return {kind: int(n) for kind, n in rows}


async def one(size: int, kubelet: str, period: int, rounds: int) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="gk-writes-"))
    state_dir = tmp / "state"
    raise_fd_limit()
    controller = Controller(state_dir, cheap_image(tmp), kubelet=kubelet, resync_seconds=5.0)
    controller.start()
    reader = sqlite3.connect(state_dir / "state.db", timeout=30)
    state = controller.state
    try:
        await asyncio.wait_for(controller.manager.ready.wait(), 30)
        apply(state, gss_yaml(GSS, size, "bench/cheap:1", PROBE, period, delay=1))
        deadline = time.monotonic() + 600
        while reader.execute("SELECT count(*) FROM objects WHERE kind = 'GameServer' AND "
                             "json_extract(body, '$.spec.opsState') = 'WaitToBeDeleted'").fetchone()[0] < size:
            if time.monotonic() > deadline:
                raise TimeoutError("fleet not ready")
            await asyncio.sleep(0.5)
        await asyncio.sleep(min(rounds, 2) * period)
        prober = controller.manager.prober

        writes0, runs0, rv0 = state.writes, prober.stats.runs, state.current_rv()
        await asyncio.sleep(rounds * period)
        quiet = {"writes": state.writes - writes0, "probes": prober.stats.runs - runs0,
                 "by_kind": by_kind(reader, rv0)}

        name = f"{GSS}-{size // 2}"
        (state_dir / "pods" / NAMESPACE / name / "main" / "mode").write_text("active\n")
        writes0, runs0, rv0, t0 = state.writes, prober.stats.runs, state.current_rv(), time.monotonic()
        while ops_of(reader, name) != "None":
            if time.monotonic() - t0 > 10 * period:
                raise TimeoutError(f"{name} never turned None")
            await asyncio.sleep(0.05)
        seen = time.monotonic() - t0
        await asyncio.sleep(rounds * period)
        changed = {"writes": state.writes - writes0, "probes": prober.stats.runs - runs0,
                   "by_kind": by_kind(reader, rv0), "seen_after": seen}
        return {"size": size, "kubelet": kubelet, "period": period, "rounds": rounds, "quiet": quiet,
                "one_changed": changed}
    finally:
        reader.close()
        await controller.stop()
        controller.close()
        if kubelet == "real":
            stop_processes(state_dir)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fleets", default="100:real,1000:pretend", help="SIZE:KUBELET,... (real or pretend)")
    parser.add_argument("--period", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="tiny run (smoke test)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    if args.quick:
        args.fleets, args.period, args.rounds = "3:pretend", 1, 1
    table = Table(
        "writes",
        f"Store writes per probe round (period {args.period} s, {args.rounds} rounds each)",
        ["game servers", "kubelet", "probes", "writes/round, nothing changed", "writes for one change",
         "by kind", "opsState seen after s"],
        params={"period": args.period, "rounds": args.rounds},
    )
    results = []
    for spec in args.fleets.split(","):
        size, _, kubelet = spec.partition(":")
        data = asyncio.run(one(int(size), kubelet or "real", args.period, args.rounds))
        results.append(data)
        quiet, changed = data["quiet"], data["one_changed"]
        kinds = ", ".join(f"{k} {v}" for k, v in changed["by_kind"].items())
        table.add(int(size), kubelet, quiet["probes"], quiet["writes"] / args.rounds, changed["writes"], kinds,
                  changed["seen_after"])
    table.params["fleets"] = results
    table.notes.append("writes: committed writing transactions (SqliteState.writes); by kind: entries in the "
                       "change feed (an Event is a recorded or folded event)")
    table.notes.append("one change: from the flip of one server's probe output until its opsState is None plus "
                       f"{args.rounds} more rounds")
    table.emit(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
