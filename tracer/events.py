"""Frozen records of everything a source emits: raw facts, no judgement.

Sources (ptrace, eBPF, procfs) produce these; the shadow model consumes them.

The records are named tuples, not frozen dataclasses: a frozen dataclass
costs three times as much to make (one object.__setattr__ per field), and
a source makes a MemCall and a MemReturn at every stop (a maps read one
MapEntry per line: 10,000 for a busy JIT); and the class itself costs
several times as much to create, which every run paid at import (18
dataclasses here were a tenth of `run -- true`). A copy with changes is
`_replace`. Nothing compares a record with another type's (a tuple equals
any tuple of equal items), iterates one or takes its len. Annotations are
evaluated, not postponed (no `from __future__ import annotations`): a named
tuple compiles each string annotation into a ForwardRef, which doubled the
cost of creating these classes.
"""

from dataclasses import dataclass
from typing import NamedTuple


class MapEntry(NamedTuple):
    """One line of /proc/PID/maps, parsed, with nothing inferred."""

    start: int
    end: int
    prot: int
    shared: bool
    offset: int
    dev: int
    inode: int
    path: str


class FdObject(NamedTuple):
    """What a file descriptor referred to when a syscall used or returned it.

    `path` is the descriptor's link text, `dev`/`inode`/`mode`/`rdev` its
    stat, `fs_type` the statfs magic of its filesystem (0: not read),
    `access` the O_ACCMODE bits it was opened with (None: not read), and
    `misc` the name /proc/misc gives a misc character device (else None),
    `ctime_ns` the inode's change time (0: not read), which the kernel sets
    on every write and which no program can set back, and `mem_file`
    whether it is a procfs mem file by its name or by the file bind mount it
    was opened through (read for descriptors a call returned), `layers` the
    devices of overlay filesystems (mounted when the run started) that may
    show this file, as a layer of theirs, under its inode number (set for a
    regular file opened for writing on another filesystem), `filesystems`
    the devices of filesystems the run knows whose blocks it may write (set
    for a block device open for writing: a disk under its partitions, a
    device stacked under a device-mapper or loop device).
    """

    fd: int
    path: str
    dev: int
    inode: int
    mode: int = 0
    rdev: int = 0
    fs_type: int = 0
    access: int | None = None
    misc: str | None = None
    ctime_ns: int = 0
    mem_file: bool = False
    layers: frozenset[int] = frozenset()
    filesystems: frozenset[int] = frozenset()


class ProcessInfo(NamedTuple):
    """Who a process is, as policies match it."""

    exe: str
    comm: str
    uid: int


# Who a process is when its source could not find out (it was gone before
# /proc could be read, or it was never seen starting).
UNKNOWN_PROCESS = ProcessInfo("", "", -1)


class MemCall(NamedTuple):
    """A memory syscall at entry, as the thread asked for it.

    `args` are the raw register values (i386 calls already widened), `ip`/`sp`
    the thread's registers at the stop and `stack` the bytes at `sp`, kept for
    attribution. `fd_object` is the object behind an mmap's descriptor and
    `object_size` the size of a System V segment being attached, and
    `object_written` the source's word that the segment may hold what a
    view the model never saw wrote (its history is written); `target`
    and `path` name the process whose memory a foreign write (an open of
    /proc/PID/mem for writing, a ptrace POKE) reaches, and for a clone3 at
    its exit the child the kernel created untraced (CLONE_UNTRACED). Sources
    normalise multiplexed and legacy calls (i386 ipc(2) shmat, old_mmap's
    argument block) into the plain call's name and argument order.

    `vmas` is the kernel's own view of the call's range at entry (the eBPF
    source, for protection changes and mremap): the mappings it held, as
    /proc/PID/maps would have shown them (whole, in address order);
    None when the source could not know them. `unseen` is, when `vmas` is
    None, what the source could still find of the range before the call
    (the eBPF source: /proc's maps read after it, without what the call
    asked for): good for the parts the model never saw, and only for those.
    `repeat_key` names the calls the source counts instead of delivering
    (CallsRepeated): every later call with this key is equal to this one
    for judging. `personality` is the calling thread's persona as the
    kernel held it at the call's entry (the eBPF source reads it from the
    task); None when the source leaves it to the model.
    """

    ts: float
    pid: int
    tid: int
    syscall: str
    arch: str
    args: tuple[int, ...]
    ip: int = 0
    sp: int = 0
    stack: bytes = b""
    fd_object: FdObject | None = None
    object_size: int | None = None
    object_written: bool = False
    target: int | None = None
    path: str | None = None
    vmas: tuple[MapEntry, ...] | None = None
    repeat_key: int | None = None
    unseen: tuple[MapEntry, ...] | None = None
    personality: int | None = None


