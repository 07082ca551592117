"""What a cluster has besides the API server: a scheduler and kubelet, the game servers' scripts, kruise-daemon.

- `FakeKubelet` binds new pods to a node, reports them Running and Ready (pod IP 127.0.0.1, so network
  probes reach servers the test runs locally), restarts a container whose image was patched in place
  (restartCount + 1), finishes graceful deletions, and keeps conditions written by others.
- `DemoGames` answers `pods/exec` as the demo images' scripts do (examples/images/*/README.md): idle.sh /
  player.sh for `gameserver:idle`, healthy.sh / fault.sh / recover.sh for `gameserver:healthy`.
- `FakeKruiseDaemon` does what kruise-daemon and kruise-manager do with a PodProbeMarker: for each selected
  pod and probe, run the probe's command (answered by `DemoGames`) every periodSeconds and write the
  result as the pod condition `podConditionType`, replacing it only when status or message changed.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from tests.kube.kmock_plus import World, now_text

PODS = "v1/pods"
PPMS = "apps.kruise.io/v1alpha1/podprobemarkers"
KUBELET_CONDITIONS = ("PodScheduled", "Initialized", "ContainersReady", "Ready")

IDLE_PROBE = ["bash", "-c", "if ./idle.sh; then echo 'active'; else echo 'idle'; fi"]
HEALTHY_PROBE = ["bash", "-c", "./healthy.sh && echo 'healthy' || echo 'unhealthy'"]


class FakeKubelet:
    def __init__(self, world: World, node: str = "node-1") -> None:
        self.world = world
        self.node = node
        self.paused: set[str] = set()  # pods whose kubelet does not report (e.g. a lost node)
        self.restarts = 0

    async def run(self) -> None:
        while True:
            for (resource, namespace, name), pod in list(self.world.objects.items()):
                if resource == PODS and name not in self.paused:
                    self.sync(namespace, name, pod)
            await self.world.wait_change(0.5)

    def sync(self, namespace: str, name: str, pod: dict[str, Any]) -> None:
        meta = pod["metadata"]
        if not pod["spec"].get("nodeName"):
            self.world.update(PODS, namespace, name, lambda o: {**o, "spec": {**o["spec"], "nodeName": self.node}},
                              None, None)
            return
        if meta.get("deletionTimestamp"):
            with contextlib.suppress(Exception):
                self.world.delete(PODS, namespace, name, {"gracePeriodSeconds": 0})
            return
        status = pod.get("status") or {}
        old_statuses = {c["name"]: c for c in status.get("containerStatuses") or []}
        statuses = []
        for container in pod["spec"]["containers"]:
            old = old_statuses.get(container["name"])
            if old is not None and old.get("image") == container.get("image"):
                statuses.append(old)
                continue
            restarts = 0 if old is None else old.get("restartCount", 0) + 1
            if old is not None:
                self.restarts += 1
            statuses.append({
                "name": container["name"], "image": container.get("image", ""), "ready": True, "started": True,
                "restartCount": restarts, "containerID": f"containerd://{name}-{container['name']}-{restarts}",
                "state": {"running": {"startedAt": now_text()}},
            })
        stamp = now_text()
        conditions = [c for c in status.get("conditions") or [] if c.get("type") not in KUBELET_CONDITIONS]
        old_conditions = {c.get("type"): c for c in status.get("conditions") or []}
        ours = [
            old_conditions.get(t) if (old_conditions.get(t) or {}).get("status") == "True"
            else {"type": t, "status": "True", "lastTransitionTime": stamp}
            for t in KUBELET_CONDITIONS
        ]
        new_status = {
            **status, "phase": "Running", "podIP": "127.0.0.1", "hostIP": "127.0.0.1",
            "startTime": status.get("startTime") or stamp, "containerStatuses": statuses,
            "conditions": ours + conditions,
        }
        if new_status != status:
            self.world.update(PODS, namespace, name, lambda o: {**o, "status": new_status}, "status", None)


@dataclass
class DemoGames:
    """The demo images' scripts, per pod: players of the idle server, the helper of the healthy one."""

    players: dict[str, list[str]] = field(default_factory=dict)
    broken: set[str] = field(default_factory=set)
    calls: int = 0
    running: int = 0
    peak: int = 0
    delay: float = 0.0

    async def __call__(self, namespace: str, pod: str, container: str, command: list[str]) -> tuple[int, bytes, bytes]:
        self.calls += 1
        self.running += 1
        self.peak = max(self.peak, self.running)
        try:
            if self.delay:
                await asyncio.sleep(self.delay)
            return self.answer(pod, command)
        finally:
            self.running -= 1

    def answer(self, pod: str, command: list[str]) -> tuple[int, bytes, bytes]:
        online = self.players.setdefault(pod, [])
        if command == IDLE_PROBE:
            return 0, b"active\n" if online else b"idle\n", b""
        if command == HEALTHY_PROBE:
            return 0, b"unhealthy\n" if pod in self.broken else b"healthy\n", b""
        if command[:1] == ["./player.sh"]:
            if command[1:2] == ["join"] and len(command) == 3:
                if command[2] not in online:
                    online.append(command[2])
                return 0, f"{command[2]} joined ({len(online)} online)\n".encode(), b""
            if command[1:2] == ["leave"] and len(command) == 3:
                if command[2] in online:
                    online.remove(command[2])
                return 0, f"{command[2]} left ({len(online)} online)\n".encode(), b""
            if command[1:] == ["list"]:
                return 0, "".join(f"{p}\n" for p in online).encode(), b""
            return 2, b"", b"usage: player.sh join NAME | leave NAME | list\n"
        if command == ["./fault.sh"]:
            if pod in self.broken:
                return 0, b"no helper running; nothing to kill\n", b""
            self.broken.add(pod)
            return 0, b"fault injected: killed helper pid 4242 with SIGKILL\n", b""
        if command == ["./recover.sh"]:
            self.broken.discard(pod)
            return 0, b"recovered: started helper pid 4343\n", b""
        return 127, b"", f"bash: {command[0] if command else ''}: command not found\n".encode()


