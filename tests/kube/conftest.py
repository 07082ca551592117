from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import kmock
import pytest_asyncio
import yaml

from gamekeeper.kube.client import KubeClient
from gamekeeper.kube.leader import LeaseTiming
from gamekeeper.kube.operator import Operator, OperatorConfig
from gamekeeper.kube.resources import GAME_SERVER_SET
from tests.kube.fakes import DemoGames, FakeKruiseDaemon, FakeKubelet
from tests.kube.kmock_plus import KRUISE_KINDS, STANDARD_KINDS, KubernetesEmulatorPlus

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"

FAST = OperatorConfig(
    leader_elect=False, identity="op-test", resync_seconds=5.0, exec_jitter_seconds=0.02, tick_seconds=0.2,
    timing=LeaseTiming(lease_duration=2.0, renew_deadline=1.5, retry_period=0.2), lease_namespace="default",
)


def seed_yaml(name: str) -> dict[str, Any]:
    """The seed's YAML as shipped in examples/, probes shortened (initialDelaySeconds, periodSeconds = 1)."""
    doc: dict[str, Any] = yaml.safe_load((EXAMPLES / name).read_text())
    for sq in doc["spec"]["serviceQualities"]:
        sq["initialDelaySeconds"] = 1
        sq["periodSeconds"] = 1
    return doc


@dataclass(repr=False)
class Cluster:
    emulator: KubernetesEmulatorPlus
    url: str
    games: DemoGames
    kubelet: FakeKubelet
    clients: list[KubeClient] = field(default_factory=list)
    tasks: list[asyncio.Task[Any]] = field(default_factory=list)
    daemon: FakeKruiseDaemon | None = None

    def __repr__(self) -> str:  # the default would print every stored object and request
        return f"<Cluster {self.url}: {len(self.world.objects)} objects, {len(self.emulator.log)} requests>"

    @property
    def world(self) -> Any:
        return self.emulator.world

    def client(self) -> KubeClient:
        c = KubeClient(self.url)
        self.clients.append(c)
        return c

    def install_kruise(self) -> FakeKruiseDaemon:
        self.emulator.declare(KRUISE_KINDS)
        self.daemon = FakeKruiseDaemon(self.world, self.games)
        self.tasks.append(asyncio.create_task(self.daemon.run(), name="kruise-daemon"))
        return self.daemon

    def start_operator(self, **overrides: Any) -> tuple[Operator, asyncio.Task[None], asyncio.Event]:
        config = replace(FAST, **overrides)
        operator = Operator(self.client(), config)
        stop = asyncio.Event()
        task = asyncio.create_task(operator.run(stop), name=f"operator {config.identity}")
        self.tasks.append(task)
        return operator, task, stop

    async def apply(self, doc: dict[str, Any]) -> dict[str, Any]:
        """As `kubectl apply` of a new object: POST it."""
        return await self.client().create(GAME_SERVER_SET, copy.deepcopy(doc))

    async def eventually(self, what: str, check: Callable[[], bool | Awaitable[bool]], timeout: float = 30) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            result = check()
            if not isinstance(result, bool):
                result = await result
            if result:
                return
            if loop.time() > deadline:
                summary = self.gs_summary()
                raise AssertionError(f"timed out after {timeout}s waiting for {what}; game servers: {summary}")
            await asyncio.sleep(0.05)

    def gameservers(self, namespace: str = "default") -> dict[str, dict[str, Any]]:
        return {g["metadata"]["name"]: g for g in self.world.all("GameServer", namespace)}

    def gs_summary(self) -> dict[str, tuple[str, str]]:
        return {n: (str((g.get("status") or {}).get("currentState")), str((g.get("spec") or {}).get("opsState")))
                for n, g in self.gameservers().items()}

    def events(self, **match: str) -> list[dict[str, Any]]:
        """Events in the order they were recorded (their names are random)."""
        out = []
        for event in sorted(self.world.all("Event"), key=lambda e: int(e["metadata"]["resourceVersion"])):
            regarding = event.get("regarding") or {}
            fields = {"type": event.get("type"), "reason": event.get("reason"), "kind": regarding.get("kind"),
                      "name": regarding.get("name")}
            if all(fields.get(k) == v for k, v in match.items()):
                out.append(event)
        return out


@pytest_asyncio.fixture
async def cluster() -> AsyncIterator[Cluster]:
    logging.getLogger("gamekeeper").setLevel(logging.INFO)
    emulator = KubernetesEmulatorPlus()
    emulator.declare(STANDARD_KINDS)
    games = DemoGames()
    emulator.world.exec_handler = games
    async with emulator, kmock.Server(emulator) as server:
        kubelet = FakeKubelet(emulator.world)
        c = Cluster(emulator, str(server.url), games, kubelet)
        c.tasks.append(asyncio.create_task(kubelet.run(), name="kubelet"))
        try:
            yield c
        finally:
            for task in reversed(c.tasks):
                task.cancel()
            stuck = []
            for task in c.tasks:
                with contextlib.suppress(BaseException):
                    await asyncio.wait_for(task, 10)
                if not task.done():
                    stuck.append(task.get_name())
            for client in c.clients:
                await client.close()
            # aiohttp does not cancel a handler when its client goes away: end the open watch streams, or the
            # server's shutdown would wait for them.
            emulator.world.break_watches()
        assert not stuck, f"tasks that ignored cancellation: {stuck}"

