"""Embedded mode: the controllers, the local runtime and the SQLite store in one process on one machine."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import signal
import socket
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gamekeeper.control.manager import ControllerManager
from gamekeeper.core.network import DEFAULT_PORT_RANGE, parse_port_range
from gamekeeper.embedded.home import API_FILE
from gamekeeper.embedded.home import (  # re-exported: importers of this module have always found them here
    HOME_ENV as HOME_ENV,
)
from gamekeeper.embedded.home import (
    read_config as read_config,
)
from gamekeeper.embedded.home import (
    remember_images as remember_images,
)
from gamekeeper.embedded.home import (
    resolve_state_dir as resolve_state_dir,
)
from gamekeeper.embedded.home import (
    running_controller_pid as running_controller_pid,
)
from gamekeeper.observe.notify_config import NotifyConfig
from gamekeeper.observe.notify_source import notifications_running
from gamekeeper.observe.wiring import Observability
from gamekeeper.runtime.images import ImageMap
from gamekeeper.runtime.local import (
    LocalKubelet,
    LocalRestarter,
    LocalRuntime,
    alive,
    kill_processes_under,
    parse_container_id,
)
from gamekeeper.runtime.network import PodNetwork, network_dir, stop_proxy
from gamekeeper.runtime.pidlock import PidLock
from gamekeeper.store.integrity import pod_dirs
from gamekeeper.store.sqlite import SqliteState, SqliteStore

log = logging.getLogger("gamekeeper.embedded")

HOST_PORT_RANGE_ENV = "GAMEKEEPER_HOST_PORT_RANGE"
HOST_PORT_ADDRESS_ENV = "GAMEKEEPER_HOST_PORT_ADDRESS"


def utc_now() -> datetime:
    return datetime.now(UTC)


def resolve_host_ports(port_range: str | None, address: str | None) -> tuple[tuple[int, int], str]:
    """The host port range and the address host ports listen on: the options, else the environment
    (GAMEKEEPER_HOST_PORT_RANGE, GAMEKEEPER_HOST_PORT_ADDRESS), else 8000-9000 on 0.0.0.0 (every address).

    ValueError names what is wrong.
    """
    text = port_range or os.environ.get(HOST_PORT_RANGE_ENV)
    try:
        first_last = parse_port_range(text) if text else DEFAULT_PORT_RANGE
    except ValueError as err:
        raise ValueError(f"host port range {err}") from None
    host = address or os.environ.get(HOST_PORT_ADDRESS_ENV) or "0.0.0.0"
    try:
        socket.inet_aton(host)
        if host.count(".") != 3:
            raise OSError
    except OSError:
        raise ValueError(f"host port address {host!r}: expected an IPv4 address such as 0.0.0.0 or 127.0.0.1") from None
    return first_last, host


class ControllerAlreadyRunning(RuntimeError):
    pass


class ApiUnavailable(RuntimeError):
    """The ops API cannot listen on its address (in use, or not this machine's)."""


class ControllerLock:
    """One controller per state directory: an flock on controller.lock, with its pid beside it."""

    def __init__(self, state_dir: Path) -> None:
        self.lock = PidLock(state_dir, "controller")

    def acquire(self) -> None:
        if not self.lock.try_acquire():
            raise ControllerAlreadyRunning(
                f"a controller is already running for {self.lock.path.parent} "
                f"(pid {self.lock.holder()}); stop it first (gk down, or Ctrl-C in its terminal)"
            )

    def release(self) -> None:
        self.lock.release()


class EmbeddedController:
    def __init__(
        self,
        state_dir: Path,
        images: ImageMap,
        clock: Callable[[], datetime] = utc_now,
        resync_seconds: float = 30.0,
        metrics_addr: str | None = None,
        notify: NotifyConfig | None = None,
        host_port_range: str | None = None,
        host_port_address: str | None = None,
        api_addr: str | None = None,
        api_token: str | None = None,
        on_api_url: Callable[[str], None] | None = None,
    ) -> None:
        self.api_addr, self.api_token, self.on_api_url = api_addr, api_token, on_api_url
        self.host_ports, self.host_port_address = resolve_host_ports(host_port_range, host_port_address)
        self.metrics_addr = metrics_addr
        self.notify = notify
        self.state_dir = state_dir
        self.images = images
        self.clock = clock
        self.resync_seconds = resync_seconds
        self.manager: ControllerManager | None = None

    async def run(self, stop: asyncio.Event | None = None) -> None:
        lock = ControllerLock(self.state_dir)
        lock.acquire()
        try:
            # Every page read once: a damaged database is refused now, with what to do, not met mid-run.
            state = SqliteState(self.state_dir, check=True)
        except BaseException:
            lock.release()
            raise
        # Started inside the lock, so two controllers racing for one state never notify twice.
        notifications = contextlib.AsyncExitStack()
        cleanup = contextlib.AsyncExitStack()
        try:
            await notifications.enter_async_context(notifications_running(self.state_dir, self.notify))
            store = SqliteStore(state, resync_seconds=min(self.resync_seconds, 5.0))
            # Host ports: forwarded by a proxy process of their own, which goes on when the controller stops.
            network = PodNetwork(store, self.state_dir, self.host_ports, self.host_port_address)
            cleanup.push_async_callback(network.close)
            kubelet = LocalKubelet(store, self.state_dir, self.images, clock=self.clock, network=network)
            runtime = LocalRuntime(self.state_dir, self.images)
            cleanup.callback(runtime.close)
            observability = Observability(store, self.clock) if self.metrics_addr else None
            self.manager = ControllerManager(
                store, runtime, self.clock, resync_seconds=self.resync_seconds, pod_listeners=[kubelet.enqueue],
                change_listeners=[observability.on_change] if observability else [],
                observe_reconcile=observability.observe_reconcile if observability else None,
                restarter=LocalRestarter(store),
            )
            if self.api_addr is not None:
                await self._start_api(store, cleanup)
            tasks = [
                asyncio.create_task(kubelet.run(), name="kubelet"),
                asyncio.create_task(self.manager.run(), name="manager"),
            ]
            self.manager.recovery.commands = runtime  # recovery commands are not probes: see run_command
            if observability is not None and self.metrics_addr:
                tasks.append(asyncio.create_task(observability.serve(self.metrics_addr, self.manager), name="http"))
            log.info("controller started (state %s, pid %d)", self.state_dir.resolve(), os.getpid())
            waiters: list[asyncio.Future[Any]] = list(tasks)
            if stop is not None:
                waiters.append(asyncio.ensure_future(stop.wait()))
            done, _ = await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for finished in done:
                error = None if finished.cancelled() else finished.exception()
                if finished in tasks and error is not None:
                    raise error
            log.info("controller stopped; game servers keep running")
        finally:
            await cleanup.aclose()
            await notifications.aclose()  # after the controllers: their last events still go out
            state.close()
            lock.release()

    async def _start_api(self, store: SqliteStore, cleanup: contextlib.AsyncExitStack) -> None:
        from gamekeeper.observe.api import OpsApi, local_log_reader  # aiohttp: only when the API is on

        assert self.api_addr is not None
        api = OpsApi(store, self.clock, self.api_addr, self.api_token, logs=local_log_reader(self.state_dir))
        try:
            url = await api.start()
        except OSError as e:
            raise ApiUnavailable(f"--api-addr {self.api_addr}: cannot listen there: {e.strerror or e}; "
                                 "pick another address or port (port 0 picks a free one)") from None
        cleanup.push_async_callback(api.stop)
        # `gk dashboard` finds a running controller's API here.
        where = self.state_dir / API_FILE
        where.write_text(json.dumps({"url": url, "pid": os.getpid()}) + "\n")
        cleanup.callback(lambda: where.unlink(missing_ok=True))
        log.info("ops API and dashboard on %s", url)
        if self.on_api_url is not None:
            self.on_api_url(url)


def stop_controller(state_dir: Path, timeout: float = 10.0) -> bool:
    return PidLock(state_dir, "controller").stop_holder(timeout)


def stop_game_servers(state: SqliteState, grace: float = 10.0) -> list[str]:
    """Stop every container process of every pod record (used by `gk down`, without a controller)."""
    pods = state.list("Pod")
    groups: list[int] = []
    for pod in pods:
        for cs in (pod.get("status") or {}).get("containerStatuses") or []:
            parsed = parse_container_id(cs.get("containerID"))
            if parsed and alive(cs.get("containerID")):
                groups.append(parsed[0])
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(parsed[0], signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(_pid_alive(p) for p in groups):
        time.sleep(0.1)
    for pid in groups:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
    root = state.state_dir / "pods"
    if root.exists():
        kill_processes_under(root)
        shutil.rmtree(root, ignore_errors=True)
    stop_proxy(network_dir(state.state_dir))  # the host ports close with it
    return [p["metadata"]["name"] for p in pods]


def stop_untracked_game_servers(state_dir: Path) -> int:
    """`gk down` when the database cannot be read: every process working in a pod directory is killed."""
    root = state_dir / "pods"
    count = len(pod_dirs(state_dir))
    if root.exists():
        kill_processes_under(root)
        shutil.rmtree(root, ignore_errors=True)
    stop_proxy(network_dir(state_dir))
    return count


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(OSError), open(f"/proc/{pid}/stat", "rb") as f:
        if f.read().rsplit(b")", 1)[1].split()[0] == b"Z":
            return False
    return True
