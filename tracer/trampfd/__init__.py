"""trampfd emulated in userspace: the pure half.

State and rules only, no ptrace: `layout` (the RFC's ABI, bit-exact),
`v1` (fault-based trampolines: contexts, file operations, fault → register
patch), `v2` (trampoline tables and their code), `space` (where trampolines
are mapped), `syscall_rule` (v1, v2 or a real process_madvise).
tracer/actions/emulate.py applies them to a traced program; docs/trampfd.md
describes the emulation.
"""

from __future__ import annotations

from pathlib import Path

from ..resources import package_path
from .layout import PAGE_SIZE, Refused
from .space import AddressSpace
from .v1 import TrampolineV1
from .v2 import TrampolineTable

# trampfds live at or above this descriptor number, so the seccomp filter
# traps I/O on them and on nothing else (docs/trampfd.md, "Descriptors").
FD_FLOOR = 1000

__all__ = ["FD_FLOOR", "PAGE_SIZE", "AddressSpace", "Refused", "TrampolineTable", "TrampolineV1",
           "include_dir"]


def include_dir() -> Path:
    """Return the directory holding trampfd.h (installed package data)."""
    return package_path("include")
