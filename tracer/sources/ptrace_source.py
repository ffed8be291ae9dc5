"""The ptrace source: start or seize a process tree, stop it only at the memory
syscalls the seccomp filter selects, and turn each stop into events.

This is the one module that imports `ptrace` (python-ptrace), and only for
`ptrace_works`: every request of the hot path goes through one wrapper on
libc (`_fast_ptrace`, which translates errors), as importing python-ptrace's
binding runs `ldconfig -p` (find_library), tens of milliseconds of every
start-up. The loop waits with a blocking waitpid(-1, __WALL) (or, given a
FastFaults, in its C wait, which answers the faults a handler told it to
repeat and returns every other stop); every stop is answered before the
next wait. A memory call's entry and return are paired
here, once, per thread: what the sink made of the call at its entry is held
with it and handed back with its return (or with the thread's end).
Processes are seized (PTRACE_SEIZE), so group-stops are kept as the program
expects with PTRACE_LISTEN, and signals reach the program unchanged.
"""

from __future__ import annotations

import collections
import contextlib
import ctypes
import errno
import functools
import os
import re
import signal
import stat
import struct
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple, Protocol

from .. import abi
from ..elf import ExecStackCache
from ..errors import AccessDenied, CommandError, NoSuchProcess, TraceError
from ..events import (
    BLOCKED_PSEUDO_SYSCALL,
    EXEC_UNRESOLVED,
    HELD_PSEUDO_SYSCALL,
    AttachEvent,
    CallStalled,
    Event,
    ExecEvent,
    ExitEvent,
    FdObject,
    ForkEvent,
    MapEntry,
    MemCall,
    MemReturn,
    Unresolved,
    WritableObjects,
)
from . import fuse_abort, procfs
from .seccomp_filter import TrapRule

if TYPE_CHECKING:
    # Only `run --closures` loads the fast path (cli.py), and only a receive
    # run in steps needs receive_steps (imported there): a run starts without.
    from . import receive_steps
    from .fast_faults import FastFaults

_WALL = 0x40000000
# The wait statuses of a syscall stop (PTRACE_O_TRACESYSGOOD) and of a
# seccomp stop (PTRACE_EVENT_SECCOMP): the stops of every traced call.
_SYSCALL_STOPS = frozenset({0x7F | (signal.SIGTRAP | 0x80) << 8,
                            0x7F | (signal.SIGTRAP | abi.PTRACE_EVENT_SECCOMP << 8) << 8})
_GROUP_STOP_SIGNALS = frozenset({signal.SIGSTOP, signal.SIGTSTP, signal.SIGTTIN, signal.SIGTTOU})
_INFO_SIZE = 88
_ENTRY = struct.Struct("<B3xIQQQ6Q")
_EXIT = struct.Struct("<B3xIQQqB")
_OPTIONS = (
    abi.PTRACE_O_TRACESYSGOOD
    | abi.PTRACE_O_TRACEFORK
    | abi.PTRACE_O_TRACEVFORK
    | abi.PTRACE_O_TRACECLONE
    | abi.PTRACE_O_TRACEEXEC
    | abi.PTRACE_O_TRACESECCOMP
)
# Bytes of a stopped thread's stack read to find its caller (attribution).
STACK_SAMPLE = 2048
CLONE_VM = 0x100
CLONE_THREAD = 0x10000
_NR_CLONE, _NR_VFORK, _NR_CLONE3 = 56, 58, 435
_CS_I386 = 0x23
_NR_KCMP = 312
_KCMP_VM = 1
_KCMP_FILES = 2
# i386: clone(120) takes its flags in ebx; vfork(190) always shares the VM.
_I386_CLONE_FLAGS = {120: lambda regs: regs.rbx & 0xFFFFFFFF, 190: lambda regs: CLONE_VM}


# The address ranges a memory call may change or be judged on; None: any part
# of the address space (a mapping the kernel places, an object's other views).
Footprint = tuple[tuple[int, int], ...] | None


class CallReply(NamedTuple):
    """How to resume a thread stopped at a memory syscall's entry.

    `deny_errno` skips the call and makes it return -errno; `kill` kills the
    whole process before the call runs; `want_exit` asks for the exit stop
    (needed to learn the result). `settled`: judged with nothing to report,
    and the sink's model takes the call as done if it is told it succeeded
    (a failure would leave the model more permissive than the kernel, never
    less): when no other task shares the address space, the source returns
    it at once as succeeded and skips the exit stop."""

    want_exit: bool = True
    deny_errno: int | None = None
    kill: bool = False
    settled: bool = False


ALLOW_WITH_RESULT = CallReply()


class TraceSink(Protocol):
    """What the source reports to (the pipeline implements it)."""

    def on_call(self, call: MemCall, peek: Callable[[int, int], bytes]) -> tuple[CallReply, object | None]:
        """Judge a call at entry; `peek(addr, size)` reads the stopped
        thread's memory. Returns how to resume the thread and what the sink
        made of the call, which the source holds with it and hands back with
        its return (MemReturn.entry), or with the end of a thread that dies
        inside it (ExitEvent.in_call)."""

    def settle_alone(self, call: MemCall) -> bool:
        """Take a call of a task alone in its address space as judged and
        returned at once, when that is exactly what on_call (a `settled`
        reply) followed by on_event(MemReturn(call, 0, entry)) would do;
        False, and nothing done, otherwise (the call then goes that way)."""

    def footprint(self, call: MemCall) -> Footprint:
        """The ranges a memory call's judgement depends on and its effect
        reaches (None: the whole address space); calls whose footprints
        overlap are judged one at a time."""

    def on_result(self, call: MemCall, peek: Callable[[int, int], bytes],
                  entry: object | None) -> tuple[CallReply, object | None]:
        """Judge again, at exit, a call whose result is not what its entry
        said (the object an mmap really mapped; `entry` is what on_call made
        of it); the reply is applied to the result (deny: undone and -errno;
        kill). What it returns besides replaces `entry`."""

    def returns_unread(self, call: MemCall, failed: bool, entry: object | None) -> bool:
        """True when on_event(MemReturn(call, result, entry)) would read
        nothing of the stopped thread (its maps, its memory) and report
        nothing: the source may resume the thread before it."""

    def acts(self) -> bool:
        """Whether a judgement may act on a process (refuse, kill: enforce
        mode). When not, the source may resume a new program before its
        ExecEvent is judged (the event holds all that is read of the
        process), and a process it loses track of is reported, not killed."""

    def on_event(self, event: Event) -> bool:
        """Record any other event (MemReturn, exec, fork, exit, attach);
        True asks the source to kill the process now (at an exec stop: the
        new program never runs an instruction)."""


class RawCall(NamedTuple):
    """Any trapped syscall at entry, as a syscall handler (an emulator) sees it."""

    pid: int
    tid: int
    arch: str
    nr: int
    args: tuple[int, ...]
    ip: int
    sp: int


class SyscallHandler(Protocol):
    """An emulator served by the source: it picks syscalls (trap_rules, made
    part of the seccomp filter) and faults, and answers them through Control."""

    def trap_rules(self) -> Sequence[TrapRule]:
        """Extra syscalls (with argument conditions) that must stop the tracee."""

    def on_syscall(self, call: RawCall, ctl: Control) -> bool:
        """Handle a trapped call; True when it was answered (ctl.finish) and
        must not run; False to let the source treat it as usual."""

    def on_fault(self, pid: int, tid: int, ctl: Control) -> bool:
        """A SIGSEGV is about to be delivered (ctl holds the faulting
        registers); True when the handler patched the registers and the
        signal must be suppressed."""

    def on_fork(self, parent_pid: int, child_pid: int, thread: bool, shares_vm: bool) -> None:
        """A new task appeared."""

    def on_exec(self, pid: int, ctl: Control) -> None:
        """The process replaced its program (ctl: its thread at the exec
        stop, which may run syscalls in the new program with run_after_exec)."""

    def on_exit(self, pid: int) -> None:
        """The process is gone."""


_REGISTER_NAMES = ("r15", "r14", "r13", "r12", "rbp", "rbx", "r11", "r10", "r9", "r8", "rax", "rcx",
                   "rdx", "rsi", "rdi", "orig_rax", "rip", "cs", "eflags", "rsp", "ss")
_ARG_REGISTERS = {"x86_64": ("rdi", "rsi", "rdx", "r10", "r8", "r9"),
                  "i386": ("rbx", "rcx", "rdx", "rsi", "rdi", "rbp")}
_SYSCALL_INSN_LEN = 2  # syscall (0f 05), int 0x80 (cd 80) and sysenter (0f 34)
_RED_ZONE = 128
_NR_RT_SIGPROCMASK = {"x86_64": 14, "i386": 175}
_NR_CLOSE = {"x86_64": 3, "i386": 6}
_NR_MADVISE = {"x86_64": 28, "i386": 219}
_X32_BIT = 0x40000000
# x32 (the x86-64 ABI with 32-bit pointers: number | _X32_BIT) shares the
# x86-64 numbers and argument registers, but has its own numbers (512 and up)
# for calls whose structs differ; these are the ones the filter stops.
_X32_OWN = {514: "ioctl", 520: "execve", 521: "ptrace", 545: "execveat"}
_SIG_SETMASK = 2
_ALL_SIGNALS = b"\xff" * 8


class _IoVec(ctypes.Structure):
    _fields_ = (("base", ctypes.c_void_p), ("len", ctypes.c_size_t))


_libc = ctypes.CDLL(None, use_errno=True)
for _name in ("process_vm_readv", "process_vm_writev"):
    getattr(_libc, _name).argtypes = (ctypes.c_int, ctypes.POINTER(_IoVec), ctypes.c_ulong,
                                      ctypes.POINTER(_IoVec), ctypes.c_ulong, ctypes.c_ulong)
    getattr(_libc, _name).restype = ctypes.c_ssize_t
_libc.ptrace.argtypes = (ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p)
_libc.ptrace.restype = ctypes.c_long


class _UserRegs(ctypes.Structure):
    """struct user_regs_struct of x86-64 (what PTRACE_GETREGS fills, for
    32-bit tracees too)."""

    _fields_ = tuple((name, ctypes.c_ulong) for name in (
        "r15", "r14", "r13", "r12", "rbp", "rbx", "r11", "r10", "r9", "r8", "rax", "rcx", "rdx", "rsi",
        "rdi", "orig_rax", "rip", "cs", "eflags", "rsp", "ss", "fs_base", "gs_base", "ds", "es", "fs", "gs"))


_REGISTER_OFFSETS = {name: getattr(_UserRegs, name).offset for name, _ in _UserRegs._fields_}


def _fast_ptrace(request: int, tid: int, addr: int, data: int) -> int:
    """The one way the source makes a ptrace request. Returns the request's
    result. A thread that is gone, or no longer stopped because it is dying
    (ESRCH), raises NoSuchProcess: an ordinary event, its exit is reported
    next. A process we may not trace (EPERM) raises AccessDenied; any other
    failure TraceError. (No PEEK request goes through here: -1 always means
    failure, so errno needs no reset.)"""
    result = _libc.ptrace(request, tid, addr, data)
    if result == -1:
        err = ctypes.get_errno()
        message = f"ptrace({request}, {tid}): {os.strerror(err)}"
        raise _PTRACE_ERRORS.get(err, TraceError)(message, pid=tid)
    return result


_PTRACE_ERRORS: dict[int, type[TraceError]] = {errno.ESRCH: NoSuchProcess, errno.EPERM: AccessDenied}


def _kcmp(pid1: int, pid2: int, kind: int) -> bool | None:
    """kcmp(2): True when both tasks hold the same kernel object of `kind`
    (KCMP_VM: one address space), None when it cannot tell (a task is gone)."""
    result = _libc.syscall(_NR_KCMP, ctypes.c_long(pid1), ctypes.c_long(pid2), ctypes.c_long(kind),
                           ctypes.c_long(0), ctypes.c_long(0))
    return None if result < 0 else result == 0


def _sharers(tids: Iterable[int], vm: bool) -> set[int]:
    """The traced processes (with a stop seen or not yet) that share the
    descriptor table of one of `tids` (with vm: or its address space), as
    kcmp says (a task gone compares with nothing)."""
    tids = tuple(tids)
    # TracerPid names the tracing thread (this one: ptrace calls come from it).
    return {pid for pid in procfs.traced_processes(threading.get_native_id())
            if any(_kcmp(tid, pid, _KCMP_FILES) or (vm and _kcmp(tid, pid, _KCMP_VM)) for tid in tids)}


def _getregs(tid: int):
    regs = _UserRegs()
    _fast_ptrace(abi.PTRACE_GETREGS, tid, 0, ctypes.addressof(regs))
    return regs


def _setregs(tid: int, regs) -> None:
    _fast_ptrace(abi.PTRACE_SETREGS, tid, 0, ctypes.addressof(regs))


def _geteventmsg(tid: int) -> int:
    msg = ctypes.c_ulong()
    _fast_ptrace(abi.PTRACE_GETEVENTMSG, tid, 0, ctypes.addressof(msg))
    return msg.value


class _Reaper:
    """While the block is run, a thread of the tracer's own reaps whatever
    its tracees report (waitpid serves any thread of the tracer): the
    threads an exec kills, traced, are reaped so the exec can end while the
    tracer's thread waits in a seize of the same process (which waits for
    that exec). The reports are kept, in the order taken (`reports`): the
    seize serves each held thread's stop from its wait status, the one
    account of a stop the program cannot forge (its signal information
    can be: a signal a process queues to itself carries any si_code)."""

    def __init__(self) -> None:
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._reap, name="trampwatch-reaper", daemon=True)
        self.reports: list[tuple[int, int]] = []

    def __enter__(self) -> _Reaper:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()

    def _reap(self) -> None:
        while not self._done.is_set():
            with contextlib.suppress(ChildProcessError):
                while (waited := os.waitpid(-1, _WALL | os.WNOHANG))[0]:
                    self.reports.append(waited)
            self._done.wait(0.001)


def _pidfd_open(pid: int) -> int | None:
    """A pidfd of process `pid` (close-on-exec), None when it cannot be
    opened."""
    try:
        return os.pidfd_open(pid)
    except OSError:
        return None


# timerfd flags (Python 3.11's os module has no timerfd).
_TFD_CLOEXEC, _TFD_NONBLOCK = os.O_CLOEXEC, os.O_NONBLOCK
_TFD_TIMER_ABSTIME, _TFD_TIMER_CANCEL_ON_SET = 1, 2


