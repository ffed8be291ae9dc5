"""What trampwatch keeps on disk between runs (compiled policies, the
closure libraries and the fast path of emulated faults), held against the
program it traces.

The traced program runs as the user who runs trampwatch, so it may write
these caches as that user may: a compiled policy weaker than the file it
stands for, a library the next run loads into the tracer. Nothing in a run
sees a program's file writes, so `Snapshot` does it afterwards: taken just
before the program starts, it lists every file there; `drop_changed`, once
the traced programs are gone, removes every file that is new or changed
since. The next run then compiles, or builds, again: a miss, never a
weaker policy or a foreign library. (What another trampwatch wrote in the
meantime goes too: a miss again.) docs/policy.md, "The policy cache".
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from .closures.preload import cache_dir as closures_dir
from .policy.cache import cache_dir as policies_dir


def _files(root: Path) -> dict[str, tuple[int, int, int]]:
    """Every file, symlink or other non-directory under root (symlinks not
    followed): its (device, inode, ctime in ns)."""
    found = {}
    for top, dirs, names in os.walk(root):
        for name in (*names, *(d for d in dirs if os.path.islink(os.path.join(top, d)))):
            path = os.path.join(top, name)
            with contextlib.suppress(OSError):
                st = os.lstat(path)
                found[path] = (st.st_dev, st.st_ino, st.st_ctime_ns)
    return found


class Snapshot:
    """The cache files as they were before a traced program started."""

    def __init__(self, roots: tuple[Path, ...] | None = None):
        self.roots = roots if roots is not None else (policies_dir(), closures_dir())
        self.files = {path: key for root in self.roots for path, key in _files(root).items()}

    def drop_changed(self) -> list[str]:
        """Remove every file new or changed (content, owner, mode, link)
        since the snapshot; return their paths."""
        dropped = []
        for root in self.roots:
            for path, key in _files(root).items():
                if self.files.get(path) != key:
                    with contextlib.suppress(OSError):
                        os.unlink(path)
                        dropped.append(path)
        return dropped
