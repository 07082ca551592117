"""Starting probe commands at the rate the machine allows.

A probe is a short command started every period in a game server's directory and environment, in its own
session, killed with its process group at the timeout. `asyncio.create_subprocess_exec` does that with a
`subprocess.Popen`, three pipes and their transports, and (Python 3.11) a child-watcher *thread* per process;
the parent then spends several times more CPU per probe than the kernel does starting it. This spawner:

- starts the command with glibc's `posix_spawn` (a `clone(CLONE_VM | CLONE_VFORK)`: no page tables are
  copied, however large the controller is), changing into the working directory, starting a new session,
  resetting signal dispositions as `subprocess` does and closing every descriptor above 2 with one
  `close_range` (`posix_spawn_file_actions_addclosefrom_np`: only the descriptors that are open cost anything);
  where those glibc extensions are missing it falls back to `subprocess.Popen` (which also uses vfork);
- sends stdout and stderr to two memory files instead of pipes: nothing to read while the command runs, no
  transport, and a command that writes more than a pipe holds never blocks; the caller reads what it needs
  (a probe message is capped at 1024 bytes) once the command has exited;
- learns of exits through a pidfd per command, all on one epoll descriptor that the event loop watches, so a
  whole batch of exits costs one wake-up;
- kills the command's process group at the timeout and, like `runtime.local.run_with_timeout`, whatever is
  left of the group when the command exits (a stray background child of the probe).

What a probe writes is held only up to a bound (kubelet keeps 10 KiB of a probe's output): each memory file is
sized to `HOLD` (256 KiB, or the caller's limit when larger) and sealed against growing, so a write beyond it
fails in the probe (as one into kubelet's capped stream does) and a probe running `cat /dev/zero` costs no more
memory than one printing "ok". Output between the caller's limit and `HOLD` is written and dropped, so a chatty
probe that exits 0 still succeeds.

Every probe runs with `GK_PROBE=<run>` in its environment, and `Leftovers` kills the marked processes of runs that
have ended: a child that left the probe's session (`setsid`) escapes the group kill but not its environment.

The command is finished when its process exits (with pipes it was when every holder of the pipe had closed
it, so a background child keeping stdout open held the probe until its timeout).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import errno
import fcntl
import heapq
import itertools
import math
import os
import select
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from gamekeeper.ports.runtime import ExecResult

Done = Callable[[ExecResult], None]

# The environment variable that marks a probe run's processes (see Leftovers).
PROBE_MARK = "GK_PROBE"
_scopes = itertools.count()
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
# What one output file of a running command may hold at most (see the module's docstring).
HOLD = 256 * 1024


class Leftovers:
    """Kills what probe runs leave behind outside their process group (a `setsid` child, a daemon).

    Each run gets a token, `GK_PROBE=<scope>.<n>` in its environment, which its descendants inherit. Shortly
    after a run ends, one sweep of /proc (batched: one per `delay` for every run that ended meanwhile) kills every
    process carrying a token of this scope whose run is no longer in flight. A sweep reads every process's
    environment, so on a machine with many processes sweeps are spaced to take at most `SHARE` of the time.
    """

    SHARE = 0.05

    def __init__(self, delay: float = 0.3) -> None:
        self.scope = f"{os.getpid()}-{next(_scopes)}"
        self.delay = delay
        self.killed = 0
        self._cost = 0.0  # how long the last sweep took
        self._inflight: set[str] = set()
        self._count = itertools.count()
        self._pending: asyncio.TimerHandle | None = None
        self._needle = f"{PROBE_MARK}={self.scope}.".encode()

    def begin(self) -> str:
        token = f"{self.scope}.{next(self._count)}"
        self._inflight.add(token)
        return token

    def end(self, token: str) -> None:
        self._inflight.discard(token)
        if self._pending is None:
            with contextlib.suppress(RuntimeError):  # no running loop (closing): close() sweeps
                self._pending = asyncio.get_running_loop().call_later(
                    max(self.delay, self._cost / self.SHARE), self._swept)

    def _swept(self) -> None:
        self._pending = None
        self.sweep()

    def close(self) -> None:
        if self._pending is not None:
            self._pending.cancel()
            self._pending = None
        self._inflight.clear()
        self.sweep()

    def sweep(self) -> int:
        """Kill the marked processes of ended runs; returns how many."""
        needle, inflight, killed = self._needle, self._inflight, 0
        me = os.getpid()
        began = time.monotonic()
        for entry in os.scandir("/proc"):
            name = entry.name
            if not name.isdigit() or int(name) == me:
                continue
            try:
                with open(f"/proc/{name}/environ", "rb") as f:
                    data = f.read()
            except OSError:
                continue  # gone, or not ours to read
            at = data.find(needle)
            if at < 0 or (at > 0 and data[at - 1] != 0):
                continue
            end = data.find(b"\0", at)
            token = data[at + len(PROBE_MARK) + 1 : end if end >= 0 else len(data)].decode(errors="replace")
            if token in inflight:
                continue
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(int(name), signal.SIGKILL)
                killed += 1
        self.killed += killed
        self._cost = time.monotonic() - began
        return killed


def kill_marked(prefix: str) -> int:
    """Kill every process whose `GK_PROBE` mark starts with `prefix` (the runs of a spawner that died)."""
    needle, me, killed = f"{PROBE_MARK}={prefix}".encode(), os.getpid(), 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            with open(f"/proc/{entry.name}/environ", "rb") as f:
                data = f.read()
        except OSError:
            continue
        at = data.find(needle)
        if at >= 0 and (at == 0 or data[at - 1] == 0):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(int(entry.name), signal.SIGKILL)
                killed += 1
    return killed


def capped_output(fd: int, limit: int) -> bytes:
    """What a command wrote to a memory file made by `output_file` (at most `limit` bytes)."""
    # The file's offset is shared with the command's descriptor: it says how much was written (the file's size
    # is the limit, zeros beyond what was written).
    written = os.lseek(fd, 0, os.SEEK_CUR)
    return os.pread(fd, min(written, limit), 0) if written > 0 else b""


def output_file(name: str, limit: int) -> int:
    """A memory file that can never hold more than `limit` bytes: writes beyond it fail."""
    fd = os.memfd_create(name, os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    try:
        # Whole pages: the kernel refuses a write's piece within one page entirely when it would grow the file,
        # so a limit inside a page would refuse the bytes before it too.
        os.ftruncate(fd, -(-max(limit, 1) // _PAGE) * _PAGE)  # a hole: no memory until written
        fcntl.fcntl(fd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_GROW | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_SEAL)
    except BaseException:
        os.close(fd)
        raise
    return fd

# <spawn.h> flags (glibc; identical on every Linux architecture).
_SETSIGDEF = 0x04
_SETSIGMASK = 0x08
_SETSID = 0x80
# SIGPIPE and SIGXFSZ as subprocess's restore_signals; and glibc's internal real-time signals (below SIGRTMIN),
# which its posix_spawn would otherwise leave ignored in the child, and an ignored signal stays ignored after exec.
_DEFAULT_SIGNALS = (
    *(int(getattr(signal, name)) for name in ("SIGPIPE", "SIGXFZ", "SIGXFSZ") if hasattr(signal, name)),
    *range(32, int(getattr(signal, "SIGRTMIN", 32))),
)


class _Libc:
    """glibc's posix_spawn with the two extensions we need (glibc >= 2.34), or unavailable."""

    def __init__(self) -> None:
        lib = ctypes.CDLL(None, use_errno=True)
        for name in ("posix_spawn_file_actions_addchdir_np", "posix_spawn_file_actions_addclosefrom_np"):
            if not hasattr(lib, name):
                raise OSError(errno.ENOSYS, f"libc has no {name}")
        vp, c_int = ctypes.c_void_p, ctypes.c_int
        self.spawn = lib.posix_spawn
        self.spawn.argtypes = [ctypes.POINTER(c_int), ctypes.c_char_p, vp, vp, vp, vp]
        self.fa_init = lib.posix_spawn_file_actions_init
        self.fa_destroy = lib.posix_spawn_file_actions_destroy
        self.fa_dup2 = lib.posix_spawn_file_actions_adddup2
        self.fa_dup2.argtypes = [vp, c_int, c_int]
        self.fa_chdir = lib.posix_spawn_file_actions_addchdir_np
        self.fa_chdir.argtypes = [vp, ctypes.c_char_p]
        self.fa_closefrom = lib.posix_spawn_file_actions_addclosefrom_np
        self.fa_closefrom.argtypes = [vp, c_int]
        # One attribute object for every spawn: new session, empty signal mask, default dispositions for the
        # signals Python ignores (inherited across exec otherwise, as subprocess's restore_signals resets).
        self.attr = ctypes.create_string_buffer(1024)
        empty, defaults = ctypes.create_string_buffer(256), ctypes.create_string_buffer(256)
        lib.sigemptyset(empty)
        lib.sigemptyset(defaults)
        # Set the bits directly: glibc's sigaddset refuses its internal signals. A sigset_t is unsigned longs,
        # signal n at bit n - 1.
        words = (ctypes.c_ulong * (256 // ctypes.sizeof(ctypes.c_ulong))).from_buffer(defaults)
        bits = 8 * ctypes.sizeof(ctypes.c_ulong)
        for sig in _DEFAULT_SIGNALS:
            words[(sig - 1) // bits] |= 1 << ((sig - 1) % bits)
        lib.posix_spawnattr_init(self.attr)
        lib.posix_spawnattr_setsigmask(self.attr, empty)
        lib.posix_spawnattr_setsigdefault(self.attr, defaults)
        lib.posix_spawnattr_setflags(self.attr, ctypes.c_short(_SETSID | _SETSIGMASK | _SETSIGDEF))
        self.actions = ctypes.create_string_buffer(512)
        self.pid = c_int()
        self.pid_ref = ctypes.byref(self.pid)

    def start(self, path: bytes, argv: Any, env: Any, cwd: bytes, fds: tuple[int, int, int]) -> int:
        """Start `path`; argv and env are NULL-terminated `c_char_p` arrays."""
        actions = self.actions
        self.fa_init(actions)
        try:
            self.fa_dup2(actions, fds[0], 0)
            self.fa_dup2(actions, fds[1], 1)
            self.fa_dup2(actions, fds[2], 2)
            self.fa_chdir(actions, cwd)
            self.fa_closefrom(actions, 3)
            code = self.spawn(self.pid_ref, path, actions, self.attr, argv, env)
        finally:
            self.fa_destroy(actions)
        if code != 0:
            raise OSError(code, os.strerror(code))
        return self.pid.value


def _load_libc() -> _Libc | None:
    try:
        return _Libc()
    except (OSError, AttributeError):
        return None


_LIBC: _Libc | None = None
_LIBC_LOADED = False


def _libc() -> _Libc | None:
    global _LIBC, _LIBC_LOADED
    if not _LIBC_LOADED:
        _LIBC, _LIBC_LOADED = _load_libc(), True
    return _LIBC


def available() -> bool:
    """Whether this platform has what the spawner needs (pidfd, memfd, epoll: Linux 5.3 and later)."""
    return hasattr(os, "pidfd_open") and hasattr(os, "memfd_create") and hasattr(select, "epoll")


def _encode(text: str, what: str) -> bytes:
    data = os.fsencode(text)
    if b"\0" in data:
        raise ValueError(f"embedded null byte in {what}")
    return data


def encode_env(env: Mapping[str, str]) -> list[bytes]:
    out = []
    for key, value in env.items():
        if "=" in key:
            raise ValueError("illegal environment variable name")
        out.append(_encode(f"{key}={value}", "environment"))
    return out


def _c_strings(items: Sequence[bytes]) -> Any:
    return (ctypes.c_char_p * (len(items) + 1))(*items, None)


class _Encoded:
    """A NULL-terminated C array of "NAME=value" strings for one environment, and where each name sits."""

    __slots__ = ("array", "items", "positions", "source")

    def __init__(self, source: Mapping[str, str]) -> None:
        self.source = source  # kept so that id(source) stays this object's while cached
        self.items = encode_env(source)
        self.positions = {key: i for i, key in enumerate(source)}
        self.array = _c_strings(self.items)

    def with_overrides(self, overrides: Mapping[str, str]) -> Any:
        if not overrides:
            return self.array
        array = type(self.array).from_buffer_copy(self.array)  # the pointers; `items` keeps their targets alive
        added = []
        for key, value in overrides.items():
            if "=" in key:
                raise ValueError("illegal environment variable name")
            item = _encode(f"{key}={value}", "environment")
            position = self.positions.get(key)
            if position is None:
                added.append(item)
            else:
                array[position] = item
        if added:
            return _c_strings([*(array[i] for i in range(len(self.items))), *added])
        return array


class Running:
    """One started command; `kill()` ends it (and its process group) early."""

    __slots__ = ("deadline", "done", "err", "finished", "limit", "out", "pid", "pidfd", "popen", "timed_out",
                 "timeout", "token")

    def __init__(self, pid: int, pidfd: int, out: int, err: int, done: Done, limit: int, timeout: float) -> None:
        self.pid = pid
        self.pidfd = pidfd
        self.out = out
        self.err = err
        self.done = done
        self.limit = limit
        self.timeout = timeout
        self.deadline = 0.0
        self.timed_out = False
        self.finished = False
        self.popen: subprocess.Popen[bytes] | None = None
        self.token = ""

    def kill(self) -> None:
        if not self.finished:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pid, signal.SIGKILL)

    def _expire(self) -> None:
        if not self.finished:
            self.timed_out = True
            self.kill()


class ProbeSpawner:
    """Starts commands for an asyncio event loop; see the module's docstring.

    `spawn()` returns at once and calls `done(result)` from the event loop when the command has finished;
    `run()` is the same as a coroutine. stdout and stderr are each read up to `max_output` bytes.
    """

    def __init__(self, max_output: int = 1 << 20, use_libc: bool = True) -> None:
        self.max_output = max_output
        self.libc = _libc() if use_libc else None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._epoll: select.epoll | None = None
        self._running: dict[int, Running] = {}  # pidfd -> command
        # Timeouts: (deadline, sequence, command) in a heap, looked at by one timer while anything runs (no timer
        # per command: the event loop's timer heap compares in Python, this one in C).
        self._deadlines: list[tuple[float, int, Running]] = []
        self._sequence = 0
        self._sweeper: asyncio.TimerHandle | None = None
        self._sweep_at = math.inf
        self._devnull = -1
        self._paths: dict[tuple[str, str], bytes] = {}
        # Encodings of environments passed as `env_base` and of argv tuples, by identity (objects kept alive).
        self._bases: dict[int, _Encoded] = {}
        self._argvs: dict[int, tuple[tuple[str, ...], Any]] = {}
        self.started = 0
        self.leftovers = Leftovers()

    @property
    def backend(self) -> str:
        return "posix_spawn" if self.libc is not None else "subprocess"

    # -- the event loop side -------------------------------------------------------------------------------

    def _bind(self) -> asyncio.AbstractEventLoop:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            return loop
        loop = asyncio.get_running_loop()
        self.close()
        self._epoll = select.epoll()
        self._devnull = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
        loop.add_reader(self._epoll.fileno(), self._on_exits)
        self._loop = loop
        return loop

    def _on_exits(self) -> None:
        assert self._epoll is not None
        for fd, _ in self._epoll.poll(0, 512):
            running = self._running.pop(fd, None)
            if running is not None:
                self._finish(running)

    def close(self) -> None:
        """Kill what still runs and release the descriptors (the spawner binds again on its next use)."""
        for running in list(self._running.values()):
            running.kill()
            self._release(running)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(running.pid, 0)
        self._running.clear()
        self.leftovers.close()
        self._deadlines.clear()
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        self._sweep_at = math.inf
        if self._epoll is not None:
            if self._loop is not None and not self._loop.is_closed():
                with contextlib.suppress(Exception):
                    self._loop.remove_reader(self._epoll.fileno())
            self._epoll.close()
            self._epoll = None
        if self._devnull >= 0:
            os.close(self._devnull)
            self._devnull = -1
        self._loop = None

    # -- starting ------------------------------------------------------------------------------------------

    def _executable(self, name: str, search: str, cwd: str) -> bytes:
        """What exec would run for argv[0]: a path as it is (relative to cwd), else a search of PATH."""
        if "/" in name:
            return _encode(name, "argv")
        cached = self._paths.get((name, search))
        if cached is not None:
            return cached
        denied = False
        for directory in search.split(os.pathsep):
            candidate = os.path.join(directory or ".", name)
            if not os.path.isabs(candidate):
                candidate = os.path.join(cwd, candidate)
            if os.path.isfile(candidate):
                if os.access(candidate, os.X_OK):
                    path = _encode(candidate, "argv")
                    if all(os.path.isabs(d) for d in search.split(os.pathsep)):
                        self._paths[(name, search)] = path
                    return path
                denied = True
        if denied:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), name)
        raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), name)

    def spawn(
        self,
        argv: Sequence[str],
        cwd: str | os.PathLike[str],
        env: Mapping[str, str],
        timeout: float,
        done: Done,
        max_output: int | None = None,
        env_base: Mapping[str, str] | None = None,
    ) -> Running:
        """Start `argv`; raises OSError (or ValueError for bad arguments) when it cannot start.

        The environment is `env`, or with `env_base` that mapping updated with `env`: a caller starting many
        commands whose environments share most variables passes the shared part as `env_base`, always the same
        object and never changed, and its encoding is reused.
        """
        if not argv:
            raise ValueError("empty command")
        loop = self._bind()
        cwd = os.fspath(cwd)
        limit = self.max_output if max_output is None else max_output
        out = output_file("gk-probe-stdout", max(limit, HOLD))
        try:
            err = output_file("gk-probe-stderr", max(limit, HOLD))
        except BaseException:
            os.close(out)
            raise
        popen = None
        token = self.leftovers.begin()
        env = {**env, PROBE_MARK: token}
        try:
            if self.libc is not None:
                pid = self._start_libc(argv, cwd, env, env_base, out, err)
            else:
                full = {**env_base, **env} if env_base is not None else env
                popen = subprocess.Popen(
                    list(argv), cwd=cwd, env=dict(full), stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                    start_new_session=True, close_fds=True,
                )
                pid = popen.pid
            pidfd = os.pidfd_open(pid)
        except BaseException:
            os.close(out)
            os.close(err)
            self.leftovers.end(token)
            raise
        self.started += 1
        running = Running(pid, pidfd, out, err, done, limit, timeout)
        running.popen = popen
        running.token = token
        assert self._epoll is not None
        self._epoll.register(pidfd, select.EPOLLIN)
        self._running[pidfd] = running
        deadline = running.deadline = loop.time() + timeout
        self._sequence += 1
        heapq.heappush(self._deadlines, (deadline, self._sequence, running))
        if deadline < self._sweep_at:
            self._arm(loop, deadline)
        return running

    def _arm(self, loop: asyncio.AbstractEventLoop, when: float) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
        self._sweep_at = when
        self._sweeper = loop.call_at(when, self._sweep)

    def _sweep(self) -> None:
        self._sweeper, self._sweep_at = None, math.inf
        deadlines = self._deadlines
        if self._loop is None:
            return
        now = self._loop.time()
        while deadlines and deadlines[0][0] <= now:
            running = heapq.heappop(deadlines)[2]
            if not running.finished:
                running._expire()
        while deadlines and deadlines[0][2].finished:
            heapq.heappop(deadlines)
        if deadlines:
            self._arm(self._loop, deadlines[0][0])

    def _start_libc(self, argv: Sequence[str], cwd: str, env: Mapping[str, str],
                    env_base: Mapping[str, str] | None, out: int, err: int) -> int:
        assert self.libc is not None
        if env_base is not None:
            encoded = self._bases.get(id(env_base))
            if encoded is None or encoded.source is not env_base:
                if len(self._bases) >= 256:
                    self._bases.clear()
                encoded = self._bases[id(env_base)] = _Encoded(env_base)
            c_env = encoded.with_overrides(env)
            search = env.get("PATH") or env_base.get("PATH") or os.defpath
        else:
            c_env = _c_strings(encode_env(env))
            search = env.get("PATH") or os.defpath
        if isinstance(argv, tuple):
            cached = self._argvs.get(id(argv))
            if cached is None or cached[0] is not argv:
                if len(self._argvs) >= 256:
                    self._argvs.clear()
                cached = self._argvs[id(argv)] = (argv, _c_strings([_encode(a, "argv") for a in argv]))
            c_argv = cached[1]
        else:
            c_argv = _c_strings([_encode(a, "argv") for a in argv])
        path = self._executable(argv[0], search, cwd)
        try:
            return self.libc.start(path, c_argv, c_env, _encode(cwd, "cwd"), (self._devnull, out, err))
        except OSError as error:
            if error.errno in (errno.ENOENT, errno.ENOTDIR) and not os.path.isdir(cwd):
                raise FileNotFoundError(error.errno, error.strerror, cwd) from None
            if "/" not in argv[0]:
                self._paths.pop((argv[0], search), None)
            raise type(error)(error.errno, error.strerror, argv[0]) from None

    def _finish(self, running: Running) -> None:
        running.finished = True
        # The command has exited but is not reaped yet, so its pid (= its group's id) cannot have been reused:
        # kill whatever it left running in its group, then reap it.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(running.pid, signal.SIGKILL)
        try:
            _, status = os.waitpid(running.pid, 0)
            code = os.waitstatus_to_exitcode(status)
        except ChildProcessError:  # someone else reaped it
            code = 255
        if running.popen is not None:
            running.popen.returncode = code
        try:
            if running.timed_out:
                result = ExecResult(-1, b"", f"command timed out after {running.timeout:g}s".encode(), timed_out=True)
            else:
                limit = running.limit
                result = ExecResult(code, capped_output(running.out, limit), capped_output(running.err, limit))
        finally:
            self._release(running)
            self.leftovers.end(running.token)
        running.done(result)

    def _release(self, running: Running) -> None:
        running.finished = True
        for fd in (running.pidfd, running.out, running.err):
            with contextlib.suppress(OSError):
                os.close(fd)  # closing the pidfd also takes it off the epoll set

    async def run(
        self, argv: Sequence[str], cwd: str | os.PathLike[str], env: Mapping[str, str], timeout: float,
        max_output: int | None = None,
    ) -> ExecResult:
        """`spawn` as a coroutine (for `gk exec`-style callers); cancelling it kills the command."""
        result, _ = await spawned(self.spawn, argv, cwd, env, timeout, max_output)
        return result


async def spawned(
    spawn: Callable[..., Any], argv: Sequence[str], cwd: str | os.PathLike[str], env: Mapping[str, str],
    timeout: float, max_output: int | None,
) -> tuple[ExecResult, Any]:
    """Run `spawn(argv, cwd, env, timeout, done, max_output)` to its result, killing the command if the caller is
    cancelled; returns the result and what `spawn` returned (the in-process and the helper spawners share this)."""
    future: asyncio.Future[ExecResult] = asyncio.get_running_loop().create_future()

    def done(result: ExecResult) -> None:
        if not future.done():
            future.set_result(result)

    started = spawn(argv, cwd, env, timeout, done, max_output)
    try:
        return await future, started
    finally:
        started.kill()


def default_spawner() -> ProbeSpawner | None:
    """A spawner when the platform supports one, else None (callers then use asyncio subprocesses)."""
    return ProbeSpawner() if available() else None


__all__ = ["PROBE_MARK", "Leftovers", "ProbeSpawner", "Running", "available", "capped_output", "default_spawner",
           "encode_env", "kill_marked", "output_file"]