class _ClockWatch:
    """Whether CLOCK_REALTIME was set since the watch was made, by anyone.

    Inode change times (and System V segments' attach times) come from the
    wall clock, which a process with CAP_SYS_TIME may set back while a file
    gets its bytes and forward again: the file then looks older than the
    run (attack_clock_set). The calls that set it are many (clock_settime,
    settimeofday, adjtimex and clock_adjtime with ADJ_SETOFFSET, i386 stime,
    each in two ABIs) and so are the processes that may make them (ntpd, one
    the tree signals): the kernel itself tells, through a timerfd armed with
    TFD_TIMER_CANCEL_ON_SET, whose reads fail with ECANCELED once the clock
    was set (a leap second or a resume from suspend counts too). Once set,
    it stays set for this run. A watch that cannot be made counts as set
    (unknown is unsafe)."""

    def __init__(self) -> None:
        self.was_set = False
        self._fd = _libc.timerfd_create(time.CLOCK_REALTIME, _TFD_NONBLOCK | _TFD_CLOEXEC)
        # Armed for an expiry that never comes: only a clock set ends it.
        spec = (ctypes.c_long * 4)(0, 0, 2**62, 0)
        if self._fd < 0 or _libc.timerfd_settime(self._fd, _TFD_TIMER_ABSTIME | _TFD_TIMER_CANCEL_ON_SET,
                                                 spec, None) != 0:
            self._set()

    def set_since(self) -> bool:
        """Whether the clock was set since the watch was made (a read of the
        timerfd: EAGAIN while it was not)."""
        if not self.was_set:
            try:
                os.read(self._fd, 8)
            except BlockingIOError:
                return False
            except OSError as err:
                if err.errno != errno.ECANCELED:
                    raise TraceError(f"cannot read the clock watch: {err.strerror}") from err
            self._set()
        return True

    def _set(self) -> None:
        self.was_set = True
        self.close()

    def close(self) -> None:
        """Release the timerfd."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


class Control:
    """A thread stopped at a syscall entry (or a fault), for a handler: its
    registers, its memory, and syscalls run on its behalf."""

    def __init__(self, source: PtraceSource, tid: int, arch: str, regs: object | None = None):
        self._source = source
        self.tid = tid
        self.arch = arch
        self._saved: dict[str, int] | None = None
        self._at_exit = False
        # The thread's registers as last read or written (a fault emulator
        # pays one PTRACE_GETREGS per invocation, not three).
        self._regs = regs
        self._scratch_top: int | None = None
        self._old_mask: bytes | None = None
        # The call's arguments as a handler rewrote them (None: unchanged).
        self.arguments: tuple[int, ...] | None = None
        # The call's number as a handler rewrote it (None: unchanged).
        self.number: int | None = None

    def _user_regs(self):
        if self._regs is None:
            self._regs = _getregs(self.tid)
        return self._regs

    def registers(self) -> dict[str, int]:
        """Return the thread's general registers by name."""
        regs = self._user_regs()
        return {name: getattr(regs, name) for name in _REGISTER_NAMES}

    def register(self, name: str) -> int:
        """Return one register by name (cheaper than registers() on a hot path)."""
        return getattr(self._user_regs(), name)

    def set_registers(self, values: dict[str, int]) -> None:
        """Change some registers (by name); the others keep their values."""
        regs = self._user_regs()
        for name, value in values.items():
            setattr(regs, name, value & 0xFFFFFFFFFFFFFFFF)
        _setregs(self.tid, regs)

    def rewrite_arguments(self, args: tuple[int, ...], nr: int | None = None) -> dict[str, int]:
        """Change the arguments (and, given nr, the number) of the call the
        thread is stopped in at its entry: the kernel runs it with these, and
        the source reports it so. Returns the argument registers as they
        were: the kernel leaves argument registers as the call found them,
        and programs count on it, so set them back at the call's exit."""
        regs = self._user_regs()
        names = _ARG_REGISTERS[self.arch][:len(args)]
        previous = {name: getattr(regs, name) for name in names}
        values = dict(zip(names, args, strict=True))
        if nr is not None:
            values["orig_rax"] = nr
            self.number = nr
        self.set_registers(values)
        self.arguments = args
        return previous

    def serve_again(self, pc: int, code: bytes, registers: Mapping[str, int]) -> bool:
        """The fault this thread is stopped at, at pc, was emulated by
        setting `registers`, from the bytes `code` alone: let the source's
        fast path (if it has one) do the same for the next faults of this
        process at pc while the bytes there are `code`, without asking the
        handler. Call before set_registers. False when it will not."""
        fast = self._source.fast
        task = self._source.tasks.get(self.tid)
        if fast is None or task is None:
            return False
        writes = [(_REGISTER_OFFSETS[name], value) for name, value in registers.items()]
        if not fast.remember(task.pid, pc, self._user_regs().cs, code, writes):
            return False
        # Resumed as _resume would: a thread with a call or a signal of its
        # own to finish is not served there.
        if not (task.pending or task.exit_hook or task.deferred_signal):
            fast.track(self.tid, task.pid, abi.PTRACE_SYSCALL if task.syscall_mode else abi.PTRACE_CONT)
        return True

    def forget_served(self, pids: Iterable[int], start: int, end: int) -> None:
        """Memory [start, end) of processes `pids` is no longer emulated:
        the fast path forgets what serve_again told it there."""
        fast = self._source.fast
        if fast is not None:
            for pid in pids:
                fast.forget(pid, start, end)

    def run_after_exec(self, gadget: int, nr: int, *args: int) -> int:
        """At an exec stop: let execve return, run syscall nr(args) from the
        syscall instruction at `gadget` (an address in the new program), then
        put the new program's first registers back; return the raw result
        (negative errno on failure). Signals arriving meanwhile are delivered
        when the program resumes."""
        if self._saved is None:
            self._source.step_to_syscall_exit(self.tid)  # execve returns
            self._regs = None
            self._saved = self.registers()
        values = dict(zip(_ARG_REGISTERS[self.arch], args, strict=False))
        self.set_registers({**values, "rax": nr, "rip": gadget})
        result = self._source.step_to_syscall_exit(self.tid)
        self._regs = None
        restored = dict(self._saved)
        restored.pop("orig_rax")
        self.set_registers(restored)
        if self.arch == "i386":
            return result - (1 << 32) if result & 0x80000000 else result & 0xFFFFFFFF
        return result - (1 << 64) if result >= 1 << 63 else result

    def report(self, event: Event) -> None:
        """Deliver an event the handler made (a trampoline created, a
        closure served) to the source's sink, like every event the source
        makes: a handler reports what it did, it never judges."""
        self._source.sink.on_event(event)

    def read(self, addr: int, size: int) -> bytes:
        """Read the thread's memory (b'' where unmapped, or where the tree
        may have to fill it: PtraceSource.may_touch)."""
        if not self._source.may_touch(self.tid, addr, size):
            return b""
        try:
            return procfs.read_mem(self.tid, addr, size)
        except TraceError:
            return b""

    def copy_from_user(self, addr: int, size: int) -> bytes | None:
        """Read memory as the program itself may (page protections apply,
        like the kernel's copy_from_user); None if any byte is not readable
        (or the tree may have to fill it: PtraceSource.may_touch)."""
        if not self._source.may_touch(self.tid, addr, size):
            return None
        buf = ctypes.create_string_buffer(size)
        local, remote = _IoVec(ctypes.addressof(buf), size), _IoVec(addr, size)
        done = _libc.process_vm_readv(self.tid, ctypes.byref(local), 1, ctypes.byref(remote), 1, 0)
        return buf.raw if done == size else None

    def copy_to_user(self, addr: int, data: bytes) -> bool:
        """Write memory as the program itself may (page protections apply,
        like the kernel's copy_to_user); False if any byte is not writable
        (or the tree may have to fill it first: PtraceSource.may_touch; a
        write into a private file page reads the page)."""
        if not self._source.may_touch(self.tid, addr, len(data)):
            return False
        buf = ctypes.create_string_buffer(data, len(data))
        local, remote = _IoVec(ctypes.addressof(buf), len(data)), _IoVec(addr, len(data))
        done = _libc.process_vm_writev(self.tid, ctypes.byref(local), 1, ctypes.byref(remote), 1, 0)
        return done == len(data)

    def write(self, addr: int, data: bytes) -> None:
        """Write the thread's memory through /proc/PID/mem (which, like the
        kernel's ptrace, writes even read-only pages). Raises TraceError."""
        procfs.write_mem(self.tid, addr, data)

    def scratch(self, data: bytes) -> int | None:
        """Copy data onto the thread's stack below the red zone (dead while it
        is stopped in a syscall); return its 16-aligned address, or None when
        it cannot be written. Successive calls never overlap."""
        if self._scratch_top is None:
            self._scratch_top = self._user_regs().rsp - _RED_ZONE
        addr = (self._scratch_top - len(data)) & ~0xF
        if not self.copy_to_user(addr, data):
            return None
        self._scratch_top = addr
        return addr

    def inject(self, nr: int, *args: int) -> int:
        """Run syscall nr(args) in the thread instead of the one it stopped
        in; return its raw result (negative errno on failure). Only valid
        while stopped at a syscall entry (or in an on_exit hook); finish()
        must follow. Signals stay blocked from the first injection to
        finish(), so none is delivered (and lost) between injected calls."""
        if self._saved is None:
            self._saved = self.registers()
            self._block_signals()
        if nr & ~_X32_BIT == _NR_MADVISE[self.arch] and len(args) > 2 and args[2] == abi.MADV_DONTFORK:
            self._source.kept_from_children(self.tid)  # the filter never sees an injected call
        return self._run(nr, *args)

    def _block_signals(self) -> None:
        # Each injected call after the first passes through user mode, where a
        # pending signal would be delivered to a thread in a borrowed state.
        masks = self.scratch(_ALL_SIGNALS + bytes(8))
        nr = _NR_RT_SIGPROCMASK[self.arch]
        if masks is not None and self._run(nr, _SIG_SETMASK, masks, masks + 8, 8) == 0:
            self._old_mask = self.copy_from_user(masks + 8, 8)

    def _run(self, nr: int, *args: int) -> int:
        values = dict(zip(_ARG_REGISTERS[self.arch], args, strict=False))
        if self._at_exit:
            # Re-execute the syscall instruction with new registers.
            values.update(rax=nr, rip=self._saved["rip"] - _SYSCALL_INSN_LEN)
        else:
            values["orig_rax"] = nr
        self.set_registers(values)
        result = self._source.step_to_syscall_exit(self.tid)
        self._regs = None
        self._at_exit = True
        if self.arch == "i386":
            result = result - (1 << 32) if result & 0x80000000 else result & 0xFFFFFFFF
        elif result >= 1 << 63:
            result -= 1 << 64
        return result

    def on_exit(self, hook: Callable[[int, Control], None]) -> None:
        """Let the stopped call run, and stop again when it returns: there
        hook(result, ctl) may inject calls and finish() with a new result."""
        self._source.tasks[self.tid].exit_hook = hook

    def finish(self, result: int) -> None:
        """Make the stopped call return `result` without running it (or, after
        inject(), restore the registers with `result` in rax)."""
        if self._saved is None:
            self.set_registers({"orig_rax": -1, "rax": result})
            return
        if self._old_mask is not None:
            mask = self.scratch(self._old_mask)
            if mask is not None:
                self._run(_NR_RT_SIGPROCMASK[self.arch], _SIG_SETMASK, mask, 0, 8)
        restored = dict(self._saved)
        restored.pop("orig_rax")
        restored["rax"] = result
        if not self._at_exit:
            restored["orig_rax"] = -1
        self.set_registers(restored)


@dataclass
class _Task:
    tid: int
    pid: int
    pending: MemCall | None = None
    # What the sink made of `pending` at its entry: handed back with its return.
    entry: object | None = None
    syscall_mode: bool = False
    exit_hook: Callable[[int, Control], None] | None = None
    deferred_signal: int = 0
    # Seen before its creator's fork/clone event; kept stopped until it comes.
    held: bool = False
    parent: int = 0
    # The address space (its first owner's pid); threads and CLONE_VM
    # children share their creator's, exec starts a new one. Changed only
    # through _Tasks.move once the task is known (_Tasks counts them).
    vm: int = 0
    # Which descriptor table the task uses (tasks with the same key share
    # one: threads, CLONE_FILES children); 0 means its own pid.
    files: int = 0
    # A receive run in held steps (receive_steps.Receive); and whether it now waits for
    # data (unheld) before the next step.
    recv: receive_steps.Receive | None = None
    recv_wait: bool = False
    # The attaches of the segment an ipc(SHMAT) names, as the maps showed
    # them at its entry ((start, end, prot) of each; None: unreadable).
    attaches: frozenset[tuple[int, int, int]] | None = None
    # The task its last clone event reported it made (it may be gone, and
    # out of `tasks`, before the clone returns).
    made: int = 0

    def __post_init__(self) -> None:
        self.vm = self.vm or self.pid

    @property
    def files_key(self) -> int:
        """The key of the descriptor table this task may share."""
        return self.files or self.pid


class _Tasks(dict[int, _Task]):
    """The traced tasks by tid, with how many of them each address space
    holds (_Task.vm): kept as tasks come (tasks[tid] = task), go (pop)
    and change address space (move), so that a memory call need not look
    at every task to learn whether its own is alone in its space."""

    def __init__(self) -> None:
        super().__init__()
        self._per_vm: collections.Counter[int] = collections.Counter()

    def __setitem__(self, tid: int, task: _Task) -> None:
        old = self.get(tid)
        if old is not None:
            self._per_vm[old.vm] -= 1
        super().__setitem__(tid, task)
        self._per_vm[task.vm] += 1

    def __delitem__(self, tid: int) -> None:
        self.pop(tid)

    def pop(self, tid: int, *default: None) -> _Task | None:  # type: ignore[override]
        """Remove and return the task `tid` (`default` when unknown)."""
        if tid not in self:
            return super().pop(tid, *default)
        task = super().pop(tid)
        self._per_vm[task.vm] -= 1
        return task

    def move(self, task: _Task, vm: int) -> None:
        """Put `task` (known or not yet) in address space `vm`."""
        if self.get(task.tid) is task:
            self._per_vm[task.vm] -= 1
            self._per_vm[vm] += 1
        task.vm = vm

    def alone(self, task: _Task) -> bool:
        """Whether no task but `task` is in its address space."""
        count = self._per_vm[task.vm]
        return count == 0 or (count == 1 and self.get(task.tid) is task)


@dataclass
class _Hold:
    """Tasks sharing a descriptor table, stopped while one of them opens a
    file: nobody can use (or dup) the new descriptor before it is judged.
    A hold for an mmap the tracer may have to undo at its exit also stops
    every task of the owner's address space (`vm`, else 0): nobody runs,
    writes or seals the new mapping before it is judged.
    `waiting` are interrupted tasks not yet stopped, `held` the stops they
    reported (answered when the hold ends), `started` whether the opener
    was let go into its call (`started_at`: when), `deadline` when the
    opener goes anyway (or, once started, when its call is looked at
    again: _hold_overdue). `unstopped` are the processes of the tasks that
    had not stopped when the opener went into its call: asleep in the
    kernel, their call goes on meanwhile and may take the new descriptor
    (an exec copies the descriptor table it shares) before it is judged."""

    owner: int
    waiting: set[int]
    # (tid, wait status) of a stop, (tid, None, raw) of an entry stop that
    # was already taken and waited for an address space's call in flight, or
    # (tid, None, None) of a new task released meanwhile (resumed after).
    held: list[tuple]
    started: bool = False
    started_at: float = 0.0
    deadline: float = 0.0
    vm: int = 0
    unstopped: frozenset[int] = frozenset()


# How long the siblings of a held call wait before its call is looked at
# again (a FIFO whose reader is a sibling thread would otherwise wait for
# ever: they go on), and how long a held call may block in all before it is
# reported as blocked (it may wait for one of them) and judged.
HOLD_PATIENCE = 0.5
BLOCKED_PATIENCE = 2.0
# How long a memory call may stay in the kernel while others of its address
# space wait for it (it may wait for one of them: a FUSE or userfaultfd server
# thread of the same process): then they are judged past it (CallStalled).
STALL_PATIENCE = 2.0
# How long a new process may wait for its creator's fork event before it is
# learnt from its maps, as if attached: the creator may be gone without the
# tracer knowing which process it was (a child made with CLONE_PARENT names
# its creator's parent: attack_fork_exec_orphan parent).
ORPHAN_PATIENCE = 1.0
# How long the tracer polls for the next stop before it sleeps in waitpid.
# A tracer asleep lets its CPU go idle, and a stop must then wake it: on a
# virtual machine's idle vCPU that costs several times the stop itself
# (bash running 300 short programs: 0.86-0.99 s asleep, 0.69-0.74 polling
# for 100 µs). The polls yield, so a tree that shares the tracer's one CPU
# runs meanwhile; with one CPU to run on there is nothing to gain.
SPIN_SECONDS = 100e-6
# How many times attach lists the threads again once every seized one has
# stopped (a thread seized in a clone made an untraced one, an exec gave a
# thread the main thread's number): each round needs a thread made untraced
# in the last, which a process can chain; past this many the attach fails.
SEIZE_ROUNDS = 64
# How long attach waits for an exec by a thread other than the main one to
# end (the main thread is a zombie meanwhile, most of /proc/PID unreadable):
# EXEC_PATIENCE when no thread shows an exec in its call, up to
# EXEC_UNDER_WAY_PATIENCE while one does (on a loaded host the threads the
# exec kills may take that long to be scheduled and end).
EXEC_PATIENCE = 1.0
EXEC_UNDER_WAY_PATIENCE = 10.0
# The exec calls' numbers in either ABI (/proc/TID/syscall shows a thread's
# own): execve and execveat; i386's 11 is also x86-64's munmap, which at
# worst makes attach wait longer.
_EXEC_CALLS = frozenset({59, 322, 11, 358})


