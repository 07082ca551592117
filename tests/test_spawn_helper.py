"""runtime/spawn_helper.py: probes started by a supervised helper process (real processes throughout)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from gamekeeper.ports.runtime import ExecResult
from gamekeeper.runtime.spawn import ProbeSpawner, available
from gamekeeper.runtime.spawn_helper import HelperSpawner, probe_spawner

pytestmark = pytest.mark.skipif(not available(), reason="needs pidfd, memfd and epoll (Linux 5.3+)")

PATH = {"PATH": os.environ["PATH"]}


def gone(pid: int) -> bool:
    """The process has exited (a zombie waiting for init counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def wait_for(check: Callable[[], bool], seconds: float = 10) -> bool:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


async def await_file(path: Path, seconds: float = 10) -> str:
    deadline = time.monotonic() + seconds
    while not (path.exists() and path.read_text().strip()):
        assert time.monotonic() < deadline, f"{path} never written"
        await asyncio.sleep(0.02)
    return path.read_text().strip()


CASES: list[tuple[str, list[str], dict[str, str], float, int | None]] = [
    ("exit code, cwd, env", ["sh", "-c", 'pwd; echo "$MODE" >&2; exit 3'], {**PATH, "MODE": "idle"}, 10, None),
    ("output cap", ["sh", "-c", "head -c 100000 /dev/zero | tr '\\0' a; echo err >&2"], PATH, 10, 1024),
    ("endless output", ["cat", "/dev/zero"], PATH, 10, 1024),
    ("timeout kill", ["sh", "-c", "sleep 300 & sleep 300"], PATH, 0.5, None),
    ("signal", ["sh", "-c", "kill -TERM $$"], PATH, 10, None),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_results_equal_the_in_process_spawners(tmp_path: Path, case: tuple[Any, ...]) -> None:
    _, argv, env, timeout, cap = case

    async def both() -> tuple[ExecResult, ExecResult]:
        inline, helper = ProbeSpawner(), HelperSpawner(helpers=1)
        try:
            return (await inline.run(argv, tmp_path, env, timeout, cap),
                    await helper.run(argv, tmp_path, env, timeout, cap))
        finally:
            inline.close()
            helper.close()

    expected, got = asyncio.run(both())
    assert got == expected
    if cap is not None:
        assert len(got.stdout) == cap


def test_a_relative_working_directory_is_the_controllers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`gk up` keeps its state in `./.gamekeeper`, so probe directories are relative to the controller's working
    directory; the helper runs elsewhere and must start them there all the same (make demo found this)."""
    (tmp_path / "pods" / "gs-0").mkdir(parents=True)
    (tmp_path / "pods" / "gs-0" / "mode").write_text("idle\n")
    monkeypatch.chdir(tmp_path)

    async def both() -> tuple[ExecResult, ExecResult]:
        inline, helper = ProbeSpawner(), HelperSpawner(helpers=1)
        try:
            return (await inline.run(["cat", "mode"], "pods/gs-0", {"PATH": "/usr/bin:/bin"}, 5.0),
                    await helper.run(["cat", "mode"], "pods/gs-0", {"PATH": "/usr/bin:/bin"}, 5.0))
        finally:
            inline.close()
            helper.close()

    expected, got = asyncio.run(both())
    assert expected.exit_code == 0 and expected.stdout.strip() == b"idle"
    assert got == expected


def test_shared_environment_and_overrides_over_many_sets(tmp_path: Path) -> None:
    """Environments sent once and referenced by id, also past the cache's bound (which makes the helper forget)."""
    bases = [{**PATH, "SET": f"set-{i}", "SHARED": "yes"} for i in range(300)]

    async def go() -> list[ExecResult]:
        spawner = HelperSpawner(helpers=1)
        loop = asyncio.get_running_loop()
        futures = []
        argv = ("sh", "-c", 'echo "$SET $POD $SHARED"')
        try:
            for rounds in range(2):
                for i, base in enumerate(bases):
                    future: asyncio.Future[ExecResult] = loop.create_future()
                    spawner.spawn(argv, tmp_path, {"POD": f"pod-{rounds}-{i}", "SHARED": "over"}, 10,
                                  future.set_result, 1024, base)
                    futures.append(future)
            return list(await asyncio.gather(*futures))
        finally:
            spawner.close()

    results = asyncio.run(go())
    expected = [f"set-{i} pod-{r}-{i} over\n".encode() for r in range(2) for i in range(300)]
    assert [r.stdout for r in results] == expected
    assert all(r.exit_code == 0 for r in results)


def test_start_errors_match_the_in_process_spawner(tmp_path: Path) -> None:
    async def go(spawner: Any) -> list[BaseException]:
        errors: list[BaseException] = []
        try:
            for argv, cwd in ((["no-such-command-gk"], tmp_path), (["true"], tmp_path / "missing")):
                with pytest.raises(OSError) as info:
                    await spawner.run(argv, cwd, PATH, 5)
                errors.append(info.value)
            with pytest.raises(ValueError):
                spawner.spawn(["echo", "a\0b"], tmp_path, PATH, 5, lambda r: None)
            with pytest.raises(ValueError):
                spawner.spawn(["echo"], tmp_path, {"A=B": "c"}, 5, lambda r: None)
            with pytest.raises(ValueError):
                spawner.spawn([], tmp_path, PATH, 5, lambda r: None)
        finally:
            spawner.close()
        return errors

    inline, helper = asyncio.run(go(ProbeSpawner())), asyncio.run(go(HelperSpawner(helpers=1)))
    assert [(type(e), str(e)) for e in helper] == [(type(e), str(e)) for e in inline]
    assert isinstance(helper[0], FileNotFoundError)


def test_a_start_error_reaches_the_prober_as_a_failed_probe(tmp_path: Path) -> None:
    async def go() -> ExecResult:
        spawner = HelperSpawner(helpers=1)
        future: asyncio.Future[ExecResult] = asyncio.get_running_loop().create_future()
        try:
            spawner.spawn(("no-such-command-gk",), tmp_path, PATH, 5, future.set_result, 1024)
            return await future
        finally:
            spawner.close()

    result = asyncio.run(go())
    assert result.exit_code == 1
    assert result.stderr == b"probe could not start: [Errno 2] No such file or directory: 'no-such-command-gk'"


def test_killing_a_call_kills_its_probe(tmp_path: Path) -> None:
    async def go() -> ExecResult:
        spawner = HelperSpawner(helpers=1)
        future: asyncio.Future[ExecResult] = asyncio.get_running_loop().create_future()
        try:
            started = spawner.spawn(["sh", "-c", "echo $$ > pid; exec sleep 300"], tmp_path, PATH, 60,
                                    future.set_result)
            await await_file(tmp_path / "pid")
            started.kill()
            return await asyncio.wait_for(future, 10)
        finally:
            spawner.close()

    result = asyncio.run(go())
    assert result.exit_code == -signal.SIGKILL
    assert gone(int((tmp_path / "pid").read_text()))


def test_a_killed_helper_fails_its_probes_and_a_new_one_serves_the_next(tmp_path: Path) -> None:
    async def go() -> tuple[list[ExecResult], ExecResult, int, int]:
        spawner = HelperSpawner(helpers=1)
        loop = asyncio.get_running_loop()
        try:
            assert (await spawner.run(["true"], tmp_path, PATH, 5)).exit_code == 0
            first = spawner.helpers[0].pid
            assert first is not None
            futures = []
            for i in range(3):
                future: asyncio.Future[ExecResult] = loop.create_future()
                spawner.spawn(["sh", "-c", f"echo $$ > pid{i}; exec sleep 300"], tmp_path, PATH, 60,
                              future.set_result)
                futures.append(future)
            for i in range(3):
                await await_file(tmp_path / f"pid{i}")
            os.kill(first, signal.SIGKILL)
            failed = list(await asyncio.wait_for(asyncio.gather(*futures), 10))
            after = await asyncio.wait_for(spawner.run(["sh", "-c", "echo again"], tmp_path, PATH, 5), 20)
            second = spawner.helpers[0].pid
            assert second is not None
            return failed, after, first, second
        finally:
            spawner.close()

    failed, after, first, second = asyncio.run(go())
    for result in failed:
        assert result.exit_code == 1 and not result.timed_out
        assert result.stderr == f"probe helper (pid {first}) ended with signal SIGKILL while the probe ran".encode()
    # What the dead helper ran is killed too (it carried the helper's mark).
    for i in range(3):
        assert wait_for(lambda i=i: gone(int((tmp_path / f"pid{i}").read_text())), 5)
    assert after == ExecResult(0, b"again\n", b"")
    assert second != first


def test_probes_submitted_while_the_helper_restarts_wait_for_it(tmp_path: Path) -> None:
    async def go() -> list[ExecResult]:
        spawner = HelperSpawner(helpers=1)
        loop = asyncio.get_running_loop()
        try:
            await spawner.run(["true"], tmp_path, PATH, 5)
            pid = spawner.helpers[0].pid
            assert pid is not None
            os.kill(pid, signal.SIGKILL)
            while spawner.helpers[0].sock is not None:  # until the controller has seen the death
                await asyncio.sleep(0.01)
            futures = []
            for i in range(5):
                future: asyncio.Future[ExecResult] = loop.create_future()
                spawner.spawn(("echo", str(i)), tmp_path, PATH, 5, future.set_result)
                futures.append(future)
            return list(await asyncio.wait_for(asyncio.gather(*futures), 20))
        finally:
            spawner.close()

    assert [r.stdout for r in asyncio.run(go())] == [f"{i}\n".encode() for i in range(5)]


def test_closing_the_spawner_kills_running_probes_and_the_helper(tmp_path: Path) -> None:
    async def go() -> tuple[int, subprocess.Popen[bytes]]:
        spawner = HelperSpawner(helpers=1)
        spawner.spawn(["sh", "-c", "echo $$ > pid; exec sleep 300"], tmp_path, PATH, 60, lambda r: None)
        pid = int(await await_file(tmp_path / "pid"))
        proc = spawner.helpers[0].proc
        assert proc is not None
        spawner.close()
        return pid, proc

    pid, proc = asyncio.run(go())
    assert proc.returncode == 0  # it exited by itself on EOF
    assert wait_for(lambda: gone(pid), 5)


CHILD = textwrap.dedent("""
    import asyncio, os, sys, time
    from gamekeeper.runtime.spawn_helper import HelperSpawner

    async def main():
        spawner = HelperSpawner(helpers=1)
        spawner.spawn(["sh", "-c", "echo $$ > pid; exec sleep 300"], sys.argv[1], {"PATH": os.environ["PATH"]},
                      300, lambda r: None)
        while not os.path.exists(os.path.join(sys.argv[1], "pid")):
            await asyncio.sleep(0.02)
        print(spawner.helpers[0].pid, flush=True)
        await asyncio.sleep(300)

    asyncio.run(main())
""")


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGTERM])
def test_the_helper_and_its_probes_end_when_the_controller_dies(tmp_path: Path, how: signal.Signals) -> None:
    controller = subprocess.Popen([sys.executable, "-c", CHILD, str(tmp_path)], stdout=subprocess.PIPE)
    try:
        assert controller.stdout is not None
        helper = int(controller.stdout.readline())
        probe = int((tmp_path / "pid").read_text())
        assert not gone(helper) and not gone(probe)
        controller.send_signal(how)
        controller.wait(10)
        assert wait_for(lambda: gone(helper), 10)
        assert wait_for(lambda: gone(probe), 10)
    finally:
        controller.kill()
        controller.wait()


