"""One process per directory and role: an flock on `<name>.lock`, its holder's pid in `<name>.pid` beside it.

The embedded controller (`controller.lock`) and the host-port proxy (`proxy.lock`) each run at most once per
state directory. The kernel drops an flock when its holder dies, however it dies, so a stale pid file never
blocks a restart: the lock, not the pid file, says whether the role is taken; the pid file only says who
holds it (for `gk down` and for error messages).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import time
from pathlib import Path


class PidLock:
    def __init__(self, directory: Path, name: str) -> None:
        self.path = directory / f"{name}.lock"
        self.pid_path = directory / f"{name}.pid"
        self.fd: int | None = None

    def try_acquire(self) -> bool:
        """Take the lock and write this process's pid; False when another process holds it."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self.fd = fd
        self.pid_path.write_text(f"{os.getpid()}\n")
        return True

    def release(self) -> None:
        if self.fd is not None:
            with contextlib.suppress(FileNotFoundError):
                self.pid_path.unlink()
            os.close(self.fd)
            self.fd = None

    def holder(self) -> int | None:
        """The pid of the process holding the lock; None when nobody does, -1 when its pid file is unreadable."""
        if not self.path.exists():
            return None
        fd = os.open(self.path, os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            try:
                return int(self.pid_path.read_text().strip())
            except (OSError, ValueError):
                return -1
        else:
            fcntl.flock(fd, fcntl.LOCK_UN)
            return None
        finally:
            os.close(fd)

    def stop_holder(self, timeout: float, poll: float = 0.1) -> bool:
        """SIGTERM the holder, SIGKILL it if it still holds the lock after `timeout`; False if nobody held it."""
        pid = self.holder()
        if pid is None or pid <= 0:
            return False
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.holder() is not None:
            time.sleep(poll)
        if self.holder() is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        return True
