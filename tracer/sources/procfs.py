"""Read what /proc says about a process: maps, identity, personality, memory,
file descriptors, threads.

Every OSError is translated here, at the boundary: a process that is gone
raises NoSuchProcess, one we may not read raises AccessDenied, anything else
TraceError -- always chained to the original error.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import functools
import os
import re
import stat
import struct
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import NamedTuple

from tracer.abi import OVERLAYFS_SUPER_MAGIC, PROC_SUPER_MAGIC, Prot
from tracer.errors import AccessDenied, NoSuchProcess, TraceError
from tracer.events import FdObject, MapEntry, ProcessInfo
from tracer.sources import fuse_abort

_GONE = frozenset({errno.ENOENT, errno.ESRCH})
_DENIED = frozenset({errno.EACCES, errno.EPERM})


def _permissions_table() -> dict[str, tuple[int, bool]]:
    """Map each of the 16 'rwxp'-style strings the kernel prints to (prot, shared)."""
    table = {}
    for r in "r-":
        for w in "w-":
            for x in "x-":
                prot = (Prot.READ if r == "r" else 0) | (Prot.WRITE if w == "w" else 0)
                prot |= Prot.EXEC if x == "x" else 0
                for kind in "ps":
                    table[r + w + x + kind] = (int(prot), kind == "s")
    return table


_PERMS = _permissions_table()


@contextmanager
def _translated(pid: int | None, what: str, verb: str = "read") -> Iterator[None]:
    """Turn an OSError raised while we `verb` `what` of `pid` into the errors tree."""
    try:
        yield
    except OSError as err:
        raise _translate(err, pid, what, verb) from err


def _translate(err: OSError, pid: int | None, what: str, verb: str = "read") -> TraceError:
    """Return the trampwatch error that stands for `err` (not raised here)."""
    reason = os.strerror(err.errno) if err.errno else str(err)
    if err.errno in _GONE:
        return NoSuchProcess(f"no such process (to {verb} {what})", pid=pid)
    if err.errno in _DENIED:
        return AccessDenied(f"cannot {verb} {what}: {reason}", pid=pid)
    return TraceError(f"cannot {verb} {what}: {reason}", pid=pid)


def _read_text(pid: int, name: str) -> str:
    # Raw descriptor reads, not open(): a text file object costs ~4x the
    # syscalls' own time, and an exec reads four of these files.
    path = f"/proc/{pid}/{name}"
    with _translated(pid, path):
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            chunks = []
            while chunk := os.read(fd, 65536):
                chunks.append(chunk)
        finally:
            os.close(fd)
    return b"".join(chunks).decode("utf-8", "surrogateescape")


def parse_maps(text: str) -> tuple[MapEntry, ...]:
    """Parse the text of /proc/PID/maps into MapEntry records, in file order.

    The path is '' for anonymous memory and keeps the kernel's own spelling
    otherwise ('[stack]', '/memfd:x (deleted)', '/usr/lib/... (deleted)'),
    except that leading blanks of a file name are lost in the column padding.
    Raises ValueError on a line that is not in the kernel's format.
    """
    perms_table = _PERMS
    devs: dict[str, int] = {}
    entries = []
    append = entries.append
    # Only "\n" ends a line: a file name may hold "\r" or other characters
    # str.splitlines() would also split on (the kernel escapes only "\n").
    for line in text.split("\n"):
        if not line:
            continue
        # The path is the sixth field; it may itself contain spaces, and the
        # kernel pads the inode column with spaces before it.
        fields = line.split(None, 5)
        try:
            span, perms, offset, dev_text, inode = fields[:5]
            start, _, end = span.partition("-")
            prot, shared = perms_table[perms]
            dev = devs.get(dev_text)
            if dev is None:
                major, _, minor = dev_text.partition(":")
                dev = devs[dev_text] = os.makedev(int(major, 16), int(minor, 16))
            append(
                MapEntry(
                    int(start, 16),
                    int(end, 16),
                    prot,
                    shared,
                    int(offset, 16),
                    dev,
                    int(inode),
                    fields[5] if len(fields) == 6 else "",
                )
            )
        except (ValueError, KeyError) as err:
            raise ValueError(f"malformed maps line: {line!r}") from err
    return tuple(entries)


def read_maps(pid: int) -> tuple[MapEntry, ...]:
    """Return the parsed /proc/PID/maps of `pid`.

    Raises NoSuchProcess, AccessDenied or TraceError.
    """
    text = _read_text(pid, "maps")
    try:
        return parse_maps(text)
    except ValueError as err:
        raise TraceError(f"unexpected /proc/{pid}/maps format: {err}", pid=pid) from err


def read_process_info(pid: int) -> ProcessInfo:
    """Return exe, comm and real uid of `pid`. `exe` is '' for kernel threads,
    which have no executable. Raises NoSuchProcess, AccessDenied or TraceError."""
    uid = _status_field(pid, "Uid:")
    comm = _read_text(pid, "comm").rstrip("\n")
    exe_link = f"/proc/{pid}/exe"
    try:
        exe = os.readlink(exe_link)
    except OSError as err:
        # A kernel thread has no exe link; a gone process has no status either,
        # which the next read detects.
        if err.errno != errno.ENOENT:
            raise _translate(err, pid, exe_link) from err
        _status_field(pid, "Uid:")
        exe = ""
    return ProcessInfo(exe=exe, comm=comm, uid=uid)


def _status_field(pid: int, key: str) -> int:
    """Return the first number of the `key` line of /proc/PID/status (never
    its first line, Name:, whose value the kernel escapes: no line break)."""
    text = _read_text(pid, "status")
    at = text.find("\n" + key)
    if at < 0:
        raise TraceError(f"/proc/{pid}/status has no {key} line", pid=pid)
    at += 1 + len(key)
    end = text.find("\n", at)
    return int((text[at:] if end < 0 else text[at:end]).split()[0])


def _stat_fields(pid: int) -> list[str]:
    """The fields of /proc/PID/stat after the name (which may hold ')' and
    spaces): [0] is field 3, the state. Raises NoSuchProcess, AccessDenied
    or TraceError (also when the text has fewer than 20 of them)."""
    text = _read_text(pid, "stat")
    fields = text.rsplit(")", 1)[-1].split()
    if len(fields) < 20:
        raise TraceError(f"unexpected /proc/{pid}/stat format: {text[:80]!r}", pid=pid)
    return fields


def leader_exited(pid: int) -> bool:
    """Whether the main thread of `pid` has exited (a zombie: the whole
    process not yet reaped, or its leader alone while other threads live
    on, when most of /proc/PID answers EINVAL). Raises NoSuchProcess,
    AccessDenied or TraceError."""
    return _stat_fields(pid)[0] == "Z"


def is_running(pid: int) -> bool:
    """Whether process `pid` exists and is no zombie (its main thread
    alive); False when it cannot be read."""
    try:
        return _stat_fields(pid)[0] not in ("Z", "X")
    except TraceError:
        return False


def read_tgid(tid: int) -> int:
    """Return the thread group id (process id) of thread `tid`.
    Raises NoSuchProcess, AccessDenied or TraceError."""
    return _status_field(tid, "Tgid:")


def start_time_ns(pid: int) -> int:
    """When `pid` started, as a CLOCK_REALTIME time in ns, early enough
    that a file the process changed has a change time no earlier: one
    clock tick before the whole tick /proc/PID/stat counts (the kernel
    stamps change times from its coarse clock, up to a tick behind).
    Raises NoSuchProcess, AccessDenied or TraceError."""
    try:
        ticks = int(_stat_fields(pid)[19])  # field 22, starttime
    except ValueError as err:
        raise TraceError(f"unexpected starttime in /proc/{pid}/stat: {err}", pid=pid) from err
    tick_ns = 1_000_000_000 // os.sysconf("SC_CLK_TCK")
    booted = time.clock_gettime_ns(time.CLOCK_REALTIME) - time.clock_gettime_ns(time.CLOCK_BOOTTIME)
    return booted + (ticks - 1) * tick_ns


def last_pid() -> int:
    """The task number the kernel handed out last (in this pid namespace):
    every task made until now has one no greater, until the numbers wrap.
    Raises TraceError when it cannot be read."""
    try:
        # A raw read, as _read_text's: an exec reads it (a shell loop, each time).
        fd = os.open("/proc/sys/kernel/ns_last_pid", os.O_RDONLY | os.O_CLOEXEC)
        try:
            return int(os.read(fd, 32))
        finally:
            os.close(fd)
    except (OSError, ValueError) as err:
        raise TraceError(f"cannot read /proc/sys/kernel/ns_last_pid: {err}") from err


def read_ppid(pid: int) -> int:
    """Return the parent process id of `pid`.
    Raises NoSuchProcess, AccessDenied or TraceError."""
    return _status_field(pid, "PPid:")


def read_personality(pid: int, tid: int | None = None) -> int:
    """Return the personality(2) flags (READ_IMPLIES_EXEC, ...) of `pid`'s
    thread `tid` (/proc/PID/task/TID/personality: the kernel keeps one per
    thread), or of its leader when `tid` is None.
    Raises NoSuchProcess, AccessDenied (needs ptrace access) or TraceError."""
    name = "personality" if tid is None else f"task/{tid}/personality"
    text = _read_text(pid, name)
    try:
        return int(text, 16)
    except ValueError as err:
        raise TraceError(f"unexpected /proc/{pid}/{name}: {text!r}", pid=pid) from err


def traced_processes(tracer: int) -> list[int]:
    """The pids of the processes whose leader `tracer` traces (TracerPid in
    /proc/PID/status), those it has not yet had a stop of included: a
    process a clone is still making is listed as soon as it has a pid."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/status", encoding="ascii", errors="replace") as file:
                for line in file:
                    if line.startswith("TracerPid:"):
                        if int(line.split()[1]) == tracer:
                            found.append(int(name))
                        break
        except (OSError, ValueError):
            continue  # gone meanwhile
    return found


