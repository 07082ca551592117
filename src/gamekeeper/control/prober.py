"""The prober: runs each service quality's probe in its game server's container and reports the result as a
pod condition `game.kruise.io/<name>`, exactly where kruise-daemon would put it (spec §2.2).

One asyncio task per (pod, quality). A task starts after the container's start plus initialDelaySeconds plus
a random offset inside one period, so probes of many game servers are spread over the period rather than
fired in one burst. A probe that outlives timeoutSeconds is killed with its process group and counts as a
failure. A tick that arrives while the previous probe still runs is skipped and counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from gamekeeper.api.models import OWNER_GSS_KEY, SQ_CONDITION_PREFIX, ServiceQuality
from gamekeeper.api.times import parse_time
from gamekeeper.control.probes import http_get_probe, tcp_socket_probe
from gamekeeper.core.service_quality import ProbeWorker, probe_condition, probe_message
from gamekeeper.ports.runtime import ContainerNotRunning, ExecResult, Runtime
from gamekeeper.ports.store import Conflict, Obj, Store

log = logging.getLogger("gamekeeper.prober")


@dataclass
class ProbeStats:
    runs: int = 0
    timeouts: int = 0
    skipped: int = 0
    writes: int = 0
    outcomes: dict[tuple[str, str, bool], int] = field(default_factory=dict)


@dataclass
class _Task:
    digest: str
    task: asyncio.Task[None]


def _container_running(pod: Obj, container: str) -> tuple[bool, str | None]:
    for cs in (pod.get("status") or {}).get("containerStatuses") or []:
        if cs["name"] == container:
            running = (cs.get("state") or {}).get("running")
            return (running is not None, (running or {}).get("startedAt"))
    return (False, None)


class Prober:
    def __init__(
        self,
        store: Store,
        runtime: Runtime,
        clock: Callable[[], datetime],
        rng: random.Random | None = None,
        concurrency: int = 64,
    ) -> None:
        self.store = store
        self.runtime = runtime
        self.clock = clock
        self.rng = rng or random.Random()
        self.tasks: dict[tuple[str, str, str], _Task] = {}
        self.pods: dict[tuple[str, str], Obj] = {}
        self.stats = ProbeStats()
        self._limit = asyncio.Semaphore(concurrency)

    async def sync_pod(self, namespace: str, name: str) -> None:
        """Start, keep or stop the probe tasks of one pod to match its set's service qualities."""
        pod = await self.store.get("Pod", namespace, name)
        gss = None
        if pod is not None:
            owner = (pod["metadata"].get("labels") or {}).get(OWNER_GSS_KEY)
            gss = await self.store.get("GameServerSet", namespace, owner) if owner else None
        wanted: dict[str, tuple[str, ServiceQuality]] = {}
        if pod is not None and gss is not None and not pod["metadata"].get("deletionTimestamp"):
            self.pods[(namespace, name)] = pod
            containers = [c["name"] for c in pod["spec"]["containers"]]
            for raw in gss["spec"].get("serviceQualities") or []:
                sq = ServiceQuality.model_validate(raw)
                if sq.exec is None and sq.http_get is None and sq.tcp_socket is None:
                    continue
                container = sq.container_name or containers[0]
                digest = hashlib.sha256(json.dumps([raw, container], sort_keys=True).encode()).hexdigest()
                wanted[sq.name] = (digest, sq)
        else:
            self.pods.pop((namespace, name), None)
        for key in [k for k in self.tasks if k[:2] == (namespace, name)]:
            entry = self.tasks[key]
            if key[2] not in wanted or wanted[key[2]][0] != entry.digest:
                entry.task.cancel()
                del self.tasks[key]
        for sq_name, (digest, sq) in wanted.items():
            key = (namespace, name, sq_name)
            if key not in self.tasks:
                task = asyncio.create_task(self._worker(namespace, name, sq), name=f"probe {name}/{sq_name}")
                self.tasks[key] = _Task(digest, task)

    def stop(self) -> None:
        for entry in self.tasks.values():
            entry.task.cancel()
        self.tasks.clear()

    async def _worker(self, namespace: str, name: str, sq: ServiceQuality) -> None:
        period = float(sq.effective("period_seconds"))
        timeout = float(sq.effective("timeout_seconds"))
        delay = float(sq.effective("initial_delay_seconds"))
        worker = ProbeWorker(sq.effective("success_threshold"), sq.effective("failure_threshold"))
        loop = asyncio.get_running_loop()
        container = sq.container_name
        # Wait for the container, then initialDelaySeconds from its start, then a random phase.
        while True:
            pod = self.pods.get((namespace, name))
            if pod is None:
                return
            container = container or pod["spec"]["containers"][0]["name"]
            running, started = _container_running(pod, container)
            if running:
                since = (self.clock() - parse_time(started)).total_seconds() if started else 0.0
                await asyncio.sleep(max(0.0, delay - since) + self.rng.uniform(0, period))
                break
            await asyncio.sleep(min(period, 1.0))
        next_tick = loop.time()
        while True:
            pod = self.pods.get((namespace, name))
            if pod is None:
                return
            await self._probe_once(pod, container, sq, worker, timeout)
            next_tick += period
            now = loop.time()
            if now > next_tick:
                missed = int((now - next_tick) // period) + 1
                self.stats.skipped += missed
                next_tick += missed * period
            await asyncio.sleep(next_tick - now)

    async def _probe_once(
        self, pod: Obj, container: str, sq: ServiceQuality, worker: ProbeWorker, timeout: float
    ) -> None:
        running, _ = _container_running(pod, container)
        if not running:
            report = worker.observe(False, f"Container({container}) is Non-running")
        else:
            result = await self._run(pod, container, sq, timeout)
            self.stats.runs += 1
            if result.timed_out:
                self.stats.timeouts += 1
            success = result.exit_code == 0 and not result.timed_out
            message = probe_message(result.exit_code, result.stdout, result.stderr)
            gss = (pod["metadata"].get("labels") or {}).get(OWNER_GSS_KEY, "")
            key = (gss, sq.name, success)
            self.stats.outcomes[key] = self.stats.outcomes.get(key, 0) + 1
            report = worker.observe(success, message)
        if report is not None:
            await self._write_condition(pod, sq.name, report[0], report[1])

    async def _run(self, pod: Obj, container: str, sq: ServiceQuality, timeout: float) -> ExecResult:
        async with self._limit:
            try:
                if sq.exec is not None:
                    return await self.runtime.exec(pod, container, sq.exec.command, timeout)
                if sq.http_get is not None:
                    return await http_get_probe(sq.http_get, pod, container, timeout)
                if sq.tcp_socket is not None:
                    return await tcp_socket_probe(sq.tcp_socket, pod, container, timeout)
                return ExecResult(1, b"", b"no probe handler (exec, httpGet or tcpSocket) is set")
            except ContainerNotRunning as err:
                return ExecResult(1, b"", str(err).encode())
            except OSError as err:
                return ExecResult(1, b"", f"probe could not start: {err}".encode())

    async def _write_condition(self, pod: Obj, sq_name: str, success: bool, message: str) -> None:
        meta = pod["metadata"]
        cond_type = SQ_CONDITION_PREFIX + sq_name
        for _ in range(10):
            current = await self.store.get("Pod", meta["namespace"], meta["name"])
            if current is None or current["metadata"]["uid"] != meta["uid"]:
                return
            conditions = list((current.get("status") or {}).get("conditions") or [])
            index = next((i for i, c in enumerate(conditions) if c.get("type") == cond_type), None)
            existing = conditions[index] if index is not None else None
            new = probe_condition(cond_type, success, message, existing, self.clock())
            if new is None:
                return
            if index is None:
                conditions.append(new)
            else:
                conditions[index] = new
            with contextlib.suppress(Conflict):
                await self.store.patch(
                    "Pod", meta["namespace"], meta["name"], {"status": {"conditions": conditions}},
                    resource_version=current["metadata"]["resourceVersion"], subresource="status",
                )
                self.stats.writes += 1
                log.info(
                    "probe result",
                    extra={"gs": meta["name"], "quality": sq_name, "status": success, "result": message},
                )
                return


__all__ = ["Any", "ProbeStats", "Prober"]
