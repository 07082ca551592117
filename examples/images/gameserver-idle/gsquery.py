#!/usr/bin/env python3
"""Ask the local game server for its STATUS (used by idle.sh and player.sh).

usage: gsquery.py has-players | online NAME | list | count

Exit codes: 0 = yes / ok, 1 = no, 3 = server unreachable or bad reply
(a message goes to stderr).  `has-players` and `online` print nothing.
"""

import os
import socket
import sys

BASE = os.path.dirname(os.path.abspath(__file__))
CONNECT_TIMEOUT = 0.5
READ_TIMEOUT = 0.8


class QueryError(Exception):
    pass


def status():
    """Return the list of online player names."""
    try:
        with open(os.path.join(BASE, "server.port")) as f:
            port = int(f.read().strip())
    except FileNotFoundError:
        raise QueryError("game server is not running (no ./server.port)") from None
    except (OSError, ValueError) as e:
        raise QueryError(f"cannot read ./server.port: {e}") from e
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=CONNECT_TIMEOUT) as s:
            s.settimeout(READ_TIMEOUT)
            s.sendall(b"STATUS\n")
            data = b""
            while not data.endswith(b"\n") and len(data) < 1 << 20:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
    except OSError as e:
        raise QueryError(f"cannot query game server on 127.0.0.1:{port}: {e}") from e
    parts = data.decode("utf-8", "replace").split()
    try:
        if len(parts) not in (2, 3) or parts[0] != "PLAYERS":
            raise ValueError
        n = int(parts[1])
        names = parts[2].split(",") if len(parts) == 3 else []
        if n != len(names):
            raise ValueError
    except ValueError:
        raise QueryError(f"unexpected STATUS reply: {data!r}") from None
    return names


def main(argv):
    usage = "usage: gsquery.py has-players | online NAME | list | count"
    if (
        not argv
        or argv[0] not in ("has-players", "online", "list", "count")
        or (argv[0] == "online") != (len(argv) == 2)
        or len(argv) > 2
    ):
        print(usage, file=sys.stderr)
        return 2
    try:
        names = status()
    except QueryError as e:
        print(f"gsquery: {e}", file=sys.stderr)
        return 3
    cmd = argv[0]
    if cmd == "has-players":
        return 0 if names else 1
    if cmd == "online":
        return 0 if argv[1] in names else 1
    if cmd == "count":
        print(len(names))
        return 0
    for n in names:
        print(n)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
