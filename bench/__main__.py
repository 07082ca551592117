"""Run every benchmark program, one after the other: `python -m bench [--quick] [--only NAME,...]`.

Each program prints its table and writes bench/results/<name>.json (see bench/README.md).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

from bench.common import ROOT

PROGRAMS = ["scale_in", "writes", "prober_throughput", "fleet_scale", "cli_startup", "dashboard_api", "kube_scale"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny sizes (a smoke run, figures meaningless)")
    parser.add_argument("--only", default=",".join(PROGRAMS), help=f"which (default {','.join(PROGRAMS)})")
    args = parser.parse_args(argv)
    failed = []
    for name in args.only.split(","):
        started = time.monotonic()
        print(f"\n=== bench.{name} ===\n", flush=True)
        command = [sys.executable, "-m", f"bench.{name}", *(["--quick"] if args.quick else [])]
        if subprocess.run(command, cwd=ROOT, check=False).returncode != 0:
            failed.append(name)
        print(f"\n(bench.{name}: {time.monotonic() - started:.0f} s)", flush=True)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