def wait_channel(tid: int) -> str | None:
    """Return the kernel function thread `tid` sleeps in (/proc/TID/wchan:
    e.g. `wait_for_partner`, a FIFO's open waiting for its other end), or
    None when it runs, is gone or cannot be read."""
    try:
        with open(f"/proc/{tid}/wchan", encoding="ascii", errors="replace") as file:
            name = file.read().strip()
    except OSError:
        return None
    return name if name and name != "0" else None


def thread_name(pid: int, tid: int) -> str:
    """The name (comm) of thread `tid` of `pid`; '' when it is gone."""
    try:
        with open(f"/proc/{pid}/task/{tid}/comm", encoding="utf-8", errors="replace") as file:
            return file.read().rstrip("\n")
    except OSError:
        return ""


def thread_hold(pid: int, tid: int) -> tuple[int, str]:
    """(TracerPid, state letter) of thread `tid` of `pid`, from
    /proc/PID/task/TID/status: who traces it (0: nobody) and whether it
    runs, sleeps, is stopped for its tracer ('t') or is a zombie ('Z').
    Raises NoSuchProcess, AccessDenied or TraceError."""
    text = _read_text(pid, f"task/{tid}/status")
    fields = {}
    for line in text.split("\n")[1:]:  # never Name:, whose value the kernel escapes
        key, _, value = line.partition(":")
        if key in ("State", "TracerPid"):
            fields[key] = value.split()
    try:
        return int(fields["TracerPid"][0]), fields["State"][0]
    except (KeyError, IndexError, ValueError) as err:
        raise TraceError(f"unexpected /proc/{pid}/task/{tid}/status format", pid=pid) from err


