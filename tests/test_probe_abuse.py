"""Probes that abuse the machine (issue 12, items 7b and 7c): a probe writing endlessly holds no more than its
output limit, and nothing a probe starts outlives its run, even in a session of its own. Both probe paths: the
spawner (memory files) and the asyncio fallback (`run_with_timeout`)."""

from __future__ import annotations

import asyncio
import os
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest

from gamekeeper.runtime.local import PROBE_OUTPUT_LIMIT, run_with_timeout
from gamekeeper.runtime.spawn import HOLD, Leftovers, ProbeSpawner, available

pytestmark = pytest.mark.skipif(not available(), reason="needs pidfd, memfd and epoll (Linux 5.3+)")

BIG = 50_000_000  # bytes a probe writes before it sleeps
MARK = "765432"  # the leftover's argument, to find it in /proc


def marked() -> list[int]:
    found = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                cmdline = Path(f"/proc/{entry.name}/cmdline").read_bytes().split(b"\0")
                state = Path(f"/proc/{entry.name}/stat").read_bytes().rsplit(b")", 1)[1].split()[0]
            except OSError:
                continue
            if MARK.encode() in cmdline and state != b"Z":
                found.append(int(entry.name))
    return found


@pytest.fixture(autouse=True)
def no_leftovers() -> Iterator[None]:
    yield
    for pid in marked():
        os.kill(pid, 9)


async def until(check: object, what: str, timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not check():  # type: ignore[operator]
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.05)


@pytest.mark.asyncio
async def test_spawner_holds_no_more_than_the_limit_of_a_flood(tmp_path: Path) -> None:
    spawner = ProbeSpawner()
    try:
        results: list[object] = []
        flood = f"head -c {BIG} /dev/zero 2>/dev/null; echo done >&2; sleep 30"
        running = spawner.spawn(["sh", "-c", flood], str(tmp_path), dict(os.environ), 10, results.append, 1024)
        # While it sleeps, what it wrote is still held by its memory file: never more than HOLD.
        await until(lambda: os.fstat(running.err).st_size and os.pread(running.err, 5, 0) == b"done\n",
                    "the flood to end")
        held = os.fstat(running.out).st_blocks * 512
        assert held <= HOLD + 4096, f"{held} bytes held for a flood of {BIG}"
        running.kill()
        await until(lambda: bool(results), "the probe to end")
    finally:
        spawner.close()


@pytest.mark.asyncio
async def test_spawner_result_is_what_was_written_up_to_the_limit(tmp_path: Path) -> None:
    spawner = ProbeSpawner()
    try:
        short = await spawner.run(["sh", "-c", "printf ok; printf err >&2"], str(tmp_path), dict(os.environ), 5)
        assert (short.exit_code, short.stdout, short.stderr) == (0, b"ok", b"err")
        long = await spawner.run(["sh", "-c", "yes | head -c 100000"], str(tmp_path), dict(os.environ), 5,
                                 max_output=1024)
        assert (long.exit_code, long.stdout) == (0, b"y\n" * 512)  # written in full, 1024 bytes kept
        flood = await spawner.run(["cat", "/dev/zero"], str(tmp_path), dict(os.environ), 5, max_output=1024)
        assert flood.stdout == b"\0" * 1024 and not flood.timed_out  # its write beyond the limit failed
    finally:
        spawner.close()


@pytest.mark.asyncio
async def test_fallback_keeps_only_the_limit_of_a_flood(tmp_path: Path) -> None:
    tracemalloc.start()
    try:
        result = await run_with_timeout(["sh", "-c", f"head -c {BIG} /dev/zero; exit 3"], tmp_path,
                                        dict(os.environ), 30)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.exit_code == 3 and len(result.stdout) == PROBE_OUTPUT_LIMIT
    assert peak < 5_000_000, f"{peak} bytes held while reading a {BIG}-byte flood"


@pytest.mark.asyncio
async def test_a_cancelled_fallback_run_is_killed_and_logs_nothing(tmp_path: Path) -> None:
    # A controller stopping with probes in flight cancels them; Python 3.11's wait_for then left the gather's
    # CancelledError unread, logged as "exception was never retrieved" once per probe.
    import gc

    loop = asyncio.get_running_loop()
    reported: list[str] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: reported.append(str(context.get("message"))))
    try:
        task = asyncio.create_task(run_with_timeout(["sh", "-c", f"sleep {MARK}"], tmp_path, dict(os.environ), 30))
        await until(lambda: bool(marked()), "the probe command running", 5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await until(lambda: not marked(), "the cancelled probe killed", 5)
        del task
        for _ in range(3):
            await asyncio.sleep(0.05)
            gc.collect()
    finally:
        loop.set_exception_handler(previous)
    assert reported == []


SETSID = ["sh", "-c", f"setsid sleep {MARK} </dev/null >/dev/null 2>&1 & sleep 0.2; echo started"]


@pytest.mark.asyncio
async def test_spawner_kills_a_probe_child_that_left_its_session(tmp_path: Path) -> None:
    spawner = ProbeSpawner()
    try:
        for _ in range(5):
            result = await spawner.run(SETSID, str(tmp_path), dict(os.environ), 5)
            assert result.stdout == b"started\n"
        await until(lambda: not marked(), "no probe descendant left after its run", 3)
        assert spawner.leftovers.killed >= 1
    finally:
        spawner.close()


@pytest.mark.asyncio
async def test_fallback_kills_a_probe_child_that_left_its_session(tmp_path: Path) -> None:
    leftovers = Leftovers()
    for _ in range(3):
        result = await run_with_timeout(SETSID, tmp_path, dict(os.environ), 5, leftovers=leftovers)
        assert result.stdout == b"started\n"
    await until(lambda: not marked(), "no probe descendant left after its run", 3)


@pytest.mark.asyncio
async def test_a_running_probe_is_not_swept(tmp_path: Path) -> None:
    """Only runs that ended are swept: a probe still running (and its setsid child) is left alone."""
    spawner = ProbeSpawner()
    try:
        done: list[object] = []
        spawner.spawn(["sh", "-c", f"setsid sleep {MARK} & sleep 2"], str(tmp_path), dict(os.environ), 10,
                      done.append)
        await until(lambda: bool(marked()), "the probe's child to start")
        await spawner.run(["true"], str(tmp_path), dict(os.environ), 5)  # another run ends: a sweep
        await asyncio.sleep(spawner.leftovers.delay + 0.3)
        assert marked() and not done
        await until(lambda: bool(done), "the probe to end", 5)
        await until(lambda: not marked(), "its child killed once it ended", 3)
    finally:
        spawner.close()
