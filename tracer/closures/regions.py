"""Sets of address ranges: the memory a program asked to be writable and
executable and was granted writable only (emulate mode)."""

from __future__ import annotations

import bisect
from collections.abc import Iterator


class Ranges:
    """Disjoint, sorted [start, end) ranges with merge-on-add."""

    def __init__(self, ranges: tuple[tuple[int, int], ...] = ()):
        self._starts: list[int] = []
        self._ends: list[int] = []
        for start, end in ranges:
            self.add(start, end)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return iter(zip(self._starts, self._ends, strict=True))

    def __bool__(self) -> bool:
        return bool(self._starts)

    def add(self, start: int, end: int) -> None:
        """Include [start, end), merging with touching or overlapping ranges."""
        if end <= start:
            return
        first = bisect.bisect_left(self._ends, start)
        last = bisect.bisect_right(self._starts, end)
        if first < last:
            start = min(start, self._starts[first])
            end = max(end, self._ends[last - 1])
        self._starts[first:last] = [start]
        self._ends[first:last] = [end]

    def remove(self, start: int, end: int) -> None:
        """Exclude [start, end), splitting ranges that straddle it."""
        if end <= start:
            return
        first = bisect.bisect_right(self._ends, start)
        last = bisect.bisect_left(self._starts, end)
        if first >= last:
            return
        keep_starts, keep_ends = [], []
        if self._starts[first] < start:
            keep_starts.append(self._starts[first])
            keep_ends.append(start)
        if self._ends[last - 1] > end:
            keep_starts.append(end)
            keep_ends.append(self._ends[last - 1])
        self._starts[first:last] = keep_starts
        self._ends[first:last] = keep_ends

    def contains(self, addr: int) -> bool:
        """True when addr lies in one of the ranges."""
        index = bisect.bisect_right(self._starts, addr) - 1
        return index >= 0 and addr < self._ends[index]

    def overlapping(self, start: int, end: int) -> list[tuple[int, int]]:
        """The parts of [start, end) that lie in the ranges."""
        first = bisect.bisect_right(self._ends, start)
        last = bisect.bisect_left(self._starts, end)
        return [(max(start, s), min(end, e)) for s, e in zip(self._starts[first:last], self._ends[first:last],
                                                             strict=True)]

    def copy(self) -> Ranges:
        """An independent copy (a fork child's address space)."""
        return Ranges(tuple(self))
