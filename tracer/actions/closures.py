"""Emulate mode of `run --closures`: a userspace PaX EMUTRAMP.

`ClosureEmulator` is a SyscallHandler. A mapping or protection change that
asks for write and execute together is granted without PROT_EXEC (the call
runs with the rewritten protection, and the model sees it so); an
executable main stack loses PROT_EXEC right after exec. A jump into such
memory faults; the emulator reads the bytes at the PC and, when they are a
trampoline it knows (tracer/closures/patterns.py), sets the registers as
running it would and suppresses the SIGSEGV. Anything else gets its
SIGSEGV, reported as execution of written memory. docs/closures.md
describes every decision.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from ..abi import (
    MAP_FIXED,
    MREMAP_DONTUNMAP,
    MREMAP_FIXED,
    PROT_EXEC,
    PROT_GROWSDOWN,
    PROT_READ,
    PROT_WRITE,
    SHM_REMAP,
    SHM_RND,
    SYSCALLS_I386,
    SYSCALLS_X86_64,
)
from ..closures.patterns import CODE_WINDOW, Invocation, match
from ..closures.regions import Ranges
from ..errors import TraceError
from ..events import ClosureEvent
from ..sources import procfs
from ..sources.ptrace_source import Control, RawCall
from ..sources.seccomp_filter import TrapRule

PAGE = 4096
# How far below its top a stack stripped of PROT_EXEC is treated as stack:
# the kernel keeps at least 128 MiB between the stack top and mmap_base.
STACK_SPAN = 128 << 20
_NAMES = {
    "x86_64": {nr: name for name, nr in SYSCALLS_X86_64.items()},
    "i386": {nr: name for name, nr in SYSCALLS_I386.items()},
}
_MPROTECT = {"x86_64": SYSCALLS_X86_64["mprotect"], "i386": SYSCALLS_I386["mprotect"]}
# The syscall instruction looked for in the vDSO to run mprotect right after exec.
_SYSCALL_INSN = {"x86_64": b"\x0f\x05", "i386": b"\xcd\x80"}
_WORD = {"x86_64": 8, "i386": 4}
_WX = PROT_WRITE | PROT_EXEC
# i386's old mmap argument block: addr, len, prot, flags, fd, offset (bytes).
_OLD_MMAP = struct.Struct("<6I")


def _page_up(value: int) -> int:
    return (value + PAGE - 1) & ~(PAGE - 1)


def _failed(result: int, arch: str) -> bool:
    if arch == "i386":
        result &= 0xFFFFFFFF
        return result >= 0xFFFFF000
    return -4096 < result < 0


@dataclass
class _Space:
    """One address space: the memory granted without exec."""

    granted: Ranges = field(default_factory=Ranges)
    # The last trampoline decoded at each PC, with its bytes and the registers
    # it sets: reused while the bytes read at a fault are the same
    # (invocations that depend on nothing but the bytes and the PC).
    decoded: dict[int, tuple[bytes, Invocation, dict[str, int]]] = field(default_factory=dict)
    # A jump into granted memory found code that is no trampoline (a JIT's):
    # from then on its W+X requests go to the policy as asked.
    jit: bool = False
    # The processes (sharing this space) whose decoded trampolines the
    # source's fast path serves again (Control.serve_again): told when
    # granted memory stops being granted, as that fault would then be no
    # longer emulated.
    served: set[int] = field(default_factory=set)
    # The program break as the last brk call that set it asked (0: not known).
    brk: int = 0


class ClosureEmulator:
    """Grants W+X requests without exec and runs known trampolines there.

    `trace` asks for one event per invocation; ClosureEvents are reported
    through the thread's Control (the source delivers them). Without it,
    an invocation that depends on nothing but its bytes and PC is handed to
    the source's fast path (Control.serve_again), which serves the next
    ones at that PC while the bytes stay the same.
    `invocations` (those served here; the fast path counts its own) and
    `refused` count what happened in the whole run."""

    mode = "emulate"

    def __init__(self, trace: bool):
        self.trace = trace
        self.spaces: dict[int, _Space] = {}
        self.invocations = 0
        self.refused = 0
        self.granted_calls = 0
        self.stripped_stacks = 0
        # Calls rewritten and not yet returned, by thread: (number, arguments)
        # as the program made the call, then as it runs, and the process.
        self._rewrites: dict[int, tuple[int, tuple[int, ...], tuple[int, ...], int | None, int]] = {}

    # --- the SyscallHandler protocol -------------------------------------------------

    def trap_rules(self) -> Sequence[TrapRule]:
        """Nothing more: mmap, mprotect, munmap and mremap are model syscalls."""
        return ()

    def on_syscall(self, call: RawCall, ctl: Control) -> bool:
        """Rewrite a W+X request to W, and exec asked for a page of known
        trampolines to none (the call still runs: always False)."""
        replay = self._rewrites.get(call.tid)
        if replay is not None and replay[:2] == (call.nr, call.args):
            # A call that waited for another thread's is taken from its entry
            # again: it was rewritten (registers and exit hook) the first time.
            ctl.rewrite_arguments(replay[2], replay[3])
            return False
        name = _NAMES[call.arch].get(call.nr)
        if name == "mmap2" or (name == "mmap" and call.arch == "x86_64"):
            self._map(call, ctl)
        elif name == "mmap":
            self._old_map(call, ctl)
        elif name in ("mprotect", "pkey_mprotect"):
            self._protect(call, ctl)
        elif name == "munmap":
            self._forget(call.pid, call.args[0], call.args[0] + _page_up(call.args[1]), ctl)
        elif name == "mremap":
            self._remap(call, ctl)
        elif name == "brk":
            self._brk(call, ctl)
        elif name == "shmat":
            self._shmat(call, ctl)
        return False

    def on_fault(self, pid: int, tid: int, ctl: Control) -> bool:
        """Run a known trampoline at a PC in granted memory; True when the
        registers were set and the SIGSEGV must be suppressed."""
        space = self.spaces.get(pid)
        if space is None:
            return False
        pc = ctl.register("rip")
        if not space.granted.contains(pc):
            return False
        # Through /proc/PID/mem (one pread on a cached descriptor: the cheapest
        # read). Granted memory is what the program asked to be writable, so it
        # can read it too: the bytes are those it could read.
        code = ctl.read(pc, CODE_WINDOW)
        cached = space.decoded.get(pc)
        if cached is not None and cached[0] == code:
            invocation, registers = cached[1], cached[2]
        else:
            invocation = self._decode(ctl, pc, code)
            if invocation is None:
                self.refused += 1
                space.jit = True
                ctl.report(ClosureEvent(time.time(), pid, tid, "refused", self.mode, pc, arch=ctl.arch,
                                        caller=self._word(ctl, ctl.register("rsp"), _WORD[ctl.arch])))
                return False
            registers = dict(invocation.registers)
            if invocation.pure:
                space.decoded[pc] = (code, invocation, registers)
        # A full window: the bytes alone decided (fewer, at a mapping's end,
        # and more could follow later).
        if (invocation.pure and not self.trace and len(code) == CODE_WINDOW
                and ctl.serve_again(pc, code, registers)):
            space.served.add(pid)
        if invocation.push is not None and not ctl.copy_to_user(*invocation.push):
            return False  # the push would fault: the kernel's SIGSEGV
        ctl.set_registers(registers)
        self.invocations += 1
        if self.trace:
            caller = self._word(ctl, ctl.register("rsp"), _WORD[ctl.arch])
            ctl.report(ClosureEvent(time.time(), pid, tid, "invoke", self.mode, pc, invocation.target,
                                   invocation.data, invocation.pattern, caller, ctl.arch))
        return True

    @staticmethod
    def _decode(ctl: Control, pc: int, code: bytes) -> Invocation | None:
        """The trampoline whose bytes `code` start at pc, or None."""
        # The only registers a pattern reads (cheaper than all of them).
        regs = {"eflags": ctl.register("eflags"), "rsp": ctl.register("rsp")}

        def fetch(addr: int, size: int) -> bytes:
            if pc <= addr and addr + size <= pc + len(code):
                return code[addr - pc:addr - pc + size]
            return ctl.read(addr, size)

        return match(ctl.arch, pc, code, regs, fetch)

    def on_fork(self, parent_pid: int, child_pid: int, thread: bool, shares_vm: bool) -> None:
        """A child sharing the address space shares its grants; a fork copy copies them."""
        if thread:
            return
        space = self.spaces.get(parent_pid)
        if space is not None:
            self.spaces[child_pid] = space if shares_vm else _Space(space.granted.copy(), dict(space.decoded),
                                                                    space.jit, brk=space.brk)

    def on_exec(self, pid: int, ctl: Control) -> None:
        """A new program: take PROT_EXEC off its stack if the kernel gave it."""
        self.spaces.pop(pid, None)
        self._forget_rewrites(pid)
        try:
            maps = procfs.read_maps(ctl.tid)
        except TraceError:
            return
        stack = next((m for m in maps if m.path == "[stack]"), None)
        vdso = next((m for m in maps if m.path == "[vdso]"), None)
        if stack is None or not stack.prot & PROT_EXEC or vdso is None:
            return
        offset = ctl.read(vdso.start, vdso.end - vdso.start).find(_SYSCALL_INSN[ctl.arch])
        if offset < 0:
            return  # no way to run mprotect: the stack stays executable, and is judged so
        prot = stack.prot & ~PROT_EXEC & (PROT_READ | PROT_WRITE)
        if ctl.run_after_exec(vdso.start + offset, _MPROTECT[ctl.arch], stack.start, stack.end - stack.start,
                              prot) == 0:
            self._space(pid).granted.add(stack.end - STACK_SPAN, stack.end)
            self.stripped_stacks += 1

    def on_exit(self, pid: int) -> None:
        """The process is gone."""
        self.spaces.pop(pid, None)
        self._forget_rewrites(pid)

    def _forget_rewrites(self, pid: int) -> None:
        """Calls of process pid that will never return (its threads are gone)."""
        for tid in [tid for tid, rewrite in self._rewrites.items() if rewrite[4] == pid]:
            del self._rewrites[tid]

    # --- calls ------------------------------------------------------------------------------

    def _space(self, pid: int) -> _Space:
        return self.spaces.setdefault(pid, _Space())

    def _map(self, call: RawCall, ctl: Control, made: RawCall | None = None) -> None:
        """Grant a W+X mapping without exec. `made`: the call as the program
        made it, when `call` is what it runs as instead."""
        addr, length, prot, flags = call.args[0], call.args[1], call.args[2], call.args[3]
        if flags & MAP_FIXED:
            self._forget(call.pid, addr, addr + _page_up(length), ctl)
        nr = call.nr if made is not None else None
        if prot & _WX != _WX or self._jit(call.pid):
            if made is not None:
                self._rewrite(made, ctl, call.args, nr)
            return
        self.granted_calls += 1

        def granted(result: int) -> None:
            if not _failed(result, call.arch):
                start = result & (0xFFFFFFFF if call.arch == "i386" else 0xFFFFFFFFFFFFFFFF)
                self._space(call.pid).granted.add(start, start + _page_up(length))

        self._rewrite(made or call, ctl, (*call.args[:2], prot & ~PROT_EXEC, *call.args[3:]), nr, granted)

    def _old_map(self, call: RawCall, ctl: Control) -> None:
        """i386's old mmap reads its arguments from a block in memory, after
        us: another thread could make a block read as RW ask for RWX. It
        becomes the mmap2 call it stands for, with the arguments in
        registers (the kernel reads them there, as read here), and then is
        an mmap2 like any other. A block that cannot be read or whose offset
        is not page-aligned (EINVAL) is left to the kernel, and the call is
        judged as it ran."""
        block = ctl.read(call.args[0], _OLD_MMAP.size)
        if len(block) != _OLD_MMAP.size:
            return
        addr, length, prot, flags, fd, offset = _OLD_MMAP.unpack(block)
        if offset % PAGE:
            return
        mmap2 = SYSCALLS_I386["mmap2"]
        args = (addr, length, prot, flags, fd, offset // PAGE)
        self._map(RawCall(call.pid, call.tid, call.arch, mmap2, args, call.ip, call.sp), ctl, call)

    def _protect(self, call: RawCall, ctl: Control) -> None:
        addr, length, prot = call.args[0], call.args[1], call.args[2]
        end = addr + _page_up(length)
        if self._jit(call.pid) or (prot & _WX != _WX
                                   and not (prot & PROT_EXEC and self._holds_trampolines(call, ctl, addr))):
            self._forget(call.pid, addr, end, ctl)
            return
        self.granted_calls += 1
        # PROT_GROWSDOWN extends the change down to the start of a stack.
        start = end - STACK_SPAN if prot & PROT_GROWSDOWN else addr

        def granted(result: int) -> None:
            if not _failed(result, call.arch):
                self._space(call.pid).granted.add(start, end)

        self._rewrite(call, ctl, (addr, length, prot & ~PROT_EXEC, *call.args[3:]), None, granted)

    def _jit(self, pid: int) -> bool:
        """True once process pid ran into code in granted memory that was no
        trampoline: its W+X requests are no longer rewritten (the policy
        judges them as asked, as without --closures)."""
        space = self.spaces.get(pid)
        return space is not None and space.jit

    def _rewrite(self, call: RawCall, ctl: Control, args: tuple[int, ...], nr: int | None,
                 done: Callable[[int], None] | None = None) -> None:
        """Run the stopped call with `args` (as syscall nr, if not None); at
        its exit give the program back its argument registers, then
        done(result)."""
        previous = ctl.rewrite_arguments(args, nr)
        self._rewrites[call.tid] = (call.nr, call.args, args, nr, call.pid)

        def exited(result: int, exit_ctl: Control) -> None:
            self._rewrites.pop(call.tid, None)
            exit_ctl.set_registers(previous)
            if done is not None:
                done(result)

        ctl.on_exit(exited)

    @staticmethod
    def _holds_trampolines(call: RawCall, ctl: Control, addr: int) -> bool:
        """True when memory about to be made executable starts with a known
        trampoline: a page filled with closures, then flipped to exec (Ruby
        FFI's closure pool). JIT code never starts so; it keeps its exec."""
        code = ctl.read(addr, CODE_WINDOW)
        regs = {"eflags": 0, "rsp": call.sp}
        return match(call.arch, addr, code, regs, lambda at, size: ctl.read(at, size)) is not None

    def _remap(self, call: RawCall, ctl: Control) -> None:
        """Grants follow the memory mremap moves: the granted parts of the
        old range to the same offsets in the new one (and a growth of a
        granted end with it). With MREMAP_FIXED, whatever lay at the new
        address is replaced: granted no more, from the call's entry on (as
        a MAP_FIXED mmap), so no fault there is served while the call runs."""
        old, old_length, new_length, flags = call.args[0], call.args[1], call.args[2], call.args[3]
        if flags & MREMAP_FIXED:
            self._forget(call.pid, call.args[4], call.args[4] + _page_up(new_length), ctl)
        space = self.spaces.get(call.pid)
        old_end = old + _page_up(old_length)
        if space is None or not space.granted.overlapping(old, old_end):
            return

        def moved(result: int, exit_ctl: Control) -> None:
            if _failed(result, call.arch):
                return
            pieces = space.granted.overlapping(old, old_end)
            if not flags & MREMAP_DONTUNMAP:
                self._forget(call.pid, old, old_end, exit_ctl)
            new_end = result + _page_up(new_length)
            for start, end in pieces:
                # A piece reaching the old end grows (or shrinks) with the mapping.
                moved_end = new_end if end == old_end else min(new_end, result + (end - old))
                space.granted.add(result + (start - old), moved_end)

        ctl.on_exit(moved)

    def _brk(self, call: RawCall, ctl: Control) -> None:
        """A break moved down gives back the heap above it: granted no more,
        from the call's entry on (a failed call forgets too: safe). The
        break is known from the calls that set it (brk(0) only asks)."""
        space = self._space(call.pid)
        asked = call.args[0]
        if asked and space.brk and asked < space.brk:
            self._forget(call.pid, _page_up(asked), _page_up(space.brk), ctl)
        if asked:
            space.brk = asked

    def _shmat(self, call: RawCall, ctl: Control) -> None:
        """shmat(SHM_REMAP) replaces what lay at its address: granted no
        more, from the call's entry on; all granted memory from there up
        when the segment's size is unknown (another IPC namespace's)."""
        shmid, addr, flags = call.args[0], call.args[1], call.args[2]
        if not flags & SHM_REMAP or not addr:
            return
        start = addr & ~(PAGE - 1) if flags & SHM_RND else addr
        size = procfs.shm_size(shmid)
        self._forget(call.pid, start, start + _page_up(size) if size is not None else 1 << 64, ctl)

    def _forget(self, pid: int, start: int, end: int, ctl: Control) -> None:
        """[start, end) of process pid is granted no more."""
        space = self.spaces.get(pid)
        if space is None or not space.granted:
            return
        if space.served and space.granted.overlapping(start, end):
            ctl.forget_served(space.served, start, end)
        space.granted.remove(start, end)

    @staticmethod
    def _word(ctl: Control, addr: int, size: int) -> int:
        raw = ctl.read(addr, size)
        return int.from_bytes(raw, "little") if len(raw) == size else 0


class ClosureAnnouncements:
    """Trampfd mode's tracer side: the preloaded library announces each
    closure it served (code slot, handler, closure, caller) with a syscall
    no kernel has; this handler reports it as a ClosureEvent and answers 0.
    The trampolines themselves are trampfd v2 tables (TrampfdEmulator)."""

    mode = "trampfd"

    def __init__(self, nr: int):
        self.nr = nr

    def trap_rules(self) -> Sequence[TrapRule]:
        """The announcement number (x86-64: the library is 64-bit only)."""
        return (TrapRule(self.nr),)

    def on_syscall(self, call: RawCall, ctl: Control) -> bool:
        """Report an announcement; True (answered) for it, False otherwise."""
        if call.arch != "x86_64" or call.nr != self.nr:
            return False
        code, target, closure, caller = call.args[:4]
        ctl.report(ClosureEvent(time.time(), call.pid, call.tid, "alloc", self.mode, code, target, closure,
                               "trampfd v2 slot (r10 = closure; jmp to libffi's handler)", caller))
        ctl.finish(0)
        return True

    def on_fault(self, pid: int, tid: int, ctl: Control) -> bool:
        """No faults: trampfd v2 slots run natively."""
        return False

    def on_fork(self, parent_pid: int, child_pid: int, thread: bool, shares_vm: bool) -> None:
        """Nothing kept per process."""

    def on_exec(self, pid: int, ctl: Control) -> None:
        """Nothing kept per process."""

    def on_exit(self, pid: int) -> None:
        """Nothing kept per process."""
