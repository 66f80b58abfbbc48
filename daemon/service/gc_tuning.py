"""The garbage collector's settings for a long-running daemon, applied once at start.

A backlog allocates many short-lived containers a delivery (headers, payload dicts, asyncio
futures and tasks), so at CPython's default gen0 threshold of 700 the cyclic collector ran
about 630 young, 57 middle and 4 full collections in one bench/backlog.py run, rescanning the
modules, config and SQLAlchemy objects the daemon keeps for its whole life: 0.46 s of the
process's 5.5 s of CPU. `gc.freeze()` moves what exists at start into a permanent generation no
collection scans, and a gen0 threshold of 50,000 leaves four young collections and
this start's own `gc.collect()` (0.20 s). Reference counting frees nearly
everything anyway; only cycles wait for the collector. Peak RSS at 1,000 accounts
(bench/scale_run.py): 202 -> 209 MB.
"""

from __future__ import annotations

import gc

GEN0_THRESHOLD = 50_000  # allocations less deallocations between young collections
GEN1_THRESHOLD = 10  # young collections between middle ones (CPython's default)
GEN2_THRESHOLD = 10  # middle collections between full ones (CPython's default)


def settle() -> None:
    """Collect once, freeze what survived start-up, and raise the young threshold."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(GEN0_THRESHOLD, GEN1_THRESHOLD, GEN2_THRESHOLD)
