"""The seccomp filter that makes only memory syscalls stop a traced program.

Built with libseccomp (Debian's python3-seccomp): it emits the architecture
checks for x86-64, i386 (`int 0x80` from a 64-bit process included) and x32,
so no ABI's numbers slip past the filter. This is the only module that
imports `seccomp`, and only when a filter is built: the binding is a Debian
package (not on PyPI), and commands that need no filter work without it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, NamedTuple

from ..abi import (
    CLONE_UNTRACED,
    KVM_CREATE_VM,
    MADV_DONTFORK,
    O_ACCMODE,
    O_RDWR,
    O_WRONLY,
    PR_SET_MM,
    PROT_EXEC,
    PROT_WRITE,
    SECCOMP_FILTER_FLAG_NEW_LISTENER,
    USERFAULTFD_IOC_NEW,
)
from ..errors import CapabilityMissing

if TYPE_CHECKING:
    import seccomp


def _seccomp() -> Any:
    """Import libseccomp's Python binding. Raises CapabilityMissing with the fix."""
    try:
        import seccomp
    except ImportError as err:
        raise CapabilityMissing(
            "python3-seccomp", f"the libseccomp Python binding does not import ({err})",
            "apt-get install python3-seccomp (a Debian package, not on PyPI) and make the venv with "
            "--system-site-packages (scripts/setup does both)") from err
    return seccomp

# Syscalls the shadow model needs to see, by name on any ABI. Not execve and
# execveat: an exec is seen at its PTRACE_EVENT_EXEC stop (after the kernel
# replaced the address space), and a stop at its entry would only be passed on.
MODEL_SYSCALLS: tuple[str, ...] = (
    "mmap", "mmap2", "mprotect", "pkey_mprotect", "munmap", "mremap", "brk",
    "shmat", "shmdt", "ipc", "memfd_create", "personality", "ptrace", "openat2", "io_destroy",
)

class TrapRule(NamedTuple):
    """One more syscall to stop at, optionally only when argument `arg` is at
    least `at_least` (how an emulator keeps ordinary descriptors out: its own
    live above a fixed floor) or has `mask` bits equal to `equals`. A number
    instead of a name is an x86-64 number, trapped on that ABI only (it may
    be one no kernel has)."""

    syscall: str | int
    arg: int | None = None
    at_least: int | None = None
    mask: int | None = None
    equals: int | None = None

    def conditions(self) -> tuple[seccomp.Arg, ...]:
        """The libseccomp argument comparisons of this rule."""
        if self.arg is None:
            return ()
        seccomp = _seccomp()
        if self.at_least is not None:
            return (seccomp.Arg(self.arg, seccomp.GE, self.at_least),)
        return (seccomp.Arg(self.arg, seccomp.MASKED_EQ, self.mask, self.equals),)


# Opens for writing only (a read-only open cannot write code or memory): the
# flags are a register, so the filter decides and the hot path of read-only
# opens never stops. What the open yields is judged at its exit from the new
# descriptor. openat2 keeps its flags in a struct and creat always writes:
# those always stop.
WRITE_OPEN_RULES: tuple[TrapRule, ...] = (
    *(TrapRule(name, arg, mask=O_ACCMODE, equals=mode)
      for name, arg in (("open", 1), ("openat", 2), ("open_by_handle_at", 2))
      for mode in (O_WRONLY, O_RDWR)),
    TrapRule("creat"),
    TrapRule("openat2"),
)

# Calls that hand the process a descriptor it did not open: judged at exit.
RECEIVE_RULES: tuple[TrapRule, ...] = (
    TrapRule("pidfd_getfd"), TrapRule("recvmsg"), TrapRule("recvmmsg"), TrapRule("recvmmsg_time64"),
)

_LOW32 = 0xFFFFFFFF  # int/unsigned int arguments: the kernel ignores the upper half

# Facilities the tracer cannot see through, stopped only in the shape that
# matters (every input a register), so the policy can refuse them (`opaque`).
OPAQUE_RULES: tuple[TrapRule, ...] = (
    TrapRule("io_uring_setup"),
    TrapRule("userfaultfd"),
    TrapRule("ioctl", 1, mask=_LOW32, equals=USERFAULTFD_IOC_NEW),
    TrapRule("ioctl", 1, mask=_LOW32, equals=KVM_CREATE_VM),
    TrapRule("remap_file_pages"),
    TrapRule("clone", 0, mask=CLONE_UNTRACED, equals=CLONE_UNTRACED),
    TrapRule("seccomp", 1, mask=SECCOMP_FILTER_FLAG_NEW_LISTENER, equals=SECCOMP_FILTER_FLAG_NEW_LISTENER),
    *(TrapRule("fanotify_init", 1, mask=O_ACCMODE, equals=mode) for mode in (O_WRONLY, O_RDWR)),
    TrapRule("prctl", 0, mask=_LOW32, equals=PR_SET_MM),
    *(TrapRule(name) for name in ("init_module", "finit_module", "kexec_load", "kexec_file_load", "swapon")),
    TrapRule("acct", 0, at_least=1),  # a path: accounting on (NULL turns it off)
)
# Ranges a forked child does not get: a fork's child model is its parent's
# copy unless some thread asked for this (the model then reads the child's maps).
FORK_RULES: tuple[TrapRule, ...] = (TrapRule("madvise", 2, mask=_LOW32, equals=MADV_DONTFORK),)

# clone3 keeps its flags in memory: stopped (and judged `opaque`) unless the
# policy allows it outright or the filter refuses it (build_syscall_refusal).
CLONE3_RULE = TrapRule("clone3")


