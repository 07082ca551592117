"""State damage (issue 12, items 6 and 7e), with a real fleet: three game servers keep running while their state
database is truncated, overwritten, stripped of a table, replaced, or loses its write-ahead log.

Each case: `gk get` and the controller (`gk serve`) either work or say what is wrong with which file and what to
do (never a traceback); a refused database is left byte for byte as it was; the running game servers stay
running, and are listed or named in a warning, never invisible.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from gamekeeper.runtime.adoption import find_supervisors
from gamekeeper.runtime.local import alive
from tests.fleet import Fleet, wait_for

pytestmark = pytest.mark.slow

PAGE = 4096
FILES = ("state.db", "state.db-wal", "state.db-shm")
NAMES = ["arena-0", "arena-1", "arena-2"]


def gss(replicas: int) -> dict[str, Any]:
    return {"apiVersion": "game.kruise.io/v1alpha1", "kind": "GameServerSet",
            "metadata": {"name": "arena", "namespace": "default"},
            "spec": {"replicas": replicas, "gameServerTemplate": {"spec": {
                "containers": [{"name": "main", "image": "test/sleep"}]}}}}


def sleeper_fleet(tmp: Path) -> Fleet:
    fleet = Fleet(tmp)
    (tmp / "img").mkdir()
    images = tmp / "images.yaml"
    images.write_text(yaml.safe_dump({"images": {"test/sleep": {"path": str(tmp / "img"),
                                                                "command": ["sleep", "3600"]}}}))
    fleet.env["GAMEKEEPER_IMAGES"] = str(images)
    return fleet


def running_ids(fleet: Fleet) -> dict[str, str]:
    """Pod name -> container ID of its supervisor, from the processes themselves (not from the store)."""
    return {key[1]: f.container_id for key, f in find_supervisors(fleet.state_dir).items()}


def wait_running(fleet: Fleet, names: list[str]) -> None:
    def ok() -> bool:
        pods = fleet.pods()
        return sorted(pods) == names and all(
            p.get("status", {}).get("phase") == "Running" and alive(
                (p["status"].get("containerStatuses") or [{}])[0].get("containerID")) for p in pods.values())
    wait_for(ok, f"pods {names} running", 60)


def digest(sd: Path) -> dict[str, str]:
    """What the files hold: an empty log and the -shm index (rebuilt from the log by SQLite) hold nothing."""
    return {n: hashlib.sha256((sd / n).read_bytes()).hexdigest() for n in FILES[:2]
            if (sd / n).exists() and (sd / n).stat().st_size > 0}


@dataclass
class Crashed:
    fleet: Fleet
    supervisors: dict[str, str]  # pod -> container ID, as started
    snapshots: Path

    def restore(self, which: str) -> None:
        sd = self.fleet.state_dir
        for name in FILES:
            (sd / name).unlink(missing_ok=True)
            if (self.snapshots / which / name).exists():
                shutil.copyfile(self.snapshots / which / name, sd / name)


@pytest.fixture(scope="module")
def crashed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Crashed]:
    """Three game servers running, their controller SIGKILLed; two copies of the database files: "crashed" as the
    kill left them (with a write-ahead log), and "whole", checkpointed into state.db alone."""
    tmp = tmp_path_factory.mktemp("damage")
    fleet = sleeper_fleet(tmp)
    fleet.start()
    try:
        fleet.apply_yaml(gss(3))
        wait_running(fleet, NAMES)
        fleet.kill_controller(signal.SIGKILL)
        supervisors = running_ids(fleet)
        assert sorted(supervisors) == NAMES
        snapshots = tmp / "snapshots"
        for which in ("crashed", "whole"):
            (snapshots / which).mkdir(parents=True)
            for name in FILES:
                if (fleet.state_dir / name).exists():
                    shutil.copyfile(fleet.state_dir / name, snapshots / which / name)
        assert (snapshots / "crashed" / "state.db-wal").exists()
        conn = sqlite3.connect(snapshots / "whole" / "state.db")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.close()  # the last connection: the log is folded into state.db and removed
        assert not (snapshots / "whole" / "state.db-wal").exists()
        yield Crashed(fleet, supervisors, snapshots)
    finally:
        fleet.stop()


# --- the damage ----------------------------------------------------------------------------------------------


def _db(sd: Path) -> Path:
    return sd / "state.db"


def _overwrite(sd: Path, offset: int, data: bytes) -> None:
    with open(_db(sd), "r+b") as f:
        f.seek(offset)
        f.write(data)


def _random(n: int) -> bytes:
    return random.Random(n).randbytes(n)


def _root_page(sd: Path, table: str) -> int:
    conn = sqlite3.connect(f"file:{_db(sd)}?mode=ro&immutable=1", uri=True)
    try:
        return int(conn.execute("SELECT rootpage FROM sqlite_master WHERE name = ?", (table,)).fetchone()[0])
    finally:
        conn.close()


def _sql(sd: Path, *statements: str) -> None:
    conn = sqlite3.connect(_db(sd), isolation_level=None)
    for statement in statements:
        conn.execute(statement)
    conn.close()


def _not_json(sd: Path, kind: str, name: str) -> None:
    """One row's body made unparseable, as a flipped byte would leave it."""
    _sql(sd, f"UPDATE objects SET body = '<' || substr(body, 2) WHERE kind = '{kind}' AND name = '{name}'")