class PtraceSource:
    """Follows one process tree under ptrace and reports to a sink."""

    def __init__(self, sink: TraceSink, exit_kill: bool = False, handler: SyscallHandler | None = None,
                 fast: FastFaults | None = None):
        self.sink = sink
        self.exit_kill = exit_kill
        self.handler = handler
        # Where the handler's pure fault decisions are served again without
        # the loop (Control.serve_again); None: every fault comes here.
        self.fast = fast
        self.tasks = _Tasks()
        self.root_pid: int | None = None
        self.root_status: int | None = None
        self._info = ctypes.create_string_buffer(_INFO_SIZE)
        self._info_addr = ctypes.addressof(self._info)
        self._detaching = False
        # A pidfd of the process spawned or attached to (None: not opened).
        self._process_fd: int | None = None
        # clone3 stops only so its exit can find an untraced child (the
        # policy allows clone3 itself): nothing to judge at its entry.
        self.clone3_exit_only = False
        self._holds: dict[int, _Hold] = {}
        # Per process, the last task number handed out when its last exec was
        # seen: a task it made with a number no greater was made by a thread
        # the exec killed (or by the one that exec'd, whose event came).
        self._exec_marks: dict[int, int] = {}
        # New processes kept stopped for their creator's fork event, by tid:
        # when they were first seen (released after ORPHAN_PATIENCE).
        self._unclaimed: dict[int, float] = {}
        # Stops the kernel reported, not yet handled: each round of waits
        # takes every task stopped by then, so a task that stops again at
        # once (a thread looping on refused calls) cannot keep another's
        # stop unserved (waitpid(-1) reports the first stopped task it
        # finds, the same one each time).
        self._reported: collections.deque[tuple[int, int]] = collections.deque()
        self._spin = SPIN_SECONDS if len(os.sched_getaffinity(0)) > 1 else 0.0
        self._stops = 0
        # No memory call is judged while a call it depends on is between
        # entry and exit (the model does not hold its result yet). Per
        # address space: the calls in flight with their footprints, the entry
        # stops waiting (with their raw syscall info), and how many of those
        # need the whole space (later calls queue behind them: no starvation).
        self._in_flight: dict[int, dict[int, Footprint]] = {}
        self._waiting: dict[int, collections.deque[tuple[_Task, bytes, Footprint]]] = {}
        self._wide_waiting: collections.Counter[int] = collections.Counter()
        # When each call in flight went in (monotonic), and the calls others
        # were judged past (tid -> syscall, footprint) while in the kernel.
        self._flying_since: dict[int, float] = {}
        self._overtaken: dict[int, tuple[str, Footprint]] = {}
        # Files whose inode changed after this moment were written during
        # the run, by the tree or by the kernel on its behalf (set at start).
        self.started_ns = 0
        # Whether the wall clock was set since (then no change time tells
        # an old file: every file counts as possibly written).
        self._clock: _ClockWatch | None = None
        self._fresh: set[tuple[int, int]] = set()
        # The filesystems mounted when the run started (superblock devices);
        # a file on any other one holds what its server or image says, which
        # the tree may have produced with no write (FUSE, a loop image).
        self._start_devices: frozenset[int] = frozenset()
        self._shmem_device = _shmem_device()
        # Filesystems of the run's start that live on loop devices: their
        # image files' paths (a file there changes when its image does).
        self._image_devices: dict[int, list[str]] = {}
        self._new_devices: dict[int, bool] = {}
        # Swap files (device, inode): the kernel writes the tree's pages into
        # them unstamped. Read at start, and again at every judged file mmap
        # once the tree made a swapon (it may add one: swapoff leaves the pages).
        self._swap_files: frozenset[tuple[int, int]] = frozenset()
        self._swap_devices: frozenset[int] = frozenset()
        self._swapon_seen = False
        # Overlays of the run's start: a file of another filesystem opened for
        # writing may be one of their layers, mapped through them.
        self._overlay_devices: frozenset[int] = frozenset()
        # Pseudo filesystems of the run's start (tracefs, sysfs, ...): a file
        # there holds what the kernel writes, some of it the tree's bytes.
        self._kernel_filled: frozenset[int] = frozenset()
        # attach: filesystems whose change times do not tell what was written.
        self._unstamped: frozenset[int] = frozenset()
        # Address spaces some thread asked MADV_DONTFORK for: a fork of them
        # is not vouched a copy of the model (ForkEvent.copied). Kept after
        # an exec too (another task may still share the old space's key).
        self._dontfork: set[int] = set()

    @property
    def stops(self) -> int:
        """Every stop answered, here or by the fast path."""
        return self._stops + (self.fast.served if self.fast is not None else 0)

    # --- starting ---------------------------------------------------------------

    def spawn(self, argv: list[str], prepare_child: Callable[[], None], started_ns: int | None = None) -> int:
        """Start argv with `prepare_child` run in the child before exec (it
        installs the seccomp filter); return the child's pid, already seized.
        `started_ns` is when the run started (a CLOCK_REALTIME reading taken
        after the tracer's last file write before the program; default: now).

        Raises CommandError (exit 127/126) when argv cannot be executed.
        """
        path = resolve_command(argv[0])
        # Armed before the tree exists; a clock set back before it is armed
        # only makes run_start_ns wait for the clock to reach the start.
        self._clock = _ClockWatch()
        self.started_ns = run_start_ns(started_ns)
        self._start_devices = procfs.mount_devices(os.getpid())
        self._image_devices = _image_devices(self._start_devices)
        self._read_swap_files()
        self._overlay_devices = procfs.devices_of_type(os.getpid(), frozenset({"overlay"}))
        self._kernel_filled = procfs.devices_of_type(os.getpid(), procfs.KERNEL_FILLED_TYPES)
        child = os.fork()
        if child == 0:
            _exec_child(path, argv, prepare_child)
        _, status = os.waitpid(child, os.WUNTRACED | _WALL)
        if not os.WIFSTOPPED(status):
            code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else 126
            raise CommandError(argv[0], "could not prepare the traced child", code)
        options = _OPTIONS | (abi.PTRACE_O_EXITKILL if self.exit_kill else 0)
        _fast_ptrace(abi.PTRACE_SEIZE, child, 0, options)
        self.tasks[child] = _Task(child, child)
        self.root_pid = child
        self._process_fd = _pidfd_open(child)
        inherited = tuple(self._descriptor_view(view) for view in _writable_objects(child))
        if inherited:
            self.sink.on_event(WritableObjects(time.time(), child, inherited))
        os.kill(child, signal.SIGCONT)
        return child

    def attach(self, pid: int) -> AttachEvent:
        """Seize every thread of a running process; return the seed event.

        Seized processes carry no seccomp filter of ours, so their threads
        stop at every syscall (PTRACE_SYSCALL) and the source filters.
        """
        if not self._wait_out_exec(pid):
            if len(procfs.list_threads(pid)) > 1:
                raise TraceError("its main thread has exited while other threads live on: such a process "
                                 "cannot be attached; run its program under `trampwatch run`", pid=pid)
            raise NoSuchProcess("it has exited (a zombie its parent has not reaped)", pid=pid)
        # The process, whatever numbers its threads take (an exec by another
        # thread gives the exec'ing thread the main thread's): what a loss
        # of it kills.
        self._process_fd = _pidfd_open(pid)
        # A clock set from now on is seen; one before cannot be (docs/enforce.md).
        self._clock = _ClockWatch()
        # Nothing is read before every thread has stopped: one still running
        # could change what is read, and an exec by a thread other than the
        # main one makes the main thread a zombie (most of /proc/PID answers
        # EINVAL) until it has killed every other thread.
        seen, unstopped = self._hold_threads(pid)
        if not seen:
            raise NoSuchProcess("could not seize any thread", pid=pid)
        info = procfs.read_process_info(pid)
        # What the process did before the attach is unknown: a file changed
        # since it started may be one it wrote (made read-only, then mapped
        # or made executable once attached).
        self.started_ns = procfs.start_time_ns(pid)
        self._start_devices = procfs.mount_devices(pid)
        self._image_devices = _image_devices(self._start_devices)
        self._read_swap_files()
        self._overlay_devices = procfs.devices_of_type(pid, frozenset({"overlay"}))
        self._kernel_filled = procfs.devices_of_type(pid, procfs.KERNEL_FILLED_TYPES)
        self._unstamped = procfs.devices_of_type(pid, procfs.UNSTAMPED_TYPES)
        self.root_pid = pid
        # Each seized thread's own persona (stopped, none can change it; one
        # gone already makes no more calls).
        personas = []
        for tid in sorted(seen - {pid}):
            with contextlib.suppress(NoSuchProcess):
                personas.append((tid, procfs.read_personality(pid, tid)))
        maps = procfs.read_maps(pid)
        # Pages written before the seize and made read-only since are told by
        # the kernel's pages, not by their protection (System V segments by
        # their attach times); unreadable, every page's history is unknown.
        written_before: tuple[tuple[int, int], ...] = ()
        try:
            written_before = (procfs.private_copies(pid, maps) + procfs.shared_may_write(pid, maps)
                              + self._segments_written(pid, maps))
        except NoSuchProcess:
            raise
        except TraceError:
            unknown = True
        else:
            unknown = bool(unstopped)  # what a call still running does comes after these reads
        event = AttachEvent(time.time(), pid, info, maps, procfs.read_personality(pid),
                            tuple(sorted(seen)), tuple(personas), history_unknown=unknown,
                            written_before=written_before)
        self.sink.on_event(event)
        # The files it maps already, changed since it started (it may have
        # written them), and the descriptors it holds.
        mapped = {(m.dev, m.inode): m for m in maps if m.dev and not m.path.startswith("[")}
        self._report_fresh(pid, pid, [(procfs.mapped_file(pid, m), m.dev, _map_files(pid, m.start, m.end))
                                      for m in mapped.values()])
        alive = self._judge_held(pid, maps, seen)
        if unstopped:
            self._judge_unstopped(pid, unstopped)
        elif alive:
            self._judge_vm_sharers(pid)
        return event

    @staticmethod
    def _wait_out_exec(pid: int) -> bool:
        """Wait up to EXEC_PATIENCE while the main thread of `pid` is a
        zombie: an exec by another thread kills the others, then takes the
        main thread's number (for a moment /proc may list the main thread
        alone). Waits up to EXEC_UNDER_WAY_PATIENCE while another thread
        shows an exec in its call. Returns False when it stays one: it ended
        for good."""
        started = time.monotonic()
        while True:
            try:
                if not procfs.leader_exited(pid):
                    return True
            except NoSuchProcess:
                # The stat of a main thread an exec is replacing may read as gone.
                if not os.path.exists(f"/proc/{pid}"):
                    raise
            waited = time.monotonic() - started
            if waited > EXEC_PATIENCE and (waited > EXEC_UNDER_WAY_PATIENCE or not _exec_under_way(pid)):
                return False
            time.sleep(0.001)

    def _hold_threads(self, pid: int) -> tuple[set[int], set[int]]:
        """Seize and stop every thread of `pid`, as the kernel shows them:
        the threads /proc lists are seized (if no tracer has them) and asked
        to stop (if not stopped), until a listing shows each one traced by
        this tracer and stopped, or known not to stop within
        BLOCKED_PATIENCE (a vfork's wait, a page a FUSE server holds back).
        Returns (the threads held, those that did not stop).

        Judged by the kernel's view, not by what was asked: a thread seized
        in the middle of a clone makes its new thread untraced (the kernel
        decided before the seize) and lists it when the clone ends; an exec
        by a thread other than the main one kills the others and gives it
        the main thread's number, so a seize of the number it had may take
        the new program (it no longer answers to that number) and the main
        thread seized before is gone (its number now names the new program,
        never seized or stopped)."""
        unstopped: set[int] = set()
        # Numbers seized that named another process by then (let go).
        strays: set[int] = set()
        # A seize waits while an exec of the process is under way, and that
        # exec waits until the threads it kills are reaped: those seized
        # already are reaped by the tracer, from another thread meanwhile.
        with _Reaper() as reaper:
            for _ in range(SEIZE_ROUNDS):
                alive = self._wait_out_exec(pid)
                loose, held = self._loose_threads(pid, unstopped)
                if (held and not loose) or not alive:
                    break  # every thread held; or a zombie, none to hold
                if not loose:
                    time.sleep(0.001)  # each one listed gone or ending: an exec under way
                    continue
                asked: set[int] = set()
                for tid, tracer in loose:
                    if tracer not in (0, threading.get_native_id()):
                        raise AccessDenied(f"thread {tid} is traced by {tracer}: only a process no one "
                                           "traces can be attached", pid=pid)
                    try:
                        if not tracer:
                            _fast_ptrace(abi.PTRACE_SEIZE, tid, 0, _OPTIONS)
                    except TraceError:
                        continue  # gone, renumbered by an exec: the next listing tells
                    if not tracer and not self._seized_ours(pid, tid):
                        strays.add(tid)
                        continue
                    try:
                        _fast_ptrace(abi.PTRACE_INTERRUPT, tid, 0, 0)
                    except TraceError:
                        continue
                    asked.add(tid)
                    self.tasks[tid] = _Task(tid, pid, syscall_mode=True)
                unstopped |= self._await_stops(pid, asked)
            else:
                raise TraceError(f"threads kept changing after {SEIZE_ROUNDS} rounds of seizing", pid=pid)
        # A stray's stop the reaper took before it was let go is not a
        # held thread's (a thread given its number later stops anew).
        reports = [(tid, status) for tid, status in reaper.reports
                   if tid not in strays or status >> 16 != abi.PTRACE_EVENT_STOP]
        return held, self._take_stops(pid, held, reports)

    @staticmethod
    def _seized_ours(pid: int, tid: int) -> bool:
        """Whether the task just seized under number `tid` is a thread of
        `pid`. The number came from a listing: the thread listed may have
        ended since and its number gone to another process (a root process
        sets ns_last_pid: attack_attach_pid_reuse), which the seize took.
        Seized, the task keeps its number until the tracer reaps it, so its
        thread group read now is its own. Another process's task is
        interrupted and, once stopped, detached (it goes on as it was); one
        gone counts as ours (the next listing tells)."""
        try:
            if procfs.read_tgid(tid) == pid:
                return True
        except NoSuchProcess:
            return True
        deadline = time.monotonic() + BLOCKED_PATIENCE
        try:
            _fast_ptrace(abi.PTRACE_INTERRUPT, tid, 0, 0)
            while (state := procfs.thread_hold(tid, tid)[1]) != "t":
                if state in ("Z", "X"):
                    return False  # it ended: nothing to let go
                if time.monotonic() > deadline:
                    raise TraceError(f"task {tid} of another process, seized in a thread's place, did not "
                                     "stop to be let go", pid=pid)
                time.sleep(0.001)
            _fast_ptrace(abi.PTRACE_DETACH, tid, 0, 0)
        except NoSuchProcess:
            pass  # it ended
        return False

    @staticmethod
    def _loose_threads(pid: int, unstopped: set[int]) -> tuple[list[tuple[int, int]], set[int]]:
        """The threads of `pid` /proc lists that this tracer does not hold
        ((thread, the thread tracing it, 0 for none) for each one traced by
        another tracer or by none, or traced but not stopped, unless known
        not to stop: `unstopped`) and those it holds. A zombie runs nothing
        and is in neither."""
        me = threading.get_native_id()  # TracerPid names the tracing thread
        loose = []
        held = set()
        try:
            tids = procfs.list_threads(pid)
        except NoSuchProcess:
            # While an exec by another thread gives it the main thread's
            # number, /proc/PID/task may read as gone: the next round tells
            # (_wait_out_exec raises once /proc/PID is gone for good).
            return loose, held
        for tid in tids:
            try:
                tracer, state = procfs.thread_hold(pid, tid)
            except NoSuchProcess:
                continue  # gone since the listing
            if state in ("Z", "X"):
                continue
            if tracer == me and (state == "t" or tid in unstopped):
                held.add(tid)
            else:
                loose.append((tid, tracer))
        return loose, held

    def _take_stops(self, pid: int, held: set[int], reaped: list[tuple[int, int]]) -> set[int]:
        """Make the tasks of `pid` those of the threads `held`, and the
        stops the loop serves first theirs, as the kernel reported them
        (the reaper gone: what stops from now on is reported to the loop);
        return the held threads not stopped. A task seized under a number
        an exec since gave another thread is gone (its exit is never
        reported). No thread is resumed during the seize, so each stopped
        thread's stop is its report still pending (the current one: the
        reaper may hold a stale one under the same number, the main
        thread's before an exec gave the number to another), else the last
        report the reaper took under its number (`reaped`, in order: an
        exec stop comes after the old leader's stop under the same number,
        an exit after the stop of the thread that had the number before),
        else the one still to come (an exec stop must be taken: until then
        the kernel answers ESRCH under the thread's new number). Never its
        signal information: a signal the process
        queued to itself with a forged si_code reads as an exec, clone or
        seccomp event there (attack_attach_siginfo)."""
        for tid in [tid for tid, task in self.tasks.items() if task.pid == pid and tid not in held]:
            del self.tasks[tid]
        self._reported.clear()
        last = dict(reaped)
        unstopped = set()
        for tid in sorted(held):
            if tid not in self.tasks:
                self.tasks[tid] = _Task(tid, pid, syscall_mode=True)  # made by a clone during the seize
            try:
                stopped = procfs.thread_hold(pid, tid)[1] == "t"
            except NoSuchProcess:
                continue  # gone: its end is reported to the loop
            if not stopped:
                unstopped.add(tid)
                continue
            status = self._stop_of(pid, tid, last.get(tid))
            if status is not None:
                self._reported.append((tid, status))
        return unstopped

    @staticmethod
    def _stop_of(pid: int, tid: int, reaped: int | None) -> int | None:
        """The wait status of the stop held thread `tid` of `pid` is in: its
        report still pending, else `reaped` (the last the reaper took under
        its number) when that is a stop, else the report still to come (its
        state shows before its report is made), waited for up to
        BLOCKED_PATIENCE. None: it is gone (its end is reported to the
        loop). Raises TraceError when no report comes (its stop cannot be
        told: the attach fails rather than guess)."""
        deadline = time.monotonic() + BLOCKED_PATIENCE
        while True:
            try:
                waited, status = os.waitpid(tid, _WALL | os.WNOHANG)
            except ChildProcessError:
                return None
            if waited:
                return status
            if reaped is not None and os.WIFSTOPPED(reaped):
                return reaped
            if time.monotonic() > deadline:
                raise TraceError(f"thread {tid} is stopped but its stop was never reported", pid=pid)
            time.sleep(0.001)

    @staticmethod
    def _await_stops(pid: int, tids: set[int]) -> set[int]:
        """Wait up to BLOCKED_PATIENCE for the stop each seized thread of
        `pid` was asked for, as /proc shows it (stopped for its tracer);
        return the threads that have not stopped: blocked in a call no stop
        interrupts (a vfork's wait for its child, a page a FUSE server holds
        back), which may still change the address space or the descriptors.
        A thread gone meanwhile waits for nothing."""
        waiting = set(tids)
        deadline = time.monotonic() + BLOCKED_PATIENCE
        while waiting:
            for tid in list(waiting):
                try:
                    _, state = procfs.thread_hold(pid, tid)
                except NoSuchProcess:
                    state = "X"
                if state in ("t", "Z", "X"):
                    waiting.discard(tid)
            if not waiting or time.monotonic() > deadline:
                break
            time.sleep(0.001)
        return waiting

    def _judge_unstopped(self, pid: int, unstopped: set[int]) -> None:
        """Judge each thread that did not stop at the seize as the `blocked`
        pseudo call (opaque: what its call does is unseen, and it comes
        after the maps and descriptors were read); a refusal kills the
        process (its call cannot be refused while it runs)."""
        for tid in sorted(unstopped):
            # The number the kernel shows for its call (in the thread's own ABI), if any.
            nr = procfs.syscall_in_flight(tid)
            args = () if nr is None else (nr,)
            blocked = MemCall(time.time(), pid, tid, BLOCKED_PSEUDO_SYSCALL, "x86_64", args, path="unstopped")
            if not self._judge_unrefusable(blocked, 0):
                return

    def _judge_vm_sharers(self, pid: int) -> None:
        """Judge each other process that shares `pid`'s address space at the
        seize (made with CLONE_VM and no CLONE_THREAD before the attach, by
        `pid` or by a process `pid` is such a child of), as kcmp(KCMP_VM)
        says of every process /proc lists, as the `blocked` pseudo call
        (opaque, facility `blocked-shared-vm`, the sharer's pid its one
        argument): it is not seized, and writes the memory and changes its
        protections with no call the tracer sees (attack_attach_clone_vm);
        a refusal kills `pid`. Every thread of `pid` is stopped: a sharer
        made later is made by one of these or by a traced call. A vfork
        child is one, but its parent's thread is unstopped and judged so
        (attack_attach_vfork): this is asked only when none is."""
        for other in procfs.list_pids():
            # Tasks with no address space (kernel threads, zombies) compare
            # equal with each other: a sharer has mappings.
            if other != pid and _kcmp(pid, other, _KCMP_VM) and _has_maps(other):
                shared = MemCall(time.time(), pid, pid, BLOCKED_PSEUDO_SYSCALL, "x86_64", (other,),
                                 path="shared-vm")
                if not self._judge_unrefusable(shared, 0):
                    return

    def _judge_held(self, pid: int, maps: tuple[MapEntry, ...], tids: set[int]) -> bool:
        """Judge what `pid` holds at the seize (every thread stopped) as an
        open's descriptor is judged at its exit, from the kernel's view of
        it: each descriptor (a mem file open for writing writes code with no
        memory call: foreign-write; an opaque facility does what cannot be
        seen; a file open for writing is recorded as written: what is
        written through it after the attach is the tree's), and what keeps
        an opaque facility with no descriptor left: a mapping of one (an
        io_uring's rings, a KVM vCPU) and io_uring's own threads (a ring
        polled by the kernel takes submissions with no call at all). No call
        made them, so none can be refused: a refusal kills the process. A
        range registered with a userfaultfd is judged as a held one (when
        the process holds none): its descriptor may be another process's
        (passed on, or kept by a child forked before the attach), which
        fills the range's pages with code the process runs with no call at
        all. An unreadable table is judged as such. Every descriptor table
        of the seized threads (`tids`) counts: a thread that unshared its
        table (CLONE_FILES) holds what the leader's does not show. Returns
        False when a refusal killed the process."""
        for tid, fd, view in self._held_views(pid, maps, tids):
            view = self._descriptor_view(view)
            held = MemCall(time.time(), pid, tid, HELD_PSEUDO_SYSCALL, "x86_64", (fd,), fd_object=view,
                           path=view.path, target=_mem_target(view))
            if not self._judge_unrefusable(held, fd):
                return False
        # Memory writable and executable at the seize (an RWX segment mapped by
        # an exec no tracer saw, an RWX mapping made before the attach): what is
        # written there after the attach runs with no call at all (attack_attach_wx).
        for entry in maps:
            if entry.prot & abi.PROT_WRITE and entry.prot & abi.PROT_EXEC:
                held = MemCall(time.time(), pid, pid, HELD_PSEUDO_SYSCALL, "x86_64",
                               (entry.start, entry.end - entry.start, entry.prot), path=entry.path)
                if not self._judge_unrefusable(held, 0):
                    return False
        return True

    def _judge_unrefusable(self, call: MemCall, result: int) -> bool:
        """Judge a pseudo call no syscall made (what a seized process holds
        or does): it cannot be refused, so a refusal kills its process.
        Returns False when it did."""
        reply, entry = self.sink.on_call(call, self._peek_for(call.pid))
        if reply.kill or reply.deny_errno is not None:
            self._kill_processes({call.pid})
            return False
        self.sink.on_event(MemReturn(call, result, entry))
        return True

    @staticmethod
    def _held_views(pid: int, maps: tuple[MapEntry, ...],
                    tids: set[int]) -> Iterator[tuple[int, int, FdObject]]:
        """(the thread holding it, descriptor number or -1, the kernel's
        view) of what _judge_held judges: the leader's descriptor table,
        that of each thread of `tids` whose table kcmp says is another, the
        mappings and threads of opaque facilities, and a range registered
        with a userfaultfd when none of those tables holds one."""
        tables = [pid]
        held_userfaultfd = False
        for tid in sorted(tids - {pid}):
            # Unknown (None) is read as its own table: a thread gone has none to list.
            if not any(_kcmp(tid, other, _KCMP_FILES) for other in tables):
                tables.append(tid)
        for holder in tables:
            try:
                fds = procfs.list_fds(holder)
            except NoSuchProcess:
                if holder == pid:
                    raise
                continue  # a thread gone makes no more calls
            except TraceError:
                fds = [-1]
            for fd in fds:
                try:
                    link = procfs.fd_link(holder, fd) if fd >= 0 else None
                    if fd >= 0 and (link is None or not _worth_a_view(link)):
                        continue
                    view = procfs.fd_view(holder, fd) if fd >= 0 else _UNREADABLE
                except NoSuchProcess:
                    if holder == pid:
                        raise
                    break
                except TraceError:
                    view = FdObject(fd, "", 0, 0)  # unreadable: judged as such (fails closed)
                if view is not None:  # else closed meanwhile
                    held_userfaultfd = held_userfaultfd or view.path == _USERFAULTFD_LINK
                    yield holder, fd, view
        for entry in {(m.dev, m.inode): m for m in maps if _opaque_link(m.path)}.values():
            yield pid, -1, FdObject(-1, entry.path, entry.dev, entry.inode, access=abi.O_RDWR)
        # A shared writable view writes its object with plain stores, as a
        # descriptor open for writing does with calls: another view of the
        # object mapped executable runs them (attack_attach_kvm dual).
        writers = {(m.dev, m.inode): m for m in maps
                   if m.shared and m.prot & abi.PROT_WRITE and m.dev and not m.path.startswith("[")}
        for entry in writers.values():
            yield pid, -1, _shared_writer(pid, entry)
        names = (procfs.thread_name(pid, tid) for tid in procfs.list_threads(pid))
        if any(name.startswith(_IO_URING_THREADS) for name in names):
            yield pid, -1, FdObject(-1, "anon_inode:[io_uring]", 0, 0, access=abi.O_RDWR)
        if not held_userfaultfd and _userfaultfd_registered(pid):
            yield pid, -1, FdObject(-1, _USERFAULTFD_LINK, 0, 0, access=abi.O_RDWR)

    def kill_all(self) -> None:
        """SIGKILL every traced process (fail closed); the loop then reaps them."""
        for pid in {task.pid for task in self.tasks.values()}:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def detach_all(self) -> None:
        """Leave every thread running as it was (Ctrl-C on attach/audit)."""
        self._detaching = True
        # Entry stops held for a call in flight would never be reported again.
        for waiting in self._waiting.values():
            for queued, _, _ in waiting:
                self._detach(queued, 0, 0)
        self._waiting.clear()
        self._wide_waiting.clear()
        for tid in list(self.tasks):
            try:
                _fast_ptrace(abi.PTRACE_INTERRUPT, tid, 0, 0)
            except TraceError:
                self.tasks.pop(tid, None)

    # --- the loop ---------------------------------------------------------------

    def run(self) -> int | None:
        """Trace until every task is gone; return the root's wait status."""
        # Blocked, so a held open can wait for the next stop with a timeout.
        previous = signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGCHLD])
        try:
            while self.tasks:
                try:
                    # Most waits: nothing held or queued, no fast path (_wait's plain case).
                    if self._reported:
                        waited = self._reported.popleft()
                    elif self._holds or self._waiting or self._unclaimed or self.fast is not None:
                        waited = self._wait()
                    else:
                        waited = self._wait_round()
                except ChildProcessError:
                    self._lost()
                    break
                except InterruptedError:
                    continue
                if waited is None:
                    continue
                tid, status = waited
                try:
                    self._handle(tid, status)
                except NoSuchProcess:
                    # The thread vanished at this stop (exit_group by another
                    # thread, SIGKILL): waitpid reports its end next.
                    self._forget_stop(tid)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, previous)
            if self._process_fd is not None:
                os.close(self._process_fd)
                self._process_fd = None
            if self._clock is not None:
                self._clock.close()
        return self.root_status

    def _lost(self) -> None:
        """The kernel says no task is traced while the tracer still follows
        some: those alive run untraced (a thread the seize took under a
        number an exec then gave another, say). Unknown is unsafe: with an
        enforcer that acts, the process attached to (or spawned) is killed
        (by its pidfd: never another process that reuses its number); the
        loss is raised either way."""
        lost = sorted({task.pid for task in self.tasks.values() if procfs.is_running(task.pid)})
        self.tasks.clear()
        if not lost or self._detaching:
            return
        killed = False
        if self.sink.acts() and self._process_fd is not None and self.root_pid in lost:
            with contextlib.suppress(ProcessLookupError):
                signal.pidfd_send_signal(self._process_fd, signal.SIGKILL)
                killed = True
        outcome = f"pid {self.root_pid} killed" if killed else "nothing killed"
        raise TraceError(f"lost track of pid(s) {', '.join(map(str, lost))}: they run untraced ({outcome})")

    def _wait_round(self) -> tuple[int, int]:
        """The next stop (blocking); when other tasks are traced, every stop
        already reported with it is queued in `_reported`, served in turn
        before the kernel is asked again."""
        waited = self._poll() if self._spin else None
        if waited is None:
            waited = os.waitpid(-1, _WALL)
        if len(self.tasks) > 1:
            exec_stops = []
            while True:
                try:
                    more = os.waitpid(-1, _WALL | os.WNOHANG)
                except ChildProcessError:
                    # The last child was just reaped (a process's end takes its
                    # threads with it): what was waited is still served.
                    break
                if not more[0]:
                    break
                self._reported.append(more)
                if more[1] >> 16 == abi.PTRACE_EVENT_EXEC:
                    exec_stops.append(more[0])
            if exec_stops:
                waited = self._drop_superseded(waited, exec_stops)
        return waited

    def _poll(self) -> tuple[int, int] | None:
        """A stop reported within SPIN_SECONDS of asking, polled for (None:
        none came; block then). Each poll gives the CPU to whatever else may
        run on it, a traced task first."""
        waited = os.waitpid(-1, _WALL | os.WNOHANG)
        end = time.perf_counter() + self._spin
        while not waited[0]:
            if time.perf_counter() > end:
                return None
            os.sched_yield()
            waited = os.waitpid(-1, _WALL | os.WNOHANG)
        return waited

    def _drop_superseded(self, waited: tuple[int, int], exec_stops: list[int]) -> tuple[int, int]:
        """Drop from a round the stops taken before an exec stop under the
        same number: they were the old leader's, killed by an exec another
        thread ended meanwhile. Once its exec stop is taken the kernel lets
        the tracer act on the number (before, it answers ESRCH): served as a
        syscall stop, one would resume the new program before its exec is
        judged (attack_exec_drain). Returns the round's first stop."""
        stops = [waited, *self._reported]
        for tid in exec_stops:
            last = max(i for i, (other, status) in enumerate(stops)
                       if other == tid and status >> 16 == abi.PTRACE_EVENT_EXEC)
            stops = [entry for i, entry in enumerate(stops)
                     if i >= last or entry[0] != tid or not os.WIFSTOPPED(entry[1])]
        self._reported = collections.deque(stops[1:])
        return stops[0]

    def _wait(self) -> tuple[int, int] | None:
        """The next stop; while an open runs with its siblings held, or
        memory calls wait for one in flight, wait at most until the deadline
        (the hold's, the stall's), then let the siblings go or judge the
        waiting calls past the stalled one (None)."""
        deadline = self._deadline()
        if deadline is None:
            if self.fast is not None and not self._detaching:
                return self.fast.wait()
            return os.waitpid(-1, _WALL)
        if self._spin and (waited := self._poll()) is not None:
            return waited
        while True:
            tid, status = os.waitpid(-1, _WALL | os.WNOHANG)
            if tid:
                return tid, status
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                for key, hold in list(self._holds.items()):
                    if hold.deadline <= deadline:
                        if hold.started:
                            self._hold_overdue(key, hold)
                        else:
                            self._start(hold)
                self._overtake_stalled(deadline)
                self._release_unclaimed(deadline)
                return None
            signal.sigtimedwait([signal.SIGCHLD], remaining)

    def _deadline(self) -> float | None:
        """The earliest time something waiting must be let go: a started
        hold's end, or a call in flight that others wait for reaching
        STALL_PATIENCE. None when nothing waits."""
        if not self._holds and not self._waiting and not self._unclaimed:
            return None  # every stop but those of a held open, a queued call or a new process
        times = [hold.deadline for hold in self._holds.values()]
        times.extend(since + ORPHAN_PATIENCE for since in self._unclaimed.values())
        for vm, waiting in self._waiting.items():
            if waiting and vm in self._in_flight:
                times.extend(self._flying_since.get(tid, 0.0) + STALL_PATIENCE for tid in self._in_flight[vm])
        return min(times) if times else None

    def _overtake_stalled(self, now: float) -> None:
        """Calls in flight for STALL_PATIENCE that others wait for stop
        blocking them: reported (the model of what they may change is then
        taken from the kernel as of unknown history) and judged past."""
        for vm, waiting in list(self._waiting.items()):
            flying = self._in_flight.get(vm)
            if not waiting or not flying:
                continue
            for tid in [t for t in flying if self._flying_since.get(t, 0.0) + STALL_PATIENCE <= now]:
                footprint = flying.pop(tid)
                self._flying_since.pop(tid, None)
                task = self.tasks.get(tid)
                syscall = task.pending.syscall if task is not None and task.pending is not None else "?"
                self._overtaken[tid] = (syscall, footprint)
                pid = task.pid if task is not None else vm
                self.sink.on_event(CallStalled(time.time(), pid, tid, syscall, footprint))
            if not flying:
                del self._in_flight[vm]
            self._drain(vm)

    def _forget_stop(self, tid: int) -> None:
        """A thread that died while its stop was handled has no pending call
        (what the sink made of one is kept: its ExitEvent hands it back)."""
        task = self.tasks.get(tid)
        if task is not None:
            task.pending = None
            task.exit_hook = None

    def _handle(self, tid: int, status: int) -> None:
        if status in _SYSCALL_STOPS and not self._holds and not self._detaching:
            # Most stops: what _route and _dispatch would do for them, with
            # no descriptor table held and no detach under way.
            task = self.tasks.get(tid)
            if task is not None:
                self._stops += 1
                self._syscall_stop(task)
                return
        if not os.WIFSTOPPED(status):
            if os.WIFEXITED(status) or os.WIFSIGNALED(status):
                self._gone(tid, status)
            return
        task = self.tasks.get(tid)
        self._stops += 1
        event = status >> 16
        if task is None:
            task = self._adopt(tid)
            if event == abi.PTRACE_EVENT_STOP and not self._detaching:
                # A new task reported before its creator's fork/clone event:
                # it has run no instruction yet. It stays stopped until that
                # event says whose address space it has, so none of its calls
                # (or an exec) can be judged against a model it is not in.
                task.held = True
                if task.tid == task.pid:
                    self._unclaimed[task.tid] = time.monotonic()
                if not any(other.pid == task.parent for other in self.tasks.values() if other is not task):
                    # Its creator is gone (it was made while its creator's process
                    # died, and was reparented): that event never comes.
                    self._release_orphans(task.parent)
                elif task.tid <= self._exec_marks.get(task.parent, 0):
                    # Made before its creator's process exec'd, by a thread the
                    # exec killed before its event (attack_fork_exec_orphan).
                    self._release_orphans(task.parent, made_until=self._exec_marks[task.parent])
                return
        self._route(task, status)

    def _route(self, task: _Task, status: int) -> None:
        """Answer a stop, or keep it for later while the task's descriptor
        table is held for another task's open."""
        hold = self._hold_over(task) if self._holds else None
        if hold is not None and task.tid != hold.owner and not self._detaching:
            hold.held.append((task.tid, status, None))
            hold.waiting.discard(task.tid)
            self._start_if_quiet(hold)
            return
        self._dispatch(task, status)

    def _dispatch(self, task: _Task, status: int) -> None:
        tid = task.tid
        sig = os.WSTOPSIG(status)
        event = status >> 16
        if self._detaching:
            self._detach(task, sig, event)
        elif sig == signal.SIGTRAP | 0x80 or (sig == signal.SIGTRAP and event == abi.PTRACE_EVENT_SECCOMP):
            self._syscall_stop(task)
        elif sig == signal.SIGTRAP and event in (abi.PTRACE_EVENT_FORK, abi.PTRACE_EVENT_VFORK,
                                                abi.PTRACE_EVENT_CLONE):
            self._new_task(task, event)
        elif sig == signal.SIGTRAP and event == abi.PTRACE_EVENT_EXEC:
            self._exec(task)
        elif event == abi.PTRACE_EVENT_STOP:
            if sig in _GROUP_STOP_SIGNALS:
                _fast_ptrace(abi.PTRACE_LISTEN, tid, 0, 0)
            else:
                self._resume(task)
        elif sig == signal.SIGSEGV and self.handler is not None and self._fault_handled(task):
            self._resume(task)
        else:
            self._resume(task, sig)

    def _fault_handled(self, task: _Task) -> bool:
        # No PTRACE_GETSIGINFO: one syscall less per emulated fault, and an
        # emulator learns what it needs (the faulting PC) from the registers.
        regs = _getregs(task.tid)
        arch = "i386" if regs.cs == _CS_I386 else "x86_64"
        return self.handler.on_fault(task.pid, task.tid, Control(self, task.tid, arch, regs))

    def _resume(self, task: _Task, sig: int = 0) -> None:
        if not sig and task.deferred_signal:
            sig, task.deferred_signal = task.deferred_signal, 0
        want_exit = task.syscall_mode or task.pending or task.exit_hook
        request = abi.PTRACE_SYSCALL if want_exit else abi.PTRACE_CONT
        # Every stop ends here. A thread gone meanwhile is no error: its
        # exit is reported next. (try, not contextlib.suppress: this runs
        # at every stop.)
        try:
            _fast_ptrace(request, task.tid, 0, sig)
        except NoSuchProcess:
            return

    def _detach(self, task: _Task, sig: int, event: int) -> None:
        deliver = sig if event == 0 and sig not in (signal.SIGTRAP, signal.SIGTRAP | 0x80) else 0
        with contextlib.suppress(TraceError):
            _fast_ptrace(abi.PTRACE_DETACH, task.tid, 0, deliver)
        self.tasks.pop(task.tid, None)

    def _adopt(self, tid: int) -> _Task:
        """A task reported before its parent's clone event: find its process."""
        try:
            pid = procfs.read_tgid(tid)
            parent = procfs.read_ppid(tid) if pid == tid else pid
        except TraceError:
            pid = parent = tid
        task = _Task(tid, pid, parent=parent)
        self.tasks[tid] = task
        return task

    # --- syscalls ---------------------------------------------------------------

    def _syscall_info(self, tid: int) -> bytes:
        _fast_ptrace(abi.PTRACE_GET_SYSCALL_INFO, tid, _INFO_SIZE, self._info_addr)
        return self._info.raw

    def _syscall_stop(self, task: _Task) -> None:
        _fast_ptrace(abi.PTRACE_GET_SYSCALL_INFO, task.tid, _INFO_SIZE, self._info_addr)
        raw = self._info.raw
        op = raw[0]
        if op == abi.PTRACE_SYSCALL_INFO_EXIT:
            self._syscall_exit(task, raw)
        elif op in (abi.PTRACE_SYSCALL_INFO_ENTRY, abi.PTRACE_SYSCALL_INFO_SECCOMP):
            self._syscall_entry(task, raw)
        # Else the number is in no syscall stop now: the stop is stale, the
        # old leader's, and the number is the exec'ing thread's, stopped at
        # its exec (a stop kept for a hold, or a round's, from before that
        # exec stop was taken). Left alone: its exec stop resumes it once
        # the exec is judged (resuming here would run the new program first).

    def _syscall_entry(self, task: _Task, raw: bytes) -> None:
        if task.recv_wait and _is_the_wait(task.recv, raw):
            self._resume(task)  # the wait a blocking receive makes between steps: its exit matters
            return
        fields = _ENTRY.unpack_from(raw)
        arch_id, ip, sp, nr, args = fields[1], fields[2], fields[3], fields[4], fields[5:]
        arch = abi.ARCH_NAMES.get(arch_id)
        if arch is None:
            self._resume(task)
            return
        if arch == "i386":
            args = tuple(a & 0xFFFFFFFF for a in args)
        if self.handler is not None:
            ctl = Control(self, task.tid, arch)
            if self.handler.on_syscall(RawCall(task.pid, task.tid, arch, nr, args, ip, sp), ctl):
                task.pending = None
                self._resume(task)
                return
            if ctl.arguments is not None:
                args = tuple(ctl.arguments)
            if ctl.number is not None:
                nr = ctl.number
        if nr & ~_X32_BIT == _NR_MADVISE[arch] and args[2] & 0xFFFFFFFF == abi.MADV_DONTFORK:
            # Asked, whether or not it succeeds: its forks' children are read.
            self.kept_from_children(task.tid)
            self._resume(task)
            return
        name = abi.SYSCALL_NAMES[arch_id].get(nr) if not nr & _X32_BIT else _x32_name(nr)
        if name is None or name in _PASSED_ON:
            # An exec is seen at its PTRACE_EVENT_EXEC stop instead.
            task.pending = None
            self._resume(task)
            return
        serialised = name in _SERIALISED
        call = MemCall(time.time(), task.pid, task.tid, name, arch, args, ip, sp)
        if name in _SETTLED_ALONE and self._alone(task) and self.sink.settle_alone(call):
            # Nothing else can run in this address space before its exit, and
            # it has nothing to report: one stop, as a settled reply below.
            task.pending = task.entry = None
            self._resume(task)
            return
        peek = self._peek_for(task.tid)
        if arch == "i386":
            call = _normalise(call, peek)
        if call is None:
            self._resume(task)
            return
        if call.syscall in _DESCRIPTOR_CALLS:
            self._descriptor_entry(task, call, name)
            return
        if name == "swapon":
            self._swapon_seen = True
        if name == "clone3" and self.clone3_exit_only:
            task.pending, task.entry = call, None
            self._resume(task)
            return
        if name in _FOREIGN_WRITE_CALLS:
            call = _foreign_write_target(call)
            if call is None:
                self._resume(task)
                return
        elif name == "mmap" or name == "mmap2":
            call = _with_fd_object(call)
            obj = call.fd_object
            # The usual file (old, on a filesystem that was there) costs three compares.
            if obj is not None and (self._changed_since_start(obj.ctime_ns)
                                    or obj.dev not in self._start_devices
                                    or obj.dev in self._image_devices or stat.S_ISBLK(obj.mode)
                                    or obj.dev in self._swap_devices or self._swapon_seen
                                    or obj.dev in self._kernel_filled or self._unstamped_store(obj)):
                self._report_fresh(call.tid, call.pid, ((obj, obj.dev, f"/proc/{call.tid}/fd/{obj.fd}"),))
        elif call.syscall == "shmat":
            call = self._with_segment(call)
            if len(call.args) == _IPC_SHMAT_ARGC:
                task.attaches = _segment_attaches(task.tid, call.args[0], call.object_size)
        footprint: Footprint = None
        # A task alone in its address space has nothing in flight to wait for.
        alone = serialised and self._alone(task)
        if serialised and not alone:
            footprint = self.sink.footprint(call)
            if self._must_wait(task, footprint):
                # A call in flight may change what this one is judged on.
                self._waiting.setdefault(task.vm, collections.deque()).append((task, raw, footprint))
                if footprint is None:
                    self._wide_waiting[task.vm] += 1
                return
        reply, entry = self.sink.on_call(call, peek)
        if reply.kill:
            self._kill_process(task)
            return
        if reply.settled and alone:
            # Nothing else can run in this address space before its exit (and no
            # call of it waits): returned now, one stop instead of two.
            task.pending = task.entry = None
            self.sink.on_event(MemReturn(call, 0, entry))
            self._resume(task)
            return
        task.entry = entry
        if reply.deny_errno is not None:
            self._skip_syscall(task, reply.deny_errno)
        task.pending = call if reply.want_exit else None
        if serialised and task.pending is not None:
            self._in_flight.setdefault(task.vm, {})[task.tid] = footprint
            self._flying_since[task.tid] = time.monotonic()
        if (task.pending is not None and reply.deny_errno is None and self._may_undo_at_exit(task, call)
                and self._hold_siblings(task, whole_vm=True)):
            return  # the mapping is made once every task that could use it has stopped
        self._resume(task)

    def _alone(self, task: _Task) -> bool:
        """Whether task is the only task of its address space the tracer
        knows (a task it creates is reported before it returns from clone)."""
        return self.tasks.alone(task)

    def kept_from_children(self, tid: int) -> None:
        """Some range of tid's address space may be kept out of forked
        children (MADV_DONTFORK): its forks are no longer vouched copies."""
        task = self.tasks.get(tid)
        if task is not None:
            self._dontfork.add(task.vm)

    def _must_wait(self, task: _Task, footprint: Footprint) -> bool:
        """True when a call of `task` with `footprint` must wait: another
        call in flight in its address space overlaps it (or one of the two
        needs the whole space), or a whole-space call is already waiting."""
        return bool(self._wide_waiting.get(task.vm)) or self._blocked(task.vm, task.tid, footprint)

    def _blocked(self, vm: int, tid: int, footprint: Footprint) -> bool:
        """True when a call in flight in `vm` (not tid's own) overlaps `footprint`."""
        flying = self._in_flight.get(vm)
        if not flying:
            return False
        if footprint is None:
            return any(other_tid != tid for other_tid in flying)
        # Plain loops: this runs for every memory call, against every call in flight.
        for other_tid, other in flying.items():
            if other_tid == tid:
                continue
            if other is None:
                return True
            for start, end in other:
                for lo, hi in footprint:
                    if start < hi and lo < end:
                        return True
        return False

    def _task_gone(self, task: _Task) -> None:
        """A task vanished (or left its address space by exec): release its
        call in flight and its place in the queue."""
        self._call_done(task)
        self._forget_waiting(task)
        if self.fast is not None:
            self.fast.untrack(task.tid)

    def _call_done(self, task: _Task) -> None:
        """The memory call of `task` returned (or the task is gone): judge
        the next waiting call of its address space."""
        if task.tid in self._overtaken:
            # Back from the kernel after others were judged past it: what it
            # changed is taken from the kernel again (after its result).
            syscall, footprint = self._overtaken.pop(task.tid)
            self.sink.on_event(CallStalled(time.time(), task.pid, task.tid, syscall, footprint,
                                           returned=True))
            return
        self._flying_since.pop(task.tid, None)
        flying = self._in_flight.get(task.vm)
        if flying is None or flying.pop(task.tid, _NOT_FLYING) is _NOT_FLYING:
            return
        if not flying:
            del self._in_flight[task.vm]
        self._drain(task.vm)

    def _forget_waiting(self, task: _Task) -> None:
        """Drop a waiting call of a task that is gone (or exec'd)."""
        waiting = self._waiting.get(task.vm)
        if not waiting or not any(queued is task for queued, _, _ in waiting):
            return
        kept = collections.deque(entry for entry in waiting if entry[0] is not task)
        self._waiting[task.vm] = kept
        self._wide_waiting[task.vm] = sum(1 for entry in kept if entry[2] is None)
        self._drain(task.vm)

    def _drain(self, vm: int) -> None:
        """Judge, in arrival order, the waiting calls of address space `vm`
        that no call in flight blocks any more; a waiting whole-space call
        blocks every call behind it."""
        waiting = self._waiting.get(vm)
        if not waiting:
            return
        flying = self._in_flight.get(vm)
        if flying and waiting[0][2] is None:
            return  # the head needs the whole space and something is in flight
        self._waiting[vm] = kept = collections.deque()
        self._wide_waiting.pop(vm, None)
        for entry in waiting:
            queued, raw, footprint = entry
            if self.tasks.get(queued.tid) is not queued:
                continue
            hold = self._hold_over(queued)
            if hold is not None and queued.tid != hold.owner:
                hold.held.append((queued.tid, None, raw))  # its descriptor table is held: later
                continue
            if self._wide_waiting.get(vm) or self._blocked(vm, queued.tid, footprint):
                kept.append(entry)
                if footprint is None:
                    self._wide_waiting[vm] += 1
                continue
            try:
                self._syscall_entry(queued, raw)
            except NoSuchProcess:
                self._forget_stop(queued.tid)
        if not kept:
            self._waiting.pop(vm, None)

    def _may_undo_at_exit(self, task: _Task, call: MemCall) -> bool:
        """Whether the mapping `call` makes may be judged anew and undone at
        its exit (_old_mmap_as_mapped, _mapped_object_changed) in a way that
        matters: an i386 old_mmap (its block is read by the kernel after the
        tracer), or an executable or shared writable descriptor mmap whose
        descriptor another task can swap. Until the undo, another task of
        the address space could run, write or mseal what the kernel mapped."""
        if call.syscall not in ("mmap", "mmap2"):
            return False
        if call.syscall == "mmap" and call.arch == "i386":
            return True
        prot, flags = call.args[2], call.args[3]
        if flags & abi.MAP_ANONYMOUS or call.args[4] & 0xFFFFFFFF == 0xFFFFFFFF:
            return False
        return bool(prot & abi.PROT_EXEC or (flags & abi.MAP_SHARED and prot & abi.PROT_WRITE)) and \
            self._shares_descriptors(task)

    def _end_hold(self, task: _Task) -> None:
        """Let go the tasks held for task's call (it returned and is judged)."""
        hold = self._holds.get(task.files_key)
        if hold is not None and hold.owner == task.tid:
            self._release(task.files_key)

    def _mapped_object_changed(self, task: _Task, call: MemCall, start: int) -> MemCall | None:
        """For a descriptor mmap that may matter, the call with the object
        the kernel really mapped when it is not the one the descriptor named
        at entry (another thread swapped the descriptor with dup2 in
        between); None when it is the same. Every mmap of a descriptor
        another task could have swapped matters (a read-only view is made
        executable later, or a ring fork keeps out of children is taken for
        a file); otherwise only executable or shared and writable ones."""
        prot, flags = call.args[2], call.args[3]
        if flags & abi.MAP_ANONYMOUS or call.args[4] & 0xFFFFFFFF == 0xFFFFFFFF:
            return None
        if not (prot & abi.PROT_EXEC or (flags & abi.MAP_SHARED and prot & abi.PROT_WRITE)
                or self._shares_descriptors(task)):
            return None
        end = start + ((call.args[1] + abi.PAGE_SIZE - 1) & ~(abi.PAGE_SIZE - 1))
        try:
            actual = procfs.mapped_object(task.tid, start, end)
        except NoSuchProcess:
            raise
        except TraceError:
            actual = None
        entry = call.fd_object
        if actual is None or (entry is not None and (entry.dev, entry.inode, entry.path) == (
                actual.dev, actual.inode, actual.path)):
            return None
        visible = next((m.dev for m in procfs.read_maps(task.tid) if m.start <= start < m.end), actual.dev)
        self._report_fresh(task.tid, call.pid, ((actual, visible, _map_files(task.tid, start, end)),))
        return call._replace(fd_object=actual)

    def _shares_descriptors(self, task: _Task) -> bool:
        """Whether another traced task (a thread, a CLONE_FILES child) uses
        task's descriptor table and so could change it during task's call."""
        key = task.files_key
        return any(other.files_key == key and other is not task for other in self.tasks.values())

    def _old_mmap_as_mapped(self, task: _Task, call: MemCall, start: int) -> MemCall | None:
        """i386 old_mmap takes its arguments from a block in the program's
        memory, which the kernel reads after the tracer did (another thread
        may have changed it; memfd_secret memory cannot be read at all): the
        call as the kernel's maps show the mapping it made, when that is not
        what was judged at entry; None when it is. A length of 0 (the block
        could not be read) is taken from the mapping; maps that cannot be
        read stand for the worst (anonymous, private, RWX)."""
        prot_asked, flags_asked = call.args[2] & abi.PROT_MASK, call.args[3]
        try:
            entry = next((m for m in procfs.read_maps(task.tid) if m.start <= start < m.end), None)
        except NoSuchProcess:
            raise
        except TraceError:
            entry = None
        length = (call.args[1] + abi.PAGE_SIZE - 1) & ~(abi.PAGE_SIZE - 1)
        if entry is None:
            prot, shared, obj = abi.PROT_MASK, False, None
            length = length or abi.PAGE_SIZE
        else:
            prot, shared = entry.prot & abi.PROT_MASK, entry.shared
            if not length or start + length > entry.end:
                length = entry.end - start
            obj = procfs.mapped_object(task.tid, start, start + length) if entry.dev else None
            if obj is not None:
                self._report_fresh(task.tid, call.pid, (
                    (obj, entry.dev, _map_files(task.tid, entry.start, entry.end)),))
        anonymous = obj is None
        asked_shared = flags_asked & abi.MAP_TYPE in (abi.MAP_SHARED, abi.MAP_SHARED_VALIDATE)
        same_object = (call.fd_object is None) == anonymous and (anonymous or (
            call.fd_object.dev, call.fd_object.inode) == (obj.dev, obj.inode))
        if call.args[1] and (prot, shared) == (prot_asked, asked_shared) and same_object:
            return None
        flags = (abi.MAP_SHARED if shared else abi.MAP_PRIVATE) | (abi.MAP_ANONYMOUS if anonymous else 0)
        fd = 0xFFFFFFFF if anonymous else call.args[4]
        offset = call.args[5] if not anonymous else 0
        return call._replace(args=(start, length, prot, flags, fd, offset), fd_object=obj)

    def _refuse_result(self, task: _Task, call: MemCall, start: int, err: int) -> bool:
        """Undo a mapping the kernel made before the thread runs again: unmap
        it and make the call return -err. False when the munmap did not
        unmap it (another task mseal()ed the mapping while the call ran past
        its hold; the program's own seccomp filter made the injected call
        return 0 unrun: the maps say): the call keeps its result."""
        ctl = Control(self, task.tid, call.arch)
        ctl._at_exit = True
        length = (call.args[1] + abi.PAGE_SIZE - 1) & ~(abi.PAGE_SIZE - 1)
        munmap = abi.SYSCALLS_I386["munmap"] if call.arch == "i386" else abi.SYSCALLS_X86_64["munmap"]
        # As every held task sharing the space shows it (a dying caller's own
        # maps are empty, the space alive in the others).
        witnesses = (task.tid, *self._held_sharers(task, space=True))
        undone = ctl.inject(munmap, start, length) == 0 and all(
            _unmapped(tid, start, start + length) for tid in witnesses)
        ctl.finish(-err if undone else start)
        return undone

    def _syscall_exit(self, task: _Task, raw: bytes) -> None:
        call, task.pending = task.pending, None
        receive = call if (call is not None and task.recv is not None and not task.recv_wait
                           and call.syscall in _RECEIVE_CALLS) else None
        if call is not None:
            _, _, _, _, rval, is_error = _EXIT.unpack_from(raw)
            if not is_error and call.arch == "i386":
                rval &= 0xFFFFFFFF
            if call.syscall in _DESCRIPTOR_CALLS:
                if self._descriptor_exit(task, call, rval, bool(is_error)):
                    return  # killed
                call = None  # judged and reported there
        if call is not None and call.syscall == "clone3" and not is_error and rval > 0:
            call = self._untraced_child(task, call, rval)
            if call is None:
                return  # refused: answered there
        if call is not None and call.syscall == "clone3" and call.target is None and self.clone3_exit_only:
            call = None  # a followed child: nothing was judged, nothing to report
        placed = True
        if call is not None:
            if call.syscall == "shmat" and len(call.args) == _IPC_SHMAT_ARGC and not is_error:
                address = self._attached_at(task, call)
                placed = address is not None
                rval = address if address is not None else rval
            if call.syscall in ("mmap", "mmap2") and not is_error:
                if call.syscall == "mmap" and call.arch == "i386":
                    rechecked = self._old_mmap_as_mapped(task, call, rval)
                else:
                    rechecked = self._mapped_object_changed(task, call, rval)
                if rechecked is not None:
                    call = rechecked
                    reply, task.entry = self.sink.on_result(call, self._peek_for(task.tid), task.entry)
                    if reply.kill:
                        self._kill_process(task)
                        self._end_hold(task)
                        self._call_done(task)
                        return
                    if reply.deny_errno is not None:
                        if self._refuse_result(task, call, rval, reply.deny_errno):
                            rval = -reply.deny_errno
                        else:
                            # The mapping stays (sealed): reported as the call's result
                            # (not enforced), and the process dies before it runs again.
                            entry, task.entry = task.entry, None
                            self.sink.on_event(MemReturn(call, rval, entry))
                            self._kill_process(task)
                            self._end_hold(task)
                            self._call_done(task)
                            return
            entry, task.entry = task.entry, None
            if (placed and not self._holds and task.exit_hook is None and receive is None
                    and self.sink.returns_unread(call, bool(is_error), entry)):
                # Nothing to read at this stop and nothing to report: the
                # thread runs while the model takes the result (its next
                # trapped call waits for the tracer, which is busy with this).
                self._resume(task)
                self.sink.on_event(MemReturn(call, rval, entry))
                self._call_done(task)
                return
            self.sink.on_event(MemReturn(call, rval, entry))
            if not placed:
                # Where it landed is not known: the whole space is taken from
                # the maps with unknown (possibly written) history.
                self.sink.on_event(CallStalled(time.time(), task.pid, task.tid, call.syscall, None,
                                               returned=True))
            if self._holds:
                self._end_hold(task)
            self._call_done(task)
        hook, task.exit_hook = task.exit_hook, None
        if hook is not None:
            _, arch_id, _, _, rval, _ = _EXIT.unpack_from(raw)
            ctl = Control(self, task.tid, abi.ARCH_NAMES.get(arch_id, "x86_64"))
            ctl._at_exit = True
            hook(rval, ctl)
        if receive is not None:
            _, _, _, _, rval, _ = _EXIT.unpack_from(raw)
            self._receive_step_done(task, receive, _signed(rval, receive.arch))
        self._resume(task)

    def _attached_at(self, task: _Task, call: MemCall) -> int | None:
        """Where an ipc(SHMAT) attached its segment, from the kernel's maps:
        the one full attach of the segment (offset 0, its size) that was not
        in the maps at the call's entry (no other call of the address space
        ran meanwhile: shmat waits for the whole space). The address the
        kernel stored in the program's memory is believed only when it names
        such an attach and the maps cannot tell which one is new (one equal
        to it was replaced); None when nothing says where it is."""
        before, task.attaches = task.attaches, None
        after = _segment_attaches(task.tid, call.args[0], call.object_size)
        if before is None or after is None:
            return None
        new = [start for start, _, _ in after - before]
        if len(new) == 1:
            return new[0]
        if new:
            return None
        stored = _ipc_shmat_address(self._peek_for(task.tid), call)
        return stored if stored is not None and any(start == stored for start, _, _ in after) else None

    def _untraced_child(self, task: _Task, call: MemCall, child: int) -> MemCall | None:
        """At a clone3's exit: a child the kernel reported no clone event for
        was made untraced (its flags live in memory, so only the result
        tells). It is judged (`opaque`, CLONE_UNTRACED) and the call returned
        as judged (with `target`, the child); a refusal kills the child and
        makes the call return -errno, a kill rule kills both: then None (the
        stop is answered). A caller in another pid namespace numbers its
        children differently: not judged. A child reported and already gone
        (a short thread) is no untraced one."""
        if child in self.tasks or child == task.made or not procfs.same_namespace(task.tid, "pid"):
            return call
        call = call._replace(target=child)
        reply, task.entry = self.sink.on_result(call, self._peek_for(task.tid), task.entry)
        if not (reply.kill or reply.deny_errno is not None):
            return call
        with contextlib.suppress(ProcessLookupError):
            os.kill(child, signal.SIGKILL)
        if reply.kill:
            self._kill_process(task)
            return None
        regs = _getregs(task.tid)
        regs.rax = (-reply.deny_errno) & 0xFFFFFFFFFFFFFFFF
        _setregs(task.tid, regs)
        entry, task.entry = task.entry, None
        self.sink.on_event(MemReturn(call, -reply.deny_errno, entry))
        self._resume(task)
        return None

    def step_to_syscall_exit(self, tid: int) -> int:
        """Resume tid until its current syscall returns; return rax (used by
        Control.inject). Other threads' stops wait in the kernel meanwhile."""
        while True:
            _fast_ptrace(abi.PTRACE_SYSCALL, tid, 0, 0)
            _, status = os.waitpid(tid, _WALL)
            if not os.WIFSTOPPED(status):
                self._gone(tid, status)
                raise NoSuchProcess("exited during an injected syscall", pid=tid)
            if os.WSTOPSIG(status) == signal.SIGTRAP | 0x80:
                raw = self._syscall_info(tid)
                if raw[0] == abi.PTRACE_SYSCALL_INFO_EXIT:
                    return _getregs(tid).rax
            elif status >> 16 == 0 and tid in self.tasks:
                # A signal delivered before Control blocked them (an injection
                # from an exit stop): resend it when the thread resumes.
                self.tasks[tid].deferred_signal = os.WSTOPSIG(status)
                if self.fast is not None:
                    self.fast.untrack(tid)

    # --- descriptors judged at exit ----------------------------------------------------

    def _descriptor_entry(self, task: _Task, call: MemCall, name: str) -> None:
        """A call that may hand the process a descriptor: learn what it is at
        the exit. An open (or a receive) first stops every other task that
        shares the descriptor table, so none can use the new descriptor
        before it is judged (they go on when it is)."""
        if task.syscall_mode and not _may_write(call):
            self._resume(task)
            return
        task.pending, task.entry = call, None
        if call.syscall in _HELD_CALLS and self._hold_siblings(task):
            return  # the opener goes on once every sibling has stopped
        if call.syscall in _RECEIVE_CALLS and self._receive_entry(task, call, name):
            return
        self._resume(task)

    # --- receives held like opens -------------------------------------------------------

    def _receive_entry(self, task: _Task, call: MemCall, name: str) -> bool:
        """A receive in a process with siblings runs with them held, in steps
        that never block (MSG_DONTWAIT added): between steps its thread waits
        for data unheld (_receive_step_done). An i386 socketcall receive runs
        as the direct call with the arguments read from its block once (the
        kernel then reads registers, which no other thread can change; an
        unreadable block fails with EFAULT). Returns True when the thread
        waits for the hold; False when it runs as it is (no sibling, or
        MSG_WAITALL: a step would return short)."""
        from . import receive_steps

        recv = task.recv
        if recv is not None and task.recv_wait:
            # A signal handler's receive while this thread's receive waits
            # between steps: held as it is (it may block with them held).
            return self._hold_siblings(task)
        if recv is not None and recv.ip != call.ip:
            recv = task.recv = None  # another receive (a signal handler's): the old one is over
        args: tuple[int, ...] | None = call.args
        if name == "socketcall":
            args = receive_steps.socketcall_arguments(call, self._peek_for(task.tid))
        flag_arg = _RECV_FLAGS_ARG[call.syscall]
        if not self._hold_siblings(task):
            return False
        ctl = Control(self, task.tid, call.arch)
        if args is None:
            self._skip_syscall(task, errno.EFAULT)  # judged at exit as failed: the hold ends there
            return True
        if recv is None:
            names = _ARG_REGISTERS[call.arch]
            recv = task.recv = receive_steps.Receive(
                call.ip, ctl.register("orig_rax"), args[flag_arg] & 0xFFFFFFFF,
                {n: ctl.register(n) for n in names[:len(args)]})
            if call.syscall == "recvmmsg":
                recv.vlen = min(args[2] & 0xFFFFFFFF, receive_steps.UIO_MAXIOV)
                recv.timespec32 = call.arch == "i386" and name != "recvmmsg_time64"
                recv.deadline = receive_steps.receive_deadline(args[4], recv.timespec32, ctl)
            elif recv.flags & _MSG_WAITALL:
                recv.waitall = receive_steps.read_waitall(ctl, call.arch, args[1])
        if name == "socketcall":
            ctl.rewrite_arguments(args, abi.SYSCALLS_I386[call.syscall])
            call = task.pending = call._replace(args=args)
        if not recv.flags & _MSG_DONTWAIT:
            register = _ARG_REGISTERS[call.arch][flag_arg]
            ctl.set_registers({register: recv.flags | _MSG_DONTWAIT})
        return True

    def _receive_step_done(self, task: _Task, call: MemCall, kernel_result: int) -> None:
        """At the exit of a held receive step (its descriptors judged, its
        siblings let go): when the program's receive would still be blocked
        (nothing came and the socket blocks; a blocking recvmmsg got fewer
        messages than asked and its timeout has not passed), the thread waits
        for data, unheld, in recvfrom(fd, NULL, 0, MSG_PEEK) (no memory, no
        descriptor installed, SO_RCVTIMEO and signals act as on the receive),
        then runs the next step (judged anew). Otherwise the receive ends: the
        program's registers are given back, with its result."""
        from . import receive_steps

        recv = task.recv
        regs = _getregs(task.tid)
        result = _signed(regs.rax, call.arch)
        names = _ARG_REGISTERS[call.arch]
        flag_arg = _RECV_FLAGS_ARG[call.syscall]
        all_of_them = call.syscall == "recvmmsg" and not recv.flags & _MSG_WAITFORONE
        wait = False
        if result != kernel_result:
            final = result  # refused at exit
        elif result >= 0 and all_of_them and recv.done + result < recv.vlen:
            recv.done += result
            final = recv.done
            wait = recv.deadline is None or time.monotonic() < recv.deadline
            if wait:
                size = receive_steps.MMSGHDR_SIZE[call.arch]
                setattr(regs, names[1], call.args[1] + result * size)
                setattr(regs, names[2], call.args[2] - result)
        elif result > 0 and recv.waitall is not None and recv.done + result < recv.waitall.wanted:
            recv.done += result
            final = recv.done
            ctl = Control(self, task.tid, call.arch, regs)
            fd = call.args[0] & 0xFFFFFFFF
            wait = (not receive_steps.control_delivered(ctl, recv.waitall)
                    and receive_steps.socket_type(task.pid, fd) == receive_steps.SOCK_STREAM)
            if wait:
                receive_steps.waitall_advance(ctl, recv.waitall, recv.done)
        elif result >= 0:
            final = recv.done + result
        else:
            final = recv.done or result
            wait = result == -errno.EAGAIN
        if wait:
            wait = not recv.flags & _MSG_DONTWAIT and self._socket_blocks(task, call.args[0] & 0xFFFFFFFF)
        if not wait:
            self._receive_end(task, regs, final)
            return
        setattr(regs, names[flag_arg], recv.flags)
        step = type(regs).from_buffer_copy(regs)
        for name, value in zip(names, (call.args[0], 0, 0, receive_steps.MSG_PEEK, 0, 0), strict=True):
            setattr(regs, name, value)
        regs.rax = receive_steps.NR_RECVFROM[call.arch]
        regs.rip -= _SYSCALL_INSN_LEN
        _setregs(task.tid, regs)
        task.recv_wait = True
        task.exit_hook = functools.partial(self._waited_for_data, task, step, call)

    def _socket_blocks(self, task: _Task, fd: int) -> bool:
        try:
            return not procfs.fd_flags(task.tid, fd) & os.O_NONBLOCK
        except TraceError:
            return False

    def _receive_end(self, task: _Task, regs, result: int) -> None:
        """End a held receive: the program's registers back, `result` in rax."""
        from . import receive_steps

        recv, task.recv = task.recv, None
        if recv.waitall is not None and recv.waitall.edited:
            receive_steps.waitall_restore(Control(self, task.tid, recv.waitall.arch, regs), recv.waitall)
        for name, value in recv.restore.items():
            setattr(regs, name, value)
        regs.rax = result & 0xFFFFFFFFFFFFFFFF
        if result in _RESTART_CODES:
            # The kernel's signal code restarts the program's own call (or
            # makes it EINTR): its number, its registers.
            regs.orig_rax = recv.nr
        _setregs(task.tid, regs)

    def _waited_for_data(self, task: _Task, step, call: MemCall, result: int, ctl: Control) -> None:
        """The wait in place of a blocking receive returned: run the next
        step, or end the receive with what the wait says (a signal:
        -ERESTARTSYS, EINTR or restarted as the kernel decides; SO_RCVTIMEO
        ran out: EAGAIN; the socket's error), or with the messages a
        recvmmsg already got."""
        from . import receive_steps

        recv = task.recv
        if recv is None:
            task.recv_wait = False
            return
        if ctl.register("orig_rax") != receive_steps.NR_RECVFROM[call.arch] or ctl.register("rip") != recv.ip:
            # Another call's exit (a signal handler ran first): still waiting.
            task.exit_hook = functools.partial(self._waited_for_data, task, step, call)
            return
        task.recv_wait = False
        if result < 0:
            self._receive_end(task, step, recv.done or result)
            return
        if recv.deadline is not None:
            receive_steps.write_time_left(ctl, recv, call.args[4])
        step.rax = step.orig_rax
        step.rip -= _SYSCALL_INSN_LEN
        _setregs(task.tid, step)

    def _hold_siblings(self, task: _Task, whole_vm: bool = False) -> bool:
        """Stop every other task sharing task's descriptor table (and, with
        whole_vm, its address space) until task's call is judged; True when
        task waits for them to stop (the hold starts it)."""
        key = task.files_key
        if key in self._holds:
            return False
        # Tasks we keep stopped already (new ones awaiting their creator's
        # event, entry stops queued behind a memory call) cannot run: no
        # interrupt for them, it would never be answered.
        queued = {id(t) for waiting in self._waiting.values() for t, _, _ in waiting}
        siblings = [t.tid for t in self.tasks.values()
                    if (t.files_key == key or (whole_vm and t.vm == task.vm))
                    and t.tid != task.tid and not t.held and id(t) not in queued]
        if not siblings:
            return False
        # Siblings that do not stop in time sleep in the kernel (a FUSE request
        # the opener serves): their interrupt stops them before they run
        # another instruction, so the opener may start without their stops.
        hold = _Hold(task.tid, set(), [], deadline=time.monotonic() + HOLD_PATIENCE,
                     vm=task.vm if whole_vm else 0)
        for tid in siblings:
            try:
                _fast_ptrace(abi.PTRACE_INTERRUPT, tid, 0, 0)
            except NoSuchProcess:
                continue  # gone: its exit is reported
            hold.waiting.add(tid)
        if not hold.waiting:
            return False
        self._holds[key] = hold
        return True

    def _hold_over(self, task: _Task) -> _Hold | None:
        """The hold that keeps task's stops: its descriptor table's, or one
        over its address space."""
        hold = self._holds.get(task.files_key)
        if hold is None:
            hold = next((h for h in self._holds.values() if h.vm and h.vm == task.vm), None)
        return hold

    def _start_if_quiet(self, hold: _Hold) -> None:
        if hold.waiting or hold.started:
            return
        self._start(hold)

    def _start(self, hold: _Hold) -> None:
        """Let the opener of a hold go into its call."""
        hold.started = True
        hold.started_at = time.monotonic()
        hold.deadline = hold.started_at + HOLD_PATIENCE
        hold.unstopped = frozenset(self.tasks[tid].pid for tid in hold.waiting if tid in self.tasks)
        owner = self.tasks.get(hold.owner)
        if owner is not None:
            self._resume(owner)

    def _hold_overdue(self, key: int, hold: _Hold) -> None:
        """A held call still in the kernel at its hold's deadline. A FIFO's
        open waits for its other end (maybe a held sibling) and yields the
        FIFO, nothing to refuse: the siblings go. Anything else may yield a
        mem descriptor or a mapping to undo, which a sibling let go could
        use before the exit stop refuses it: they stay held until
        BLOCKED_PATIENCE, then the call is judged as the `blocked` pseudo
        call (opaque: nothing of it can be judged, and it may wait for a
        held task). A refusal kills every process of the hold (the call
        cannot be refused while it runs); otherwise the siblings go."""
        now = time.monotonic()
        owner = self.tasks.get(hold.owner)
        pending = owner.pending if owner is not None else None
        if pending is None or procfs.wait_channel(hold.owner) == "wait_for_partner":
            self._release(key)
            return
        if now < hold.started_at + BLOCKED_PATIENCE:
            hold.deadline = min(now + HOLD_PATIENCE, hold.started_at + BLOCKED_PATIENCE)
            return
        blocked = MemCall(time.time(), owner.pid, owner.tid, BLOCKED_PSEUDO_SYSCALL, pending.arch, (),
                          ip=pending.ip, sp=pending.sp, stack=pending.stack, path=pending.syscall)
        reply, entry = self.sink.on_call(blocked, self._peek_for(owner.tid))
        if reply.kill or reply.deny_errno is not None:
            held = {owner.tid, *hold.waiting, *(tid for tid, _, _ in hold.held)}
            pids = {self.tasks[tid].pid for tid in held if tid in self.tasks} | hold.unstopped
            # The call may still complete after the kill (its FUSE server lives on): every
            # process that could use its result dies too, one a sibling is still making among them.
            self._kill_processes(pids | _sharers((owner.tid,), bool(hold.vm)))
        else:
            self.sink.on_event(MemReturn(blocked, 0, entry))
        self._release(key)

    @staticmethod
    def _kill_processes(pids: set[int] | frozenset[int]) -> None:
        """SIGKILL each process of `pids`, then abort the FUSE connections
        they mounted privately: one of them may wait for a FUSE server
        among them, and its death would hang in a flush."""
        connections = frozenset().union(*(fuse_abort.private_connections(pid) for pid in pids))
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        fuse_abort.abort(connections)

    def _release(self, key: int) -> None:
        """End the hold of a descriptor table: answer the stops kept meanwhile
        (one may start a new hold; the others are then kept for it)."""
        hold = self._holds.pop(key, None)
        if hold is None:
            return
        for tid, status, raw in hold.held:
            task = self.tasks.get(tid)
            if task is None:
                continue
            try:
                if status is None and raw is None:
                    self._let_go(task)  # a new task released meanwhile
                elif status is None:
                    self._syscall_entry(task, raw)
                else:
                    self._route(task, status)
            except NoSuchProcess:
                self._forget_stop(tid)

    def _descriptor_exit(self, task: _Task, call: MemCall, rval: int, failed: bool) -> bool:
        """Judge each descriptor the call produced from the kernel's view of
        it; undo a refused one (close it in the thread, return -errno, or
        kill) before the thread runs another instruction, then let the
        siblings go (the caller resumes the thread, after any exit hook).
        A refused descriptor kills the processes of the hold's tasks that
        had not stopped when the call started (`_Hold.unstopped`): their
        calls ran in the kernel meanwhile and may hold a copy of it. A
        thread gone (or dying, its table already let go) before its
        descriptors were judged (or a refused one closed: killed from
        outside the hold) leaves them in the table its siblings share: every
        process of the hold dies.
        Returns True when the process was killed."""
        key = task.files_key
        vanished = False
        try:
            kill, refused = self._judge_descriptors(task, call, rval, failed)
        except NoSuchProcess:
            kill = refused = False  # the thread is gone; its exit is reported
            vanished = True
        if kill:
            self._kill_process(task)
        hold = self._holds.get(key)
        if hold is not None and hold.owner == task.tid:
            if vanished:
                self._kill_processes(self._hold_processes(hold))
            elif refused and hold.unstopped:
                self._kill_processes(hold.unstopped)
            self._release(key)
        return kill

    def _held_sharers(self, task: _Task, space: bool = False) -> list[int]:
        """The tasks held for task's call that share its descriptor table
        (its address space, given `space`): the witnesses of what the call
        left there once the task itself is dying and shows none of it."""
        hold = self._holds.get(task.files_key)
        if hold is None:
            return []
        key = task.vm if space else task.files_key
        return [tid for tid, _, _ in hold.held
                if tid != task.tid and (other := self.tasks.get(tid)) is not None
                and (other.vm if space else other.files_key) == key]

    def _hold_processes(self, hold: _Hold) -> set[int]:
        """The processes of a hold's tasks other than its owner, and every
        traced process kcmp says shares their descriptor table (or, for an
        mmap's hold, their address space)."""
        tids = {*hold.waiting, *(tid for tid, _, _ in hold.held)} - {hold.owner}
        return {self.tasks[tid].pid for tid in tids if tid in self.tasks} | hold.unstopped | _sharers(
            tids, bool(hold.vm))

    def _judge_descriptors(self, task: _Task, call: MemCall, rval: int, failed: bool) -> tuple[bool, bool]:
        """Judge the call's descriptors; return whether the process must
        die and whether any descriptor was refused (closed)."""
        fds = () if failed else self._new_descriptors(task, call, rval)
        peek = self._peek_for(task.tid)
        ctl: Control | None = None
        refused: int | None = None
        kill = False
        lost = None
        for fd in fds:
            try:
                view = procfs.fd_view(task.tid, fd, _access_asked(call)) if fd >= 0 else _UNREADABLE
            except NoSuchProcess:
                raise
            except TraceError:
                view = FdObject(fd, "", 0, 0)  # unreadable: judged as such (fails closed)
            if view is None:
                # The kernel made it, yet the thread's table does not show it:
                # the thread is dying (SIGKILLed at this stop: its table is
                # already let go) while the table lives on in the tasks that
                # share it, descriptor included (attack_opener_killed).
                lost = fd
                continue
            view = self._descriptor_view(view)
            judged = call._replace(fd_object=view, path=view.path, target=_mem_target(view))
            reply, entry = self.sink.on_call(judged, peek)
            if reply.kill or reply.deny_errno is not None:
                if ctl is None:
                    ctl = Control(self, task.tid, call.arch)
                    ctl._at_exit = True
                # The injected close passes the program's own seccomp filters,
                # which can make it return 0 unrun: the table says if it ran,
                # as every held task sharing it shows it (the opener's own view
                # is empty once it is dying, the table alive in the others).
                closed = ctl.inject(_NR_CLOSE[call.arch], fd) == 0 and all(
                    _closed(tid, fd) for tid in (task.tid, *self._held_sharers(task)))
                kill = kill or reply.kill or not closed
                refused = reply.deny_errno if reply.deny_errno is not None else errno.EPERM
                if reply.kill:
                    continue  # reported by the sink as killed
                if not closed:
                    # The descriptor stays: reported as the call's result (not
                    # enforced), and the process dies before it runs again.
                    self.sink.on_event(MemReturn(judged, rval, entry))
                    continue
                self.sink.on_event(MemReturn(judged, -refused, entry))
            else:
                self.sink.on_event(MemReturn(judged, rval, entry))
        if ctl is not None:
            ctl.finish(-refused if refused is not None else rval)
        if lost is not None:
            raise NoSuchProcess(f"descriptor {lost} the call made is not in the thread's table at its exit "
                                "(the thread is dying; its table lives on in the tasks that share it)",
                                pid=task.tid)
        return kill, ctl is not None

    def _descriptor_view(self, view: FdObject) -> FdObject:
        """`view` with what it may write under other identities: a regular
        file of another filesystem, the layer files of the run's overlays
        (`layers`); a block device open for writing, the filesystems of the
        run's start whose blocks it may write (`filesystems`)."""
        if self._overlay_devices and view.dev not in self._overlay_devices and stat.S_ISREG(view.mode):
            return view._replace(layers=self._overlay_devices)
        if stat.S_ISBLK(view.mode) and view.access in (abi.O_WRONLY, abi.O_RDWR):
            return view._replace(filesystems=self._filesystems_under(view.rdev))
        return view

    def _filesystems_under(self, device: int) -> frozenset[int]:
        """The filesystems of the run's start (block devices) whose blocks
        block device `device` may write: those whose stack of block devices
        (a partition's disk, the devices under a device-mapper, md or loop
        device) shares one with `device`'s. Read when asked (a stack may
        change during the run); a partition counts as its whole disk."""
        below = procfs.block_stack(device)
        return frozenset(filesystem for filesystem in self._start_devices
                         if os.major(filesystem) and not below.isdisjoint(procfs.block_stack(filesystem)))

    def _new_descriptors(self, task: _Task, call: MemCall, rval: int) -> list[int]:
        """The descriptors a successful call produced: its result, or for a
        receive every descriptor that could hold what it received (rights
        arrive in a control buffer the program can rewrite)."""
        if call.syscall not in _RECEIVE_CALLS:
            return [rval] if rval >= 0 else []
        found = []
        try:
            listed = procfs.list_fds(task.tid)
            if not listed:
                # Not even the socket it received from: the thread is dying,
                # its table let go while it lives on in the tasks sharing it.
                raise NoSuchProcess("no descriptor table at a receive's exit (the thread is dying)",
                                    pid=task.tid)
            for fd in listed:
                link = procfs.fd_link(task.tid, fd)
                if link is None:
                    # Listed, then gone: the thread died meanwhile (its siblings
                    # are held), its table let go while the sharers keep it.
                    raise NoSuchProcess(f"descriptor {fd} left the table during a receive's exit (the thread "
                                        "is dying)", pid=task.tid)
                if _worth_a_view(link):
                    found.append(fd)
        except NoSuchProcess:
            raise
        except TraceError:
            return [-1]  # the table cannot be read: judged as unreadable (fails closed)
        return found

    def _skip_syscall(self, task: _Task, err: int) -> None:
        regs = _getregs(task.tid)
        regs.orig_rax = 0xFFFFFFFFFFFFFFFF
        regs.rax = (-err) & 0xFFFFFFFFFFFFFFFF
        _setregs(task.tid, regs)

    def _kill_process(self, task: _Task) -> None:
        # Skip the call as well: the kernel skips a seccomp-stopped call when a
        # fatal signal is pending, but a PTRACE_SYSCALL entry stop does not.
        with contextlib.suppress(TraceError):
            self._skip_syscall(task, errno.EPERM)
        with contextlib.suppress(ProcessLookupError):
            os.kill(task.pid, signal.SIGKILL)
        task.pending = task.entry = None
        self._resume(task)

    def _clock_set(self) -> bool:
        """Whether the wall clock was set since the run started (for
        `attach`: since the seize began): change times then no longer tell
        a file older than the run (attack_clock_set)."""
        return self._clock is not None and self._clock.set_since()

    def _changed_since_start(self, ctime_ns: int) -> bool:
        """Whether an inode change time `ctime_ns` may be a change made
        since the start: at or after it, or any time once the wall clock
        was set since (_clock_set)."""
        return ctime_ns >= self.started_ns or self._clock_set()

    def _report_fresh(self, tid: int, pid: int, found: Sequence[tuple[FdObject, int, str]]) -> None:
        """Report, as written by the tree, the files among `found` (each: the
        object, its device as the program sees it, a /proc link to it) that
        the run may have produced with no traced open: their inode changed
        after the run started (a core dump the kernel wrote, an overlay file
        written through the merged view and mapped through its upper layer),
        or they live on a filesystem mounted since (FUSE served by the tree,
        an image it wrote and mounted: attributes say whatever it wants).
        A block device counts always: its blocks hold the files on it, and a
        loop device the file bound to it, which the tree may have written
        (attack_loop_map). So does a swap file: the kernel writes the tree's
        pages into its blocks, stamping nothing (attack_swap_file), and a
        file of a pseudo filesystem (a tracing ring buffer holds what the
        tree wrote to trace_marker: attack_trace_ring). The devices of
        filesystems mounted since go with them: nothing downstream reads
        their files (the tree may serve them from a task the tracer holds)."""
        if self._swapon_seen:
            self._read_swap_files()
        fresh: list[FdObject] = []
        served: set[int] = set()
        for obj, device, link in found:
            if (obj.dev, obj.inode) in self._fresh:
                continue
            if self._new_filesystem(tid, device, link):
                served.update((device, obj.dev))
            elif not ((self.started_ns > 0 and self._changed_since_start(obj.ctime_ns))
                      or stat.S_ISBLK(obj.mode) or (obj.dev, obj.inode) in self._swap_files
                      or obj.dev in self._kernel_filled or self._unstamped_store(obj)
                      or self._image_written(obj.dev)):
                continue
            fresh.append(obj)
        if fresh:
            self._fresh.update((obj.dev, obj.inode) for obj in fresh)
            self.sink.on_event(WritableObjects(time.time(), pid, tuple(fresh), frozenset(served)))

    def _unstamped_store(self, obj: FdObject) -> bool:
        """Whether, under `attach`, `obj` may hold what the process wrote
        with no change time to show it: a file of a filesystem mounted at
        the seize whose times do not tell (procfs.UNSTAMPED_TYPES). A shared
        writable view of a tmpfs file, its page read before it was written,
        took the stores with no write fault, and only a write fault stamps
        the inode; the view may be gone by the seize (attack_attach_store).
        A FUSE file's times are its server's, which may be a thread of the
        process serving code (attack_fuse attach); under `run` such a
        filesystem mounted since the start is new."""
        return obj.dev in self._unstamped

    def _segment(self, tid: int, shmid: int) -> tuple[procfs.ShmSegment | None, bool]:
        """System V segment `shmid` as `tid` sees it (None when the tracer
        cannot read it: `tid` is in another IPC namespace, the tracer's
        /proc/sysvipc shows its own) and whether it may hold what a view the
        model never saw wrote: it was attached, detached or made since the
        run started (for `attach`, since the process did: a read-write view
        gone before the seize), by the kernel's records, whose stamps are
        whole seconds (any in the second the run started counts), or its
        records cannot be read."""
        segment = procfs.shm_segment(shmid) if procfs.same_namespace(tid, "ipc") else None
        return segment, (segment is None or segment.touched_s >= self.started_ns // 1_000_000_000
                         or self._clock_set())

    def _with_segment(self, call: MemCall) -> MemCall:
        """A shmat at its entry with its segment's size and whether the
        segment's history is written (`_segment`)."""
        segment, written = self._segment(call.tid, call.args[0])
        return call._replace(object_size=segment.size if segment else None, object_written=written)

    def _segments_written(self, pid: int, maps: Sequence[MapEntry]) -> tuple[tuple[int, int], ...]:
        """The ranges of `pid`'s System V attaches whose segment's history is
        written (`_segment`), as address ranges in order."""
        return tuple((m.start, m.end) for m in maps
                     if m.path.startswith("/SYSV") and m.shared and self._segment(pid, m.inode)[1])

    def _read_swap_files(self) -> None:
        """Add the swap files /proc/swaps lists now to those already seen
        (one turned off keeps what the kernel wrote into it)."""
        self._swap_files |= procfs.swap_files()
        self._swap_devices = frozenset(device for device, _ in self._swap_files)

    def _image_written(self, device: int) -> bool:
        """Whether the filesystem on `device` (a loop device, or stacked on
        one, set up before the run) may have been rewritten under it: the
        image file of one of its loop devices changed after the run started
        (the tree wrote the image, not the file), or cannot be found
        (unknown is unsafe)."""
        for backing in self._image_devices.get(device, ()):
            try:
                if self._changed_since_start(os.stat(backing).st_ctime_ns):
                    return True
            except OSError:
                return True
        return False

    def _new_filesystem(self, tid: int, device: int, link: str) -> bool:
        """Whether the file at `link` (device `device`) lives on a filesystem
        mounted after the run started; when its mount cannot be found (an
        internal mount), it is taken as new (unknown is unsafe)."""
        if not self._start_devices or device in self._start_devices:
            return False
        new = self._new_devices.get(device)
        if new is None:
            superblock = procfs.mount_device(tid, link)
            new = self._new_devices[device] = superblock is None or superblock not in self._start_devices
        return new

    def may_touch(self, tid: int, addr: int, size: int) -> bool:
        """Whether the tracer may read or write [addr, addr + size) of tid's
        memory without waiting for the tree: every page of it is anonymous,
        the kernel's own shared memory (memfds, shared anonymous and System V
        memory) or a file of a filesystem that was mounted when the run
        started. A page of a filesystem mounted since (a FUSE file a task of
        the tree serves, maybe one the tracer keeps stopped) is faulted in by
        a request the tree may never answer, in a wait no signal ends
        (attack_stack_peek scratch)."""
        vmas = procfs.vmas_covering(tid, addr, addr + max(size, 1))
        if vmas is None:
            return False
        start_devices = self._start_devices
        return all(vma.anonymous or vma.dev == self._shmem_device or not start_devices
                   or vma.dev in start_devices for vma in vmas)

    def _peek_for(self, tid: int) -> Callable[[int, int], bytes]:
        return functools.partial(read_tracee, tid)

    # --- process lifecycle ---------------------------------------------------------

    def _new_task(self, task: _Task, event: int) -> None:
        child = _geteventmsg(task.tid)
        task.made = child
        thread, shares_vm = self._relation(task, child, event)
        child_pid = task.pid if thread else child
        known = self.tasks.get(child)
        vm = task.vm if shares_vm else child
        files = task.files_key if thread or self._shares_files(task, child) else child_pid
        if known is None:
            self.tasks[child] = _Task(child, child_pid, syscall_mode=task.syscall_mode, vm=vm, files=files)
        else:
            known.pid, known.syscall_mode, known.files = child_pid, task.syscall_mode, files
            self.tasks.move(known, vm)
        # The persona the kernel gave the new task (a copy of its creator's):
        # it has run no instruction yet, so nothing has changed it.
        try:
            persona: int | None = procfs.read_personality(child_pid, child)
        except TraceError:
            persona = None
        if thread:
            self.sink.on_event(ForkEvent(time.time(), task.pid, task.tid, child_pid, True, True,
                                         child_tid=child, personality=persona))
        else:
            # The model's copy is the child's space when the forking task was
            # alone in its address space (another thread's calls may be
            # reported before this event although they ran after the copy)
            # and nothing was kept out of children.
            alone = self._alone(task)
            copied = alone and not (shares_vm or task.syscall_mode or task.vm in self._dontfork)
            self.sink.on_event(ForkEvent(time.time(), task.pid, task.tid, child_pid, thread, shares_vm,
                                         copied, crowded=not alone, child_tid=child, personality=persona))
        if self.handler is not None:
            self.handler.on_fork(task.pid, child_pid, thread, shares_vm)
        if known is not None and known.held:
            known.held = False
            self._unclaimed.pop(child, None)
            self._let_go(known)
        self._resume(task)

    def _relation(self, task: _Task, child: int, event: int) -> tuple[bool, bool]:
        """(thread, shares_vm) of a new task, from what the kernel made: the
        child is in the creator's thread group, and kcmp(KCMP_VM) says whether
        it has the creator's address space. The call's flags (registers of
        some ABI, clone3's struct in memory the program controls) are only a
        fallback for a child that is already gone. The event does not say:
        the kernel reports PTRACE_EVENT_FORK for any clone whose exit signal
        is SIGCHLD, clone(CLONE_VM | SIGCHLD) included."""
        thread = os.path.exists(f"/proc/{task.pid}/task/{child}")
        same_vm = _kcmp(task.tid, child, _KCMP_VM)
        if same_vm is not None:
            return thread, thread or same_vm
        flags = self._clone_flags(task.tid)
        return bool(flags & CLONE_THREAD), bool(flags & CLONE_VM)

    def _shares_files(self, task: _Task, child: int) -> bool:
        """Whether a new process shares its creator's descriptor table
        (CLONE_FILES), as kcmp(KCMP_FILES) says; when it cannot tell (the
        child is gone), assume it does (holding one task too many is safe)."""
        same = _kcmp(task.tid, child, _KCMP_FILES)
        return True if same is None else same

    def _clone_flags(self, tid: int) -> int:
        """The clone flags of the call the thread is stopped in (clone,
        clone3 or vfork), read from its registers with the ABI's numbering."""
        self._syscall_info(tid)
        arch = abi.ARCH_NAMES.get(struct.unpack_from("<I", self._info.raw, 4)[0], "x86_64")
        regs = _getregs(tid)
        nr = regs.orig_rax
        if arch == "i386":
            return _I386_CLONE_FLAGS.get(nr, lambda r: CLONE_VM)(regs)
        if nr == _NR_CLONE3:
            # Through read_tracee: a struct in a page the tree serves is not read (CLONE_VM assumed).
            raw = read_tracee(tid, regs.rdi, 8) if regs.rdi else b""
            return struct.unpack("<Q", raw)[0] if len(raw) == 8 else CLONE_VM
        if nr == _NR_VFORK:
            return CLONE_VM
        return regs.rdi if nr == _NR_CLONE else 0

    def _exec(self, task: _Task) -> None:
        former = _geteventmsg(task.tid)
        if former != task.tid:
            # The exec'ing thread's own number is gone with no exit to report:
            # its cached /proc descriptors are closed here (kept, two leaked
            # per such exec: attack_exec_fd_leak).
            procfs.close_mem(former)
            if (old := self.tasks.pop(former, None)) is not None:
                self._task_gone(old)
        # Every other thread of the process is gone now; the leader holds the pid.
        for tid in [t for t, other in self.tasks.items() if other.pid == task.pid and t != task.tid]:
            self._task_gone(self.tasks.pop(tid))
        # A child one of them made just before the exec killed it, seen before
        # its creator's fork event (now or later), waits for an event that
        # never comes: learnt from its maps, as if attached.
        with contextlib.suppress(TraceError):
            self._exec_marks[task.pid] = procfs.last_pid()
        self._release_orphans(task.pid)
        task.pending = None
        self._task_gone(task)
        self.tasks.move(task, task.pid)
        task.files = 0  # exec gives the process a descriptor table of its own
        if self.fast is not None:
            self.fast.forget_process(task.pid)
        # The cached /proc/PID/mem descriptor shows the old address space.
        procfs.close_mem(task.tid)
        if self.handler is not None:
            try:
                regs = _getregs(task.tid)
            except TraceError:
                self._resume(task)
                return
            arch = "i386" if regs.cs == _CS_I386 else "x86_64"
            self.handler.on_exec(task.pid, Control(self, task.tid, arch, regs))
        try:
            info = procfs.read_process_info(task.tid)
            maps = procfs.read_maps(task.tid)
            persona = procfs.read_personality(task.tid)
        except TraceError:
            self.sink.on_event(Unresolved(time.time(), task.pid, EXEC_UNRESOLVED))
            self._resume(task)
            return
        procfs.close_mem(task.tid)
        exe = procfs.exe_object(task.tid)
        exe_link = f"/proc/{task.tid}/exe"
        # The file is read only on a filesystem that was there before the run:
        # one mounted since may be served by a task of the tree the tracer
        # keeps stopped (the read would wait for ever). Unknown: None.
        execstack = None if exe is None or self._new_filesystem(task.tid, exe.dev, exe_link) \
            else _elf_execstack(info.exe)
        # The program, its interpreter and any other file the kernel mapped
        # executable: a file mapping has a device (its inode number may be
        # 0: a FUSE server tells it, attack_fuse_exec PAYLOAD VICTIM).
        loaded = [(procfs.mapped_file(task.tid, m), m.dev, _map_files(task.tid, m.start, m.end))
                  for m in maps if m.prot & abi.PROT_EXEC and m.dev]
        if exe is not None:
            loaded.append((exe, exe.dev, exe_link))
        self._report_fresh(task.tid, task.pid, loaded)
        event = ExecEvent(time.time(), task.pid, task.tid, info, maps, execstack, persona, exe_object=exe)
        if not self.sink.acts():
            # Nothing to enforce: the new program runs while its exec is judged
            # (its next trapped call waits for the tracer, busy with this).
            self._resume(task)
            self.sink.on_event(event)
            return
        if self.sink.on_event(event):
            with contextlib.suppress(ProcessLookupError):
                os.kill(task.pid, signal.SIGKILL)
        self._resume(task)

    def _gone(self, tid: int, status: int) -> None:
        task = self.tasks.pop(tid, None)
        procfs.close_mem(tid)
        if task is None:
            return
        self._task_gone(task)
        hold = self._hold_over(task)
        if hold is not None:
            if hold.owner == tid:
                if hold.started:
                    # Gone inside its held call (killed from outside the hold) or
                    # while its result was judged (a normal end releases the hold
                    # first): what it made may stay, unjudged or not undone, in the
                    # table (or address space) the hold's other processes share.
                    self._kill_processes(self._hold_processes(hold))
                self._release(task.files_key)
            else:
                hold.waiting.discard(tid)
                self._start_if_quiet(hold)
        leader = task.tid == task.pid
        if leader and tid == self.root_pid:
            self.root_status = status
        if leader and self.handler is not None:
            self.handler.on_exit(task.pid)
        if leader and self.fast is not None:
            self.fast.forget_process(task.pid)
        self.sink.on_event(ExitEvent(time.time(), task.pid, tid, status if leader else None, task.entry))
        if leader:
            self._exec_marks.pop(task.pid, None)
            self._release_orphans(task.pid)

    def _release_orphans(self, pid: int, made_until: int | None = None) -> None:
        """Children held for the fork event of `pid` (those numbered up to
        `made_until` when given), whose creator died before reporting it:
        the model learns them from their maps, as if attached, with unknown
        (possibly written) history: each is a copy of a space the tree
        wrote (attack_orphan_history)."""
        for orphan in [t for t in self.tasks.values() if t.held and t.parent == pid and t.tid == t.pid
                       and (made_until is None or t.tid <= made_until)]:
            self._release_orphan(orphan)

    def _release_unclaimed(self, now: float) -> None:
        """New processes that waited ORPHAN_PATIENCE for their creator's
        fork event: their creator may be gone unseen (a child made with
        CLONE_PARENT names its creator's parent, alive, as its parent), and
        the event never comes: learnt from their maps, as orphans."""
        for tid, since in list(self._unclaimed.items()):
            task = self.tasks.get(tid)
            if task is None or not task.held:
                del self._unclaimed[tid]
            elif since + ORPHAN_PATIENCE <= now:
                self._release_orphan(task)

    def _release_orphan(self, orphan: _Task) -> None:
        """Learn a new process held for a creator's event that may never
        come from its maps, with unknown history, and let it go."""
        self._unclaimed.pop(orphan.tid, None)
        orphan.held = False
        mate = self._learn_sharing(orphan)
        if mate is not None:
            # It shares a traced task's address space (CLONE_VM), whose
            # model every call made there keeps: it joins that model, as its
            # creator's event would have had it (learnt apart from its maps,
            # the calls of either went to one model only: attack_parent_clone_vm).
            persona: int | None = None
            with contextlib.suppress(TraceError):
                persona = procfs.read_personality(orphan.pid)
            self.sink.on_event(ForkEvent(time.time(), mate.pid, mate.tid, orphan.pid, False, True, False,
                                         child_tid=orphan.tid, personality=persona))
            self._let_go(orphan)
            return
        with contextlib.suppress(TraceError):
            info = procfs.read_process_info(orphan.pid)
            event = AttachEvent(time.time(), orphan.pid, info, procfs.read_maps(orphan.pid),
                                procfs.read_personality(orphan.pid), (orphan.tid,), history_unknown=True)
            self.sink.on_event(event)
        self._let_go(orphan)

    def _learn_sharing(self, task: _Task) -> _Task | None:
        """The descriptor table and address space of a task learnt with no
        creator's event, as kcmp says against the traced tasks: it may share
        a table another task opens in (clone CLONE_FILES), whose holds must
        stop it too (attack_parent_clone_hold). Returns a task whose address
        space it shares (None: its own)."""
        mate = None
        for other in list(self.tasks.values()):
            if other is task or other.held:
                continue
            if not task.files and _kcmp(other.tid, task.tid, _KCMP_FILES):
                task.files = other.files_key
            if mate is None and other.pid != task.pid and _kcmp(other.tid, task.tid, _KCMP_VM):
                mate = other
                self.tasks.move(task, other.vm)
        return mate

    def _let_go(self, task: _Task) -> None:
        """Resume a new task that has run no instruction yet, or, while a
        hold is over its table (or address space), keep it with the hold's
        stops: it must not run before the held call's result is judged."""
        hold = self._hold_over(task) if self._holds else None
        if hold is not None and task.tid != hold.owner and not self._detaching:
            hold.held.append((task.tid, None, None))
            return
        self._resume(task)


