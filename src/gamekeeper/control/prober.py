"""The prober: runs each service quality's probe in its game server's container and reports the result as a
pod condition `game.kruise.io/<name>`, exactly where kruise-daemon would put it (spec §2.2).

What a probe does is kubelet's: it starts after the container's start plus initialDelaySeconds, runs every
periodSeconds, is killed with its process group after timeoutSeconds (a failure), and counts consecutive
results against the thresholds; a result is written only when it changes. A tick that arrives while the
previous run of the same probe is still going (or still waiting for a slot) is skipped and counted.

How it is scheduled is built for fleets of thousands (docs/performance.md; figures in bench/README.md):

- No task and no event-loop timer per probe. Each (pod, quality) is a small record whose next tick sits in one
  heap of (time, sequence, probe) tuples, served by a single event-loop timer set for the earliest; a due probe
  takes one of `concurrency` slots or waits, first come first served, for the next free one. A random phase
  inside the first period spreads the probes of a fleet evenly over the period.
- Exec probes go straight to a spawner when the runtime offers one (`probe_spawner`, with `exec_context`;
  see runtime/spawn.py): the command starts from the tick and its exit comes back as a callback;
  no coroutine, pipe or thread is involved. Other runtimes, and httpGet/tcpSocket probes, run as a task.
- Per pod the prober keeps only what a probe needs (uid, which containers run and since when, the working
  directory, and the environment as a difference from one environment shared by the set), not the pod.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import heapq
import json
import logging
import math
import random
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from gamekeeper.api.models import OWNER_GSS_KEY, SQ_CONDITION_PREFIX, ServiceQuality
from gamekeeper.api.times import parse_time
from gamekeeper.control.probes import http_get_probe, tcp_socket_probe
from gamekeeper.control.queue import log_failure
from gamekeeper.core.service_quality import MAX_MESSAGE_BYTES, ProbeWorker, probe_condition, probe_message
from gamekeeper.ports.runtime import ContainerNotRunning, ExecResult, Runtime
from gamekeeper.ports.store import Conflict, Obj, Store, spec_version

log = logging.getLogger("gamekeeper.prober")


@dataclass
class ProbeStats:
    runs: int = 0
    timeouts: int = 0
    skipped: int = 0
    writes: int = 0
    outcomes: dict[tuple[str, str, bool], int] = field(default_factory=dict)
    # Runs that started more than a tenth of their period after their tick (waiting for a slot), and the
    # longest such wait in seconds.
    late: int = 0
    max_delay: float = 0.0


class StartedProbe(Protocol):
    def kill(self) -> None: ...


class ProbeSpawner(Protocol):
    """Starts a command and calls `done` from the event loop when it has finished (runtime/spawn.py)."""

    def spawn(
        self,
        argv: Sequence[str],
        cwd: str,
        env: Mapping[str, str],
        timeout: float,
        done: Callable[[ExecResult], None],
        max_output: int | None = None,
        env_base: Mapping[str, str] | None = None,
    ) -> StartedProbe:
        """The environment is `env`, or `env_base` updated with `env` (env_base: shared, never changed)."""
        ...


class ExecContextRuntime(Protocol):
    """A runtime that can say where and with what environment a container's commands run."""

    def exec_context(self, pod: Mapping[str, Any], container: str | None) -> tuple[Any, Mapping[str, str]]: ...


class _Quality:
    """One service quality of a set, parsed once and shared by every pod of the set."""

    __slots__ = ("command", "container", "delay", "digest", "failure", "name", "period", "sq", "success",
                 "timeout")

    def __init__(self, raw: Mapping[str, Any]) -> None:
        sq = ServiceQuality.model_validate(raw)
        self.sq = sq
        self.name = sq.name
        self.container = sq.container_name
        self.digest = hashlib.sha256(json.dumps(raw, sort_keys=True).encode()).hexdigest()
        self.period = float(sq.effective("period_seconds"))
        self.timeout = float(sq.effective("timeout_seconds"))
        self.delay = float(sq.effective("initial_delay_seconds"))
        self.success = sq.effective("success_threshold")
        self.failure = sq.effective("failure_threshold")
        self.command: tuple[str, ...] | None = tuple(sq.exec.command) if sq.exec is not None else None


