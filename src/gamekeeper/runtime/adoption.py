"""Game servers running from pod directories that the store does not know.

The store can lose what it knew (a write-ahead log deleted after a crash, a damaged or replaced state.db) while
the game servers go on running: they live in their own sessions, on purpose. The processes themselves are the
record that survives: each container's supervisor is the leader of its own session, runs the wrapper named
`gk-container`, and works in `<state>/pods/<namespace>/<pod>/<container>/`. From that the local kubelet claims
them again by name when a pod of that name is (re)created, and until then they are reported, never ignored.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

SUPERVISOR_MARK = b"gk-container"  # argv[0] of the wrapper script (runtime/local.py starts it so)


@dataclass(frozen=True)
class FoundContainer:
    namespace: str
    pod: str
    container: str
    pid: int
    start: int

    @property
    def container_id(self) -> str:
        return f"local://{self.pid}-{self.start}"

    def describe(self) -> str:
        return f"{self.namespace}/{self.pod} (container {self.container}, pid {self.pid})"


def proc_stat(pid: int) -> tuple[bytes, int, int] | None:
    """(state, session id, start time) of a process, or None."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    # The command name may contain spaces and parentheses: split after the last ')'.
    fields = data[data.rindex(b")") + 2 :].split()
    return fields[0], int(fields[3]), int(fields[19])


def still_running(found: FoundContainer) -> bool:
    stat = proc_stat(found.pid)
    return stat is not None and stat[0] != b"Z" and stat[2] == found.start


def find_supervisors(state_dir: Path) -> dict[tuple[str, str, str], FoundContainer]:
    """Every live container supervisor under `<state>/pods`, by (namespace, pod, container)."""
    root = state_dir / "pods"
    if not root.is_dir():
        return {}
    prefix = str(root.resolve()) + os.sep
    found: dict[tuple[str, str, str], FoundContainer] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        try:
            cwd = os.readlink(f"/proc/{pid}/cwd")
        except OSError:
            continue
        if not cwd.startswith(prefix):
            continue
        parts = cwd[len(prefix) :].split(os.sep)
        if len(parts) < 3:
            continue
        stat = proc_stat(pid)
        if stat is None or stat[0] == b"Z" or stat[1] != pid:
            continue  # a game process or a helper, not the supervisor (which leads its session)
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if SUPERVISOR_MARK not in argv[:5]:
            continue
        key = (parts[0], parts[1], parts[2])
        found.setdefault(key, FoundContainer(*key, pid=pid, start=stat[2]))
    return found


def untracked(found: dict[tuple[str, str, str], FoundContainer],
              known_pods: Iterable[tuple[str, str]]) -> list[FoundContainer]:
    """The found containers whose pod the store has no record of."""
    known = set(known_pods)
    return [f for key, f in sorted(found.items()) if (key[0], key[1]) not in known]


def untracked_message(lost: list[FoundContainer]) -> str:
    shown = ", ".join(f.describe() for f in lost[:5]) + (f" and {len(lost) - 5} more" if len(lost) > 5 else "")
    return (
        f"{len(lost)} game server process(es) run from pod directories the state database has no pod for: {shown}. "
        "The database lost them (a write-ahead log deleted after a crash, or a damaged or replaced state.db); they "
        "are not managed. Re-apply their GameServerSet (gk apply -f FILE) and each is re-adopted by its name, or "
        "stop them all with gk down"
    )
