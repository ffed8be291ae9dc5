"""Compiled policies kept on disk, so a run does not parse YAML (nor import
the parser) for a policy file it has already loaded.

An entry is found by the policy's source name and used only when it holds
the very bytes of the file read now and was written by the same policy code
(the size and modification time of every module that builds a Policy, and
the Python that ran them): any other content, or code, is a miss, and the
policy is loaded from its text. Only policies that loaded without error are
kept. Entries are pickles, so
the cache is read only from a directory and files the user running
trampwatch owns and no one else may write; anything else is a miss.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import stat
import sys
import zlib
from pathlib import Path

from tracer.policy.model import Policy

_TRACER = Path(__file__).resolve().parent.parent
# The modules whose code decides what a policy text compiles to, and the
# classes a pickled Policy refers to.
_CODE = (*sorted((_TRACER / "policy").glob("*.py")),
         *(_TRACER / name for name in ("abi.py", "categories.py", "errors.py", "subject.py", "__init__.py")))


def cache_dir() -> Path:
    """The directory of compiled policies: $XDG_CACHE_HOME/trampwatch/policies
    when XDG_CACHE_HOME is set, else /var/cache/trampwatch/policies (as the
    symbol cache, tracer/symbols.py)."""
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) / "trampwatch" if xdg else Path("/var/cache/trampwatch")
    return base / "policies"


def _code_stamp() -> tuple[tuple[str, int, int], ...]:
    # The interpreter too: globs compile through its fnmatch and re.
    stamp = [(sys.version, 0, 0)]
    for path in _CODE:
        try:
            st = os.stat(path)
        except OSError:
            continue
        stamp.append((path.name, st.st_mtime_ns, st.st_size))
    return tuple(stamp)


def _entry_path(source: str) -> Path:
    return cache_dir() / f"{zlib.crc32(source.encode('utf-8', 'surrogateescape')):08x}.pickle"


def _private(st: os.stat_result, kind: int) -> bool:
    """Owned by us, of the file type `kind`, writable by no one else."""
    return (stat.S_IFMT(st.st_mode) == kind and st.st_uid == os.geteuid()
            and not st.st_mode & (stat.S_IWGRP | stat.S_IWOTH))


def lookup(source: str, data: bytes) -> Policy | None:
    """The policy compiled earlier from exactly `data` under the name
    `source` by this code, or None (a miss: load it from its text)."""
    path = _entry_path(source)
    try:
        if not _private(os.lstat(path.parent), stat.S_IFDIR):
            return None
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        with os.fdopen(fd, "rb") as f:
            if not _private(os.fstat(f.fileno()), stat.S_IFREG):
                return None
            raw = f.read()
    except OSError:
        return None
    try:
        stamp, kept_source, kept_data, policy = pickle.loads(raw)
    except Exception:  # a damaged or foreign entry is a miss, whatever it raises
        return None
    if (stamp, kept_source, kept_data) != (_code_stamp(), source, data) or not isinstance(policy, Policy):
        return None
    return policy


def remember(source: str, data: bytes, policy: Policy) -> None:
    """Keep `policy`, compiled from `data` under the name `source`. A cache
    that cannot be written is no error: the next run loads the text again."""
    path = _entry_path(source)
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not _private(os.lstat(path.parent), stat.S_IFDIR):
            return
        raw = pickle.dumps((_code_stamp(), source, data, policy), protocol=pickle.HIGHEST_PROTOCOL)
        scratch = path.with_name(f"{path.name}.{os.getpid()}")
        fd = os.open(scratch, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except (OSError, pickle.PicklingError):
        return
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(raw)
        os.replace(scratch, path)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(scratch)
