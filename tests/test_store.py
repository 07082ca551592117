"""The SQLite store: resourceVersions, compare-and-swap, no lost updates across processes, watch wake-ups."""

from __future__ import annotations

import asyncio
import multiprocessing
import time
from pathlib import Path
from typing import Any

import pytest

from gamekeeper.ports.store import AlreadyExists, Conflict, NotFound
from gamekeeper.store.sqlite import OWNER_EXPR, SqliteState, SqliteStore, merge_patch


def gss(name: str = "a") -> dict[str, Any]:
    return {
        "apiVersion": "game.kruise.io/v1alpha1",
        "kind": "GameServerSet",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"replicas": 1, "gameServerTemplate": {"spec": {"containers": [{"name": "c", "image": "i"}]}}},
    }


def test_create_sets_server_fields_and_refuses_duplicates(tmp_path: Path) -> None:
    state = SqliteState(tmp_path)
    obj = state.create(gss())
    meta = obj["metadata"]
    assert meta["uid"] and meta["resourceVersion"] and meta["generation"] == 1 and meta["creationTimestamp"]
    with pytest.raises(AlreadyExists):
        state.create(gss())
    assert (tmp_path / "state.db").exists()
    assert state.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_stale_resource_version_is_a_conflict(tmp_path: Path) -> None:
    state = SqliteState(tmp_path)
    first = state.create(gss())
    state.patch("GameServerSet", "default", "a", {"spec": {"replicas": 2}})
    with pytest.raises(Conflict):
        state.patch("GameServerSet", "default", "a", {"spec": {"replicas": 3}},
                    resource_version=first["metadata"]["resourceVersion"])
    stale = dict(first)
    with pytest.raises(Conflict):
        state.replace(stale)
    assert state.get("GameServerSet", "default", "a")["spec"]["replicas"] == 2  # type: ignore[index]


def test_generation_counts_spec_changes_only_and_status_is_separate(tmp_path: Path) -> None:
    state = SqliteState(tmp_path)
    state.create(gss())
    state.patch("GameServerSet", "default", "a", {"metadata": {"labels": {"x": "y"}}})
    assert state.get("GameServerSet", "default", "a")["metadata"]["generation"] == 1  # type: ignore[index]
    state.patch("GameServerSet", "default", "a", {"spec": {"replicas": 4}, "status": {"hacked": True}})
    obj = state.get("GameServerSet", "default", "a")
    assert obj is not None and obj["metadata"]["generation"] == 2 and "status" not in obj
    state.patch("GameServerSet", "default", "a", {"status": {"replicas": 4}, "spec": {"replicas": 9}},
                subresource="status")
    obj = state.get("GameServerSet", "default", "a")
    assert obj is not None and obj["status"] == {"replicas": 4} and obj["spec"]["replicas"] == 4


def test_unchanged_writes_are_not_written(tmp_path: Path) -> None:
    state = SqliteState(tmp_path)
    state.create(gss())
    rv = state.current_rv()
    state.patch("GameServerSet", "default", "a", {"spec": {"replicas": 1}})
    state.patch("GameServerSet", "default", "a", {"status": {}}, subresource="status")
    assert state.current_rv() == rv


def test_finalizers_and_cascading_deletion(tmp_path: Path) -> None:
    state = SqliteState(tmp_path)
    owner = state.create(gss())
    ref = {"apiVersion": "x", "kind": "GameServerSet", "name": "a", "uid": owner["metadata"]["uid"]}
    pod = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": "a-0", "namespace": "default", "ownerReferences": [ref], "finalizers": ["f"]},
           "spec": {}}
    state.create(pod)
    gs_ref = {"apiVersion": "v1", "kind": "Pod", "name": "a-0",
              "uid": state.get("Pod", "default", "a-0")["metadata"]["uid"]}  # type: ignore[index]
    state.create({"apiVersion": "x", "kind": "GameServer",
                  "metadata": {"name": "a-0", "namespace": "default", "ownerReferences": [gs_ref]}, "spec": {}})
    state.delete("GameServerSet", "default", "a")
    assert state.get("GameServerSet", "default", "a") is None
    marked = state.get("Pod", "default", "a-0")
    assert marked is not None and marked["metadata"]["deletionTimestamp"]
    assert state.get("GameServer", "default", "a-0") is not None
    state.patch("Pod", "default", "a-0", {"metadata": {"finalizers": None}})
    assert state.get("Pod", "default", "a-0") is None
    assert state.get("GameServer", "default", "a-0") is None
    with pytest.raises(NotFound):
        state.delete("Pod", "default", "a-0")