# --- argument normalisation --------------------------------------------------------

_OLD_MMAP = struct.Struct("<6I")
# ipc(SHMAT) folded into shmat keeps a 4th argument: where the kernel stores
# the address (direct shmat calls carry all six register arguments).
_IPC_SHMAT_ARGC = 4


def _x32_name(nr: int) -> str | None:
    """The model's name for an x32 syscall number (None: not one it judges)."""
    nr &= ~_X32_BIT
    return _X32_OWN.get(nr) if nr >= 512 else abi.SYSCALL_NAMES[abi.AUDIT_ARCH_X86_64].get(nr)


def _normalise(call: MemCall, peek: Callable[[int, int], bytes]) -> MemCall | None:
    """Fold an i386 call's legacy forms into the plain calls: old_mmap's
    argument block and ipc(2)'s shmat/shmdt. Returns None for ipc calls that
    do not touch memory mappings."""
    if call.syscall == "mmap":
        block = peek(call.args[0], _OLD_MMAP.size)
        if len(block) != _OLD_MMAP.size:
            # Unreadable (memfd_secret, unmapped): nothing asked as far as
            # the entry can tell; length 0 has the exit stop judge the
            # mapping the kernel made (_old_mmap_as_mapped).
            return call._replace(args=(0, 0, 0, abi.MAP_PRIVATE | abi.MAP_ANONYMOUS, 0xFFFFFFFF, 0))
        return call._replace(args=_OLD_MMAP.unpack(block))
    if call.syscall == "ipc":
        sub = call.args[0] & 0xFFFF
        if sub == abi.IPC_SHMAT:
            # shmat(shmid, shmaddr, shmflg) with the result stored at *third.
            args = (call.args[1], call.args[4], call.args[2], call.args[3])
            return call._replace(syscall="shmat", args=args)
        if sub == abi.IPC_SHMDT:
            return call._replace(syscall="shmdt", args=(call.args[4],))
        return None
    if call.syscall == "socketcall":
        receive = {abi.SYS_RECVMSG: "recvmsg", abi.SYS_RECVMMSG: "recvmmsg"}.get(call.args[0])
        return call._replace(syscall=receive) if receive else None
    if call.syscall == "recvmmsg_time64":
        return call._replace(syscall="recvmmsg")
    return call


