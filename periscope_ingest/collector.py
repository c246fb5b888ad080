"""Python's cyclic garbage collector, settled once the server has started (#17, CPU).

The collector looks at every container object (tuples, lists, dicts, instances) that survives a
few collections, each time one of the older generations is due. A started server holds a few
hundred thousand of them that live as long as it does (modules, settings, pydantic models,
aiohttp's and PyAV's objects), which every full collection walked again, and the per-frame
path allocates containers fast enough to run a young collection many times a second per
stream (docs/benchmarks.md, twelfth set: ~3 % of the server's CPU at 30 streams in perf).

So, after start: one full collection, then `gc.freeze()` moves everything left into a
generation the collector never walks; and the young generation is collected every
`memory.gc_threshold` allocations instead of 700, which makes the older ones ten times
rarer too. Cycles are still collected: only later and in larger batches. Paired at 30
streams: 0.970 of the CPU (11 rounds, 0.94-1.03), no change in memory per stream.
"""

from __future__ import annotations

import gc


def settle_collector(young_threshold: int) -> int:
    """Freeze what start-up made and collect the young generation every ``young_threshold``
    allocations (the older thresholds stay Python's). 0 leaves the collector as it is.
    Returns how many objects are frozen (0: unchanged)."""
    if not young_threshold:
        return 0
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(young_threshold, middle, old)
    return gc.get_freeze_count()
