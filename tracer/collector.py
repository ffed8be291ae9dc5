"""Python's cycle collector paused over work that makes many short-lived
objects and no cycles (a batch of eBPF records, one inspected process)."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def cycle_collector_paused() -> Iterator[None]:
    """Pause the cycle collector for the block, restoring its state after.
    Objects made by the ten thousand are freed by reference counting when
    the work ends; a collection set off by their allocations walks every
    one of them still alive, again and again as they age (a monitor batch
    of 200,000 flips: 2.45-3.3 µs per record with the collector, 1.5
    without; a third of inspecting 10,000 mappings). Cycles made meanwhile
    are collected after the block."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