class KernelKill(NamedTuple):
    """The kernel side sent SIGKILL at the entry of a call (the MemReturn
    that carries this record) because kill rule `rule` matched: the call
    ran (or stopped early on the fatal signal) and the process died on its
    way back to user mode, before its next instruction."""

    ts: float
    pid: int
    tid: int
    rule: str


class MemReturn(NamedTuple):
    """The same call at exit: `result` is the kernel's return value
    (a negative errno on failure).

    A call's entry and return are paired once, by its source: `entry` is
    what the sink made of the call at its entry (the judge's InFlight),
    which the source held with the call and hands back (ptrace); None when
    nothing judged it at entry: the eBPF source delivers each call whole,
    after it ran (the kernel records entry and exit in one record), and
    it is judged then, from what it asked. `kernel_kill` is the kernel
    side's record of the kill at the call's entry, when a kill rule fired.
    """

    call: MemCall
    result: int
    entry: object | None = None
    kernel_kill: KernelKill | None = None

    @property
    def failed(self) -> bool:
        """True when the kernel refused the call."""
        return -4096 < self.result < 0


class ExecEvent(NamedTuple):
    """A successful execve: the address space was replaced.

    `maps` is the new address space as /proc/PID/maps shows it right after the
    exec; `elf_execstack` is PT_GNU_STACK's verdict for the main executable
    (None when unknown) and `personality` the persona the kernel gave it.
    """

    ts: float
    pid: int
    tid: int
    process: ProcessInfo
    maps: tuple[MapEntry, ...]
    elf_execstack: bool | None
    personality: int
    former_pid: int | None = None
    exe_object: FdObject | None = None


class WritableObjects(NamedTuple):
    """Objects that count as written by the traced tree though no traced open
    gave them: descriptors a process was started with, and files whose inode
    the kernel changed after the run started (a core dump, an overlay's upper
    file, anything written on the tree's behalf)."""

    ts: float
    pid: int
    objects: tuple[FdObject, ...]
    # Devices of filesystems among them mounted after the run started (a FUSE
    # mount the tree may serve itself): nothing downstream reads their files.
    new_filesystems: frozenset[int] = frozenset()


class CallStalled(NamedTuple):
    """A memory call stayed in the kernel past the source's patience while
    other memory calls of its address space waited for it (it may itself wait
    for one of their threads: a FUSE or userfaultfd server in the same
    process), so they are judged past it. What it may change (`ranges`; None:
    anywhere in the address space) is no longer known from the model's own
    history. Sent again when the call returns (`returned`), and sent
    returned alone for a call whose effect the source cannot place (an i386
    ipc(SHMAT) whose attach the kernel's maps do not single out)."""

    ts: float
    pid: int
    tid: int
    syscall: str
    ranges: tuple[tuple[int, int], ...] | None
    returned: bool = False


class AttachEvent(NamedTuple):
    """A running process was seized: its address space seeds the model.

    `personality` is the leader's persona and `personas` each other seized
    thread's (tid, persona), read from /proc/PID/task/TID/personality (the
    kernel keeps one per thread). `history_unknown`: the process is a copy
    of a traced one the model cannot name (a child whose creator died
    before its fork event): every page has unknown (possibly written)
    history, not the one its protections suggest. `written_before`: address ranges
    of private file mappings, not writable now, whose pages are the
    process's own copies, of shared mappings not writable now that may be
    made writable again, and of System V segments attached since the
    process started (written before the seize, or maybe: their history is
    written, not what their protection suggests)."""

    ts: float
    pid: int
    process: ProcessInfo
    maps: tuple[MapEntry, ...]
    personality: int
    threads: tuple[int, ...] = ()
    personas: tuple[tuple[int, int], ...] = ()
    history_unknown: bool = False
    written_before: tuple[tuple[int, int], ...] = ()


class ForkEvent(NamedTuple):
    """A new task: a thread (`thread`), a child sharing the address space
    until it execs (`shares_vm`, vfork and CLONE_VM), or a plain fork copy.

    `copied` is the source's word that the copy holds every mapping of the
    parent's address space as its judged calls left it: the forking task
    was alone in that space (no other task's call can have changed it
    after the copy) and none of its threads asked for MADV_DONTFORK
    (mappings the kernel itself keeps out of children are the model's to
    know). False: nothing is vouched. `crowded`: another task shared the
    parent's address space at the fork, so calls of that space may have run
    before the copy and be reported after this event (or the other way
    round): the child's history cannot be the model's.

    `child_pid` is the new task's process (for a thread, its creator's) and
    `child_tid` the task itself (0: the same as child_pid). `personality`
    is the new task's persona as the kernel gave it (a copy of the creating
    thread's: the kernel keeps one per thread); None when the source could
    not read it."""

    ts: float
    parent_pid: int
    parent_tid: int
    child_pid: int
    thread: bool
    shares_vm: bool
    copied: bool = False
    crowded: bool = False
    child_tid: int = 0
    personality: int | None = None


