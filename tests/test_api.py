"""The ops API for real: a running controller (or the API over a real SQLite store), real HTTP on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gamekeeper.observe.api import OpsApi
from gamekeeper.observe.api_auth import check_api_options
from gamekeeper.store.sqlite import SqliteState, SqliteStore
from tests.fleet import Fleet, ops, seed_yaml, wait_for

TOKEN = "s3cret-token"


def call(url: str, method: str = "GET", body: Any = None, token: str | None = None,
         raw: bytes | None = None) -> tuple[int, Any]:
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("Content-Type", "application/json")
    req.add_header("X-Gamekeeper-Caller", "pytest")
    if token is not None:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=20) as resp:
            text = resp.read().decode()
            code = resp.status
    except urllib.error.HTTPError as e:
        text, code = e.read().decode(), e.code
    try:
        return code, json.loads(text)
    except ValueError:
        return code, text


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Fleet, str]]:
    """The seed's first scenario under a controller serving the API with a token."""
    fleet = Fleet(tmp_path_factory.mktemp("api"))
    token_file = fleet.tmp / "token"
    token_file.write_text(TOKEN + "\n")
    try:
        fleet.apply_yaml(seed_yaml("minecraft.yaml"))
        fleet.start("--api-addr", "127.0.0.1:0", "--api-token-file", str(token_file))
        wait_for(lambda: (fleet.state_dir / "api.json").exists(), "the API to start", 20)
        url = json.loads((fleet.state_dir / "api.json").read_text())["url"]
        fleet.wait_gs("three WaitToBeDeleted", lambda g: len(g) == 3 and all(
            ops(x) == "WaitToBeDeleted" for x in g.values()))
        yield fleet, url.rstrip("/")
    finally:
        fleet.stop()


GS = "/api/v1/namespaces/default/gameservers"


@pytest.mark.slow
def test_reads_with_selectors(running: tuple[Fleet, str]) -> None:
    _, url = running
    code, data = call(url + GS)
    assert code == 200 and data["kind"] == "GameServerList"
    assert [g["metadata"]["name"] for g in data["items"]] == ["minecraft-0", "minecraft-1", "minecraft-2"]
    code, data = call(url + GS + "?labelSelector=game.kruise.io/owner-gss%3Dminecraft"
                      "&fieldSelector=spec.opsState%3DWaitToBeDeleted")
    assert code == 200 and len(data["items"]) == 3
    code, data = call(url + "/api/v1/gameservers?labelSelector=game.kruise.io/owner-gss%3Dother")
    assert code == 200 and data["items"] == []
    code, data = call(url + GS + "?fieldSelector=spec.opsState%3DNone")
    assert code == 200 and data["items"] == []
    code, data = call(url + GS + "?labelSelector=a%20in%20(b")
    assert code == 400 and data["details"]["causes"][0]["field"] == "labelSelector"
    code, data = call(url + GS + "?fieldSelector=spec.nothing%3Dx&labelSelector=a%3Db")
    assert code == 400 and data["details"]["causes"][0]["field"] == "fieldSelector", data
    code, gs = call(url + GS + "/minecraft-1")
    assert code == 200 and gs["kind"] == "GameServer" and gs["metadata"]["resourceVersion"]
    code, data = call(url + GS + "/nope")
    assert code == 404 and data["reason"] == "NotFound"
    code, gss = call(url + "/api/v1/namespaces/default/gameserversets/minecraft")
    assert code == 200 and gss["spec"]["replicas"] == 3
    code, scale = call(url + "/api/v1/namespaces/default/gameserversets/minecraft/scale")
    assert code == 200 and scale["kind"] == "Scale" and scale["spec"]["replicas"] == 3
    code, hist = call(url + GS + "/minecraft-0/history")
    assert code == 200 and hist["opsStateHistory"][-1]["to"] == "WaitToBeDeleted"
    assert hist["serviceQualityHistory"]["idle"][-1]["result"] == "idle"
    code, text = call(url + GS + "/minecraft-0/log?tailLines=5")
    assert code == 200 and isinstance(text, str)
    code, doc = call(url + "/api/openapi.json")
    assert code == 200 and doc["openapi"].startswith("3.")
    assert "/api/v1/namespaces/{ns}/gameservers/{name}" in doc["paths"]


