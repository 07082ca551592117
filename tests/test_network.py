"""Kubernetes-HostPort in embedded mode: allocation, pod addresses, the forwarding proxy, networkStatus, -o wide.

Real sockets on 127.0.0.0/8 only: host ports listen on 127.0.0.1 (GAMEKEEPER_HOST_PORT_ADDRESS), game servers on
their pod's own 127.x.y.z address.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import textwrap
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from gamekeeper.api.loading import InvalidObject, load_documents, parse_container_ports
from gamekeeper.api.models import GS_NETWORK_DISABLED_KEY
from gamekeeper.cli.printing import GS_HEADERS, GS_WIDE_HEADERS, gs_row, ports_text
from gamekeeper.core.gameserver import pod_to_gs
from gamekeeper.core.network import (
    NETWORK_CONF_KEY,
    NETWORK_STATUS_KEY,
    NETWORK_TYPE_KEY,
    HostPortAllocator,
    HostPortMapping,
    PortRequest,
    choose_pod_ip,
    game_server_network_status,
    host_port_mappings,
    loopback_address,
    parse_port_range,
    pod_ip,
    pod_network_status,
    port_requests,
    with_host_ports,
)
from gamekeeper.runtime.images import Image, ImageMap
from gamekeeper.runtime.local import container_environment
from gamekeeper.runtime.network import PodNetwork, Proxy, ProxyClient, port_is_free, serve_proxy
from gamekeeper.store.sqlite import SqliteState, SqliteStore
from tests.fleet import Fleet, wait_for
from tests.test_resilience import custom_images

T0 = datetime(2025, 1, 1, tzinfo=UTC)


def gss_yaml(network: dict[str, Any], containers: list[str] | None = None) -> str:
    doc = {"apiVersion": "game.kruise.io/v1alpha1", "kind": "GameServerSet", "metadata": {"name": "net"},
           "spec": {"replicas": 1, "network": network, "gameServerTemplate": {"spec": {"containers": [
               {"name": name, "image": "echo:1"} for name in containers or ["main"]]}}}}
    return yaml.safe_dump(doc, sort_keys=False)


def hostport_network(*values: str, name: str = "ContainerPorts") -> dict[str, Any]:
    return {"networkType": "Kubernetes-HostPort", "networkConf": [{"name": name, "value": v} for v in values]}


def problems_of(text: str) -> list[str]:
    try:
        objects = load_documents(text, "f.yaml")
    except InvalidObject as err:
        return err.problems
    return [f"warning: {w}" for o in objects for w in o.warnings]


# --- validation at apply time ----------------------------------------------------------------------------------


def test_unknown_network_type_is_refused_naming_the_field_and_the_supported_types() -> None:
    problems = problems_of(gss_yaml({"networkType": "AlibabaCloud-SLB"}))
    assert problems == ['f.yaml: spec.network.networkType: "AlibabaCloud-SLB" is not supported in embedded mode '
                        "(supported: Kubernetes-HostPort); other types need their cloud provider's OpenKruiseGame "
                        "plugin in a Kubernetes cluster"]
    assert "did you mean \"Kubernetes-HostPort\"" in problems_of(gss_yaml({"networkType": "kubernetes-hostport"}))[0]
    assert "spec.network.networkType: required" in problems_of(gss_yaml({"networkConf": []}))[0]


@pytest.mark.parametrize(("value", "expected"), [
    ("main:7777/tcp", 'protocol "tcp" is not one of TCP, UDP, TCPUDP (protocol names are upper-case: TCP)'),
    ("main:7777/SCTP", "SCTP is not forwarded in embedded mode"),
    ("main:70000", 'port "70000" is not a number from 1 to 65535 or SameAsHost'),
    ("main", "expected containerName:port/protocol"),
    ("other:7777", 'container "other" is not in spec.gameServerTemplate (containers: main)'),
    ("main:7777/TCPUDP,7777/UDP", "7777/UDP is listed twice"),
])
def test_bad_container_ports_are_refused(value: str, expected: str) -> None:
    problems = problems_of(gss_yaml(hostport_network(value)))
    assert len(problems) == 1 and problems[0].startswith("f.yaml: spec.network.networkConf[0].value: ")
    assert expected in problems[0]


def test_network_warnings_and_a_valid_network() -> None:
    assert problems_of(gss_yaml({"networkType": "Kubernetes-HostPort"})) == [
        'warning: f.yaml: spec.network.networkConf: no ContainerPorts: Kubernetes-HostPort allocates no host port '
        'and the network never becomes Ready (as upstream); add e.g. {name: ContainerPorts, value: '
        '"main:7777/TCP"}']
    typo = problems_of(gss_yaml(hostport_network("x", name="ContainerPort")))
    assert 'is not a Kubernetes-HostPort parameter (known: ContainerPorts); did you mean "ContainerPorts"?' in typo[0]
    assert problems_of(gss_yaml(hostport_network("main:7777/UDP,SameAsHost"))) == []


def test_parse_container_ports_as_upstream() -> None:
    assert parse_container_ports("game:25565") == ("game", [(25565, "TCP")])
    assert parse_container_ports("game:SameAsHost/UDP,80/TCPUDP") == ("game", [(None, "UDP"), (80, "TCPUDP")])


def test_port_range() -> None:
    assert parse_port_range("8000-9000") == (8000, 9000)
    for bad in ("8000", "9000-8000", "0-10", "a-b", "1-70000"):
        with pytest.raises(ValueError):
            parse_port_range(bad)


# --- the pure parts ------------------------------------------------------------------------------------------


def test_port_requests_follow_container_order_and_skip_what_cannot_be_read() -> None:
    conf = [{"name": "ContainerPorts", "value": "side:9000/UDP"}, {"name": "ContainerPorts", "value": "main:7777,7777"},
            {"name": "ContainerPorts", "value": "ghost:1"}, {"name": "ContainerPorts", "value": "bad"},
            {"name": "Other", "value": "main:1"}]
    containers = [{"name": "main"}, {"name": "side"}]
    assert port_requests(conf, containers) == [PortRequest("main", 7777, "TCP"), PortRequest("side", 9000, "UDP")]
    assert PortRequest("main", None, "TCPUDP").protocols == ("TCP", "UDP")


def test_host_ports_are_written_into_the_container_ports_and_read_back() -> None:
    containers = [{"name": "main", "image": "x", "ports": [{"name": "game", "containerPort": 7777, "protocol": "UDP"}]}]
    requests = [PortRequest("main", 7777, "TCPUDP"), PortRequest("main", None, "TCP")]
    out = with_host_ports(containers, requests, [8001, 8002])
    assert out[0]["ports"] == [
        {"name": "game", "containerPort": 7777, "protocol": "UDP", "hostPort": 8001},
        {"containerPort": 7777, "hostPort": 8001, "protocol": "TCP"},
        {"containerPort": 8002, "hostPort": 8002, "protocol": "TCP"},
    ]
    assert "hostPort" not in containers[0]["ports"][0]  # the input is left alone
    pod = {"metadata": {"annotations": {NETWORK_TYPE_KEY: "Kubernetes-HostPort"}}, "spec": {"containers": out}}
    assert host_port_mappings(pod) == [HostPortMapping("main", 7777, 8001, "UDP"),
                                       HostPortMapping("main", 7777, 8001, "TCP"),
                                       HostPortMapping("main", 8002, 8002, "TCP")]
    assert host_port_mappings({"spec": {"containers": out}}) == []  # not a HostPort pod: no forwarding


def test_allocator_gives_distinct_free_ports_next_fit_and_takes_them_back() -> None:
    alloc = HostPortAllocator(8000, 8004)
    busy = {8000}  # taken on the machine by someone else
    free = lambda port, protocols: port not in busy  # noqa: E731
    assert alloc.allocate("a", [("TCP",), ("UDP",)], free) == [8001, 8002]
    assert alloc.allocate("b", [("TCP",)], free) == [8003]
    assert alloc.allocate("c", [("TCP",), ("TCP",)], free) is None  # only 8004 left: nothing is claimed
    assert alloc.ports_of("c") == []
    assert alloc.release("a") == [8001, 8002]
    assert alloc.allocate("c", [("TCP",)], free) == [8004]  # next-fit: after the last given, not the one just freed
    assert alloc.allocate("d", [("TCP",)], free) == [8001]  # then around
    restarted = HostPortAllocator(8000, 8004)
    restarted.claim("b", [8003])
    restarted.claim("old", [9500])  # a port outside today's range still belongs to its pod
    assert restarted.allocate("e", [("TCP",)] * 3, lambda p, _: True) == [8000, 8001, 8002]
    assert restarted.allocate("f", [("TCP",)], lambda p, _: True) == [8004]
    assert restarted.allocate("g", [("TCP",)], lambda p, _: True) is None


def test_pod_addresses() -> None:
    address = loopback_address("uid-1")
    octets = [int(x) for x in address.split(".")]
    assert octets[0] == 127 and octets[1] != 0 and address == loopback_address("uid-1")
    assert address != loopback_address("uid-2")
    taken = {address, loopback_address("uid-1", 1)}
    assert choose_pod_ip("uid-1", taken.__contains__) == loopback_address("uid-1", 2)
    plain = {"metadata": {"uid": "u", "annotations": {}}, "status": {"podIP": "127.0.0.1"}}
    assert pod_ip(plain) == "127.0.0.1"  # no network: as before
    networked = {"metadata": {"uid": "u", "annotations": {NETWORK_TYPE_KEY: "Kubernetes-HostPort"}}}
    assert pod_ip(networked) == loopback_address("u")
    networked["metadata"]["annotations"][NETWORK_STATUS_KEY] = json.dumps(
        {"internalAddresses": [{"ip": "127.5.6.7"}]})
    assert pod_ip(networked) == "127.5.6.7"


def network_pod(status: dict[str, Any] | None, disabled: bool = False) -> dict[str, Any]:
    annotations = {NETWORK_TYPE_KEY: "Kubernetes-HostPort", NETWORK_CONF_KEY: "[]"}
    if status is not None:
        annotations[NETWORK_STATUS_KEY] = json.dumps(status)
    return {"metadata": {"name": "net-0", "namespace": "default", "uid": "u", "annotations": annotations,
                         "labels": {GS_NETWORK_DISABLED_KEY: "true" if disabled else "false"}},
            "spec": {"containers": [{"name": "main"}]}, "status": {}}


def test_game_server_network_status_follows_the_pod() -> None:
    assert game_server_network_status(None, {"metadata": {}}, T0) is None
    first = game_server_network_status(None, network_pod(None), T0)
    assert first == {"networkType": "Kubernetes-HostPort", "internalAddresses": [], "externalAddresses": [],
                     "desiredNetworkState": "Ready", "currentNetworkState": "NotReady",
                     "createTime": "2025-01-01T00:00:00Z", "lastTransitionTime": "2025-01-01T00:00:00Z"}
    mapping = [HostPortMapping("main", 7777, 8001, "TCP")]
    ready = pod_network_status("127.1.2.3", "127.0.0.1", mapping, ready=True)
    t1, t2, t3 = (T0 + timedelta(seconds=s) for s in (1, 2, 3))
    second = game_server_network_status(first, network_pod(ready), t1)
    assert second is not None and second["currentNetworkState"] == "Ready"
    assert second["externalAddresses"] == [{"ip": "127.0.0.1", "ports": [{"name": "main-7777", "protocol": "TCP",
                                                                          "port": 8001}]}]
    assert second["internalAddresses"][0]["ip"] == "127.1.2.3"
    assert second["createTime"] == "2025-01-01T00:00:00Z" and second["lastTransitionTime"] == "2025-01-01T00:00:01Z"
    assert game_server_network_status(second, network_pod(ready), t2) == second  # nothing changed: same object
    disabled = game_server_network_status(second, network_pod(ready, disabled=True), t3)
    assert disabled is not None and disabled["desiredNetworkState"] == "NotReady"
    assert disabled["lastTransitionTime"] == "2025-01-01T00:00:03Z"
    assert ports_text(second) == "127.0.0.1:8001->7777/TCP"


def test_pod_to_gs_writes_network_status_and_removes_it_with_the_network() -> None:
    gs: dict[str, Any] = {"metadata": {"name": "net-0", "namespace": "default"}, "spec": {"opsState": "None"},
                          "status": {}}
    pod = network_pod(pod_network_status("127.1.2.3", "127.0.0.1", [], ready=False))
    result = pod_to_gs(gs, pod, [], None, T0)
    assert result.status is not None and result.status["networkStatus"]["currentNetworkState"] == "NotReady"
    gs["status"] = result.status
    assert pod_to_gs(gs, pod, [], None, T0 + timedelta(seconds=5)).status is None  # steady: no write
    plain = {**pod, "metadata": {**pod["metadata"], "annotations": {}}}
    gone = pod_to_gs(gs, plain, [], None, T0)
    assert gone.status is not None and gone.status["networkStatus"] is None  # merge patch: removed
    without = {**gs, "status": {k: v for k, v in gone.status.items() if k != "networkStatus"}}
    assert pod_to_gs(without, plain, [], None, T0).status is None


def test_wide_table_gains_ports_and_the_normal_table_is_unchanged() -> None:
    assert GS_HEADERS == ["NAME", "STATE", "OPSSTATE", "DP", "UP", "AGE"]
    assert [*GS_HEADERS, "GSS", "RESTARTS", "PORTS", "RESULTS", "RECOVERY"] == GS_WIDE_HEADERS
    ports = [{"name": "main-7777", "protocol": p, "port": 7777} for p in ("TCP", "UDP")]
    network = {"internalAddresses": [{"ip": "127.1.2.3", "ports": ports}],
               "externalAddresses": [{"ip": "0.0.0.0", "ports": [{**p, "port": 8001} for p in ports]}]}
    gs = {"metadata": {"name": "a-0", "creationTimestamp": "2025-01-01T00:00:00Z"}, "spec": {},
          "status": {"networkStatus": network}}
    assert gs_row(gs, T0, wide=True)[8] == "0.0.0.0:8001->7777/TCP,0.0.0.0:8001->7777/UDP"
    assert len(gs_row(gs, T0)) == len(GS_HEADERS)
    assert ports_text(None) == "<none>"


def test_container_environment_has_the_pod_address_and_annotations() -> None:
    images = ImageMap(None, {"x:1": Image("x:1", Path("/tmp"), ["true"])})
    pod = network_pod({"internalAddresses": [{"ip": "127.9.9.9"}]})
    container = {"name": "main", "image": "x:1", "env": [
        {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
        {"name": "NET", "valueFrom": {"fieldRef": {"fieldPath": f"metadata.annotations['{NETWORK_STATUS_KEY}']"}}}]}
    env = container_environment(pod, container, images)
    assert env["POD_IP"] == env["IP"] == "127.9.9.9"
    assert json.loads(env["NET"]) == {"internalAddresses": [{"ip": "127.9.9.9"}]}


# --- the proxy, in this process ------------------------------------------------------------------------------


def free_ports(count: int, address: str = "127.0.0.1") -> int:
    """The first of `count` consecutive ports free for TCP and UDP on `address`."""
    for _ in range(200):
        with socket.socket() as s:
            s.bind((address, 0))
            base = int(s.getsockname()[1])
        if base + count < 65000 and all(port_is_free(address, base + i, ("TCP", "UDP")) for i in range(count)):
            return base
    raise AssertionError("no free port range")


class EchoServer:
    """TCP: says its name, then echoes lines. UDP: answers `name:data`."""

    def __init__(self, address: str, port: int, name: str) -> None:
        self.address, self.port, self.name = address, port, name
        self.server: asyncio.Server | None = None
        self.udp: asyncio.DatagramTransport | None = None

    async def __aenter__(self) -> EchoServer:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.write(f"{self.name}\n".encode())
            while line := await reader.readline():
                writer.write(line)
            writer.close()

        self.server = await asyncio.start_server(handle, self.address, self.port)
        name = self.name.encode()

        class Udp(asyncio.DatagramProtocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                self.transport = transport

            def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
                self.transport.sendto(name + b":" + data, addr)  # type: ignore[attr-defined]

        self.udp, _ = await asyncio.get_running_loop().create_datagram_endpoint(
            Udp, local_addr=(self.address, self.port))
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None and self.udp is not None
        self.server.close()
        self.udp.close()


async def tcp_hello(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, str]:
    reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 5)
    return reader, writer, (await asyncio.wait_for(reader.readline(), 5)).decode().strip()


async def udp_ask(port: int, data: bytes, sock: socket.socket | None = None, timeout: float = 2.0) -> bytes | None:
    own = sock is None
    sock = sock or socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.setblocking(False)
        sock.sendto(data, ("127.0.0.1", port))
        loop = asyncio.get_running_loop()
        try:
            return await asyncio.wait_for(loop.sock_recv(sock, 65536), timeout)
        except TimeoutError:
            return None
    finally:
        if own:
            sock.close()


def test_proxy_forwards_tcp_and_udp_and_stops_taking_new_players_when_disabled() -> None:
    async def main() -> None:
        host = free_ports(1)
        target = ("127.44.0.9", free_ports(1, "127.44.0.9"))
        proxy = Proxy()
        route = [{"address": "127.0.0.1", "hostPort": host, "protocol": p, "target": list(target)}
                 for p in ("TCP", "UDP")]
        async with EchoServer(*target, "gs-0"):
            reply = await proxy.handle({"op": "set", "pod": "default/gs-0", "uid": "u", "routes": route,
                                        "accept": True})
            assert reply == {"ok": True, "errors": {}}
            reader, writer, name = await tcp_hello(host)
            assert name == "gs-0"
            udp_client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            assert await udp_ask(host, b"hi", udp_client) == b"gs-0:hi"

            await proxy.handle({"op": "set", "pod": "default/gs-0", "uid": "u", "routes": route, "accept": False})
            with pytest.raises(ConnectionRefusedError):
                await tcp_hello(host)
            writer.write(b"still here\n")
            assert await asyncio.wait_for(reader.readline(), 5) == b"still here\n"  # the player stays
            assert await udp_ask(host, b"again", udp_client) == b"gs-0:again"  # a known UDP client too
            assert await udp_ask(host, b"new", timeout=0.5) is None  # a new one is not let in
            stats = await proxy.handle({"op": "stats"})
            assert stats["pods"]["default/gs-0"][f"{host}/TCP"] == {
                "listening": False, "accepting": False, "connections": 1, "error": None}

            await proxy.handle({"op": "set", "pod": "default/gs-0", "uid": "u", "routes": route, "accept": True})
            _, w2, name = await tcp_hello(host)
            assert name == "gs-0"
            w2.close()
            # Another pod cannot have the same host port.
            other = await proxy.handle({"op": "set", "pod": "default/gs-1", "uid": "v", "routes": route,
                                        "accept": True})
            assert f"{host}/TCP" in other["errors"]
            await proxy.handle({"op": "remove", "pod": "default/gs-0", "uid": "u"})
            assert await reader.read() == b""  # removing a pod closes its connections
            with pytest.raises(ConnectionRefusedError):
                await tcp_hello(host)
            writer.close()
            udp_client.close()
            await proxy.close()

    asyncio.run(main())


def test_proxy_reports_a_port_it_cannot_bind() -> None:
    async def main() -> None:
        host = free_ports(1)
        with socket.socket() as blocker:
            blocker.bind(("127.0.0.1", host))
            blocker.listen()
            proxy = Proxy()
            reply = await proxy.handle({"op": "set", "pod": "p", "uid": "u", "accept": True, "routes": [
                {"address": "127.0.0.1", "hostPort": host, "protocol": "TCP", "target": ["127.3.3.3", 1]}]})
            assert reply["errors"] == {f"{host}/TCP": f"cannot listen on 127.0.0.1:{host}/TCP: Address already in use"}
            await proxy.close()

    asyncio.run(main())


def test_pod_network_admits_pods_with_distinct_ports_and_reads_them_back(tmp_path: Path) -> None:
    async def main() -> None:
        base = free_ports(4)
        state = SqliteState(tmp_path)
        store = SqliteStore(state)
        gss = yaml.safe_load(gss_yaml(hostport_network("main:7777/TCPUDP")))
        gss["metadata"]["namespace"] = "default"
        await store.create(gss)
        pods = []
        for i in range(2):
            pods.append(await store.create({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": f"net-{i}", "namespace": "default", "labels": {"game.kruise.io/owner-gss": "net"}},
                "spec": {"containers": [{"name": "main", "image": "echo:1"}]}}))
        stop = asyncio.Event()
        directory = tmp_path / "network"
        directory.mkdir()
        server = asyncio.create_task(serve_proxy(directory, stop))
        with socket.socket() as blocker:
            blocker.bind(("127.0.0.1", base))
            blocker.listen()
            network = PodNetwork(store, tmp_path, (base, base + 3), "127.0.0.1")
            network.client = ProxyClient(directory)  # talks to the proxy in this process (start=False below)
            admitted = []
            for pod in pods:
                pod, waiting = await network.admit(pod)
                assert waiting is None
                admitted.append(pod)
            ports = [host_port_mappings(p)[0].host_port for p in admitted]
            assert ports == [base + 1, base + 2]  # base is busy on the machine: skipped
            assert [m.protocol for m in host_port_mappings(admitted[0])] == ["TCP", "UDP"]
            ips = [pod_ip(p) for p in admitted]
            assert len(set(ips)) == 2 and all(ip.startswith("127.") and ip != "127.0.0.1" for ip in ips)
            assert admitted[0]["metadata"]["annotations"][NETWORK_TYPE_KEY] == "Kubernetes-HostPort"

            async with EchoServer(ips[0], 7777, "net-0"):
                assert await network.sync(admitted[0])
                current = await store.get("Pod", "default", "net-0")
                assert current is not None
                status = json.loads(current["metadata"]["annotations"][NETWORK_STATUS_KEY])
                assert status["currentNetworkState"] == "Ready"
                _, writer, name = await tcp_hello(base + 1)
                assert name == "net-0"
                writer.close()

            # A controller restart: a new PodNetwork reads the allocations back and gives the next pod another port.
            again = PodNetwork(store, tmp_path, (base, base + 3), "127.0.0.1")
            again.client = ProxyClient(directory)
            await again.start(await store.list("Pod"))
            uids = [p["metadata"]["uid"] for p in pods]
            assert again.allocator.owners == {base + 1: uids[0], base + 2: uids[1]}
            third = await store.create({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": "net-2", "namespace": "default", "labels": {"game.kruise.io/owner-gss": "net"}},
                "spec": {"containers": [{"name": "main", "image": "echo:1"}]}})
            third, waiting = await again.admit(third)
            assert waiting is None and host_port_mappings(third)[0].host_port == base + 3
            fourth = await store.create({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": "net-3", "namespace": "default", "labels": {"game.kruise.io/owner-gss": "net"}},
                "spec": {"containers": [{"name": "main", "image": "echo:1"}]}})
            fourth, waiting = await again.admit(fourth)
            assert waiting is not None and "no free host port" in waiting
            await again.release("default", "net-0", pods[0]["metadata"]["uid"])
            fourth, waiting = await again.admit(fourth)
            assert waiting is None and host_port_mappings(fourth)[0].host_port == base + 1
            await network.close()
            await again.close()
        stop.set()
        await server
        state.close()

    asyncio.run(main())


# --- end to end ----------------------------------------------------------------------------------------------

ECHO = textwrap.dedent("""\
    import os, socket, threading
    ip, name, port = os.environ["POD_IP"], os.environ["POD_NAME"], 7777
    tcp = socket.socket()
    tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    tcp.bind((ip, port))
    tcp.listen()
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind((ip, port))
    print(f"listening on {ip}:{port}", flush=True)

    def serve_udp():
        while True:
            data, addr = udp.recvfrom(65536)
            udp.sendto(name.encode() + b":" + data, addr)

    def serve(conn):
        with conn:
            conn.sendall(f"{name}\\n".encode())
            for line in conn.makefile("rb"):
                conn.sendall(line)

    threading.Thread(target=serve_udp, daemon=True).start()
    while True:
        conn, _ = tcp.accept()
        threading.Thread(target=serve, args=(conn,), daemon=True).start()
    """)


def echo_fleet(fleet: Fleet, first: int, last: int, replicas: int) -> None:
    images = custom_images(fleet, {"echo:1": {"command": ["python3", "echo.py"]}})
    (images.parent / "images" / "echo_1" / "echo.py").write_text(ECHO)
    fleet.env["GAMEKEEPER_HOST_PORT_RANGE"] = f"{first}-{last}"
    fleet.env["GAMEKEEPER_HOST_PORT_ADDRESS"] = "127.0.0.1"
    fleet.start()
    doc = yaml.safe_load(gss_yaml(hostport_network("main:7777/TCPUDP")))
    doc["spec"]["replicas"] = replicas
    fleet.apply_yaml(doc)


def network(gs: dict[str, Any]) -> dict[str, Any]:
    return dict((gs.get("status") or {}).get("networkStatus") or {})


def host_port(gs: dict[str, Any]) -> int:
    return int(network(gs)["externalAddresses"][0]["ports"][0]["port"])


def ready(gs: dict[str, Any]) -> bool:
    n = network(gs)
    return n.get("currentNetworkState") == "Ready" and n.get("desiredNetworkState") == "Ready"


def hello(port: int, timeout: float = 5.0) -> tuple[socket.socket, str]:
    """Connect through the proxy and read the server's greeting.

    The proxy accepts as soon as its route exists; a game server that has not bound its port yet makes it
    close the connection, so that case is tried again (a refused connection is not: the proxy is not there).
    """
    deadline = time.monotonic() + 10
    while True:
        sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        line = b""
        while not line.endswith(b"\n"):
            chunk = sock.recv(1)
            if not chunk:
                break
            line += chunk
        if line.endswith(b"\n"):
            return sock, line.decode().strip()
        sock.close()
        if time.monotonic() > deadline:
            raise ConnectionResetError("closed before the greeting")
        time.sleep(0.1)


def echo(sock: socket.socket, text: str) -> str:
    sock.sendall(text.encode() + b"\n")
    data = b""
    while not data.endswith(b"\n"):
        chunk = sock.recv(1024)
        if not chunk:
            raise ConnectionResetError("closed")
        data += chunk
    return data.decode().strip()


def udp(port: int, data: bytes, sock: socket.socket | None = None, timeout: float = 3.0) -> bytes | None:
    s = sock or socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(timeout)
    try:
        s.sendto(data, ("127.0.0.1", port))
        return s.recv(65536)
    except TimeoutError:
        return None
    finally:
        if sock is None:
            s.close()


def refused(port: int) -> bool:
    try:
        sock, _ = hello(port, timeout=2)
    except ConnectionRefusedError:
        return True
    except OSError:
        return False
    sock.close()
    return False


@pytest.mark.slow
def test_host_ports_route_players_and_network_disabled_turns_new_ones_away(fleet: Fleet) -> None:
    base = free_ports(3)
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", base))  # someone else's server: the first port of the range is not free
    blocker.listen()
    try:
        echo_fleet(fleet, base, base + 2, replicas=2)
        gs = fleet.wait_gs("both networks Ready", lambda g: len(g) == 2 and all(ready(x) for x in g.values()))
        ports = {name: host_port(g) for name, g in gs.items()}
        assert sorted(ports.values()) == [base + 1, base + 2], ports  # distinct, and the busy one skipped
        internal = {name: network(g)["internalAddresses"][0]["ip"] for name, g in gs.items()}
        assert len(set(internal.values())) == 2 and "127.0.0.1" not in internal.values()
        pods = fleet.pods()
        assert {n: p["status"]["podIP"] for n, p in pods.items()} == internal
        assert network(gs["net-0"])["networkType"] == "Kubernetes-HostPort"

        wide = fleet.gk("get", "gs", "-o", "wide").stdout
        assert wide.splitlines()[0].split()[-3:-1] == ["PORTS", "RESULTS"]
        for name, port in ports.items():
            line = next(x for x in wide.splitlines() if x.startswith(name))
            assert f"127.0.0.1:{port}->7777/TCP,127.0.0.1:{port}->7777/UDP" in line
        assert "PORTS" not in fleet.gk("get", "gs").stdout

        for name, port in ports.items():  # each host port reaches its own game server
            sock, greeting = hello(port)
            assert greeting == name
            sock.close()
            assert udp(port, b"ping") == f"{name}:ping".encode()

        # networkDisabled: players already there stay, new ones are refused; then let in again.
        player, _ = hello(ports["net-0"])
        udp_player = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        assert udp(ports["net-0"], b"hi", udp_player) == b"net-0:hi"
        fleet.gk("patch", "gs", "net-0", "-p", '{"spec":{"networkDisabled":true}}')
        fleet.wait_gs("net-0 network NotReady", lambda g: network(g["net-0"]).get("currentNetworkState") == "NotReady"
                      and network(g["net-0"]).get("desiredNetworkState") == "NotReady")
        assert refused(ports["net-0"])
        assert echo(player, "still playing") == "still playing"
        assert udp(ports["net-0"], b"still", udp_player) == b"net-0:still"
        assert udp(ports["net-0"], b"newcomer", timeout=1) is None
        sock, greeting = hello(ports["net-1"])  # the other server is not affected
        assert greeting == "net-1"
        sock.close()
        fleet.gk("patch", "gs", "net-0", "-p", '{"spec":{"networkDisabled":false}}')
        fleet.wait_gs("net-0 network Ready again", lambda g: ready(g["net-0"]))
        sock, greeting = hello(ports["net-0"])
        assert greeting == "net-0"
        sock.close()

        # A controller restart: the proxy goes on (players stay connected), and every pod keeps its ports.
        fleet.kill_controller(signal.SIGKILL)
        assert echo(player, "during the restart") == "during the restart"
        sock, greeting = hello(ports["net-1"])
        assert greeting == "net-1"
        sock.close()
        fleet.start()
        gs = fleet.wait_gs("Ready after the restart", lambda g: len(g) == 2 and all(ready(x) for x in g.values()))
        assert {name: host_port(g) for name, g in gs.items()} == ports
        assert echo(player, "after the restart") == "after the restart"
        player.close()
        udp_player.close()
    finally:
        blocker.close()


@pytest.mark.slow
def test_host_ports_wait_when_none_is_free_and_are_released_on_scale_in(fleet: Fleet) -> None:
    base = free_ports(2)
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", base))
    blocker.listen()
    try:
        echo_fleet(fleet, base, base + 1, replicas=2)
        fleet.wait_gs("one Ready", lambda g: len(g) == 2 and ready(g["net-0"]))
        assert host_port(fleet.gameservers()["net-0"]) == base + 1

        def pending() -> bool:
            pod = fleet.pods().get("net-1") or {}
            conditions = {c["type"]: c for c in (pod.get("status") or {}).get("conditions") or []}
            scheduled = conditions.get("PodScheduled") or {}
            return scheduled.get("status") == "False" and "no free host port" in scheduled.get("message", "")

        wait_for(pending, "net-1 Pending: no free host port", 30)
        pod = fleet.pods()["net-1"]
        assert pod["status"]["phase"] == "Pending" and pod["status"]["containerStatuses"] == []
        assert "FailedScheduling" in fleet.gk("events").stdout
        blocker.close()  # the port becomes free: the waiting pod takes it
        gs = fleet.wait_gs("net-1 Ready", lambda g: ready(g["net-1"]))
        assert host_port(gs["net-1"]) == base
        sock, greeting = hello(base)
        assert greeting == "net-1"
        sock.close()

        fleet.gk("scale", "gss", "net", "--replicas", "1")
        gs = fleet.wait_gs("scaled in", lambda g: len(g) == 1)
        (kept,) = gs
        freed = base if kept == "net-0" else base + 1
        wait_for(lambda: refused(freed), "the removed server's host port closed", 30)
        fleet.gk("scale", "gss", "net", "--replicas", "2")
        gs = fleet.wait_gs("back to two", lambda g: len(g) == 2 and all(ready(x) for x in g.values()))
        new = next(n for n in gs if n != kept)
        assert host_port(gs[new]) == freed  # released, and given to the new pod
        sock, greeting = hello(freed)
        assert greeting == new
        sock.close()

        # The proxy dies: the controller starts another and tells it every route again.
        pid_file = fleet.state_dir / "network" / "proxy.pid"
        old_pid = int(pid_file.read_text())
        os.kill(old_pid, signal.SIGKILL)

        def served_again() -> bool:
            try:
                sock, greeting = hello(freed, timeout=2)
            except OSError:
                return False
            sock.close()
            return greeting == new and pid_file.exists() and int(pid_file.read_text()) != old_pid

        wait_for(served_again, "a new proxy forwarding again", 30)
    finally:
        with contextlib.suppress(OSError):
            blocker.close()
