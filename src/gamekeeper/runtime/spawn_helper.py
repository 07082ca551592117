"""Probe spawning in a helper process, off the controller's thread and descriptor table.

`HelperSpawner` has `ProbeSpawner`'s interface (`spawn`, `run`, `close`): the prober does not know which one it
has. It starts a small helper, `python -m gamekeeper.runtime.spawn_helper <fd> <parent pid>`, with `close_fds`
(its descriptor table is its socket and what Python itself opens) in its own session, and sends it the
commands over a socketpair; the helper starts them with runtime/spawn.py's `ProbeSpawner` (posix_spawn, memory
files sealed at a cap, pidfds on one epoll, group kill at the timeout, the `GK_PROBE` mark and the leftovers
sweep) and sends back exit status and capped output. The controller's per-probe work is encoding one short
message and decoding one; the spawn, the reaping and the /proc sweeps cost the helper.

Framing: every frame is `<u32 body length><u8 kind>` and a body. Controller to helper:

- ENV `<u32 id>` then `NAME=value` items joined by NUL: an environment shared by many probes (the prober's
  per-set `env_base`), sent once per helper and referenced by id; FORGET drops them all (the cache is bounded);
- RUN `<u32 request><u32 env id, 0: none><f64 timeout><u32 output cap><u16 argc>` then cwd, argv and the
  per-probe `NAME=value` overrides, joined by NUL (none of them can hold a NUL: rejected before sending);
- KILL `<u32 request>`.

Helper to controller: READY `<u32 pid>` once started; DONE `<u32 request><i32 exit code><u8 timed out><u32
stdout length>` then stdout and stderr; FAIL `<u32 request><i32 errno><u8 1: ValueError>` then the message,
when the command could not start, then `str(error)`, its strerror and filename joined by NUL.

Supervision: the helper exits when its socket reaches EOF (the controller closed it, or died) and its parent's
death also sends it SIGTERM (`PR_SET_PDEATHSIG`); either way it kills its running probes and sweeps their
leftovers first. When the helper dies, the controller kills what its probes left (they carry its `GK_PROBE` mark), every
probe it was running completes at once as a failure saying so, and
a new helper starts after a back-off (0.05 s doubling to 5 s, reset once a helper has lived 30 s); probes
submitted meanwhile wait for it. When no helper can be started (the executable fails, or three in a row die
before they are ready) the spawner runs probes in-process with a `ProbeSpawner`, as it does when `GK_SPAWN=inline`.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import itertools
import logging
import os
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any

from gamekeeper.ports.runtime import ExecResult
from gamekeeper.runtime.spawn import Done, ProbeSpawner, Running, available, encode_env, kill_marked, spawned

log = logging.getLogger(__name__)

_HEAD = struct.Struct("<IB")
_ENV, _FORGET, _RUN, _KILL = 1, 2, 3, 4
_READY, _DONE, _FAIL = 10, 11, 12
_U32 = struct.Struct("<I")
_RUN_HEAD = struct.Struct("<IIdIH")
_DONE_HEAD = struct.Struct("<IiBI")
_FAIL_HEAD = struct.Struct("<IiB")
_CACHE = 256  # environments and argvs remembered per helper

# Back-off between helper starts after a death, and how long a helper must live to reset it.
BACKOFF_FIRST = 0.05
BACKOFF_MAX = 5.0
BACKOFF_RESET = 30.0
# Helpers dying before they are ready, in a row, after which probes run in-process.
START_FAILURES = 3


def _frame(kind: int, body: bytes) -> bytes:
    return _HEAD.pack(len(body), kind) + body


def _frames(buffer: bytearray) -> list[tuple[int, bytes]]:
    """The complete frames at the start of `buffer`, removed from it."""
    out = []
    at, size = 0, len(buffer)
    head = _HEAD.size
    while size - at >= head:
        length, kind = _HEAD.unpack_from(buffer, at)
        if size - at - head < length:
            break
        out.append((kind, bytes(buffer[at + head : at + head + length])))
        at += head + length
    if at:
        del buffer[:at]
    return out


def _encode(text: str, what: str) -> bytes:
    data = os.fsencode(text)
    if b"\0" in data:
        raise ValueError(f"embedded null byte in {what}")
    return data


def default_helpers() -> int:
    """One helper per core (GK_SPAWN_HELPERS overrides).

    Measured on 2 cores (bench.prober_throughput, `echo`): 2 helpers ran 0.85-1.7 × the bare C loop's rate where
    1 ran 0.59-0.90, in the same runs: two helpers spawn on both cores while the controller's share is small.
    """
    chosen = os.environ.get("GK_SPAWN_HELPERS", "")
    if chosen.isdigit() and int(chosen) > 0:
        return int(chosen)
    return os.cpu_count() or 1


def _describe(code: int | None) -> str:
    if code is None:
        return "an unknown status"
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"signal {signal.Signals(-code).name}"
        return f"signal {-code}"
    return f"exit code {code}"


# -- the controller side -------------------------------------------------------------------------------------


class _Call:
    """One probe submitted to a helper; `kill()` ends it early (its result still comes through `done`)."""

    __slots__ = ("argv", "base", "cwd", "done", "env", "error", "finished", "helper", "limit", "request",
                 "sent", "timeout")

    def __init__(self, argv: Sequence[str], cwd: str, env: Mapping[str, str], timeout: float, done: Done,
                 limit: int, base: Mapping[str, str] | None) -> None:
        self.argv = argv
        self.cwd = cwd
        self.env = env
        self.timeout = timeout
        self.done = done
        self.limit = limit
        self.base = base
        self.request = 0
        self.sent = False
        self.finished = False
        self.helper: _Helper | None = None
        self.error: BaseException | None = None

    def kill(self) -> None:
        if self.finished or self.helper is None:
            return
        self.helper.kill(self)

    def finish(self, result: ExecResult) -> None:
        if not self.finished:
            self.finished = True
            self.done(result)


class _Helper:
    """One helper process and its socket, restarted when it dies."""

    def __init__(self, owner: HelperSpawner, loop: asyncio.AbstractEventLoop) -> None:
        self.owner = owner
        self.loop = loop
        self.proc: subprocess.Popen[bytes] | None = None
        self.sock: socket.socket | None = None
        self.ready = False
        self.started_at = 0.0
        self.failures = 0  # deaths before READY, in a row
        self.backoff = BACKOFF_FIRST
        self.restart: asyncio.TimerHandle | None = None
        self.inflight: dict[int, _Call] = {}  # sent to the current helper
        self.waiting: list[_Call] = []  # submitted while no helper runs
        self.requests = itertools.count(1)
        self.env_ids = itertools.count(1)
        self.envs: dict[int, tuple[Mapping[str, str], int]] = {}  # id(env_base) -> (env_base, its id)
        self.argvs: dict[int, tuple[Sequence[str], bytes]] = {}
        self.cwds: dict[str, bytes] = {}
        self.out = bytearray()
        self.inbuf = bytearray()
        self.flushing = False
        self.writing = False
        self.closed = False

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def load(self) -> int:
        return len(self.inflight) + len(self.waiting)

    # -- the process -----------------------------------------------------------------------------------------

    def start(self) -> None:
        """Start a helper; OSError when it cannot be started at all."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self.proc = subprocess.Popen(
                [*self.owner.command, str(theirs.fileno()), str(os.getpid())],
                pass_fds=(theirs.fileno(),), close_fds=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                cwd="/", start_new_session=True,  # a terminal's ^C goes to the controller, which then closes
            )
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        ours.setblocking(False)
        self.sock = ours
        self.ready = False
        self.started_at = time.monotonic()
        # A new helper knows no environments.
        self.envs.clear()
        self.out.clear()
        self.inbuf.clear()
        self.loop.add_reader(ours.fileno(), self._readable)
        waiting, self.waiting = self.waiting, []
        for call in waiting:
            if not call.finished:
                self._send(call)

    def _restart(self) -> None:
        self.restart = None
        if self.closed:
            return
        try:
            self.start()
        except OSError as err:
            log.warning("probe helper could not start (%s): probes run in-process", err)
            self.owner._fall_back(self)

    def _died(self) -> None:
        sock, proc = self.sock, self.proc
        self.sock = None
        if sock is not None:
            with contextlib.suppress(Exception):
                self.loop.remove_reader(sock.fileno())
            sock.close()
        code = None
        if proc is not None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()  # closed its socket but still there: it is of no use
            # A helper killed outright could not kill its probes: they carry its mark (Leftovers' scope begins
            # with the pid of the process that ran them). Before reaping it, so that pid is not reused yet.
            kill_marked(f"{proc.pid}-")
            with contextlib.suppress(subprocess.TimeoutExpired):
                code = proc.wait(5)
        message = (f"probe helper (pid {proc.pid if proc else '?'}) ended with {_describe(code)} "
                   "while the probe ran").encode()
        log.warning("%s", message.decode())
        lived = time.monotonic() - self.started_at
        if self.ready:
            self.failures = 0
            if lived >= BACKOFF_RESET:
                self.backoff = BACKOFF_FIRST
        else:
            self.failures += 1
        inflight, self.inflight = self.inflight, {}
        self.owner.helper_deaths += 1
        if not self.ready:
            # READY is the first thing a helper sends, before it reads any request: none of these started.
            for call in inflight.values():
                call.sent = False
            self.waiting[:0] = inflight.values()
            inflight = {}
        # Mark the helper down before the callbacks: a callback that submits the next probe finds it waiting.
        if self.failures >= START_FAILURES:
            log.warning("probe helper died %d times before it was ready: probes run in-process", self.failures)
            self.owner._fall_back(self)
        else:
            self.restart = self.loop.call_later(self.backoff, self._restart)
            self.backoff = min(self.backoff * 2, BACKOFF_MAX)
        for call in inflight.values():
            call.finish(ExecResult(1, b"", message))

    def close(self) -> None:
        """Stop the helper: it kills what it still runs. Probes in flight get no result (as ProbeSpawner.close)."""
        self.closed = True
        if self.restart is not None:
            self.restart.cancel()
            self.restart = None
        sock, proc = self.sock, self.proc
        self.sock = None
        if sock is not None:
            with contextlib.suppress(Exception):
                self.loop.remove_reader(sock.fileno())
            if self.writing:
                with contextlib.suppress(Exception):
                    self.loop.remove_writer(sock.fileno())
            sock.close()  # EOF: the helper kills its probes and exits
        if proc is not None:
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for call in self.inflight.values():
            call.finished = True
        self.inflight.clear()
        self.waiting.clear()

    # -- sending ---------------------------------------------------------------------------------------------

    def submit(self, call: _Call) -> None:
        """Send `call` (or keep it until a helper runs); ValueError, before anything is kept, for what cannot
        be passed to exec."""
        call.request = next(self.requests) & 0xFFFFFFFF
        if self.sock is None:
            self.encode(call)  # only to refuse it now: the next helper gets its own encoding
            self.waiting.append(call)
        else:
            self._send(call)
        call.helper = self

    def _encoded_base(self, base: Mapping[str, str]) -> int:
        entry = self.envs.get(id(base))
        if entry is not None and entry[0] is base:
            return entry[1]
        if len(self.envs) >= _CACHE:
            self.envs.clear()
            self.out += _frame(_FORGET, b"")
        items = b"\0".join(encode_env(base))
        env_id = next(self.env_ids) & 0xFFFFFFFF
        self.envs[id(base)] = (base, env_id)
        self.out += _frame(_ENV, _U32.pack(env_id) + items)
        return env_id

    def encode(self, call: _Call) -> bytes:
        """The RUN frame's body of `call`; ValueError for what cannot be passed to exec (as ProbeSpawner)."""
        argv = call.argv
        cached = self.argvs.get(id(argv))
        if cached is None or cached[0] is not argv:
            block = b"\0".join([_encode(a, "argv") for a in argv])
            if isinstance(argv, tuple):  # immutable: safe to remember by identity
                if len(self.argvs) >= _CACHE:
                    self.argvs.clear()
                self.argvs[id(argv)] = (argv, block)
        else:
            block = cached[1]
        cwd = self.cwds.get(call.cwd)
        if cwd is None:
            cwd = _encode(call.cwd, "cwd")
            if len(self.cwds) >= 4 * _CACHE:
                self.cwds.clear()
            self.cwds[call.cwd] = cwd
        fields = [cwd, block]
        if call.env:
            fields.extend(encode_env(call.env))
        env_id = self._encoded_base(call.base) if call.base is not None else 0
        return _RUN_HEAD.pack(call.request, env_id, call.timeout, call.limit, len(argv)) + b"\0".join(fields)

    def _send(self, call: _Call) -> None:
        body = self.encode(call)
        call.sent = True
        self.inflight[call.request] = call
        self.out += _frame(_RUN, body)
        self._schedule()

    def kill(self, call: _Call) -> None:
        if call.sent:
            if self.sock is not None and call.request in self.inflight:
                self.out += _frame(_KILL, _U32.pack(call.request))
                self._schedule()
            return
        # Not started yet (no helper running): it ends here.
        with contextlib.suppress(ValueError):
            self.waiting.remove(call)
        self.loop.call_soon(call.finish, ExecResult(-9, b"", b"killed before it started"))

    def _schedule(self) -> None:
        # One send per turn of the event loop for everything submitted in it.
        if not self.flushing and not self.writing:
            self.flushing = True
            self.loop.call_soon(self._flush)

    def _flush(self) -> None:
        self.flushing = False
        sock = self.sock
        if sock is None or not self.out:
            return
        try:
            sent = sock.send(self.out)
        except BlockingIOError:
            sent = 0
        except OSError:
            return  # the reader sees the EOF and handles the death
        del self.out[:sent]
        if self.out and not self.writing:
            self.writing = True
            self.loop.add_writer(sock.fileno(), self._writable)

    def _writable(self) -> None:
        self._flush()
        if not self.out and self.writing and self.sock is not None:
            self.writing = False
            self.loop.remove_writer(self.sock.fileno())

    # -- receiving -------------------------------------------------------------------------------------------

    def _readable(self) -> None:
        sock = self.sock
        if sock is None:
            return
        try:
            data = sock.recv(1 << 18)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            if self.writing:
                self.writing = False
                with contextlib.suppress(Exception):
                    self.loop.remove_writer(sock.fileno())
            self._died()
            return
        self.inbuf += data
        inflight = self.inflight
        for kind, body in _frames(self.inbuf):
            if kind == _DONE:
                request, code, timed_out, n = _DONE_HEAD.unpack_from(body)
                call = inflight.pop(request, None)
                if call is not None:
                    at = _DONE_HEAD.size
                    call.finish(ExecResult(code, body[at : at + n], body[at + n :], timed_out=bool(timed_out)))
            elif kind == _FAIL:
                request, number, value_error = _FAIL_HEAD.unpack_from(body)
                call = inflight.pop(request, None)
                if call is not None:
                    text, strerror, filename = body[_FAIL_HEAD.size :].decode(errors="replace").split("\0")
                    # OSError(errno, …) makes the subclass of that errno (FileNotFoundError…), as raised there.
                    call.error = (ValueError(text) if value_error else
                                  OSError(number, strerror, filename) if filename else OSError(number, strerror))
                    call.finish(ExecResult(1, b"", f"probe could not start: {text}".encode()))
            elif kind == _READY:
                self.ready = True
                self.failures = 0


