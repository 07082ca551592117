# lib.sh - shared helpers for healthy.sh / fault.sh / recover.sh (sourced, not run).
# Callers must cd to the image directory first.

HELPER_MARKER=gk-demo-helper   # a whole argv element of every helper process

now_ms() { echo $(( $(date +%s%N) / 1000000 )); }

# proc_alive PID: process exists and is not a zombie.
proc_alive() {
    local stat
    [[ ${1:-} =~ ^[0-9]+$ ]] || return 1
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    stat=${stat##*) }
    [[ -n $stat && ${stat:0:1} != Z && ${stat:0:1} != X ]]
}

# same_cwd PID: the process runs in this image copy (pid-reuse guard).
same_cwd() {
    [[ "$(readlink "/proc/$1/cwd" 2>/dev/null)" == "$(pwd -P)" ]]
}

# helper_pid: print the pid of the live helper of this copy, else return 1.
helper_pid() {
    local pid
    [[ -f helper.pid ]] || return 1
    pid=$(<helper.pid) || return 1
    proc_alive "$pid" || return 1
    tr '\0' '\n' <"/proc/$pid/cmdline" 2>/dev/null | grep -qxF -- "$HELPER_MARKER" || return 1
    same_cwd "$pid" || return 1
    echo "$pid"
}

# main_pid: print the pid of the live game server (main.py) of this copy.
main_pid() {
    local pid
    [[ -f server.pid ]] || return 1
    pid=$(<server.pid) || return 1
    proc_alive "$pid" || return 1
    tr '\0' '\n' <"/proc/$pid/cmdline" 2>/dev/null | grep -q 'main\.py$' || return 1
    same_cwd "$pid" || return 1
    echo "$pid"
}
