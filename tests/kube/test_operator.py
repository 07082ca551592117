"""The operator against the emulator: scale-in deletes exactly the chosen pods, a 409 is re-read and retried,
a watch restart loses nothing, and Lease leader election keeps two replicas from ever both acting."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

import pytest

from gamekeeper.kube.client import KubeClient
from gamekeeper.kube.leader import LeadershipLost
from gamekeeper.kube.operator import Operator
from gamekeeper.kube.resources import GAME_SERVER, GAME_SERVER_SET
from tests.kube.conftest import Cluster, seed_yaml
from tests.kube.kmock_plus import World

pytestmark = pytest.mark.asyncio

GSS = "game.kruise.io/v1alpha1/gameserversets"
GS = "game.kruise.io/v1alpha1/gameservers"


def plain_set(name: str, replicas: int) -> dict[str, Any]:
    """A set without service qualities: only what the test writes moves opsState."""
    return {
        "apiVersion": "game.kruise.io/v1alpha1", "kind": "GameServerSet",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"replicas": replicas,
                 "gameServerTemplate": {"spec": {"containers": [{"name": "game", "image": "game:1"}]}}},
    }


def pod_label(cluster: Cluster, name: str, key: str) -> str | None:
    pod = cluster.world.find("Pod", "default", name)
    return None if pod is None else (pod["metadata"].get("labels") or {}).get(key)


async def test_scale_in_deletes_exactly_the_pods_the_core_chose(cluster: Cluster) -> None:
    cluster.start_operator()
    await cluster.apply(plain_set("arena", 5))
    names = [f"arena-{i}" for i in range(5)]
    await cluster.eventually("5 Ready", lambda: all(cluster.gs_summary().get(n, ("",))[0] == "Ready" for n in names))
    client = cluster.client()
    # As `kubectl patch gs`: the users' (or a matchmaker's) say on who goes first.
    await client.patch(GAME_SERVER, "default", "arena-1", {"spec": {"opsState": "WaitToBeDeleted"}})
    await client.patch(GAME_SERVER, "default", "arena-3", {"spec": {"opsState": "Maintaining"}})
    await client.patch(GAME_SERVER, "default", "arena-4", {"spec": {"opsState": "Allocated"}})
    await client.patch(GAME_SERVER, "default", "arena-0", {"spec": {"deletionPriority": 10}})
    await cluster.eventually("pod labels carry the spec", lambda: (
        pod_label(cluster, "arena-1", "game.kruise.io/gs-opsState") == "WaitToBeDeleted"
        and pod_label(cluster, "arena-3", "game.kruise.io/gs-opsState") == "Maintaining"
        and pod_label(cluster, "arena-4", "game.kruise.io/gs-opsState") == "Allocated"
        and pod_label(cluster, "arena-0", "game.kruise.io/gs-delete-priority") == "10"))
    before = len(cluster.emulator.requests_for("DELETE", "pods"))
    await client.patch(GAME_SERVER_SET, "default", "arena", {"spec": {"replicas": 2}})
    # WaitToBeDeleted first, then among None the higher deletionPriority, then the higher ordinal;
    # Allocated and Maintaining go last.
    await cluster.eventually("2 left", lambda: sorted(cluster.gameservers()) == ["arena-3", "arena-4"])
    deleted = [r.name for r in cluster.emulator.requests_for("DELETE", "pods")[before:]]
    assert sorted(deleted) == ["arena-0", "arena-1", "arena-2"]
    assert [p["metadata"]["name"] for p in cluster.world.all("Pod")] == ["arena-3", "arena-4"]
    gss = cluster.world.find("GameServerSet", "default", "arena")
    assert gss["metadata"]["annotations"]["game.kruise.io/reserve-ids"] == ""


async def test_a_conflict_is_re_read_and_retried(cluster: Cluster) -> None:
    """Another writer changes each GameServer just before the operator's first write to it: the operator's
    resourceVersion is stale, the API answers 409, the operator reads again and its retry lands, keeping the
    other writer's change."""
    world: World = cluster.world
    interfered: set[str] = set()

    def other_writer(w: World, verb: str, resource: str, namespace: str, name: str) -> None:
        if verb == "update" and resource == GS and name not in interfered:
            interfered.add(name)
            w.before_write.remove(other_writer)
            try:
                w.update(resource, namespace, name, lambda o: {**o, "metadata": {
                    **o["metadata"], "labels": {**(o["metadata"].get("labels") or {}), "team": "blue"}}}, None, None)
            finally:
                w.before_write.append(other_writer)

    world.before_write.append(other_writer)
    cluster.start_operator()
    await cluster.apply(seed_yaml("minecraft.yaml"))
    names = ["minecraft-0", "minecraft-1", "minecraft-2"]
    await cluster.eventually("all idle servers WaitToBeDeleted", lambda: all(
        cluster.gs_summary().get(n) == ("Ready", "WaitToBeDeleted") for n in names))
    assert world.conflicts >= len(names)
    for name in names:
        assert cluster.gameservers()[name]["metadata"]["labels"]["team"] == "blue"


