"""The embedded store: SQLite in WAL mode under the state directory.

One global, monotonically increasing resourceVersion; every write runs in a `BEGIN IMMEDIATE` transaction,
so two `gk` processes racing are serialised by SQLite and a stale resourceVersion is refused (Conflict)
instead of overwriting. Watchers are woken without polling: each watcher binds a Unix datagram socket in
`<state>/watch/`, and every committed write sends one byte to each of them; the watcher then reads the
`changes` table from where it left off.
"""

from __future__ import annotations

import builtins
import contextlib
import copy
import json
import logging
import os
import socket
import sqlite3
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gamekeeper.api.keys import OWNER_GSS_KEY
from gamekeeper.api.times import format_time
from gamekeeper.ports.store import (
    IDENTITY_PATHS,
    AlreadyExists,
    Change,
    Conflict,
    EventRecord,
    NotFound,
    Obj,
    StoreDamaged,
    kept,
    project,
    split_path,
)
from gamekeeper.store import integrity

log = logging.getLogger("gamekeeper.store")

# The set an object belongs to, indexed: a set's controllers list its pods on every reconcile, and without the
# index each listing parsed every pod of the namespace, the other sets' included. A query uses the index only
# when it spells the expression exactly so. A body that is not JSON (a damaged row) indexes as NULL: json_extract
# alone would raise, and then the row could be neither replaced nor deleted.
OWNER_EXPR = f"""CASE WHEN json_valid(body) THEN json_extract(body, '$.metadata.labels."{OWNER_GSS_KEY}"') END"""

SCHEMA = f"""
CREATE TABLE IF NOT EXISTS objects (
    kind TEXT NOT NULL, namespace TEXT NOT NULL, name TEXT NOT NULL,
    uid TEXT NOT NULL, rv INTEGER NOT NULL, body TEXT NOT NULL,
    PRIMARY KEY (kind, namespace, name)
);
CREATE TABLE IF NOT EXISTS changes (
    rv INTEGER PRIMARY KEY, kind TEXT NOT NULL, namespace TEXT NOT NULL, name TEXT NOT NULL, type TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT, rv INTEGER NOT NULL,
    namespace TEXT NOT NULL, kind TEXT NOT NULL, name TEXT NOT NULL, uid TEXT NOT NULL,
    type TEXT NOT NULL, reason TEXT NOT NULL, message TEXT NOT NULL, count INTEGER NOT NULL,
    first_ts TEXT NOT NULL, last_ts TEXT NOT NULL, source TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_object ON events (namespace, kind, name);
CREATE INDEX IF NOT EXISTS objects_owner ON objects (kind, namespace, {OWNER_EXPR}, name);
CREATE TABLE IF NOT EXISTS counter (id INTEGER PRIMARY KEY CHECK (id = 1), rv INTEGER NOT NULL);
INSERT OR IGNORE INTO counter (id, rv) VALUES (1, 0);
CREATE TABLE IF NOT EXISTS quarantine (
    id INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL, namespace TEXT NOT NULL, name TEXT NOT NULL,
    body TEXT NOT NULL, moved TEXT NOT NULL
);
"""

CHANGES_KEPT = 50_000
EVENTS_KEPT = 5_000
STATUS_KINDS = {"GameServerSet", "GameServer", "Pod", "Workload"}


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, Mapping):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, Mapping) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def _now() -> str:
    return format_time(datetime.now(UTC))


_PROJECTION_CHUNK = 500


def _shared(value: Any, memo: dict[str, str]) -> Any:
    """`value` with every string in it replaced by the one equal string already in `memo` (in place)."""
    if isinstance(value, str):
        return memo.setdefault(value, value)
    if isinstance(value, dict):
        for key, item in value.items():
            value[key] = _shared(item, memo)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            value[index] = _shared(item, memo)
    return value


def _sound(obj: Any) -> bool:
    """Enough of an object for every reader: its kind, and metadata with a name and a namespace (the rest is each
    reader's own to check)."""
    if type(obj) is not dict or type(obj.get("kind")) is not str:
        return False
    meta = obj.get("metadata")
    return type(meta) is dict and type(meta.get("name")) is str and type(meta.get("namespace")) is str