class _Pod:
    """What the prober keeps of one pod."""

    __slots__ = ("contexts", "gss", "name", "namespace", "obj", "probes", "qualities", "running", "seen", "uid")

    def __init__(self, namespace: str, name: str, uid: str, gss: str) -> None:
        self.namespace = namespace
        self.name = name
        self.uid = uid
        self.gss = gss
        self.running: dict[str, str] = {}  # running container -> its startedAt ("" when unknown)
        # container -> (cwd, shared base environment, the variables that differ from it, names to drop)
        self.contexts: dict[str, tuple[str, dict[str, str], dict[str, str], tuple[str, ...]]] = {}
        self.probes: dict[str, _Probe] = {}
        self.obj: Obj | None = None  # the whole pod, kept only when a probe needs it (no spawner, httpGet…)
        self.seen: str | None = None  # the pod's resourceVersion at the last sync
        self.qualities: list[_Quality] | None = None  # the set's qualities at the last sync


class _Probe:
    """One (pod, quality): its thresholds, its next tick, and whether a run is queued, running or writing."""

    __slots__ = ("armed", "busy", "container", "dead", "due", "pod", "prober", "quality", "started", "tick",
                 "worker")

    def __init__(self, prober: Prober, pod: _Pod, quality: _Quality, container: str) -> None:
        self.prober = prober
        self.pod = pod
        self.quality = quality
        self.container = container
        self.worker = ProbeWorker(quality.success, quality.failure)
        self.armed = False  # ticking (from the container's first start on)
        self.due = 0.0  # loop time of the next tick
        self.tick = 0.0  # loop time of the tick the current run serves
        self.busy = False
        self.dead = False
        self.started: StartedProbe | None = None

    def done(self, result: ExecResult) -> None:
        self.prober._finished(self, result)

    def cancel(self) -> None:
        self.dead = True
        if self.started is not None:
            self.started.kill()


def _running_containers(pod: Obj) -> dict[str, str]:
    out = {}
    for cs in (pod.get("status") or {}).get("containerStatuses") or []:
        running = (cs.get("state") or {}).get("running")
        if running is not None:
            out[cs["name"]] = running.get("startedAt") or ""
    return out


