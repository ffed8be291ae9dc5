"""Where trampolines are mapped: one record per address space.

v1 pages are don't-copy (a fork child has none); v2 table pages are ordinary
read+execute pages, inherited by fork. Both stop being trampolines when the
program unmaps, remaps or re-protects them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .layout import PAGE_SIZE
from .v1 import TrampolineV1
from .v2 import TrampolineTable


@dataclass
class AddressSpace:
    """The trampolines mapped in one address space, by page address."""

    v1_pages: dict[int, TrampolineV1] = field(default_factory=dict)
    tables: dict[int, TrampolineTable] = field(default_factory=dict)

    def has_table(self, table: TrampolineTable) -> bool:
        """True when `table` is mapped here."""
        return any(mapped is table for mapped in self.tables.values())

    def forget(self, start: int, length: int) -> None:
        """Drop every trampoline page overlapping [start, start + length)."""
        end = start + length
        for pages in (self.v1_pages, self.tables):
            for page in [page for page in pages if page < end and start < page + PAGE_SIZE]:
                del pages[page]

    def forked(self) -> AddressSpace:
        """Return the child's copy after fork: the tables, no v1 pages."""
        return AddressSpace(tables=dict(self.tables))