def syscall_in_flight(tid: int) -> int | None:
    """The number of the system call thread `tid` is blocked in
    (/proc/TID/syscall), or None when it is in none, runs, is gone or
    cannot be read."""
    try:
        with open(f"/proc/{tid}/syscall", encoding="ascii") as file:
            first = file.read().split(" ", 1)[0]
    except (OSError, ValueError):
        return None
    return int(first) if first.isdigit() else None


# Open /proc/PID/mem descriptors by pid. The kernel binds a mem descriptor to
# the address space it was opened on, so after an exec it reads nothing: the
# reader reopens once when a cached descriptor returns no bytes.
_mem_fds: dict[int, int] = {}


def shm_size(shmid: int) -> int | None:
    """The size of System V shared memory segment `shmid` as the tracer's
    IPC namespace shows it (/proc/sysvipc/shm), or None when it shows none
    such (gone, or another namespace's)."""
    try:
        with open("/proc/sysvipc/shm", encoding="ascii") as f:
            next(f, None)
            for line in f:
                fields = line.split()
                if len(fields) > 3 and fields[1] == str(shmid):
                    return int(fields[3])
    except (OSError, ValueError):
        pass
    return None


def _open_mem(pid: int) -> int:
    path = f"/proc/{pid}/mem"
    with _translated(pid, path):
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    _mem_fds[pid] = fd
    return fd


def read_mem(pid: int, addr: int, size: int) -> bytes:
    """Return up to `size` bytes of `pid`'s memory at `addr` (fewer when the
    range runs past the end of a mapping; b'' for a zombie, which has no
    memory left, or when size is 0). Raises TraceError when `addr` is not
    mapped, NoSuchProcess or AccessDenied. The descriptor stays cached until
    close_mem(pid)."""
    if size <= 0:
        return b""
    fd = _mem_fds.get(pid)
    cached = fd is not None
    if fd is None:
        fd = _open_mem(pid)
    # No context manager and no message unless it fails: a fault emulator
    # reads here once per emulated invocation.
    try:
        data = os.pread(fd, size, addr)
        if not data and cached:
            close_mem(pid)
            data = os.pread(_open_mem(pid), size, addr)
    except OSError as err:
        raise _translate(err, pid, f"{size} bytes at {addr:#x} of /proc/{pid}/mem") from err
    return data


def close_mem(pid: int) -> None:
    """Close the cached /proc/PID/mem and /proc/PID/maps descriptors of
    `pid`, if any (call on exec and exit: each holds the address space it
    was opened on)."""
    for cache in (_mem_fds, _maps_fds):
        fd = cache.pop(pid, None)
        if fd is not None:
            os.close(fd)


# PROCMAP_QUERY (Linux 6.11, <linux/fs.h>): the one VMA covering an address,
# asked of an open /proc/PID/maps (~2 µs where reading and parsing the whole
# file costs 50-100 µs). struct procmap_query: size, query_flags, query_addr,
# vma_start, vma_end, vma_flags, vma_page_size, vma_offset, inode, dev_major,
# dev_minor, vma_name_size, build_id_size, vma_name_addr, build_id_addr.
_PROCMAP_QUERY = struct.Struct("<9Q4I2Q")
_PROCMAP_QUERY_HEAD = struct.Struct("<3Q")
_PROCMAP_QUERY_IOCTL = (3 << 30) | (_PROCMAP_QUERY.size << 16) | (0x66 << 8) | 17
_PROCMAP_VMA_SHARED = 0x8
_maps_fds: dict[int, int] = {}
_procmap_query = [True]  # False once the kernel answers ENOTTY (before 6.11)


class Vma(NamedTuple):
    """One VMA: its range, whether it is shared, and the inode and device of
    its file (0 and 0: none)."""

    start: int
    end: int
    shared: bool
    inode: int
    dev: int

    @property
    def anonymous(self) -> bool:
        """Whether no file backs it: no device (a file's inode number may be
        0, as a FUSE server tells it; its device never is 0:0)."""
        return not self.inode and not self.dev


def vmas_covering(pid: int, start: int, end: int) -> tuple[Vma, ...] | None:
    """The VMAs that cover [start, end) of `pid`'s address space, in order;
    None when a gap is left or the process is gone or unreadable.

    Asks the kernel VMA by VMA (PROCMAP_QUERY) through a /proc/PID/maps
    descriptor kept until close_mem(pid); reads the whole maps file where
    the kernel has no such query."""
    if _procmap_query[0]:
        for _ in range(2):
            try:
                return _vmas_queried(pid, start, end)
            except OSError as err:
                if err.errno == errno.ENOTTY:
                    _procmap_query[0] = False
                    break
                cached = _maps_fds.pop(pid, None)
                if cached is None:
                    return None
                # ESRCH: the descriptor shows an address space that is gone
                # (an exec, or a task number reused): once through a fresh one.
                os.close(cached)
        else:
            return None
    try:
        maps = read_maps(pid)
    except TraceError:
        return None
    return vmas_in(maps, start, end)


