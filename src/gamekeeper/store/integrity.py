"""What the state database must be before anything reads or writes it: ours, of a format we know, whole.

A damaged database is never repaired or recreated behind the user's back: what it still holds may be the only
record of a running fleet. Every refusal is a `StateDamaged` whose message names the file, what is wrong and
what to do (`gk state check`, `gk state recover`, which keeps a copy of everything it moves aside).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

# Written into the database header (PRAGMA application_id / user_version): "GKST", format 1.
APPLICATION_ID = 0x474B5354
STATE_FORMAT = 1
TABLES = ("objects", "changes", "events", "counter")

FIX = ("`gk state check` shows what is readable; `gk state recover` moves the damaged files aside (nothing is "
       "deleted) and starts a new database with every row that can still be read; running game servers are "
       "then found again by name (re-apply your YAML)")


class StateDamaged(Exception):
    """The state directory cannot be used as it is; the message says why and what to do."""


def wal_path(db: Path) -> Path:
    return db.with_name(db.name + "-wal")


def shm_path(db: Path) -> Path:
    return db.with_name(db.name + "-shm")


def pod_dirs(state_dir: Path) -> list[Path]:
    """The local kubelet's per-pod directories (`pods/<namespace>/<pod>`): pods this state directory ran."""
    root = state_dir / "pods"
    try:
        return sorted(p for ns in root.iterdir() if ns.is_dir() for p in ns.iterdir() if p.is_dir())
    except OSError:
        return []


def check_before_open(state_dir: Path, db: Path, new: bool = False) -> bool:
    """Refuse a state directory whose files show damage before SQLite opens them; True if the database is new.

    SQLite itself would quietly start over on a missing or empty file, and ignore a write-ahead log that is not
    there: the fleet's record would be gone without a word while its game servers go on running. `new`: a new
    database is wanted (`gk state recover`), whatever the directory ran.
    """
    try:
        size = db.stat().st_size
    except FileNotFoundError:
        size = -1
    if size <= 0:
        pods = [] if new else pod_dirs(state_dir)
        if pods:
            what = "is missing" if size < 0 else "is empty (0 bytes)"
            raise StateDamaged(
                f"{db} {what}, but this state directory ran {len(pods)} pod(s) ({_names(pods)}), whose game "
                f"servers may still be running: the database was lost or truncated. {FIX}; or `gk down` stops "
                "them all"
            )
        return True
    if shm_path(db).exists() and not wal_path(db).exists():
        # SQLite removes the -shm file before the -wal file when it closes cleanly, so a -shm alone means the
        # log was deleted after a crash, and with it the newest changes.
        raise StateDamaged(
            f"{wal_path(db)} is missing while {shm_path(db).name} is there: the write-ahead log was deleted "
            f"after a crash, so {db.name} lacks the newest changes and may not know game servers that are "
            f"running. If you have the -wal file, put it back; otherwise {FIX}"
        )
    return False


def check_header(db: sqlite3.Connection, path: Path, new: bool) -> bool:
    """Refuse a foreign, newer or damaged database; True if it still needs our stamp (new, or of an older gk)."""
    try:
        (app_id,) = db.execute("PRAGMA application_id").fetchone()
        (version,) = db.execute("PRAGMA user_version").fetchone()
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    except sqlite3.DatabaseError as e:
        raise StateDamaged(f"{path} cannot be read ({e}): the file is damaged. {FIX}") from None
    missing = [t for t in TABLES if t not in tables]
    if app_id == APPLICATION_ID:
        if version > STATE_FORMAT:
            raise StateDamaged(
                f"{path} was written by a newer Gamekeeper (state format {version}; this gk reads format "
                f"{STATE_FORMAT}): upgrade gk, or use another --state-dir. Nothing was changed"
            )
        if missing:
            raise StateDamaged(
                f"{path} has lost its table(s) {', '.join(missing)}: the database is damaged. {FIX}"
            )
        return False
    if app_id == 0 and not tables:
        pods = [] if new else pod_dirs(path.parent)
        if pods:
            # A header and nothing else: what was written went to a write-ahead log that is gone.
            raise StateDamaged(
                f"{path} holds no tables, but this state directory ran {len(pods)} pod(s) ({_names(pods)}), "
                f"whose game servers may still be running: the database was lost. {FIX}; or `gk down` stops "
                "them all"
            )
        return True  # a new database: the schema and the stamp follow
    if app_id == 0 and not missing:
        return True  # written by a gk from before the stamp: adopted as it is
    if app_id == 0 and tables & set(TABLES):
        raise StateDamaged(f"{path} has lost its table(s) {', '.join(missing)}: the database is damaged. {FIX}")
    raise StateDamaged(
        f"{path} is not a Gamekeeper state database (application id {app_id:#x}, tables: "
        f"{', '.join(sorted(tables)) or 'none'}): use another --state-dir, or move this file away. Nothing was "
        "changed"
    )


def stamp(db: sqlite3.Connection) -> None:
    db.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    db.execute(f"PRAGMA user_version = {STATE_FORMAT}")


def quick_check(db: sqlite3.Connection, path: Path) -> None:
    """SQLite's own check of every page (a damaged page otherwise surfaces only when a query reaches it)."""
    try:
        problems = [r[0] for r in db.execute("PRAGMA quick_check(5)")]
    except sqlite3.DatabaseError as e:
        problems = [str(e)]
    if problems != ["ok"]:
        raise StateDamaged(f"{path} is damaged ({'; '.join(problems)}). {FIX}")


def _names(pods: list[Path]) -> str:
    shown = [f"{p.parent.name}/{p.name}" for p in pods[:3]]
    return ", ".join(shown) + (f" and {len(pods) - 3} more" if len(pods) > 3 else "")
