"""Dashboard and ops API at fleet size: 1,000 GameServers (in a real SQLite store), the API in this process.

Measured: list latency (all, and with a label + field selector), a bulk patch of 100 servers, the time from a
store write to its arrival on the server-sent-events stream, and in headless Chromium (when installed) the
time to the first full render of the table, the rows that exist in the DOM (virtualised), and the longest gap
between animation frames while every server changes at once (what "does not freeze" means).

    python -m bench.dashboard_api [--servers 1000] [--quick] [--out FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.common import Table
from gamekeeper.observe.api import OpsApi
from gamekeeper.store.sqlite import SqliteState, SqliteStore

OPS = ["WaitToBeDeleted", "None", "Allocated", "Maintaining"]


def game_server(i: int, sets: int) -> dict[str, Any]:
    gss = f"set{i % sets}"
    return {
        "apiVersion": "game.kruise.io/v1alpha1", "kind": "GameServer",
        "metadata": {"name": f"{gss}-{i}", "namespace": "default",
                     "labels": {"game.kruise.io/owner-gss": gss, "zone": f"z{i % 3}"}},
        "spec": {"opsState": OPS[i % len(OPS)]},
        "status": {"currentState": "Ready", "deletionPriority": 0, "updatePriority": 0,
                   "serviceQualitiesConditions": [{"name": "idle", "status": "True", "result": "idle"}]},
    }


def game_server_set(name: str, replicas: int) -> dict[str, Any]:
    return {"apiVersion": "game.kruise.io/v1alpha1", "kind": "GameServerSet",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"replicas": replicas, "gameServerTemplate": {"spec": {"containers": [
                {"name": "game", "image": "game:1"}]}}},
            "status": {"replicas": replicas, "readyReplicas": replicas, "updatedReplicas": replicas}}


def get(url: str, body: Any = None, method: str = "GET") -> tuple[float, bytes]:
    req = urllib.request.Request(url, method=method, data=None if body is None else json.dumps(body).encode())
    req.add_header("Content-Type", "application/json")
    req.add_header("Authorization", "Bearer bench")
    started = time.perf_counter()
    with urllib.request.urlopen(req, timeout=60) as resp:
        data = resp.read()
    return (time.perf_counter() - started) * 1000, data


def median_ms(url: str, times: int) -> tuple[float, int]:
    samples, size = [], 0
    for _ in range(times):
        ms, data = get(url)
        samples.append(ms)
        size = len(data)
    return statistics.median(samples), size


def sse_latency(base: str, state: SqliteState, name: str, rounds: int) -> float:
    """Median ms from a committed write to the matching `gameserver` message on the stream."""
    arrivals: dict[str, float] = {}
    ready = threading.Event()

    def listen() -> None:
        with urllib.request.urlopen(base + "/api/v1/stream", timeout=60) as resp:
            for raw in resp:
                line = raw.decode()
                if line.startswith("data: "):
                    ready.set()
                    data = json.loads(line[6:])
                    mark = ((data.get("object") or {}).get("metadata") or {}).get("labels", {}).get("bench-mark")
                    if mark and mark not in arrivals:
                        arrivals[mark] = time.perf_counter()
                        if len(arrivals) == rounds:
                            return

    thread = threading.Thread(target=listen, daemon=True)
    thread.start()
    ready.wait(10)
    samples = []
    for i in range(rounds):
        started = time.perf_counter()
        state.patch("GameServer", "default", name, {"metadata": {"labels": {"bench-mark": f"m{i}"}}})
        deadline = time.monotonic() + 10
        while f"m{i}" not in arrivals and time.monotonic() < deadline:
            time.sleep(0.001)
        if f"m{i}" in arrivals:
            samples.append((arrivals[f"m{i}"] - started) * 1000)
    thread.join(5)
    return statistics.median(samples) if samples else float("nan")


def browser_figures(base: str, state: SqliteState, names: list[str]) -> dict[str, Any] | None:
    chromium, driver_path = shutil.which("chromium"), shutil.which("chromedriver")
    if not chromium or not driver_path:
        return None
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="gk-bench-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--window-size=1400,900", f"--user-data-dir={profile}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    try:
        started = time.perf_counter()
        driver.get(base + "/#/servers")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if driver.execute_script("return document.querySelectorAll('#gs-rows .row').length > 0 && "
                                     "window.gamekeeper.rows.length") == len(names):
                break
            time.sleep(0.01)
        first_render = (time.perf_counter() - started) * 1000
        dom_rows = driver.execute_script("return document.querySelectorAll('#gs-rows .row').length")
        # Every server changes at once; the page must keep painting frames meanwhile.
        driver.execute_script("""
            window.__gaps = []; let last = performance.now();
            const tick = (t) => {
                window.__gaps.push(t - last); last = t;
                if (window.__gaps.length < 100000) requestAnimationFrame(tick);
            };
            requestAnimationFrame(tick);""")
        burst_started = time.perf_counter()
        for name in names:
            state.patch("GameServer", "default", name, {"spec": {"opsState": "Kill"}})
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if driver.execute_script("let n = 0; for (const g of window.gamekeeper.gs.values()) "
                                     "if (g.spec.opsState === 'Kill') n++; return n") == len(names):
                break
            time.sleep(0.02)
        burst_seen = (time.perf_counter() - burst_started) * 1000
        time.sleep(0.3)
        gaps = driver.execute_script("return window.__gaps")
        return {"first_render_ms": first_render, "dom_rows": dom_rows, "burst_all_seen_ms": burst_seen,
                "max_frame_gap_ms": max(gaps) if gaps else float("nan"),
                "p95_frame_gap_ms": sorted(gaps)[int(len(gaps) * 0.95)] if gaps else float("nan")}
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


async def run(servers: int, sets: int, times: int) -> Table:
    tmp = Path(tempfile.mkdtemp(prefix="gk-bench-api-"))
    state = SqliteState(tmp / "state")
    for s in range(sets):
        state.create(game_server_set(f"set{s}", servers // sets))
    names = []
    for i in range(servers):
        names.append(state.create(game_server(i, sets))["metadata"]["name"])
    api = OpsApi(SqliteStore(state, resync_seconds=5.0), lambda: datetime.now(UTC), "127.0.0.1:0", token="bench")
    base = (await api.start()).rstrip("/")
    loop = asyncio.get_running_loop()
    table = Table("dashboard_api", f"Ops API and dashboard, {servers} game servers in {sets} sets",
                  ["measure", "value", "unit"], params={"servers": servers, "sets": sets})
    try:
        ms, size = await loop.run_in_executor(None, median_ms, base + "/api/v1/gameservers", times)
        table.add("list all game servers (median)", round(ms, 1), "ms")
        table.add("list response size", round(size / 1024), "KiB")
        ms, _ = await loop.run_in_executor(None, median_ms, base + "/api/v1/namespaces/default/gameservers?"
                                           "labelSelector=game.kruise.io/owner-gss%3Dset0,zone%20in%20(z0,z1)"
                                           "&fieldSelector=spec.opsState%3DWaitToBeDeleted", times)
        table.add("list with label + field selector (median)", round(ms, 1), "ms")
        targets = [{"name": n} for n in names[:100]]
        ms, _ = await loop.run_in_executor(None, lambda: get(
            base + "/api/v1/namespaces/default/gameservers/bulk-patch",
            {"patch": {"spec": {"deletionPriority": 7}}, "items": targets}, "POST"))
        table.add(f"bulk patch of {len(targets)} servers", round(ms, 1), "ms")
        # The writes come from another connection, as `gk` or a second process would make them.
        writer = SqliteState(tmp / "state")
        ms = await loop.run_in_executor(None, sse_latency, base, writer, names[0], 20)
        table.add("store write -> SSE message (median)", round(ms, 1), "ms")
        figures = await loop.run_in_executor(None, browser_figures, base, writer, names)
        if figures is None:
            table.notes.append("browser figures skipped: chromium/chromedriver not installed (make browser)")
        else:
            table.add("browser: load to full table", round(figures["first_render_ms"]), "ms")
            table.add("browser: table rows in the DOM", figures["dom_rows"], "rows")
            table.add(f"browser: all {servers} changes shown", round(figures["burst_all_seen_ms"]), "ms")
            table.add("browser: longest frame gap during the burst", round(figures["max_frame_gap_ms"]), "ms")
            table.add("browser: p95 frame gap during the burst", round(figures["p95_frame_gap_ms"]), "ms")
        table.notes.append("the API runs in this process over a real SQLite store; no controller, no game-server "
                           "processes (the figures are the API's and the page's)")
    finally:
        await api.stop()
        state.close()
        shutil.rmtree(tmp, ignore_errors=True)
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--servers", type=int, default=1000)
    parser.add_argument("--sets", type=int, default=4)
    parser.add_argument("--times", type=int, default=10, help="repeats of each list")
    parser.add_argument("--quick", action="store_true", help="50 servers (a smoke run)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    servers = 50 if args.quick else args.servers
    table = asyncio.run(run(servers, args.sets, 3 if args.quick else args.times))
    table.emit(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