def _vmas_queried(pid: int, start: int, end: int) -> tuple[Vma, ...] | None:
    fd = _maps_fds.get(pid)
    if fd is None:
        fd = _maps_fds[pid] = os.open(f"/proc/{pid}/maps", os.O_RDONLY | os.O_CLOEXEC)
    found = []
    covered = start
    while covered < end:
        # Only size and query_addr are set: no filter flags, no name, no build id.
        query = bytearray(_PROCMAP_QUERY.size)
        _PROCMAP_QUERY_HEAD.pack_into(query, 0, _PROCMAP_QUERY.size, 0, covered)
        try:
            fcntl.ioctl(fd, _PROCMAP_QUERY_IOCTL, query)
        except OSError as err:
            if err.errno == errno.ENOENT:
                return None  # no VMA covers `covered`
            raise
        _, _, _, vma_start, vma_end, flags, _, _, inode, major, minor, *_ = _PROCMAP_QUERY.unpack(query)
        shared = bool(flags & _PROCMAP_VMA_SHARED)
        found.append(Vma(vma_start, vma_end, shared, inode, os.makedev(major, minor)))
        covered = vma_end
    return tuple(found)


def vmas_in(maps: Sequence[MapEntry], start: int, end: int) -> tuple[Vma, ...] | None:
    """The entries of `maps` that cover [start, end), as vmas_covering gives them."""
    found = []
    covered = start
    for entry in maps:
        if entry.end <= covered or entry.start >= end:
            continue
        if entry.start > covered:
            return None
        found.append(Vma(entry.start, entry.end, entry.shared, entry.inode, entry.dev))
        covered = entry.end
        if covered >= end:
            break
    return tuple(found) if covered >= end else None


def private_anonymous(pid: int, start: int, end: int) -> bool:
    """Whether [start, end) of `pid`'s address space is covered by private
    mappings of no file (False when the process is gone or unreadable)."""
    vmas = vmas_covering(pid, start, end)
    return vmas is not None and all(vma.anonymous and not vma.shared for vma in vmas)


# /proc/PID/pagemap: one 64-bit word per page (Documentation/admin-guide/mm/pagemap.rst).
_PAGE_PRESENT = 1 << 63
_PAGE_SWAPPED = 1 << 62
_PAGE_FILE = 1 << 61  # a page of the page cache (or shared anonymous memory)
_PAGEMAP_CHUNK = 1 << 16  # words read at a time


