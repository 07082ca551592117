"""Store.list_projected: the same objects, order and filters as list, reduced to the asked paths."""

from __future__ import annotations

from pathlib import Path

import pytest

from gamekeeper.ports.store import project
from gamekeeper.store.sqlite import SqliteState, SqliteStore


def pod(name: str, owner: str, ready: str) -> dict:
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default",
                     "labels": {"game.kruise.io/owner-gss": owner, "x": name}},
        "spec": {"containers": [{"name": "game", "image": "demo"}]},
        "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": ready}]},
    }


def test_project_keeps_the_shape_and_drops_the_rest() -> None:
    obj = pod("a-0", "a", "True")
    obj["metadata"]["resourceVersion"] = "7"
    got = project(obj, ["metadata.labels", "status.conditions", "spec.nodeName"])
    assert got == {
        "metadata": {"namespace": "default", "name": "a-0", "resourceVersion": "7",
                     "labels": obj["metadata"]["labels"]},
        "status": {"conditions": obj["status"]["conditions"]},
    }


@pytest.mark.asyncio
async def test_sqlite_list_projected_matches_list(tmp_path: Path) -> None:
    state = SqliteState(tmp_path)
    store = SqliteStore(state)
    for name, owner in [("b-1", "b"), ("a-1", "a"), ("a-0", "a")]:
        await store.create(pod(name, owner, "True"))
    paths = ["metadata.labels", "status.conditions"]
    for kwargs in ({}, {"namespace": "default"}, {"labels": {"game.kruise.io/owner-gss": "a"}},
                   {"labels": {"x": "b-1"}}):
        whole = await store.list("Pod", **kwargs)  # type: ignore[arg-type]
        got = await store.list_projected("Pod", paths, **kwargs)  # type: ignore[arg-type]
        assert got == [project(o, paths) for o in whole]
        assert [o["metadata"]["name"] for o in got] == [o["metadata"]["name"] for o in whole]
    state.close()


PATHS = ["metadata.labels", "metadata.deletionTimestamp", "status.conditions", "spec.nodeName", "status.phase"]


async def _three_pods(tmp_path: Path) -> tuple[SqliteState, SqliteStore]:
    state = SqliteState(tmp_path)
    store = SqliteStore(state)
    for name, owner in [("a-0", "a"), ("a-1", "a"), ("a-2", "a"), ("b-0", "b")]:
        await store.create(pod(name, owner, "True"))
    return state, store


@pytest.mark.asyncio
async def test_sqlite_projection_keeps_missing_and_null_apart(tmp_path: Path) -> None:
    state, store = await _three_pods(tmp_path)
    # A stored null is a value (it stays), a missing path is absent; types survive the round trip through SQL.
    await store.patch("Pod", "default", "a-1", {"spec": {"priority": 2, "enableServiceLinks": False}})
    state.db.execute(
        "UPDATE objects SET body = json_set(body, '$.status.phase', json('null')) WHERE name = 'a-2'"
    )
    paths = [*PATHS, "spec.priority", "spec.enableServiceLinks", "no.such.path"]
    got = await store.list_projected("Pod", paths, "default", {"game.kruise.io/owner-gss": "a"})
    assert got == [project(o, paths) for o in await store.list("Pod", "default", {"game.kruise.io/owner-gss": "a"})]
    by_name = {o["metadata"]["name"]: o for o in got}
    assert by_name["a-2"]["status"]["phase"] is None
    assert "phase" in by_name["a-2"]["status"]
    assert by_name["a-1"]["spec"] == {"priority": 2, "enableServiceLinks": False}
    assert "spec" not in by_name["a-0"] and "no" not in by_name["a-0"]
    assert by_name["a-0"]["metadata"]["resourceVersion"].isdigit()
    state.close()


@pytest.mark.asyncio
async def test_sqlite_projection_filters_on_labels_as_list_does(tmp_path: Path) -> None:
    state, store = await _three_pods(tmp_path)
    await store.patch("Pod", "default", "a-2", {"metadata": {"labels": {"x": None}}})
    state.db.execute(  # a label whose value is not a string never matches a string
        "UPDATE objects SET body = json_set(body, '$.metadata.labels.n', 1) WHERE name = 'a-1'"
    )
    for labels in ({"x": "a-1"}, {"x": "a-2"}, {"n": "1"}, {"game.kruise.io/owner-gss": "a", "x": "a-0"},
                   {"game.kruise.io/owner-gss": "b", "x": "a-0"}, {"x": "b-0"}):
        whole = await store.list("Pod", labels=labels)
        assert await store.list_projected("Pod", PATHS, labels=labels) == [project(o, PATHS) for o in whole]
    assert [o["metadata"]["name"] for o in await store.list_projected("Pod", [], labels={"x": "a-1"})] == ["a-1"]
    state.close()


