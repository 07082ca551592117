#!/usr/bin/env bash
# recover.sh - start a new helper sub-process (after fault.sh) and wait until
# healthy.sh would pass again.  The new helper runs in its own session (it
# survives this script) and exits when the game server exits.  Idempotent: if
# a helper is already running it says so and exits 0.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
source ./lib.sh

if pid=$(helper_pid); then
    echo "helper already running (pid $pid); nothing to do"
    exit 0
fi
if ! main=$(main_pid); then
    echo "recover.sh: game server (main.py) is not running here; cannot start a helper" >&2
    exit 1
fi
python3 ./helper.py "$HELPER_MARKER" --detach --watch "$main" </dev/null >>helper.log 2>&1 &
deadline=$(( $(now_ms) + 5000 ))
until pid=$(helper_pid); do
    if (( $(now_ms) >= deadline )); then
        echo "recover.sh: helper did not come up within 5s (see $PWD/helper.log)" >&2
        exit 1
    fi
    sleep 0.05
done
echo "recovered: started helper pid $pid"
