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

The sweep comes when a run ends; until then, and for a run killed before
it, tracer/runs.py holds the rest: `register` makes this run known on the
cache directories, so that no other run reads or writes them while it is
live, and empties what a killed run left there; `library_dir` is where a
run builds the libraries it loads: the cache when it is alone on it, else
a private directory.
"""

from __future__ import annotations

import contextlib
import os
from contextlib import ExitStack
from pathlib import Path

from . import runs
from .closures.preload import cache_dir as closures_dir
from .policy.cache import cache_dir as policies_dir


def register(stack: ExitStack) -> runs.Registry:
    """Register this run on the policy and closure caches until `stack`
    closes (after the sweep, which must come first in it); the registry
    says which directories it emptied of a killed run's leftovers."""
    registry = runs.register((policies_dir(), closures_dir()))
    stack.callback(registry.close)
    return registry


def library_dir(stack: ExitStack) -> Path:
    """Where this run builds the libraries it loads: the closures cache when
    no other run is live on it, else a private directory removed when
    `stack` closes (built again: slower, never another run's)."""
    directory = closures_dir()
    if runs.alone(directory):
        return directory
    # Here, not at the top: only `run --closures` asks, and a run starts faster without them.
    import shutil
    import tempfile

    private = Path(tempfile.mkdtemp(prefix="trampwatch-libraries-"))
    stack.callback(shutil.rmtree, private, ignore_errors=True)
    return private


def _files(root: Path) -> dict[str, tuple[int, int, int]]:
    """Every file, symlink or other non-directory under root (symlinks not
    followed): its (device, inode, ctime in ns)."""
    found = {}
    for top, dirs, names in os.walk(root):
        if top == str(root) and runs.MARKERS in dirs:
            # The live runs' markers: other runs add and remove theirs meanwhile.
            dirs.remove(runs.MARKERS)
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