def _unsound(obj: Any) -> str:
    """What `_sound` found missing, for the warning."""
    if type(obj) is not dict:
        return f"its body is {json.dumps(obj)[:20]}"
    if type(obj.get("metadata")) is not dict:
        return "its body has no metadata"
    return "its body lacks kind, metadata.name or metadata.namespace"


def _use_wal(db: sqlite3.Connection, wait: float = 30.0) -> None:
    """Switch a new database to WAL. The switch takes an exclusive lock and SQLite answers "database is locked" at
    once, without the busy handler, when another process opens the same new file at that moment (a controller
    starting beside `gk apply`): retried here. An existing database is WAL already, and reading the mode locks
    nothing."""
    deadline = time.monotonic() + wait
    while True:
        try:
            if str(db.execute("PRAGMA journal_mode").fetchone()[0]).lower() != "wal":
                db.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) or time.monotonic() > deadline:
                raise
            time.sleep(0.02)


class SqliteState:
    """Synchronous access to one state directory (used by the CLI directly, and by SqliteStore).

    Opening refuses a damaged, foreign or newer database with `integrity.StateDamaged` (`check=True` also reads
    every page, as the controller does once at start). A damaged row is skipped with a warning naming it.
    """

    # The database opened last in this process, for naming it in an error that SQLite raises later.
    opened: Path | None = None

    def __init__(self, state_dir: Path, clock: Any = None, check: bool = False, new: bool = False) -> None:
        self.state_dir = Path(state_dir)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.watch_dir = self.state_dir / "watch"
        self.watch_dir.mkdir(exist_ok=True)
        self.path = self.state_dir / "state.db"
        self._clock = clock or _now
        self.writes = 0
        self._dirty = False
        self._sender: socket.socket | None = None
        self._watch_list: builtins.list[str] = []
        self._watch_seen: int | None = None  # the watch directory's mtime when _watch_list was (safely) taken
        self._warned: set[tuple[str, str, str]] = set()
        SqliteState.opened = self.path
        new = integrity.check_before_open(self.state_dir, self.path, new)
        self.db = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
        try:
            self.db.execute("PRAGMA busy_timeout=30000")
            unstamped = integrity.check_header(self.db, self.path, new)
            if check:
                integrity.quick_check(self.db, self.path)
            _use_wal(self.db)
            self.db.execute("PRAGMA synchronous=NORMAL")
            old_index = self.db.execute("SELECT sql FROM sqlite_master WHERE name = 'objects_owner'").fetchone()
            if old_index is not None and "json_valid" not in old_index[0]:
                self.db.execute("DROP INDEX objects_owner")  # made by an earlier gk; made again below
            self.db.executescript(SCHEMA)
            if unstamped:
                integrity.stamp(self.db)
        except BaseException:
            self.db.close()
            raise

    def close(self) -> None:
        self.db.close()
        if self._sender is not None:
            self._sender.close()
            self._sender = None

    # -- transactions and notification -----------------------------------------------------------------

    @contextlib.contextmanager
    def _tx(self) -> Iterator[None]:
        self.db.execute("BEGIN IMMEDIATE")
        self._dirty = False
        try:
            yield
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")
        if self._dirty:
            self.writes += 1
            self.notify()

    def notify(self) -> None:
        """Wake every watcher (best effort; a dead watcher's socket is removed)."""
        targets = self._watchers()
        if not targets:
            return
        if self._sender is None:
            self._sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            self._sender.setblocking(False)
        for path in targets:
            try:
                self._sender.sendto(b"!", path)
            except (ConnectionRefusedError, FileNotFoundError):
                with contextlib.suppress(OSError):
                    os.unlink(path)
                self._watch_seen = None
            except (BlockingIOError, OSError):
                # A full queue means the watcher already has a wake-up pending.
                pass

    def _watchers(self) -> builtins.list[str]:
        """The watchers' sockets, listed again only when the watch directory has changed since the last listing.

        A listing is trusted only if it was made more than 50 ms after the directory's last change: directory
        times are coarse (a few ms), so a socket bound right after a listing could leave the time unchanged.
        """
        try:
            changed = os.stat(self.watch_dir).st_mtime_ns
        except FileNotFoundError:
            return []
        if changed != self._watch_seen:
            try:
                self._watch_list = [entry.path for entry in os.scandir(self.watch_dir)]
            except FileNotFoundError:
                return []
            settled = time.time_ns() - changed > 50_000_000
            self._watch_seen = changed if settled else None
        return self._watch_list

    def _next_rv(self, kind: str, namespace: str, name: str, change: str) -> int:
        self._dirty = True
        (rv,) = self.db.execute("UPDATE counter SET rv = rv + 1 WHERE id = 1 RETURNING rv").fetchone()
        self.db.execute(
            "INSERT INTO changes (rv, kind, namespace, name, type) VALUES (?, ?, ?, ?, ?)",
            (rv, kind, namespace, name, change),
        )
        if rv % 1000 == 0:
            self.db.execute("DELETE FROM changes WHERE rv <= ?", (rv - CHANGES_KEPT,))
        return int(rv)

    # -- reads -------------------------------------------------------------------------------------------

    def get(self, kind: str, namespace: str, name: str) -> Obj | None:
        row = self.db.execute(
            "SELECT body FROM objects WHERE kind = ? AND namespace = ? AND name = ?", (kind, namespace, name)
        ).fetchone()
        return self._parse(kind, namespace, name, row[0]) if row else None

    def _parse(self, kind: str, namespace: str, name: str, body: str) -> Obj | None:
        """A stored body, or None (with one warning naming the row) when it is not a whole object."""
        try:
            obj = json.loads(body)
        except ValueError as e:
            problem = f"its body is not JSON ({e})"
        else:
            if _sound(obj):
                return obj  # type: ignore[no-any-return]
            problem = _unsound(obj)
        if (kind, namespace, name) not in self._warned:
            self._warned.add((kind, namespace, name))
            log.warning(
                "%s: skipped %s %s/%s: %s; it is treated as absent (a new write of it keeps the old body in the "
                "quarantine table; `gk state check` lists such rows)", self.path, kind, namespace, name, problem,
            )
        return None

    def _parse_rows(self, where: str, args: builtins.list[Any], order: str) -> builtins.list[Obj]:
        rows = self.db.execute(
            f"SELECT kind, namespace, name, body FROM objects WHERE {where} ORDER BY {order}", args
        ).fetchall()
        return [o for o in (self._parse(*r) for r in rows) if o is not None]

    @staticmethod
    def _filter(
        kind: str, namespace: str | None, labels: Mapping[str, str] | None
    ) -> tuple[str, builtins.list[Any], str, dict[str, str]]:
        """WHERE clause, its arguments and ORDER BY of a listing; the labels left to filter on besides the owner."""
        where, args = "kind = ?", [kind]
        if namespace is not None:
            where += " AND namespace = ?"
            args.append(namespace)
        rest = dict(labels or {})
        owner = rest.pop(OWNER_GSS_KEY, None)
        if owner is not None:
            where += f" AND {OWNER_EXPR} = ?"
            args.append(owner)
        return where, args, "name" if namespace is not None else "namespace, name", rest

    def list(
        self, kind: str, namespace: str | None = None, labels: Mapping[str, str] | None = None
    ) -> builtins.list[Obj]:
        where, args, order, labels = self._filter(kind, namespace, labels)
        rows = self.db.execute(f"SELECT body FROM objects WHERE {where} ORDER BY {order}", args).fetchall()
        # One parse for all rows: the parser then shares each key string among all the objects (less memory and
        # time than parsing the bodies one by one). A damaged row sends the listing the slow way, row by row.
        try:
            out: builtins.list[Obj] = json.loads("[" + ",".join(r[0] for r in rows) + "]")
        except ValueError:
            out = []
        if len(out) != len(rows) or not all(_sound(o) for o in out):
            out = self._parse_rows(where, args, order)
        if labels:
            out = [
                o for o in out
                if all((o["metadata"].get("labels") or {}).get(k) == v for k, v in labels.items())
            ]
        return out

    def list_projected(
        self,
        kind: str,
        paths: Sequence[str],
        namespace: str | None = None,
        labels: Mapping[str, str] | None = None,
    ) -> builtins.list[Obj]:
        """`list` reduced to `project(obj, paths)`, cut out by SQLite: no whole body reaches Python.

        Each row comes back as one JSON text `[[v1],[],[v3],...]`, one element per path (`[v]` when the path is
        there, `[]` when not, so a stored null stays distinct from a missing field), and the rows of the listing
        are parsed by one `json.loads`, as `list` does. The other labels are filtered in SQL too. A row that is not
        a sound object (see `_sound`) yields NULL and goes through `get`: the same one warning, and skipped."""
        where, args, order, rest = self._filter(kind, namespace, labels)
        for key, value in rest.items():
            # A damaged body passes here and is judged (and warned about) below, as `list` does.
            where += " AND CASE WHEN json_valid(body) THEN json_extract(body, ?) = ? ELSE 1 END"
            args += [f'$.metadata.labels."{key}"', value]
        all_paths = (*IDENTITY_PATHS, *paths)
        filters = [split_path(path) for path in all_paths]
        split = [keys for keys, _ in filters]
        keeps = [keep for _, keep in filters]
        cells = " || ',' || ".join(
            "coalesce('[' || (body -> ?) || ']', '[]')" for _ in all_paths
        )
        json_paths = ["$." + ".".join(f'"{key}"' for key in keys) for keys in split]
        sound = (
            "json_type(body) = 'object' AND json_type(body, '$.kind') = 'text'"
            " AND json_type(body, '$.metadata') = 'object' AND json_type(body, '$.metadata.name') = 'text'"
            " AND json_type(body, '$.metadata.namespace') = 'text'"
        )
        # Nested CASEs: SQLite evaluates a CASE branch only when taken, and json_type raises on a body that is not
        # JSON at all.
        cursor = self.db.execute(
            f"SELECT namespace, name, CASE WHEN json_valid(body) THEN CASE WHEN {sound} THEN '[' || {cells} || ']'"
            f" END END FROM objects WHERE {where} ORDER BY {order}",
            [*json_paths, *args],
        )
        out: builtins.list[Obj] = []
        # Values repeated across the listing (label values, condition types and statuses, timestamps of the same
        # second, the namespace) become one string each: a set's projection is held for a whole reconcile.
        memo: dict[str, str] = {}
        # Parsed in chunks: the rows' texts and the parser's output of one chunk at a time, not of the whole
        # listing, next to the result (the peak of a 10,000-pod listing set the controller's resident size).
        while rows := cursor.fetchmany(_PROJECTION_CHUNK):
            parsed: builtins.list[Any] = json.loads("[" + ",".join(r[2] for r in rows if r[2] is not None) + "]")
            found = iter(parsed)
            for ns, name, text in rows:
                if text is None:
                    obj = self.get(kind, ns, name)  # warns once, and gives None, for a damaged row
                    if obj is not None and all(
                        (obj["metadata"].get("labels") or {}).get(k) == v for k, v in rest.items()
                    ):
                        out.append(project(obj, paths))
                    continue
                projected: Obj = {}
                for keys, keep, cell in zip(split, keeps, next(found), strict=True):
                    if cell:
                        dst = projected
                        for key in keys[:-1]:
                            dst = dst.setdefault(key, {})
                        dst[keys[-1]] = _shared(cell[0] if keep is None else kept(cell[0], keep), memo)
                out.append(projected)
            del parsed, found, rows
        return out

    def keys(self, kind: str) -> set[tuple[str, str]]:
        """(namespace, name) of every stored object of a kind, damaged rows included (without parsing bodies)."""
        rows = self.db.execute("SELECT namespace, name FROM objects WHERE kind = ?", (kind,))
        return {(r[0], r[1]) for r in rows}

    def current_rv(self) -> int:
        return int(self.db.execute("SELECT rv FROM counter WHERE id = 1").fetchone()[0])

    def changes_since(self, rv: int) -> tuple[builtins.list[Change], bool]:
        """Changes after rv, and whether some were already pruned (the caller must re-list)."""
        rows = self.db.execute(
            "SELECT rv, kind, namespace, name, type FROM changes WHERE rv > ? ORDER BY rv", (rv,)
        ).fetchall()
        oldest = self.db.execute("SELECT MIN(rv) FROM changes").fetchone()[0]
        expired = oldest is not None and rv + 1 < oldest and rv != 0
        return [Change(*r) for r in rows], expired

    # -- writes ------------------------------------------------------------------------------------------

    def _stored(self, kind: str, namespace: str, name: str) -> Obj | None:
        return self.get(kind, namespace, name)

    def _quarantine(self, kind: str, namespace: str, name: str) -> None:
        """Keep a damaged row's body before a new object takes its place (it may still be read by hand)."""
        self.db.execute(
            "INSERT INTO quarantine (kind, namespace, name, body, moved) SELECT kind, namespace, name, body, ?"
            " FROM objects WHERE kind = ? AND namespace = ? AND name = ?", (self._clock(), kind, namespace, name),
        )

    def _write(self, obj: Obj, change: str) -> Obj:
        meta = obj["metadata"]
        rv = self._next_rv(obj["kind"], meta["namespace"], meta["name"], change)
        meta["resourceVersion"] = str(rv)
        self.db.execute(
            "INSERT OR REPLACE INTO objects (kind, namespace, name, uid, rv, body) VALUES (?, ?, ?, ?, ?, ?)",
            (obj["kind"], meta["namespace"], meta["name"], meta["uid"], rv, json.dumps(obj, sort_keys=True)),
        )
        return obj

    def create(self, obj: Obj) -> Obj:
        obj = copy.deepcopy(obj)
        meta = obj.setdefault("metadata", {})
        meta.setdefault("namespace", "default")
        with self._tx():
            if self._stored(obj["kind"], meta["namespace"], meta["name"]) is not None:
                raise AlreadyExists(f'{obj["kind"]} "{meta["name"]}" already exists')
            self._quarantine(obj["kind"], meta["namespace"], meta["name"])
            meta["uid"] = str(uuid.uuid4())
            meta["generation"] = 1
            meta["creationTimestamp"] = self._clock()
            for key in ("resourceVersion", "deletionTimestamp"):
                meta.pop(key, None)
            return self._write(obj, "ADDED")

    def replace(self, obj: Obj) -> Obj:
        obj = copy.deepcopy(obj)
        meta = obj["metadata"]
        with self._tx():
            old = self._stored(obj["kind"], meta["namespace"], meta["name"])
            if old is None:
                raise NotFound(f'{obj["kind"]} "{meta["name"]}" not found')
            if meta.get("resourceVersion") != old["metadata"]["resourceVersion"]:
                raise Conflict(
                    f'{obj["kind"]} "{meta["name"]}" was modified (resourceVersion '
                    f'{meta.get("resourceVersion")} is stale; now {old["metadata"]["resourceVersion"]})'
                )
            return self._finish_update(old, obj, keep_status=obj["kind"] in STATUS_KINDS)

    def patch(
        self,
        kind: str,
        namespace: str,
        name: str,
        patch: Mapping[str, Any],
        resource_version: str | None = None,
        subresource: str | None = None,
    ) -> Obj:
        with self._tx():
            old = self._stored(kind, namespace, name)
            if old is None:
                raise NotFound(f'{kind} "{name}" not found')
            expected = resource_version or (patch.get("metadata") or {}).get("resourceVersion")
            if expected is not None and expected != old["metadata"]["resourceVersion"]:
                raise Conflict(
                    f'{kind} "{name}" was modified (resourceVersion {expected} is stale; '
                    f'now {old["metadata"]["resourceVersion"]})'
                )
            if subresource == "status":
                new = copy.deepcopy(old)
                new["status"] = merge_patch(old.get("status") or {}, patch.get("status") or {})
                if new["status"] == (old.get("status") or {}):
                    return old
                return self._write(new, "MODIFIED")
            new = merge_patch(old, patch)
            new["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"]
            return self._finish_update(old, new, keep_status=kind in STATUS_KINDS)

    def _finish_update(self, old: Obj, new: Obj, keep_status: bool) -> Obj:
        meta, old_meta = new["metadata"], old["metadata"]
        for key in ("uid", "creationTimestamp", "namespace", "name"):
            meta[key] = old_meta[key]
        if old_meta.get("deletionTimestamp"):
            meta["deletionTimestamp"] = old_meta["deletionTimestamp"]
        else:
            meta.pop("deletionTimestamp", None)
        if keep_status:
            if "status" in old:
                new["status"] = old["status"]
            else:
                new.pop("status", None)
        meta["generation"] = old_meta.get("generation", 1) + (1 if new.get("spec") != old.get("spec") else 0)
        if new == old:
            return old
        if meta.get("deletionTimestamp") and not meta.get("finalizers"):
            self._remove(new)
            return new
        return self._write(new, "MODIFIED")

    def delete(self, kind: str, namespace: str, name: str, resource_version: str | None = None) -> None:
        with self._tx():
            old = self._stored(kind, namespace, name)
            if old is None:
                raise NotFound(f'{kind} "{name}" not found')
            if resource_version is not None and resource_version != old["metadata"]["resourceVersion"]:
                raise Conflict(f'{kind} "{name}" was modified')
            self._delete(old)

    def _delete(self, obj: Obj) -> None:
        meta = obj["metadata"]
        if meta.get("finalizers"):
            if not meta.get("deletionTimestamp"):
                meta["deletionTimestamp"] = self._clock()
                self._write(obj, "MODIFIED")
            return
        self._remove(obj)

    def _remove(self, obj: Obj) -> None:
        meta = obj["metadata"]
        self.db.execute(
            "DELETE FROM objects WHERE kind = ? AND namespace = ? AND name = ?",
            (obj["kind"], meta["namespace"], meta["name"]),
        )
        self._next_rv(obj["kind"], meta["namespace"], meta["name"], "DELETED")
        # Garbage collection: dependents go with their owner (foreground order does not matter here).
        uid = meta["uid"]
        rows = self.db.execute(
            "SELECT body FROM objects WHERE namespace = ? AND body LIKE ?", (meta["namespace"], f"%{uid}%")
        ).fetchall()
        for (body,) in rows:
            try:
                dependent = json.loads(body)
            except ValueError:
                continue  # a damaged row: left for `gk state check`, never collected blind
            if not _sound(dependent):
                continue
            owners = dependent["metadata"].get("ownerReferences") or []
            if any(type(o) is dict and o.get("uid") == uid for o in owners):
                self._delete(dependent)

    # -- events -------------------------------------------------------------------------------------------

    def record_event(
        self, involved: Obj, type: str, reason: str, message: str, source: str = "gamekeeper"
    ) -> None:
        """Store an Event; a repeat of the same one (object, type, reason, message) bumps its count."""
        meta = involved["metadata"]
        now = self._clock()
        key = (meta.get("namespace", "default"), involved["kind"], meta["name"])
        with self._tx():
            row = self.db.execute(
                "SELECT id FROM events WHERE namespace = ? AND kind = ? AND name = ? AND type = ? AND reason = ?"
                " AND message = ? AND uid = ? ORDER BY id DESC LIMIT 1",
                (*key, type, reason, message, meta.get("uid", "")),
            ).fetchone()
            rv = self._next_rv("Event", key[0], key[2], "ADDED")
            if row:
                self.db.execute(
                    "UPDATE events SET count = count + 1, last_ts = ?, rv = ? WHERE id = ?", (now, rv, row[0])
                )
            else:
                self.db.execute(
                    "INSERT INTO events (rv, namespace, kind, name, uid, type, reason, message, count, first_ts,"
                    " last_ts, source) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 1, ?, ?, ?)",
                    (rv, *key, meta.get("uid", ""), type, reason, message, now, now, source),
                )
                if rv % 500 == 0:
                    self.db.execute(
                        "DELETE FROM events WHERE id <= (SELECT MAX(id) FROM events) - ?", (EVENTS_KEPT,)
                    )

    def list_events(
        self, namespace: str | None = None, kind: str | None = None, name: str | None = None, since_rv: int = 0
    ) -> builtins.list[EventRecord]:
        sql = (
            "SELECT namespace, kind, name, type, reason, message, count, first_ts, last_ts, source, rv"
            " FROM events WHERE rv > ?"
        )
        args: builtins.list[Any] = [since_rv]
        for column, value in (("namespace", namespace), ("kind", kind), ("name", name)):
            if value is not None:
                sql += f" AND {column} = ?"
                args.append(value)
        rows = self.db.execute(sql + " ORDER BY rv", args).fetchall()
        return [EventRecord(*r) for r in rows]


