"""Several emulators served by one ptrace source, in order.

The source talks to one SyscallHandler; a HandlerChain is one made of
several (trampfd emulation and closure emulation run side by side): each
trapped call and fault goes to each handler in turn until one answers it,
and lifecycle events go to all."""

from __future__ import annotations

from collections.abc import Sequence

from ..sources.ptrace_source import Control, RawCall, SyscallHandler
from ..sources.seccomp_filter import TrapRule


class HandlerChain:
    """A SyscallHandler made of `handlers`, asked in order."""

    def __init__(self, handlers: Sequence[SyscallHandler]):
        self.handlers = tuple(handlers)

    def trap_rules(self) -> Sequence[TrapRule]:
        """Every handler's rules."""
        return tuple(rule for handler in self.handlers for rule in handler.trap_rules())

    def on_syscall(self, call: RawCall, ctl: Control) -> bool:
        """True as soon as one handler answered the call."""
        return any(handler.on_syscall(call, ctl) for handler in self.handlers)

    def on_fault(self, pid: int, tid: int, ctl: Control) -> bool:
        """True as soon as one handler emulated the fault."""
        return any(handler.on_fault(pid, tid, ctl) for handler in self.handlers)

    def on_fork(self, parent_pid: int, child_pid: int, thread: bool, shares_vm: bool) -> None:
        """Tell every handler."""
        for handler in self.handlers:
            handler.on_fork(parent_pid, child_pid, thread, shares_vm)

    def on_exec(self, pid: int, ctl: Control) -> None:
        """Tell every handler."""
        for handler in self.handlers:
            handler.on_exec(pid, ctl)

    def on_exit(self, pid: int) -> None:
        """Tell every handler."""
        for handler in self.handlers:
            handler.on_exit(pid)
