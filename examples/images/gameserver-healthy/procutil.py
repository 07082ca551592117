"""Small /proc helpers shared by main.py and helper.py (Linux only, stdlib only)."""

import os

HELPER_MARKER = "gk-demo-helper"  # a whole argv element of every helper process


def proc_alive(pid):
    """True if `pid` exists and is not a zombie."""
    try:
        with open(f"/proc/{int(pid)}/stat") as f:
            stat = f.read()
    except (OSError, ValueError):
        return False
    state = stat.rsplit(")", 1)[-1].split()
    return bool(state) and state[0] not in ("Z", "X")


def cmdline(pid):
    try:
        with open(f"/proc/{int(pid)}/cmdline", "rb") as f:
            return [a.decode("utf-8", "replace") for a in f.read().split(b"\0") if a]
    except (OSError, ValueError):
        return []


def same_cwd(pid, directory):
    try:
        return os.readlink(f"/proc/{int(pid)}/cwd") == os.path.realpath(directory)
    except (OSError, ValueError):
        return False


def read_pid(path):
    try:
        with open(path) as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None


def is_helper(pid, directory):
    """pid is a live helper of *this* image copy (guards against pid reuse)."""
    return pid is not None and proc_alive(pid) and HELPER_MARKER in cmdline(pid) and same_cwd(pid, directory)
