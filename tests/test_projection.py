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