@pytest.mark.slow
def test_writes_need_the_token_and_a_fresh_resource_version(running: tuple[Fleet, str]) -> None:
    fleet, url = running
    _, before = call(url + GS + "/minecraft-2")
    rv = before["metadata"]["resourceVersion"]
    patch = {"metadata": {"labels": {"team": "blue"}}}
    code, data = call(url + GS + "/minecraft-2", "PATCH", patch)
    assert code == 401 and data["reason"] == "Unauthorized"
    code, data = call(url + GS + "/minecraft-2", "PATCH", patch, token="wrong")
    assert code == 403
    code, data = call(url + GS + "/minecraft-2", "PATCH",
                      {"metadata": {"labels": {"team": "blue"}, "resourceVersion": "1"}}, token=TOKEN)
    assert code == 409 and data["reason"] == "Conflict"
    code, data = call(url + GS + "/minecraft-2", "PATCH", {"spec": {"opsState": "kill"}}, token=TOKEN)
    assert code == 422 and data["details"]["causes"][0]["field"] == "spec.opsState", data
    code, data = call(url + GS + "/minecraft-2", "PATCH", {"status": {"currentState": "Ready"}}, token=TOKEN)
    assert code == 422 and data["details"]["causes"][0]["field"] == "body.status"
    code, data = call(url + GS + "/minecraft-2", "PATCH", raw=b"{not json", token=TOKEN)
    assert code == 422 and data["details"]["causes"][0]["field"] == "body"
    code, data = call(url + "/api/v1/namespaces/default/gameserversets/minecraft/scale", "PUT",
                      {"spec": {"replicas": -1}}, token=TOKEN)
    assert code == 422 and data["details"]["causes"][0]["field"] == "spec.replicas"
    code, data = call(url + "/api/v1/namespaces/default/gameserversets/minecraft/scale", "PUT",
                      {"spec": {"replicas": 0}, "metadata": {"resourceVersion": "1"}}, token=TOKEN)
    assert code == 409 and data["reason"] == "Conflict"
    # Nothing above was written.
    gs = fleet.gameservers()["minecraft-2"]
    assert "team" not in (gs["metadata"].get("labels") or {})
    assert ops(gs) == "WaitToBeDeleted"
    code, data = call(url + GS + "/minecraft-2", "PATCH",
                      {"metadata": {"labels": {"team": "blue"}, "resourceVersion": rv}}, token=TOKEN)
    if code == 409:  # the controller wrote in between; a fresh read must then succeed
        _, again = call(url + GS + "/minecraft-2")
        code, data = call(url + GS + "/minecraft-2", "PATCH", {"metadata": {
            "labels": {"team": "blue"}, "resourceVersion": again["metadata"]["resourceVersion"]}}, token=TOKEN)
    assert code == 200 and data["metadata"]["labels"]["team"] == "blue"
    code, data = call(url + GS + "?labelSelector=team%3Dblue")
    assert [g["metadata"]["name"] for g in data["items"]] == ["minecraft-2"]
    wait_for(lambda: any(e["reason"] == "ApiPatch" and "pytest from 127.0.0.1" in e["message"]
                         for e in call(url + "/api/v1/events?name=minecraft-2")[1]["items"]), "the write's Event", 10)