def private_copies(pid: int, maps: Sequence[MapEntry]) -> tuple[tuple[int, int], ...]:
    """The pages of `pid`'s private file mappings, read-only or no-access
    now, that hold the process's own copy of the file's page, as address
    ranges in order: pagemap shows them present or swapped and not a page
    of the file. The kernel makes such a copy only when the page was
    written (while it was writable, or through /proc/PID/mem), so their
    history is written whatever the protection says now. Mappings writable
    now are left out (their history is written anyway), as are anonymous
    ones and the kernel's own ([vdso], [vvar]). Raises NoSuchProcess,
    AccessDenied or TraceError."""
    page = os.sysconf("SC_PAGE_SIZE")
    wanted = [entry for entry in maps
              if not entry.shared and not entry.prot & Prot.WRITE and (entry.inode or entry.dev)
              and not entry.path.startswith("[")]
    if not wanted:
        return ()
    path = f"/proc/{pid}/pagemap"
    with _translated(pid, path):
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    runs: list[tuple[int, int]] = []
    try:
        for entry in wanted:
            for first in range(entry.start // page, entry.end // page, _PAGEMAP_CHUNK):
                count = min(_PAGEMAP_CHUNK, entry.end // page - first)
                with _translated(pid, path):
                    data = os.pread(fd, count * 8, first * 8)
                for i, word in enumerate(memoryview(data).cast("Q")):
                    if word & (_PAGE_PRESENT | _PAGE_SWAPPED) and not word & _PAGE_FILE:
                        addr = (first + i) * page
                        if runs and runs[-1][1] == addr:
                            runs[-1] = (runs[-1][0], addr + page)
                        else:
                            runs.append((addr, addr + page))
    finally:
        os.close(fd)
    return tuple(runs)


def shared_may_write(pid: int, maps: Sequence[MapEntry]) -> tuple[tuple[int, int], ...]:
    """The shared mappings of `pid` not writable now that may be made
    writable again (VM_MAYWRITE: `mw` in /proc/PID/smaps' VmFlags: its
    descriptor was open for writing, or a System V attach read-write), as
    address ranges in order: what was written through them before the
    seize is not known, so their history is written. Raises NoSuchProcess,
    AccessDenied or TraceError."""
    if not any(entry.shared and not entry.prot & Prot.WRITE for entry in maps):
        return ()
    found = []
    span: tuple[int, int] | None = None
    for line in _read_text(pid, "smaps").split("\n"):
        head = line.split(None, 2)
        if len(head) > 1 and "-" in head[0] and head[1] in _PERMS:
            prot, shared = _PERMS[head[1]]
            start, _, end = head[0].partition("-")
            span = (int(start, 16), int(end, 16)) if shared and not prot & Prot.WRITE else None
        elif span is not None and line.startswith("VmFlags:"):
            if "mw" in line.split()[1:]:
                found.append(span)
            span = None
    return tuple(found)


# VmFlags of a range registered with a userfaultfd: missing, write-protect, minor faults.
_USERFAULTFD_FLAGS = frozenset({"um", "uw", "ui"})


def userfaultfd_registered(pid: int) -> bool:
    """Whether a range of `pid`'s address space is registered with a
    userfaultfd (`um`, `uw` or `ui` in /proc/PID/smaps' VmFlags): whoever
    holds that descriptor, in the process or not, fills its pages with no
    call of the process's. Raises NoSuchProcess, AccessDenied or TraceError."""
    return any(line.startswith("VmFlags:") and not _USERFAULTFD_FLAGS.isdisjoint(line.split()[1:])
               for line in _read_text(pid, "smaps").split("\n"))


def fd_object(pid: int, fd: int) -> FdObject | None:
    """Return what descriptor `fd` of `pid` refers to: its link text
    ('/usr/lib/x.so', '/memfd:libffi (deleted)', 'socket:[123]') and the
    device/inode and mode of the object. Returns None when `fd` is negative or not
    open. Raises NoSuchProcess, AccessDenied or TraceError."""
    if fd < 0:
        return None
    link = f"/proc/{pid}/fd/{fd}"
    try:
        # One look at the descriptor: the program may swap it (dup2) between
        # a stat and a readlink of the link; an O_PATH open pins one object.
        pinned = os.open(link, os.O_PATH | os.O_CLOEXEC)
    except OSError as err:
        if err.errno == errno.ENOENT and os.path.isdir(f"/proc/{pid}/fd"):
            return None
        raise _translate(err, pid, link) from err
    try:
        st = _stat_cached("", pinned)  # no request to a FUSE server the tracer may hold
        path = os.readlink(f"/proc/self/fd/{pinned}")
    except OSError as err:
        raise _translate(err, pid, link) from err
    finally:
        os.close(pinned)
    return FdObject(fd=fd, path=path, dev=st.st_dev, inode=st.st_ino, mode=st.st_mode,
                    ctime_ns=st.st_ctime_ns)


_libc = ctypes.CDLL(None, use_errno=True)
_MISC_MAJOR = 10
_FS_TYPES = {"proc": PROC_SUPER_MAGIC, "overlay": OVERLAYFS_SUPER_MAGIC}


class _StatFs(ctypes.Structure):
    # struct statfs on x86-64: f_type first, 120 bytes in all.
    _fields_ = (("f_type", ctypes.c_long), ("rest", ctypes.c_byte * 112))


_libc.statfs.argtypes = (ctypes.c_char_p, ctypes.POINTER(_StatFs))


def _fs_type(pid: int, fd: int, link: str, device: int) -> int:
    """The filesystem magic of descriptor `fd` of `pid` (`link`, on
    `device`) as far as it matters (PROC_SUPER_MAGIC, OVERLAYFS_SUPER_MAGIC,
    or 0 for any other mount `pid` lists), with no request to a FUSE filesystem: its server
    may be a task the tracer keeps stopped, and statfs would wait for it
    for ever. A mount `pid` lists is told by its type there (the mount id
    from fdinfo); another (internal: a memfd's; another namespace's reached
    through /proc/PID/root; detached) by statfs, unless it is a FUSE
    connection (0)."""
    mnt_id = next((line[7:].strip() for line in _read_text(pid, f"fdinfo/{fd}").splitlines()
                   if line.startswith("mnt_id:")), None)
    for line in _read_text(pid, "mountinfo").splitlines():
        if line.split(" ", 1)[0] == mnt_id:
            _, _, after = line.partition(" - ")
            return _FS_TYPES.get(after.split(" ", 1)[0], 0)
    if fuse_abort.is_connection(device):
        return 0
    buf = _StatFs()
    if _libc.statfs(link.encode(), ctypes.byref(buf)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), link)
    return buf.f_type & 0xFFFFFFFF


# statx(2): the attributes the kernel has cached (AT_STATX_DONT_SYNC), so no
# request reaches a network or FUSE filesystem (its server may be a task the
# tracer keeps stopped).
_AT_STATX_DONT_SYNC = 0x4000
_AT_FDCWD = -100
_AT_EMPTY_PATH = 0x1000
_libc.statx.argtypes = (ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_uint, ctypes.c_void_p)
_STATX_BASIC_STATS = 0x7FF
_STATX = struct.Struct("<I4xQ3I H2x Q16x8x 32x qI4x 16x 4I")


@dataclass(frozen=True)
class _CachedStat:
    st_dev: int
    st_ino: int
    st_mode: int
    st_rdev: int
    st_ctime_ns: int


def _stat_cached(path: str, dirfd: int = _AT_FDCWD) -> _CachedStat:
    """stat(path) (the link followed; with dirfd and path "", fstat(dirfd))
    from the attributes the kernel holds."""
    buf = ctypes.create_string_buffer(256)
    flags = _AT_STATX_DONT_SYNC | (_AT_EMPTY_PATH if not path else 0)
    if _libc.statx(dirfd, path.encode(), flags, _STATX_BASIC_STATS, buf) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), path)
    (_, _, _, _, _, mode, ino, ctime_s, ctime_ns,
     rdev_major, rdev_minor, dev_major, dev_minor) = _STATX.unpack_from(buf.raw)
    return _CachedStat(os.makedev(dev_major, dev_minor), ino, mode, os.makedev(rdev_major, rdev_minor),
                       ctime_s * 1_000_000_000 + ctime_ns)


@functools.cache
def misc_devices() -> dict[int, str]:
    """Minor number -> name of the misc character devices (/proc/misc)."""
    found = {}
    try:
        with open("/proc/misc") as lines:
            for line in lines:
                minor, _, name = line.strip().partition(" ")
                if minor.isdigit():
                    found[int(minor)] = name
    except OSError:
        pass
    return found


