"""The W^X taxonomy (docs/taxonomy.md): the closed set of categories trampwatch
reports, ordered most severe first.
"""

from __future__ import annotations

import enum


class Category(enum.StrEnum):
    """One category of the taxonomy; the value is the name users write."""

    WX_MAP = "wx-map"
    WX_PROTECT = "wx-protect"
    DUAL_MAP = "dual-map"
    FOREIGN_WRITE = "foreign-write"
    OPAQUE = "opaque"
    W_TO_X = "w-to-x"
    EXECMOD = "execmod"
    EXEC_WRITTEN = "exec-written"
    EXEC_UNLINKED = "exec-unlinked"
    EXECSTACK = "execstack"
    EXECHEAP = "execheap"
    SHM_EXEC = "shm-exec"
    READ_IMPLIES_EXEC = "read-implies-exec"
    ANON_EXEC = "anon-exec"
    TRAMPFD = "trampfd"


# Declaration order above is the severity order; derive the rank from it.
SEVERITY: dict[Category, int] = {cat: rank for rank, cat in enumerate(Category)}

BY_NAME: dict[str, Category] = {cat.value: cat for cat in Category}

DESCRIPTIONS: dict[Category, str] = {
    Category.WX_MAP: "a new mapping is writable and executable at once",
    Category.WX_PROTECT: "mprotect gives a region write and execute together",
    Category.DUAL_MAP: "one object is mapped writable at one address and executable at another",
    Category.FOREIGN_WRITE: "executable memory written through /proc/PID/mem or ptrace POKE",
    Category.OPAQUE: "a kernel facility the tracer cannot see through (io_uring, userfaultfd, "
                     "CLONE_UNTRACED, clone3, a seccomp listener, remap_file_pages, prctl(PR_SET_MM), "
                     "KVM, kernel modules, kexec)",
    Category.W_TO_X: "a region that is or was writable becomes executable",
    Category.EXECMOD: "a written private file mapping is made executable (text relocation)",
    Category.EXEC_WRITTEN: "an object the traced tree opened for writing is mapped executable or exec'd",
    Category.EXEC_UNLINKED: "code with no file identity on disk is made executable",
    Category.EXECSTACK: "the stack is executable",
    Category.EXECHEAP: "the brk heap is made executable",
    Category.SHM_EXEC: "System V shared memory attached with SHM_EXEC",
    Category.READ_IMPLIES_EXEC: "personality(READ_IMPLIES_EXEC): readable means executable",
    Category.ANON_EXEC: "anonymous memory becomes executable",
    Category.TRAMPFD: "a trampoline created, mapped or invoked through trampfd",
}

# Categories that need the descriptors calls return (opens, received
# descriptors, facilities behind a descriptor): only the ptrace source judges
# them; the eBPF monitor cannot report them (docs/monitor.md).
DESCRIPTOR_CATEGORIES: frozenset[Category] = frozenset({Category.EXEC_WRITTEN, Category.OPAQUE})


def by_severity(categories: set[Category] | frozenset[Category]) -> tuple[Category, ...]:
    """Return categories sorted most severe first."""
    if not categories:
        return ()  # most calls: no category at all
    return tuple(sorted(categories, key=SEVERITY.__getitem__))