class Waker:
    """A Unix datagram socket in the watch directory; `wait()` returns when a write happened (or on timeout)."""

    def __init__(self, watch_dir: Path) -> None:
        self.path = watch_dir / f"{os.getpid()}-{uuid.uuid4().hex[:8]}.sock"
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(self.path))
        self.sock.setblocking(False)

    async def wait(self, timeout: float) -> None:
        # A reader callback and a timer on one future: no task per wait (asyncio.wait_for wraps sock_recv in one),
        # and a cancellation always arrives (Python 3.11's wait_for can swallow one that races with the
        # result, and the watching task then never stops).
        import asyncio  # here: only code already running an event loop waits, and `gk get` never loads asyncio

        loop = asyncio.get_running_loop()
        ready = loop.create_future()

        def wake() -> None:
            if not ready.done():
                ready.set_result(None)

        fd = self.sock.fileno()
        loop.add_reader(fd, wake)
        timer = loop.call_later(timeout, wake)
        try:
            await ready
        finally:
            timer.cancel()
            loop.remove_reader(fd)
        # Drain: many writes collapse into one wake-up.
        with contextlib.suppress(BlockingIOError, InterruptedError):
            while True:
                self.sock.recv(64)

    def wait_blocking(self, timeout: float) -> None:
        self.sock.settimeout(timeout)
        with contextlib.suppress(TimeoutError, BlockingIOError):
            self.sock.recv(64)
        self.sock.setblocking(False)
        with contextlib.suppress(BlockingIOError, InterruptedError):
            while True:
                self.sock.recv(64)

    def close(self) -> None:
        self.sock.close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