def _replace_body(sd: Path, kind: str, name: str, body: str) -> None:
    """A body that is well-formed JSON but not an object with metadata (as a buggy writer could leave)."""
    _sql(sd, f"UPDATE objects SET body = '{body}' WHERE kind = '{kind}' AND name = '{name}'")


def _foreign(sd: Path) -> None:
    _db(sd).unlink()
    _sql(sd, "PRAGMA application_id = 1234", "CREATE TABLE notes (text TEXT)")


@dataclass(frozen=True)
class Case:
    id: str
    snapshot: str  # "whole" or "crashed"
    damage: Callable[[Path], None]
    get: str  # "refused", "ok" or "either" (SQLite meets some damage only when a query reaches the page)
    says: tuple[str, ...] = ()  # in the refusal (or, for "ok", in the warning)
    serve: str = "refused"  # "either" (a damaged page may be one no table uses), or "runs" (tested below)
    command: str = "gs"


CASES = [
    Case("truncated-to-0-bytes", "crashed", lambda sd: _db(sd).write_bytes(b""), "refused",
         ("state.db is empty (0 bytes)", "3 pod(s)", "gk state recover")),
    Case("deleted", "whole", lambda sd: _db(sd).unlink(), "refused", ("state.db is missing", "gk down")),
    Case("truncated-to-one-page", "whole", lambda sd: os.truncate(_db(sd), PAGE), "refused",
         ("state.db cannot be read", "gk state recover")),
    Case("truncated-to-half", "whole", lambda sd: os.truncate(_db(sd), _db(sd).stat().st_size // 2 // PAGE * PAGE),
         "either", ("state.db",), serve="either"),
    Case("truncated-mid-page", "whole", lambda sd: os.truncate(_db(sd), _db(sd).stat().st_size - 1000), "either",
         ("state.db",), serve="either"),
    Case("random-bytes-over-page-1", "whole", lambda sd: _overwrite(sd, 0, _random(PAGE)), "refused",
         ("state.db", "gk state check")),
    Case("random-bytes-over-the-objects-root", "whole",
         lambda sd: _overwrite(sd, (_root_page(sd, "objects") - 1) * PAGE, _random(PAGE)), "refused",
         ("state.db is damaged", "gk state recover")),
    Case("zeros-over-the-objects-root", "whole",
         lambda sd: _overwrite(sd, (_root_page(sd, "objects") - 1) * PAGE, bytes(PAGE)), "refused",
         ("state.db is damaged",)),
    Case("random-bytes-over-the-events-root", "whole",
         lambda sd: _overwrite(sd, (_root_page(sd, "events") - 1) * PAGE, _random(PAGE)), "ok"),
    Case("random-bytes-over-the-last-page", "whole",
         lambda sd: _overwrite(sd, _db(sd).stat().st_size - PAGE, _random(PAGE)), "either", ("state.db",),
         serve="either"),
    Case("objects-table-dropped", "whole", lambda sd: _sql(sd, "DROP TABLE objects"), "refused",
         ("lost its table(s) objects", "gk state recover")),
    Case("counter-table-dropped", "whole", lambda sd: _sql(sd, "DROP TABLE counter"), "refused",
         ("lost its table(s) counter",)),
    Case("from-a-newer-version", "whole", lambda sd: _sql(sd, "PRAGMA user_version = 99"), "refused",
         ("newer Gamekeeper (state format 99", "upgrade gk")),
    Case("a-foreign-sqlite-database", "whole", _foreign, "refused",
         ("not a Gamekeeper state database", "notes")),
    Case("not-sqlite-at-all", "whole", lambda sd: _db(sd).write_text("not a database\n" * 500), "refused",
         ("state.db cannot be read", "file is not a database")),
    Case("wal-deleted-after-sigkill", "crashed", lambda sd: (sd / "state.db-wal").unlink(), "refused",
         ("state.db-wal is missing", "put it back", "gk state recover")),
    Case("wal-and-shm-deleted-after-sigkill", "crashed",
         lambda sd: [(sd / n).unlink() for n in ("state.db-wal", "state.db-shm")], "either",
         ("state.db", "arena-0")),
    Case("pod-row-not-json", "whole",
         lambda sd: _not_json(sd, "Pod", "arena-1"), "ok",
         ("skipped Pod default/arena-1: its body is not JSON",), serve="runs", command="pod"),
    Case("gameserver-row-json-null", "whole", lambda sd: _replace_body(sd, "GameServer", "arena-2", "null"), "ok",
         ("skipped GameServer default/arena-2: its body is null",), serve="runs"),
    Case("pod-without-metadata", "whole",
         lambda sd: _replace_body(sd, "Pod", "arena-0", '{"kind": "Pod", "spec": {}}'), "ok",
         ("skipped Pod default/arena-0: its body has no metadata",), serve="runs", command="pod"),
    Case("pod-metadata-without-a-name", "whole",
         lambda sd: _replace_body(sd, "Pod", "arena-2", '{"kind": "Pod", "metadata": {"labels": {}}, "spec": {}}'),
         "ok", ("skipped Pod default/arena-2: its body lacks kind, metadata.name",), serve="runs", command="pod"),
    Case("gameserverset-row-a-list", "whole", lambda sd: _replace_body(sd, "GameServerSet", "arena", "[1, 2]"),
         "ok", ("skipped GameServerSet default/arena: its body is [1, 2]",), serve="runs", command="gss"),
]


def gk(fleet: Fleet, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gamekeeper", *args], capture_output=True, text=True,
                          env=fleet.env, timeout=timeout, check=False)


def serve_outcome(fleet: Fleet) -> tuple[str, str]:
    """Start `gk serve`: "refused" (it exited, with its output), or "runs" (it started; stopped again here)."""
    log = fleet.tmp / "serve.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "gamekeeper", "serve"], env=fleet.env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for(lambda: proc.poll() is not None or "controller started" in log.read_text(errors="replace"),
                 "the controller to refuse or start", 60)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    text = log.read_text(errors="replace")
    return ("runs" if "controller started" in text else "refused"), text


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_damaged_state_is_named_with_its_fix_and_nothing_recoverable_is_lost(crashed: Crashed, case: Case) -> None:
    fleet, sd = crashed.fleet, crashed.fleet.state_dir
    crashed.restore(case.snapshot)
    case.damage(sd)
    before = digest(sd)

    got = gk(fleet, "get", case.command)
    out = got.stdout + got.stderr
    assert "Traceback" not in out, out
    if case.get == "refused" or (case.get == "either" and got.returncode != 0):
        assert got.returncode == 1, out
        assert got.stderr.startswith("error: "), out
        for words in case.says:
            assert words in got.stderr, out
        assert "gk state" in got.stderr or "gk down" in got.stderr or "upgrade" in got.stderr or \
            "another --state-dir" in got.stderr, out
        assert digest(sd) == before, "a refused database must be left as it was"
    else:
        assert got.returncode == 0, out
        if case.get == "ok":
            for words in case.says:
                assert words in got.stderr, out
        # Every running game server is listed, or named in a warning.
        listed = got.stdout
        for name in NAMES:
            assert name in listed or name in got.stderr or case.command != "gs", out

    if case.serve != "runs":
        outcome, out = serve_outcome(fleet)
        assert "Traceback" not in out, out
        if case.serve == "refused" or outcome == "refused":
            assert outcome == "refused", out
            assert "error: " in out and "state.db" in out, out
            assert digest(sd) == before, "the controller must not touch a refused database"
            assert "gk state" in out or "upgrade" in out or "another --state-dir" in out

    # Whatever happened, the three game servers go on running, untouched.
    assert running_ids(fleet) == crashed.supervisors


