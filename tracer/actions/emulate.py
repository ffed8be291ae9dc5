"""trampfd emulated for a traced program: the glue between the pure emulator
(tracer/trampfd) and the ptrace source's control interface.

`TrampfdEmulator` is the source's SyscallHandler. It serves the trampfd
syscall and the file operations of trampfds, which live at or above
FD_FLOOR: the first time a process gets a trampfd, a second seccomp filter
that stops it for I/O on descriptors at or above the floor is installed in
it (so a program that never uses trampfd pays nothing for its I/O). It
makes v1 trampoline pages and v2 tables by injecting syscalls into the
program, and answers the SIGSEGV of a v1 invocation by loading the
trampoline's registers. docs/trampfd.md describes every decision.
"""

from __future__ import annotations

import errno
import fcntl
import mmap
import os
import socket
import struct
import time
from collections.abc import Callable, Sequence

from ..abi import (
    EMULATOR_SYSCALLS_X86_64,
    MAP_ANONYMOUS,
    MAP_FIXED,
    MAP_PRIVATE,
    MREMAP_FIXED,
    PROT_EXEC,
    PROT_READ,
    PROT_WRITE,
    SYSCALLS_X86_64,
)
from ..errors import TraceError, TrampwatchError
from ..events import TrampfdEvent
from ..sources import procfs
from ..sources.ptrace_source import Control, RawCall
from ..sources.seccomp_filter import TrapRule, filter_program, x86_64_syscall_name
from ..trampfd import FD_FLOOR, PAGE_SIZE, AddressSpace, Refused, TrampolineTable, TrampolineV1
from ..trampfd.layout import USER
from ..trampfd.syscall_rule import PROCESS_MADVISE, V1, tell_apart
from ..trampfd.v1 import Fetch, check_create, check_user
from ..trampfd.v2 import INFO_STRUCT

Trampfd = TrampolineV1 | TrampolineTable

_NR = {**SYSCALLS_X86_64, **EMULATOR_SYSCALLS_X86_64}
_FD_CALLS = ("read", "write", "pread64", "pwrite64", "lseek", "readv", "writev", "preadv", "pwritev",
             "preadv2", "pwritev2", "dup", "dup2", "dup3", "fcntl", "mmap")
_VECTOR_CALLS = ("readv", "writev", "preadv", "pwritev", "preadv2", "pwritev2")
# Calls that hand the program a descriptor at the lowest free number: a
# trampfd arriving this way is moved up to the floor before the call returns.
_RECEIVING_CALLS = ("recvmsg", "recvmmsg", "pidfd_getfd")
_FORGETTING_CALLS = ("munmap", "mremap", "mprotect", "pkey_mprotect")

_MEMFD_NAME = b"[trampfd]\0"
_MEMFD_PATH = "/memfd:[trampfd]"
_PIDFD_PATH = "anon_inode:[pidfd]"
_MSGHDR = struct.Struct("<QI4xQQQQi4x")  # name, namelen, iov, iovlen, control, controllen, flags
_MMSGHDR_SIZE = 64
_CMSGHDR = struct.Struct("<Qii")
_INT = struct.Struct("<i")
_U64 = struct.Struct("<Q")
_NO_FD = (1 << 64) - 1
_SOCK_FPROG = struct.Struct("<H6xQ")  # struct sock_fprog { unsigned short len; struct sock_filter *filter; }
_SECCOMP_SET_MODE_FILTER = 1
_SECCOMP_FILTER_FLAG_TSYNC = 1