class ExitEvent(NamedTuple):
    """A task is gone. `status` is the raw wait status of a process leader,
    None for a thread. `in_call` is what the sink made of the call the
    task died inside (it never returns from it), handed back by the source
    that held it; None when it was in none."""

    ts: float
    pid: int
    tid: int
    status: int | None
    in_call: object | None = None


class ForeignWrite(NamedTuple):
    """A write into another (or the same) address space that bypasses page
    protections: an open of /proc/PID/mem for writing or a ptrace POKE."""

    ts: float
    pid: int
    tid: int
    target_pid: int
    how: str
    addr: int | None = None


class TrampfdEvent(NamedTuple):
    """A trampoline created, mapped or invoked through (emulated) trampfd.

    `op` is 'create', 'map' or 'invoke'; `addr` the trampoline (or table)
    address, `target` the PC it jumps to, `registers` the values it set."""

    ts: float
    pid: int
    tid: int
    op: str
    version: int
    addr: int = 0
    length: int = 0
    target: int = 0
    registers: tuple[tuple[str, int], ...] = ()
    caller: int = 0


class ClosureEvent(NamedTuple):
    """A closure served by `run --closures` (docs/closures.md).

    `op` is 'alloc' (trampfd mode: a closure given a trampoline), 'invoke'
    (emulate mode: a trampoline run by the tracer) or 'refused' (emulate
    mode: a jump into memory granted without exec whose bytes are no known
    trampoline; the program got its SIGSEGV). `addr` is the trampoline,
    `target` where it jumps, `data` the pointer it hands over (closure or
    static chain), `pattern` the trampoline shape, `caller` who called it
    (or allocated it)."""

    ts: float
    pid: int
    tid: int
    op: str
    mode: str
    addr: int
    target: int = 0
    data: int = 0
    pattern: str = ""
    caller: int = 0
    arch: str = "x86_64"


class CallsRepeated(NamedTuple):
    """`count` more calls equal, for judging, to the MemCall of process
    `pid` with `repeat_key` `key` (same range, same protection asked, same
    mapping before, all successful) were counted by the source instead of
    delivered; `ts` and `tid` are the last one's."""

    ts: float
    pid: int
    tid: int
    key: int
    count: int


@dataclass(slots=True, eq=False)
class CallAgain:
    """The call of `first` (a MemReturn its source delivered before) made
    again at `ts`: every other fact the source has of it is the same (the
    thread, the arguments, the kernel's view of its range before it, the
    result). `key` names `first` for the judge's memo of what such a call
    does to its model and how it is judged. Not frozen: a flood of flips is
    mostly these, and a frozen dataclass costs several times as much to make."""

    ts: float
    first: MemReturn
    key: int


class RecordsLost(NamedTuple):
    """The eBPF source dropped records it could not deliver: `count` since
    its previous report, `total` since it started, `by_reason` the totals
    per reason ('ringbuf': the buffer was full, 'pending': no per-thread
    entry could be made)."""

    ts: float
    count: int
    total: int
    by_reason: tuple[tuple[str, int], ...]


class Unresolved(NamedTuple):
    """Something a source saw but could not deliver whole: `what` names what
    and why (EXEC_UNRESOLVED), counted as dropped by the source's stage of
    the run."""

    ts: float
    pid: int
    what: str


# The pseudo call a source reports when a call it must judge at its exit
# (an open for writing, an mmap it may undo) stays blocked in the kernel
# while the other tasks that could use its result are held: nothing can be
# judged of it, and it may be waiting for one of them. MemCall.path names
# the blocked call.
BLOCKED_PSEUDO_SYSCALL = "blocked"

# The pseudo call a source reports for each descriptor a process held when
# it was attached (args: the descriptor number), judged from the kernel's
# view of it as an open's is at its exit: no call made it, so none can be
# refused.
HELD_PSEUDO_SYSCALL = "held"

# What a source drops, as its Unresolved events say: an exec whose /proc
# entries could not be read.
EXEC_UNRESOLVED = "exec-unresolved"

Event = (
    MemCall | MemReturn | ExecEvent | AttachEvent | ForkEvent | ExitEvent | ForeignWrite
    | TrampfdEvent | ClosureEvent | RecordsLost | CallsRepeated | CallAgain | WritableObjects | Unresolved
    | CallStalled
)