def test_merge_patch_rfc7386() -> None:
    assert merge_patch({"a": "b", "c": {"d": "e", "f": "g"}}, {"a": "z", "c": {"f": None}}) == {
        "a": "z", "c": {"d": "e"}}
    assert merge_patch({"a": [1, 2]}, {"a": [3]}) == {"a": [3]}
    assert merge_patch({"a": 1}, {"b": {"c": None}}) == {"a": 1, "b": {}}


def _bump(path: str, n: int, key: str) -> None:
    state = SqliteState(Path(path))
    for _ in range(n):
        while True:
            obj = state.get("GameServerSet", "default", "a")
            assert obj is not None
            labels = obj["metadata"].get("labels") or {}
            count = int(labels.get(key, "0"))
            try:
                state.patch("GameServerSet", "default", "a", {"metadata": {"labels": {key: str(count + 1)}}},
                            resource_version=obj["metadata"]["resourceVersion"])
                break
            except Conflict:
                continue


@pytest.mark.parametrize("shared_key", [True, False])
def test_racing_processes_never_lose_an_update(tmp_path: Path, shared_key: bool) -> None:
    SqliteState(tmp_path).create(gss())
    ctx = multiprocessing.get_context("spawn")
    keys = ["n", "n", "n"] if shared_key else ["x", "y", "z"]
    procs = [ctx.Process(target=_bump, args=(str(tmp_path), 40, k)) for k in keys]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    labels = SqliteState(tmp_path).get("GameServerSet", "default", "a")["metadata"]["labels"]  # type: ignore[index]
    if shared_key:
        assert labels == {"n": "120"}
    else:
        assert labels == {"x": "40", "y": "40", "z": "40"}


def _write_later(path: str) -> None:
    time.sleep(0.5)
    SqliteState(Path(path)).patch("GameServerSet", "default", "a", {"spec": {"replicas": 7}})


def test_watch_is_woken_by_another_process(tmp_path: Path) -> None:
    SqliteState(tmp_path).create(gss())
    store = SqliteStore(SqliteState(tmp_path), resync_seconds=3600)

    async def main() -> None:
        watch = store.watch({"GameServerSet"})
        first = asyncio.ensure_future(watch.__anext__())
        await asyncio.sleep(0.1)
        ctx = multiprocessing.get_context("spawn")
        proc = ctx.Process(target=_write_later, args=(str(tmp_path),))
        proc.start()
        # The resync interval is an hour: only the other process's write can wake the watcher in time.
        change = await asyncio.wait_for(first, 30)
        proc.join()
        assert change.kind == "GameServerSet" and change.name == "a" and change.type == "MODIFIED"
        await watch.aclose()

    asyncio.run(main())


def test_events_fold_repeats(tmp_path: Path) -> None:
    state = SqliteState(tmp_path)
    obj = state.create(gss())
    for _ in range(3):
        state.record_event(obj, "Warning", "GsStateChanged", "OpsState turn from None to Maintaining ")
    state.record_event(obj, "Normal", "Scale", "scale from 1 to 2")
    events = state.list_events("default")
    assert [(e.type, e.reason, e.count) for e in events] == [("Warning", "GsStateChanged", 3), ("Normal", "Scale", 1)]


def labelled_pod(name: str, labels: dict[str, str] | None, namespace: str = "default") -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": namespace}
    if labels is not None:
        meta["labels"] = labels
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": {"containers": [{"name": "c"}]}}


