"""Kernel ABI facts trampwatch relies on: syscall numbers, PROT/MAP flags,
ptrace and seccomp constants that python-ptrace lacks.

One definition of each table; reverse maps are derived, never written twice.
"""

from __future__ import annotations

import enum

# --- architectures (AUDIT_ARCH_* from linux/audit.h) -------------------------

AUDIT_ARCH_X86_64 = 0xC000003E
AUDIT_ARCH_I386 = 0x40000003

ARCH_NAMES = {AUDIT_ARCH_X86_64: "x86_64", AUDIT_ARCH_I386: "i386"}

# --- syscalls ------------------------------------------------------------------

# The syscalls the model needs, by name, with their number on each ABI.
# i386 has no plain shmat before 4.x's direct entry (397) -- older libcs use
# ipc(2) (117) with call SHMAT=21; both are listed so neither bypasses us.
SYSCALLS_X86_64: dict[str, int] = {
    "mmap": 9,
    "mprotect": 10,
    "munmap": 11,
    "brk": 12,
    "mremap": 25,
    "shmat": 30,
    "shmdt": 67,
    "ptrace": 101,
    "personality": 135,
    "memfd_create": 319,
    "pkey_mprotect": 329,
    "execve": 59,
    "execveat": 322,
    "process_madvise": 440,
    "open": 2,
    "openat": 257,
    "openat2": 437,
    # Calls judged at their exit from the descriptors they return (route 1, exec-written).
    "creat": 85,
    "open_by_handle_at": 304,
    "pidfd_getfd": 438,
    "recvmsg": 47,
    "recvmmsg": 299,
    # Facilities the tracer cannot see through (refused as `opaque` by policy).
    "io_uring_setup": 425,
    "io_uring_enter": 426,  # judged where a ring may predate the tracer (attach)
    "userfaultfd": 323,
    "ioctl": 16,
    "remap_file_pages": 216,
    "clone": 56,
    "clone3": 435,
    "seccomp": 317,
    "fanotify_init": 300,
    "prctl": 157,  # PR_SET_MM only: the kernel's record of the program break moved
    "io_destroy": 207,  # unmaps where the context's ring was put, whatever is there now
    # Code the tree hands the kernel to run as kernel code (root).
    "init_module": 175,
    "finit_module": 313,
    "kexec_load": 246,
    "kexec_file_load": 320,
    # The kernel writes swapped-out pages into a swap file with no time stamp.
    "swapon": 167,
    # Process accounting: the kernel appends a record to a file at every exit
    # on the host, shaped by the exiting process (comm, exit status).
    "acct": 163,
}

SYSCALLS_I386: dict[str, int] = {
    "mmap": 90,  # old_mmap: a pointer to struct mmap_arg_struct
    "mmap2": 192,  # offset in pages
    "mprotect": 125,
    "munmap": 91,
    "brk": 45,
    "mremap": 163,
    "ipc": 117,
    "shmat": 397,
    "shmdt": 398,
    "ptrace": 26,
    "personality": 136,
    "memfd_create": 356,
    "pkey_mprotect": 380,
    "execve": 11,
    "execveat": 358,
    "process_madvise": 440,
    "open": 5,
    "openat": 295,
    "openat2": 437,
    "creat": 8,
    "open_by_handle_at": 342,
    "pidfd_getfd": 438,
    "recvmsg": 372,
    "recvmmsg": 337,
    "recvmmsg_time64": 417,
    "socketcall": 102,  # recvmsg/recvmmsg multiplexed (older i386 libcs)
    "io_uring_setup": 425,
    "io_uring_enter": 426,
    "userfaultfd": 374,
    "ioctl": 54,
    "remap_file_pages": 257,
    "clone": 120,
    "clone3": 435,
    "seccomp": 354,
    "fanotify_init": 338,
    "prctl": 172,
    "io_destroy": 246,
    "init_module": 128,
    "finit_module": 350,
    "kexec_load": 283,
    "swapon": 87,
    "acct": 51,
}

