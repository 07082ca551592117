"""`gk state check` and `gk state recover`: what a damaged state database still holds, and a new one made of it.

Neither ever writes to the damaged files: `check` reads a copy, `recover` renames the files aside (a copy of the
fleet's record stays, whatever happens next) and salvages every row that can still be read into a new database.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import sqlite3
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

from gamekeeper.store import integrity
from gamekeeper.store.sqlite import SqliteState, _sound

CHUNK = 200


@dataclass
class Salvage:
    """What a database's objects table still gives."""

    rows: list[tuple[str, str, str, str, int]] = field(default_factory=list)  # kind, namespace, name, body, rv
    damaged_rows: list[str] = field(default_factory=list)  # "Kind ns/name: why"
    unreadable: list[str] = field(default_factory=list)  # what SQLite refused to read
    counter: int = 0


@contextlib.contextmanager
def _copy(db: Path, wal: Path | None = None, shm: Path | None = None) -> Iterator[sqlite3.Connection]:
    """A private copy of the database files, opened: SQLite may write while it reads (WAL replay), never here.

    SQLite's backup gives a consistent copy even while a controller writes; a file it cannot open as a database
    (a damaged header, a lost log) is copied byte for byte instead.
    """
    with tempfile.TemporaryDirectory(prefix="gk-state-") as tmp:
        target = Path(tmp) / "state.db"
        try:
            source = sqlite3.connect(f"file:{quote(str(db))}?mode=ro", uri=True)
            try:
                copy = sqlite3.connect(target)
                source.backup(copy)
                copy.close()
            finally:
                source.close()
        except sqlite3.DatabaseError:
            for path in (target, integrity.wal_path(target)):
                path.unlink(missing_ok=True)
            shutil.copyfile(db, target)
            if wal is not None and wal.exists():
                shutil.copyfile(wal, integrity.wal_path(target))
        conn = sqlite3.connect(target, isolation_level=None)
        try:
            yield conn
        finally:
            conn.close()


def salvage(conn: sqlite3.Connection) -> Salvage:
    """Every objects row that can be read, chunk by chunk, row by row around a damaged page."""
    out = Salvage()
    try:
        out.counter = int(conn.execute("SELECT rv FROM counter WHERE id = 1").fetchone()[0])
    except (sqlite3.DatabaseError, TypeError) as e:
        out.unreadable.append(f"the resourceVersion counter ({e})")
    try:
        (top,) = conn.execute("SELECT max(rowid) FROM objects").fetchone()
        top = int(top or 0)
    except sqlite3.DatabaseError as e:
        out.unreadable.append(f"the objects table's size ({e})")
        top = max(out.counter, 10_000)  # every write takes a new rowid, so rowids stay below the counter
    after = 0
    while after < top:
        try:
            rows = conn.execute(
                "SELECT rowid, kind, namespace, name, body, rv FROM objects WHERE rowid > ? ORDER BY rowid LIMIT ?",
                (after, CHUNK),
            ).fetchall()
        except sqlite3.DatabaseError:
            rows = _one_by_one(conn, after, out)
            after += CHUNK
        else:
            if not rows:
                break
            after = rows[-1][0]
        for _, kind, namespace, name, body, rv in rows:
            try:
                obj = json.loads(body)
                ok = _sound(obj)
            except ValueError:
                ok = False
            if ok:
                out.rows.append((kind, namespace, name, body, int(rv)))
            else:
                out.damaged_rows.append(f"{kind} {namespace}/{name}: its body is not a whole object")
    return out


def _one_by_one(conn: sqlite3.Connection, after: int, out: Salvage) -> list[tuple[int, str, str, str, str, int]]:
    rows = []
    lost = 0
    for rowid in range(after + 1, after + CHUNK + 1):
        try:
            row = conn.execute(
                "SELECT rowid, kind, namespace, name, body, rv FROM objects WHERE rowid = ?", (rowid,)
            ).fetchone()
        except sqlite3.DatabaseError:
            lost += 1
            continue
        if row is not None:
            rows.append(row)
    if lost:
        out.unreadable.append(f"{lost} row slot(s) after rowid {after} (a damaged page)")
    return rows


