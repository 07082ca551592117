"""The seed's scenarios against a real cluster: run when $KUBECONFIG points at one, skipped otherwise.

Setup (kind, or any cluster; see docs/kubernetes.md, "Running the real-cluster suite"): build the demo images
from examples/images with deploy/e2e/Dockerfile.demo under the seed's image names and make them available to
the nodes (`kind load docker-image ...`). The suite installs the CRDs, runs the operator in this process
(out of cluster, through $KUBECONFIG; probe path auto, so with OpenKruise installed it exercises path a)
in a fresh namespace that it deletes afterwards. `kubectl get gs` is checked with the API server's own
table output, so the CRD's printer columns are what is compared.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import yaml

from gamekeeper.kube.cli import apply_manifests
from gamekeeper.kube.client import KubeClient
from gamekeeper.kube.crds import all_crds
from gamekeeper.kube.operator import Operator, OperatorConfig
from gamekeeper.kube.resources import EVENT, GAME_SERVER, GAME_SERVER_SET, NAMESPACE
from gamekeeper.ports.store import StoreError

pytestmark = [
    pytest.mark.asyncio,
    pytest.mark.skipif(not os.environ.get("KUBECONFIG"), reason="KUBECONFIG is not set: no cluster to test against"),
]

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"
TIMEOUT = float(os.environ.get("GK_E2E_TIMEOUT", "300"))  # image pulls on a fresh cluster take a while


def seed(name: str, namespace: str) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((EXAMPLES / name).read_text())
    doc["metadata"]["namespace"] = namespace
    for sq in doc["spec"]["serviceQualities"]:
        sq["initialDelaySeconds"] = 1
        sq["periodSeconds"] = 1
    return doc


class Live:
    def __init__(self, client: KubeClient, namespace: str) -> None:
        self.client = client
        self.namespace = namespace

    async def gameservers(self) -> dict[str, dict[str, Any]]:
        items, _ = await self.client.list(GAME_SERVER, self.namespace)
        return {g["metadata"]["name"]: g for g in items}

    async def summary(self) -> dict[str, tuple[str, str]]:
        return {n: (str((g.get("status") or {}).get("currentState")), str((g.get("spec") or {}).get("opsState")))
                for n, g in (await self.gameservers()).items()}

    async def eventually(self, what: str, check: Any, timeout: float = TIMEOUT) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not await check():
            if loop.time() > deadline:
                raise AssertionError(f"timed out waiting for {what}; game servers: {await self.summary()}")
            await asyncio.sleep(1)

    async def get_gs_table(self) -> list[list[str]]:
        """`kubectl get gs`: the server renders the CRD's printer columns (AGE left out)."""
        table = await self.client.request(
            "GET", GAME_SERVER.path(self.namespace), accept="application/json;as=Table;v=v1;g=meta.k8s.io")
        names = [c["name"].upper() for c in table["columnDefinitions"]]
        keep = [i for i, n in enumerate(names) if n != "AGE"]
        return [[names[i] for i in keep]] + [[str(row["cells"][i]) for i in keep] for row in table["rows"]]


@pytest_asyncio.fixture
async def live() -> AsyncIterator[Live]:
    try:
        client = await KubeClient.connect()
    except StoreError as err:
        pytest.skip(f"KUBECONFIG is set but unusable: {err}")
    try:
        await client.request("GET", "/version")
    except (StoreError, OSError) as err:
        await client.close()
        pytest.skip(f"KUBECONFIG is set but the cluster cannot be reached: {err}")
    await apply_manifests(client, all_crds())
    namespace = f"gk-e2e-{secrets.token_hex(3)}"
    await client.create(NAMESPACE, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
    config = OperatorConfig(namespace=namespace, leader_elect=True, lease_namespace=namespace,
                            identity="e2e", resync_seconds=30)
    operator = Operator(client, config)
    stop = asyncio.Event()
    task = asyncio.create_task(operator.run(stop))
    try:
        await asyncio.wait_for(operator.acting.wait(), 60)
        yield Live(client, namespace)
    finally:
        stop.set()
        await asyncio.gather(task, return_exceptions=True)
        await client.delete(NAMESPACE, None, namespace)
        await client.close()


async def test_idle_servers_wait_to_be_deleted_and_scale_in_keeps_the_busy_one(live: Live) -> None:
    await live.client.create(GAME_SERVER_SET, seed("minecraft.yaml", live.namespace))
    names = ["minecraft-0", "minecraft-1", "minecraft-2"]

    async def all_idle() -> bool:
        s = await live.summary()
        return all(s.get(n) == ("Ready", "WaitToBeDeleted") for n in names)

    await live.eventually("all idle servers WaitToBeDeleted", all_idle)
    assert await live.get_gs_table() == [
        ["NAME", "STATE", "OPSSTATE", "DP", "UP"],
        ["minecraft-0", "Ready", "WaitToBeDeleted", "0", "0"],
        ["minecraft-1", "Ready", "WaitToBeDeleted", "0", "0"],
        ["minecraft-2", "Ready", "WaitToBeDeleted", "0", "0"],
    ]
    joined = await live.client.exec(live.namespace, "minecraft-1", "minecraft", ["./player.sh", "join", "alice"], 30)
    assert joined.exit_code == 0, joined

    async def busy() -> bool:
        return (await live.summary()).get("minecraft-1") == ("Ready", "None")

    await live.eventually("minecraft-1 None", busy)
    await live.client.patch(GAME_SERVER_SET, live.namespace, "minecraft", {"spec": {"replicas": 1}}, "scale")

    async def only_busy_left() -> bool:
        return list(await live.gameservers()) == ["minecraft-1"]

    await live.eventually("only minecraft-1 left", only_busy_left)
    assert (await live.get_gs_table())[1:] == [["minecraft-1", "Ready", "None", "0", "0"]]
    players = await live.client.exec(live.namespace, "minecraft-1", "minecraft", ["./player.sh", "list"], 30)
    assert b"alice" in players.stdout


async def test_unhealthy_server_turns_maintaining_with_a_warning_event(live: Live) -> None:
    await live.client.create(GAME_SERVER_SET, seed("demo-gs.yaml", live.namespace))
    names = ["demo-gs-0", "demo-gs-1", "demo-gs-2"]

    async def all_healthy() -> bool:
        s = await live.summary()
        return all(s.get(n) == ("Ready", "None") for n in names)

    await live.eventually("all healthy servers None", all_healthy)
    fault = await live.client.exec(live.namespace, "demo-gs-0", "minecraft", ["./fault.sh"], 30)
    assert b"fault injected" in fault.stdout, fault

    async def warned() -> bool:
        items, _ = await live.client.list(EVENT, live.namespace)
        return any(e.get("type") == "Warning" and e.get("note") == "OpsState turn from None to Maintaining "
                   and (e.get("regarding") or {}).get("name") == "demo-gs-0" for e in items)

    await live.eventually("the Warning event", warned)
    assert (await live.summary())["demo-gs-0"] == ("Ready", "Maintaining")
    await live.client.exec(live.namespace, "demo-gs-0", "minecraft", ["./recover.sh"], 30)

    async def recovered() -> bool:
        return (await live.summary()).get("demo-gs-0") == ("Ready", "None")

    await live.eventually("demo-gs-0 back to None", recovered)
