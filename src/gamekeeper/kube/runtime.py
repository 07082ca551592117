"""Probe path (b): the Runtime port through the API.

`KubeExecRuntime.exec` runs a command with `pods/exec` (a websocket through the API server and kubelet),
with a bound on concurrent execs and a small random delay before each, so that a fleet's probes, which share
one period, do not reach the API server in one burst after a restart. Every failure (API error, lost stream,
timeout) becomes a failed ExecResult, never an exception, so a probe can only succeed or fail.

httpGet and tcpSocket probes need no runtime: the shared prober (control/probes.py) connects to the pod IP
from `status.podIP`, which in a cluster is reachable from the operator's pod as from the node.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Sequence
from typing import Any

import aiohttp

from gamekeeper.kube.client import KubeClient
from gamekeeper.ports.runtime import ContainerNotRunning, ExecResult
from gamekeeper.ports.store import Obj, StoreError

log = logging.getLogger("gamekeeper.kube.runtime")


class KubeExecRuntime:
    """The Runtime port on Kubernetes: exec through the API server."""

    def __init__(
        self,
        client: KubeClient,
        concurrency: int = 32,
        jitter_seconds: float = 0.2,
        rng: random.Random | None = None,
    ) -> None:
        if concurrency < 1:
            raise ValueError("exec concurrency must be at least 1")
        self.client = client
        self.jitter_seconds = jitter_seconds
        self.rng = rng or random.Random()
        self._limit = asyncio.Semaphore(concurrency)
        self.in_flight = 0
        self.peak_in_flight = 0
        self.calls = 0

    async def exec(
        self, pod: dict[str, Any], container: str, command: Sequence[str], timeout: float
    ) -> ExecResult:
        meta = pod["metadata"]
        container = container or pod["spec"]["containers"][0]["name"]
        if not _running(pod, container):
            raise ContainerNotRunning(f"container {container} of {meta['name']} is not running")
        if self.jitter_seconds > 0:
            await asyncio.sleep(self.rng.uniform(0, self.jitter_seconds))
        async with self._limit:
            self.in_flight += 1
            self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
            self.calls += 1
            try:
                return await self.client.exec(meta["namespace"], meta["name"], container, command, timeout)
            except (StoreError, aiohttp.ClientError, OSError, ValueError) as err:
                return ExecResult(1, b"", f"exec through the API failed: {err}".encode())
            finally:
                self.in_flight -= 1


def _running(pod: Obj, container: str) -> bool:
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        if status.get("name") == container:
            return "running" in (status.get("state") or {})
    return False