def test_check_and_recover_keep_a_copy_and_salvage_what_reads(crashed: Crashed) -> None:
    fleet, sd = crashed.fleet, crashed.fleet.state_dir
    crashed.restore("whole")
    _not_json(sd, "Pod", "arena-1")
    damaged = _db(sd).read_bytes()
    check = gk(fleet, "state", "check")
    assert check.returncode == 1, check.stdout + check.stderr
    assert "damaged row: Pod default/arena-1" in check.stdout
    assert "3 GameServer" in check.stdout and "1 GameServerSet" in check.stdout
    assert "Traceback" not in check.stdout + check.stderr
    assert _db(sd).read_bytes() == damaged, "check reads a copy"

    recover = gk(fleet, "state", "recover")
    assert recover.returncode == 0, recover.stdout + recover.stderr
    kept = [p for p in sd.iterdir() if p.name.startswith("state.db.damaged-") and not p.name.endswith(("-wal",
                                                                                                       "-shm"))]
    assert len(kept) == 1 and kept[0].read_bytes() == damaged, "the damaged file is kept as it was"
    assert "salvaged" in recover.stdout and "1 damaged row(s) left out" in recover.stdout
    pods = json.loads(gk(fleet, "get", "pod", "-o", "json").stdout)["items"]
    assert sorted(p["metadata"]["name"] for p in pods) == ["arena-0", "arena-2"]
    got = gk(fleet, "get", "gs")
    assert got.returncode == 0 and all(n in got.stdout for n in NAMES)
    # arena-1 has no pod record any more: its running process is named, not hidden.
    assert "default/arena-1 (container main" in got.stderr
    assert gk(fleet, "state", "check").returncode == 1  # still: an untracked game server
    for p in kept[0].parent.glob("state.db.damaged-*"):
        p.unlink()
    assert running_ids(fleet) == crashed.supervisors