def _signed(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def _fetcher(ctl: Control, addr: int) -> Fetch:
    """Read the caller's buffer at addr as the kernel would (EFAULT where
    the program itself could not read)."""
    def fetch(count: int) -> bytes:
        data = ctl.copy_from_user(addr, count)
        if data is None:
            raise Refused(errno.EFAULT, "the buffer is not readable")
        return data
    return fetch


class TrampfdEmulator:
    """Serves trampfd (v1 and v2) to a traced process tree.

    `nr` is the trampfd syscall number, `trace_invocations` asks for one
    event per v1 invocation; TrampfdEvents are reported through the
    thread's Control, which the source delivers like its own events.
    """

    def __init__(self, nr: int, trace_invocations: bool, fd_floor: int = FD_FLOOR):
        name = x86_64_syscall_name(nr)
        if name not in (None, "process_madvise"):
            raise TrampwatchError(f"--trampfd-nr {nr} is {name} on x86-64: serving trampfd there would break "
                                  "every call to it; pick an unused number (or 440, shared with "
                                  "process_madvise as docs/trampfd.md explains)")
        self.nr = nr
        self.trace_invocations = trace_invocations
        self.floor = fd_floor
        self.files: dict[tuple[int, int], Trampfd] = {}
        self.spaces: dict[int, AddressSpace] = {}
        # Processes with the descriptor filter installed (inherited by fork, kept by exec).
        self.filtered: set[int] = set()
        self._fd_filter = filter_program(
            TrapRule(name, arg=0 if name != "mmap" else 4, at_least=fd_floor) for name in _FD_CALLS)
        self._shares_process_madvise = nr == SYSCALLS_X86_64["process_madvise"]
        handlers: dict[str, Callable[[RawCall, Control], bool]] = {
            "read": self._read, "write": self._write, "pread64": self._pread, "pwrite64": self._pwrite,
            "lseek": self._lseek, "mmap": self._mmap, "dup": self._dup, "dup2": self._dup2,
            "dup3": self._dup2, "fcntl": self._fcntl, "recvmsg": self._recvmsg,
            "recvmmsg": self._recvmsg, "pidfd_getfd": self._pidfd_getfd,
        }
        handlers.update(dict.fromkeys(_VECTOR_CALLS, self._vector))
        handlers.update(dict.fromkeys(_FORGETTING_CALLS, self._forget))
        self._handlers = {_NR[name]: handler for name, handler in handlers.items()}
        self._handlers[nr] = self._create

    # --- the SyscallHandler protocol -------------------------------------------------

    def trap_rules(self) -> Sequence[TrapRule]:
        """The trampfd syscall (x86-64 only) and the calls that receive
        descriptors; I/O on trampfds is trapped by the filter installed
        when a process first gets one."""
        return (TrapRule(self.nr), *(TrapRule(name) for name in _RECEIVING_CALLS))

    def on_syscall(self, call: RawCall, ctl: Control) -> bool:
        """Serve a trapped call; True when it was answered and must not run."""
        if call.arch != "x86_64":
            return False
        handler = self._handlers.get(call.nr)
        if handler is None:
            return False
        try:
            return handler(call, ctl)
        except Refused as refusal:
            ctl.finish(-refusal.errno)
            return True

    def on_fault(self, pid: int, tid: int, ctl: Control) -> bool:
        """Emulate a v1 invocation; True when the registers were patched and
        the SIGSEGV must be suppressed."""
        space = self.spaces.get(pid)
        if space is None or not space.v1_pages:
            return False
        pc = ctl.register("rip")
        page = pc & ~(PAGE_SIZE - 1)
        # The PC can be inside a PROT_NONE page only by fetching from it: this
        # is an instruction fetch there (a data access faults elsewhere).
        trampoline = space.v1_pages.get(page)
        if trampoline is None:
            return False
        sp = ctl.register("rsp")
        patch = trampoline.invoke(page, pc, sp)
        if patch is None:
            return False
        ctl.set_registers(patch.registers)
        if patch.stack_data and not ctl.copy_to_user(patch.stack_addr, patch.stack_data):
            return False  # the kernel's failed copy: SIGSEGV, registers already loaded
        if self.trace_invocations:
            caller = ctl.read(sp, 8)
            self._event(ctl, pid, tid, "invoke", 1, addr=page, length=PAGE_SIZE,
                        target=patch.registers["rip"], registers=tuple(patch.registers.items()),
                        caller=_U64.unpack(caller)[0] if len(caller) == 8 else 0)
        return True

    def on_fork(self, parent_pid: int, child_pid: int, thread: bool, shares_vm: bool) -> None:
        """A child sharing the address space shares its trampolines; a fork
        copy keeps the tables but no v1 page (they are don't-copy)."""
        if thread:
            return
        if parent_pid in self.filtered:
            self.filtered.add(child_pid)
        space = self.spaces.get(parent_pid)
        if space is not None:
            self.spaces[child_pid] = space if shares_vm else space.forked()

    def on_exec(self, pid: int, ctl: Control) -> None:
        """A new program: a new, empty address space."""
        self.spaces.pop(pid, None)

    def on_exit(self, pid: int) -> None:
        """The process is gone, and its address space with it."""
        self.spaces.pop(pid, None)
        self.filtered.discard(pid)

    # --- creation -------------------------------------------------------------------------

    def _create(self, call: RawCall, ctl: Control) -> bool:
        kind = tell_apart(call.args, self._shares_process_madvise, lambda fd: self._is_pidfd(call.tid, fd))
        if kind == PROCESS_MADVISE:
            return False
        trampoline: Trampfd
        if kind == V1:
            check_create(call.args[0], call.args[1], call.args[2])
            check_user(_fetcher(ctl, call.args[1])(USER.size))
            trampoline = TrampolineV1()
        else:
            if not ctl.copy_to_user(call.args[0], INFO_STRUCT):
                raise Refused(errno.EFAULT, "info is not writable")
            trampoline = TrampolineTable(creator=call.pid)
        self._filter_descriptors(call.pid, ctl)
        fd, key = self._new_descriptor(call, ctl)
        self.files[key] = trampoline
        self._event(ctl, call.pid, call.tid, "create", trampoline.version, caller=call.ip)
        ctl.finish(fd)
        return True

    def _new_descriptor(self, call: RawCall, ctl: Control) -> tuple[int, tuple[int, int]]:
        """Make a close-on-exec memfd named [trampfd] at or above the floor;
        return its number and (dev, inode)."""
        scratch = ctl.scratch(_MEMFD_NAME)
        if scratch is None:
            raise Refused(errno.ENOMEM, "no stack below the red zone")
        memfd = ctl.inject(_NR["memfd_create"], scratch, os.MFD_CLOEXEC)
        if memfd < 0:
            raise Refused(-memfd)
        fd = ctl.inject(_NR["fcntl"], memfd, fcntl.F_DUPFD_CLOEXEC, self.floor)
        ctl.inject(_NR["close"], memfd)
        if fd < 0:
            # EINVAL: RLIMIT_NOFILE is below the floor, so no descriptor fits.
            raise Refused(errno.EMFILE if fd == -errno.EINVAL else -fd)
        obj = procfs.fd_object(call.tid, fd)
        if obj is None:
            raise Refused(errno.EBADF)
        return fd, (obj.dev, obj.inode)

    def _filter_descriptors(self, pid: int, ctl: Control) -> None:
        """Install the descriptor filter in process pid (every thread), once."""
        if pid in self.filtered:
            return
        page = self._map_page(ctl, 0, PROT_READ | PROT_WRITE)
        program = _SOCK_FPROG.pack(len(self._fd_filter) // 8, page + _SOCK_FPROG.size) + self._fd_filter
        copied = ctl.copy_to_user(page, program)
        result = ctl.inject(_NR["seccomp"], _SECCOMP_SET_MODE_FILTER, _SECCOMP_FILTER_FLAG_TSYNC, page)
        ctl.inject(_NR["munmap"], page, PAGE_SIZE)
        if not copied:
            raise Refused(errno.ENOMEM, "could not write the filter")
        if result != 0:
            # A positive result names a thread TSYNC could not synchronise.
            raise Refused(errno.EAGAIN if result > 0 else -result, "could not install the filter")
        self.filtered.add(pid)

    def _is_pidfd(self, tid: int, fd: int) -> bool:
        try:
            obj = procfs.fd_object(tid, fd)
        except TraceError:
            return False
        return obj is not None and obj.path == _PIDFD_PATH

    # --- file operations ----------------------------------------------------------------------

    def _file(self, tid: int, raw_fd: int, floor: bool = True) -> Trampfd | None:
        """The trampfd behind descriptor raw_fd of the caller, or None."""
        fd = raw_fd & 0xFFFFFFFF  # the kernel reads an int
        if fd >= 1 << 31 or (floor and fd < self.floor) or not self.files:
            return None
        try:
            obj = procfs.fd_object(tid, fd)
        except TraceError:
            return None
        if obj is None or not obj.path.startswith(_MEMFD_PATH):
            return None
        return self.files.get((obj.dev, obj.inode))

    def _read(self, call: RawCall, ctl: Control) -> bool:
        trampoline = self._file(call.tid, call.args[0])
        if trampoline is None:
            return False
        position = self._position(call)
        return position is not None and self._answer_read(call, ctl, trampoline, position)

    @staticmethod
    def _position(call: RawCall) -> int | None:
        """The file position of the call's descriptor (None: closed meanwhile
        by another thread, and the kernel will say EBADF)."""
        try:
            return procfs.fd_position(call.tid, call.args[0] & 0xFFFFFFFF)
        except TraceError:
            return None

    def _pread(self, call: RawCall, ctl: Control) -> bool:
        trampoline = self._file(call.tid, call.args[0])
        if trampoline is None:
            return False
        return self._answer_read(call, ctl, trampoline, _signed(call.args[3]))

    def _answer_read(self, call: RawCall, ctl: Control, trampoline: Trampfd, offset: int) -> bool:
        buf, count = call.args[1], call.args[2]
        if not ctl.copy_to_user(buf, trampoline.read(offset, buf, count)):
            raise Refused(errno.EFAULT, "the buffer is not writable")
        ctl.finish(count)
        return True

    def _write(self, call: RawCall, ctl: Control) -> bool:
        trampoline = self._file(call.tid, call.args[0])
        if trampoline is None:
            return False
        position = self._position(call)
        return position is not None and self._answer_write(call, ctl, trampoline, position)

    def _pwrite(self, call: RawCall, ctl: Control) -> bool:
        trampoline = self._file(call.tid, call.args[0])
        if trampoline is None:
            return False
        return self._answer_write(call, ctl, trampoline, _signed(call.args[3]))

    def _answer_write(self, call: RawCall, ctl: Control, trampoline: Trampfd, offset: int) -> bool:
        buf, count = call.args[1], call.args[2]
        ctl.finish(trampoline.write(offset, buf, count, _fetcher(ctl, buf)))
        return True

    def _lseek(self, call: RawCall, ctl: Control) -> bool:
        trampoline = self._file(call.tid, call.args[0])
        if trampoline is None:
            return False
        trampoline.seek(_signed(call.args[1]), call.args[2] & 0xFFFFFFFF)
        return False  # valid: the kernel moves the memfd's position, shared like a trampfd's

    def _vector(self, call: RawCall, ctl: Control) -> bool:
        if self._file(call.tid, call.args[0]) is None:
            return False
        raise Refused(errno.EINVAL, "trampfd has no vectored I/O")

    def _dup(self, call: RawCall, ctl: Control) -> bool:
        if self._file(call.tid, call.args[0]) is None:
            return False
        ctl.finish(ctl.inject(_NR["fcntl"], call.args[0], fcntl.F_DUPFD, self.floor))
        return True

    def _dup2(self, call: RawCall, ctl: Control) -> bool:
        if (call.args[1] & 0xFFFFFFFF) >= self.floor or self._file(call.tid, call.args[0]) is None:
            return False
        raise Refused(errno.EBADF, "a trampfd cannot move below the descriptor floor")

    def _fcntl(self, call: RawCall, ctl: Control) -> bool:
        fd, cmd, minimum = call.args[0], call.args[1] & 0xFFFFFFFF, call.args[2]
        if cmd not in (fcntl.F_DUPFD, fcntl.F_DUPFD_CLOEXEC) or minimum >= self.floor:
            return False
        if self._file(call.tid, fd) is None:
            return False
        ctl.finish(ctl.inject(_NR["fcntl"], fd, cmd, self.floor))
        return True

    # --- descriptors arriving below the floor -------------------------------------------------

    def _recvmsg(self, call: RawCall, ctl: Control) -> bool:
        # Even before any trampfd exists: one may be created while this call blocks.
        if call.nr == _NR["recvmsg"]:
            headers, cloexec = (call.args[1],), call.args[2] & socket.MSG_CMSG_CLOEXEC
        else:
            vlen = min(call.args[2] & 0xFFFFFFFF, 1024)
            headers = tuple(call.args[1] + _MMSGHDR_SIZE * i for i in range(vlen))
            cloexec = call.args[3] & socket.MSG_CMSG_CLOEXEC
        # A message without a control buffer cannot carry descriptors.
        if not headers or self._control_buffer(ctl, headers[0])[1] < _CMSGHDR.size:
            return False

        def received(result: int, exit_ctl: Control) -> None:
            count = 1 if call.nr == _NR["recvmsg"] else result
            if result >= 0 and self._move_received(call.tid, exit_ctl, headers[:count], bool(cloexec)):
                exit_ctl.finish(result)

        ctl.on_exit(received)
        return False

    @staticmethod
    def _control_buffer(ctl: Control, header: int) -> tuple[int, int]:
        raw = ctl.read(header, _MSGHDR.size)
        if len(raw) != _MSGHDR.size:
            return 0, 0
        _, _, _, _, control, controllen, _ = _MSGHDR.unpack(raw)
        return (control, controllen) if control else (0, 0)

    def _move_received(self, tid: int, ctl: Control, headers: Sequence[int], cloexec: bool) -> bool:
        """Move every trampfd an SCM_RIGHTS message delivered below the floor
        up to it, rewriting the numbers in the message; True if any moved."""
        moved = False
        for header in headers:
            control, length = self._control_buffer(ctl, header)
            raw = ctl.read(control, length)
            pos = 0
            while pos + _CMSGHDR.size <= len(raw):
                cmsg_len, level, kind = _CMSGHDR.unpack_from(raw, pos)
                if cmsg_len < _CMSGHDR.size:
                    break
                if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                    for index in range((min(cmsg_len, len(raw) - pos) - _CMSGHDR.size) // _INT.size):
                        slot = pos + _CMSGHDR.size + _INT.size * index
                        fd = _INT.unpack_from(raw, slot)[0]
                        new = self._lift(tid, ctl, fd, cloexec)
                        if new is not None:
                            ctl.write(control + slot, _INT.pack(new))
                            moved = True
                pos += (cmsg_len + 7) & ~7
        return moved

    def _lift(self, tid: int, ctl: Control, fd: int, cloexec: bool) -> int | None:
        """Move trampfd `fd` up to the floor; return its new number, or None
        when fd is not a trampfd below the floor (or no number is free)."""
        if fd < 0 or fd >= self.floor or self._file(tid, fd, floor=False) is None:
            return None
        try:
            self._filter_descriptors(procfs.read_tgid(tid), ctl)
        except (Refused, TraceError):
            return None
        new = ctl.inject(_NR["fcntl"], fd, fcntl.F_DUPFD_CLOEXEC if cloexec else fcntl.F_DUPFD, self.floor)
        if new < 0:
            return None
        ctl.inject(_NR["close"], fd)
        return new

    def _pidfd_getfd(self, call: RawCall, ctl: Control) -> bool:
        def received(result: int, exit_ctl: Control) -> None:
            new = self._lift(call.tid, exit_ctl, result, cloexec=True) if result >= 0 else None
            if new is not None:
                exit_ctl.finish(new)

        ctl.on_exit(received)
        return False

    # --- mappings --------------------------------------------------------------------------------

    def _mmap(self, call: RawCall, ctl: Control) -> bool:
        hint, length, prot, flags, fd, offset = call.args
        trampoline = None if flags & MAP_ANONYMOUS else self._file(call.tid, fd)
        if trampoline is None:
            if flags & MAP_FIXED:
                self._forget_range(call.pid, hint, length)
            return False
        space = self.spaces.setdefault(call.pid, AddressSpace())
        if isinstance(trampoline, TrampolineV1):
            trampoline.check_map(length, prot, flags, offset)
            # A PROT_NONE private view of the trampfd's own memfd: it faults like
            # anonymous memory, and /proc/PID/maps names it /memfd:[trampfd]
            # on every kernel (inspect finds v1 pages by that name).
            page = self._map_page(ctl, hint, 0, fd)
            ctl.inject(_NR["madvise"], page, PAGE_SIZE, mmap.MADV_DONTFORK)
            ctl.inject(_NR["madvise"], page, PAGE_SIZE, mmap.MADV_DONTDUMP)
            space.v1_pages[page] = trampoline
        else:
            trampoline.check_map(length, prot, flags, offset, call.pid, space.has_table(trampoline))
            page = self._map_page(ctl, hint, PROT_READ | PROT_EXEC)
            # Through /proc/PID/mem: the program never has the page writable.
            ctl.write(page, trampoline.code_page())
            space.tables[page] = trampoline
        self._event(ctl, call.pid, call.tid, "map", trampoline.version, addr=page, length=PAGE_SIZE,
                    caller=call.ip)
        ctl.finish(page)
        return True

    @staticmethod
    def _map_page(ctl: Control, hint: int, prot: int, fd: int | None = None) -> int:
        """Map one private page for a trampoline: of the trampfd's memfd (v1)
        or anonymous (a v2 table)."""
        flags = MAP_PRIVATE if fd is not None else MAP_PRIVATE | MAP_ANONYMOUS
        page = ctl.inject(_NR["mmap"], hint, PAGE_SIZE, prot, flags, _NO_FD if fd is None else fd, 0)
        if page < 0:
            raise Refused(-page)
        return page

    def _forget(self, call: RawCall, ctl: Control) -> bool:
        """munmap, mremap and mprotect end a page's life as a trampoline."""
        self._forget_range(call.pid, call.args[0], call.args[1])
        if call.nr == _NR["mremap"] and call.args[3] & MREMAP_FIXED:
            self._forget_range(call.pid, call.args[4], call.args[2])
        return False

    def _forget_range(self, pid: int, start: int, length: int) -> None:
        space = self.spaces.get(pid)
        if space is not None and (space.v1_pages or space.tables):
            space.forget(start, length)

    @staticmethod
    def _event(ctl: Control, pid: int, tid: int, op: str, version: int, **fields: object) -> None:
        ctl.report(TrampfdEvent(time.time(), pid, tid, op, version, **fields))