def check(state_dir: Path) -> tuple[list[str], bool]:
    """A report on the state directory, and whether it is sound."""
    db = state_dir / "state.db"
    lines: list[str] = []
    sound = True
    if not db.exists() and not integrity.pod_dirs(state_dir):
        return [f"{db}: no database yet (a new one is made on first use)"], True
    try:
        SqliteState(state_dir, check=True).close()
        lines.append(f"{db}: opens, every page reads back (format {integrity.STATE_FORMAT})")
    except (integrity.StateDamaged, sqlite3.DatabaseError) as e:
        lines.append(f"problem: {e}")
        sound = False
    if not db.exists() or db.stat().st_size == 0:
        return lines, False if integrity.pod_dirs(state_dir) else sound
    try:
        with _copy(db, integrity.wal_path(db)) as conn:
            found = salvage(conn)
            try:
                quarantined = int(conn.execute("SELECT count(*) FROM quarantine").fetchone()[0])
            except sqlite3.DatabaseError:
                quarantined = 0
    except (OSError, sqlite3.DatabaseError) as e:
        lines.append(f"problem: {db} cannot be read at all ({e})")
        return lines, False
    kinds: dict[str, int] = {}
    for kind, *_ in found.rows:
        kinds[kind] = kinds.get(kind, 0) + 1
    lines.append("readable objects: " + (", ".join(f"{n} {k}" for k, n in sorted(kinds.items())) or "none"))
    for line in found.damaged_rows:
        lines.append(f"damaged row: {line}")
    for line in found.unreadable:
        lines.append(f"unreadable: {line}")
    if quarantined:
        lines.append(f"note: {quarantined} damaged row(s) were replaced; their old bodies are in the quarantine "
                     "table")
    if found.damaged_rows or found.unreadable:
        sound = False
    return lines, sound


def stored_pods(state_dir: Path) -> set[tuple[str, str]]:
    """(namespace, name) of the pods the database names, read from a copy; none when it cannot be read."""
    db = state_dir / "state.db"
    if not db.exists() or db.stat().st_size == 0:
        return set()
    try:
        with _copy(db, integrity.wal_path(db)) as conn:
            return {(r[0], r[1]) for r in conn.execute("SELECT namespace, name FROM objects WHERE kind = 'Pod'")}
    except (OSError, sqlite3.DatabaseError):
        return set()


def recover(state_dir: Path, now: datetime | None = None) -> list[str]:
    """Move the database files aside and start a new database from every readable row; returns what was done."""
    db = state_dir / "state.db"
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    aside = db.with_name(f"state.db.damaged-{stamp}")
    moved: list[str] = []
    for path, target in ((db, aside), (integrity.wal_path(db), integrity.wal_path(aside)),
                         (integrity.shm_path(db), integrity.shm_path(aside))):
        if path.exists():
            path.rename(target)
            moved.append(f"{path.name} -> {target.name}")
    lines = [f"moved aside (nothing deleted): {', '.join(moved) or 'nothing (there was no database)'}"]
    found = Salvage()
    if aside.exists() and aside.stat().st_size > 0:
        try:
            with _copy(aside, integrity.wal_path(aside)) as conn:
                found = salvage(conn)
        except (OSError, sqlite3.DatabaseError) as e:
            lines.append(f"nothing could be read from {aside.name} ({e})")
    state = SqliteState(state_dir, new=True)
    try:
        top = max([found.counter, *(r[4] for r in found.rows)], default=0)
        state.db.execute("BEGIN IMMEDIATE")
        try:
            state.db.executemany(
                "INSERT OR IGNORE INTO objects (kind, namespace, name, uid, rv, body) VALUES (?, ?, ?, ?, ?, ?)",
                [(k, ns, n, str(json.loads(b)["metadata"].get("uid") or ""), rv, b) for k, ns, n, b, rv in found.rows],
            )
            state.db.execute("UPDATE counter SET rv = ? WHERE id = 1", (top,))
        except BaseException:
            state.db.execute("ROLLBACK")
            raise
        state.db.execute("COMMIT")
    finally:
        state.close()
    lines.append(f"new {db.name}: {len(found.rows)} object(s) salvaged"
                 + (f", {len(found.damaged_rows)} damaged row(s) left out" if found.damaged_rows else "")
                 + (f", unreadable: {'; '.join(found.unreadable)}" if found.unreadable else ""))
    lines.append("next: start the controller (gk serve or gk up); it re-adopts running game servers by name. "
                 "Re-apply your YAML (gk apply -f FILE) for what was lost.")
    return lines
