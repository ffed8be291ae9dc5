"""The seccomp filter that makes only memory syscalls stop a traced program.

Built with libseccomp (Debian's python3-seccomp): it emits the architecture
checks for x86-64, i386 (`int 0x80` from a 64-bit process included) and x32,
so no ABI's numbers slip past the filter. This is the only module that
imports `seccomp`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import seccomp

from ..abi import O_ACCMODE, O_RDWR, O_WRONLY
from ..errors import CapabilityMissing

# Syscalls the shadow model needs to see, by name on any ABI.
MODEL_SYSCALLS: tuple[str, ...] = (
    "mmap", "mmap2", "mprotect", "pkey_mprotect", "munmap", "mremap", "brk",
    "shmat", "shmdt", "ipc", "memfd_create", "personality", "execve", "execveat",
    "ptrace", "openat2",
)

_EXTRA_ARCHES = (seccomp.Arch.X86, seccomp.Arch.X32)


@dataclass(frozen=True)
class TrapRule:
    """One more syscall to stop at, optionally only when argument `arg` is at
    least `at_least` (how an emulator keeps ordinary descriptors out: its own
    live above a fixed floor) or has `mask` bits equal to `equals`."""

    syscall: str
    arg: int | None = None
    at_least: int | None = None
    mask: int | None = None
    equals: int | None = None

    def conditions(self) -> tuple[seccomp.Arg, ...]:
        """The libseccomp argument comparisons of this rule."""
        if self.arg is None:
            return ()
        if self.at_least is not None:
            return (seccomp.Arg(self.arg, seccomp.GE, self.at_least),)
        return (seccomp.Arg(self.arg, seccomp.MASKED_EQ, self.mask, self.equals),)


# Opens for writing only (a read-only open cannot write code): candidates for
# a write through /proc/PID/mem. openat2 keeps its flags in a struct: all stop.
FOREIGN_WRITE_RULES: tuple[TrapRule, ...] = tuple(
    TrapRule(name, arg, mask=O_ACCMODE, equals=mode)
    for name, arg in (("open", 1), ("openat", 2))
    for mode in (O_WRONLY, O_RDWR)
)


def build_filter(syscalls: Iterable[str] = MODEL_SYSCALLS,
                 extra: Iterable[TrapRule] = ()) -> seccomp.SyscallFilter:
    """Return a filter that traps `syscalls` to the tracer (SECCOMP_RET_TRACE)
    on every x86 ABI, plus opens for writing (foreign-write candidates) and
    the `extra` rules, and allows everything else.

    libseccomp maps each name onto every ABI that has it (i386's shmat both
    as the direct call and through ipc(2)); names an ABI lacks, like mmap2 on
    x86-64, simply never match there. Raises CapabilityMissing when libseccomp
    cannot build the filter.
    """
    try:
        flt = seccomp.SyscallFilter(defaction=seccomp.ALLOW)
        for arch in _EXTRA_ARCHES:
            flt.add_arch(arch)
        flt.set_attr(seccomp.Attr.CTL_OPTIMIZE, 2)
        for name in syscalls:
            flt.add_rule(seccomp.TRACE(0), name)
        for rule in (*FOREIGN_WRITE_RULES, *extra):
            flt.add_rule(seccomp.TRACE(0), rule.syscall, *rule.conditions())
    except (OSError, RuntimeError, ValueError) as err:
        raise CapabilityMissing("seccomp", f"libseccomp could not build the filter: {err}",
                                "apt-get install python3-seccomp") from err
    return flt


def load_filter(flt: seccomp.SyscallFilter) -> None:
    """Install the filter in the calling process (call it in the child
    between fork and exec)."""
    flt.load()
