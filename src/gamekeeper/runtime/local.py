"""Embedded runtime: each container of a pod record runs as a supervised local process (a tiny kubelet).

- Working directory: a copy of the image directory, `<state>/pods/<ns>/<pod>/<container>/`, kept across
  restarts of the container (like a container's writable layer) and removed with the pod.
- Process: `/bin/sh` runs the entrypoint as its child in a new session (so Ctrl-C or a crash of the
  controller never reaches it) and writes the child's exit code to a file, so a restarted controller learns
  how a process it did not start has ended. The container ID `local://<pid>-<starttime>` identifies the
  process by pid *and* kernel start time, so a re-used pid is never mistaken for the game server.
- One game process per container whatever dies: the game runs with `setpriv --pdeathsig KILL`, so a killed
  supervisor takes it along (and what is left of its group or directory is killed before the next start); the
  supervisor starts the game only once the controller has written the container ID to `.<container>.spec`, so a
  controller killed at any moment of a start leaves a process it re-adopts, or none.
- Restarts follow the pod's restartPolicy with kubelet's back-off (10 s doubling to 5 min, reset after 10 min
  of running).
- Deletion: SIGTERM to the process group, SIGKILL after the grace period, then any process still working
  in the pod's directories (a daemon that left the group, such as a detached player client) is killed too.
  Each pod is stopped in its own task, so many pods deleted at once (a rollout, a scale-in) stop in parallel.
- Changed definitions (what makes in-place updates work): every start records a hash of what the container
  was started from (image, command, args, env, workingDir) in `.<container>.spec` beside its log. When the pod
  record's container differs from that, kubelet-like, only that container is stopped (TERM, KILL after the
  grace period, strays in its directory killed) and started again at once, whatever the restartPolicy, with a
  fresh back-off (the restart it owes is recorded before the TERM, so a controller killed meanwhile still makes
  it); its restartCount goes up and its lastState shows how it ended. The other containers, the pod
  record, its conditions and its log files are untouched. A new *image* also means a new working directory
  (a fresh copy of the image, as a new container gets a fresh filesystem); a new command or environment keeps
  the directory. `containerStatuses[].image` is the image the container really runs, so a controller can tell
  when an update has been carried out.
- Restart in place (a recovery's restartContainer): a new value of the pod annotation
  `recovery.gamekeeper.io/restart-<container>` restarts that one container the same way, once.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gamekeeper.api.times import format_time
from gamekeeper.control.queue import Slices
from gamekeeper.core.network import pod_ip
from gamekeeper.ports.runtime import ContainerNotRunning, ExecResult
from gamekeeper.ports.store import Conflict, NotFound, Obj, Store
from gamekeeper.runtime.adoption import (
    FoundContainer,
    find_supervisors,
    proc_stat,
    still_running,
    untracked,
    untracked_message,
)
from gamekeeper.runtime.images import ImageMap, UnknownImage
from gamekeeper.runtime.network import RETRY_SECONDS, PodNetwork
from gamekeeper.runtime.spawn import PROBE_MARK, Leftovers, ProbeSpawner
from gamekeeper.runtime.spawn_helper import HelperSpawner, probe_spawner

log = logging.getLogger("gamekeeper.kubelet")

FINALIZER = "gamekeeper.io/local-runtime"
BACKOFF_START = 10.0
BACKOFF_MAX = 300.0
BACKOFF_RESET_AFTER = 600.0
# A recovery's "restart this container in place" (docs/recovery.md): a new value of this pod annotation restarts
# that one container once. The value each container was started under is kept in its spec record, so neither a
# restarted controller nor a repeated write restarts it twice.
RESTART_ANNOTATION_PREFIX = "recovery.gamekeeper.io/restart-"

# The supervisor waits for the controller's "go" (sent once the container ID is on disk, in `.<container>.spec`):
# a controller killed between starting the supervisor and recording it leaves no game process nobody knows of.
_WRAPPER = r"""
IFS= read -r go || exit 0
[ "$go" = go ] || exit 0
"$@" </dev/null &
child=$!
trap 'kill -TERM "$child" 2>/dev/null' TERM
trap 'kill -INT "$child" 2>/dev/null' INT
trap 'kill -HUP "$child" 2>/dev/null' HUP
wait "$child"; code=$?
while kill -0 "$child" 2>/dev/null; do wait "$child"; code=$?; done
printf '%s\n' "$code" > "$GK_EXIT_FILE.tmp" && mv "$GK_EXIT_FILE.tmp" "$GK_EXIT_FILE"
exit "$code"
"""


# The game process dies with its supervisor (SIGKILL on the supervisor's death): a killed supervisor must never leave
# a game process running beside the one its restart starts (two servers on one identity).
_DIE_WITH_SUPERVISOR = ["setpriv", "--pdeathsig", "KILL", "--"] if shutil.which("setpriv") else []


def process_start_time(pid: int) -> int | None:
    """Kernel start time (clock ticks after boot) of a live process, or None."""
    stat = proc_stat(pid)
    return None if stat is None or stat[0] == b"Z" else stat[2]


def container_id(pid: int, start: int) -> str:
    return f"local://{pid}-{start}"


def parse_container_id(cid: str | None) -> tuple[int, int] | None:
    if not cid or not cid.startswith("local://"):
        return None
    pid, _, start = cid.removeprefix("local://").partition("-")
    try:
        return int(pid), int(start)
    except ValueError:
        return None


def alive(cid: str | None) -> bool:
    parsed = parse_container_id(cid)
    return parsed is not None and process_start_time(parsed[0]) == parsed[1]


def container_spec_hash(spec: Mapping[str, Any]) -> str:
    """What a running container was made from; when it changes, kubelet restarts the container (its "hash").

    Only what shapes the process counts: ports, probes or resources changing restart nothing here.
    """
    data = {key: spec.get(key) for key in ("image", "command", "args", "env", "workingDir")}
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def pod_dir(state_dir: Path, namespace: str, name: str) -> Path:
    return state_dir / "pods" / namespace / name


def pod_container(pod: Mapping[str, Any], name: str | None) -> dict[str, Any]:
    containers: list[dict[str, Any]] = pod["spec"]["containers"]
    if name is None:
        return containers[0]
    for c in containers:
        if c["name"] == name:
            return c
    names = ", ".join(c["name"] for c in containers)
    raise ContainerNotRunning(f'container "{name}" not found in pod {pod["metadata"]["name"]} (containers: {names})')


@dataclass
class LocalPaths:
    state_dir: Path

    def workdir(self, pod: Mapping[str, Any], container: str) -> Path:
        meta = pod["metadata"]
        return pod_dir(self.state_dir, meta["namespace"], meta["name"]) / container

    def log_file(self, pod: Mapping[str, Any], container: str) -> Path:
        meta = pod["metadata"]
        return pod_dir(self.state_dir, meta["namespace"], meta["name"]) / f"{container}.log"

    def exit_file(self, pod: Mapping[str, Any], container: str) -> Path:
        meta = pod["metadata"]
        return pod_dir(self.state_dir, meta["namespace"], meta["name"]) / f".{container}.exit"

    def spec_file(self, pod: Mapping[str, Any], container: str) -> Path:
        meta = pod["metadata"]
        return pod_dir(self.state_dir, meta["namespace"], meta["name"]) / f".{container}.spec"


def container_environment(pod: Mapping[str, Any], container: Mapping[str, Any], images: ImageMap) -> dict[str, str]:
    """The process environment: ours (PATH, HOME…), the image's defaults, the template's env, downward API."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GK_")}
    image = images.resolve(container.get("image") or "")
    env.update(image.env)
    meta = pod["metadata"]
    address = pod_ip(pod)  # the pod's own loopback address when it has a network (runtime/network.py)
    env.update({
        "POD_NAME": meta["name"],
        "POD_NAMESPACE": meta["namespace"],
        "POD_IP": address,
        "HOSTNAME": meta["name"],
    })
    for var in container.get("env") or []:
        if "value" in var:
            env[var["name"]] = var["value"]
        elif "valueFrom" in var:
            ref = (var["valueFrom"] or {}).get("fieldRef", {}).get("fieldPath", "")
            value = {
                "metadata.name": meta["name"],
                "metadata.namespace": meta["namespace"],
                "metadata.uid": meta.get("uid", ""),
                "status.podIP": address,
                "status.hostIP": "127.0.0.1",
                "spec.nodeName": socket.gethostname(),
            }.get(ref)
            if ref.startswith("metadata.labels['"):
                value = (meta.get("labels") or {}).get(ref[len("metadata.labels['") : -2])
            elif ref.startswith("metadata.annotations['"):
                value = (meta.get("annotations") or {}).get(ref[len("metadata.annotations['") : -2])
            if value is not None:
                env[var["name"]] = value
        else:
            env[var["name"]] = ""
    return env


