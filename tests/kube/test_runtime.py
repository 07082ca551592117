"""Probe path (b)'s runtime: exec through the API, bounded, with timeouts and errors as failed results."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from gamekeeper.kube.resources import POD
from gamekeeper.kube.runtime import KubeExecRuntime
from gamekeeper.ports.runtime import ContainerNotRunning
from tests.kube.conftest import Cluster
from tests.kube.fakes import IDLE_PROBE

pytestmark = pytest.mark.asyncio


async def running_pod(cluster: Cluster, name: str) -> dict[str, Any]:
    await cluster.client().create(POD, {"metadata": {"name": name, "namespace": "default"},
                                        "spec": {"containers": [{"name": "game", "image": "x"}]}})
    await cluster.eventually("running", lambda: (cluster.world.find("Pod", "default", name).get("status") or {}).get(
        "phase") == "Running")
    pod: dict[str, Any] = cluster.world.find("Pod", "default", name)
    return pod


async def test_concurrent_execs_are_bounded(cluster: Cluster) -> None:
    pod = await running_pod(cluster, "g-0")
    runtime = KubeExecRuntime(cluster.client(), concurrency=3, jitter_seconds=0.01)
    cluster.games.delay = 0.1
    results = await asyncio.gather(*(runtime.exec(pod, "game", IDLE_PROBE, 5) for _ in range(12)))
    assert [r.stdout for r in results] == [b"idle\n"] * 12 and all(r.exit_code == 0 for r in results)
    assert cluster.games.peak <= 3 and runtime.peak_in_flight <= 3 and runtime.calls == 12
    assert len(cluster.emulator.exec_requests) == 12


async def test_timeouts_errors_and_stopped_containers(cluster: Cluster) -> None:
    pod = await running_pod(cluster, "g-0")
    runtime = KubeExecRuntime(cluster.client(), jitter_seconds=0)
    cluster.games.delay = 2.0
    slow = await runtime.exec(pod, "game", IDLE_PROBE, 0.2)
    assert slow.timed_out and slow.exit_code == -1 and b"timed out after 0.2s" in slow.stderr
    cluster.games.delay = 0
    missing = await runtime.exec(pod, "game", ["./nope.sh"], 5)
    assert missing.exit_code == 127 and b"command not found" in missing.stderr
    gone = {**pod, "metadata": {**pod["metadata"], "name": "not-there"}}
    failed = await runtime.exec(gone, "game", IDLE_PROBE, 5)
    assert failed.exit_code == 1 and b"404" in failed.stderr
    stopped = {**pod, "status": {"containerStatuses": [{"name": "game", "state": {"waiting": {}}}]}}
    with pytest.raises(ContainerNotRunning):
        await runtime.exec(stopped, "game", IDLE_PROBE, 5)
    with pytest.raises(ValueError, match="at least 1"):
        KubeExecRuntime(cluster.client(), concurrency=0)
