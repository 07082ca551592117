#!/usr/bin/env python3
"""Entrypoint of the `gameserver:healthy` demo image.

Runs the TCP game server (server.py, same protocol as the idle image) in this
process and starts a helper sub-process (helper.py) whose liveness is what
healthy.sh reports.  Files in the working directory (= this directory):

  server.port   bound TCP port (written atomically once listening)
  server.pid    pid of this process (used by recover.sh)
  helper.pid    pid of the current helper (written by the helper itself)

The helper started here is a plain child (same process group); helpers started
later by recover.sh live in their own session.  On SIGTERM/SIGINT this process
stops whichever helper is current (and its own child), closes the game server,
removes server.port/server.pid and exits 0.  Helpers also exit by themselves
when this process disappears (see helper.py --watch).
"""

import asyncio
import contextlib
import os
import signal
import subprocess
import sys

BASE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, BASE)
sys.dont_write_bytecode = True  # keep the image directory clean

from procutil import HELPER_MARKER, is_helper, read_pid  # noqa: E402
from server import GameServer, game_port, log, remove_if_contains, write_atomic  # noqa: E402

PID_FILE = "server.pid"
HELPER_PID_FILE = "helper.pid"


def start_helper():
    return subprocess.Popen(
        [sys.executable, "helper.py", HELPER_MARKER, "--watch", str(os.getpid())],
        stdin=subprocess.DEVNULL,
        cwd=BASE,
    )


def current_helper():
    pid = read_pid(HELPER_PID_FILE)
    return pid if is_helper(pid, BASE) else None


async def monitor(child):
    """Reap our own helper child and log helper state changes."""
    last = "start"
    while True:
        child.poll()  # reaps the child if fault.sh killed it (no zombie)
        pid = current_helper()
        if last == "start" and pid is None and child.poll() is None:
            await asyncio.sleep(0.1)  # helper still starting up
            continue
        if pid != last:
            if pid is None:
                log("helper is NOT running (service quality: unhealthy)")
            elif last != "start":
                log(f"helper is running again (pid {pid})")
            last = pid
        await asyncio.sleep(0.3)


async def stop_helpers(child):
    pids = set()
    if child.poll() is None:
        pids.add(child.pid)
    pid = current_helper()
    if pid is not None:
        pids.add(pid)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)

    def alive(p):
        if p == child.pid:
            return child.poll() is None
        return is_helper(p, BASE)

    for _ in range(60):  # up to ~3 s, then SIGKILL
        if not any(alive(p) for p in pids):
            break
        await asyncio.sleep(0.05)
    for p in pids:
        if alive(p):
            with contextlib.suppress(ProcessLookupError):
                os.kill(p, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        child.wait(timeout=3)
    if pids:
        log(f"helper stopped (pid {', '.join(map(str, sorted(pids)))})")


async def amain():
    me = str(os.getpid())
    write_atomic(PID_FILE, me + "\n")
    gs = GameServer(port=game_port())
    try:
        await gs.start()
    except OSError as e:
        log(f"cannot listen on {gs.host}:{gs.port}: {e}")
        remove_if_contains(PID_FILE, me)
        return 1
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    child = start_helper()
    log(f"helper started (pid {child.pid})")
    mon = asyncio.create_task(monitor(child))
    await stop.wait()
    log("shutdown requested (SIGTERM/SIGINT)")
    mon.cancel()
    await stop_helpers(child)
    await gs.stop()
    remove_if_contains(PID_FILE, me)
    return 0


def main():
    os.chdir(BASE)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    sys.exit(asyncio.run(amain()))


if __name__ == "__main__":
    main()