class SqliteStore:
    """The Store port over SqliteState (async facade; SQLite calls are short and run inline)."""

    def __init__(self, state: SqliteState, resync_seconds: float = 30.0) -> None:
        self.state = state
        self.resync_seconds = resync_seconds

    @contextlib.contextmanager
    def _named(self) -> Iterator[None]:
        """A damaged page met by a request becomes StoreDamaged, naming the file and the fix (the CLI says the same
        for its own queries). Only SQLite's plain DatabaseError ("database disk image is malformed", "file is not a
        database"): a busy database (OperationalError) is transient, and the other subclasses are bugs."""
        try:
            yield
        except sqlite3.DatabaseError as e:
            if type(e) is not sqlite3.DatabaseError:
                raise
            raise StoreDamaged(f"{self.state.path} is damaged ({e}). {integrity.FIX}") from e

    async def get(self, kind: str, namespace: str, name: str) -> Obj | None:
        with self._named():
            return self.state.get(kind, namespace, name)

    async def list(
        self, kind: str, namespace: str | None = None, labels: Mapping[str, str] | None = None
    ) -> builtins.list[Obj]:
        with self._named():
            return self.state.list(kind, namespace, labels)

    async def list_projected(
        self,
        kind: str,
        paths: Sequence[str],
        namespace: str | None = None,
        labels: Mapping[str, str] | None = None,
    ) -> builtins.list[Obj]:
        with self._named():
            return self.state.list_projected(kind, paths, namespace, labels)

    async def create(self, obj: Obj) -> Obj:
        with self._named():
            return self.state.create(obj)

    async def replace(self, obj: Obj) -> Obj:
        with self._named():
            return self.state.replace(obj)

    async def patch(
        self,
        kind: str,
        namespace: str,
        name: str,
        patch: Mapping[str, Any],
        resource_version: str | None = None,
        subresource: str | None = None,
    ) -> Obj:
        with self._named():
            return self.state.patch(kind, namespace, name, patch, resource_version, subresource)

    async def delete(self, kind: str, namespace: str, name: str, resource_version: str | None = None) -> None:
        with self._named():
            self.state.delete(kind, namespace, name, resource_version)

    async def record_event(
        self, involved: Obj, type: str, reason: str, message: str, source: str = "gamekeeper"
    ) -> None:
        with self._named():
            self.state.record_event(involved, type, reason, message, source)

    async def list_events(
        self, namespace: str | None = None, kind: str | None = None, name: str | None = None
    ) -> builtins.list[EventRecord]:
        with self._named():
            return self.state.list_events(namespace, kind, name)

    def watch(self, kinds: set[str] | None = None) -> AsyncIterator[Change]:
        """Changes from the moment of the call (not of the first iteration: a consumer that lists after
        subscribing misses nothing in between). A Change of type RESYNC asks the consumer to re-list everything."""
        waker = Waker(self.state.watch_dir)
        try:
            last = self.state.current_rv()
        except BaseException:
            waker.close()
            raise
        return self._watch(waker, last, kinds)

    async def _watch(self, waker: Waker, last: int, kinds: set[str] | None) -> AsyncIterator[Change]:
        try:
            while True:
                await waker.wait(self.resync_seconds)
                changes, expired = self.state.changes_since(last)
                if expired:
                    yield Change(last, "*", "", "", "RESYNC")
                for change in changes:
                    last = change.resource_version
                    if kinds is None or change.kind in kinds:
                        yield change
                if not changes:
                    yield Change(last, "*", "", "", "TICK")
        finally:
            waker.close()