class HelperSpawner:
    """`ProbeSpawner`'s interface, the commands started by helper processes (see the module's docstring)."""

    def __init__(self, max_output: int = 1 << 20, helpers: int | None = None,
                 command: Sequence[str] | None = None) -> None:
        self.max_output = max_output
        self.count = helpers if helpers is not None else default_helpers()
        self.command = list(command) if command is not None else [sys.executable, "-m", __name__]
        self._loop: asyncio.AbstractEventLoop | None = None
        self.helpers: list[_Helper] = []
        self.inline: ProbeSpawner | None = None  # the fallback, once no helper can run
        self.started = 0
        self.helper_deaths = 0

    @property
    def backend(self) -> str:
        if self.inline is not None:
            return f"inline {self.inline.backend} (helper unavailable)"
        return f"helper ×{self.count}"

    def _bind(self) -> asyncio.AbstractEventLoop:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            return loop
        loop = asyncio.get_running_loop()
        self.close()
        self._loop = loop
        if self.inline is None:
            try:
                for _ in range(self.count):
                    helper = _Helper(self, loop)
                    helper.start()
                    self.helpers.append(helper)
            except OSError as err:
                log.warning("probe helper could not start (%s): probes run in-process", err)
                self._fall_back(None)
        return loop

    def _fall_back(self, dead: _Helper | None) -> None:
        """Run every probe in-process from now on; those waiting for a helper start now."""
        if self.inline is None:
            self.inline = ProbeSpawner(self.max_output)
        waiting: list[_Call] = []
        for helper in self.helpers:
            if helper is dead or helper.sock is None:
                waiting.extend(helper.waiting)
                helper.waiting = []
        for call in waiting:
            if not call.finished:
                self._inline(call)

    def _inline(self, call: _Call) -> None:
        assert self.inline is not None
        call.helper = None
        try:
            self.inline.spawn(call.argv, call.cwd, call.env, call.timeout, call.finish, call.limit, call.base)
        except (OSError, ValueError) as err:
            call.error = err
            assert self._loop is not None
            self._loop.call_soon(call.finish, ExecResult(1, b"", f"probe could not start: {err}".encode()))

    def spawn(
        self,
        argv: Sequence[str],
        cwd: str | os.PathLike[str],
        env: Mapping[str, str],
        timeout: float,
        done: Done,
        max_output: int | None = None,
        env_base: Mapping[str, str] | None = None,
    ) -> _Call | Running:
        """As `ProbeSpawner.spawn`, except that a command that cannot start reports it through `done`
        (exit code 1, "probe could not start: …", the prober's own wording) rather than by raising OSError."""
        if not argv:
            raise ValueError("empty command")
        self._bind()
        limit = self.max_output if max_output is None else max_output
        if self.inline is not None:
            return self.inline.spawn(argv, cwd, env, timeout, done, limit, env_base)
        call = _Call(argv, os.path.abspath(cwd), env, timeout, done, limit, env_base)
        helpers = self.helpers
        helper = helpers[0] if len(helpers) == 1 else min(helpers, key=_Helper.load)
        helper.submit(call)
        self.started += 1
        return call

    def close(self) -> None:
        """Stop the helpers (they kill what they still run) and the in-process fallback."""
        for helper in self.helpers:
            helper.close()
        self.helpers.clear()
        if self.inline is not None:
            self.inline.close()
        self._loop = None

    async def run(
        self, argv: Sequence[str], cwd: str | os.PathLike[str], env: Mapping[str, str], timeout: float,
        max_output: int | None = None,
    ) -> ExecResult:
        """`spawn` as a coroutine; raises OSError as `ProbeSpawner.run` does; cancelling it kills the command."""
        result, started = await spawned(self.spawn, argv, cwd, env, timeout, max_output)
        if isinstance(started, _Call) and started.error is not None:
            raise started.error
        return result


