"""Host ports that cannot collide with container ports (issue 12, item 1): the OpenArena case, a container port
inside the host-port range with the proxy on every address (0.0.0.0); and a route that cannot be served shows
NotReady with its reason in `gk get gs -o wide`, with one Warning, not one per retry.

A real proxy (in this process), real sockets: the game servers listen on their pods' own 127.x.y.z addresses.
"""

from __future__ import annotations

import asyncio
import json
import socket
from pathlib import Path
from typing import Any

import pytest
import yaml

from gamekeeper.cli.printing import network_text
from gamekeeper.core.network import NETWORK_REASON_KEY, NETWORK_STATUS_KEY, host_port_mappings, pod_ip
from gamekeeper.runtime.network import PodNetwork, ProxyClient, port_is_free, serve_proxy
from gamekeeper.store.sqlite import SqliteState, SqliteStore

WILDCARD = "0.0.0.0"


def free_range(count: int) -> int:
    for _ in range(200):
        with socket.socket() as s:
            s.bind((WILDCARD, 0))
            base = int(s.getsockname()[1])
        if base + count < 65000 and all(port_is_free(WILDCARD, base + i, ("TCP", "UDP")) for i in range(count)):
            return base
    raise AssertionError("no free port range")


def gss(container_ports: str) -> dict[str, Any]:
    return {"apiVersion": "game.kruise.io/v1alpha1", "kind": "GameServerSet",
            "metadata": {"name": "arena", "namespace": "default"},
            "spec": {"replicas": 2, "network": {"networkType": "Kubernetes-HostPort", "networkConf": [
                {"name": "ContainerPorts", "value": container_ports}]},
                "gameServerTemplate": {"spec": {"containers": [{"name": "openarena", "image": "arena:1"}]}}}}


def pod(i: int) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": f"arena-{i}", "namespace": "default",
                         "labels": {"game.kruise.io/owner-gss": "arena"}},
            "spec": {"containers": [{"name": "openarena", "image": "arena:1"}]}}


class Setup:
    def __init__(self, tmp: Path, base: int, protocol: str) -> None:
        self.tmp = tmp
        self.base = base
        self.protocol = protocol
        self.state = SqliteState(tmp)
        self.store = SqliteStore(self.state)
        self.directory = tmp / "network"
        self.directory.mkdir()
        self.stop = asyncio.Event()
        self.network = PodNetwork(self.store, tmp, (base, base + 3), WILDCARD)
        self.network.client = ProxyClient(self.directory)

    async def __aenter__(self) -> Setup:
        self.server = asyncio.create_task(serve_proxy(self.directory, self.stop))
        await self.store.create(gss(f"openarena:{self.base}/{self.protocol}"))
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.network.close()
        self.stop.set()
        await self.server
        self.state.close()


