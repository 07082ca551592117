#!/usr/bin/env bash
# healthy.sh - exit 0 iff the helper sub-process of this game server is alive.
# Prints nothing to stdout (diagnostics go to stderr).  Usable as the probe
#   ./healthy.sh && echo healthy || echo unhealthy
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
source ./lib.sh
if helper_pid >/dev/null; then
    exit 0
fi
echo "healthy.sh: helper is not running" >&2
exit 1