def _named_mem(path: str) -> bool:
    """Whether a descriptor's link names a file called mem (procfs's
    dentry name for every /proc/PID/mem and task mem file, on any mount)."""
    return path == "mem" or path.endswith(("/mem", "/mem (deleted)"))


def fd_view(pid: int, fd: int, access: int | None = None) -> FdObject | None:
    """Return the kernel's view of descriptor `fd` of `pid` (read at a
    syscall's exit, never from the program's arguments): its link text,
    stat, filesystem magic (read only for a file named mem: 0 otherwise),
    access mode and misc device name. `access`, when
    the caller knows it from a register the kernel read (an open's flags),
    spares reading fdinfo. Returns None when `fd` is not open. Raises
    NoSuchProcess, AccessDenied or TraceError."""
    link = f"/proc/{pid}/fd/{fd}"
    try:
        st = _stat_cached(link)
        path = os.readlink(link)
        flags = access if access is not None else next(
            int(line[6:].strip(), 8) for line in _read_text(pid, f"fdinfo/{fd}").splitlines()
            if line.startswith("flags:"))
        # Only procfs's mem files matter among procfs files (no other one can
        # hold code). The filesystem is read for a file named mem, and for a
        # regular file open for writing on a device-less filesystem (procfs
        # among them): a mem file bind-mounted over another name is named by
        # the mount it was opened through.
        named_mem = _named_mem(path)
        writable = flags & 0o3 in (os.O_WRONLY, os.O_RDWR)
        fs_type = (_fs_type(pid, fd, link, st.st_dev) if named_mem or (
            writable and stat.S_ISREG(st.st_mode) and os.major(st.st_dev) == 0) else 0)
        mem_file = named_mem or (fs_type == PROC_SUPER_MAGIC and writable and _bind_mounted_mem(pid, link))
    except StopIteration as err:
        raise TraceError(f"/proc/{pid}/fdinfo/{fd} has no flags line", pid=pid) from err
    except OSError as err:
        if err.errno == errno.ENOENT and os.path.isdir(f"/proc/{pid}/fd"):
            return None
        raise _translate(err, pid, link) from err
    misc = None
    if stat.S_ISCHR(st.st_mode) and os.major(st.st_rdev) == _MISC_MAJOR:
        misc = misc_devices().get(os.minor(st.st_rdev))
    return FdObject(fd=fd, path=path, dev=st.st_dev, inode=st.st_ino, mode=st.st_mode, rdev=st.st_rdev,
                    fs_type=fs_type, access=flags & 0o3, misc=misc, ctime_ns=st.st_ctime_ns,
                    mem_file=mem_file)


def _bind_mounted_mem(pid: int, link: str) -> bool:
    """Whether procfs file `link` (a /proc link of `pid`'s) was opened through
    a file bind mount of a mem file: the root of its mount, in `pid`'s
    mountinfo, is a file named mem. A mount `pid` does not list (detached
    since, or a mount id that cannot be read) counts as one: unknown is
    unsafe."""
    root = _mount_root(pid, link)
    return root is None or _named_mem(root)


def _mount_root(pid: int, link: str) -> str | None:
    """The root (path inside its filesystem) of the mount `link` lives on,
    from `pid`'s mountinfo; None when the mount is not listed there."""
    mnt_id = _mount_id(link)
    if mnt_id is None:
        return None
    for line in _read_text(pid, "mountinfo").splitlines():
        fields = line.split(" ", 4)
        if len(fields) > 4 and fields[0] == str(mnt_id):
            return fields[3]
    return None



def _mountinfo_devices(pid: int) -> dict[int, int]:
    """Mount id -> device (major:minor of its superblock), from /proc/PID/mountinfo."""
    found = {}
    for line in _read_text(pid, "mountinfo").splitlines():
        fields = line.split(" ", 3)
        if len(fields) > 3:
            major, _, minor = fields[2].partition(":")
            found[int(fields[0])] = os.makedev(int(major), int(minor))
    return found


def devices_of_type(pid: int, types: frozenset[str]) -> frozenset[int]:
    """The devices of the filesystems of `types` mounted where `pid` sees
    them (a type with a subtype, `fuse.sshfs`, counts as its type too).
    Raises NoSuchProcess, AccessDenied or TraceError."""
    found = set()
    for line in _read_text(pid, "mountinfo").splitlines():
        fields = line.split(" ", 3)
        _, _, after = line.partition(" - ")
        fs_type = after.split(" ", 1)[0]
        if len(fields) > 3 and fs_type.partition(".")[0] in types:
            major, _, minor = fields[2].partition(":")
            found.add(os.makedev(int(major), int(minor)))
    return frozenset(found)


# Filesystems whose files hold what the kernel puts there, some of it what
# the tree tells it (a trace_marker write lands in a tracing ring buffer,
# which mprotect makes executable though mmap refuses PROT_EXEC).
KERNEL_FILLED_TYPES = frozenset({"tracefs", "debugfs", "sysfs", "proc", "securityfs", "configfs", "bpf",
                                 "pstore", "efivarfs", "cgroup", "cgroup2"})

# Filesystems whose change times do not tell what was written: shared
# mappings of tmpfs and hugetlbfs ask for no write notice (a page read first
# is mapped writable, and stores through it change no time stamp), and a
# FUSE server (any subtype) says whatever times it wants.
UNSTAMPED_TYPES = frozenset({"tmpfs", "devtmpfs", "hugetlbfs", "fuse", "fuseblk"})