_FOREIGN_WRITE_CALLS = frozenset({"ptrace"})
# Calls that open a descriptor: the sibling tasks are held until it is judged.
_HELD_CALLS = frozenset({"open", "openat", "openat2", "creat", "open_by_handle_at", "pidfd_getfd"})
# Calls whose descriptors arrive in a buffer (SCM_RIGHTS): every candidate is judged.
_RECEIVE_CALLS = frozenset({"recvmsg", "recvmmsg"})
_RECV_FLAGS_ARG = {"recvmsg": 2, "recvmmsg": 3}
_MSG_DONTWAIT, _MSG_WAITALL, _MSG_WAITFORONE = 0x40, 0x100, 0x10000
_ERESTARTSYS = 512
# A wait interrupted by a signal (or a ptrace stop) returns one of these.
_RESTART_CODES = frozenset({-_ERESTARTSYS, -513, -514, -516})
# Every call judged at its exit from the descriptors it produced.
_DESCRIPTOR_CALLS = _HELD_CALLS | _RECEIVE_CALLS | {"memfd_create"}
_OPEN_FLAGS_ARG = {"open": 1, "openat": 2, "open_by_handle_at": 2}
# Calls stopped at that need nothing at entry: an exec stopped in syscall
# mode (attach traces every call; the seccomp filter does not stop execs) and
# process_madvise (a real one the emulator passed on).
_PASSED_ON = frozenset({"execve", "execveat", "process_madvise"})
_NOT_FLYING = object()


