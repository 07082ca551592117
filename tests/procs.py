"""Live processes read from /proc, for the tests that check what really runs (tests/fleet.py, tests/faults)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path


def pids() -> Iterator[int]:
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            yield int(entry.name)


def stat_fields(pid: int) -> list[bytes] | None:
    """/proc/<pid>/stat after the command name (state, ppid, ... : field 3 of proc(5) is [0]); None once gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    # The command name may hold spaces and parentheses: split after its last ")".
    return stat[stat.rindex(b")") + 2:].split()


def cmdline(pid: int) -> tuple[bytes, ...] | None:
    try:
        return tuple(Path(f"/proc/{pid}/cmdline").read_bytes().rstrip(b"\0").split(b"\0"))
    except OSError:
        return None


def working_in(directory: Path) -> Iterator[tuple[int, str, list[bytes]]]:
    """(pid, cwd, stat fields) of each live, non-zombie process whose working directory is `directory` or below."""
    root = str(directory.resolve())
    for pid in pids():
        try:
            cwd = os.readlink(f"/proc/{pid}/cwd")
        except OSError:
            continue
        if cwd != root and not cwd.startswith(root + os.sep):
            continue
        fields = stat_fields(pid)
        if fields is not None and fields[0] != b"Z":
            yield pid, cwd, fields


def zombies_of(pid: int) -> list[int]:
    """The children of `pid` that have exited and not been reaped."""
    found = []
    for child in pids():
        fields = stat_fields(child)
        if fields is not None and fields[0] == b"Z" and int(fields[1]) == pid:
            found.append(child)
    return found
