"""Set-wide loops share the event loop with per-server work.

The SQLite store never suspends, so a reconcile that walks 10,000 pods would hold the loop for its whole walk and
the prober's ticks would fire late. Walking in slices with a yield between them bounds each hold to one slice.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import TypeVar

T = TypeVar("T")

# A few hundred items is about a millisecond of per-item Python: short holds, and a yield's cost stays negligible.
SLICE = 500


async def in_slices(items: Sequence[T], size: int = SLICE) -> AsyncIterator[Sequence[T]]:
    """`items` in consecutive slices, yielding to the loop before each slice after the first."""
    for start in range(0, len(items), size):
        if start:
            await asyncio.sleep(0)
        yield items[start:start + size]