def mount_devices(pid: int) -> frozenset[int]:
    """The devices of the superblocks behind every mount `pid` sees, and of
    the filesystem of its root directory (in a chroot whose root is no mount
    point, no mountinfo line names that one). Raises NoSuchProcess,
    AccessDenied or TraceError."""
    devices = set(_mountinfo_devices(pid).values())
    with _translated(pid, f"/proc/{pid}/root", "stat"):
        devices.add(os.stat(f"/proc/{pid}/root").st_dev)
    return frozenset(devices)


_STATX_MNT_ID = 0x1000
_STATX_MNT_ID_OFFSET = 144


def _mount_id(path: str) -> int | None:
    """The id of the mount `path` lives on (statx), None when it cannot be read."""
    buf = ctypes.create_string_buffer(256)
    if _libc.statx(_AT_FDCWD, path.encode(), _AT_STATX_DONT_SYNC, _STATX_MNT_ID, buf) != 0:
        return None
    return int.from_bytes(buf.raw[_STATX_MNT_ID_OFFSET:_STATX_MNT_ID_OFFSET + 8], "little")


def mount_device(pid: int, path: str) -> int | None:
    """The device of the superblock mounted where `path` (a /proc link of
    `pid`'s: fd/N, exe, map_files/...) lives, found by the file's mount id
    (statx) in `pid`'s own mountinfo (its mount namespace). Unlike st_dev it
    names the filesystem even where files report devices of their own (btrfs
    subvolumes). None when it cannot be told (no such mount listed)."""
    mnt_id = _mount_id(path)
    if mnt_id is None:
        return None
    try:
        return _mountinfo_devices(pid).get(mnt_id)
    except TraceError:
        return None

def _block_nodes(device: int) -> Iterator[str]:
    """The /sys nodes of the block devices whose blocks hold block device
    `device`'s: itself, the disk of a partition, the devices a device-mapper
    or md device is stacked on, and the block device a loop device is bound
    to (its backing file is one), each followed in turn."""
    pending = [os.path.realpath(f"/sys/dev/block/{os.major(device)}:{os.minor(device)}")]
    seen: set[str] = set()
    while pending:
        node = pending.pop()
        if node in seen or not os.path.isdir(node):
            continue
        seen.add(node)
        yield node
        if os.path.exists(os.path.join(node, "partition")):
            pending.append(os.path.dirname(node))
        backing = _loop_backing_file(node)
        with contextlib.suppress(OSError):
            if backing and stat.S_ISBLK((st := os.stat(backing)).st_mode):
                pending.append(os.path.realpath(f"/sys/dev/block/{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}"))
        with contextlib.suppress(OSError):
            pending.extend(os.path.realpath(os.path.join(node, "slaves", name))
                           for name in os.listdir(os.path.join(node, "slaves")))


def _loop_backing_file(node: str) -> str | None:
    """The backing file of the loop device at /sys node `node` ("" when it
    cannot be read); None for a device that is no loop device."""
    if not os.path.isdir(os.path.join(node, "loop")):
        return None
    try:
        with open(os.path.join(node, "loop", "backing_file")) as f:
            return f.read().rstrip("\n")
    except OSError:
        return ""


def loop_backing_files(device: int) -> list[str]:
    """The backing files of the loop devices under block device `device`
    (itself, the disk of a partition, the devices a device-mapper or md
    device is stacked on, the block device a loop device is bound to), as
    /sys names them; "" for one whose name cannot be read. Empty for a
    device with no loop device under it."""
    return [backing for node in _block_nodes(device) if (backing := _loop_backing_file(node)) is not None]


def block_stack(device: int) -> frozenset[int]:
    """Block device `device` and every block device under it (as
    loop_backing_files follows them): writing any of them may write blocks
    of a filesystem on `device`. Just `device` when /sys shows no more."""
    found = {device}
    for node in _block_nodes(device):
        with contextlib.suppress(OSError, ValueError), open(os.path.join(node, "dev")) as f:
            major, _, minor = f.read().strip().partition(":")
            found.add(os.makedev(int(major), int(minor)))
    return frozenset(found)


def swap_files() -> frozenset[tuple[int, int]]:
    """(device, inode) of every regular file /proc/swaps lists as a swap
    area: the kernel writes swapped-out pages of any process into its blocks
    by block I/O, which stamps no time on the file. A path that no longer
    stats from here (another mount namespace, renamed) is left out."""
    found = set()
    try:
        with open("/proc/swaps", "rb") as f:
            lines = f.read().splitlines()[1:]
    except OSError:
        return frozenset()
    for line in lines:
        fields = line.split()
        if len(fields) < 2 or fields[1] != b"file":
            continue
        # seq_file escapes space, tab, newline and backslash as \ooo.
        path = re.sub(rb"\\([0-7]{3})", lambda m: bytes([int(m[1], 8)]), fields[0])
        with contextlib.suppress(OSError):
            info = os.stat(path)
            found.add((info.st_dev, info.st_ino))
    return frozenset(found)


def list_fds(pid: int) -> list[int]:
    """The open descriptors of `pid`. Raises NoSuchProcess or TraceError."""
    return _numeric_entries(f"/proc/{pid}/fd", pid)


def fd_link(pid: int, fd: int) -> str | None:
    """The link text of descriptor `fd` of `pid` (None when it is closed)."""
    try:
        return os.readlink(f"/proc/{pid}/fd/{fd}")
    except OSError as err:
        if err.errno == errno.ENOENT:
            return None
        raise _translate(err, pid, f"/proc/{pid}/fd/{fd}") from err