def build_filter(syscalls: Iterable[str] = MODEL_SYSCALLS,
                 extra: Iterable[TrapRule] = ()) -> seccomp.SyscallFilter:
    """Return a filter that traps `syscalls` to the tracer (SECCOMP_RET_TRACE)
    on every x86 ABI, plus opens for writing, calls that receive descriptors,
    the opaque facilities, madvise(MADV_DONTFORK) and the `extra` rules, and
    allows everything else.

    libseccomp maps each name onto every ABI that has it (i386's shmat both
    as the direct call and through ipc(2)); names an ABI lacks, like mmap2 on
    x86-64, simply never match there. Raises CapabilityMissing when libseccomp
    cannot build the filter.
    """
    seccomp = _seccomp()
    try:
        flt = seccomp.SyscallFilter(defaction=seccomp.ALLOW)
        rules = (*WRITE_OPEN_RULES, *RECEIVE_RULES, *OPAQUE_RULES, *FORK_RULES, *extra)
        # libseccomp translates a number to every ABI of the filter and fails
        # on one it cannot name: add numbers while only x86-64 is there.
        for rule in rules:
            if isinstance(rule.syscall, int):
                flt.add_rule(seccomp.TRACE(0), rule.syscall, *rule.conditions())
        for arch in (seccomp.Arch.X86, seccomp.Arch.X32):
            flt.add_arch(arch)
        flt.set_attr(seccomp.Attr.CTL_OPTIMIZE, 2)
        for name in syscalls:
            flt.add_rule(seccomp.TRACE(0), name)
        for rule in rules:
            if isinstance(rule.syscall, str):
                flt.add_rule(seccomp.TRACE(0), rule.syscall, *rule.conditions())
    except (OSError, RuntimeError, ValueError) as err:
        raise CapabilityMissing("seccomp", f"libseccomp could not build the filter: {err}",
                                "apt-get install python3-seccomp") from err
    return flt


def build_wx_refusal(errno: int) -> list[seccomp.SyscallFilter]:
    """Return filters that refuse, in the kernel, every mmap asking for write
    and exec together with `errno`: the stateless deny of a policy that
    refuses all such calls. One filter per ABI, because i386's mmap (old_mmap)
    passes a pointer and only its mmap2 has prot in a register; old_mmap and
    mappings made W+X by READ_IMPLIES_EXEC still reach the tracer. ERRNO takes
    precedence over the main filter's TRACE in the kernel."""
    seccomp = _seccomp()
    wx = seccomp.Arg(2, seccomp.MASKED_EQ, PROT_WRITE | PROT_EXEC, PROT_WRITE | PROT_EXEC)
    filters = []
    for arch, name in ((seccomp.Arch.X86_64, "mmap"), (seccomp.Arch.X86, "mmap2")):
        flt = seccomp.SyscallFilter(defaction=seccomp.ALLOW)
        flt.set_attr(seccomp.Attr.ACT_BADARCH, seccomp.ALLOW)
        if arch != seccomp.Arch.X86_64:
            flt.add_arch(arch)
            flt.remove_arch(seccomp.Arch.NATIVE)
        flt.add_rule(seccomp.ERRNO(errno), name, wx)
        filters.append(flt)
    return filters


def build_syscall_refusal(name: str, errno: int) -> seccomp.SyscallFilter:
    """Return a filter that makes syscall `name` fail with `errno` in the
    kernel on every x86 ABI (clone3 refused outright: its arguments live in
    memory the program can change after any check). ERRNO takes precedence
    over the main filter's TRACE."""
    seccomp = _seccomp()
    try:
        flt = seccomp.SyscallFilter(defaction=seccomp.ALLOW)
        for arch in (seccomp.Arch.X86, seccomp.Arch.X32):
            flt.add_arch(arch)
        flt.add_rule(seccomp.ERRNO(errno), name)
    except (OSError, RuntimeError, ValueError) as err:
        raise CapabilityMissing("seccomp", f"libseccomp could not build the filter: {err}",
                                "apt-get install python3-seccomp") from err
    return flt


def load_filter(flt: seccomp.SyscallFilter) -> None:
    """Install the filter in the calling process (call it in the child
    between fork and exec)."""
    flt.load()


def x86_64_syscall_name(nr: int) -> str | None:
    """Return the name libseccomp knows for x86-64 syscall `nr` (None: none;
    numbers newer than the installed libseccomp are unknown to it)."""
    seccomp = _seccomp()
    try:
        return seccomp.resolve_syscall(seccomp.Arch.X86_64, nr).decode()
    except ValueError:
        return None


def filter_program(rules: Iterable[TrapRule]) -> bytes:
    """Return the BPF (struct sock_filter array) of a filter that traps
    `rules` on x86-64 and allows everything else, other ABIs included: a
    filter to install later in a running process, on top of the first one.
    Raises CapabilityMissing when libseccomp cannot build it."""
    import tempfile

    seccomp = _seccomp()
    try:
        flt = seccomp.SyscallFilter(defaction=seccomp.ALLOW)
        flt.set_attr(seccomp.Attr.ACT_BADARCH, seccomp.ALLOW)
        flt.set_attr(seccomp.Attr.CTL_OPTIMIZE, 2)
        for rule in rules:
            flt.add_rule(seccomp.TRACE(0), rule.syscall, *rule.conditions())
        with tempfile.TemporaryFile() as out:
            flt.export_bpf(out)
            out.seek(0)
            return out.read()
    except (OSError, RuntimeError, ValueError) as err:
        raise CapabilityMissing("seccomp", f"libseccomp could not build the filter: {err}",
                                "apt-get install python3-seccomp") from err
