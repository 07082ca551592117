#!/usr/bin/env bash
# fault.sh [SIGNAL] - inject a fault: kill the helper sub-process (default
# SIGKILL, i.e. a crash) and wait until it is gone.  The game server itself
# keeps running, so healthy.sh starts failing.  Idempotent: if no helper is
# running it says so and exits 0.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
source ./lib.sh

sig=${1:-KILL}
sig=${sig#SIG}
if ! pid=$(helper_pid); then
    echo "no helper running; nothing to kill"
    exit 0
fi
kill -s "$sig" "$pid" 2>/dev/null || true
deadline=$(( $(now_ms) + 5000 ))
while proc_alive "$pid"; do
    if (( $(now_ms) >= deadline )); then
        echo "fault.sh: helper pid $pid still alive 5s after SIG$sig" >&2
        exit 1
    fi
    sleep 0.05
done
echo "fault injected: killed helper pid $pid with SIG$sig"
