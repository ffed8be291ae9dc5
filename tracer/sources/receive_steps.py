"""Receives run in steps while their siblings are held (the ptrace source
drives them): what a step needs to know of the program's call (an i386
socketcall's argument block, a recvmmsg's timeout, a MSG_WAITALL
recvmsg's msghdr and iovecs, the socket's type) and the in-place edits
that let the next step of a MSG_WAITALL receive fill the rest of its
buffer. Memory is read and written through the stopped thread's Control
(as the program itself may)."""

from __future__ import annotations

import ctypes
import os
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from ..events import MemCall


class ThreadMemory(Protocol):
    """The stopped thread's memory, as the program may access it."""

    def copy_from_user(self, addr: int, size: int) -> bytes | None:
        """Read `size` bytes (None if any is not readable)."""

    def copy_to_user(self, addr: int, data: bytes) -> bool:
        """Write `data` (False if any byte is not writable)."""


_libc = ctypes.CDLL(None, use_errno=True)


@dataclass
class WaitAll:
    """A recvmsg with MSG_WAITALL run in steps: its msghdr's address and
    ABI, the iovec array and control buffer length as the program wrote
    them. Between steps the msghdr and the iovec entry where the next byte
    goes are edited in place so the next step fills the rest; both are put
    back when the receive ends."""

    msghdr: int
    arch: str
    iov: int
    iovecs: tuple[tuple[int, int], ...]
    controllen: int
    edited: bool = False

    @property
    def wanted(self) -> int:
        """The bytes the program asked for."""
        return sum(length for _, length in self.iovecs)


@dataclass
class Receive:
    """A receive run in steps while its siblings are held: where its
    syscall instruction is (`ip`), its number and flags as the program made
    it, the argument registers to give back when it ends, the messages a
    blocking recvmmsg got in earlier steps, and its timeout's end
    (monotonic; `timespec32`: the timeout is an i386 old_timespec32)."""

    ip: int
    nr: int
    flags: int
    restore: dict[str, int]
    vlen: int = 0
    done: int = 0
    deadline: float | None = None
    timespec32: bool = False
    waitall: WaitAll | None = None


MSG_PEEK = 2
NR_RECVFROM = {"x86_64": 45, "i386": 371}
MMSGHDR_SIZE = {"x86_64": 64, "i386": 32}
UIO_MAXIOV = 1024
TIMESPEC64 = struct.Struct("<qq")
TIMESPEC32 = struct.Struct("<ii")
# socketcall(2)'s argument block: how many 32-bit words each receive takes.
_SOCKETCALL_ARGC = {"recvmsg": 3, "recvmmsg": 5}


def socketcall_arguments(call: MemCall, peek: Callable[[int, int], bytes]) -> tuple[int, ...] | None:
    """The arguments of an i386 socketcall receive, read from its block in
    the program's memory (None: unreadable)."""
    count = _SOCKETCALL_ARGC[call.syscall]
    block = peek(call.args[1], 4 * count)
    return struct.unpack(f"<{count}I", block) if len(block) == 4 * count else None


# struct msghdr and struct iovec per ABI: (msghdr layout, offset of msg_iov
# (msg_iovlen follows), offset of msg_controllen, word, iovec).
_MSGHDR_LAYOUT = {
    "x86_64": (struct.Struct("<QI4xQQQQI4x"), 16, 40, struct.Struct("<Q"), struct.Struct("<QQ")),
    "i386": (struct.Struct("<7I"), 8, 20, struct.Struct("<I"), struct.Struct("<II")),
}
_MSG_CTRUNC = 8
SOCK_STREAM = 1
_NR_PIDFD_GETFD = 438
_SOL_SOCKET, _SO_TYPE = 1, 3
_libc.getsockopt.argtypes = (ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p)


def read_waitall(ctl: ThreadMemory, arch: str, msghdr: int) -> WaitAll | None:
    """The msghdr and iovec array of a MSG_WAITALL recvmsg (None when they
    cannot be read: the kernel fails the call with EFAULT, no step follows)."""
    layout, _, _, _, iovec = _MSGHDR_LAYOUT[arch]
    raw = ctl.copy_from_user(msghdr, layout.size)
    if raw is None:
        return None
    _, _, iov, iovlen, _, controllen, _ = layout.unpack(raw)
    if iovlen > UIO_MAXIOV:
        return None
    array = ctl.copy_from_user(iov, iovec.size * iovlen) if iovlen else b""
    if array is None:
        return None
    return WaitAll(msghdr, arch, iov, tuple(iovec.iter_unpack(array)), controllen)


