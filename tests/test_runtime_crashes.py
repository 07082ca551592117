"""One game process per container whatever dies: the supervisor, the game, the controller (issue 12, items 4, 5
and 7a). The local kubelet runs in process against a real SQLite store and starts real processes; "the
controller dies" is its task ending at a chosen point (its in-memory state gone, nothing cleaned up), and the
restarted controller is a new LocalKubelet on the same state directory.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from gamekeeper.runtime.images import Image, ImageMap
from gamekeeper.runtime.local import LocalKubelet, alive, kill_processes_under, parse_container_id
from gamekeeper.store.sqlite import SqliteState, SqliteStore

GAME = "987654"  # the game's argument: how the test tells the game process from its supervisor


class Crash(BaseException):
    """The controller dies here (not an Exception: nothing in the kubelet catches it)."""


def images(tmp: Path, command: list[str]) -> ImageMap:
    directory = tmp / "image"
    directory.mkdir(exist_ok=True)
    return ImageMap(None, {"game:1": Image("game:1", directory, command), "game:2": Image("game:2", directory,
                                                                                           command)})


def pod(name: str, policy: str = "Always", image: str = "game:1", grace: int = 5) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default"},
            "spec": {"containers": [{"name": "main", "image": image}], "restartPolicy": policy,
                     "terminationGracePeriodSeconds": grace}}


def games(state_dir: Path) -> dict[str, list[int]]:
    """Live game processes (not supervisors, not zombies) by pod directory."""
    root = str((state_dir / "pods" / "default").resolve())
    out: dict[str, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            cwd = os.readlink(f"/proc/{entry.name}/cwd")
            cmdline = Path(f"/proc/{entry.name}/cmdline").read_bytes().split(b"\0")
            stat = Path(f"/proc/{entry.name}/stat").read_bytes().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        if cwd.startswith(root + os.sep) and GAME.encode() in cmdline and b"gk-container" not in cmdline \
                and stat[0] != b"Z":
            out.setdefault(cwd[len(root) + 1 :].split(os.sep)[0], []).append(int(entry.name))
    return out


class Controller:
    """A LocalKubelet with a resync loop (the manager's part), which can die and be started again."""

    def __init__(self, tmp: Path, image_map: ImageMap) -> None:
        self.tmp = tmp
        self.state = SqliteState(tmp / "state")
        self.store = SqliteStore(self.state)
        self.images = image_map
        self.kubelet: LocalKubelet | None = None
        self.tasks: list[asyncio.Task[None]] = []

    def start(self, kubelet: LocalKubelet | None = None) -> LocalKubelet:
        self.kubelet = kubelet or LocalKubelet(self.store, self.tmp / "state", self.images, backoff_start=0.2)

        async def resync(k: LocalKubelet) -> None:
            while True:
                await asyncio.sleep(0.2)
                await k.resync()

        self.tasks = [asyncio.create_task(self.kubelet.run()), asyncio.create_task(resync(self.kubelet))]
        return self.kubelet

    async def stop(self) -> None:
        """The controller dies: its tasks end, its processes and files stay as they are."""
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            with contextlib.suppress(BaseException):
                await task
        self.tasks = []

    async def dead(self) -> bool:
        return bool(self.tasks) and self.tasks[0].done()

    def status(self, name: str) -> dict[str, Any]:
        current = self.state.get("Pod", "default", name) or {}
        statuses = (current.get("status") or {}).get("containerStatuses") or [{}]
        return dict(statuses[0])

    def running_cid(self, name: str) -> str | None:
        cid = self.status(name).get("containerID")
        return cid if cid and alive(cid) else None


@contextlib.asynccontextmanager
async def controller(tmp: Path, command: list[str]) -> AsyncIterator[Controller]:
    c = Controller(tmp, images(tmp, command))
    try:
        yield c
    finally:
        await c.stop()
        kill_processes_under(tmp / "state" / "pods")
        c.state.close()


async def until(check: Callable[[], bool], what: str, timeout: float = 20.0,
                watch: Callable[[], None] | None = None) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not check():
        if watch is not None:
            watch()
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.05)


def at_most_one(state_dir: Path) -> None:
    doubled = {name: pids for name, pids in games(state_dir).items() if len(pids) > 1}
    assert not doubled, f"two game processes for one pod: {doubled}"


@pytest.mark.asyncio
async def test_killing_the_supervisor_never_leaves_two_game_processes(tmp_path: Path) -> None:
    """Supervisor SIGKILLed 20 times, the controller up for half of them and down for the other half."""
    async with controller(tmp_path, ["sleep", GAME]) as c:
        state_dir = tmp_path / "state"
        c.state.create(pod("g-0"))
        c.start()
        await until(lambda: c.running_cid("g-0") is not None, "g-0 running")
        for i in range(20):
            old = c.running_cid("g-0")
            assert old is not None
            supervisor = parse_container_id(old)
            assert supervisor is not None
            up = i % 2 == 0
            if not up:
                await c.stop()
            os.kill(supervisor[0], signal.SIGKILL)
            if not up:
                # Nobody is watching: the game must not outlive its supervisor (the next start would double it).
                await until(lambda: not games(state_dir), "the game to die with its supervisor", 5)
                c.start()

            def restarted(old: str = old) -> bool:
                cid = c.running_cid("g-0")
                return cid is not None and cid != old and len(games(state_dir).get("g-0", [])) == 1

            await until(restarted, f"g-0 restarted (iteration {i}, controller {'up' if up else 'down'})",
                        watch=lambda: at_most_one(state_dir))
            for _ in range(5):
                at_most_one(state_dir)
                await asyncio.sleep(0.05)
        assert c.status("g-0")["restartCount"] == 20