SYSCALL_TABLES: dict[int, dict[str, int]] = {
    AUDIT_ARCH_X86_64: SYSCALLS_X86_64,
    AUDIT_ARCH_I386: SYSCALLS_I386,
}

SYSCALL_NAMES: dict[int, dict[int, str]] = {
    arch: {nr: name for name, nr in table.items()} for arch, table in SYSCALL_TABLES.items()
}

# Names as the policy language spells them (i386's mmap2 and ipc count too).
KNOWN_SYSCALLS: frozenset[str] = frozenset(SYSCALLS_X86_64) | frozenset(SYSCALLS_I386)

# Descriptor calls the trampfd emulator serves or injects (x86-64 only; not
# model syscalls, so neither policy names nor part of SYSCALL_NAMES).
EMULATOR_SYSCALLS_X86_64: dict[str, int] = {
    "read": 0, "write": 1, "close": 3, "lseek": 8, "pread64": 17, "pwrite64": 18, "readv": 19,
    "writev": 20, "madvise": 28, "dup": 32, "dup2": 33, "fcntl": 72,
    "dup3": 292, "preadv": 295, "pwritev": 296, "preadv2": 327, "pwritev2": 328,
}

# Writes that bypass page protections (foreign-write): ptrace POKE requests and
# opens of /proc/PID/mem for writing.
PTRACE_POKETEXT = 4
PTRACE_POKEDATA = 5
# Attaching makes a process the tree's puppet: a traced process can attach
# only processes outside the tree, which no tracer judges (opaque).
PTRACE_ATTACH = 16
O_ACCMODE = 0o3
O_WRONLY = 0o1
O_RDWR = 0o2

# madvise(2) advice that keeps a range out of a forked child (VM_DONTCOPY).
MADV_DONTFORK = 10

IPC_SHMAT = 21
IPC_SHMDT = 22
SYS_RECVMSG = 17  # socketcall(2) sub-calls
SYS_RECVMMSG = 19

# Facilities refused as `opaque` (what the tracer cannot judge).
CLONE_UNTRACED = 0x00800000
IORING_ENTER_REGISTERED_RING = 1 << 4
CLONE_FILES = 0x400
SECCOMP_SET_MODE_FILTER = 1
SECCOMP_FILTER_FLAG_NEW_LISTENER = 1 << 3
USERFAULTFD_IOC_NEW = 0xAA00  # _IO(0xAA, 0x00) on /dev/userfaultfd
# _IO(KVMIO, 0x01) on /dev/kvm: a guest runs code from the caller's read-write
# memory with no executable mapping at all.
KVM_CREATE_VM = 0xAE01
PROC_SUPER_MAGIC = 0x9FA0
# overlayfs: a descriptor's stat names the overlay inode, its writes and
# mappings reach the layer's own file.
OVERLAYFS_SUPER_MAGIC = 0x794C7630

# --- memory protection and mapping flags --------------------------------------


class Prot(enum.IntFlag):
    """PROT_* bits of mmap(2)/mprotect(2)."""

    NONE = 0
    READ = 0x1
    WRITE = 0x2
    EXEC = 0x4


# Plain ints for the hot path (IntFlag arithmetic is slow); same values.
PROT_READ, PROT_WRITE, PROT_EXEC = int(Prot.READ), int(Prot.WRITE), int(Prot.EXEC)
PROT_MASK = PROT_READ | PROT_WRITE | PROT_EXEC
PROT_GROWSDOWN = 0x01000000
PROT_GROWSUP = 0x02000000

MAP_SHARED = 0x01
MAP_PRIVATE = 0x02
MAP_SHARED_VALIDATE = 0x03
MAP_TYPE = 0x0F
MAP_FIXED = 0x10
MAP_ANONYMOUS = 0x20
MAP_GROWSDOWN = 0x0100
MAP_FIXED_NOREPLACE = 0x100000

