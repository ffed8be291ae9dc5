"""FUSE connections a killed process may have to answer in its own death.

A process that serves a FUSE filesystem and has one of its files open hangs
in exit when it is killed: closing the file sends FLUSH to the server, which
was that process (the wait is uninterruptible). Before the tracer kills such
a process it notes the FUSE mounts the process sees and the tracer does not
(mounted in a mount namespace of its own, so nobody outside depends on
them); after the kill it aborts their connections through fusectl, as
`umount -f` would, and the process finishes dying.
"""

from __future__ import annotations

import ctypes
import os

_CONNECTIONS = "/sys/fs/fuse/connections"
_libc = ctypes.CDLL(None, use_errno=True)


def _fuse_devices(mountinfo: str) -> set[int]:
    """The superblock devices of the FUSE mounts a mountinfo text lists."""
    found = set()
    for line in mountinfo.splitlines():
        fields = line.split(" ")
        try:
            fstype = fields[fields.index("-") + 1]
        except (ValueError, IndexError):
            continue
        if fstype == "fuse" or fstype.startswith(("fuse.", "fuseblk")):
            major, _, minor = fields[2].partition(":")
            found.add(os.makedev(int(major), int(minor)))
    return found


def _mountinfo(pid: int | str) -> str:
    try:
        with open(f"/proc/{pid}/mountinfo", encoding="utf-8", errors="replace") as file:
            return file.read()
    except OSError:
        return ""


def private_connections(pid: int) -> frozenset[int]:
    """The FUSE connection ids (fusectl names them by the minor number of
    their anonymous device) of the FUSE mounts `pid` sees and this process
    does not; empty when pid's mounts cannot be read."""
    theirs = _fuse_devices(_mountinfo(pid)) - _fuse_devices(_mountinfo("self"))
    return frozenset(os.minor(device) for device in theirs if os.major(device) == 0)


def _mount_fusectl() -> bool:
    if os.path.ismount(_CONNECTIONS):
        return True
    done = _libc.mount(b"fusectl", _CONNECTIONS.encode(), b"fusectl", 0, None) == 0
    return done or os.path.ismount(_CONNECTIONS)


def is_connection(device: int) -> bool:
    """Whether `device` (a superblock's st_dev) is a FUSE connection's, as
    fusectl lists them (mounted at its usual place when nothing is there)."""
    return os.major(device) == 0 and _mount_fusectl() and os.path.isdir(f"{_CONNECTIONS}/{os.minor(device)}")


def abort(connections: frozenset[int]) -> list[int]:
    """Abort each FUSE connection of `connections` (mounting fusectl at its
    usual place when nothing is mounted there); return the ids aborted."""
    if not connections or not _mount_fusectl():
        return []
    aborted = []
    for connection in sorted(connections):
        try:
            with open(f"{_CONNECTIONS}/{connection}/abort", "w", encoding="ascii") as file:
                file.write("1")
        except OSError:
            continue  # gone with its mount already
        aborted.append(connection)
    return aborted