def control_delivered(ctl: ThreadMemory, waitall: WaitAll) -> bool:
    """Whether the step just run delivered control messages (descriptors:
    the kernel ends a MSG_WAITALL receive there) or had to drop them."""
    layout = _MSGHDR_LAYOUT[waitall.arch][0]
    raw = ctl.copy_from_user(waitall.msghdr, layout.size)
    if raw is None:
        return True
    _, _, _, _, _, controllen, flags = layout.unpack(raw)
    return controllen > 0 or bool(flags & _MSG_CTRUNC)


def waitall_advance(ctl: ThreadMemory, waitall: WaitAll, done: int) -> None:
    """Point the msghdr at the rest of the buffer: the iovec entry holding
    byte `done` starts there, the entries before it are skipped, and the
    control buffer has its length back (the step's exit wrote what it used)."""
    _, iov_at, control_at, word, iovec = _MSGHDR_LAYOUT[waitall.arch]
    index, offset = 0, done
    while offset >= waitall.iovecs[index][1]:
        offset -= waitall.iovecs[index][1]
        index += 1
    waitall_restore(ctl, waitall)
    base, length = waitall.iovecs[index]
    entry = waitall.iov + index * iovec.size
    ctl.copy_to_user(entry, iovec.pack(base + offset, length - offset))
    ctl.copy_to_user(waitall.msghdr + iov_at, word.pack(entry) + word.pack(len(waitall.iovecs) - index))
    ctl.copy_to_user(waitall.msghdr + control_at, word.pack(waitall.controllen))
    waitall.edited = True


def waitall_restore(ctl: ThreadMemory, waitall: WaitAll) -> None:
    """Put the program's iovec array and msghdr pointers back."""
    _, iov_at, _, word, iovec = _MSGHDR_LAYOUT[waitall.arch]
    if waitall.iovecs:
        ctl.copy_to_user(waitall.iov, b"".join(iovec.pack(*entry) for entry in waitall.iovecs))
    ctl.copy_to_user(waitall.msghdr + iov_at, word.pack(waitall.iov) + word.pack(len(waitall.iovecs)))
    waitall.edited = False


def socket_type(pid: int, fd: int) -> int | None:
    """SO_TYPE of descriptor `fd` of process `pid`, asked of a copy the
    tracer takes with pidfd_getfd (None: not a socket, or gone)."""
    try:
        pidfd = os.pidfd_open(pid)
    except OSError:
        return None
    try:
        copy = _libc.syscall(_NR_PIDFD_GETFD, pidfd, fd, 0)
        if copy < 0:
            return None
        value, size = ctypes.c_int(), ctypes.c_uint(4)
        try:
            if _libc.getsockopt(copy, _SOL_SOCKET, _SO_TYPE, ctypes.byref(value), ctypes.byref(size)) < 0:
                return None
            return value.value
        finally:
            os.close(copy)
    finally:
        os.close(pidfd)


def write_time_left(ctl: ThreadMemory, recv: Receive, timeout: int) -> None:
    """Before a recvmmsg's next step: its timeout is what is left of it
    (the kernel counts each step's from its start; the wait between steps
    counts too)."""
    left = max(0, int((recv.deadline - time.monotonic()) * 1e9))
    layout = TIMESPEC32 if recv.timespec32 else TIMESPEC64
    ctl.copy_to_user(timeout, layout.pack(*divmod(left, 1_000_000_000)))


def receive_deadline(timeout: int, timespec32: bool, ctl: ThreadMemory) -> float | None:
    """When a recvmmsg's timeout (a pointer, 0: none) ends, on the monotonic
    clock; None without one (or when it cannot be read: the kernel fails
    the call with EFAULT anyway)."""
    layout = TIMESPEC32 if timespec32 else TIMESPEC64
    raw = ctl.copy_from_user(timeout, layout.size) if timeout else None
    if raw is None:
        return None
    seconds, nanoseconds = layout.unpack(raw)
    return time.monotonic() + seconds + nanoseconds / 1e9