_VAR_REF = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


def expand_references(text: str, env: Mapping[str, str]) -> str:
    """Kubernetes `$(VAR)` expansion in command and args: `$$` escapes, unknown references stay as written."""

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        return env.get(match.group(1), match.group(0))

    return _VAR_REF.sub(replace, text)


def entrypoint(container: Mapping[str, Any], images: ImageMap, env: Mapping[str, str] | None = None) -> list[str]:
    """Kubernetes rules: `command` replaces ENTRYPOINT (and drops CMD), `args` replaces CMD.

    `$(VAR)` in the container's own command and args expands from the container's environment.
    """
    image = images.resolve(container.get("image") or "")
    own = {v["name"]: v.get("value", "") for v in container.get("env") or [] if "value" in v}
    if env is not None:
        own = {**env, **own}
    if container.get("command"):
        return [expand_references(a, own) for a in [*container["command"], *(container.get("args") or [])]]
    args = [expand_references(a, own) for a in container["args"]] if container.get("args") is not None else image.args
    argv = [*image.command, *args]
    if not argv:
        raise UnknownImage(f"image {image.reference!r} has no command in the image map and the container sets none")
    return argv


# kubelet's cap on what an exec probe's output it keeps (pkg/probe/exec: maxReadLength).
PROBE_OUTPUT_LIMIT = 10 * 1024


async def _read_capped(stream: asyncio.StreamReader | None, limit: int) -> bytes:
    """Read to the end, keeping at most `limit` bytes: the rest is read and dropped, never held."""
    kept = bytearray()
    while stream is not None:
        chunk = await stream.read(65536)
        if not chunk:
            break
        if len(kept) < limit:
            kept += chunk[: limit - len(kept)]
    return bytes(kept)