def probe_spawner() -> HelperSpawner | ProbeSpawner | None:
    """The spawner GK_SPAWN chooses: `helper` (the default) or `inline`; None where the platform has none."""
    if not available():
        return None
    if os.environ.get("GK_SPAWN", "helper") == "inline":
        return ProbeSpawner()
    return HelperSpawner()


# -- the helper side -----------------------------------------------------------------------------------------


class _Server:
    """The helper's loop: commands in, results out."""

    def __init__(self, sock: socket.socket, loop: asyncio.AbstractEventLoop) -> None:
        self.sock = sock
        self.loop = loop
        self.spawner = ProbeSpawner()
        self.envs: dict[int, dict[str, str]] = {}
        self.argvs: dict[tuple[bytes, ...], tuple[str, ...]] = {}
        self.running: dict[int, Running] = {}
        self.inbuf = bytearray()
        self.out = bytearray()
        self.flushing = False
        self.writing = False
        self.stopped = loop.create_future()

    def start(self) -> None:
        self.sock.setblocking(False)
        self.loop.add_reader(self.sock.fileno(), self._readable)
        self.out += _frame(_READY, _U32.pack(os.getpid()))
        self._schedule()

    def stop(self) -> None:
        if self.stopped.done():
            return
        with contextlib.suppress(Exception):
            self.loop.remove_reader(self.sock.fileno())
        self.spawner.close()  # kills the running probes and sweeps their leftovers
        self.running.clear()
        self.stopped.set_result(None)

    def _readable(self) -> None:
        try:
            data = self.sock.recv(1 << 18)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self.stop()
            return
        self.inbuf += data
        for kind, body in _frames(self.inbuf):
            if kind == _RUN:
                self._run(body)
            elif kind == _KILL:
                running = self.running.get(_U32.unpack_from(body)[0])
                if running is not None:
                    running.kill()
            elif kind == _ENV:
                env: dict[str, str] = {}
                if len(body) > 4:
                    for item in body[4:].split(b"\0"):
                        key, _, value = os.fsdecode(item).partition("=")
                        env[key] = value
                self.envs[_U32.unpack_from(body)[0]] = env
            elif kind == _FORGET:
                self.envs.clear()

    def _run(self, body: bytes) -> None:
        request, env_id, timeout, limit, argc = _RUN_HEAD.unpack_from(body)
        fields = body[_RUN_HEAD.size :].split(b"\0")
        key = tuple(fields[1 : 1 + argc])
        argv = self.argvs.get(key)
        if argv is None:
            if len(self.argvs) >= _CACHE:
                self.argvs.clear()
            # The same tuple object every time, so the spawner's encoding of it is reused.
            argv = self.argvs[key] = tuple(os.fsdecode(a) for a in key)
        overrides: dict[str, str] = {}
        for item in fields[1 + argc :]:
            name, _, value = os.fsdecode(item).partition("=")
            overrides[name] = value
        base = self.envs.get(env_id) if env_id else None
        try:
            self.running[request] = self.spawner.spawn(
                argv, os.fsdecode(fields[0]), overrides, timeout,
                lambda result, request=request: self._done(request, result), limit, base)  # type: ignore[misc]
        except (OSError, ValueError) as err:
            number = getattr(err, "errno", 0) or 0
            strerror = getattr(err, "strerror", None) or str(err)
            filename = getattr(err, "filename", None) or ""
            text = "\0".join(str(part).replace("\0", " ") for part in (err, strerror, filename))
            self.out += _frame(_FAIL, _FAIL_HEAD.pack(request, number, isinstance(err, ValueError)) + text.encode())
            self._schedule()

    def _done(self, request: int, result: ExecResult) -> None:
        self.running.pop(request, None)
        self.out += _frame(_DONE, _DONE_HEAD.pack(request, result.exit_code, result.timed_out, len(result.stdout))
                           + result.stdout + result.stderr)
        self._schedule()

    def _schedule(self) -> None:
        if not self.flushing and not self.writing:
            self.flushing = True
            self.loop.call_soon(self._flush)

    def _flush(self) -> None:
        self.flushing = False
        if not self.out or self.stopped.done():
            return
        try:
            sent = self.sock.send(self.out)
        except BlockingIOError:
            sent = 0
        except OSError:
            self.stop()
            return
        del self.out[:sent]
        if self.out and not self.writing:
            self.writing = True
            self.loop.add_writer(self.sock.fileno(), self._writable)

    def _writable(self) -> None:
        self._flush()
        if (not self.out or self.stopped.done()) and self.writing:
            self.writing = False
            with contextlib.suppress(Exception):
                self.loop.remove_writer(self.sock.fileno())


def _die_with_parent(parent: int) -> None:
    """SIGTERM when the parent dies (Linux), and exit now if it already has."""
    with contextlib.suppress(OSError, AttributeError):
        libc: Any = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:
        sys.exit(0)


async def serve(fd: int) -> None:
    loop = asyncio.get_running_loop()
    server = _Server(socket.socket(fileno=fd), loop)
    loop.add_signal_handler(signal.SIGTERM, server.stop)
    server.start()
    await server.stopped
    server.sock.close()


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 2 or not all(a.isdigit() for a in args):
        print("usage: python -m gamekeeper.runtime.spawn_helper <socket fd> <parent pid>", file=sys.stderr)
        return 2
    _die_with_parent(int(args[1]))
    asyncio.run(serve(int(args[0])))
    return 0


__all__ = ["HelperSpawner", "default_helpers", "main", "probe_spawner", "serve"]


if __name__ == "__main__":
    sys.exit(main())
