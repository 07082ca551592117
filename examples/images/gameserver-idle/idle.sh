#!/usr/bin/env bash
# idle.sh - service-quality probe helper.
#
# Despite its name, this exits 0 IFF AT LEAST ONE PLAYER IS CONNECTED, so the
# probe `if ./idle.sh; then echo active; else echo idle; fi` prints "active"
# while somebody plays and "idle" otherwise.
#   exit 0  >= 1 player online
#   exit 1  no players online
#   exit 3  game server not running / not answering (diagnostic on stderr)
# Prints nothing to stdout.  Asks the server with STATUS over 127.0.0.1
# (0.5 s connect timeout, 0.8 s read timeout).
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")" || exit 3
exec python3 ./gsquery.py has-players
