"""How long a task has lived, to the microsecond, from the kernel's taskstats.

/proc/PID/stat counts a task's start in clock ticks (USER_HZ: 10 ms); the
taskstats interface (generic netlink, CONFIG_TASKSTATS) gives its elapsed
time in microseconds. `attach` needs the finer one: a file changed after the
process started counts as one it may have written, and at tick precision a
file built a few milliseconds before the process started reads as changed
by it (a program attached right after its build was killed as
exec-written).

Written by hand rather than taken from pyroute2, whose taskstats module
says of itself that it is not ready for use, and whose import would weigh
on every start-up of the tracer: the query is one request and one reply.
"""

from __future__ import annotations

import os
import socket
import struct
from collections.abc import Iterator

from tracer.errors import TraceError

_NETLINK_GENERIC = 16
_GENL_ID_CTRL = 0x10
_CTRL_CMD_GETFAMILY = 3
_CTRL_ATTR_FAMILY_ID = 1
_CTRL_ATTR_FAMILY_NAME = 2
_NLM_F_REQUEST = 1
_NLMSG_ERROR = 2

_TASKSTATS_CMD_GET = 1
_TASKSTATS_CMD_ATTR_PID = 1
_TASKSTATS_TYPE_AGGR_PID = 4
_TASKSTATS_TYPE_STATS = 3
# struct taskstats (linux/taskstats.h): ac_pid and ac_etime (microseconds
# since the task started), present from version 1 of the structure on.
_AC_PID = struct.Struct("=I")
_AC_PID_OFFSET = 128
_AC_ETIME = struct.Struct("=Q")
_AC_ETIME_OFFSET = 144

_HEADER = struct.Struct("=IHHII")   # nlmsghdr
_GENL = struct.Struct("=BBH")       # genlmsghdr
_ATTR = struct.Struct("=HH")        # nlattr


def elapsed_us(tid: int) -> int:
    """Microseconds task `tid` has lived (an exec by another thread gives
    it the old main thread's start). Raises TraceError when taskstats is
    absent or refuses (the caller falls back to /proc's ticks), and
    ProcessLookupError when no such task exists."""
    try:
        with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, _NETLINK_GENERIC) as sock:
            sock.settimeout(1.0)
            family = _family_id(sock)
            stats = _request(sock, family, _TASKSTATS_CMD_GET,
                             _attr(_TASKSTATS_CMD_ATTR_PID, struct.pack("=I", tid)))
    except OSError as err:
        if err.errno == 3:  # ESRCH from the kernel's reply
            raise ProcessLookupError(err.errno, f"no task {tid}") from err
        raise TraceError(f"taskstats cannot be asked about task {tid}: {err}") from err
    for kind, payload in _attrs(stats):
        if kind != _TASKSTATS_TYPE_AGGR_PID:
            continue
        for inner, stats_bytes in _attrs(payload):
            if inner == _TASKSTATS_TYPE_STATS and len(stats_bytes) >= _AC_ETIME_OFFSET + 8:
                if _AC_PID.unpack_from(stats_bytes, _AC_PID_OFFSET)[0] != tid:
                    raise TraceError(f"taskstats answered for another task than {tid}")
                return _AC_ETIME.unpack_from(stats_bytes, _AC_ETIME_OFFSET)[0]
    raise TraceError(f"taskstats gave no statistics for task {tid}")


def _family_id(sock: socket.socket) -> int:
    """The generic netlink family number of TASKSTATS."""
    reply = _request(sock, _GENL_ID_CTRL, _CTRL_CMD_GETFAMILY, _attr(_CTRL_ATTR_FAMILY_NAME, b"TASKSTATS\0"))
    for kind, payload in _attrs(reply):
        if kind == _CTRL_ATTR_FAMILY_ID:
            return struct.unpack_from("=H", payload)[0]
    raise TraceError("the kernel has no TASKSTATS netlink family (CONFIG_TASKSTATS off)")


def _request(sock: socket.socket, family: int, command: int, attrs: bytes) -> bytes:
    """Send one generic netlink request; return the attributes of its reply.
    Raises OSError with the kernel's errno when it answers with an error."""
    body = _GENL.pack(command, 1, 0) + attrs
    sock.send(_HEADER.pack(_HEADER.size + len(body), family, _NLM_F_REQUEST, 1, 0) + body)
    reply = sock.recv(65536)
    length, kind, _, _, _ = _HEADER.unpack_from(reply)
    if kind == _NLMSG_ERROR:
        code = struct.unpack_from("=i", reply, _HEADER.size)[0]
        raise OSError(-code, os.strerror(-code))
    return reply[_HEADER.size + _GENL.size:length]


def _attr(kind: int, payload: bytes) -> bytes:
    """One netlink attribute, padded to four bytes."""
    size = _ATTR.size + len(payload)
    return _ATTR.pack(size, kind) + payload + b"\0" * (-size % 4)


def _attrs(data: bytes) -> Iterator[tuple[int, bytes]]:
    """(type, payload) of each netlink attribute in `data`."""
    offset = 0
    while offset + _ATTR.size <= len(data):
        size, kind = _ATTR.unpack_from(data, offset)
        if size < _ATTR.size:
            break
        yield kind & 0x3FFF, data[offset + _ATTR.size:offset + size]  # without the nested/byte-order flags
        offset += (size + 3) & ~3
