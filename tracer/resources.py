"""Files trampwatch ships inside its package, found through importlib.resources:
the policy presets (tracer/presets, which in the source tree is a link to
policies/), the BPF C programs and their header (tracer/bpf), and the C
headers and sources programs build against (tracer/include)."""

from __future__ import annotations

import sys
from pathlib import Path

from .errors import TrampwatchError


def package_path(*parts: str) -> Path:
    """Return the real path of a directory or file shipped in the package.

    gcc and bcc take file names, so the package must be installed as files
    (a wheel, the source tree), not zipped. Raises TrampwatchError otherwise.
    """
    spec = sys.modules["tracer"].__spec__
    if spec is not None and spec.origin and Path(spec.origin).is_file():
        # A package of plain files (a wheel, the source tree): what files()
        # answers for it, without importing importlib.resources at start-up.
        return Path(spec.origin).parent.joinpath(*parts).resolve()
    from importlib.resources import files

    found = files("tracer").joinpath(*parts)
    if not isinstance(found, Path):
        raise TrampwatchError(f"trampwatch's {'/'.join(parts)} is not a file on disk ({found}): install "
                              "trampwatch as a wheel or from the source tree, not as a zip")
    return found.resolve()


def writable_by_others(path: Path) -> str | None:
    """Why someone other than the user running trampwatch (or root) could
    replace the regular file `path`, or None when no one could: the file
    itself (not a symlink) must be the user's and written by no one else,
    and each directory above it (symlinks resolved) the user's or root's,
    written by no one else unless sticky (as /tmp: no one can rename
    another's entries there). For what trampwatch builds into a cache and
    then loads: a library another user could replace runs as this user."""
    import os
    import stat

    euid = os.geteuid()
    try:
        st = os.lstat(path)
    except OSError as err:
        return f"{path}: {err.strerror}"
    if not stat.S_ISREG(st.st_mode) or st.st_uid != euid or st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return f"{path} is not a regular file of uid {euid} that only it may write"
    for directory in (Path(os.path.realpath(path.parent)), *Path(os.path.realpath(path.parent)).parents):
        st = os.stat(directory)
        if st.st_uid not in (euid, 0) or (st.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
                                           and not st.st_mode & stat.S_ISVTX):
            return f"{directory} may be changed by uid {st.st_uid} or others"
    return None
