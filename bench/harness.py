"""Building blocks for the benchmarks that run Gamekeeper itself: a state directory with an image map, fleets of
pod records, the controller wired in-process (with the real local kubelet or a lighter double), and the probe
spawner switched on for the runtime."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from gamekeeper.api.loading import load_documents
from gamekeeper.api.models import OWNER_GSS_KEY
from gamekeeper.api.times import format_time
from gamekeeper.control.manager import ControllerManager
from gamekeeper.control.queue import Slices
from gamekeeper.ports.runtime import ExecResult, Runtime
from gamekeeper.ports.store import Conflict, NotFound, Obj, Store
from gamekeeper.runtime.images import ImageMap, load_image_map
from gamekeeper.runtime.local import FINALIZER, LocalKubelet, LocalRuntime
from gamekeeper.runtime.spawn import ProbeSpawner, available
from gamekeeper.store.sqlite import SqliteState, SqliteStore

NAMESPACE = "default"
IMAGE = "bench/cheap:1"


def utc_now() -> datetime:
    return datetime.now(UTC)


def write_image_map(directory: Path, images: dict[str, dict[str, Any]]) -> Path:
    path = directory / "images.yaml"
    path.write_text(yaml.safe_dump({"images": images}))
    return path


def cheap_image(directory: Path, mode: str = "idle") -> ImageMap:
    """An image whose container sleeps and whose directory holds `mode` (what the `cat mode` probe prints)."""
    image_dir = directory / "image"
    image_dir.mkdir(parents=True, exist_ok=True)
    (image_dir / "mode").write_text(mode + "\n")
    return load_image_map(write_image_map(directory, {IMAGE: {"path": str(image_dir),
                                                               "command": ["sleep", "1000000"]}}))


def with_spawner(runtime: LocalRuntime) -> LocalRuntime:
    """The probe spawner on the runtime (LocalRuntime offers it where the platform allows; this makes sure)."""
    if getattr(runtime, "probe_spawner", None) is None and available():
        runtime.probe_spawner = ProbeSpawner()
    return runtime


class ExecOnly:
    """A runtime that only offers `exec` (no spawner, no exec context): probes go through asyncio subprocesses."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    async def exec(self, pod: dict[str, Any], container: str, command: Any, timeout: float) -> ExecResult:
        return await self.runtime.exec(pod, container, command, timeout)


def gss_yaml(name: str, replicas: int, image: str, command: list[str], period: int, delay: int = 1,
             timeout: int = 5) -> str:
    doc = {
        "apiVersion": "game.kruise.io/v1alpha1",
        "kind": "GameServerSet",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "replicas": replicas,
            "gameServerTemplate": {"spec": {"containers": [{"name": "main", "image": image}]}},
            "updateStrategy": {"rollingUpdate": {"podUpdatePolicy": "InPlaceIfPossible", "maxUnavailable": "100%"}},
            "serviceQualities": [{
                "name": "idle",
                "containerName": "main",
                "permanent": False,
                "initialDelaySeconds": delay,
                "periodSeconds": period,
                "timeoutSeconds": timeout,
                "exec": {"command": command},
                "serviceQualityAction": [
                    {"state": True, "result": "idle", "opsState": "WaitToBeDeleted"},
                    {"state": True, "result": "active", "opsState": "None"},
                ],
            }],
        },
    }
    return yaml.safe_dump(doc, sort_keys=False)


def apply(state: SqliteState, text: str) -> None:
    for obj in load_documents(text, "bench"):
        state.create(obj.body)


def pod_record(gss: str, ordinal: int, image: str, started: datetime) -> Obj:
    """A pod as the workload controller makes it, already running (for the prober alone)."""
    name = f"{gss}-{ordinal}"
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": NAMESPACE, "labels": {OWNER_GSS_KEY: gss}},
        "spec": {"containers": [{"name": "main", "image": image}]},
        "status": {
            "phase": "Running",
            "podIP": "127.0.0.1",
            "containerStatuses": [{"name": "main", "ready": True, "state": {"running": {
                "startedAt": format_time(started)}}}],
        },
    }


def link_workdirs(state_dir: Path, names: list[str], target: Path, container: str = "main") -> None:
    """Each pod's container directory as a symlink to one real directory (one game server answers them all)."""
    for name in names:
        workdir = state_dir / "pods" / NAMESPACE / name / container
        workdir.parent.mkdir(parents=True, exist_ok=True)
        if not workdir.exists():
            workdir.symlink_to(target, target_is_directory=True)


def long_ago() -> datetime:
    return utc_now() - timedelta(hours=1)


# -- a kubelet double: pod records become "running" without processes ---------------------------------------------


