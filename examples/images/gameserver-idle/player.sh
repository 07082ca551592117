#!/usr/bin/env bash
# player.sh - simulate players of the game server running in this directory.
#
#   player.sh join NAME    start a detached player client that JOINs as NAME;
#                          returns once STATUS lists NAME (timeout
#                          $PLAYER_TIMEOUT s, default 5 -> exit 1)
#   player.sh leave NAME   stop that client; returns once NAME is no longer
#                          listed (timeout -> exit 1)
#   player.sh list         print the online players, one per line
#
# NAME: [A-Za-z0-9_][A-Za-z0-9_.-]{0,63}.  Bad usage -> exit 2.
# join/leave are idempotent (already online / not online -> exit 0).
# Files: ./players/NAME.pid (client pid), ./players/NAME.log (client log).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

TIMEOUT="${PLAYER_TIMEOUT:-5}"
[[ $TIMEOUT =~ ^[0-9]+$ ]] || TIMEOUT=5

usage() {
    cat >&2 <<'USAGE'
usage: player.sh join NAME | leave NAME | list
  join NAME    connect a detached player NAME and wait until the server lists it
  leave NAME   disconnect player NAME and wait until the server no longer lists it
  list         print the online players, one per line
NAME must match [A-Za-z0-9_][A-Za-z0-9_.-]{0,63}
USAGE
    exit 2
}

die() { echo "player.sh: $*" >&2; exit 1; }

now_ms() { echo $(( $(date +%s%N) / 1000000 )); }

# proc_alive PID: process exists and is not a zombie.
proc_alive() {
    local stat
    [[ $1 =~ ^[0-9]+$ ]] || return 1
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    stat=${stat##*) }
    [[ -n $stat && ${stat:0:1} != Z && ${stat:0:1} != X ]]
}

# client_pid NAME: print the pid of our live player client for NAME (guards
# against stale pid files / pid reuse by checking the command line).
client_pid() {
    local pidfile="players/$1.pid" pid args
    [[ -f $pidfile ]] || return 1
    pid=$(<"$pidfile") || return 1
    proc_alive "$pid" || return 1
    args=$(tr '\0' '\n' <"/proc/$pid/cmdline" 2>/dev/null) || return 1
    grep -q 'player_client\.py$' <<<"$args" || return 1
    grep -qxF -- "$1" <<<"$args" || return 1
    echo "$pid"
}

online() { python3 ./gsquery.py online "$1" 2>/dev/null; }
count() { python3 ./gsquery.py count 2>/dev/null || echo "?"; }

cmd_join() {
    local name=$1 log="players/$1.log" port start deadline
    [[ -s server.port ]] || die "game server is not running (no ./server.port)"
    port=$(<server.port)
    if online "$name"; then
        echo "$name is already online ($(count) online)"
        return 0
    fi
    mkdir -p players
    touch "$log"
    start=$(wc -l <"$log")
    python3 ./player_client.py --port "$port" --pidfile "players/$name.pid" \
        --name "$name" </dev/null >>"$log" 2>&1 &
    deadline=$(( $(now_ms) + TIMEOUT * 1000 ))
    while :; do
        if online "$name" && client_pid "$name" >/dev/null; then
            echo "$name joined ($(count) online)"
            return 0
        fi
        if tail -n +"$((start + 1))" "$log" | grep -q 'ERROR'; then
            die "join $name failed: $(tail -n +"$((start + 1))" "$log" | grep 'ERROR' | tail -n 1)"
        fi
        (( $(now_ms) < deadline )) || break
        sleep 0.1
    done
    local pid
    if pid=$(client_pid "$name"); then kill -TERM "$pid" 2>/dev/null || true; fi
    die "timed out after ${TIMEOUT}s waiting for $name to show up in STATUS (see $PWD/$log)"
}

cmd_leave() {
    local name=$1 pid="" was_online=0 deadline
    online "$name" && was_online=1
    if pid=$(client_pid "$name"); then
        kill -TERM "$pid" 2>/dev/null || true
    else
        pid=""
    fi
    if [[ -z $pid && $was_online == 0 ]]; then
        rm -f "players/$name.pid"
        echo "$name is not online"
        return 0
    fi
    [[ -n $pid ]] || die "$name is online but was not started by player.sh here; cannot disconnect it"
    deadline=$(( $(now_ms) + TIMEOUT * 1000 ))
    while online "$name" || proc_alive "$pid"; do
        if (( $(now_ms) >= deadline )); then
            kill -KILL "$pid" 2>/dev/null || true
            die "timed out after ${TIMEOUT}s waiting for $name to leave"
        fi
        sleep 0.1
    done
    rm -f "players/$name.pid"
    echo "$name left ($(count) online)"
}

cmd_list() {
    local out
    if ! out=$(python3 ./gsquery.py list 2>&1); then
        die "${out#gsquery: }"
    fi
    [[ -z $out ]] || printf '%s\n' "$out"
}

valid_name() { [[ $1 =~ ^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$ ]]; }

case "${1:-}" in
    join|leave)
        [[ $# -eq 2 ]] || usage
        valid_name "$2" || { echo "player.sh: invalid player name: '$2'" >&2; usage; }
        "cmd_$1" "$2"
        ;;
    list)
        [[ $# -eq 1 ]] || usage
        cmd_list
        ;;
    *)
        usage
        ;;
esac