def game_socket(address: str, port: int, protocol: str) -> socket.socket:
    """The game server binds its container port on its pod's address (as OpenArena's +set net_ip does)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM if protocol == "UDP" else socket.SOCK_STREAM)
    sock.bind((address, port))
    if protocol == "TCP":
        sock.listen()
    sock.setblocking(False)
    return sock


async def roundtrip(host_port: int, game: socket.socket, protocol: str) -> bytes:
    loop = asyncio.get_running_loop()
    if protocol == "UDP":
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as player:
            player.setblocking(False)
            player.sendto(b"getstatus", ("127.0.0.1", host_port))
            data, peer = await asyncio.wait_for(loop.sock_recvfrom(game, 100), 5)
            game.sendto(b"statusResponse " + data, peer)
            return await asyncio.wait_for(loop.sock_recv(player, 100), 5)
    reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", host_port), 5)
    conn, _ = await asyncio.wait_for(loop.sock_accept(game), 5)
    with conn:
        writer.write(b"getstatus")
        await writer.drain()
        data = await asyncio.wait_for(loop.sock_recv(conn, 100), 5)
        await loop.sock_sendall(conn, b"statusResponse " + data)
        answer = await asyncio.wait_for(reader.read(100), 5)
    writer.close()
    return answer


@pytest.mark.asyncio
@pytest.mark.parametrize("protocol", ["UDP", "TCP"])
async def test_a_container_port_inside_the_range_is_never_a_host_port_and_forwards(
    tmp_path: Path, protocol: str
) -> None:
    base = free_range(4)
    async with Setup(tmp_path, base, protocol) as s:
        admitted = []
        for i in range(2):
            created = await s.store.create(pod(i))
            current, waiting = await s.network.admit(created)
            assert waiting is None
            admitted.append(current)
        host_ports = [host_port_mappings(p)[0].host_port for p in admitted]
        # The game servers listen on `base` (their own addresses): the proxy could never bind 0.0.0.0:base.
        assert base not in host_ports and len(set(host_ports)) == 2
        for current, host_port in zip(admitted, host_ports, strict=True):
            assert host_port_mappings(current)[0].container_port == base
            with game_socket(pod_ip(current), base, protocol) as game:
                assert await s.network.sync(current)
                answer = await roundtrip(host_port, game, protocol)
                assert answer == b"statusResponse getstatus"
                stored = await s.store.get("Pod", "default", current["metadata"]["name"])
                assert stored is not None
                status = json.loads(stored["metadata"]["annotations"][NETWORK_STATUS_KEY])
                assert status["currentNetworkState"] == "Ready"
                assert NETWORK_REASON_KEY not in stored["metadata"]["annotations"]


@pytest.mark.asyncio
async def test_a_route_that_cannot_be_served_is_not_ready_with_its_reason_and_one_warning(tmp_path: Path) -> None:
    base = free_range(4)
    async with Setup(tmp_path, base, "UDP") as s:
        current, waiting = await s.network.admit(await s.store.create(pod(0)))
        assert waiting is None
        host_port = host_port_mappings(current)[0].host_port
        # Something else on the machine takes the host port between the allocation and the forwarding.
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as squatter:
            squatter.bind((WILDCARD, host_port))
            for _ in range(4):  # the kubelet's retries, every RETRY_SECONDS
                again = await s.store.get("Pod", "default", "arena-0")
                assert again is not None
                assert not await s.network.sync(again)
            stored = await s.store.get("Pod", "default", "arena-0")
            assert stored is not None
            annotations = stored["metadata"]["annotations"]
            status = json.loads(annotations[NETWORK_STATUS_KEY])
            assert status["currentNetworkState"] == "NotReady"
            reason = annotations[NETWORK_REASON_KEY]
            assert f"cannot bind {WILDCARD}:{host_port}/UDP" in reason
            gs_network = {**status, "desiredNetworkState": "Ready"}
            assert network_text(gs_network, stored).endswith(f"(NotReady: {reason})")
            events = [e for e in await s.store.list_events() if e.reason == "NetworkNotReady"]
            assert len(events) == 1 and events[0].count == 1, events
        # Served again once the port is free: Ready, the reason gone.
        freed = await s.store.get("Pod", "default", "arena-0")
        assert freed is not None
        assert await s.network.sync(freed)
        stored = await s.store.get("Pod", "default", "arena-0")
        assert stored is not None
        assert NETWORK_REASON_KEY not in stored["metadata"]["annotations"]
        ready = json.loads(stored["metadata"]["annotations"][NETWORK_STATUS_KEY])
        assert ready["currentNetworkState"] == "Ready"
        assert "NotReady" not in network_text({**ready, "desiredNetworkState": "Ready"}, stored)


def test_yaml_of_the_case_stays_valid() -> None:
    """The OpenArena-style YAML is accepted (the fix is in allocation, not a new rule for users)."""
    from gamekeeper.api.loading import load_documents

    assert load_documents(yaml.safe_dump(gss("openarena:27960/UDP")), "arena.yaml")