@pytest.mark.asyncio
async def test_sqlite_projection_skips_a_damaged_row_with_one_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    state, store = await _three_pods(tmp_path)
    state.db.execute("UPDATE objects SET body = '<' || substr(body, 2) WHERE name = 'a-1'")
    state.db.execute("UPDATE objects SET body = '[1, 2]' WHERE name = 'a-2'")
    state.db.execute("UPDATE objects SET body = json_remove(body, '$.kind') WHERE name = 'b-0'")
    for _ in range(2):
        got = await store.list_projected("Pod", PATHS)
        assert [o["metadata"]["name"] for o in got] == ["a-0"]
        assert got == [project(o, PATHS) for o in await store.list("Pod")]
        owned = await store.list_projected("Pod", PATHS, "default", {"game.kruise.io/owner-gss": "a", "x": "a-0"})
        assert [o["metadata"]["name"] for o in owned] == ["a-0"]
    warnings = [r.getMessage() for r in caplog.records if "skipped Pod" in r.getMessage()]
    assert len(warnings) == 3  # once per damaged row, whichever listing met it first
    assert any("default/a-1: its body is not JSON" in w for w in warnings)
    assert any("default/a-2: its body is [1, 2]" in w for w in warnings)
    assert any("default/b-0: its body lacks kind" in w for w in warnings)
    state.close()


@pytest.mark.asyncio
async def test_sqlite_projection_in_chunks_shares_equal_strings(tmp_path: Path) -> None:
    """More rows than one parse chunk, a damaged row in a later chunk: the same objects as `list`, in order, and
    equal values are one string across objects (a set's projection is held for a whole reconcile)."""
    from gamekeeper.store import sqlite as sqlite_module

    state = SqliteState(tmp_path / "state")
    store = SqliteStore(state)
    count = sqlite_module._PROJECTION_CHUNK * 2 + 7
    for i in range(count):
        await store.create(pod(f"p-{i:04d}", "a", "True" if i % 2 else "False"))
    state.db.execute("UPDATE objects SET body = '<' WHERE name = ?", (f"p-{sqlite_module._PROJECTION_CHUNK + 3:04d}",))
    got = await store.list_projected("Pod", PATHS)
    whole = await store.list("Pod")
    assert len(got) == count - 1
    assert got == [project(o, PATHS) for o in whole]
    first, last = got[0], got[-1]
    assert first["status"]["phase"] is last["status"]["phase"]
    owner = "game.kruise.io/owner-gss"
    assert first["metadata"]["labels"][owner] is last["metadata"]["labels"][owner]
    state.close()


@pytest.mark.asyncio
async def test_a_path_filter_keeps_the_matching_items_alike_in_project_and_sqlite(tmp_path: Path) -> None:
    state, store = await _three_pods(tmp_path)
    await store.patch("Pod", "default", "a-1", {"status": {"conditions": [
        {"type": "PodScheduled", "status": "True"}, {"type": "Ready", "status": "False", "lastTransitionTime": "t"},
        "not an object"]}}, subresource="status")
    await store.patch("Pod", "default", "a-2", {"status": {"conditions": {"type": "Ready"}}},
                      subresource="status")  # not a list: kept as it is
    paths = ["metadata.labels", "status.conditions[type=Ready]"]
    got = await store.list_projected("Pod", paths)
    assert got == [project(o, paths) for o in await store.list("Pod")]
    by_name = {o["metadata"]["name"]: o for o in got}
    assert by_name["a-1"]["status"]["conditions"] == [{"type": "Ready", "status": "False", "lastTransitionTime": "t"}]
    assert by_name["a-0"]["status"]["conditions"] == [{"type": "Ready", "status": "True"}]
    assert by_name["a-2"]["status"]["conditions"] == {"type": "Ready"}
    with pytest.raises(ValueError, match=r"\[field=value\]"):
        project(got[0], ["status.conditions[Ready]"])
    state.close()
