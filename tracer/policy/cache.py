"""Compiled policies kept on disk, so a run does not parse YAML (nor import
the parser) for a policy file it has already loaded.

An entry is found by the policy's source name and used only when it holds
the very bytes of the file read now and was written by the same policy code
(the size and modification time of every module that builds a Policy, and
the Python that ran them): any other content, or code, is a miss, and the
policy is loaded from its text. Only policies that loaded without error are
kept.

An entry is JSON: the located document tree the YAML became
(tracer/policy/nodes.py), never a Policy object, and every hit is validated
again by the schema (tracer/policy/schema.py build_policy), so a forged
entry can at most be some valid policy, and no bytes in the cache are ever
run (pickle would run what an entry names). Entries are read only from a
directory and files the user running trampwatch owns and no one else may
write, and only while no other trampwatch run is live on the directory
(tracer/runs.py): a traced program may write here as the user, and its
writes are swept when its run ends.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
import sys
import zlib
from pathlib import Path
from typing import Any

from tracer import runs
from tracer.errors import PolicyError
from tracer.policy.model import Policy
from tracer.policy.nodes import Mapping, Node, Scalar, Seq

_TRACER = Path(__file__).resolve().parent.parent
# The modules whose code decides what a policy text compiles to.
_CODE = (*sorted((_TRACER / "policy").glob("*.py")),
         *(_TRACER / name for name in ("abi.py", "categories.py", "errors.py", "subject.py", "__init__.py")))
_MAX_DEPTH = 64  # a policy nests a few levels; deeper is no entry of ours


def cache_dir() -> Path:
    """The directory of compiled policies: $XDG_CACHE_HOME/trampwatch/policies
    when XDG_CACHE_HOME is set, else /var/cache/trampwatch/policies (as the
    symbol cache, tracer/symbols.py)."""
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) / "trampwatch" if xdg else Path("/var/cache/trampwatch")
    return base / "policies"


def _code_stamp() -> list[list[str | int]]:
    # The interpreter too: globs compile through its fnmatch and re.
    stamp: list[list[str | int]] = [[sys.version, 0, 0]]
    for path in _CODE:
        try:
            st = os.stat(path)
        except OSError:
            continue
        stamp.append([path.name, st.st_mtime_ns, st.st_size])
    return stamp


def _entry_path(source: str) -> Path:
    return cache_dir() / f"{zlib.crc32(source.encode('utf-8', 'surrogateescape')):08x}.json"


def _private(st: os.stat_result, kind: int) -> bool:
    """Owned by us, of the file type `kind`, writable by no one else."""
    return (stat.S_IFMT(st.st_mode) == kind and st.st_uid == os.geteuid()
            and not st.st_mode & (stat.S_IWGRP | stat.S_IWOTH))


def _encode(node: Node) -> list[Any]:
    """A node as JSON: [type, kind, line, column, content...]."""
    head = [node.kind, node.line, node.column]
    if isinstance(node, Scalar):
        return ["s", *head, node.text, node.value]
    if isinstance(node, Seq):
        return ["l", *head, [_encode(item) for item in node.items]]
    if isinstance(node, Mapping):
        return ["m", *head, [[_encode(key), _encode(value)] for key, value in node.pairs]]
    raise TypeError(f"not a policy node: {node!r}")


def _decode(raw: Any, depth: int = 0) -> Node:
    """The node `_encode` wrote; ValueError for anything else."""
    if depth > _MAX_DEPTH or not isinstance(raw, list) or len(raw) != (6 if raw[:1] == ["s"] else 5):
        raise ValueError("not a node")
    tag, kind, line, column, *rest = raw
    if not (isinstance(kind, str) and type(line) is int and type(column) is int):
        raise ValueError("not a node")
    if tag == "s" and isinstance(rest[0], str) and (rest[1] is None or type(rest[1]) in (str, int, bool)):
        return Scalar(kind, line, column, rest[0], rest[1])
    if tag == "l" and isinstance(rest[0], list):
        return Seq(kind, line, column, tuple(_decode(item, depth + 1) for item in rest[0]))
    if tag == "m" and isinstance(rest[0], list) and all(isinstance(p, list) and len(p) == 2 for p in rest[0]):
        return Mapping(kind, line, column,
                       tuple((_decode(k, depth + 1), _decode(v, depth + 1)) for k, v in rest[0]))
    raise ValueError("not a node")


def lookup(source: str, data: bytes) -> Policy | None:
    """The policy compiled earlier from exactly `data` under the name
    `source` by this code, validated again, or None (a miss: load it from
    its text)."""
    path = _entry_path(source)
    try:
        if not _private(os.lstat(path.parent), stat.S_IFDIR) or not runs.alone(path.parent):
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
        entry = json.loads(raw)
        kept = (entry["stamp"], entry["source"], entry["text"])
        if kept != (_code_stamp(), source, data.decode("utf-8")):
            return None
        tree = _decode(entry["tree"])
    except (ValueError, TypeError, KeyError, RecursionError):  # damaged or foreign: a miss
        return None
    from tracer.policy.schema import build_policy

    try:
        return build_policy(tree, source, [])
    except PolicyError:
        return None


def remember(source: str, data: bytes, tree: Node) -> None:
    """Keep the document tree `tree` of `data`, read under the name
    `source`. A cache that cannot be written (or that another run is live
    on) is no error: the next run loads the text again."""
    path = _entry_path(source)
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not _private(os.lstat(path.parent), stat.S_IFDIR) or not runs.alone(path.parent):
            return
        entry = {"stamp": _code_stamp(), "source": source, "text": data.decode("utf-8"),
                 "tree": _encode(tree)}
        raw = json.dumps(entry, separators=(",", ":")).encode("utf-8", "surrogateescape")
        scratch = path.with_name(f"{path.name}.{os.getpid()}")
        fd = os.open(scratch, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except (OSError, ValueError, TypeError):
        return
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(raw)
        os.replace(scratch, path)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(scratch)
