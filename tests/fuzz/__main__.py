"""`make fuzz`: python -m tests.fuzz [--count N] [--seed S]; prints the seed and the figures, exit 1 on failure."""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
from pathlib import Path

from tests.fuzz.harness import fuzz


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.fuzz")
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=None, help="default: random (printed, to reproduce a run)")
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else random.randrange(2**32)
    print(f"fuzzing gk apply / gk patch: seed {seed}, {args.count} documents", flush=True)
    with tempfile.TemporaryDirectory(prefix="gk-fuzz-") as tmp:
        figures = fuzz(seed, args.count, Path(tmp) / "state",
                       progress=lambda f: print(f"  {f.documents} documents, {f.failed} failed, {f.seconds:.0f} s",
                                                flush=True))
    for failure in figures.failures[:30]:
        print("FAIL", failure)
    print(figures.summary())
    return 1 if figures.failed else 0


if __name__ == "__main__":
    sys.exit(main())
