"""runtime/pidlock.py: one process per directory and role, across real processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from gamekeeper.runtime.pidlock import PidLock

HOLD = """
import sys, time
from pathlib import Path
from gamekeeper.runtime.pidlock import PidLock
lock = PidLock(Path(sys.argv[1]), "role")
print("taken" if lock.try_acquire() else "busy", flush=True)
time.sleep(60)
"""


def holder_process(directory: Path) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(directory)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "taken"
    return proc


def test_a_second_process_is_refused_and_sees_the_holder(tmp_path: Path) -> None:
    proc = holder_process(tmp_path)
    try:
        lock = PidLock(tmp_path, "role")
        assert lock.holder() == proc.pid
        assert not lock.try_acquire()
        assert lock.fd is None
    finally:
        proc.kill()
        proc.wait()


def test_a_killed_holder_leaves_a_stale_pid_file_that_blocks_nothing(tmp_path: Path) -> None:
    proc = holder_process(tmp_path)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert (tmp_path / "role.pid").read_text().strip() == str(proc.pid)
    lock = PidLock(tmp_path, "role")
    assert lock.holder() is None
    assert lock.try_acquire()
    assert lock.holder() is not None  # seen from here the lock is taken (by this process's own descriptor)
    assert (tmp_path / "role.pid").read_text().strip() == str(os.getpid())
    lock.release()
    assert lock.holder() is None
    assert not (tmp_path / "role.pid").exists()


def test_stop_holder_terminates_it(tmp_path: Path) -> None:
    proc = holder_process(tmp_path)
    lock = PidLock(tmp_path, "role")
    assert lock.stop_holder(timeout=10)
    assert proc.wait(10) == -signal.SIGTERM  # it went on SIGTERM, not the SIGKILL after the timeout
    assert lock.holder() is None
    assert not lock.stop_holder(timeout=1)


def test_nobody_ever_held_it(tmp_path: Path) -> None:
    lock = PidLock(tmp_path, "role")
    assert lock.holder() is None
    assert not (tmp_path / "role.lock").exists()