# Calls a sink may take as judged and returned at their entry (settle_alone);
# the same name in either ABI, with arguments no normalisation changes.
_SETTLED_ALONE = frozenset({"mprotect", "munmap"})
# Calls that change an address space: judged one at a time per address space.
_SERIALISED = frozenset({"mmap", "mmap2", "mprotect", "pkey_mprotect", "munmap", "mremap", "brk", "shmat",
                         "shmdt", "ipc", "prctl", "io_destroy"})
# A procfs mem file, as a descriptor's link names it (any mount point; the
# kernel's d_path of a detached or foreign procfs starts elsewhere).
_MEM_LINK = re.compile(r"(?:^|/)(\d+)(?:/task/\d+)?/mem(?: \(deleted\))?$")
_USERFAULTFD_LINK = "anon_inode:[userfaultfd]"
_OPAQUE_LINKS = frozenset({_USERFAULTFD_LINK, "anon_inode:[io_uring]"})
# The names of an io_uring's kernel threads, which show the ring when no
# descriptor or mapping is left (polling it: iou-sqp-PID; working for it:
# iou-wrk-TID).
_IO_URING_THREADS = ("iou-sqp-", "iou-wrk-")
# What a receive stands for when the descriptor table cannot be read.
_UNREADABLE = FdObject(-1, "", 0, 0)