@pytest.mark.slow
def test_stream_pushes_changes_and_bulk_kill(running: tuple[Fleet, str]) -> None:
    fleet, url = running
    seen: list[tuple[str, dict[str, Any]]] = []
    ready = threading.Event()

    def listen() -> None:
        with urllib.request.urlopen(url + "/api/v1/stream", timeout=30) as resp:
            event = ""
            for raw in resp:
                line = raw.decode().rstrip("\n")
                if line.startswith("event: "):
                    event = line[7:]
                elif line.startswith("data: "):
                    seen.append((event, json.loads(line[6:])))
                    ready.set()
                    if event == "event" and "ApiPatch" in line and "Kill" in line:
                        return

    thread = threading.Thread(target=listen, daemon=True)
    thread.start()
    assert ready.wait(10)
    code, result = call(url + GS + "/bulk-patch", "POST", {
        "patch": {"spec": {"opsState": "Kill"}}, "labelSelector": "game.kruise.io/owner-gss=minecraft",
        "fieldSelector": "spec.opsState=WaitToBeDeleted,metadata.name!=minecraft-1"}, token=TOKEN)
    assert code == 200, result
    assert sorted(i["name"] for i in result["items"]) == ["minecraft-0", "minecraft-2"]
    assert all(i["result"] == "patched" for i in result["items"])
    thread.join(15)
    killed = {d["object"]["metadata"]["name"] for e, d in seen
              if e == "gameserver" and (d["object"].get("spec") or {}).get("opsState") == "Kill"}
    assert killed == {"minecraft-0", "minecraft-2"}
    assert any(e == "event" and d["reason"] == "ApiPatch" for e, d in seen)
    fleet.wait_gs("the killed servers gone", lambda g: sorted(g) == ["minecraft-1"], 60)
    # A stale bulk item is refused on its own; the others are still written.
    _, gs1 = call(url + GS + "/minecraft-1")
    code, result = call(url + GS + "/bulk-patch", "POST", {
        "patch": {"spec": {"deletionPriority": 5}},
        "items": [{"name": "minecraft-1", "resourceVersion": "1"}, {"name": "ghost"}]}, token=TOKEN)
    assert code == 207
    assert [(i["name"], i["code"]) for i in result["items"]] == [("minecraft-1", 409), ("ghost", 404)]
    _, after = call(url + GS + "/minecraft-1")
    assert (after.get("spec") or {}).get("deletionPriority") == (gs1.get("spec") or {}).get("deletionPriority")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_read_only_without_a_token_and_exposed_needs_one(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not a loopback address"):
        check_api_options("0.0.0.0:8080", None)
    check_api_options("0.0.0.0:8080", "t")
    state = SqliteState(tmp_path)
    state.create({"apiVersion": "game.kruise.io/v1alpha1", "kind": "GameServer",
                  "metadata": {"name": "a-0", "namespace": "default", "labels": {"x": "1"}}, "spec": {}})

    async def scenario() -> None:
        api = OpsApi(SqliteStore(state, resync_seconds=1.0), lambda: __import__("datetime").datetime.now(),
                     f"127.0.0.1:{_free_port()}", token=None)
        url = (await api.start()).rstrip("/")
        try:
            loop = asyncio.get_running_loop()
            code, data = await loop.run_in_executor(None, lambda: call(url + GS + "/a-0", "PATCH",
                                                                       {"spec": {"opsState": "Kill"}}, token="x"))
            assert code == 403 and "read-only" in data["message"]
            code, data = await loop.run_in_executor(None, lambda: call(url + GS + "?labelSelector=x%3D1"))
            assert code == 200 and len(data["items"]) == 1
            code, who = await loop.run_in_executor(None, lambda: call(url + "/api/v1/whoami"))
            assert who["writable"] is False
            # The OpenAPI document describes every API route the server has, with its methods.
            _, doc = await loop.run_in_executor(None, lambda: call(url + "/api/openapi.json"))
            for route in api.app().router.routes():
                path = route.resource.canonical if route.resource else ""
                if path.startswith("/api/v1/") and route.method != "HEAD":
                    assert route.method.lower() in doc["paths"].get(path, {}), (route.method, path)
        finally:
            await api.stop()

    asyncio.run(scenario())
    assert (state.get("GameServer", "default", "a-0") or {}).get("spec") == {}
    time.sleep(0)


@pytest.mark.slow
def test_gk_dashboard_starts_a_controller_or_finds_the_running_one(fleet: Fleet) -> None:
    first = fleet.gk("dashboard")
    url = first.stdout.strip().splitlines()[-1]
    assert "controller started in the background" in first.stdout and url.startswith("http://127.0.0.1:")
    again = fleet.gk("dashboard")
    assert again.stdout.strip() == url  # found, not started again
    with urllib.request.urlopen(url, timeout=10) as resp:
        page = resp.read().decode()
    assert resp.headers["Content-Type"].startswith("text/html") and "/dashboard/app.js" in page
    with urllib.request.urlopen(url + "dashboard/app.js", timeout=10) as resp:
        assert b"EventSource cannot send" in resp.read()
    code, _ = call(url + "dashboard/..%2fapi.py")
    assert code == 404
    bad = fleet.gk("serve", "--api-addr", "0.0.0.0:0", check=False)
    assert bad.returncode == 1 and "not a loopback address" in bad.stderr and "--api-token-file" in bad.stderr
    fleet.gk("down")
    taken = url.removeprefix("http://").rstrip("/")
    with socket.socket() as blocker:
        blocker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        host, port = taken.rsplit(":", 1)
        blocker.bind((host, int(port)))
        blocker.listen()
        busy = fleet.gk("serve", "--api-addr", taken, check=False)
    assert busy.returncode == 1 and "cannot listen there" in busy.stderr, busy.stderr
    assert "Traceback" not in busy.stderr
