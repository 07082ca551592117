#!/usr/bin/env python3
"""Detached demo player: connect, JOIN <name>, hold the connection.

usage: player_client.py --port PORT --pidfile FILE --name NAME

Started in the background by player.sh.  It puts itself in a new session
(so it survives its caller and the caller's process group), ignores SIGHUP,
writes its pid to FILE once the server has answered "OK", and stays online
until SIGTERM/SIGINT (sends LEAVE, exits 0) or until the server closes the
connection (exits 0).  Failures are logged as "ERROR: ..." lines (stderr,
which player.sh redirects to ./players/NAME.log) and exit 1.
"""

import argparse
import os
import signal
import socket
import sys
import time


class Stop(Exception):
    pass


def log(msg):
    print(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {msg}", file=sys.stderr, flush=True)


def detach():
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        os.setsid()
    except OSError:  # already a process-group leader: fork once more
        if os.fork() > 0:
            os._exit(0)
        os.setsid()


def write_atomic(path, text):
    tmp = f"{path}.tmp.{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def remove_if_ours(path):
    try:
        with open(path) as f:
            if f.read().strip() == str(os.getpid()):
                os.unlink(path)
    except OSError:
        pass


def on_signal(signum, frame):
    raise Stop()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--pidfile", required=True)
    ap.add_argument("--name", required=True)
    args = ap.parse_args()

    detach()
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    sock = None
    try:
        try:
            sock = socket.create_connection(("127.0.0.1", args.port), timeout=3)
            sock.settimeout(5)
            sock.sendall(f"JOIN {args.name}\n".encode())
            reply = b""
            while not reply.endswith(b"\n"):
                chunk = sock.recv(4096)
                if not chunk:
                    break
                reply += chunk
        except OSError as e:
            log(f"ERROR: {args.name}: cannot join 127.0.0.1:{args.port}: {e}")
            return 1
        text = reply.decode("utf-8", "replace").strip()
        if text != f"OK {args.name}":
            log(f"ERROR: {args.name}: server refused JOIN: {text or '(no reply)'}")
            return 1
        write_atomic(args.pidfile, f"{os.getpid()}\n")
        log(f"{args.name} online (pid {os.getpid()}, port {args.port})")
        sock.settimeout(None)
        while True:
            data = sock.recv(4096)
            if not data:
                log(f"{args.name}: server closed the connection")
                return 0
    except Stop:
        log(f"{args.name}: leaving")
        try:
            sock.settimeout(1)
            sock.sendall(b"LEAVE\n")
        except (OSError, AttributeError):
            pass
        return 0
    except OSError as e:
        log(f"{args.name}: connection lost: {e}")
        return 0
    finally:
        if sock is not None:
            sock.close()
        remove_if_ours(args.pidfile)


if __name__ == "__main__":
    sys.exit(main())