MREMAP_MAYMOVE = 1
MREMAP_FIXED = 2
MREMAP_DONTUNMAP = 4

SHM_RDONLY = 0o10000
SHM_RND = 0o20000
SHM_REMAP = 0o40000
SHM_EXEC = 0o100000

READ_IMPLIES_EXEC = 0x0400000
PERSONALITY_QUERY = 0xFFFFFFFF

PAGE_SIZE = 4096


def prot_text(prot: int) -> str:
    """Return prot as the familiar 'rwx' triple, '-' for missing bits."""
    return _PROT_TEXT[prot & 7]


def prot_names(prot: int) -> frozenset[str]:
    """Return the set of lower-case flag names set in prot ('read', 'write', 'exec')."""
    return _PROT_NAMES[prot & 7]


# Every answer of prot_text, made once: inspect asks it for each region.
_PROT_TEXT = tuple("".join(ch if prot & bit else "-" for ch, bit in (("r", 1), ("w", 2), ("x", 4)))
                   for prot in range(8))
# Every answer of prot_names, made once: it is asked for each judged call.
_PROT_NAMES = tuple(
    frozenset(flag.name.lower() for flag in (Prot.READ, Prot.WRITE, Prot.EXEC) if prot & flag)
    for prot in range(8)
)


# --- ptrace ---------------------------------------------------------------------

PTRACE_CONT = 7
PTRACE_GETREGS = 12
PTRACE_SETREGS = 13
PTRACE_DETACH = 17
PTRACE_SYSCALL = 24
PTRACE_SETOPTIONS = 0x4200
PTRACE_GETEVENTMSG = 0x4201
PTRACE_GETSIGINFO = 0x4202
PTRACE_SEIZE = 0x4206
PTRACE_INTERRUPT = 0x4207
PTRACE_LISTEN = 0x4208
PTRACE_GET_SYSCALL_INFO = 0x420E

PTRACE_O_TRACESYSGOOD = 0x1
PTRACE_O_TRACEFORK = 0x2
PTRACE_O_TRACEVFORK = 0x4
PTRACE_O_TRACECLONE = 0x8
PTRACE_O_TRACEEXEC = 0x10
PTRACE_O_TRACEVFORKDONE = 0x20
PTRACE_O_TRACEEXIT = 0x40
PTRACE_O_TRACESECCOMP = 0x80
PTRACE_O_EXITKILL = 0x100000

PTRACE_EVENT_FORK = 1
PTRACE_EVENT_VFORK = 2
PTRACE_EVENT_CLONE = 3
PTRACE_EVENT_EXEC = 4
PTRACE_EVENT_VFORK_DONE = 5
PTRACE_EVENT_EXIT = 6
PTRACE_EVENT_SECCOMP = 7
PTRACE_EVENT_STOP = 128

PTRACE_SYSCALL_INFO_NONE = 0
PTRACE_SYSCALL_INFO_ENTRY = 1
PTRACE_SYSCALL_INFO_EXIT = 2
PTRACE_SYSCALL_INFO_SECCOMP = 3

# --- seccomp --------------------------------------------------------------------

SECCOMP_RET_KILL_PROCESS = 0x80000000
SECCOMP_RET_ERRNO = 0x00050000
SECCOMP_RET_TRACE = 0x7FF00000
SECCOMP_RET_ALLOW = 0x7FFF0000
SECCOMP_RET_DATA = 0x0000FFFF

# --- prctl ----------------------------------------------------------------------

PR_SET_MDWE = 65
PR_GET_MDWE = 66
PR_MDWE_REFUSE_EXEC_GAIN = 1
# Checkpoint/restore's rewrite of the kernel's memory layout record (the
# program break among it): brk() then starts from where this put it.
PR_SET_MM = 35

# --- ELF program header bits the model reads -------------------------------------

PT_GNU_STACK = 0x6474E551
PF_X = 0x1
PF_W = 0x2
PF_R = 0x4
