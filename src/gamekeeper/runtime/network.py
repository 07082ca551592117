"""Host ports in embedded mode: OpenKruiseGame's Kubernetes-HostPort network on one machine.

Two halves:

- `PodNetwork`, in the controller, used by the local kubelet. Before a pod's containers start it gives the pod
  its own loopback address (POD_IP, status.podIP) and, for each ContainerPorts item, a host port from the range
  that is free on the machine (a bind test), written into the pod record as upstream does: the container
  ports' `hostPort`, the `game.kruise.io/network-type` / `-conf` annotations, and the
  `game.kruise.io/network-status` annotation, which the GameServer controller copies into
  `status.networkStatus`. On a start the allocations are read back from the pod records, so a restarted
  controller gives every pod the ports it had, and never one port to two pods. Ports go back when the pod's
  processes have stopped.
- The proxy, a small process of its own (`python -m gamekeeper.runtime.network DIR`): listens on
  ADDRESS:hostPort and forwards to podIP:containerPort, TCP (a stream per connection) and UDP (a relay socket
  per client address). It is a separate process for the same reason the game servers are: a controller
  restart (an upgrade, a crash, Ctrl-C in `gk up`) must not disconnect the players. The controller tells it
  what to forward over a Unix socket (`<state>/network/proxy.sock`) and starts it when there is something to
  forward; `gk down` stops it. While a GameServer's networkDisabled is true (or its pod is being deleted), its
  TCP listeners are closed, so new connections are refused, and UDP datagrams from new clients are dropped;
  connections and UDP clients already there go on.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from gamekeeper.api.models import GS_NETWORK_DISABLED_KEY, OWNER_GSS_KEY
from gamekeeper.core.network import (
    DEFAULT_PORT_RANGE,
    HOST_PORT_NETWORK,
    NETWORK_CONF_KEY,
    NETWORK_REASON_KEY,
    NETWORK_STATUS_KEY,
    NETWORK_TYPE_KEY,
    HostPortAllocator,
    HostPortMapping,
    choose_pod_ip,
    container_ports_in_use,
    host_port_mappings,
    network_of,
    network_status_text,
    pod_ip,
    pod_network_status,
    port_requests,
    read_network_status,
    with_host_ports,
)
from gamekeeper.ports.store import Obj, Store
from gamekeeper.runtime.pidlock import PidLock

log = logging.getLogger("gamekeeper.network")

NETWORK_DIR = "network"
CONNECT_TIMEOUT = 5.0  # to the game server, for each new TCP connection
UDP_IDLE_SECONDS = 120.0  # a UDP client silent this long is forgotten (conntrack's UDP stream timeout)
IDLE_EXIT_SECONDS = 60.0  # a proxy with nothing to forward and no controller talking to it exits
RETRY_SECONDS = 5.0  # a pod waiting for a port, or whose port could not be bound, is looked at again
BUFFER = 65536


def port_is_free(address: str, port: int, protocols: Sequence[str]) -> bool:
    """Can `port` be bound on `address` for every protocol (the proxy binds the same way, SO_REUSEADDR for TCP)?"""
    for protocol in protocols:
        kind = socket.SOCK_STREAM if protocol == "TCP" else socket.SOCK_DGRAM
        with socket.socket(socket.AF_INET, kind) as sock:
            if protocol == "TCP":
                # Connections of an earlier user in TIME_WAIT do not make the port busy; a listener does.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((address, port))
            except OSError:
                return False
    return True


def network_dir(state_dir: Path) -> Path:
    return state_dir / NETWORK_DIR


# --- the proxy process -----------------------------------------------------------------------------------------


RouteKey = tuple[str, int, str]  # (address, host port, protocol)


def _route_name(key: RouteKey) -> str:
    return f"{key[1]}/{key[2]}"


class _Route(abc.ABC):
    """One forwarded host port: TCP (a listening server) or UDP (a datagram endpoint with a session per peer)."""

    def __init__(self, key: RouteKey, target: tuple[str, int]) -> None:
        self.key = key
        self.target = target
        self.accepting = False
        self.error: str | None = None

    @abc.abstractmethod
    async def apply(self, accept: bool) -> None:
        """Listen and forward (accept) or refuse new connections while keeping the open ones."""

    @abc.abstractmethod
    async def close(self) -> None: ...

    @abc.abstractmethod
    def connections(self) -> int: ...

    @abc.abstractmethod
    def listening(self) -> bool: ...


class _TcpRoute(_Route):
    def __init__(self, key: RouteKey, target: tuple[str, int]) -> None:
        super().__init__(key, target)
        self.server: asyncio.Server | None = None
        self.tasks: set[asyncio.Task[Any]] = set()
        self._warned = 0.0

    def listening(self) -> bool:
        return self.server is not None

    def connections(self) -> int:
        return len(self.tasks)

    async def apply(self, accept: bool) -> None:
        self.accepting = accept
        if accept and self.server is None:
            try:
                self.server = await asyncio.start_server(
                    self._handle, self.key[0], self.key[1], reuse_address=True, backlog=128
                )
                self.error = None
                log.info("listening on %s:%d/TCP for %s:%d", self.key[0], self.key[1], *self.target)
            except OSError as err:
                self.error = f"cannot listen on {self.key[0]}:{self.key[1]}/TCP: {_reason(err)}"
        elif not accept and self.server is not None:
            # Closing the listener refuses new connections; the open ones are left alone.
            self.server.close()
            self.server = None
            log.info("stopped accepting on %s:%d/TCP (%d connection(s) go on)", self.key[0], self.key[1],
                     len(self.tasks))

    async def close(self) -> None:
        await self.apply(False)
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.tasks.add(task)
        upstream: asyncio.StreamWriter | None = None
        try:
            try:
                up_reader, up_writer = await asyncio.wait_for(asyncio.open_connection(*self.target),
                                                              CONNECT_TIMEOUT)
            except (OSError, TimeoutError) as err:
                self._unreachable(err)
                writer.transport.abort()
                return
            upstream = up_writer
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        finally:
            for w in (writer, upstream):
                if w is not None:
                    w.close()
            self.tasks.discard(task)

    def _unreachable(self, err: BaseException) -> None:
        now = asyncio.get_running_loop().time()
        if now - self._warned < 30:
            return
        self._warned = now
        log.warning("%s:%d/TCP: cannot reach the game server at %s:%d (%s); it must listen on $POD_IP, not "
                    "127.0.0.1 or 0.0.0.0", self.key[0], self.key[1], *self.target, err or type(err).__name__)


def _reason(err: OSError) -> str:
    return os.strerror(err.errno) if err.errno else str(err)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(BUFFER):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()  # a half-close goes through; the other direction carries on
    except (ConnectionError, OSError):
        writer.transport.abort()  # the other direction then ends too


class _UdpClient:
    """One client address: a socket connected to the game server, its replies sent back from the host port."""

    def __init__(self, route: _UdpRoute, address: tuple[str, int]) -> None:
        self.route = route
        self.address = address
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            self.sock.setblocking(False)
            self.sock.connect(route.target)
        except OSError:
            self.sock.close()
            raise
        self.loop = asyncio.get_running_loop()
        self.last = self.loop.time()
        self.loop.add_reader(self.sock.fileno(), self._readable)

    def send(self, data: bytes) -> None:
        self.last = self.loop.time()
        with contextlib.suppress(OSError):  # ICMP port unreachable from an earlier datagram, a full buffer
            self.sock.send(data)

    def _readable(self) -> None:
        while True:
            try:
                data = self.sock.recv(BUFFER)
            except BlockingIOError:
                return
            except ConnectionRefusedError:
                continue  # ICMP port unreachable for an earlier datagram: the game server is not listening (yet)
            except OSError:
                return
            self.last = self.loop.time()
            if self.route.transport is not None:
                self.route.transport.sendto(data, self.address)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.loop.remove_reader(self.sock.fileno())
        self.sock.close()


class _UdpRoute(_Route, asyncio.DatagramProtocol):
    def __init__(self, key: RouteKey, target: tuple[str, int]) -> None:
        super().__init__(key, target)
        self.transport: asyncio.DatagramTransport | None = None
        self.clients: dict[tuple[str, int], _UdpClient] = {}

    def listening(self) -> bool:
        return self.transport is not None

    def connections(self) -> int:
        return len(self.clients)

    async def apply(self, accept: bool) -> None:
        # The socket stays bound while disabled (a UDP port is held, whoever sends to it); only new clients wait.
        self.accepting = accept
        if self.transport is None:
            try:
                transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(
                    lambda: self, local_addr=(self.key[0], self.key[1])
                )
                self.transport = transport
                self.error = None
                log.info("listening on %s:%d/UDP for %s:%d", self.key[0], self.key[1], *self.target)
            except OSError as err:
                self.error = f"cannot bind {self.key[0]}:{self.key[1]}/UDP: {_reason(err)}"

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        client = self.clients.get(addr)
        if client is None:
            if not self.accepting:
                return  # a new player while the network is disabled
            try:
                client = self.clients[addr] = _UdpClient(self, addr)
            except OSError:
                return
        client.send(data)

    def sweep(self, now: float) -> None:
        for addr, client in list(self.clients.items()):
            if now - client.last > UDP_IDLE_SECONDS:
                client.close()
                del self.clients[addr]

    async def close(self) -> None:
        for client in self.clients.values():
            client.close()
        self.clients.clear()
        if self.transport is not None:
            self.transport.close()
            self.transport = None


class _PodRoutes:
    def __init__(self, uid: str) -> None:
        self.uid = uid
        self.routes: dict[RouteKey, _Route] = {}


class Proxy:
    """The forwarding state: per pod, its routes; requests come as JSON lines on the control socket."""

    def __init__(self) -> None:
        self.pods: dict[str, _PodRoutes] = {}
        self.owner: dict[RouteKey, str] = {}
        self.clients = 0
        self.idle_since: float | None = None

    async def handle(self, request: Mapping[str, Any]) -> dict[str, Any]:
        op = request.get("op")
        if op == "hello":
            return {"ok": True, "pid": os.getpid(), "pods": sorted(self.pods)}
        if op == "set":
            return await self._set(str(request["pod"]), str(request.get("uid", "")), request.get("routes") or [],
                                   bool(request.get("accept", True)))
        if op == "remove":
            await self._remove(str(request["pod"]), request.get("uid"))
            return {"ok": True}
        if op == "retain":
            keep = set(request.get("pods") or [])
            for pod in [p for p in self.pods if p not in keep]:
                await self._remove(pod, None)
            return {"ok": True}
        if op == "stats":
            return {"ok": True, "pods": {pod: {
                _route_name(key): {"listening": r.listening(), "accepting": r.accepting, "connections": r.connections(),
                                   "error": r.error}
                for key, r in entry.routes.items()} for pod, entry in self.pods.items()}}
        return {"ok": False, "error": f"unknown op {op!r}"}

    async def _set(self, pod: str, uid: str, routes: Sequence[Mapping[str, Any]], accept: bool) -> dict[str, Any]:
        entry = self.pods.get(pod)
        if entry is not None and entry.uid != uid:
            await self._remove(pod, None)  # a new pod of the same name: nothing of the old one carries over
            entry = None
        entry = entry or _PodRoutes(uid)
        self.pods[pod] = entry
        wanted: dict[RouteKey, tuple[str, int]] = {}
        for r in routes:
            key = (str(r["address"]), int(r["hostPort"]), str(r["protocol"]))
            wanted[key] = (str(r["target"][0]), int(r["target"][1]))
        for key in [k for k, route in entry.routes.items() if wanted.get(k) != route.target]:
            await entry.routes.pop(key).close()
            self.owner.pop(key, None)
        errors: dict[str, str] = {}
        for key, target in wanted.items():
            holder = self.owner.get(key)
            if holder is not None and holder != pod:
                errors[_route_name(key)] = f"host port {_route_name(key)} is forwarded for pod {holder}"
                continue
            route = entry.routes.get(key)
            if route is None:
                route = _TcpRoute(key, target) if key[2] == "TCP" else _UdpRoute(key, target)
                entry.routes[key] = route
                self.owner[key] = pod
            await route.apply(accept)
            if route.error:
                errors[_route_name(key)] = route.error
        if not entry.routes:
            self.pods.pop(pod, None)
        return {"ok": True, "errors": errors}

    async def _remove(self, pod: str, uid: Any) -> None:
        entry = self.pods.get(pod)
        if entry is None or (uid is not None and entry.uid != uid):
            return
        del self.pods[pod]
        for key, route in entry.routes.items():
            await route.close()
            self.owner.pop(key, None)
        log.info("stopped forwarding for %s", pod)

    def sweep(self, now: float) -> None:
        for entry in self.pods.values():
            for route in entry.routes.values():
                if isinstance(route, _UdpRoute):
                    route.sweep(now)

    async def close(self) -> None:
        for pod in list(self.pods):
            await self._remove(pod, None)

    async def serve_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.clients += 1
        try:
            while line := await reader.readline():
                try:
                    reply = await self.handle(json.loads(line))
                except Exception as err:  # a bad request is answered, never fatal
                    log.exception("request failed")
                    reply = {"ok": False, "error": str(err)}
                writer.write(json.dumps(reply).encode() + b"\n")
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            self.clients -= 1
            writer.close()


async def serve_proxy(directory: Path, stop: asyncio.Event | None = None) -> None:
    """Run the proxy until stopped, or until idle with no controller, or until its directory is gone."""
    proxy = Proxy()
    path = directory / "proxy.sock"
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    server = await asyncio.start_unix_server(proxy.serve_client, path=str(path))
    os.chmod(path, 0o600)
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    log.info("proxy started (pid %d, %s)", os.getpid(), path)
    try:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 5.0)
            now = loop.time()
            proxy.sweep(now)
            if not directory.exists():
                log.info("%s is gone: exiting", directory)
                break
            if proxy.pods or proxy.clients:
                proxy.idle_since = None
            elif proxy.idle_since is None:
                proxy.idle_since = now
            elif now - proxy.idle_since > IDLE_EXIT_SECONDS:
                log.info("nothing to forward and no controller: exiting")
                break
    finally:
        server.close()
        await proxy.close()
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def proxy_main(argv: Sequence[str]) -> int:
    """`python -m gamekeeper.runtime.network DIR`: one proxy per directory (an flock on DIR/proxy.lock)."""
    if len(argv) != 1:
        print("usage: python -m gamekeeper.runtime.network DIR", file=sys.stderr)
        return 2
    directory = Path(argv[0])
    directory.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr)
    lock = PidLock(directory, "proxy")
    if not lock.try_acquire():
        return 0  # another proxy serves this directory
    try:
        asyncio.run(serve_proxy(directory))
    finally:
        lock.release()
    return 0


def running_proxy_pid(directory: Path) -> int | None:
    """The pid of the proxy holding DIR/proxy.lock, or None."""
    return PidLock(directory, "proxy").holder()


def stop_proxy(directory: Path, timeout: float = 5.0) -> bool:
    """Stop the proxy (its listeners close, and with them every forwarded connection); used by `gk down`."""
    return PidLock(directory, "proxy").stop_holder(timeout, poll=0.05)


# --- the controller's side -------------------------------------------------------------------------------------


class ProxyUnavailable(RuntimeError):
    pass


class ProxyClient:
    """Requests to the proxy, which is started when needed; `generation` goes up with each new proxy process."""

    def __init__(self, directory: Path, on_new_proxy: Callable[[], None] | None = None) -> None:
        self.directory = directory
        self.path = directory / "proxy.sock"
        self.on_new_proxy = on_new_proxy
        self.generation = 0
        self.pid: int | None = None
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._lock = asyncio.Lock()
        self._child: subprocess.Popen[bytes] | None = None
        self._pidfd: int | None = None
        self._down_until = 0.0  # after a failed start, calls fail at once for a while (the kubelet must not wait)

    async def call(self, request: Mapping[str, Any], start: bool = True) -> dict[str, Any]:
        """The proxy's answer; ProxyUnavailable when it cannot be reached (or, with start=False, is not running)."""
        async with self._lock:
            if self._writer is None and asyncio.get_running_loop().time() < self._down_until:
                raise ProxyUnavailable(f"the proxy did not start; see {self.directory / 'proxy.log'}")
            for attempt in range(2):
                try:
                    if self._writer is None and not await self._connect(start):
                        raise ProxyUnavailable("the proxy is not running")
                    assert self._writer is not None and self._reader is not None
                    self._writer.write(json.dumps(request).encode() + b"\n")
                    await self._writer.drain()
                    line = await asyncio.wait_for(self._reader.readline(), 10.0)
                    if not line:
                        raise ConnectionError("the proxy closed the connection")
                    reply: dict[str, Any] = json.loads(line)
                    if not reply.get("ok"):
                        raise ProxyUnavailable(f"the proxy refused {request.get('op')}: {reply.get('error')}")
                    return reply
                except (OSError, ConnectionError, TimeoutError, ValueError) as err:
                    self._drop()
                    if attempt:
                        raise ProxyUnavailable(f"cannot reach the proxy: {err}") from err
        raise AssertionError("unreachable")

    async def _connect(self, start: bool) -> bool:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10.0
        starts = 0
        while True:
            try:
                self._reader, self._writer = await asyncio.open_unix_connection(str(self.path))
                break
            except OSError:
                if not start:
                    return False
                # Started once; again only if it has exited (it may have lost the lock race to a proxy starting).
                if starts == 0 or (starts < 3 and self._child is not None and self._child.poll() is not None):
                    self._start()
                    starts += 1
                if loop.time() > deadline:
                    self._down_until = loop.time() + RETRY_SECONDS
                    raise
                await asyncio.sleep(0.05)
        started = starts > 0
        self._writer.write(b'{"op": "hello"}\n')
        await self._writer.drain()
        hello = json.loads(await asyncio.wait_for(self._reader.readline(), 10.0))
        pid = int(hello["pid"])
        if pid != self.pid:
            self.pid = pid
            self.generation += 1
            self._watch(pid)
            log.info("proxy pid %d (%s)", pid, "started" if started else "already running")
            if self.on_new_proxy is not None and self.generation > 1:
                self.on_new_proxy()
        return True

    def _start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        if self._child is not None:
            self._child.poll()
        with open(self.directory / "proxy.log", "ab") as log_file:
            self._child = subprocess.Popen(
                [sys.executable, "-m", "gamekeeper.runtime.network", str(self.directory)],
                cwd=str(self.directory), stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT,
                start_new_session=True, close_fds=True,
            )

    def _watch(self, pid: int) -> None:
        """Learn of the proxy's end at once (a pidfd), so that a new one is started and told everything again."""
        self._unwatch()
        try:
            fd = os.pidfd_open(pid)
        except OSError:
            return
        self._pidfd = fd
        loop = asyncio.get_running_loop()

        def ended() -> None:
            self._unwatch()
            if self._child is not None:
                self._child.poll()
            if self.pid == pid:
                log.warning("the proxy (pid %d) has exited", pid)
                self._drop()
                if self.on_new_proxy is not None:
                    self.on_new_proxy()

        loop.add_reader(fd, ended)

    def _unwatch(self) -> None:
        if self._pidfd is not None:
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_reader(self._pidfd)
            os.close(self._pidfd)
            self._pidfd = None

    def _drop(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._reader = self._writer = None

    async def close(self) -> None:
        """Let go of the proxy (it keeps forwarding)."""
        self._unwatch()
        self._drop()
        if self._child is not None:
            self._child.poll()


class PodNetwork:
    """The kubelet's network step: admit a pod (address, host ports), keep its forwarding and status up to date."""

    def __init__(
        self,
        store: Store,
        state_dir: Path,
        port_range: tuple[int, int] = DEFAULT_PORT_RANGE,
        address: str = "0.0.0.0",
        is_free: Callable[[str, int, Sequence[str]], bool] = port_is_free,
    ) -> None:
        self.store = store
        self.allocator = HostPortAllocator(*port_range)
        self.address = address
        # What players are told (networkStatus.externalAddresses): the address listened on, or 127.0.0.1 when that
        # is every address (then any of the machine's addresses works; 127.0.0.1 is the one that always does).
        self.external_ip = "127.0.0.1" if address in ("0.0.0.0", "") else address
        self.is_free = is_free
        self.client = ProxyClient(network_dir(state_dir), on_new_proxy=self._resend_all)
        self.enqueue: Callable[[str, str], None] = lambda namespace, name: None
        self.ips: dict[str, str] = {}  # pod uid -> its address (pods on a network)
        self.sent: dict[tuple[str, str], tuple[int, str]] = {}  # pod -> (proxy generation, last request it took)
        self.errors: dict[tuple[str, str], dict[str, str]] = {}
        self.waiting: set[tuple[str, str]] = set()  # pods waiting for free host ports
        self.reported: dict[tuple[str, str], str] = {}  # the last warning event per pod (each is recorded once)
        # Container ports of pods on a network (their own addresses), by pod uid: with the proxy on every address,
        # never given out as host ports (the proxy's 0.0.0.0:P and a game's 127.x.y.z:P cannot both be bound).
        self.container_ports: dict[str, set[int]] = {}

    @property
    def range_text(self) -> str:
        return f"{self.allocator.first}-{self.allocator.last}"

    async def start(self, pods: Sequence[Obj]) -> None:
        """Read the allocations back from the pod records; drop forwarding for pods that are gone."""
        forwarded = []
        for pod in pods:
            meta = pod["metadata"]
            if NETWORK_TYPE_KEY in (meta.get("annotations") or {}):
                self.ips[meta["uid"]] = pod_ip(pod)
                self.container_ports[meta["uid"]] = container_ports_in_use(pod)
            mappings = host_port_mappings(pod)
            if mappings:
                self.allocator.claim(meta["uid"], sorted({m.host_port for m in mappings}))
                forwarded.append(f"{meta['namespace']}/{meta['name']}")
        if self.ips:
            log.info("network: %d pod(s) with an address, %d host port(s) in use (range %s)", len(self.ips),
                     len(self.allocator.owners), self.range_text)
        with contextlib.suppress(ProxyUnavailable):
            await self.client.call({"op": "retain", "pods": forwarded}, start=bool(forwarded))
        if not forwarded:
            await self.client.close()  # a proxy left with nothing to forward exits once no controller holds it

    async def close(self) -> None:
        await self.client.close()

    def _resend_all(self) -> None:
        keys = list(self.sent)
        self.sent.clear()
        for key in keys:
            self.enqueue(*key)

    async def _event(self, pod: Obj, type_: str, reason: str, message: str) -> None:
        key = (pod["metadata"]["namespace"], pod["metadata"]["name"])
        if self.reported.get(key) == message:
            return
        self.reported[key] = message
        (log.warning if type_ == "Warning" else log.info)("pod %s/%s: %s", *key, message)
        await self.store.record_event(pod, type_, reason, message)

    async def _network_from_set(self, pod: Obj) -> tuple[str, list[dict[str, Any]]] | None:
        """The owning GameServerSet's spec.network (upstream puts it on the pod template as annotations)."""
        meta = pod["metadata"]
        owner = (meta.get("labels") or {}).get(OWNER_GSS_KEY)
        if not owner:
            return None
        gss = await self.store.get("GameServerSet", meta["namespace"], owner)
        network = ((gss or {}).get("spec") or {}).get("network") or {}
        if not network.get("networkType"):
            return None
        return str(network["networkType"]), list(network.get("networkConf") or [])

    async def admit(self, pod: Obj) -> tuple[Obj, str | None]:
        """Before the containers start. Returns the pod (patched), and why it must wait (no free host port)."""
        meta = pod["metadata"]
        key = (meta["namespace"], meta["name"])
        annotations = meta.get("annotations") or {}
        if NETWORK_STATUS_KEY in annotations:
            self.waiting.discard(key)
            return pod, None
        network = network_of(pod)
        new_annotations: dict[str, str] = {}
        if network is None:
            network = await self._network_from_set(pod)
            if network is None:
                return pod, None
            new_annotations = {NETWORK_TYPE_KEY: network[0], NETWORK_CONF_KEY: json.dumps(network[1])}
        network_type, conf = network
        patch: dict[str, Any] = {}
        waiting: str | None = None
        if network_type != HOST_PORT_NETWORK:
            await self._event(pod, "Warning", "NetworkNotSupported",
                              f"network type {network_type!r} is not supported in embedded mode (only "
                              f"{HOST_PORT_NETWORK}); the network stays NotReady")
        else:
            uid = meta["uid"]
            requests = port_requests(conf, pod["spec"]["containers"])
            taken = self._taken_container_ports(uid, {r.port for r in requests if r.port is not None})
            ports = self.allocator.allocate(
                uid, [r.protocols for r in requests],
                lambda port, protocols: port not in taken and self.is_free(self.address, port, protocols))
            if ports is None:
                wanted = ", ".join(f"{r.container}:{r.port or 'SameAsHost'}/{r.protocol}" for r in requests)
                waiting = (f"0/1 nodes are available: no free host port in {self.range_text} on {self.address} for "
                           f"{wanted} ({len(self.allocator.owners)} given to pods, the others are busy on the "
                           "machine)")
            else:
                ip = choose_pod_ip(uid, lambda a: any(v == a for u, v in self.ips.items() if u != uid))
                containers = with_host_ports(pod["spec"]["containers"], requests, ports)
                mappings = host_port_mappings({"metadata": {"annotations": {NETWORK_TYPE_KEY: network_type}},
                                               "spec": {"containers": containers}})
                new_annotations[NETWORK_STATUS_KEY] = network_status_text(
                    pod_network_status(ip, self.external_ip, mappings, ready=False))
                if requests:
                    patch["spec"] = {"containers": containers}
                self.ips[uid] = ip
                self.container_ports[uid] = container_ports_in_use({**pod, "spec": {"containers": containers}})
                log.info("pod %s/%s: address %s, host ports %s", *key, ip,
                         ", ".join(f"{m.host_port}->{m.container_port}/{m.protocol}" for m in mappings) or "none")
        if new_annotations:
            patch["metadata"] = {"annotations": new_annotations}
        if patch:
            try:
                pod = await self.store.patch("Pod", meta["namespace"], meta["name"], patch,
                                             resource_version=meta["resourceVersion"])
            except Exception:
                self.allocator.release(meta["uid"])
                self.ips.pop(meta["uid"], None)
                raise
        if waiting is not None:
            if key not in self.waiting:
                self.waiting.add(key)
            await self._event(pod, "Warning", "FailedScheduling", waiting)
        else:
            self.waiting.discard(key)
        return pod, waiting

    def _taken_container_ports(self, uid: str, own: set[int]) -> set[int]:
        if self.address not in ("0.0.0.0", ""):
            return set()  # the proxy binds one address, the pods others: no collision
        return own.union(*(ports for owner, ports in self.container_ports.items() if owner != uid))

    async def sync(self, pod: Obj, stopping: bool = False) -> bool:
        """Forwarding as the pod wants it, and its network-status annotation; False if it should be retried."""
        meta = pod["metadata"]
        network = network_of(pod)
        if network is None or network[0] != HOST_PORT_NETWORK or NETWORK_STATUS_KEY not in (
                meta.get("annotations") or {}):
            return True
        key = (meta["namespace"], meta["name"])
        uid = meta["uid"]
        mappings = host_port_mappings(pod)
        address = pod_ip(pod)
        self.ips[uid] = address
        self.container_ports[uid] = container_ports_in_use(pod)
        self.allocator.claim(uid, sorted({m.host_port for m in mappings}))
        accept = not stopping and (meta.get("labels") or {}).get(GS_NETWORK_DISABLED_KEY) != "true"
        errors = self.errors.get(key, {})
        if mappings:
            request = {"op": "set", "pod": f"{key[0]}/{key[1]}", "uid": uid, "accept": accept,
                       "routes": [_route(self.address, address, m) for m in mappings]}
            text = json.dumps(request, sort_keys=True)
            if self.sent.get(key, (None, None))[1] != text or self.sent[key][0] != self.client.generation:
                try:
                    reply = await self.client.call(request)
                    errors = {k: str(v) for k, v in (reply.get("errors") or {}).items()}
                    self.sent[key] = (self.client.generation, text)
                except ProxyUnavailable as err:
                    errors = {"proxy": str(err)}
                    self.sent.pop(key, None)
                self.errors[key] = errors
        ready = accept and not errors and bool(mappings)
        if errors:
            self.sent.pop(key, None)  # asked again on the retry
            await self._event(pod, "Warning", "NetworkNotReady", "; ".join(errors.values()))
        else:
            self.reported.pop(key, None)  # the same trouble again later is reported again
        status = pod_network_status(address, self.external_ip, mappings, ready)
        changed: dict[str, str | None] = {}
        if read_network_status(pod) != status:
            changed[NETWORK_STATUS_KEY] = network_status_text(status)
        reason = "; ".join(errors.values()) or None
        if (meta.get("annotations") or {}).get(NETWORK_REASON_KEY) != reason:
            changed[NETWORK_REASON_KEY] = reason  # None: removed (merge patch)
        if changed:
            await self.store.patch(
                "Pod", meta["namespace"], meta["name"], {"metadata": {"annotations": changed}},
                resource_version=meta["resourceVersion"],
            )
        return not errors

    async def release(self, namespace: str, name: str, uid: str) -> None:
        """The pod's processes are gone: its host ports and address are free again."""
        key = (namespace, name)
        ports = self.allocator.release(uid)
        self.ips.pop(uid, None)
        self.container_ports.pop(uid, None)
        self.errors.pop(key, None)
        self.reported.pop(key, None)
        self.waiting.discard(key)
        if self.sent.pop(key, None) is not None or ports:
            with contextlib.suppress(ProxyUnavailable):
                await self.client.call({"op": "remove", "pod": f"{namespace}/{name}", "uid": uid}, start=False)
        if ports:
            log.info("pod %s/%s: host ports %s released", namespace, name, ", ".join(map(str, ports)))
            for waiting in list(self.waiting):
                self.enqueue(*waiting)


def _route(address: str, pod_address: str, mapping: HostPortMapping) -> dict[str, Any]:
    return {"address": address, "hostPort": mapping.host_port, "protocol": mapping.protocol,
            "target": [pod_address, mapping.container_port]}


if __name__ == "__main__":
    raise SystemExit(proxy_main(sys.argv[1:]))