def _read_outcome(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


async def run_with_timeout(
    argv: Sequence[str], cwd: Path, env: Mapping[str, str], timeout: float, limit: int = PROBE_OUTPUT_LIMIT,
    leftovers: Leftovers | None = None,
) -> ExecResult:
    """Run a command in its own session; at the timeout kill its whole process group (no zombies left).

    stdout and stderr are each kept up to `limit` bytes. With `leftovers`, the command is marked as a probe run
    and whatever it leaves outside its group (a `setsid` child) is killed once it has ended.
    """
    token = leftovers.begin() if leftovers is not None else None
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            cwd=str(cwd),
            env={**env, PROBE_MARK: token} if token is not None else dict(env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        gathered = asyncio.gather(_read_capped(proc.stdout, limit), _read_capped(proc.stderr, limit), proc.wait())
        try:
            stdout, stderr, _ = await asyncio.wait_for(gathered, timeout)
        except asyncio.CancelledError:
            # Python 3.11's wait_for cancels the gather and never reads the CancelledError the gather then holds:
            # unread, it is logged as "exception was never retrieved" once per probe cancelled at a stop.
            gathered.cancel()
            gathered.add_done_callback(_read_outcome)
            raise
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(proc.wait(), 5)
            return ExecResult(-1, b"", f"command timed out after {timeout:g}s".encode(), timed_out=True)
        finally:
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
        # A probe's stray background children would otherwise outlive it.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        return ExecResult(proc.returncode if proc.returncode is not None else -1, stdout, stderr)
    finally:
        if leftovers is not None and token is not None:
            leftovers.end(token)


class LocalRuntime:
    """Runtime port for embedded mode: exec runs in the container's directory and environment."""

    def __init__(self, state_dir: Path, images: ImageMap, spawner: bool = True) -> None:
        self.paths = LocalPaths(state_dir)
        self.images = images
        # The prober starts exec probes through this (with exec_context) instead of `exec`: posix_spawn, output to
        # memory files, exits on one epoll (runtime/spawn.py), in a helper process unless GK_SPAWN=inline
        # (runtime/spawn_helper.py, docs/performance.md). None where the platform lacks pidfd/memfd/epoll;
        # `exec` (asyncio subprocesses) then serves the probes too.
        self.probe_spawner: ProbeSpawner | HelperSpawner | None = probe_spawner() if spawner else None
        self.leftovers = Leftovers()  # of the probes `exec` runs

    def close(self) -> None:
        """Kill the probes still running and release the spawner's descriptors."""
        if self.probe_spawner is not None:
            self.probe_spawner.close()
        self.leftovers.close()

    def exec_context(self, pod: Mapping[str, Any], container: str | None) -> tuple[Path, dict[str, str]]:
        spec = pod_container(pod, container)
        status = next(
            (s for s in (pod.get("status") or {}).get("containerStatuses") or [] if s["name"] == spec["name"]),
            None,
        )
        if status is None or "running" not in (status.get("state") or {}):
            raise ContainerNotRunning(f'container {spec["name"]} of {pod["metadata"]["name"]} is not running')
        workdir = self.paths.workdir(pod, spec["name"])
        cwd = container_cwd(workdir, spec.get("workingDir"))
        return cwd, container_environment(pod, spec, self.images)

    async def exec(
        self, pod: dict[str, Any], container: str, command: Sequence[str], timeout: float
    ) -> ExecResult:
        cwd, env = self.exec_context(pod, container or None)
        return await run_with_timeout(command, cwd, env, timeout, leftovers=self.leftovers)

    async def run_command(
        self, pod: dict[str, Any], container: str, command: Sequence[str], timeout: float
    ) -> ExecResult:
        """CommandRunner: a recovery command; what it starts in its own session is not swept away as a probe's."""
        cwd, env = self.exec_context(pod, container or None)
        return await run_with_timeout(command, cwd, env, timeout)


class LocalRestarter:
    """ContainerRestarter for embedded mode: the local kubelet restarts a container when its annotation changes."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def restart_container(self, pod: dict[str, Any], container: str, token: str) -> str:
        meta = pod["metadata"]
        key = RESTART_ANNOTATION_PREFIX + container
        await self.store.patch("Pod", meta["namespace"], meta["name"], {"metadata": {"annotations": {key: token}}})
        return f"asked the local kubelet to restart container {container} ({key}={token})"
def container_cwd(workdir: Path, working_dir: str | None) -> Path:
    """A container's workingDir, inside its working directory; OSError (RunContainerError) if it would leave it.

    Admission refuses '..' already; this holds for a pod that did not pass it and for a symlink in the image.
    """
    if not working_dir:
        return workdir
    cwd = workdir / working_dir.lstrip("/")
    if not cwd.resolve().is_relative_to(workdir.resolve()):
        raise OSError(f"workingDir {working_dir!r} leaves the container's directory")
    return cwd


@dataclass
class _Container:
    name: str
    cid: str | None = None
    started_at: str | None = None
    restart_count: int = 0
    last_state: dict[str, Any] = field(default_factory=dict)
    terminated: dict[str, Any] | None = None
    waiting: dict[str, Any] | None = None
    backoff: float = -1.0  # the last restart delay; -1 before the first restart
    retry_at: float = 0.0
    started_mono: float = 0.0
    pidfd: int | None = None
    child: subprocess.Popen[bytes] | None = None
    spec_hash: str | None = None  # container_spec_hash of what it was last started from (None: unknown)
    image: str | None = None  # the image it was last started from
    replacing: bool = False  # stopped because its definition changed: start again at once
    restart_token: str | None = None  # the RESTART_ANNOTATION_PREFIX value it was started under
    stop_task: asyncio.Task[None] | None = None


@dataclass
class _Pod:
    namespace: str
    name: str
    uid: str
    containers: dict[str, _Container] = field(default_factory=dict)
    start_time: str | None = None
    stopping: bool = False


class LocalKubelet:
    """Keeps each pod record's containers running as local processes and reports pod status to the store."""

    def __init__(
        self,
        store: Store,
        state_dir: Path,
        images: ImageMap,
        clock: Callable[[], datetime] | None = None,
        backoff_start: float = BACKOFF_START,
        network: PodNetwork | None = None,
    ) -> None:
        self.store = store
        # Pod addresses and host ports (networkType Kubernetes-HostPort); None: no pod gets a network.
        self.network = network
        if network is not None:
            network.enqueue = self.enqueue
        self.paths = LocalPaths(state_dir)
        self.images = images
        self.clock = clock or (lambda: datetime.now(UTC))
        self.backoff_start = backoff_start
        self.pods: dict[tuple[str, str], _Pod] = {}
        self._queue: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
        self._queued: set[tuple[str, str]] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        # Container supervisors found running at start, by (namespace, pod, container): a pod record whose status
        # does not name them (the store lost it) claims them by name instead of starting a second game server.
        self._found: dict[tuple[str, str, str], FoundContainer] = {}

    # -- driving ------------------------------------------------------------------------------------------

    def enqueue(self, namespace: str, name: str) -> None:
        key = (namespace, name)
        if key not in self._queued:
            self._queued.add(key)
            self._queue.put_nowait(key)

    async def resync(self) -> None:
        for pod in await self.store.list_projected("Pod", ()):  # names: not every whole pod at once
            self.enqueue(pod["metadata"]["namespace"], pod["metadata"]["name"])
        for key in list(self.pods):
            self.enqueue(*key)

    async def run(self) -> None:
        try:
            if self.network is not None:
                try:
                    await self.network.start(await self.store.list("Pod"))
                except Exception:
                    log.exception("reading the network allocations back failed")
            await self._find_running()
            await self.resync()
            slices = Slices()  # a resync brings every pod here at once: share the loop as the work queues do
            while True:
                key = await slices.next(self._queue)
                self._queued.discard(key)
                try:
                    await self.sync_pod(*key)
                except Conflict:
                    self.enqueue(*key)
                except Exception:
                    log.exception("syncing pod %s/%s failed", *key)
                    loop = asyncio.get_running_loop()
                    loop.call_later(2.0, self.enqueue, *key)
        finally:
            # Stops in progress are abandoned: the next controller adopts those pods and finishes the job.
            tasks = list(self._tasks)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _find_running(self) -> None:
        """Find every container supervisor under the pods directory; report those the store has no pod for."""
        # One pass over /proc (a fraction of a second with thousands of processes): off the loop.
        self._found = await asyncio.to_thread(find_supervisors, self.paths.state_dir)
        pods = await self.store.list_projected("Pod", ())
        lost = untracked(self._found, ((p["metadata"]["namespace"], p["metadata"]["name"]) for p in pods))
        if not lost:
            return
        log.warning("%s", untracked_message(lost))
        for f in lost:
            involved = {"kind": "Pod", "metadata": {"namespace": f.namespace, "name": f.pod, "uid": ""}}
            with contextlib.suppress(Exception):  # the report must not keep the kubelet from starting
                await self.store.record_event(
                    involved, "Warning", "UntrackedGameServer",
                    f"container {f.container} is running (pid {f.pid}) but the state database has no pod "
                    f"{f.pod}: re-apply its GameServerSet to re-adopt it by name, or gk down to stop it",
                )

    def _claim_found(self, pod: Obj, state: _Pod) -> None:
        """Containers of this pod found running although its record does not say so: adopted, never doubled."""
        meta = pod["metadata"]
        for spec in pod["spec"]["containers"]:
            found = self._found.pop((meta["namespace"], meta["name"], spec["name"]), None)
            c = state.containers.get(spec["name"])
            if found is None or (c is not None and c.cid and alive(c.cid)) or not still_running(found):
                continue
            if c is None:
                c = state.containers[spec["name"]] = _Container(spec["name"])
            record = self._read_spec_record(pod, c.name)
            if record is not None:
                c.spec_hash, c.image = record.get("hash"), record.get("image")
            else:
                c.spec_hash, c.image = container_spec_hash(spec), spec.get("image")
            c.cid, c.terminated = found.container_id, None
            c.started_at = c.started_at or format_time(self.clock())
            c.started_mono = asyncio.get_running_loop().time()
            self._watch_exit(c)
            log.warning("re-adopted container %s of %s/%s (%s): it was running although the pod record did not "
                        "say so (the store had lost it)", c.name, meta["namespace"], meta["name"], c.cid)

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # -- one pod ------------------------------------------------------------------------------------------

    async def sync_pod(self, namespace: str, name: str) -> None:
        pod = await self.store.get("Pod", namespace, name)
        key = (namespace, name)
        state = self.pods.get(key)
        if pod is None:
            if state is not None:
                await self._stop_all(state, grace=0)
                self.pods.pop(key, None)
                if self.network is not None:
                    await self.network.release(namespace, name, state.uid)
            return
        meta = pod["metadata"]
        if state is not None and state.uid != meta["uid"]:
            await self._stop_all(state, grace=0)
            if self.network is not None:
                await self.network.release(namespace, name, state.uid)
            state = None
        if state is None:
            state = self._adopt(pod)
            self.pods[key] = state
        if meta.get("deletionTimestamp"):
            if not state.stopping:
                # In its own task: a grace period of one pod must not hold up every other pod.
                state.stopping = True
                self._spawn(self._terminate(pod, state), f"terminate {namespace}/{name}")
            return
        if FINALIZER not in (meta.get("finalizers") or []):
            pod = await self.store.patch(
                "Pod", namespace, name,
                {"metadata": {"finalizers": [*(meta.get("finalizers") or []), FINALIZER]}},
                resource_version=meta["resourceVersion"],
            )
        if self.network is not None and not self._ever_started(pod, state):
            # Before the first start, so that POD_IP and the host ports are there for the game server.
            pod, waiting = await self.network.admit(pod)
            if waiting is not None:
                asyncio.get_running_loop().call_later(RETRY_SECONDS, self.enqueue, namespace, name)
                await self._report(pod, state, unschedulable=waiting)
                return
        policy = pod["spec"].get("restartPolicy") or "Always"
        now_mono = asyncio.get_running_loop().time()
        for spec in pod["spec"]["containers"]:
            c = state.containers.setdefault(spec["name"], _Container(spec["name"]))
            if c.stop_task is not None:
                continue  # being stopped for a new definition: started again once it is down
            changed = c.spec_hash is not None and c.spec_hash != container_spec_hash(spec)
            token = (meta.get("annotations") or {}).get(RESTART_ANNOTATION_PREFIX + c.name)
            asked = token is not None and token != c.restart_token
            if c.cid and alive(c.cid):
                if changed or asked:
                    log.info("container %s of %s %s: restarting it", c.name, name,
                             f"changed ({self._what_changed(c, spec)})" if changed else f"restart asked ({token})")
                    c.replacing = True
                    # On disk before the SIGTERM: a controller killed during the stop still owes the new start,
                    # whatever the restartPolicy (the game may well exit 0 on SIGTERM).
                    self._write_spec_record(pod, c.name, c.spec_hash or "", c.image or "", c.cid, c.started_at,
                                            replacing=True, restart=c.restart_token)
                    c.stop_task = self._spawn(self._stop_for_change(pod, c), f"restart {namespace}/{name}/{c.name}")
                continue
            if c.cid:  # it ended while nobody was watching (or just now)
                self._record_exit(pod, c)
            if c.replacing:
                pass  # stopped because its definition changed: kubelet starts it again whatever restartPolicy says
            elif c.terminated is not None and not self._may_restart(policy, c.terminated.get("exitCode", 1)):
                continue
            elif c.terminated is not None and now_mono < c.retry_at and not changed:
                # (A changed definition is a new container to kubelet, with a back-off of its own: start it now.)
                c.waiting = {
                    "reason": "CrashLoopBackOff",
                    "message": f"back-off {c.backoff:g}s restarting failed container={c.name} pod={name}",
                }
                asyncio.get_running_loop().call_later(c.retry_at - now_mono + 0.05, self.enqueue, namespace, name)
                continue
            try:
                self._start(pod, spec, c)
            except (UnknownImage, OSError) as err:
                c.waiting = {"reason": "ErrImageNeverPull" if isinstance(err, UnknownImage) else "RunContainerError",
                             "message": str(err)}
                asyncio.get_running_loop().call_later(10.0, self.enqueue, namespace, name)
        if self.network is not None and not await self.network.sync(pod):
            asyncio.get_running_loop().call_later(RETRY_SECONDS, self.enqueue, namespace, name)
        await self._report(pod, state)

    @staticmethod
    def _ever_started(pod: Obj, state: _Pod) -> bool:
        """Has any container of this pod been started (now, or by an earlier controller)?

        A pod that ran before its set had a network keeps running as it is (127.0.0.1, no host ports): giving it
        an address now would move it away from where its game server listens and where its probes look.
        """
        if any(c.cid or c.terminated is not None or c.restart_count for c in state.containers.values()):
            return True
        return any("running" in (cs.get("state") or {}) or "terminated" in (cs.get("state") or {})
                   for cs in (pod.get("status") or {}).get("containerStatuses") or [])

    @staticmethod
    def _may_restart(policy: str, exit_code: int) -> bool:
        return policy == "Always" or (policy == "OnFailure" and exit_code != 0)

    @staticmethod
    def _what_changed(c: _Container, spec: Mapping[str, Any]) -> str:
        if c.image is not None and c.image != (spec.get("image") or ""):
            return f"image {c.image} -> {spec.get('image')}"
        return "command, args, env or workingDir"

    @staticmethod
    def _grace(pod: Obj) -> float:
        grace = pod["spec"].get("terminationGracePeriodSeconds")
        return 30.0 if grace is None else float(grace)

    def _read_spec_record(self, pod: Obj, container: str) -> dict[str, Any] | None:
        try:
            data = json.loads(self.paths.spec_file(pod, container).read_text())
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def _write_spec_record(self, pod: Obj, container: str, digest: str, image: str, cid: str | None = None,
                           started_at: str | None = None, **extra: Any) -> None:
        """The container's own record: what it was made from, which process it is (written before its game
        starts, so a controller killed at any point can re-adopt it), and a restart it owes (`replacing`)."""
        path = self.paths.spec_file(pod, container)
        tmp = path.with_name(path.name + ".tmp")
        data = {"hash": digest, "image": image, "cid": cid, "startedAt": started_at, **extra}
        tmp.write_text(json.dumps({k: v for k, v in data.items() if v is not None}) + "\n")
        tmp.replace(path)

    def _adopt(self, pod: Obj) -> _Pod:
        """Rebuild what we know from the pod's status; live processes are re-adopted, never started twice."""
        meta = pod["metadata"]
        status = pod.get("status") or {}
        state = _Pod(meta["namespace"], meta["name"], meta["uid"], start_time=status.get("startTime"))
        specs = {spec["name"]: spec for spec in pod["spec"]["containers"]}
        statuses = {cs["name"]: cs for cs in status.get("containerStatuses") or []}
        for name in [*statuses, *(n for n in specs if n not in statuses)]:
            cs = statuses.get(name) or {"name": name}
            c = _Container(cs["name"], restart_count=cs.get("restartCount", 0), last_state=cs.get("lastState") or {})
            running = (cs.get("state") or {}).get("running")
            record = self._read_spec_record(pod, c.name)
            if record is not None:
                c.spec_hash, c.image = record.get("hash"), record.get("image")
                c.restart_token = record.get("restart")
                c.replacing = bool(record.get("replacing"))
            elif running and c.name in specs:
                # Started by a version that kept no record: take it to run what the pod says, so that upgrading
                # the controller restarts nothing; a later change is then noticed as usual.
                c.spec_hash, c.image = container_spec_hash(specs[c.name]), cs.get("image")
                c.restart_token = (meta.get("annotations") or {}).get(RESTART_ANNOTATION_PREFIX + c.name)
            recorded = record.get("cid") if record is not None else None
            reported = cs.get("containerID") or ((cs.get("state") or {}).get("terminated") or {}).get("containerID")
            if recorded and recorded != reported and alive(recorded):
                # Started by a controller that died before it could report it: the same process, adopted.
                c.cid = recorded
                c.started_at = record.get("startedAt") if record is not None else None
                c.started_mono = asyncio.get_running_loop().time()
                self._watch_exit(c)
                log.info("adopted container %s of %s (%s), started but never reported", c.name, meta["name"],
                         c.cid)
            elif running and alive(cs.get("containerID")):
                c.cid = cs["containerID"]
                c.started_at = running.get("startedAt")
                c.started_mono = asyncio.get_running_loop().time()
                self._watch_exit(c)
                log.info("adopted container %s of %s (%s)", c.name, meta["name"], c.cid)
            elif name not in statuses:
                continue  # never reported: started afresh (leftovers of an unreported start are cleared first)
            elif running:
                # It ended while no controller was running: remember how, from the wrapper's exit file.
                c.cid = cs.get("containerID")
                c.started_at = running.get("startedAt")
            else:
                c.terminated = (cs.get("state") or {}).get("terminated")
            state.containers[c.name] = c
        if self._found:
            self._claim_found(pod, state)
        return state

    def _start(self, pod: Obj, spec: Mapping[str, Any], c: _Container) -> None:
        reference = spec.get("image") or ""
        image = self.images.resolve(reference)
        argv = entrypoint(spec, self.images, container_environment(pod, spec, self.images))
        workdir = self.paths.workdir(pod, c.name)
        record = self._read_spec_record(pod, c.name)
        previous = record.get("image") if record is not None else c.image
        if workdir.exists() and previous is not None and previous != reference:
            # A new image is a new container filesystem: a fresh copy replaces the old one (the log, kept beside
            # the directory, goes on).
            kill_processes_under(workdir)
            shutil.rmtree(workdir)
            log.info("container %s of %s: new image %s, new working directory", c.name, pod["metadata"]["name"],
                     reference)
        if not workdir.exists():
            workdir.parent.mkdir(parents=True, exist_ok=True)
            shutil.copytree(image.directory, workdir, symlinks=True)
        cwd = container_cwd(workdir, spec.get("workingDir"))
        cwd.mkdir(parents=True, exist_ok=True)
        exit_file = self.paths.exit_file(pod, c.name)
        if record is not None and record.get("cid"):
            # Its group, always; its directory only without an exit file (its supervisor was killed, so its game
            # may still be going): a /proc scan per restart would cost a rolling update of thousands dearly.
            clear_leftovers(str(record["cid"]), workdir, scan=not exit_file.exists())
        with contextlib.suppress(FileNotFoundError):
            exit_file.unlink()
        env = container_environment(pod, spec, self.images)
        env["GK_EXIT_FILE"] = str(exit_file)
        log_path = self.paths.log_file(pod, c.name)
        with open(log_path, "ab") as log_file:
            proc = subprocess.Popen(
                ["/bin/sh", "-c", _WRAPPER, "gk-container", *_DIE_WITH_SUPERVISOR, *argv],
                cwd=str(cwd),
                env=env,
                stdin=subprocess.PIPE,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                close_fds=True,
            )
        start = process_start_time(proc.pid)
        digest = container_spec_hash(spec)
        cid = container_id(proc.pid, start or 0)
        started_at = format_time(self.clock())
        token = (pod["metadata"].get("annotations") or {}).get(RESTART_ANNOTATION_PREFIX + c.name)
        assert proc.stdin is not None
        try:
            self._write_spec_record(pod, c.name, digest, reference, cid, started_at, restart=token)
            with contextlib.suppress(OSError):
                proc.stdin.write(b"go\n")
        finally:
            # Closed without "go" (no record): the supervisor ends before its game starts, as when we die here.
            with contextlib.suppress(OSError):
                proc.stdin.close()
        c.restart_token = token
        if c.spec_hash is not None and c.spec_hash != digest:
            c.backoff = -1.0  # a new definition starts with a back-off of its own
        c.spec_hash, c.image, c.replacing = digest, reference, False
        c.child = proc
        c.cid = cid
        c.started_at = started_at
        c.started_mono = asyncio.get_running_loop().time()
        if c.terminated is not None:
            c.last_state = {"terminated": c.terminated}
            c.restart_count += 1
        c.terminated = None
        c.waiting = None
        self._watch_exit(c)
        log.info("started container %s of %s: pid %d: %s", c.name, pod["metadata"]["name"], proc.pid, argv)

    def _watch_exit(self, c: _Container) -> None:
        parsed = parse_container_id(c.cid)
        if parsed is None:
            return
        try:
            fd = os.pidfd_open(parsed[0])
        except ProcessLookupError:
            return
        c.pidfd = fd
        loop = asyncio.get_running_loop()
        key = next((k for k, p in self.pods.items() if c in p.containers.values()), None)

        def on_exit() -> None:
            loop.remove_reader(fd)
            os.close(fd)
            c.pidfd = None
            if c.child is not None:
                c.child.poll()
            owner = key or next((k for k, p in self.pods.items() if c in p.containers.values()), None)
            if owner is not None:
                self.enqueue(*owner)

        loop.add_reader(fd, on_exit)

    def _record_exit(self, pod: Obj, c: _Container) -> None:
        code: int | None = None
        if c.child is not None:
            code = c.child.poll()
            if code is None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    code = c.child.wait(timeout=1)
        exit_file = self.paths.exit_file(pod, c.name)
        with contextlib.suppress(OSError, ValueError):
            code = int(exit_file.read_text().strip())
        if code is None:
            code = 255
        elif code < 0:
            code = 128 - code
        now = asyncio.get_running_loop().time()
        ran = now - c.started_mono if c.started_mono else 0.0
        # As kubelet: the first restart is immediate, then 10 s doubling to 5 min; a long run resets it.
        if c.backoff < 0 or ran > BACKOFF_RESET_AFTER:
            c.backoff = 0.0
        elif c.backoff == 0:
            c.backoff = self.backoff_start
        else:
            c.backoff = min(c.backoff * 2, BACKOFF_MAX)
        c.retry_at = now + c.backoff
        c.terminated = {
            "exitCode": code,
            "reason": "Completed" if code == 0 else "Error",
            "startedAt": c.started_at,
            "finishedAt": format_time(self.clock()),
            "containerID": c.cid,
        }
        if c.replacing:
            log.info("container %s of %s stopped for its new definition (code %d)", c.name, pod["metadata"]["name"],
                     code)
        else:
            log.warning("container %s of %s exited with code %d", c.name, pod["metadata"]["name"], code)
        c.cid, c.child = None, None

    # -- stopping -----------------------------------------------------------------------------------------

    async def _terminate(self, pod: Obj, state: _Pod) -> None:
        key = (state.namespace, state.name)
        try:
            if self.network is not None:
                # No new players for a server on its way out (those connected stay until it stops).
                try:
                    await self.network.sync(pod, stopping=True)
                except Conflict:
                    pass  # the proxy has been told; only the annotation missed a newer pod record
                except Exception as err:
                    log.warning("pod %s/%s: network not closed to new connections: %s", *key, err)
            await self._stop_all(state, grace=self._grace(pod))
            if self.network is not None:
                await self.network.release(state.namespace, state.name, state.uid)
            with contextlib.suppress(OSError):
                shutil.rmtree(pod_dir(self.paths.state_dir, state.namespace, state.name))
            if self.pods.get(key) is state:
                self.pods.pop(key)
            meta = pod["metadata"]
            finalizers = [f for f in meta.get("finalizers") or [] if f != FINALIZER]
            with contextlib.suppress(NotFound):
                current = await self.store.get("Pod", state.namespace, state.name)
                if current is not None and current["metadata"]["uid"] == state.uid:
                    await self.store.patch(
                        "Pod", state.namespace, state.name, {"metadata": {"finalizers": finalizers or None}}
                    )
        except Exception:
            log.exception("stopping pod %s/%s failed", *key)
            state.stopping = False
            asyncio.get_running_loop().call_later(2.0, self.enqueue, *key)

    async def _stop_for_change(self, pod: Obj, c: _Container) -> None:
        """Stop one container whose definition changed; sync_pod starts the new one when this is done."""
        key = (pod["metadata"]["namespace"], pod["metadata"]["name"])
        try:
            parsed = parse_container_id(c.cid)
            if parsed is not None and alive(c.cid):
                await self._signal_and_wait([parsed[0]], [c], self._grace(pod))
            # Like a container's end: nothing started in it outlives it (and the new one may get a fresh copy).
            kill_processes_under(self.paths.workdir(pod, c.name))
        finally:
            c.stop_task = None
            self.enqueue(*key)

    @staticmethod
    async def _signal_and_wait(pids: list[int], containers: Sequence[_Container], grace: float) -> None:
        """SIGTERM to each process group, SIGKILL to those still there after `grace` seconds."""
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGTERM)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        while pids and loop.time() < deadline and any(process_start_time(p) is not None for p in pids):
            for c in containers:
                if c.child is not None:
                    c.child.poll()
            await asyncio.sleep(0.1)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)

    async def _stop_all(self, state: _Pod, grace: float) -> None:
        for c in state.containers.values():
            if c.stop_task is not None:
                c.stop_task.cancel()
        pids = []
        for c in state.containers.values():
            parsed = parse_container_id(c.cid)
            if parsed and alive(c.cid):
                pids.append(parsed[0])
        await self._signal_and_wait(pids, list(state.containers.values()), grace)
        loop = asyncio.get_running_loop()
        for c in state.containers.values():
            if c.pidfd is not None:
                with contextlib.suppress(Exception):
                    loop.remove_reader(c.pidfd)
                    os.close(c.pidfd)
                c.pidfd = None
            if c.child is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    c.child.wait(timeout=2)
        kill_processes_under(pod_dir(self.paths.state_dir, state.namespace, state.name))

    # -- status -------------------------------------------------------------------------------------------

    async def _report(self, pod: Obj, state: _Pod, unschedulable: str | None = None) -> None:
        statuses = []
        all_running, any_started = True, False
        for spec in pod["spec"]["containers"]:
            c = state.containers.get(spec["name"]) or _Container(spec["name"])
            if c.cid:
                cstate: dict[str, Any] = {"running": {"startedAt": c.started_at}}
                any_started = True
            elif c.waiting is not None:
                cstate = {"waiting": c.waiting}
                all_running = False
            elif c.terminated is not None:
                cstate = {"terminated": c.terminated}
                all_running = False
            else:
                cstate = {"waiting": {"reason": "ContainerCreating"}}
                all_running = False
            if c.restart_count or c.terminated is not None:
                any_started = True
            entry: dict[str, Any] = {
                "name": spec["name"],
                # As kubelet: the image of the container that runs (or ran), which differs from the spec's
                # while a changed container has not been restarted yet.
                "image": (c.image if c.image is not None and (c.cid or c.terminated is not None)
                          else spec.get("image", "")),
                "ready": bool(c.cid),
                "started": bool(c.cid),
                "restartCount": c.restart_count,
                "state": cstate,
            }
            if c.cid:
                entry["containerID"] = c.cid
            if c.last_state:
                entry["lastState"] = c.last_state
            statuses.append(entry)
        policy = pod["spec"].get("restartPolicy") or "Always"
        terminated = [c.terminated for c in state.containers.values() if c.cid is None and c.terminated]
        if not any_started:
            phase = "Pending"
        elif policy != "Always" and len(terminated) == len(pod["spec"]["containers"]) and not any(
            self._may_restart(policy, t.get("exitCode", 1)) for t in terminated
        ):
            phase = "Succeeded" if all(t.get("exitCode") == 0 for t in terminated) else "Failed"
        else:
            phase = "Running"
        if state.start_time is None:
            state.start_time = format_time(self.clock())
        ready = "True" if all_running and phase == "Running" else "False"
        old_status = pod.get("status") or {}
        old_conditions = {c["type"]: c for c in old_status.get("conditions") or []}
        ours = {
            "PodScheduled": "True" if unschedulable is None else "False",
            "Initialized": "True",
            "ContainersReady": ready,
            "Ready": ready,
        }
        stamp = format_time(self.clock())
        conditions = []
        for ctype, cstatus in ours.items():
            old = old_conditions.get(ctype)
            extra = {"reason": "Unschedulable", "message": unschedulable} if (
                ctype == "PodScheduled" and unschedulable is not None) else {}
            if old is not None and old.get("status") == cstatus and all(old.get(k) == v for k, v in extra.items()):
                conditions.append(old)
            else:
                conditions.append({"type": ctype, "status": cstatus, "lastTransitionTime": stamp, **extra})
        new_status = {
            "phase": phase,
            "hostIP": "127.0.0.1",
            "podIP": pod_ip(pod),
            "startTime": state.start_time,
            # Like a pod that no node could take: no containers yet.
            "containerStatuses": statuses if unschedulable is None or any_started else [],
        }
        # Conditions of other writers (probe results) are kept as they are.
        merged_conditions = conditions + [c for t, c in old_conditions.items() if t not in ours]
        if all(old_status.get(k) == v for k, v in new_status.items()) and old_status.get("conditions") == (
            merged_conditions
        ):
            return
        await self._write_status(pod, new_status, conditions, set(ours))

    async def _write_status(
        self, pod: Obj, new_status: dict[str, Any], conditions: list[dict[str, Any]], owned: set[str]
    ) -> None:
        meta = pod["metadata"]
        for _ in range(10):
            current = await self.store.get("Pod", meta["namespace"], meta["name"])
            if current is None or current["metadata"]["uid"] != meta["uid"]:
                return
            others = [c for c in (current.get("status") or {}).get("conditions") or [] if c["type"] not in owned]
            status = {**new_status, "conditions": conditions + others}
            try:
                await self.store.patch(
                    "Pod", meta["namespace"], meta["name"], {"status": status},
                    resource_version=current["metadata"]["resourceVersion"], subresource="status",
                )
                return
            except Conflict:
                continue


def clear_leftovers(cid: str, workdir: Path, scan: bool = True) -> None:
    """Before a container starts again: nothing of its previous run may still run (as a container's end takes
    every process in it). Its game dies with its supervisor; this is the backstop for what the game started."""
    parsed = parse_container_id(cid)
    if parsed is None or alive(cid):
        return
    if not os.path.exists(f"/proc/{parsed[0]}"):
        # No process has that pid, so a group with that id can only be what is left of the supervisor's own.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(parsed[0], signal.SIGKILL)
    if scan:
        kill_processes_under(workdir)


def kill_processes_under(directory: Path) -> int:
    """Kill every process whose working directory is inside `directory` (strays that left the group)."""
    root = str(directory.resolve())
    killed = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            cwd = os.readlink(f"/proc/{entry.name}/cwd")
        except OSError:
            continue
        if cwd == root or cwd.startswith(root + os.sep):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(int(entry.name), signal.SIGKILL)
                killed += 1
    return killed