def mapped_object(pid: int, start: int, end: int) -> FdObject | None:
    """Return the object the kernel maps at [start, end) of `pid` (what an
    mmap really mapped, whatever its descriptor number meant by then): from
    /proc/PID/map_files when the mapping is one VMA of exactly that range,
    else from the /proc/PID/maps line holding `start`. None when no file
    object is mapped there. Raises NoSuchProcess, AccessDenied or TraceError."""
    link = f"/proc/{pid}/map_files/{start:x}-{end:x}"
    try:
        st = _stat_cached(link)  # no request to a FUSE server the tracer may hold
        return FdObject(fd=-1, path=os.readlink(link), dev=st.st_dev, inode=st.st_ino,
                        mode=st.st_mode, ctime_ns=st.st_ctime_ns)
    except OSError as err:
        if err.errno not in _GONE:
            raise _translate(err, pid, link) from err
    for entry in read_maps(pid):
        if entry.start <= start < entry.end:
            return mapped_file(pid, entry) if entry.dev else None
    return None


def mapped_file(pid: int, entry: MapEntry) -> FdObject:
    """The file a maps line of `pid` maps, named as the maps line names it
    (its device and inode), with the change time of the object the kernel
    really maps (/proc/PID/map_files; 0 when that cannot be read)."""
    try:
        ctime_ns = _stat_cached(f"/proc/{pid}/map_files/{entry.start:x}-{entry.end:x}").st_ctime_ns
    except OSError:
        ctime_ns = 0
    return FdObject(fd=-1, path=entry.path, dev=entry.dev, inode=entry.inode, ctime_ns=ctime_ns)


def exe_object(tid: int) -> FdObject | None:
    """The identity of the program `tid` runs (/proc/TID/exe, from the
    attributes the kernel holds), None when it cannot be read."""
    try:
        st = _stat_cached(f"/proc/{tid}/exe")
    except OSError:
        return None
    return FdObject(-1, "", st.st_dev, st.st_ino, st.st_mode, ctime_ns=st.st_ctime_ns)


def fd_flags(pid: int, fd: int) -> int:
    """Return the file status flags of descriptor `fd` of `pid` (the 'flags:'
    line of /proc/PID/fdinfo/FD, octal). Raises NoSuchProcess (also when fd
    is not open), AccessDenied or TraceError."""
    for line in _read_text(pid, f"fdinfo/{fd}").splitlines():
        if line.startswith("flags:"):
            return int(line[6:].strip(), 8)
    raise TraceError(f"/proc/{pid}/fdinfo/{fd} has no flags line", pid=pid)


def fd_position(pid: int, fd: int) -> int:
    """Return the file position of descriptor `fd` of `pid` (the 'pos:' line
    of /proc/PID/fdinfo/FD). Raises NoSuchProcess (also when fd is not
    open), AccessDenied or TraceError."""
    for line in _read_text(pid, f"fdinfo/{fd}").splitlines():
        if line.startswith("pos:"):
            return int(line[4:])
    raise TraceError(f"/proc/{pid}/fdinfo/{fd} has no pos line", pid=pid)


def _numeric_entries(path: str, pid: int | None) -> list[int]:
    with _translated(pid, path):
        names = os.listdir(path)
    return sorted(int(name) for name in names if name.isdigit())


def list_threads(pid: int) -> list[int]:
    """Return the thread ids of `pid`, sorted. Raises NoSuchProcess, AccessDenied or TraceError."""
    return _numeric_entries(f"/proc/{pid}/task", pid)


def list_pids() -> list[int]:
    """Return the ids of all processes visible in /proc, sorted."""
    return _numeric_entries("/proc", None)


class ShmSegment(NamedTuple):
    """A System V segment as /proc/sysvipc/shm shows it: its size in bytes,
    and the latest of its last attach, last detach and creation or last
    change (shm_atime, shm_dtime, shm_ctime), in whole seconds of
    CLOCK_REALTIME (the kernel stamps no write)."""

    size: int
    touched_s: int


def shm_segment(shmid: int) -> ShmSegment | None:
    """Return System V segment `shmid` as the tracer's IPC namespace shows
    it (/proc/sysvipc/shm), or None when it shows no such segment."""
    try:
        with open("/proc/sysvipc/shm", encoding="ascii") as table:
            next(table, None)
            for line in table:
                fields = line.split()
                if len(fields) > 13 and int(fields[1]) == shmid:
                    return ShmSegment(int(fields[3]), max(int(t) for t in fields[11:14]))
    except (OSError, ValueError):
        return None
    return None


def same_namespace(pid: int, kind: str) -> bool:
    """Whether `pid` is in the tracer's namespace of `kind` ('ipc', 'pid'):
    False when it cannot be told (gone, unreadable)."""
    try:
        return os.readlink(f"/proc/{pid}/ns/{kind}") == os.readlink(f"/proc/self/ns/{kind}")
    except OSError:
        return False


def write_mem(pid: int, addr: int, data: bytes) -> None:
    """Write `data` into `pid`'s memory at `addr` through /proc/PID/mem, which
    (like ptrace POKE) writes even pages mapped without write permission.
    Raises TraceError when the range is not mapped, NoSuchProcess or AccessDenied."""
    path = f"/proc/{pid}/mem"
    with _translated(pid, f"{len(data)} bytes at {addr:#x} of {path}", verb="write"):
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        try:
            written = os.pwrite(fd, data, addr)
        finally:
            os.close(fd)
    if written != len(data):
        raise TraceError(f"short write of {len(data)} bytes at {addr:#x}", pid=pid)
