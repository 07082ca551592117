"""Network decisions as pure functions: OpenKruiseGame's Kubernetes-HostPort plugin, for one machine.

Upstream (cloudprovider/kubernetes/hostPort.go) allocates host ports from a range when a pod is created, writes
them into the pod's container ports (`hostPort`), and publishes the pod's `game.kruise.io/network-status`
annotation; the GameServer controller copies that into `status.networkStatus`. The same records are kept here,
so a restarted controller rebuilds everything from the pod records. What needs the machine (is this port free?
listening, forwarding) is in runtime/network.py.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from gamekeeper.api.keys import NETWORK_REASON_KEY as NETWORK_REASON_KEY
from gamekeeper.api.loading import parse_container_ports
from gamekeeper.api.models import GS_NETWORK_DISABLED_KEY
from gamekeeper.api.times import format_time

NETWORK_TYPE_KEY = "game.kruise.io/network-type"
NETWORK_CONF_KEY = "game.kruise.io/network-conf"
NETWORK_STATUS_KEY = "game.kruise.io/network-status"
HOST_PORT_NETWORK = "Kubernetes-HostPort"
CONTAINER_PORTS_KEY = "ContainerPorts"
NETWORK_READY = "Ready"
NETWORK_NOT_READY = "NotReady"
DEFAULT_PORT_RANGE = (8000, 9000)  # upstream's [kubernetes.hostPort] min_port / max_port
NO_NETWORK_IP = "127.0.0.1"  # what a pod without a network keeps (as before networks existed)


def _annotations(pod: Mapping[str, Any]) -> Mapping[str, str]:
    return (pod.get("metadata") or {}).get("annotations") or {}


def _labels(pod: Mapping[str, Any]) -> Mapping[str, str]:
    return (pod.get("metadata") or {}).get("labels") or {}


def parse_port_range(text: str) -> tuple[int, int]:
    """`8000-9000` → (8000, 9000); ValueError with the reason otherwise."""
    low, sep, high = text.strip().partition("-")
    if not sep or not low.strip().isdigit() or not high.strip().isdigit():
        raise ValueError(f"{text!r}: expected FIRST-LAST, e.g. 8000-9000")
    first, last = int(low), int(high)
    if not 1 <= first <= last <= 65535:
        raise ValueError(f"{text!r}: expected 1 <= FIRST <= LAST <= 65535")
    return first, last


# --- what a pod asks for -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PortRequest:
    """One ContainerPorts item: one host port for `port` (None: SameAsHost) of `container`."""

    container: str
    port: int | None
    protocol: str  # TCP, UDP or TCPUDP

    @property
    def protocols(self) -> tuple[str, ...]:
        return ("TCP", "UDP") if self.protocol == "TCPUDP" else (self.protocol,)


def network_of(pod: Mapping[str, Any]) -> tuple[str, list[dict[str, Any]]] | None:
    """The pod's network type and conf (from its annotations, as upstream's NetworkManager reads them)."""
    annotations = _annotations(pod)
    network_type = annotations.get(NETWORK_TYPE_KEY)
    if network_type is None:
        return None
    try:
        conf = json.loads(annotations.get(NETWORK_CONF_KEY) or "[]")
    except ValueError:
        conf = []
    return network_type, [c for c in conf or [] if isinstance(c, dict)]


def port_requests(conf: Sequence[Mapping[str, Any]], containers: Sequence[Mapping[str, Any]]) -> list[PortRequest]:
    """Upstream parseConfig: ContainerPorts of containers the pod has, in the pod's container order.

    A value that cannot be read is skipped (apply refuses it, so only a hand-made pod can have one); a second
    ContainerPorts for one container replaces the first, and a port listed twice is asked for once.
    """
    by_container: dict[str, list[tuple[int | None, str]]] = {}
    for param in conf:
        if param.get("name") != CONTAINER_PORTS_KEY:
            continue
        try:
            name, ports = parse_container_ports(str(param.get("value", "")))
        except ValueError:
            continue
        by_container[name] = ports
    out: list[PortRequest] = []
    for container in containers:
        seen: set[tuple[int | None, str]] = set()
        for port, protocol in by_container.get(str(container.get("name")), []):
            if port is not None and (port, protocol) in seen:
                continue
            seen.add((port, protocol))
            out.append(PortRequest(str(container["name"]), port, protocol))
    return out


# --- the record in the pod -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class HostPortMapping:
    container: str
    container_port: int
    host_port: int
    protocol: str  # TCP or UDP

    @property
    def name(self) -> str:
        return f"{self.container}-{self.container_port}"  # upstream's NetworkPort name


def with_host_ports(
    containers: Sequence[Mapping[str, Any]], requests: Sequence[PortRequest], host_ports: Sequence[int]
) -> list[dict[str, Any]]:
    """The pod's containers with each request's host port written into its container ports (upstream OnPodAdded).

    A container port the template already declares (same number and protocol) gets the `hostPort`; otherwise an
    entry is added. TCPUDP is two entries, TCP and UDP, on one host port; SameAsHost uses the host port as the
    container port.
    """
    out = [dict(c) for c in containers]
    for request, host_port in zip(requests, host_ports, strict=True):
        container = next(c for c in out if c.get("name") == request.container)
        ports = [dict(p) for p in container.get("ports") or []]
        container_port = request.port if request.port is not None else host_port
        for protocol in request.protocols:
            entry = next((p for p in ports if p.get("containerPort") == container_port
                          and (p.get("protocol") or "TCP") == protocol), None)
            if entry is None:
                ports.append({"containerPort": container_port, "hostPort": host_port, "protocol": protocol})
            else:
                entry["hostPort"] = host_port
        container["ports"] = ports
    return out


def host_port_mappings(pod: Mapping[str, Any]) -> list[HostPortMapping]:
    """Every container port with a host port, of a pod on the Kubernetes-HostPort network (upstream's Init)."""
    network = network_of(pod)
    if network is None or network[0] != HOST_PORT_NETWORK:
        return []
    out = []
    for container in (pod.get("spec") or {}).get("containers") or []:
        for port in container.get("ports") or []:
            if port.get("hostPort"):
                out.append(HostPortMapping(str(container["name"]), int(port["containerPort"]), int(port["hostPort"]),
                                           str(port.get("protocol") or "TCP")))
    return out


def pod_network_status(
    pod_ip: str, external_ip: str, mappings: Sequence[HostPortMapping], ready: bool
) -> dict[str, Any]:
    """The `game.kruise.io/network-status` annotation (upstream OnPodUpdated): addresses and the current state."""
    internal: dict[str, Any] = {"ip": pod_ip}
    status: dict[str, Any] = {"internalAddresses": [internal]}
    if mappings:
        internal["ports"] = [{"name": m.name, "protocol": m.protocol, "port": m.container_port} for m in mappings]
        status["externalAddresses"] = [{"ip": external_ip, "ports": [
            {"name": m.name, "protocol": m.protocol, "port": m.host_port} for m in mappings]}]
    status["currentNetworkState"] = NETWORK_READY if ready and mappings else NETWORK_NOT_READY
    return status


def network_status_text(status: Mapping[str, Any]) -> str:
    return json.dumps(status, separators=(",", ":"))


def read_network_status(pod: Mapping[str, Any]) -> dict[str, Any] | None:
    text = _annotations(pod).get(NETWORK_STATUS_KEY)
    if not text:
        return None
    try:
        data = json.loads(text)
    except ValueError:
        return None
    return data if _well_formed_status(data) else None


def _well_formed_status(data: Any) -> bool:
    """Shaped as the kubelet writes it; anyone may patch a pod's annotations, and junk reads as no status."""
    if not isinstance(data, dict):
        return False
    if not isinstance(data.get("currentNetworkState", ""), str):
        return False
    for key in ("internalAddresses", "externalAddresses"):
        addresses = data.get(key) or []
        if not isinstance(addresses, list):
            return False
        for address in addresses:
            if not isinstance(address, dict) or not isinstance(address.get("ip", ""), str):
                return False
            ports = address.get("ports") or []
            if not isinstance(ports, list) or not all(isinstance(p, dict) for p in ports):
                return False
    return True


# --- pod addresses -------------------------------------------------------------------------------------------


def loopback_address(uid: str, attempt: int = 0) -> str:
    """A stable address for the pod in 127.0.0.0/8, never in 127.0.x.x (127.0.0.1, 127.0.0.53, 127.0.1.1 …)."""
    digest = hashlib.sha256(f"{uid}/{attempt}".encode()).digest()
    return f"127.{1 + digest[0] % 254}.{digest[1]}.{1 + digest[2] % 254}"


def choose_pod_ip(uid: str, taken: Callable[[str], bool]) -> str:
    """The uid's address, or the next of its sequence when another live pod has that one."""
    attempt = 0
    while taken(address := loopback_address(uid, attempt)):
        attempt += 1
    return address


def pod_ip(pod: Mapping[str, Any]) -> str:
    """The pod's address: its own loopback address when it has a network, else 127.0.0.1 (as ever).

    It is recorded in the network-status annotation before the containers start (so POD_IP, status.podIP, exec
    and probes agree), and also in status.podIP.
    """
    if NETWORK_TYPE_KEY not in _annotations(pod):
        return NO_NETWORK_IP
    for address in (read_network_status(pod) or {}).get("internalAddresses") or []:
        if address.get("ip"):
            return str(address["ip"])
    recorded = (pod.get("status") or {}).get("podIP")
    if recorded and recorded != NO_NETWORK_IP:
        return str(recorded)
    return loopback_address(str((pod.get("metadata") or {}).get("uid") or ""))


# --- allocation ----------------------------------------------------------------------------------------------


class HostPortAllocator:
    """Which host ports belong to which pod; never one port to two pods.

    Next-fit: the search starts after the last port given out and wraps around, so a port just released is not
    given to the next pod at once while others are free (a player reconnecting to the old address would reach a
    different game server). Whether a port is free *on the machine* is asked of `is_free` (a bind test).
    """

    def __init__(self, first: int, last: int) -> None:
        self.first, self.last = first, last
        self.owners: dict[int, str] = {}
        self.by_owner: dict[str, list[int]] = {}
        self._next = first

    @property
    def size(self) -> int:
        return self.last - self.first + 1

    def claim(self, owner: str, ports: Sequence[int]) -> None:
        """Record ports already given (read back from the pod records), inside the range or not."""
        for port in ports:
            self.owners[port] = owner
            if port not in self.by_owner.setdefault(owner, []):
                self.by_owner[owner].append(port)

    def release(self, owner: str) -> list[int]:
        ports = self.by_owner.pop(owner, [])
        for port in ports:
            if self.owners.get(port) == owner:
                del self.owners[port]
        return ports

    def ports_of(self, owner: str) -> list[int]:
        return list(self.by_owner.get(owner, []))

    def _candidates(self) -> Iterator[int]:
        start = self._next if self.first <= self._next <= self.last else self.first
        for port in [*range(start, self.last + 1), *range(self.first, start)]:
            if port not in self.owners:
                yield port

    def allocate(
        self, owner: str, needs: Sequence[tuple[str, ...]], is_free: Callable[[int, tuple[str, ...]], bool]
    ) -> list[int] | None:
        """One port per need (the protocols it must be free for), or None (nothing is claimed then)."""
        chosen: list[int] = []
        candidates = self._candidates()
        for protocols in needs:
            for port in candidates:
                if is_free(port, protocols):
                    chosen.append(port)
                    break
            else:
                return None
        self.claim(owner, chosen)
        if chosen:
            self._next = chosen[-1] + 1
        return chosen


# --- the GameServer's status ---------------------------------------------------------------------------------


def game_server_network_status(
    old: Mapping[str, Any] | None, pod: Mapping[str, Any], now: datetime
) -> dict[str, Any] | None:
    """Upstream syncNetworkStatus: the GameServer's `status.networkStatus`, from the pod; None without a network.

    desiredNetworkState is NotReady while the GameServer's networkDisabled is true (the pod label carries it),
    currentNetworkState and the addresses come from the pod's network-status annotation (NotReady until there is
    one). createTime is when the GameServer first had a network status; lastTransitionTime changes when the
    desired or the current state changes (upstream only on desired changes, and on every look while the pod has
    no status yet, which would rewrite the GameServer each time).
    """
    network = network_of(pod)
    if network is None:
        return None
    stamp = format_time(now)
    pod_status = read_network_status(pod) or {}
    disabled = _labels(pod).get(GS_NETWORK_DISABLED_KEY) == "true"
    desired = NETWORK_NOT_READY if disabled else NETWORK_READY
    current = pod_status.get("currentNetworkState") or NETWORK_NOT_READY
    old = old or {}
    status: dict[str, Any] = {"networkType": network[0]}
    for key in ("internalAddresses", "externalAddresses"):
        # Always present (an empty list rather than left out): the status is written as a merge patch, which
        # would keep an old pod's addresses if the key were missing.
        status[key] = list(pod_status.get(key) or [])
    status["desiredNetworkState"] = desired
    status["currentNetworkState"] = current
    status["createTime"] = old.get("createTime") or stamp
    same = old.get("desiredNetworkState") == desired and old.get("currentNetworkState") == current
    status["lastTransitionTime"] = (old.get("lastTransitionTime") or stamp) if same else stamp
    return status


def container_ports_in_use(pod: Mapping[str, Any]) -> set[int]:
    """The container ports a pod on a network listens on (on its own address): with host ports on every address
    (0.0.0.0), none of them can be a host port of this machine (the proxy's wildcard bind would collide)."""
    if network_of(pod) is None:
        return set()
    return {int(port["containerPort"]) for container in (pod.get("spec") or {}).get("containers") or []
            for port in container.get("ports") or [] if isinstance(port.get("containerPort"), int)}
