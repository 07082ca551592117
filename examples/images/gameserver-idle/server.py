#!/usr/bin/env python3
"""Tiny line-based TCP game server (Gamekeeper demo image, Python stdlib only).

Protocol (one command per line, UTF-8, "\\n"-terminated):

  JOIN <name>   -> "OK <name>"; the connection now *is* that player until the
                   client disconnects or sends "LEAVE" (answered with "BYE").
                   While joined, "PING" -> "PONG" and "STATUS" -> status line.
                   Errors: "ERR bad-name", "ERR name-taken".
  STATUS        -> "PLAYERS <n> <name1,name2,...>" and the server closes the
                   connection (with no players the line is just "PLAYERS 0").
  anything else -> "ERR unknown-command" and close.

Names: [A-Za-z0-9_][A-Za-z0-9_.-]{0,63}.

Listens on 127.0.0.1, port $GAME_PORT (default 0 = ephemeral).  Once listening
the bound port is written atomically to ./server.port (the directory holding
this file).  SIGTERM/SIGINT -> disconnect everyone, remove ./server.port, exit 0.
"""

import asyncio
import contextlib
import os
import re
import signal
import sys
import time

HOST = "127.0.0.1"
BASE = os.path.dirname(os.path.abspath(__file__))
PORT_FILE = "server.port"
NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$")
FIRST_LINE_TIMEOUT = 10.0  # seconds a fresh connection may stay silent


def log(msg):
    ts = time.strftime("%Y-%m-%dT%H:%M:%S")
    pod = os.environ.get("POD_NAME") or "gameserver"
    print(f"{ts} [{pod}] {msg}", flush=True)


def write_atomic(path, text):
    tmp = f"{path}.tmp.{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def remove_if_contains(path, text):
    """Remove `path` only if it still holds `text` (i.e. it is still ours)."""
    try:
        with open(path) as f:
            if f.read().strip() != str(text).strip():
                return
        os.unlink(path)
    except OSError:
        pass


class GameServer:
    def __init__(self, host=HOST, port=0, port_file=PORT_FILE):
        self.host = host
        self.port = port
        self.port_file = port_file
        self.bound_port = None
        self.players = {}  # name -> StreamWriter, in join order
        self._server = None
        self._writers = set()
        self._tasks = set()

    # -- lifecycle ---------------------------------------------------------
    async def start(self):
        self._server = await asyncio.start_server(self._handle, self.host, self.port)
        self.bound_port = self._server.sockets[0].getsockname()[1]
        write_atomic(self.port_file, f"{self.bound_port}\n")
        log(f"game server started, listening on {self.host}:{self.bound_port} (pid {os.getpid()}, online=0)")

    async def stop(self):
        if self._server is None:
            return
        self._server.close()
        remove_if_contains(self.port_file, self.bound_port)
        for w in list(self._writers):
            w.close()
        pending = [t for t in self._tasks if not t.done()]
        if pending:
            await asyncio.wait(pending, timeout=3)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._server.wait_closed(), 3)
        log(f"game server stopped (online={len(self.players)})")

    # -- protocol ----------------------------------------------------------
    def status_line(self):
        names = ",".join(self.players)
        line = f"PLAYERS {len(self.players)}"
        if names:
            line += f" {names}"
        return (line + "\n").encode()

    async def _send(self, writer, data):
        writer.write(data)
        await writer.drain()

    async def _handle(self, reader, writer):
        task = asyncio.current_task()
        self._tasks.add(task)
        self._writers.add(writer)
        name = None
        try:
            try:
                line = await asyncio.wait_for(reader.readline(), FIRST_LINE_TIMEOUT)
            except TimeoutError:
                return
            parts = line.decode("utf-8", "replace").split()
            if not parts:
                return
            cmd = parts[0].upper()
            if cmd == "STATUS":
                await self._send(writer, self.status_line())
                return
            if cmd != "JOIN":
                await self._send(writer, b"ERR unknown-command\n")
                return
            if len(parts) != 2 or not NAME_RE.match(parts[1]):
                await self._send(writer, b"ERR bad-name\n")
                return
            if parts[1] in self.players:
                await self._send(writer, b"ERR name-taken\n")
                return
            name = parts[1]
            self.players[name] = writer
            log(f"player {name} joined (online={len(self.players)})")
            await self._send(writer, f"OK {name}\n".encode())
            while True:
                line = await reader.readline()
                if not line:
                    break
                c = line.strip().upper()
                if c == b"LEAVE":
                    await self._send(writer, b"BYE\n")
                    break
                elif c == b"PING":
                    await self._send(writer, b"PONG\n")
                elif c == b"STATUS":
                    await self._send(writer, self.status_line())
                elif c:
                    await self._send(writer, b"ERR unknown-command\n")
        except Exception:  # connection reset, over-long line, ... -> just drop it
            pass
        finally:
            if name is not None and self.players.get(name) is writer:
                del self.players[name]
                log(f"player {name} left (online={len(self.players)})")
            self._writers.discard(writer)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
            self._tasks.discard(task)


def game_port():
    raw = os.environ.get("GAME_PORT", "").strip()
    if not raw:
        return 0
    try:
        port = int(raw)
        if not 0 <= port <= 65535:
            raise ValueError
    except ValueError:
        log(f"invalid GAME_PORT={raw!r}")
        sys.exit(2)
    return port


async def amain():
    gs = GameServer(port=game_port())
    try:
        await gs.start()
    except OSError as e:
        log(f"cannot listen on {HOST}:{gs.port}: {e}")
        return 1
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log("shutdown requested (SIGTERM/SIGINT)")
    await gs.stop()
    return 0


def main():
    os.chdir(BASE)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    sys.exit(asyncio.run(amain()))


if __name__ == "__main__":
    main()