async def test_changes_made_while_the_watch_was_down_are_not_lost(cluster: Cluster) -> None:
    operator, _, _ = cluster.start_operator()
    await cluster.apply(plain_set("arena", 2))
    await cluster.eventually("2 pods", lambda: len(cluster.world.all("Pod")) == 2)
    await operator.acting.wait()
    world: World = cluster.world
    # A pod disappears (say, its node was drained) while the operator's watches are down and the history that
    # would tell it so is gone: only a re-list can show it.
    world.delete("v1/pods", "default", "arena-1", {"gracePeriodSeconds": 0})
    world.compact()
    world.break_watches()
    await cluster.eventually("arena-1 recreated", lambda: cluster.world.find("Pod", "default", "arena-1") is not None)
    assert operator.store is not None and operator.store.informers["Pod"].stats.gone >= 1


# -- leader election ------------------------------------------------------------------------------------------


class BothActing:
    """Samples two operators all along a test; records any moment both act."""

    def __init__(self, *operators: Operator) -> None:
        self.operators = operators
        self.overlaps = 0
        self.task = asyncio.create_task(self._watch())

    async def _watch(self) -> None:
        while True:
            if sum(op.acting.is_set() for op in self.operators) > 1:
                self.overlaps += 1
            await asyncio.sleep(0.005)

    async def stop(self) -> None:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)


def lease(cluster: Cluster) -> dict[str, Any]:
    return cluster.world.find("Lease", "default", "gamekeeper-operator")["spec"]


def micro(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


async def test_leader_handover_on_clean_shutdown(cluster: Cluster) -> None:
    a, a_task, a_stop = cluster.start_operator(leader_elect=True, identity="replica-a")
    await asyncio.wait_for(a.acting.wait(), 10)
    b, b_task, _ = cluster.start_operator(leader_elect=True, identity="replica-b")
    watch = BothActing(a, b)
    await cluster.apply(plain_set("arena", 1))
    await cluster.eventually("a acts", lambda: len(cluster.world.all("GameServer")) == 1)
    await asyncio.sleep(1.0)  # several retry periods: b keeps standing by
    assert not b.acting.is_set() and b.ready() and lease(cluster)["holderIdentity"] == "replica-a"

    a_stop.set()
    await asyncio.wait_for(a_task, 10)
    await asyncio.wait_for(b.acting.wait(), 10)
    assert lease(cluster)["holderIdentity"] == "replica-b" and lease(cluster)["leaseTransitions"] == 1
    await cluster.client().patch(GAME_SERVER_SET, "default", "arena", {"spec": {"replicas": 2}})
    await cluster.eventually("b acts", lambda: len(cluster.world.all("GameServer")) == 2)
    await watch.stop()
    assert watch.overlaps == 0
    assert not b_task.done()


async def test_a_crashed_leader_is_replaced_after_the_lease_expires(cluster: Cluster) -> None:
    a, a_task, _ = cluster.start_operator(leader_elect=True, identity="replica-a")
    await asyncio.wait_for(a.acting.wait(), 10)
    b, _, _ = cluster.start_operator(leader_elect=True, identity="replica-b")
    watch = BothActing(a, b)
    await asyncio.sleep(0.5)
    assert a.elector is not None

    async def crash() -> None:  # a crashed process releases nothing
        return None

    a.elector.release = crash  # type: ignore[method-assign]
    last_renew = micro(lease(cluster)["renewTime"])
    a_task.cancel()
    await asyncio.gather(a_task, return_exceptions=True)
    await asyncio.wait_for(b.acting.wait(), 15)
    spec = lease(cluster)
    assert spec["holderIdentity"] == "replica-b"
    # b waited for the whole lease duration after the last renewal it saw (plus at most a few periods).
    waited = (micro(spec["acquireTime"]) - last_renew).total_seconds()
    assert waited >= a.config.timing.lease_duration - 0.25, waited
    await watch.stop()
    assert watch.overlaps == 0


async def test_a_leader_that_loses_its_lease_stops_acting(cluster: Cluster) -> None:
    a, a_task, _ = cluster.start_operator(leader_elect=True, identity="replica-a")
    await asyncio.wait_for(a.acting.wait(), 10)
    # Someone else holds the lease now (as after a network partition in which a could not renew).
    cluster.world.update("coordination.k8s.io/v1/leases", "default", "gamekeeper-operator",
                         lambda o: {**o, "spec": {**o["spec"], "holderIdentity": "intruder"}}, None, None)
    with pytest.raises(LeadershipLost, match="intruder"):
        await asyncio.wait_for(a_task, 10)
    assert not a.acting.is_set()
    assert lease(cluster)["holderIdentity"] == "intruder"  # a did not release someone else's lease


async def test_health_endpoints(cluster: Cluster) -> None:
    operator, _, stop = cluster.start_operator(health_port=0, health_host="127.0.0.1")
    await asyncio.wait_for(operator.acting.wait(), 10)
    client = KubeClient(f"http://127.0.0.1:{operator.health_port}")
    try:
        async with client.session.get(f"{client.host}/healthz") as resp:
            assert resp.status == 200
        async with client.session.get(f"{client.host}/readyz") as resp:
            assert resp.status == 200 and "leader" in await resp.text()
    finally:
        await client.close()
    stop.set()