def test_damaged_rows_do_not_stop_the_controller_and_their_servers_are_adopted_not_doubled(
        crashed: Crashed) -> None:
    fleet, sd = crashed.fleet, crashed.fleet.state_dir
    crashed.restore("whole")
    _not_json(sd, "Pod", "arena-1")
    _replace_body(sd, "GameServer", "arena-2", "null")
    _replace_body(sd, "Pod", "arena-0", '{"kind": "Pod", "spec": {}}')
    fleet.start()
    try:
        wait_running(fleet, NAMES)
        wait_for(lambda: sorted(fleet.gameservers()) == NAMES, "three game servers listed", 30)
        # The pod records were made again, and each claimed its running game server: same processes, one each.
        assert running_ids(fleet) == crashed.supervisors
        ids = {n: p["status"]["containerStatuses"][0]["containerID"] for n, p in fleet.pods().items()}
        assert ids == crashed.supervisors
        conn = sqlite3.connect(f"file:{_db(sd)}?mode=ro", uri=True)  # the log too: the controller writes on
        kept = conn.execute("SELECT kind, name, body FROM quarantine ORDER BY id").fetchall()
        conn.close()
        assert {(k, n) for k, n, _ in kept} >= {("Pod", "arena-1"), ("Pod", "arena-0")}
        assert any(b.startswith("<") for _, _, b in kept), "the damaged body is kept, not overwritten"
    finally:
        fleet.kill_controller(signal.SIGKILL)
    log = fleet.log()
    assert "Traceback" not in log, log[-3000:]
    assert "skipped Pod default/arena-1" in log
    # Claimed from the container's own record (cid written before its game starts) or, without one, found by name.
    assert ("adopted container main of arena-1 (" in log or "re-adopted container main of default/arena-1" in log)
    assert running_ids(fleet) == crashed.supervisors