def _foreign_write_target(call: MemCall) -> MemCall | None:
    """For a ptrace POKE, return the call with `target` set to the process
    whose memory it writes (an ATTACH or SEIZE: the process it would
    control); None for every other ptrace request (they go on untouched).
    Opens of /proc/PID/mem are judged at exit (_descriptor_exit)."""
    request = call.args[0] & 0xFFFFFFFF
    if request not in (abi.PTRACE_POKETEXT, abi.PTRACE_POKEDATA, abi.PTRACE_ATTACH, abi.PTRACE_SEIZE):
        return None
    return call._replace(target=call.args[1] & 0xFFFFFFFF)


def _may_write(call: MemCall) -> bool:
    """Whether a descriptor call may give write access (a thread stopping at
    every syscall, after attach, sees read-only opens too: the flags are a
    register)."""
    arg = _OPEN_FLAGS_ARG.get(call.syscall)
    return arg is None or call.args[arg] & abi.O_ACCMODE in (abi.O_WRONLY, abi.O_RDWR)


_O_PATH = 0o10000000


def _signed(value: int, arch: str) -> int:
    """A syscall result register as the program reads it (negative: -errno)."""
    if arch == "i386":
        value &= 0xFFFFFFFF
        return value - (1 << 32) if value & 0x80000000 else value
    value &= 0xFFFFFFFFFFFFFFFF
    return value - (1 << 64) if value >= 1 << 63 else value