def test_listing_by_owner_reads_only_that_sets_rows_through_the_index(tmp_path: Path) -> None:
    owner = "game.kruise.io/owner-gss"
    state = SqliteState(tmp_path)
    for name, labels, namespace in [
        ("b-10", {owner: "b", "tier": "x"}, "default"), ("b-2", {owner: "b"}, "default"),
        ("a-0", {owner: "a"}, "default"), ("b-1", {owner: "b", "tier": "x"}, "other"),
        ("loose", None, "default"), ("bb-0", {owner: "bb"}, "default"),
    ]:
        state.create(labelled_pod(name, labels, namespace))
    names = [p["metadata"]["name"] for p in state.list("Pod", "default", {owner: "b"})]
    assert names == ["b-10", "b-2"]  # by name, as every listing
    assert [p["metadata"]["name"] for p in state.list("Pod", "default", {owner: "b", "tier": "x"})] == ["b-10"]
    assert [(p["metadata"]["namespace"], p["metadata"]["name"]) for p in state.list("Pod", None, {owner: "b"})] == [
        ("default", "b-10"), ("default", "b-2"), ("other", "b-1")]
    assert [p["metadata"]["name"] for p in state.list("Pod", "default", {"tier": "x"})] == ["b-10"]
    assert len(state.list("Pod", "default")) == 5
    # A label change moves the object between sets' listings.
    state.patch("Pod", "default", "a-0", {"metadata": {"labels": {owner: "b"}}})
    assert [p["metadata"]["name"] for p in state.list("Pod", "default", {owner: "b"})] == ["a-0", "b-10", "b-2"]
    plan = state.db.execute(
        f"EXPLAIN QUERY PLAN SELECT body FROM objects WHERE kind = ? AND namespace = ? AND {OWNER_EXPR} = ? "
        "ORDER BY name", ("Pod", "default", "b"),
    ).fetchall()
    assert any("objects_owner" in str(row) for row in plan), plan


def test_a_state_made_before_the_owner_index_gets_it_on_open(tmp_path: Path) -> None:
    state = SqliteState(tmp_path)
    state.create(labelled_pod("a-0", {"game.kruise.io/owner-gss": "a"}))
    state.db.execute("DROP INDEX objects_owner")
    state.close()
    reopened = SqliteState(tmp_path)
    indexes = {row[0] for row in reopened.db.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert "objects_owner" in indexes
    assert [p["metadata"]["name"] for p in reopened.list("Pod", "default", {"game.kruise.io/owner-gss": "a"})] == [
        "a-0"]


def test_a_damaged_page_met_by_a_request_names_the_file_and_the_fix_and_a_reconcile_logs_no_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import sqlite3

    from gamekeeper.control.queue import WorkQueue
    from gamekeeper.ports.store import StoreDamaged

    state = SqliteState(tmp_path)
    state.create(gss())
    store = SqliteStore(state)
    raised: list[Exception] = [sqlite3.DatabaseError("database disk image is malformed")]

    def failing(*args: Any) -> Any:
        raise raised[0]

    monkeypatch.setattr(state, "patch", failing)

    async def main() -> None:
        with pytest.raises(StoreDamaged) as damaged:
            await store.patch("GameServerSet", "default", "a", {"spec": {"replicas": 2}})
        assert str(tmp_path / "state.db") in str(damaged.value) and "gk state recover" in str(damaged.value)
        # Transient (busy) and programming errors are not damage: they pass through as they are.
        for other in (sqlite3.OperationalError("database is locked"), sqlite3.IntegrityError("x")):
            raised[0] = other
            with pytest.raises(type(other)):
                await store.patch("GameServerSet", "default", "a", {"spec": {"replicas": 2}})

        raised[0] = sqlite3.DatabaseError("database disk image is malformed")

        async def reconcile(namespace: str, name: str) -> None:
            await store.patch("GameServerSet", namespace, name, {"spec": {"replicas": 2}})

        queue = WorkQueue("test", reconcile)
        queue.add("default", "a")
        task = asyncio.create_task(queue.run())
        while queue.processed < 1:
            await asyncio.sleep(0.01)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    with caplog.at_level("ERROR", logger="gamekeeper.queue"):
        asyncio.run(main())
    [record] = [r for r in caplog.records if r.name == "gamekeeper.queue"]
    assert "is damaged" in record.getMessage() and "gk state recover" in record.getMessage()
    assert record.exc_info is None
    assert state.get("GameServerSet", "default", "a")["spec"]["replicas"] == 1  # type: ignore[index]
