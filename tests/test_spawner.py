"""runtime/spawn.py, the probe spawner the embedded prober uses: real processes, both backends."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest

from gamekeeper.ports.runtime import ExecResult
from gamekeeper.runtime.images import ImageMap
from gamekeeper.runtime.local import LocalRuntime
from gamekeeper.runtime.spawn import ProbeSpawner, available

pytestmark = pytest.mark.skipif(not available(), reason="needs pidfd, memfd and epoll (Linux 5.3+)")

BACKENDS = [True, False]  # posix_spawn through ctypes; subprocess.Popen (the fallback)


def run(spawner: ProbeSpawner, argv: list[str], cwd: Path, env: dict[str, str], timeout: float = 10,
        max_output: int | None = None) -> ExecResult:
    async def go() -> ExecResult:
        try:
            return await spawner.run(argv, cwd, env, timeout, max_output)
        finally:
            spawner.close()

    return asyncio.run(go())


def env() -> dict[str, str]:
    return {"PATH": os.environ["PATH"]}


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.parametrize("use_libc", BACKENDS)
def test_output_exit_code_directory_and_environment(tmp_path: Path, use_libc: bool) -> None:
    spawner = ProbeSpawner(use_libc=use_libc)
    result = run(spawner, ["sh", "-c", 'pwd; echo "$MODE" >&2; exit 3'], tmp_path, {**env(), "MODE": "idle"})
    assert result.exit_code == 3
    assert result.stdout.decode().strip() == str(tmp_path)
    assert result.stderr == b"idle\n"
    assert not result.timed_out


@pytest.mark.parametrize("use_libc", BACKENDS)
def test_timeout_kills_the_whole_process_group(tmp_path: Path, use_libc: bool) -> None:
    spawner = ProbeSpawner(use_libc=use_libc)
    result = run(spawner, ["sh", "-c", "sleep 300 & echo $! > bg.pid; sleep 300"], tmp_path, env(), timeout=0.5)
    assert result.timed_out and result.exit_code == -1
    assert b"timed out after 0.5s" in result.stderr
    background = int((tmp_path / "bg.pid").read_text())
    deadline = time.monotonic() + 5
    while alive(background) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(background), "the probe's background child outlived the timeout"


@pytest.mark.parametrize("use_libc", BACKENDS)
def test_a_background_child_does_not_hold_the_probe_and_is_killed(tmp_path: Path, use_libc: bool) -> None:
    spawner = ProbeSpawner(use_libc=use_libc)
    result = run(spawner, ["sh", "-c", "sleep 300 & echo $! > bg.pid; echo done"], tmp_path, env(), timeout=30)
    assert result.exit_code == 0 and result.stdout == b"done\n" and not result.timed_out
    background = int((tmp_path / "bg.pid").read_text())
    deadline = time.monotonic() + 5
    while alive(background) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(background)


@pytest.mark.parametrize("use_libc", BACKENDS)
def test_output_is_capped(tmp_path: Path, use_libc: bool) -> None:
    spawner = ProbeSpawner(use_libc=use_libc)
    # More than a pipe holds: with pipes an unread probe would block; memory files never do.
    result = run(spawner, ["sh", "-c", "head -c 200000 /dev/zero | tr '\\0' x"], tmp_path, env(), max_output=1024)
    assert result.exit_code == 0
    assert result.stdout == b"x" * 1024


@pytest.mark.parametrize("use_libc", BACKENDS)
def test_missing_command_and_directory_are_errors_at_start(tmp_path: Path, use_libc: bool) -> None:
    spawner = ProbeSpawner(use_libc=use_libc)
    with pytest.raises(FileNotFoundError):
        run(spawner, ["no-such-command-gk"], tmp_path, env())
    with pytest.raises(FileNotFoundError):
        run(ProbeSpawner(use_libc=use_libc), ["true"], tmp_path / "missing", env())


def test_shared_environment_with_per_call_overrides(tmp_path: Path) -> None:
    spawner = ProbeSpawner()
    base = {**env(), "POD_NAME": "base", "SHARED": "yes"}

    async def go() -> list[bytes]:
        outputs = []
        for name in ("fleet-0", "fleet-1"):
            future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

            def done(result: ExecResult, future: asyncio.Future[bytes] = future) -> None:
                future.set_result(result.stdout)

            spawner.spawn(["sh", "-c", 'echo "$POD_NAME $SHARED $EXTRA"'], tmp_path, {"POD_NAME": name, "EXTRA": "e"},
                          10, done, env_base=base)
            outputs.append(await future)
        spawner.close()
        return outputs

    assert asyncio.run(go()) == [b"fleet-0 yes e\n", b"fleet-1 yes e\n"]
    assert base["POD_NAME"] == "base"  # the shared environment is never changed


def test_the_embedded_runtime_offers_the_spawner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GK_SPAWN", raising=False)
    monkeypatch.delenv("GK_SPAWN_HELPERS", raising=False)
    runtime = LocalRuntime(tmp_path, ImageMap(None, {}))
    assert runtime.probe_spawner is not None
    # One helper per core.
    assert runtime.probe_spawner.backend == f"helper ×{os.cpu_count() or 1}"
    runtime.close()
    monkeypatch.setenv("GK_SPAWN", "inline")
    runtime = LocalRuntime(tmp_path, ImageMap(None, {}))
    assert runtime.probe_spawner is not None
    assert runtime.probe_spawner.backend == "posix_spawn"
    runtime.close()
    assert LocalRuntime(tmp_path, ImageMap(None, {}), spawner=False).probe_spawner is None
