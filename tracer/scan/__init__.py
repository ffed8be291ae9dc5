"""Scan files for W^X hazards without running them: executable stacks, W+X
load segments, text relocations, READ_IMPLIES_EXEC triggers, and imports of
the closure and memory APIs that trampolines are built with.

scan_paths() walks files and directories safely -- each inode once, symlink
loops harmless, unreadable and non-ELF files counted and skipped, never a
crash -- and yields one ScanResult per ELF file (and per file that failed).
When a CPU is idle, a forked helper process walks part of a directory tree
(tracer.scan.helper); the results and counts are the same, in the same order.
"""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Iterable, Iterator

from .findings import (
    CLOSURE_API,
    CLOSURE_FUNCTIONS,
    EXECSTACK,
    MEMORY_API,
    MEMORY_FUNCTIONS,
    NO_GNU_STACK,
    READ_IMPLIES_EXEC,
    TEXTREL,
    WX_SEGMENT,
    Finding,
    ScanResult,
    findings_for,
)
from .helper import split_tree
from .walk import ScanSummary, Walk, examine_path, failed

__all__ = ["CLOSURE_API", "CLOSURE_FUNCTIONS", "EXECSTACK", "MEMORY_API", "MEMORY_FUNCTIONS",
           "NO_GNU_STACK", "READ_IMPLIES_EXEC", "TEXTREL", "WX_SEGMENT", "Finding", "ScanResult",
           "ScanSummary", "findings_for", "idle_cpu", "scan_paths"]


def idle_cpu() -> bool:
    """True when a CPU this process may run on is idle besides the one it
    uses: the 1-minute load average is below the CPU count (the CPUs were not
    all busy lately) and, right now, fewer than CPUs - 1 other tasks are
    runnable (/proc/loadavg; the load average alone still counts a program
    that finished seconds ago, such as the previous scan)."""
    cpus = len(os.sched_getaffinity(0))
    load = os.getloadavg()[0]
    if cpus < 2 or load >= cpus:
        return False
    try:
        with open("/proc/loadavg") as f:
            runnable = int(f.read().split()[3].split("/")[0])
    except (OSError, ValueError, IndexError):
        return load < cpus - 1
    return runnable - 1 < cpus - 1


def scan_paths(
    paths: Iterable[str],
    follow_symlinks: bool = False,
    summary: ScanSummary | None = None,
    one_filesystem: bool = False,
    helper: bool | None = None,
) -> Iterator[ScanResult]:
    """Scan files and directory trees; yield a ScanResult for each ELF file
    and for each file or directory that could not be read.

    Paths named directly are followed even when they are symlinks (like
    `find -H`); symlinks met inside directories are followed only with
    `follow_symlinks`. Each (device, inode) is examined once, so hard links
    and symlink loops cost nothing. `one_filesystem` keeps the walk on each
    root's device. Pass a ScanSummary to have it filled in; its `elapsed`
    covers the time until the iterator is exhausted or closed. Never raises
    for unreadable or malformed files.

    `helper`: split directory trees with a forked helper process (True),
    never (False), or when idle_cpu() says so (None). It is not used with
    `follow_symlinks`, nor for a tree a later path may lie in.
    """
    counts = summary if summary is not None else ScanSummary()
    walk = Walk(counts, set(), follow_symlinks, one_filesystem)
    roots = [os.fspath(root) for root in paths]
    started = time.monotonic()
    try:
        for index, root in enumerate(roots):
            try:
                st = os.stat(root)
            except OSError as err:
                yield failed(root, err, counts)
                continue
            identity = (st.st_dev, st.st_ino)
            if identity in walk.seen:
                counts.skipped["duplicate"] += 1
                continue
            walk.seen.add(identity)
            if stat.S_ISREG(st.st_mode):
                result = examine_path(root)
                counts.count_file(result)
                if result is not None:
                    yield result
            elif not stat.S_ISDIR(st.st_mode):
                counts.skipped["special"] += 1
            elif _split(helper, follow_symlinks, roots[index + 1:]):
                yield from split_tree(walk, (root, identity), st.st_dev)
            else:
                yield from walk.tree((root, identity), st.st_dev)
    finally:
        counts.elapsed += time.monotonic() - started


def _split(helper: bool | None, follow: bool, later: list[str]) -> bool:
    """Whether a directory tree is split with a helper process. Not when
    following symlinks (a loop is cut by the identities seen, which the two
    processes do not share); not when a later root is a file, which the
    tree might hold under a name the helper alone saw."""
    if follow or helper is False or (helper is None and not idle_cpu()):
        return False
    for path in later:
        try:
            if not stat.S_ISDIR(os.stat(path).st_mode):
                return False
        except OSError:
            continue
    return True