def _is_the_wait(recv: receive_steps.Receive | None, raw: bytes) -> bool:
    """Whether a syscall entry is the wait a receive makes between steps
    (recvfrom MSG_PEEK at the receive's own instruction), not a call of a
    signal handler that ran first (judged as usual)."""
    from . import receive_steps

    fields = _ENTRY.unpack_from(raw)
    arch = abi.ARCH_NAMES.get(fields[1])
    return (recv is not None and arch is not None and fields[4] == receive_steps.NR_RECVFROM[arch]
            and fields[2] == recv.ip)


def _access_asked(call: MemCall) -> int | None:
    """The access mode an open's flags register gave the new descriptor (the
    kernel read the register, not memory); None when only fdinfo can tell
    (openat2's struct, O_PATH, received descriptors)."""
    if call.syscall == "creat":
        return abi.O_WRONLY
    arg = _OPEN_FLAGS_ARG.get(call.syscall)
    if arg is None or call.args[arg] & _O_PATH:
        return None
    return call.args[arg] & abi.O_ACCMODE


def _worth_a_view(link: str) -> bool:
    """A received descriptor worth judging: a procfs mem file, an opaque
    facility, or a file (which may be writable)."""
    return link.startswith("/") or _opaque_link(link)


def _opaque_link(link: str) -> bool:
    """A descriptor's link text (or a mapping's name) of an opaque facility:
    userfaultfd, io_uring (its rings are mapped under that name too), KVM."""
    return link in _OPAQUE_LINKS or link.startswith("anon_inode:kvm-")


@functools.cache
def _our_procfs_dev() -> int:
    return os.stat("/proc/self").st_dev


def _mem_target(view: FdObject) -> int | None:
    """The process a procfs mem descriptor writes into: its pid when the
    procfs is ours (another procfs may number another pid namespace: -1,
    unknown); None for any other descriptor."""
    if view.fs_type != abi.PROC_SUPER_MAGIC:
        return None
    match = _MEM_LINK.search(view.path)
    if match is None:
        return None
    return int(match.group(1)) if view.dev == _our_procfs_dev() else -1


def _writable_objects(pid: int) -> tuple[FdObject, ...]:
    """The files and block devices `pid` can write through descriptors it
    already holds."""
    found = []
    try:
        for fd in procfs.list_fds(pid):
            view = procfs.fd_view(pid, fd)
            if view is not None and view.access in (abi.O_WRONLY, abi.O_RDWR) and (
                    stat.S_ISREG(view.mode) or stat.S_ISBLK(view.mode)):
                found.append(view)
    except TraceError:
        return tuple(found)
    return tuple(found)


def _userfaultfd_registered(pid: int) -> bool:
    """Whether a range of `pid` is registered with a userfaultfd; True when
    its smaps cannot be read (unknown is unsafe)."""
    try:
        return procfs.userfaultfd_registered(pid)
    except NoSuchProcess:
        raise
    except TraceError:
        return True


def _map_files(tid: int, start: int, end: int) -> str:
    """The /proc link to the object mapped at [start, end) of `tid`."""
    return f"/proc/{tid}/map_files/{start:x}-{end:x}"


_CLOCK_REALTIME_COARSE = 5  # Linux's clock id; the time module does not name it


def _exec_under_way(pid: int) -> bool:
    """Whether a thread of `pid` other than its main one is blocked in an
    exec call (/proc/TID/syscall), as while it waits for the threads it
    kills to end."""
    try:
        tids = procfs.list_threads(pid)
    except TraceError:
        return True  # read as gone while the exec takes the main thread's number
    return any(procfs.syscall_in_flight(tid) in _EXEC_CALLS for tid in tids if tid != pid)


def run_start_ns(now: int | None = None) -> int:
    """The wall-clock time (ns) from which an inode change time means
    "changed during this run": `now`, a CLOCK_REALTIME reading taken when the
    run started, default the real time read now. The kernel stamps inodes
    from its coarse clock (up to a tick behind) or, with multigrain stamps,
    finer: wait (at most one tick) until the coarse clock reaches `now`, so
    every change made before is stamped earlier and every change made after
    is stamped at or after it (a reading taken earlier in the start-up has
    usually been reached already: no wait)."""
    if now is None:
        now = time.clock_gettime_ns(time.CLOCK_REALTIME)
    while time.clock_gettime_ns(_CLOCK_REALTIME_COARSE) < now:
        time.sleep(0.0005)
    return now


def _shared_writer(pid: int, entry: MapEntry) -> FdObject:
    """A shared writable mapping of `pid` as the descriptor open for writing
    it stands for: the object the maps line names, its mode from the object
    the kernel maps (/proc/PID/map_files; unreadable: no access known, judged
    as unreadable)."""
    try:
        mode = os.stat(_map_files(pid, entry.start, entry.end)).st_mode
    except OSError:
        return FdObject(-1, entry.path, entry.dev, entry.inode)
    return FdObject(-1, entry.path, entry.dev, entry.inode, mode, access=abi.O_RDWR)


def _has_maps(pid: int) -> bool:
    """Whether `pid` has an address space with something mapped (False
    when it is gone, a kernel thread or a zombie)."""
    try:
        return bool(procfs.read_maps(pid))
    except TraceError:
        return False


def _closed(tid: int, fd: int) -> bool:
    """Whether descriptor `fd` of `tid` is closed (False when unknown)."""
    try:
        return procfs.fd_link(tid, fd) is None
    except TraceError:
        return False


def _unmapped(tid: int, start: int, end: int) -> bool:
    """Whether nothing is mapped in [start, end) of `tid` (False when unknown)."""
    try:
        return not any(m.start < end and start < m.end for m in procfs.read_maps(tid))
    except TraceError:
        return False


def read_tracee(tid: int, addr: int, size: int) -> bytes:
    """Read tracee memory, b'' when it is not there, or not private
    anonymous memory: a page of any other mapping (a FUSE file the program
    serves) may make the read wait for a server that never answers, in a
    page cache fault no signal interrupts (attack_stack_peek). What cannot
    be read is judged from what the kernel did (fails closed)."""
    if not procfs.private_anonymous(tid, addr, addr + size):
        return b""
    try:
        return procfs.read_mem(tid, addr, size)
    except TraceError:
        return b""


def _ipc_shmat_address(peek: Callable[[int, int], bytes], call: MemCall) -> int | None:
    """The address ipc(SHMAT) stored at its pointer, as the program's memory
    holds it now (any thread may have rewritten it); None when unreadable."""
    raw = peek(call.args[3], 4)
    return struct.unpack("<I", raw)[0] if len(raw) == 4 else None


def _segment_attaches(tid: int, shmid: int, size: int | None) -> frozenset[tuple[int, int, int]] | None:
    """(start, end, prot) of every whole attach of System V segment `shmid`
    in tid's address space (a mapping of it from offset 0 of its size, when
    known); None when the maps cannot be read."""
    try:
        maps = procfs.read_maps(tid)
    except TraceError:
        return None
    length = (size + abi.PAGE_SIZE - 1) & ~(abi.PAGE_SIZE - 1) if size else None
    return frozenset((m.start, m.end, m.prot) for m in maps
                     if m.path.startswith("/SYSV") and m.inode == shmid and m.offset == 0
                     and (length is None or m.end - m.start == length))


def _shmem_device() -> int:
    """The device of the kernel's internal shared memory mount (memfds,
    shared anonymous and System V memory), as a memfd of the tracer's shows it."""
    fd = os.memfd_create("trampwatch-shmem", os.MFD_CLOEXEC)
    try:
        return os.fstat(fd).st_dev
    finally:
        os.close(fd)


def _image_devices(devices: frozenset[int]) -> dict[int, list[str]]:
    """The devices among `devices` with loop devices under them, each with
    the loop devices' backing files (block devices only: major 0 is none)."""
    found = {}
    for device in devices:
        if os.major(device):
            backing = procfs.loop_backing_files(device)
            if backing:
                found[device] = backing
    return found


def _with_fd_object(call: MemCall) -> MemCall:
    flags, fd = call.args[3], call.args[4]
    fd = fd - (1 << 32) if fd >= (1 << 31) and fd < (1 << 32) else fd
    if flags & abi.MAP_ANONYMOUS or fd < 0 or fd >= (1 << 31):
        return call
    obj = procfs.fd_object(call.tid, fd)
    return call._replace(fd_object=obj) if obj else call


# Programs exec'd again and again (a shell loop) are read once: keyed by
# path, device, inode and mtime, so a replaced file is read again.
_EXEC_STACKS = ExecStackCache()


def _elf_execstack(path: str) -> bool | None:
    """PT_GNU_STACK's verdict for the executable at path (None: unknown)."""
    return _EXEC_STACKS.execstack(path)


# --- spawning -----------------------------------------------------------------------


def resolve_command(name: str) -> str:
    """Return the path execve will run for `name`, as a shell finds it.

    Raises CommandError with exit code 127 (not found) or 126 (not executable).
    """
    if "/" in name:
        candidates = [name]
    else:
        candidates = [os.path.join(d or ".", name) for d in os.environ.get("PATH", "").split(":")]
    found_not_exec = None
    for path in candidates:
        if os.path.isdir(path):
            found_not_exec = found_not_exec or path
            continue
        if os.path.exists(path):
            if os.access(path, os.X_OK):
                _refuse_unfollowable(name, path)
                return path
            found_not_exec = found_not_exec or path
    if found_not_exec:
        what = "is a directory" if os.path.isdir(found_not_exec) else "permission denied (not executable)"
        raise CommandError(name, what, 126)
    raise CommandError(name, "command not found", 127)


def ptrace_works() -> tuple[bool, str]:
    """Really seize a child process through python-ptrace; return (worked,
    what happened)."""
    from ptrace import PtraceError
    from ptrace.binding import func as pt

    child = os.fork()
    if child == 0:
        os.kill(os.getpid(), signal.SIGSTOP)
        os._exit(0)
    try:
        os.waitpid(child, os.WUNTRACED)
        pt.ptrace(abi.PTRACE_SEIZE, child, 0, abi.PTRACE_O_EXITKILL)
        return True, "PTRACE_SEIZE of a child works"
    except PtraceError as err:
        return False, f"PTRACE_SEIZE failed: {err}"
    finally:
        os.kill(child, signal.SIGKILL)
        os.waitpid(child, 0)


def _refuse_unfollowable(name: str, path: str) -> None:
    """A set-user/group-ID program cannot be followed by an unprivileged
    tracer: the kernel would run it without its privileges. Refuse it
    (exit 126) rather than trace something other than what it is."""
    mode = os.stat(path).st_mode
    if mode & (stat.S_ISUID | stat.S_ISGID) and os.geteuid() != 0:
        raise CommandError(name, "is set-user/group-ID: ptrace cannot follow it without privileges "
                           "(the kernel would drop them); run trampwatch as root", 126)


def _exec_child(path: str, argv: list[str], prepare_child: Callable[[], None]) -> None:
    """In the forked child: restore default signal dispositions (Python
    ignores SIGPIPE; trampwatch ignores SIGINT), install the filter, stop so
    the parent can seize us, then exec. Never returns."""
    try:
        for sig in (signal.SIGPIPE, signal.SIGINT, signal.SIGQUIT, signal.SIGTERM, signal.SIGXFSZ,
                    signal.SIGTSTP, signal.SIGTTIN, signal.SIGTTOU):
            signal.signal(sig, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_SETMASK, [])
        prepare_child()
        os.kill(os.getpid(), signal.SIGSTOP)
        os.execv(path, argv)
    except OSError as err:
        os.write(2, f"trampwatch: {argv[0]}: {err.strerror}\n".encode())
        os._exit(127 if err.errno == errno.ENOENT else 126)
    except BaseException as err:  # the child must never return into the tracer
        os.write(2, f"trampwatch: cannot start {argv[0]}: {err}\n".encode())
        os._exit(126)
    os._exit(126)
