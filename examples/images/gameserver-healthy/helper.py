#!/usr/bin/env python3
"""Helper sub-process of the demo game server (the thing healthy.sh checks).

usage: helper.py gk-demo-helper --watch MAIN_PID [--detach]

* writes its own pid atomically to ./helper.pid (the directory of this file)
  and removes it again on a clean exit (only if it still holds its pid);
* "works" by idling in a loop; exits 0 on SIGTERM/SIGINT;
* exits by itself as soon as MAIN_PID is gone (or a zombie), so it can never
  outlive the game server even if the server is SIGKILLed;
* --detach: start a new session first (used by recover.sh, whose helper must
  survive recover.sh and its caller's process group).
The literal argument "gk-demo-helper" is the marker healthy.sh/fault.sh use
to recognise a helper process (pid-reuse guard, together with its cwd).
"""

import argparse
import os
import signal
import sys
import time

BASE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, BASE)
sys.dont_write_bytecode = True  # keep the image directory clean

from procutil import HELPER_MARKER, proc_alive  # noqa: E402

PID_FILE = "helper.pid"


class Stop(Exception):
    pass


def on_signal(signum, frame):
    raise Stop()


def log(msg):
    pod = os.environ.get("POD_NAME") or "gameserver"
    print(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} [{pod}] helper: {msg}", flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("marker", choices=[HELPER_MARKER])
    ap.add_argument("--watch", type=int, required=True, help="pid of the game server")
    ap.add_argument("--detach", action="store_true")
    args = ap.parse_args()

    os.chdir(BASE)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    if args.detach:
        try:
            os.setsid()
        except OSError:  # already a process-group leader
            if os.fork() > 0:
                os._exit(0)
            os.setsid()
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    me = str(os.getpid())
    tmp = f"{PID_FILE}.tmp.{me}"
    with open(tmp, "w") as f:
        f.write(me + "\n")
    os.replace(tmp, PID_FILE)
    log(f"started (pid {me}, watching game server pid {args.watch})")
    rc = 0
    try:
        while True:
            if not proc_alive(args.watch):
                log(f"game server pid {args.watch} is gone; exiting")
                break
            time.sleep(0.2)
    except Stop:
        log("stopping (signal)")
    finally:
        try:
            with open(PID_FILE) as f:
                if f.read().strip() == me:
                    os.unlink(PID_FILE)
        except OSError:
            pass
    return rc


if __name__ == "__main__":
    sys.exit(main())