class FakeKruiseDaemon:
    def __init__(self, world: World, games: DemoGames, tick: float = 0.1) -> None:
        self.world = world
        self.games = games
        self.tick = tick
        self.due: dict[tuple[str, str], float] = {}
        self.writes = 0

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            now = loop.time()
            for (resource, namespace, _), ppm in list(self.world.objects.items()):
                if resource != PPMS:
                    continue
                selector = ((ppm.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
                for (r, ns, pod_name), pod in list(self.world.objects.items()):
                    labels = pod["metadata"].get("labels") or {}
                    if r != PODS or ns != namespace or any(labels.get(k) != v for k, v in selector.items()):
                        continue
                    for probe in ppm["spec"].get("probes") or []:
                        key = (pod["metadata"]["uid"], probe["name"])
                        spec = probe["probe"]
                        if key not in self.due:
                            self.due[key] = now + min(spec.get("initialDelaySeconds", 10), 1)
                        if now >= self.due[key]:
                            self.due[key] = now + spec.get("periodSeconds", 3)
                            await self.probe(namespace, pod_name, pod, probe)
            await asyncio.sleep(self.tick)

    async def probe(self, namespace: str, name: str, pod: dict[str, Any], probe: dict[str, Any]) -> None:
        command = ((probe["probe"].get("exec") or {}).get("command")) or []
        running = any(
            c["name"] == probe["containerName"] and "running" in (c.get("state") or {})
            for c in (pod.get("status") or {}).get("containerStatuses") or []
        )
        if not running:
            state, message = False, f"Container({probe['containerName']}) is Non-running"
        else:
            code, out, err = await self.games(namespace, name, probe["containerName"], command)
            state, message = code == 0, (out if code == 0 else err).decode()[:1024]
        cond_type = probe["podConditionType"]
        current = self.world.get(PODS, namespace, name)
        if current is None:
            return
        conditions = copy.deepcopy((current.get("status") or {}).get("conditions") or [])
        old = next((c for c in conditions if c.get("type") == cond_type), None)
        status = "True" if state else "False"
        if old is not None and old.get("status") == status and old.get("message") == message:
            return
        stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        new = {"type": cond_type, "status": status, "message": message, "lastProbeTime": stamp,
               "lastTransitionTime": stamp}
        conditions = [c for c in conditions if c.get("type") != cond_type] + [new]
        self.world.update(PODS, namespace, name,
                          lambda o: {**o, "status": {**(o.get("status") or {}), "conditions": conditions}},
                          "status", None)
        self.writes += 1