@pytest.mark.asyncio
async def test_controller_dying_right_after_a_start_leaves_one_process_per_pod(tmp_path: Path) -> None:
    """A burst 0 -> 20; the controller dies right after its first "started container" (before the pod's status
    says so), then once more between starting a supervisor and recording it. One game process per pod."""
    async with controller(tmp_path, ["sleep", GAME]) as c:
        state_dir = tmp_path / "state"
        for i in range(20):
            c.state.create(pod(f"b-{i}"))

        class AfterStart(LocalKubelet):
            def _start(self, *args: Any) -> None:
                super()._start(*args)
                raise Crash

        class BeforeRecord(LocalKubelet):
            def _write_spec_record(self, *args: Any, **kwargs: Any) -> None:
                if len(args) > 4 and args[4] is not None:  # the record naming a freshly started process
                    raise Crash
                super()._write_spec_record(*args, **kwargs)

        for crashing in (AfterStart, BeforeRecord):
            kubelet = c.start(crashing(c.store, state_dir, c.images, backoff_start=0.2))
            await until(lambda: c.tasks[0].done(), "the controller to die")
            assert isinstance(c.tasks[0].exception(), Crash)
            assert kubelet.pods  # it did get to a pod
            await c.stop()
            await asyncio.sleep(0.3)  # a supervisor started without "go" ends on its own
            at_most_one(state_dir)
        c.start()

        def settled() -> bool:
            found = games(state_dir)
            return len(found) == 20 and all(c.running_cid(f"b-{i}") for i in range(20))

        await until(settled, "20 pods running", 60, watch=lambda: at_most_one(state_dir))
        for _ in range(10):
            at_most_one(state_dir)
            await asyncio.sleep(0.05)
        found = games(state_dir)
        assert sorted(found) == sorted(f"b-{i}" for i in range(20))
        # Adopted, not restarted: the process each status names is the one running.
        for i in range(20):
            cid = c.running_cid(f"b-{i}")
            assert cid is not None
            assert c.status(f"b-{i}")["restartCount"] == 0


GRACEFUL = ["sh", "-c", f"trap 'exit 0' TERM; sleep {GAME} & wait"]


@pytest.mark.asyncio
@pytest.mark.parametrize("policy", ["Always", "OnFailure", "Never"])
@pytest.mark.parametrize("killed", [False, True])
async def test_in_place_update_restarts_the_container_whatever_the_restart_policy(
    tmp_path: Path, policy: str, killed: bool
) -> None:
    """A changed image restarts the container even with OnFailure/Never and a game exiting 0 on SIGTERM, also when
    the controller dies while the old container is stopping."""
    async with controller(tmp_path, GRACEFUL) as c:
        c.state.create(pod("u-0", policy))
        c.start()
        await until(lambda: c.running_cid("u-0") is not None, "u-0 running")
        old = c.running_cid("u-0")
        current = c.state.get("Pod", "default", "u-0")
        assert current is not None
        c.state.patch("Pod", "default", "u-0", {"spec": {"containers": [{"name": "main", "image": "game:2"}]}})
        if killed:
            kubelet = c.kubelet
            assert kubelet is not None
            state = kubelet.pods[("default", "u-0")]
            # The controller dies once the old container has been told to stop.
            await until(lambda: state.containers["main"].stop_task is not None, "the stop to begin")
            await c.stop()
            assert old is not None and parse_container_id(old) is not None
            await until(lambda: not alive(old), "the old container to exit on SIGTERM")
            c.start()

        def updated() -> bool:
            status = c.status("u-0")
            return status.get("image") == "game:2" and c.running_cid("u-0") not in (None, old)

        await until(updated, f"u-0 restarted on game:2 ({policy})", 20)
        current = c.state.get("Pod", "default", "u-0")
        assert current is not None and current["status"]["phase"] == "Running"
        assert c.status("u-0")["restartCount"] == 1
        at_most_one(tmp_path / "state")


@pytest.mark.slow
def test_burst_with_the_real_controller_sigkilled_at_its_first_start(tmp_path: Path) -> None:
    """The attack as found: `gk serve` SIGKILLed as soon as its log says "started container", during 0 -> 20."""
    import time

    from tests.fleet import Fleet, wait_for
    from tests.test_resilience import custom_images, gss_doc

    fleet = Fleet(tmp_path)
    try:
        custom_images(fleet, {"sleeper:1": {"command": ["sleep", GAME]}})
        fleet.start()
        doc = gss_doc("burst", "sleeper:1", replicas=20)
        fleet.apply_yaml(doc)
        deadline = time.monotonic() + 60
        while "started container" not in fleet.log() and time.monotonic() < deadline:
            time.sleep(0.005)
        fleet.kill_controller()
        at_most_one(fleet.state_dir)
        fleet.start()

        def settled() -> bool:
            at_most_one(fleet.state_dir)
            pods = fleet.pods()
            return len(games(fleet.state_dir)) == 20 and len(pods) == 20 and all(
                (p.get("status") or {}).get("phase") == "Running" for p in pods.values())

        wait_for(settled, "20 pods running, one game process each", 90)
        time.sleep(1)
        at_most_one(fleet.state_dir)
        assert len(games(fleet.state_dir)) == 20
    finally:
        fleet.stop()