def test_wal_deleted_after_sigkill_servers_are_found_again_or_named(tmp_path: Path) -> None:
    """7e: the store's newest changes (two of three servers) are lost with the WAL; nothing runs untracked."""
    fleet = sleeper_fleet(tmp_path)
    sd = fleet.state_dir
    fleet.start()
    try:
        fleet.apply_yaml(gss(1))
        wait_running(fleet, ["arena-0"])
        conn = sqlite3.connect(_db(sd))
        # What state.db knows: one server (a checkpoint can fall short while the controller reads: again).
        wait_for(lambda: (lambda r: r[1] == r[2])(conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()),
                 "a full checkpoint", 10)
        conn.close()
        fleet.gk("scale", "gss", "arena", "--replicas", "3")
        wait_running(fleet, NAMES)
        fleet.kill_controller(signal.SIGKILL)
        started = running_ids(fleet)
        assert sorted(started) == NAMES
        (sd / "state.db-wal").unlink()

        # Told, by gk and by the controller, with the file and the fix; nothing changed.
        before = digest(sd)
        for args in (("get", "gs"), ("serve",)):
            got = gk(fleet, *args)
            assert got.returncode == 1 and "state.db-wal is missing" in got.stderr, got.stderr
            assert "Traceback" not in got.stderr
        assert digest(sd) == before

        recover = gk(fleet, "state", "recover")
        assert recover.returncode == 0, recover.stderr
        got = gk(fleet, "get", "gs")
        assert "arena-0" in got.stdout, "what the old database knew is kept"
        for name in ("arena-1", "arena-2"):
            assert f"default/{name} (container main, pid" in got.stderr, got.stderr

        # The controller (its set still says 1 replica) reports the two it has no pod for, loudly.
        fleet.start()
        wait_for(lambda: "UntrackedGameServer" in fleet.gk("events", "--type", "Warning").stdout,
                 "an UntrackedGameServer warning", 30)
        events = fleet.gk("events", "--type", "Warning").stdout
        assert "pod/arena-1" in events and "pod/arena-2" in events
        assert running_ids(fleet) == started, "nothing is killed or doubled"

        # Applying the set again re-adopts them by name: the same processes, one per pod, no warning left.
        fleet.apply_yaml(gss(3))
        wait_running(fleet, NAMES)
        assert running_ids(fleet) == started
        ids = {n: p["status"]["containerStatuses"][0]["containerID"] for n, p in fleet.pods().items()}
        assert ids == started
        got = gk(fleet, "get", "gs")
        assert "warning" not in got.stderr and all(n in got.stdout for n in NAMES)
        check = gk(fleet, "state", "check")  # a live fleet, its controller writing: sound
        assert check.returncode == 0 and "running game server containers: 3" in check.stdout, check.stdout
    finally:
        fleet.stop()
    assert "Traceback" not in fleet.log()


def test_gk_down_stops_every_game_server_of_a_damaged_database_and_leaves_the_file(tmp_path: Path) -> None:
    fleet = sleeper_fleet(tmp_path)
    sd = fleet.state_dir
    fleet.start()
    try:
        fleet.apply_yaml(gss(2))
        wait_running(fleet, NAMES[:2])
    finally:
        fleet.kill_controller(signal.SIGKILL)
    started = running_ids(fleet)
    assert len(started) == 2
    conn = sqlite3.connect(_db(sd))
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    _overwrite(sd, (_root_page(sd, "objects") - 1) * PAGE, _random(PAGE))  # opens; any listing fails
    damaged = _db(sd).read_bytes()
    try:
        down = gk(fleet, "down")
        assert down.returncode == 0 and "Traceback" not in down.stdout + down.stderr, down.stdout + down.stderr
        assert "state.db is damaged" in down.stderr and "left as it is" in down.stdout
        assert not any(alive(cid) for cid in started.values()) and not (sd / "pods").exists()
        assert _db(sd).read_bytes() == damaged
    finally:
        for cid in started.values():  # should down fail, the test leaves nothing running either
            if alive(cid):
                os.killpg(int(cid.removeprefix("local://").split("-")[0]), signal.SIGKILL)


# --- the format stamp, without processes --------------------------------------------------------------------


def test_a_new_state_directory_is_stamped_and_one_without_pods_starts_afresh(tmp_path: Path) -> None:
    from gamekeeper.store.integrity import APPLICATION_ID, STATE_FORMAT
    from gamekeeper.store.sqlite import SqliteState

    state = SqliteState(tmp_path)
    assert state.db.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
    assert state.db.execute("PRAGMA user_version").fetchone()[0] == STATE_FORMAT
    state.close()
    # Nothing ran here (no pod directories): a deleted database is simply made again.
    for name in FILES:
        (tmp_path / name).unlink(missing_ok=True)
    (tmp_path / "pods" / "default").mkdir(parents=True)
    SqliteState(tmp_path).close()


