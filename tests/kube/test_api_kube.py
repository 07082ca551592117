"""The ops API served by the operator, against the kmock emulator: the same answers as in embedded mode
(selectors, 401/403/409/422, bulk patch, the stream), each write recorded as a Kubernetes Event."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import pytest

from tests.kube.conftest import Cluster, seed_yaml

pytestmark = pytest.mark.asyncio

TOKEN = "kube-api-token"
GS = "/api/v1/namespaces/default/gameservers"


async def call(session: aiohttp.ClientSession, url: str, method: str = "GET", body: Any = None,
               token: str | None = None) -> tuple[int, Any]:
    headers = {"X-Gamekeeper-Caller": "kube-test"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    async with session.request(method, url, json=body, headers=headers) as resp:
        text = await resp.text()
        try:
            return resp.status, json.loads(text)
        except ValueError:
            return resp.status, text


async def test_api_against_the_emulator(cluster: Cluster) -> None:
    operator, _, stop = cluster.start_operator(api_addr="127.0.0.1:0", api_token=TOKEN)
    await asyncio.wait_for(operator.acting.wait(), 10)
    assert operator.api_url is not None
    base = operator.api_url.rstrip("/")
    await cluster.apply(seed_yaml("minecraft.yaml"))
    await cluster.eventually("three WaitToBeDeleted", lambda: sorted(cluster.gs_summary().values()) == [
        ("Ready", "WaitToBeDeleted")] * 3)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20)) as session:
        await cluster.eventually("the API's cache to catch up", lambda: _count(session, base, 3))
        code, data = await call(session, base + GS + "?labelSelector=game.kruise.io/owner-gss%3Dminecraft"
                                "&fieldSelector=spec.opsState%3DWaitToBeDeleted")
        assert code == 200 and [g["metadata"]["name"] for g in data["items"]] == [
            "minecraft-0", "minecraft-1", "minecraft-2"]
        code, data = await call(session, base + GS + "?labelSelector=in%3D(")
        assert code == 400
        code, _ = await call(session, base + GS + "/minecraft-0", "PATCH", {"spec": {"opsState": "Kill"}})
        assert code == 401
        code, _ = await call(session, base + GS + "/minecraft-0", "PATCH", {"spec": {"opsState": "Kill"}}, "bad")
        assert code == 403
        code, data = await call(session, base + GS + "/minecraft-0", "PATCH",
                                {"spec": {"opsState": "Kill"}, "metadata": {"resourceVersion": "1"}}, TOKEN)
        assert code == 409
        code, data = await call(session, base + GS + "/minecraft-0", "PATCH", {"spec": {"networkDisabled": "yes"}},
                                TOKEN)
        assert code == 422 and data["details"]["causes"][0]["field"] == "spec.networkDisabled", data
        assert sorted(cluster.gs_summary().values()) == [("Ready", "WaitToBeDeleted")] * 3  # nothing written

        stream = await session.get(base + "/api/v1/stream", timeout=aiohttp.ClientTimeout(total=30))
        code, result = await call(session, base + GS + "/bulk-patch", "POST", {
            "patch": {"spec": {"opsState": "Kill"}}, "labelSelector": "game.kruise.io/owner-gss=minecraft",
            "fieldSelector": "metadata.name!=minecraft-1"}, TOKEN)
        assert code == 200 and [(i["name"], i["result"]) for i in result["items"]] == [
            ("minecraft-0", "patched"), ("minecraft-2", "patched")]
        killed: set[str] = set()
        event = ""
        async with asyncio.timeout(15):
            async for raw in stream.content:
                line = raw.decode().rstrip("\n")
                if line.startswith("event: "):
                    event = line[7:]
                elif line.startswith("data: ") and event == "gameserver":
                    obj = json.loads(line[6:])["object"]
                    if (obj.get("spec") or {}).get("opsState") == "Kill":
                        killed.add(obj["metadata"]["name"])
                if killed == {"minecraft-0", "minecraft-2"}:
                    break
        stream.close()
        await cluster.eventually("the killed servers gone", lambda: sorted(cluster.gameservers()) == ["minecraft-1"])
        assert any("kube-test from 127.0.0.1" in (e.get("note") or "") for e in cluster.events(reason="ApiPatch"))
        # The emulator serves no pods/log: the answer is a Status naming the problem, not a server error.
        code, data = await call(session, base + GS + "/minecraft-1/log?tailLines=5")
        assert code in (200, 404, 502) and (code == 200 or "minecraft-1" in data["message"]), (code, data)
        code, scale = await call(session, base + "/api/v1/namespaces/default/gameserversets/minecraft/scale")
        assert code == 200 and scale["spec"]["replicas"] == 1
    stop.set()


async def _count(session: aiohttp.ClientSession, base: str, n: int) -> bool:
    code, data = await call(session, base + GS + "?fieldSelector=spec.opsState%3DWaitToBeDeleted")
    return code == 200 and len(data["items"]) == n
