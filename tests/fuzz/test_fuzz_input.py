"""The input fuzzer's short run (the long one is `make fuzz`): every document applies or is refused cleanly."""

from __future__ import annotations

import os
import random
from pathlib import Path

from tests.fuzz.harness import fuzz

COUNT = 500


def test_fuzzed_documents_apply_or_are_refused_cleanly(tmp_path: Path) -> None:
    seed = int(os.environ.get("GK_FUZZ_SEED") or random.randrange(2**32))
    print(f"input fuzzer seed {seed} (rerun with GK_FUZZ_SEED={seed})")
    figures = fuzz(seed, COUNT, tmp_path / "state")
    print(figures.summary())
    assert figures.documents == COUNT
    # Both outcomes must occur, or the generator has stopped exercising one side.
    assert figures.applied > COUNT // 20 and figures.refused > COUNT // 2, figures.summary()
    assert figures.failed == 0, f"GK_FUZZ_SEED={seed}: " + "\n".join(figures.failures[:10])