def test_a_state_database_of_an_earlier_gk_is_adopted_and_stamped(tmp_path: Path) -> None:
    from gamekeeper.store.integrity import APPLICATION_ID
    from gamekeeper.store.sqlite import OWNER_EXPR, SqliteState

    state = SqliteState(tmp_path)
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {
        "name": "a-0", "namespace": "default", "labels": {"game.kruise.io/owner-gss": "a"}}, "spec": {}}
    state.create(pod)
    # As an earlier gk left it: no stamp, and the set index without its guard for damaged rows.
    state.db.execute("PRAGMA application_id = 0")
    state.db.execute("PRAGMA user_version = 0")
    state.db.execute("DROP INDEX objects_owner")
    state.db.execute("CREATE INDEX objects_owner ON objects (kind, namespace, "
                     "json_extract(body, '$.metadata.labels.\"game.kruise.io/owner-gss\"'), name)")
    state.close()
    again = SqliteState(tmp_path)
    assert again.db.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
    (sql,) = again.db.execute("SELECT sql FROM sqlite_master WHERE name = 'objects_owner'").fetchone()
    assert "json_valid" in sql
    assert [p["metadata"]["name"] for p in again.list("Pod", "default", {"game.kruise.io/owner-gss": "a"})] == ["a-0"]
    plan = again.db.execute(f"EXPLAIN QUERY PLAN SELECT body FROM objects WHERE kind = 'Pod' AND namespace = "
                            f"'default' AND {OWNER_EXPR} = 'a'").fetchall()
    assert any("objects_owner" in str(row) for row in plan), plan


def test_a_damaged_row_can_be_replaced_and_deleted_and_is_kept_in_quarantine(tmp_path: Path) -> None:
    from gamekeeper.ports.store import NotFound
    from gamekeeper.store.sqlite import SqliteState

    state = SqliteState(tmp_path)
    for name in ("a-0", "a-1"):
        state.create({"apiVersion": "v1", "kind": "Pod", "metadata": {
            "name": name, "namespace": "default", "labels": {"game.kruise.io/owner-gss": "a"}}, "spec": {}})
    state.db.execute("UPDATE objects SET body = '<' || substr(body, 2) WHERE name = 'a-1'")
    assert [p["metadata"]["name"] for p in state.list("Pod", "default", {"game.kruise.io/owner-gss": "a"})] == ["a-0"]
    assert state.get("Pod", "default", "a-1") is None
    with pytest.raises(NotFound):
        state.patch("Pod", "default", "a-1", {"spec": {"x": 1}})
    state.create({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "a-1", "namespace": "default"}, "spec": {}})
    assert state.get("Pod", "default", "a-1") is not None
    (kept,) = state.db.execute("SELECT body FROM quarantine WHERE name = 'a-1'").fetchone()
    assert kept.startswith("<")
    state.delete("Pod", "default", "a-1")
    assert state.get("Pod", "default", "a-1") is None


def test_recover_salvages_every_row_but_those_of_a_page_overwritten_with_random_bytes(tmp_path: Path) -> None:
    from gamekeeper.store.repair import recover
    from gamekeeper.store.sqlite import SqliteState

    state = SqliteState(tmp_path)
    for i in range(300):
        state.create({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"p-{i}", "namespace": "default"},
                      "spec": {"containers": [{"name": "main", "image": "x" * 200}]}})
    state.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    leaves = state.db.execute("SELECT pageno, ncell FROM dbstat WHERE name = 'objects' AND pagetype = 'leaf' "
                              "ORDER BY pageno").fetchall()
    state.close()
    assert len(leaves) > 3
    page, cells = leaves[len(leaves) // 2]
    _overwrite(tmp_path, (page - 1) * PAGE, _random(PAGE))
    damaged = _db(tmp_path).read_bytes()

    lines = recover(tmp_path)
    assert any("unreadable" in line for line in lines), lines
    (aside,) = tmp_path.glob("state.db.damaged-*[0-9Z]")
    assert aside.read_bytes() == damaged
    again = SqliteState(tmp_path, check=True)
    names = {p["metadata"]["name"] for p in again.list("Pod")}
    assert len(names) == 300 - cells, (len(names), cells)
    again.create({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "after", "namespace": "default"},
                  "spec": {}})  # the new database takes writes, its resourceVersions going on from the old ones
    assert int(again.get("Pod", "default", "after")["metadata"]["resourceVersion"]) > 300