class Prober:
    def __init__(
        self,
        store: Store,
        runtime: Runtime,
        clock: Callable[[], datetime],
        rng: random.Random | None = None,
        concurrency: int = 64,
        spawner: ProbeSpawner | None = None,
    ) -> None:
        self.on_probe_done: Callable[[str, str, float], None] | None = None
        self.store = store
        self.runtime = runtime
        self.clock = clock
        self.rng = rng or random.Random()
        self.concurrency = concurrency
        self.spawner: ProbeSpawner | None = spawner or getattr(runtime, "probe_spawner", None)
        self.stats = ProbeStats()
        self.pods: dict[tuple[str, str], _Pod] = {}
        self._qualities: dict[tuple[str, str], tuple[tuple[str, object], list[_Quality]]] = {}
        self._bases: dict[tuple[str, str, str], dict[str, str]] = {}
        self._pending: deque[_Probe] = deque()
        self._ticks: list[tuple[float, int, _Probe]] = []  # heap of (next tick, sequence, probe)
        self._sequence = 0
        self._event_loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = math.inf
        self._inflight = 0
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def tasks(self) -> dict[tuple[str, str, str], _Probe]:
        """Every probe, by (namespace, pod, quality)."""
        return {(p.namespace, p.name, q): probe for p in self.pods.values() for q, probe in p.probes.items()}

    @property
    def inflight(self) -> int:
        return self._inflight

    # -- following the pods --------------------------------------------------------------------------------

    async def sync_pod(self, namespace: str, name: str) -> None:
        """Start, keep or stop the probes of one pod to match its set's service qualities."""
        pod = await self.store.get("Pod", namespace, name)
        qualities: list[_Quality] = []
        gss_name = ""
        if pod is not None and not pod["metadata"].get("deletionTimestamp"):
            gss_name = (pod["metadata"].get("labels") or {}).get(OWNER_GSS_KEY) or ""
            if gss_name:
                gss = await self.store.get("GameServerSet", namespace, gss_name)
                qualities = self._set_qualities(gss) if gss is not None else []
        key = (namespace, name)
        state = self.pods.get(key)
        if pod is None or not qualities:
            if state is not None:
                self._drop(key)
            return
        meta = pod["metadata"]
        if state is not None and state.uid != meta["uid"]:
            self._drop(key)
            state = None
        if state is None:
            state = self.pods[key] = _Pod(namespace, name, meta["uid"], gss_name)
        elif state.seen == meta.get("resourceVersion") and state.qualities is qualities:
            return  # neither the pod nor its set's qualities changed (a resync): nothing to do
        state.seen = meta.get("resourceVersion")
        state.qualities = qualities
        state.running = _running_containers(pod)
        containers = [c["name"] for c in pod["spec"]["containers"]]
        wanted = {q.name: q for q in qualities}
        for sq_name in [n for n, p in state.probes.items() if wanted.get(n) is not p.quality]:
            state.probes.pop(sq_name).cancel()
        needs_pod = False
        exec_containers = set()
        for quality in qualities:
            container = quality.container or containers[0]
            probe = state.probes.get(quality.name)
            if probe is not None and probe.container != container:
                state.probes.pop(quality.name).cancel()
                probe = None
            if probe is None:
                probe = state.probes[quality.name] = _Probe(self, state, quality, container)
            if quality.command is None:
                needs_pod = True
            else:
                exec_containers.add(container)
        for container in list(state.contexts):
            if container not in exec_containers:
                del state.contexts[container]
        for container in exec_containers:
            if not self._context(state, pod, container):
                needs_pod = True
        state.obj = pod if needs_pod else None
        for probe in state.probes.values():
            if not probe.armed and probe.container in state.running:
                self._first_tick(probe, state.running[probe.container])

    def _set_qualities(self, gss: Obj) -> list[_Quality]:
        meta = gss["metadata"]
        key = (meta["namespace"], meta["name"])
        cached = self._qualities.get(key)
        version = spec_version(gss)
        if cached is not None and cached[0] == version:
            return cached[1]
        raws = gss["spec"].get("serviceQualities") or []
        old = {q.digest: q for q in cached[1]} if cached is not None else {}
        qualities = []
        for raw in raws:
            quality = _Quality(raw)
            if quality.sq.exec is None and quality.sq.http_get is None and quality.sq.tcp_socket is None:
                continue
            # An unchanged quality stays the same object, so its probes keep running.
            qualities.append(old.get(quality.digest, quality))
        self._qualities[key] = (version, qualities)
        return qualities

    def _context(self, state: _Pod, pod: Obj, container: str) -> bool:
        """Record where and how the spawner runs a container's probes; False when it cannot (use the runtime)."""
        if self.spawner is None or not hasattr(self.runtime, "exec_context"):
            return False
        if container not in state.running:
            state.contexts.pop(container, None)
            return True  # nothing runs: the probe reports that, it needs no context
        runtime: ExecContextRuntime = self.runtime  # type: ignore[assignment]
        try:
            cwd, env = runtime.exec_context(pod, container)
        except ContainerNotRunning:
            state.contexts.pop(container, None)
            return True
        except Exception:  # e.g. an image no longer in the image map: runtime.exec will report it
            log.debug("no exec context for %s/%s", state.name, container, exc_info=True)
            state.contexts.pop(container, None)
            return False
        # The environments of a set's pods differ in a few variables (POD_NAME…): keep one whole environment per
        # set and container, and per pod only what differs from it.
        base = self._bases.setdefault((state.namespace, state.gss, container), dict(env))
        differ = {k: v for k, v in env.items() if base.get(k) != v}
        drop = tuple(base.keys() - env.keys())
        state.contexts[container] = (str(cwd), base, differ, drop)
        return True

    def _drop(self, key: tuple[str, str]) -> None:
        state = self.pods.pop(key)
        for probe in state.probes.values():
            probe.cancel()
        state.probes.clear()

    def stop(self) -> None:
        for key in list(self.pods):
            self._drop(key)
        for task in self._tasks:
            task.cancel()
        self._pending.clear()
        self._ticks.clear()
        if self._timer is not None:
            self._timer.cancel()
        self._timer, self._timer_at = None, math.inf

    # -- scheduling ----------------------------------------------------------------------------------------

    def _first_tick(self, probe: _Probe, started_at: str) -> None:
        """initialDelaySeconds after the container started, plus a random phase inside one period."""
        quality = probe.quality
        since = (self.clock() - parse_time(started_at)).total_seconds() if started_at else 0.0
        probe.armed = True
        self._at(self._loop().time() + max(0.0, quality.delay - since) + self.rng.uniform(0, quality.period), probe)

    def _loop(self) -> asyncio.AbstractEventLoop:
        loop = self._event_loop
        if loop is None or loop.is_closed():
            loop = self._event_loop = asyncio.get_running_loop()
            self._timer, self._timer_at = None, math.inf
        return loop

    def _at(self, when: float, probe: _Probe) -> None:
        probe.due = when
        self._sequence += 1
        heapq.heappush(self._ticks, (when, self._sequence, probe))
        if when < self._timer_at:
            self._arm(when)

    def _arm(self, when: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = when
        self._timer = self._loop().call_at(when, self._serve)

    def _serve(self) -> None:
        """Every tick that is due, in time order; then the timer for the next."""
        self._timer = None
        self._timer_at = -math.inf  # while serving, _at only pushes
        ticks = self._ticks
        now = self._loop().time()
        try:
            while ticks and ticks[0][0] <= now:
                _, _, probe = heapq.heappop(ticks)
                if not probe.dead:
                    self._tick(probe, now)
            while ticks and ticks[0][2].dead:
                heapq.heappop(ticks)
        finally:
            self._timer_at = math.inf
            if ticks:
                self._arm(ticks[0][0])

    def _tick(self, probe: _Probe, now: float) -> None:
        period = probe.quality.period
        tick = probe.due
        following = tick + period
        if following <= now:  # the loop itself was held up for whole periods
            missed = int((now - following) // period) + 1
            self.stats.skipped += missed
            following += missed * period
        self._at(following, probe)
        if probe.busy:
            self.stats.skipped += 1
            return
        probe.busy = True
        probe.tick = tick
        if self._inflight < self.concurrency:
            self._start(probe, now)
        else:
            self._pending.append(probe)

    def _start(self, probe: _Probe, now: float) -> None:
        delay = now - probe.tick
        if delay > probe.quality.period / 10:
            self.stats.late += 1
            self.stats.max_delay = max(self.stats.max_delay, delay)
        state = probe.pod
        container = probe.container
        if container not in state.running:
            self._observe(probe, False, f"Container({container}) is Non-running")
            return
        self._inflight += 1
        quality = probe.quality
        context = state.contexts.get(container)
        if quality.command is not None and context is not None and self.spawner is not None:
            cwd, base, differ, drop = context
            try:
                if drop:
                    env = {k: v for k, v in base.items() if k not in drop}
                    env.update(differ)
                    probe.started = self.spawner.spawn(quality.command, cwd, env, quality.timeout, probe.done,
                                                       MAX_MESSAGE_BYTES)
                else:
                    probe.started = self.spawner.spawn(quality.command, cwd, differ, quality.timeout, probe.done,
                                                       MAX_MESSAGE_BYTES, base)
            except (OSError, ValueError) as err:
                probe.started = None
                self._finished(probe, ExecResult(1, b"", f"probe could not start: {err}".encode()))
            return
        task = self._loop().create_task(self._run_task(probe), name=f"probe {state.name}/{quality.name}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _drain(self) -> None:
        pending = self._pending
        if not pending:
            return
        now = self._loop().time()
        while pending and self._inflight < self.concurrency:
            probe = pending.popleft()
            if probe.dead:
                continue
            self._start(probe, now)

    async def _run_task(self, probe: _Probe) -> None:
        try:
            result = await self._run(probe)
        except asyncio.CancelledError:
            self._inflight -= 1
            raise
        self._finished(probe, result)

    async def _run(self, probe: _Probe) -> ExecResult:
        pod = probe.pod.obj
        sq = probe.quality.sq
        timeout = probe.quality.timeout
        if pod is None:
            return ExecResult(1, b"", b"pod not known")
        try:
            if sq.exec is not None:
                return await self.runtime.exec(pod, probe.container, sq.exec.command, timeout)
            if sq.http_get is not None:
                return await http_get_probe(sq.http_get, pod, probe.container, timeout)
            if sq.tcp_socket is not None:
                return await tcp_socket_probe(sq.tcp_socket, pod, probe.container, timeout)
            return ExecResult(1, b"", b"no probe handler (exec, httpGet or tcpSocket) is set")
        except ContainerNotRunning as err:
            return ExecResult(1, b"", str(err).encode())
        except OSError as err:
            return ExecResult(1, b"", f"probe could not start: {err}".encode())

    # -- results -------------------------------------------------------------------------------------------

    def _finished(self, probe: _Probe, result: ExecResult) -> None:
        self._inflight -= 1
        probe.started = None
        stats = self.stats
        stats.runs += 1
        if result.timed_out:
            stats.timeouts += 1
        success = result.exit_code == 0 and not result.timed_out
        key = (probe.pod.gss, probe.quality.name, success)
        stats.outcomes[key] = stats.outcomes.get(key, 0) + 1
        if self.on_probe_done is not None:
            # From the tick to the result: includes any wait for a free slot, which is what a user feels.
            self.on_probe_done(probe.pod.gss, probe.quality.name, asyncio.get_running_loop().time() - probe.tick)
        self._observe(probe, success, probe_message(result.exit_code, result.stdout, result.stderr))
        self._drain()

    def _observe(self, probe: _Probe, success: bool, message: str) -> None:
        report = probe.worker.observe(success, message)
        if report is None or probe.dead:
            probe.busy = False
            return
        # Writing keeps the probe busy (a tick meanwhile is skipped), so results reach the store in order.
        task = self._loop().create_task(self._write(probe, report[0], report[1]))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _write(self, probe: _Probe, success: bool, message: str) -> None:
        try:
            await self._write_condition(probe.pod, probe.quality.name, success, message)
        except Exception as e:
            log_failure(log, e, "writing the %s probe result of %s failed", probe.quality.name, probe.pod.name)
        finally:
            probe.busy = False

    async def _write_condition(self, pod: _Pod, sq_name: str, success: bool, message: str) -> None:
        cond_type = SQ_CONDITION_PREFIX + sq_name
        for _ in range(10):
            current = await self.store.get("Pod", pod.namespace, pod.name)
            if current is None or current["metadata"]["uid"] != pod.uid:
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
                    "Pod", pod.namespace, pod.name, {"status": {"conditions": conditions}},
                    resource_version=current["metadata"]["resourceVersion"], subresource="status",
                )
                self.stats.writes += 1
                log.info(
                    "probe result",
                    extra={"gs": pod.name, "quality": sq_name, "status": success, "result": message},
                )
                return


__all__ = ["ExecContextRuntime", "ProbeSpawner", "ProbeStats", "Prober", "StartedProbe"]