class PretendKubelet:
    """Reports every pod's containers as running, with the image copied into each container's directory, but
    starts no process: the fleet benchmark at 10,000 game servers uses it so the machine only runs what is
    measured (the controllers, the prober and the real probe commands)."""

    def __init__(self, store: Store, state_dir: Path, images: ImageMap, clock: Callable[[], datetime]) -> None:
        self.store = store
        self.state_dir = state_dir
        self.images = images
        self.clock = clock
        self._queue: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
        self._queued: set[tuple[str, str]] = set()

    def enqueue(self, namespace: str, name: str) -> None:
        key = (namespace, name)
        if key not in self._queued:
            self._queued.add(key)
            self._queue.put_nowait(key)

    async def run(self) -> None:
        for pod in await self.store.list("Pod"):
            self.enqueue(pod["metadata"]["namespace"], pod["metadata"]["name"])
        slices = Slices()  # as LocalKubelet.run
        while True:
            key = await slices.next(self._queue)
            self._queued.discard(key)
            with contextlib.suppress(Conflict, NotFound):
                await self.sync_pod(*key)

    async def sync_pod(self, namespace: str, name: str) -> None:
        pod = await self.store.get("Pod", namespace, name)
        if pod is None:
            return
        meta = pod["metadata"]
        pod_dir = self.state_dir / "pods" / namespace / name
        if meta.get("deletionTimestamp"):
            shutil.rmtree(pod_dir, ignore_errors=True)
            finalizers = [f for f in meta.get("finalizers") or [] if f != FINALIZER]
            await self.store.patch("Pod", namespace, name, {"metadata": {"finalizers": finalizers or None}})
            return
        if FINALIZER not in (meta.get("finalizers") or []):
            pod = await self.store.patch("Pod", namespace, name, {"metadata": {
                "finalizers": [*(meta.get("finalizers") or []), FINALIZER]}}, resource_version=meta["resourceVersion"])
        status = pod.get("status") or {}
        if status.get("phase") == "Running":
            return
        now = format_time(self.clock())
        statuses = []
        for spec in pod["spec"]["containers"]:
            workdir = pod_dir / spec["name"]
            if not workdir.exists():
                workdir.parent.mkdir(parents=True, exist_ok=True)
                shutil.copytree(self.images.resolve(spec.get("image") or "").directory, workdir, symlinks=True)
            statuses.append({"name": spec["name"], "image": spec.get("image", ""), "ready": True, "started": True,
                             "restartCount": 0, "state": {"running": {"startedAt": now}},
                             "containerID": f"bench://{namespace}/{name}/{spec['name']}"})
        conditions = [{"type": t, "status": "True", "lastTransitionTime": now}
                      for t in ("PodScheduled", "Initialized", "ContainersReady", "Ready")]
        others = [c for c in status.get("conditions") or [] if c["type"] not in
                  {"PodScheduled", "Initialized", "ContainersReady", "Ready"}]
        await self.store.patch("Pod", namespace, name, {"status": {
            "phase": "Running", "hostIP": "127.0.0.1", "podIP": "127.0.0.1", "startTime": now,
            "containerStatuses": statuses, "conditions": conditions + others}},
            resource_version=pod["metadata"]["resourceVersion"], subresource="status")


class Controller:
    """The embedded controller's wiring (embedded/fleet.py EmbeddedController.run), in this process, with the
    probe spawner on and a choice of kubelet."""

    def __init__(self, state_dir: Path, images: ImageMap, kubelet: str = "real", resync_seconds: float = 30.0,
                 spawner: bool = True) -> None:
        self.state_dir = state_dir
        self.state = SqliteState(state_dir)
        self.store = SqliteStore(self.state, resync_seconds=min(resync_seconds, 5.0))
        runtime = LocalRuntime(state_dir, images)
        self.runtime: Any = with_spawner(runtime) if spawner else ExecOnly(runtime)
        self.kubelet: LocalKubelet | PretendKubelet
        if kubelet == "real":
            self.kubelet = LocalKubelet(self.store, state_dir, images, clock=utc_now)
        else:
            self.kubelet = PretendKubelet(self.store, state_dir, images, utc_now)
        self.manager = ControllerManager(self.store, self.runtime, utc_now, resync_seconds=resync_seconds,
                                         pod_listeners=[self.kubelet.enqueue])
        self.tasks: list[asyncio.Task[Any]] = []

    def start(self) -> None:
        self.tasks = [asyncio.create_task(self.kubelet.run(), name="kubelet"),
                      asyncio.create_task(self.manager.run(), name="manager")]

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        spawner = getattr(self.runtime, "probe_spawner", None)
        if spawner is not None:
            spawner.close()

    def close(self) -> None:
        self.state.close()


def stop_processes(state_dir: Path) -> None:
    """Stop every game server a real kubelet started (as `gk down` does)."""
    from gamekeeper.embedded.fleet import stop_game_servers

    state = SqliteState(state_dir)
    try:
        stop_game_servers(state, grace=2)
    finally:
        state.close()


def env_without_gk() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("GAMEKEEPER")}