def test_falls_back_to_in_process_when_no_helper_can_start(tmp_path: Path) -> None:
    async def go(command: list[str]) -> tuple[ExecResult, str]:
        spawner = HelperSpawner(helpers=1, command=command)
        try:
            result = await asyncio.wait_for(spawner.run(["sh", "-c", "echo fine"], tmp_path, PATH, 5), 30)
            return result, spawner.backend
        finally:
            spawner.close()

    # An executable that does not exist, and a helper that dies at once (three times before it is ready).
    for command in ([str(tmp_path / "no-such-python")], [sys.executable, "-c", "import sys; sys.exit(1)"]):
        result, backend = asyncio.run(go(command))
        assert result == ExecResult(0, b"fine\n", b"")
        assert backend.startswith("inline")


def test_gk_spawn_chooses_the_spawner(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GK_SPAWN", "inline")
    assert type(probe_spawner()) is ProbeSpawner
    monkeypatch.setenv("GK_SPAWN", "helper")
    assert type(probe_spawner()) is HelperSpawner


def test_two_helpers_share_the_load(tmp_path: Path) -> None:
    async def go() -> tuple[list[bytes], set[int]]:
        spawner = HelperSpawner(helpers=2)
        loop = asyncio.get_running_loop()
        try:
            futures = []
            for i in range(20):
                future: asyncio.Future[ExecResult] = loop.create_future()
                spawner.spawn(("sh", "-c", f"echo {i} $PPID"), tmp_path, PATH, 10, future.set_result)
                futures.append(future)
            results = await asyncio.gather(*futures)
            return [r.stdout.split()[0] for r in results], {int(r.stdout.split()[1]) for r in results}
        finally:
            spawner.close()

    outputs, parents = asyncio.run(go())
    assert outputs == [str(i).encode() for i in range(20)]
    assert len(parents) == 2
