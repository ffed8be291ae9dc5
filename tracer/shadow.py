"""The shadow memory model: per address space, every region with its current
protection, its history (ever writable, ever executable) and its backing
object, kept in step with the kernel from the events the sources emit.

Threads share one address space, fork copies it, exec replaces it. Regions are
split and merged like the kernel's VMAs, but only merged when their history is
equal too, so nothing the classifier needs is lost.

`plan()` says what a call *would* change (used to judge it before it runs);
`apply()` records what it *did* change, from the call's real return value.
"""

from __future__ import annotations

import bisect
import itertools
import stat
from dataclasses import dataclass, field
from typing import NamedTuple

from .abi import (
    CLONE_UNTRACED,
    IORING_ENTER_REGISTERED_RING,
    KVM_CREATE_VM,
    MAP_ANONYMOUS,
    MAP_GROWSDOWN,
    MAP_SHARED,
    MAP_TYPE,
    MREMAP_DONTUNMAP,
    O_RDWR,
    O_WRONLY,
    OVERLAYFS_SUPER_MAGIC,
    PAGE_SIZE,
    PERSONALITY_QUERY,
    PR_SET_MM,
    PROC_SUPER_MAGIC,
    PROT_EXEC,
    PROT_GROWSDOWN,
    PROT_MASK,
    PROT_READ,
    PROT_WRITE,
    PTRACE_ATTACH,
    PTRACE_SEIZE,
    READ_IMPLIES_EXEC,
    SECCOMP_FILTER_FLAG_NEW_LISTENER,
    SECCOMP_SET_MODE_FILTER,
    SHM_EXEC,
    SHM_RDONLY,
    SHM_RND,
    USERFAULTFD_IOC_NEW,
)
from .events import (
    BLOCKED_PSEUDO_SYSCALL,
    HELD_PSEUDO_SYSCALL,
    ExecEvent,
    FdObject,
    ForkEvent,
    MapEntry,
    MemCall,
    ProcessInfo,
)

DELETED = " (deleted)"

# Backing kinds, as the policy language names them. UNKNOWN: nothing the
# source delivered says what the memory is (never guessed to be anonymous).
ANON, FILE, MEMFD, SHM, SHARED_ANON, STACK, HEAP, SPECIAL, UNKNOWN = (
    "anon", "file", "memfd", "shm", "shared-anon", "stack", "heap", "special", "unknown",
)
BACKING_KINDS = (ANON, FILE, MEMFD, SHM, SHARED_ANON, STACK, HEAP, SPECIAL, UNKNOWN)

_synthetic_ids = itertools.count(1)


def page_up(value: int) -> int:
    """Round value up to a page boundary."""
    return (value + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1)


class Backing(NamedTuple):
    """What a region maps: its kind, and for objects their identity.

    `identity` is equal for every view of one object (file dev+inode, memfd,
    System V segment id, shared anonymous object) and None for private
    anonymous memory, which nothing else can alias.
    """

    kind: str
    path: str | None = None
    dev: int = 0
    inode: int = 0
    deleted: bool = False
    identity: tuple | None = None

    @property
    def on_disk(self) -> bool:
        """True when the object is a file that still has a name on disk."""
        return self.kind == FILE and not self.deleted


ANON_BACKING = Backing(ANON)
UNKNOWN_BACKING = Backing(UNKNOWN)

# The change of a `held` pseudo call for memory writable and executable at
# the seize: what is written there runs with no call at all.
HELD_MEMORY = "held-memory"


def backing_from_entry(entry: MapEntry) -> Backing:
    """Return the Backing a /proc/PID/maps line describes."""
    path = entry.path
    if not path or (entry.inode == 0 and path.startswith("[anon")):
        return ANON_BACKING
    if path == "[stack]" or path.startswith("[stack:"):
        return Backing(STACK, path)
    if path == "[heap]":
        return Backing(HEAP, path)
    if path.startswith("["):
        if path.startswith("[anon_shmem"):
            return Backing(SHARED_ANON, path, entry.dev, entry.inode, True, ("ino", entry.dev, entry.inode))
        return Backing(SPECIAL, path)
    deleted = path.endswith(DELETED)
    name = path[: -len(DELETED)] if deleted else path
    if name.startswith("/SYSV"):
        return Backing(SHM, name, entry.dev, entry.inode, True, ("shm", entry.inode))
    if name.startswith("/memfd:"):
        return Backing(MEMFD, name, entry.dev, entry.inode, True, ("ino", entry.dev, entry.inode))
    if name == "/dev/zero" and entry.shared:
        return Backing(SHARED_ANON, name, entry.dev, entry.inode, True, ("ino", entry.dev, entry.inode))
    return Backing(FILE, name, entry.dev, entry.inode, deleted, ("ino", entry.dev, entry.inode))


# Kernel-made mappings fork copies (the vDSO and its data, vsyscall).
_FORK_COPIED_SPECIAL = frozenset({"[vdso]", "[vvar]", "[vvar_vclock]", "[vsyscall]"})


def copied_by_fork(backing: Backing) -> bool:
    """Whether fork surely copies a mapping of `backing` into the child:
    not for special kernel mappings ([uprobes]), devices and anonymous-inode
    facilities (perf, io_uring), which the kernel may keep out of children
    (VM_DONTCOPY), nor for memory of unknown kind."""
    kind = backing.kind
    if kind == SPECIAL:
        return backing.path in _FORK_COPIED_SPECIAL
    if kind == FILE:
        path = backing.path or ""
        return path.startswith("/") and not path.startswith("/dev/")
    return kind != UNKNOWN


def layer_key(identity: tuple | None) -> tuple | None:
    """The key under which a file written through an overlay descriptor is
    recorded for every device: ("layer", the low 32 bits of its inode
    number), the part overlayfs's stat keeps of the layer file's (xino adds
    high bits); None for an identity that is no file's."""
    return ("layer", identity[2] & 0xFFFFFFFF) if identity is not None and identity[0] == "ino" else None


def backing_from_fd(obj: FdObject) -> Backing:
    """Return the Backing of an mmap'ed descriptor."""
    path = obj.path
    deleted = path.endswith(DELETED)
    name = path[: -len(DELETED)] if deleted else path
    # A System V segment's own file (reopened through /proc/PID/map_files)
    # is the segment its attaches name by id (the inode number is the id).
    identity = ("shm", obj.inode) if name.startswith("/SYSV") else ("ino", obj.dev, obj.inode)
    if name.startswith("/memfd:"):
        return Backing(MEMFD, name, obj.dev, obj.inode, True, identity)
    if name == "/dev/zero":
        return Backing(SHARED_ANON, name, obj.dev, obj.inode, True, ("anon", next(_synthetic_ids)))
    # O_TMPFILE files show as "/dir/#inode (deleted)"; plain unlinked files too.
    return Backing(FILE, name, obj.dev, obj.inode, deleted, identity)


@dataclass(slots=True, eq=False)
class Region:
    """One contiguous run of pages with the same protection and history.

    Treated as immutable: every change makes a new Region (slots and a
    plain constructor because the model builds several per traced call).
    """

    start: int
    end: int
    prot: int
    shared: bool
    offset: int
    backing: Backing
    ever_writable: bool
    ever_exec: bool

    @property
    def path(self) -> str:
        """The backing path ('' for anonymous memory), as attribution expects."""
        return self.backing.path or ""

    @property
    def dev(self) -> int:
        """The backing object's device (0 for anonymous memory), as attribution expects."""
        return self.backing.dev

    @property
    def inode(self) -> int:
        """The backing object's inode (0 for anonymous memory): attribution
        reads no file that is no longer the one mapped."""
        return self.backing.inode

    def cut(self, start: int, end: int) -> Region:
        """Return the part of this region between start and end (itself when
        that is all of it: regions are never changed in place)."""
        if start == self.start and end == self.end:
            return self
        offset = self.offset + (start - self.start) if self.backing.identity else self.offset
        return Region(start, end, self.prot, self.shared, offset, self.backing, self.ever_writable,
                      self.ever_exec)

    def reprotected(self, prot: int) -> Region:
        """Return this region with protection prot, its history updated."""
        return Region(self.start, self.end, prot, self.shared, self.offset, self.backing,
                      self.ever_writable or bool(prot & PROT_WRITE), self.ever_exec or bool(prot & PROT_EXEC))

    def joins(self, other: Region) -> bool:
        """True when `other` starts where this ends and could be one VMA with it."""
        if self.end != other.start or (self.backing is not other.backing and self.backing != other.backing):
            return False
        same = (self.prot, self.shared, self.ever_writable, self.ever_exec) == (
            other.prot, other.shared, other.ever_writable, other.ever_exec,
        )
        contiguous = not self.backing.identity or self.offset + (self.end - self.start) == other.offset
        return same and contiguous

    def same(self, other: Region) -> bool:
        """True when `other` is this region in every field (another object, the same state)."""
        mine = (self.start, self.end, self.prot, self.shared, self.offset, self.ever_writable, self.ever_exec)
        theirs = (other.start, other.end, other.prot, other.shared, other.offset, other.ever_writable,
                  other.ever_exec)
        return mine == theirs and (self.backing is other.backing or self.backing == other.backing)


@dataclass(slots=True)
class Change:
    """What a call does (or would do) to an address space, for the classifier.

    Treated as immutable, like Region (not frozen: a frozen dataclass costs
    four times as much to build, and the model plans one per traced call).

    `parts` holds the regions a protection change touches, as they were
    (clipped to the range);
    `new_mapping` is True for calls that create a mapping (mmap, shmat,
    mremap to a new place, brk growth, exec).
    """

    syscall: str
    kind: str
    start: int
    end: int
    prot: int
    backing: Backing
    shared: bool
    new_mapping: bool
    parts: tuple[Region, ...] = ()
    shm_exec: bool = False
    personality_set: int | None = None
    read_implies_exec: bool = False
    exec_from_rie: bool = False
    facility: str | None = None
    # A block device opened for writing: the filesystems whose blocks it
    # may write (their files mapped executable would run what it writes).
    rewrites: frozenset[int] = frozenset()

    @property
    def prev_prot(self) -> int:
        """The union of the protections the range had (0 for new mappings)."""
        prot = 0
        for part in self.parts:
            prot |= part.prot
        return prot

    @property
    def gained(self) -> int:
        """Protection bits that some part of the range did not have before."""
        if not self.parts:
            return self.prot
        gained = 0
        for part in self.parts:
            gained |= self.prot & ~part.prot
        return gained & PROT_MASK


class AddressSpace:
    """The regions of one address space, sorted by start address.

    `holds_uncopied` is True once it may have held a mapping fork does not
    copy (copied_by_fork, or a mapped descriptor that is no regular file):
    a forked child's model is then taken from the child's own maps."""

    def __init__(self, regions: list[Region] | None = None):
        self._regions: list[Region] = sorted(regions or [], key=lambda r: r.start)
        self._starts: list[int] = [r.start for r in self._regions]
        self._snapshot: tuple[Region, ...] | None = None
        # The last overlapping() answer, kept until the space changes: a
        # call's footprint, coverage check and plan all ask for one range.
        self._last_overlap: tuple[int, int, list[Region]] | None = None
        self.holds_uncopied = not all(copied_by_fork(r.backing) for r in self._regions)
        # Grows at every change of the regions: equal before and after a step, the step changed nothing.
        self.version = 0
        self.brk_start: int | None = None
        self.brk_end: int | None = None
        # True once prctl(PR_SET_MM) may have moved the kernel's program
        # break: the next brk starts, grows or cuts from a break the model
        # does not know, and its result is taken from the kernel's maps.
        self.break_unknown = False

    @classmethod
    def from_maps(cls, maps: tuple[MapEntry, ...] | list[MapEntry]) -> AddressSpace:
        """Return an address space seeded from /proc/PID/maps entries."""
        regions = []
        space_brk: tuple[int, int] | None = None
        for entry in maps:
            backing = backing_from_entry(entry)
            prot = entry.prot & PROT_MASK
            regions.append(
                Region(entry.start, entry.end, prot, entry.shared, entry.offset, backing,
                       bool(prot & PROT_WRITE), bool(prot & PROT_EXEC))
            )
            if backing.kind == HEAP:
                space_brk = (entry.start, entry.end)
        space = cls(regions)
        if space_brk:
            space.brk_start, space.brk_end = space_brk
        return space

    def copy(self) -> AddressSpace:
        """Return an independent copy (what fork gives the child). The lists
        are copied as they are: already sorted, and regions are never
        changed in place, so both spaces may hold the same Region objects."""
        twin = AddressSpace()
        twin._regions = list(self._regions)
        twin._starts = list(self._starts)
        twin.brk_start, twin.brk_end = self.brk_start, self.brk_end
        twin.break_unknown = self.break_unknown
        twin.holds_uncopied = self.holds_uncopied
        return twin

    def __iter__(self):
        return iter(self._regions)

    def snapshot(self) -> tuple[Region, ...]:
        """The regions as a tuple that stays the same object until the space
        changes (so attribution can keep its index of them)."""
        if self._snapshot is None:
            self._snapshot = tuple(self._regions)
        return self._snapshot

    def __len__(self) -> int:
        return len(self._regions)

    def find(self, addr: int) -> Region | None:
        """Return the region holding addr, or None."""
        i = bisect.bisect_right(self._starts, addr) - 1
        if i >= 0 and self._regions[i].end > addr:
            return self._regions[i]
        return None

    def overlapping(self, start: int, end: int) -> list[Region]:
        """Return the regions that intersect [start, end), clipped to it."""
        last = self._last_overlap
        if last is not None and last[0] == start and last[1] == end:
            return list(last[2])
        regions = self._regions
        i = max(bisect.bisect_right(self._starts, start) - 1, 0)
        found = []
        while i < len(regions) and regions[i].start < end:
            region = regions[i]
            if region.end > start:
                found.append(region.cut(max(region.start, start), min(region.end, end)))
            i += 1
        self._last_overlap = (start, end, found)
        return list(found)

    def _changed(self) -> None:
        self._snapshot = None
        self._last_overlap = None
        self.version += 1

    def window(self, start: int, end: int, seen: tuple[int, int]) -> tuple[int, list[Region]] | None:
        """The regions a protection change of [start, end) can touch, or was
        judged on, when the range lies inside one region (protect() splits
        that region and merges the pieces with its neighbours, nothing
        further): every region that meets `seen` (an address range holding
        [start, end): what else the change was judged on) and one more on
        each side, with the index of the first. None when the range is not
        inside one region."""
        starts = self._starts
        i = bisect.bisect_right(starts, start) - 1
        if i < 0 or self._regions[i].end < end:
            return None
        lo = max(bisect.bisect_right(starts, seen[0]) - 2, 0)
        return lo, self._regions[lo:bisect.bisect_left(starts, seen[1]) + 1]

    def regions(self, lo: int, hi: int) -> list[Region]:
        """The regions from index `lo` up to `hi`, in address order."""
        return self._regions[lo:hi]

    def swap(self, seen: int, before: list[Region], after: list[Region], after_starts: list[int]) -> bool:
        """Replace the window() of a change whose `seen` range starts at
        `seen` by `after` when it holds the regions `before` (the same
        objects, or regions equal to them in every field: `before` then
        takes the current objects, so the next check is by identity); False,
        and nothing changed, otherwise. The regions are immutable, so
        `after` may be shared with whatever else holds them."""
        lo = max(bisect.bisect_right(self._starts, seen) - 2, 0)
        hi = lo + len(before)
        current = self._regions[lo:hi]
        if current != before:
            if len(current) != len(before):
                return False
            if not all(now.same(then) for now, then in zip(current, before, strict=True)):
                return False
            before[:] = current
        self._regions[lo:hi] = after
        self._starts[lo:hi] = after_starts
        self._changed()
        return True

    def mark_written(self, start: int, end: int) -> None:
        """Give the mapped pages of [start, end) written history."""
        for piece in self.overlapping(start, end):
            if not piece.ever_writable:
                self.insert(Region(piece.start, piece.end, piece.prot, piece.shared, piece.offset,
                                   piece.backing, True, piece.ever_exec))

    def remove(self, start: int, end: int) -> None:
        """Unmap [start, end) (every mapping and munmap passes here: no list
        of the removed pieces is built, nobody needs one)."""
        regions = self._regions
        i = max(bisect.bisect_right(self._starts, start) - 1, 0)
        j = i
        count = len(regions)
        keep: list[Region] = []
        hit = False
        while j < count and regions[j].start < end:
            region = regions[j]
            if region.end <= start:
                keep.append(region)
            else:
                hit = True
                if region.start < start:
                    keep.append(region.cut(region.start, start))
                if region.end > end:
                    keep.append(region.cut(end, region.end))
            j += 1
        if not hit:
            return
        regions[i:j] = keep
        self._starts[i:j] = [r.start for r in keep]
        self._changed()

    def insert(self, region: Region) -> None:
        """Map a region, replacing whatever was there, merging with neighbours."""
        if not self.holds_uncopied and not copied_by_fork(region.backing):
            self.holds_uncopied = True
        self.remove(region.start, region.end)
        i = bisect.bisect_left(self._starts, region.start)
        self._regions.insert(i, region)
        self._starts.insert(i, region.start)
        self._changed()
        self._merge_around(i)

    def _merge_around(self, i: int) -> None:
        regions = self._regions
        lo = i - 1 if i > 0 else 0
        k = min(i + 1, len(regions) - 1)
        while k > lo:
            left, right = regions[k - 1], regions[k]
            # Protections first: after a change a neighbour mostly differs there.
            if left.prot == right.prot and left.joins(right):
                regions[k - 1] = Region(left.start, right.end, left.prot, left.shared, left.offset,
                                        left.backing, left.ever_writable, left.ever_exec)
                del regions[k]
                del self._starts[k]
                self._changed()
            k -= 1

    def protect(self, start: int, end: int, prot: int) -> None:
        """Apply a successful mprotect to [start, end)."""
        regions = self._regions
        i = bisect.bisect_right(self._starts, start) - 1
        if i >= 0 and regions[i].end >= end:
            # The common case: the range lies inside one region; split it in place.
            region = regions[i]
            if region.prot == prot:
                return
            if region.start == start and region.end == end:
                regions[i] = region.reprotected(prot)
                self._changed()
                self._merge_around(i)
                return
            backing = region.backing
            # region.cut(start, end).reprotected(prot), built once.
            offset = region.offset + (start - region.start) if backing.identity else region.offset
            changed = Region(start, end, prot, region.shared, offset, backing,
                             region.ever_writable or bool(prot & PROT_WRITE),
                             region.ever_exec or bool(prot & PROT_EXEC))
            if region.start < start:
                middle = i + 1
                if end < region.end:
                    pieces = [region.cut(region.start, start), changed, region.cut(end, region.end)]
                    starts = [region.start, start, end]
                else:
                    pieces = [region.cut(region.start, start), changed]
                    starts = [region.start, start]
            else:
                middle = i
                pieces = [changed, region.cut(end, region.end)]
                starts = [start, end]
            regions[i:i + 1] = pieces
            self._starts[i:i + 1] = starts
            self._changed()
            self._merge_around(middle)
            return
        for piece in self.overlapping(start, end):
            self.insert(piece.reprotected(prot))

    def agrees(self, maps: tuple[MapEntry, ...] | list[MapEntry]) -> bool:
        """True when the regions cover exactly the pages `maps` lists (in
        address order), each with the protection the kernel shows: what a
        forked child usually is, a copy of its parent."""
        regions = self._regions
        count = len(regions)
        i = 0
        for entry in maps:
            prot = entry.prot & PROT_MASK
            pos = entry.start
            while pos < entry.end:
                if i == count:
                    return False
                region = regions[i]
                if region.start != pos or region.end > entry.end or region.prot != prot:
                    return False
                pos = region.end
                i += 1
        return i == count

    def aliases(self, identity: tuple) -> list[Region]:
        """Return every region mapping the object with this identity."""
        return [r for r in self._regions if r.backing.identity == identity]


@dataclass
class Process:
    """A traced process: who it is, its address space and its threads' personas.

    The kernel keeps the persona per thread (task->personality: personality(2)
    sets the caller's, clone copies the creator's, exec gives the one thread
    left a new one). `personas` holds each known thread's; `personality` is
    the leader's, and stands for a thread the model never saw made."""

    pid: int
    info: ProcessInfo
    space: AddressSpace
    personality: int = 0
    personas: dict[int, int] = field(default_factory=dict)

    def persona(self, tid: int) -> int:
        """The persona thread `tid` of this process has (the leader's when unknown)."""
        return self.personas.get(tid, self.personality)

    def set_persona(self, tid: int, persona: int) -> None:
        """Record that thread `tid` now has `persona`."""
        self.personas[tid] = persona
        if tid == self.pid:
            self.personality = persona

    def read_implies_exec(self, tid: int) -> bool:
        """True when the kernel adds PROT_EXEC to every readable mapping thread `tid` makes."""
        return bool(self.persona(tid) & READ_IMPLIES_EXEC)


def _effective(prot: int, rie: bool) -> tuple[int, bool]:
    """Return (prot as the kernel will apply it for a thread whose persona has
    READ_IMPLIES_EXEC or not (`rie`), whether X came only from RIE)."""
    prot &= PROT_MASK
    if rie and prot & PROT_READ and not prot & PROT_EXEC:
        return prot | PROT_EXEC, True
    return prot, False


def _opaque(call: MemCall, facility: str, rewrites: frozenset[int] = frozenset()) -> Change:
    """A call the tracer cannot see through, named by its facility (a block
    device opened for writing: with the filesystems it `rewrites`)."""
    return Change(call.syscall, "opaque", 0, 0, 0, Backing(SPECIAL, f"[{facility}]"), False, False,
                  facility=facility, rewrites=rewrites)


def descriptor_facility(obj: FdObject) -> str | None:
    """What a descriptor the kernel handed out is, when it matters: 'mem' (a
    procfs mem file, written to write another address space), an opaque
    facility ('userfaultfd', 'io_uring', 'kvm', 'unreadable', 'block-device': a
    disk written under its filesystems, whose files then hold what the tree
    wrote under identities it never opened), 'written' (a regular file or
    memfd open for writing), else None."""
    writable = obj.access in (O_WRONLY, O_RDWR)
    if obj.access is None:
        return "unreadable"
    if obj.fs_type == PROC_SUPER_MAGIC:  # no procfs file but mem can hold code
        return "mem" if writable and (obj.mem_file or _is_mem_link(obj.path)) else None
    if obj.path == "anon_inode:[userfaultfd]" or obj.misc == "userfaultfd":
        return "userfaultfd"
    if obj.path == "anon_inode:[io_uring]":
        return "io_uring"
    if obj.path.startswith("anon_inode:kvm-"):  # a VM or vCPU made elsewhere
        return "kvm"
    if writable and stat.S_ISREG(obj.mode):
        return "written"
    if writable and stat.S_ISBLK(obj.mode):
        return "block-device"
    return None


def _is_mem_link(path: str) -> bool:
    name = path[: -len(DELETED)] if path.endswith(DELETED) else path
    return name.rpartition("/")[2] == "mem"


class ShadowModel:
    """Every traced process and its address space, and the objects (files,
    memfds) the traced tree could write: their identities, `written`."""

    def __init__(self) -> None:
        self.processes: dict[int, Process] = {}
        self.written: set[tuple] = set()
        # Objects (System V segments, memfds, files, shared anonymous memory)
        # some traced view ever mapped writable and shared: their pages may
        # hold written code whatever view maps them next. Write history
        # belongs to the object, not to one attach or mapping of it.
        self.written_objects: set[tuple] = set()
        # Devices of filesystems mounted after the run started: their files
        # answer through whoever serves them, maybe a task the tracer keeps
        # stopped, so the tracer reads none of them (attribution names no
        # symbol there).
        self.unreadable_devices: set[int] = set()
        # Devices of filesystems whose blocks the tree may have written
        # through a block device it held or opened for writing: each of
        # their files holds what the tree wrote, under an identity it never
        # opened.
        self.rewritten_devices: set[int] = set()

    def changes_unseen(self, call: MemCall) -> bool:
        """True when `call`, if it succeeds, may map or unmap ranges its
        arguments do not name, so the model must take the caller's whole
        space from the kernel's maps at its exit: io_destroy unmaps the
        range where its context's ring was put, whatever is mapped there
        now; a brk after prctl(PR_SET_MM) moved the break grows or cuts
        from a place the model does not know; an mremap of pages the model
        never saw (grown by a fault, mapped by the kernel) moves them where
        the model cannot say what they are."""
        if call.syscall == "io_destroy":
            return True
        process = self.processes.get(call.pid)
        if process is None:
            return False
        if call.syscall == "mremap":
            old, old_size = call.args[0], call.args[1]
            return not self.covers(call.pid, old, old + page_up(max(old_size, 1)))
        return call.syscall == "brk" and process.space.break_unknown

    def object_written(self, identity: tuple | None) -> bool:
        """True when a shared writable view of this object ever existed."""
        return identity is not None and identity in self.written_objects

    def _note_writable(self, backing: Backing, shared: bool, prot: int) -> None:
        if shared and prot & PROT_WRITE and backing.identity is not None:
            self.written_objects.add(backing.identity)

    def process(self, pid: int) -> Process | None:
        """Return the process with this tgid, or None when unknown."""
        return self.processes.get(pid)

    # --- process lifecycle --------------------------------------------------------

    def seed(self, pid: int, info: ProcessInfo, maps: tuple[MapEntry, ...], personality: int,
             personas: tuple[tuple[int, int], ...] = (),
             written_before: tuple[tuple[int, int], ...] = ()) -> Process:
        """Start (or restart, after exec) a process from its maps, with the
        leader's persona and those of other threads known (tid, persona);
        the `written_before` address ranges (private copies of file pages, shared
        views that may be writable again, System V segments attached since
        the process started) were written, whatever their protection is now."""
        space = AddressSpace.from_maps(maps)
        for start, end in written_before:
            space.mark_written(start, end)
        process = Process(pid, info, space, personality, dict(personas))
        process.personas[pid] = personality
        self.processes[pid] = process
        for region in process.space:
            # A shared view written before (`written_before`) wrote its object.
            self._note_writable(region.backing, region.shared,
                                region.prot | (PROT_WRITE if region.ever_writable else 0))
        return process

    def exec(self, event: ExecEvent) -> Process:
        """Replace a process's address space after exec."""
        if event.former_pid is not None and event.former_pid != event.pid:
            self.processes.pop(event.former_pid, None)
        return self.seed(event.pid, event.process, event.maps, event.personality)

    def fork(self, event: ForkEvent) -> Process | None:
        """Add a task: a thread of its creator's process (with its own
        persona), or a child sharing the parent's space (CLONE_VM) or with a
        copy. The new task's persona is the one the source read (the kernel
        copies the creating thread's), else the creating thread's in the model."""
        parent = self.processes.get(event.parent_pid)
        persona = event.personality
        if persona is None and parent is not None:
            persona = parent.persona(event.parent_tid)
        if event.thread:
            if parent is not None and persona is not None:
                parent.set_persona(event.child_tid or event.child_pid, persona)
            return parent
        known = self.processes.get(event.child_pid)
        if known is not None:
            # The child already exec'd (its exec was seen first): its own
            # address space is newer than any copy of the parent's.
            return known
        if parent is None:
            return None
        space = parent.space if event.shares_vm else parent.space.copy()
        child = Process(event.child_pid, parent.info, space, persona or 0)
        child.personas[event.child_pid] = child.personality
        self.processes[event.child_pid] = child
        return child

    def exit(self, pid: int) -> None:
        """Forget a process that is gone."""
        self.processes.pop(pid, None)

    def thread_exit(self, pid: int, tid: int) -> None:
        """Forget the persona of a thread that is gone (not its process's)."""
        process = self.processes.get(pid)
        if process is not None and tid != pid:
            process.personas.pop(tid, None)

    def aliases(self, identity: tuple) -> list[tuple[Process, Region]]:
        """Every region in any traced process that maps this object."""
        seen: set[int] = set()
        found = []
        for process in self.processes.values():
            if id(process.space) in seen:
                continue
            seen.add(id(process.space))
            found.extend((process, region) for region in process.space.aliases(identity))
        return found

    # --- syscalls -------------------------------------------------------------------

    def plan(self, call: MemCall) -> Change | None:
        """Return what `call` would change, judged from its arguments and the
        model; None when it cannot change protections (or is not modelled)."""
        process = self.processes.get(call.pid)
        if process is None:
            return None
        planner = _PLANNERS.get(call.syscall)
        return planner(self, process, call) if planner else None

    def apply(self, call: MemCall, result: int, change: Change | None) -> None:
        """Record the effect of `call`, which returned `result`."""
        process = self.processes.get(call.pid)
        if process is None or -4096 < result < 0:
            return
        applier = _APPLIERS.get(call.syscall)
        if applier:
            applier(self, process, call, result, change)

    def observe(self, pid: int, vmas: tuple[MapEntry, ...]) -> None:
        """Take `vmas`, the kernel's own view of some mappings at a call's
        entry (an eBPF source's), as the truth before that call: the parts
        the model never saw are added from them (their history starts with
        their protection, as for a seeded process), and the parts it knows
        keep their backing and history but take the kernel's protection
        (calls the source counted instead of delivering may have changed it).
        A known part where the kernel maps something else (an object where
        the model has private memory, or the other way round: the kernel
        replaced it with no call the source sends, like io_destroy or a brk
        after prctl(PR_SET_MM)) is taken from the kernel with unknown,
        possibly written, history."""
        process = self.processes.get(pid)
        if process is None:
            return
        space = process.space
        for entry in vmas:
            prot = entry.prot & PROT_MASK
            region = space.find(entry.start)
            backing = backing_from_entry(entry)
            if (region is not None and region.end >= entry.end and region.prot == prot
                    and not _replaced(region.backing, backing)):
                continue  # the usual case: the model already agrees
            pos = entry.start
            for known in space.overlapping(entry.start, entry.end):
                if known.start > pos:
                    space.insert(_region_from_entry(entry, pos, known.start))
                if _replaced(known.backing, backing):
                    space.remove(known.start, known.end)
                    space.insert(_region_from_entry(entry, known.start, known.end, written=True))
                elif known.prot != prot:
                    space.protect(known.start, known.end, prot)
                pos = known.end
            if pos < entry.end:
                space.insert(_region_from_entry(entry, pos, entry.end))

    def fill_unknown(self, pid: int, start: int, end: int, maps: tuple[MapEntry, ...],
                     written: bool = True) -> int:
        """Add the parts of [start, end) the model never saw, from `maps`.

        With `written` (the ptrace source: maps read while the call touching
        them is stopped at entry, pages the kernel made without a call the
        tracer judged, like stack growth) their history is unknown, so they
        count as possibly written: unknown is unsafe. Without it (a source
        that reports every writable mapping, like eBPF, whose `maps` already
        say what the range was before the call) a region the model never saw
        was never writable: its history is its protection. Returns how many
        regions were added."""
        process = self.processes.get(pid)
        if process is None:
            return 0
        space = process.space
        added = 0
        for entry in maps:
            if entry.end <= start or entry.start >= end:
                continue
            lo, hi = max(entry.start, start), min(entry.end, end)
            cursor = lo
            for known in [*space.overlapping(lo, hi), None]:
                gap_end = known.start if known is not None else hi
                if cursor < gap_end:
                    prot = entry.prot & PROT_MASK
                    space.insert(Region(cursor, gap_end, prot, entry.shared,
                                        entry.offset + (cursor - entry.start), backing_from_entry(entry),
                                        written or bool(prot & PROT_WRITE), bool(prot & PROT_EXEC)))
                    added += 1
                if known is not None:
                    cursor = max(cursor, known.end)
        return added

    def reconcile(self, pid: int, start: int, end: int, maps: tuple[MapEntry, ...]) -> None:
        """Make [start, end) of `pid` what `maps` shows (read after a call
        that may have changed part of the range although it failed): pages
        no longer mapped are forgotten, known pages take the protection the
        kernel gave them with the history it implies, and pages the model
        never saw are added with unknown (possibly written) history."""
        process = self.processes.get(pid)
        if process is None:
            return
        space = process.space
        if start == 0 and end >= 1 << 64 and space.agrees(maps):
            return  # nothing to forget, change or add
        cursor = start
        for entry in [*(m for m in maps if m.end > start and m.start < end), None]:
            gap_end = min(entry.start, end) if entry is not None else end
            if cursor < gap_end and space.overlapping(cursor, gap_end):
                space.remove(cursor, gap_end)
            if entry is None:
                break
            cursor = max(cursor, entry.end)
            lo, hi = max(entry.start, start), min(entry.end, end)
            prot = entry.prot & PROT_MASK
            pieces = space.overlapping(lo, hi)
            if any(piece.prot != prot for piece in pieces):
                for piece in pieces:
                    self._note_writable(piece.backing, piece.shared, prot)
                space.protect(lo, hi, prot)
        self.fill_unknown(pid, start, end, maps)

    def distrust(self, pid: int, start: int, end: int, maps: tuple[MapEntry, ...]) -> None:
        """Forget what the model holds for [start, end) of `pid` and take it
        from `maps` with unknown (possibly written) history: a call that may
        have changed it is still in the kernel, unseen."""
        process = self.processes.get(pid)
        if process is None:
            return
        if process.space.overlapping(start, end):
            process.space.remove(start, end)
        self.fill_unknown(pid, start, end, maps)

    def covers(self, pid: int, start: int, end: int) -> bool:
        """True when the model knows every page of [start, end) of `pid`."""
        process = self.processes.get(pid)
        if process is None:
            return False
        region = process.space.find(start)
        if region is not None and region.end >= end:
            return True
        return sum(r.end - r.start for r in process.space.overlapping(start, end)) == end - start

    def set_personality(self, pid: int, tid: int, persona: int) -> None:
        """Record a successful personality(2) change of thread `tid`."""
        process = self.processes.get(pid)
        if process is not None:
            process.set_persona(tid, persona)

    # --- planners ------------------------------------------------------------------

    def _plan_mmap(self, process: Process, call: MemCall) -> Change:
        addr, length, prot, flags = call.args[0], call.args[1], call.args[2], call.args[3]
        rie = process.read_implies_exec(call.tid)
        eff, from_rie = _effective(prot, rie)
        shared = flags & MAP_TYPE != 0x02 and bool(flags & MAP_SHARED)
        if flags & MAP_ANONYMOUS or call.fd_object is None:
            if shared:
                backing = Backing(SHARED_ANON, None, identity=("anon", next(_synthetic_ids)))
            elif flags & MAP_GROWSDOWN:
                backing = Backing(STACK, None)
            else:
                backing = ANON_BACKING
        else:
            backing = backing_from_fd(call.fd_object)
        return Change(call.syscall, "map", addr, addr + page_up(length), eff, backing, shared, True,
                      read_implies_exec=rie, exec_from_rie=from_rie)

    def _plan_mprotect(self, process: Process, call: MemCall) -> Change:
        start, length, prot = call.args[0], call.args[1], call.args[2]
        end = start + page_up(length)
        if prot & PROT_GROWSDOWN:
            # Down to the start of the mapping: the regions below that join
            # it with the same object (history may split one VMA in several).
            region = process.space.find(start)
            while region is not None:
                start = region.start
                below = process.space.find(start - 1)
                region = below if below is not None and below.backing == region.backing else None
        eff, from_rie = _effective(prot, process.read_implies_exec(call.tid))
        parts = tuple(process.space.overlapping(start, end))
        backing = parts[0].backing if parts else UNKNOWN_BACKING
        shared = False
        for part in parts:
            shared = shared or part.shared
        return Change(call.syscall, "protect", start, end, eff, backing, shared, False, parts,
                      read_implies_exec=process.read_implies_exec(call.tid), exec_from_rie=from_rie)

    def _plan_mremap(self, process: Process, call: MemCall) -> Change | None:
        old, old_size = call.args[0], call.args[1]
        pieces = process.space.overlapping(old, old + page_up(max(old_size, 1)))
        if not pieces:
            return None
        first = pieces[0]
        prot = 0
        for piece in pieces:
            prot |= piece.prot
        parts = tuple(pieces)
        new_size = call.args[2]
        return Change(call.syscall, "remap", old, old + page_up(new_size), prot, first.backing,
                      first.shared, True, parts, read_implies_exec=process.read_implies_exec(call.tid))

    def _plan_shmat(self, process: Process, call: MemCall) -> Change:
        shmid, addr, flags = call.args[0], call.args[1], call.args[2]
        if flags & SHM_RND:
            addr &= ~(PAGE_SIZE - 1)  # where the kernel attaches (SHMLBA is a page on x86)
        prot = PROT_READ if flags & SHM_RDONLY else PROT_READ | PROT_WRITE
        if flags & SHM_EXEC:
            prot |= PROT_EXEC
        eff, from_rie = _effective(prot, process.read_implies_exec(call.tid))
        backing = Backing(SHM, f"/SYSV shmid={shmid}", 0, shmid, True, ("shm", shmid))
        size = _segment_bytes(call)
        return Change(call.syscall, "map", addr, addr + size, eff, backing, True, True,
                      shm_exec=bool(flags & SHM_EXEC), read_implies_exec=process.read_implies_exec(call.tid),
                      exec_from_rie=from_rie)

    def _plan_brk(self, process: Process, call: MemCall) -> Change | None:
        space = process.space
        requested = call.args[0]
        if space.brk_end is None or space.break_unknown or requested <= space.brk_end:
            return None
        prot = PROT_READ | PROT_WRITE
        rie = process.read_implies_exec(call.tid)
        eff, from_rie = _effective(prot, rie)
        return Change(call.syscall, "brk", space.brk_end, page_up(requested), eff, Backing(HEAP, "[heap]"),
                      False, True, read_implies_exec=rie, exec_from_rie=from_rie)

    def _plan_personality(self, process: Process, call: MemCall) -> Change | None:
        persona = call.args[0] & 0xFFFFFFFF
        if persona == PERSONALITY_QUERY:
            return None
        return Change(call.syscall, "personality", 0, 0, 0, ANON_BACKING, False, False,
                      personality_set=persona, read_implies_exec=bool(persona & READ_IMPLIES_EXEC))

    def _plan_foreign_write(self, process: Process, call: MemCall) -> Change | None:
        if call.target is None:
            return None
        if call.syscall == "ptrace" and call.args[0] & 0xFFFFFFFF in (PTRACE_ATTACH, PTRACE_SEIZE):
            # Under a tracer only a process outside the tree can be attached:
            # its registers and memory would do the tree's work unjudged.
            return _opaque(call, "ptrace-attach")
        target = self.processes.get(call.target)
        if call.syscall == "ptrace":
            addr = call.args[2]
            region = target.space.find(addr) if target else None
            if region is not None and not region.prot & PROT_EXEC:
                return None  # a POKE into data: no code is written
            backing = region.backing if region else Backing(SPECIAL, None)
            prot = region.prot if region else PROT_EXEC
            return Change(call.syscall, "foreign-write", addr, addr + 8, prot, backing, False, False)
        return Change(call.syscall, "foreign-write", 0, 0, 0, Backing(SPECIAL, call.path), False, False)

    def _plan_descriptor(self, process: Process, call: MemCall) -> Change | None:
        """A descriptor the call produced, judged from the kernel's view; for
        the `held` pseudo call with no descriptor, a range of memory writable
        and executable at an attach's seize (start, length, protection)."""
        obj = call.fd_object
        if obj is None:
            if call.syscall != HELD_PSEUDO_SYSCALL or len(call.args) != 3:
                return None
            start, length, prot = call.args
            region = process.space.find(start)
            backing = region.backing if region is not None else UNKNOWN_BACKING
            return Change(call.syscall, HELD_MEMORY, start, start + length, prot, backing, False, False)
        facility = descriptor_facility(obj)
        if facility == "mem":
            return Change(call.syscall, "foreign-write", 0, 0, 0, Backing(SPECIAL, obj.path), False, False)
        if facility == "written":
            backing = backing_from_fd(obj)
            if obj.fs_type == OVERLAYFS_SUPER_MAGIC or obj.layers:
                backing = self._layer_file(backing, obj.layers or None)
            return Change(call.syscall, "write-object", 0, 0, PROT_WRITE, backing, False, False)
        return _opaque(call, facility, obj.filesystems) if facility else None

    def exec_mapped_on(self, devices: frozenset[int]) -> bool:
        """Whether a file of a filesystem among `devices` is mapped
        executable in any traced process."""
        seen: set[int] = set()
        for process in self.processes.values():
            if id(process.space) in seen:
                continue
            seen.add(id(process.space))
            if any(region.prot & PROT_EXEC and region.backing.kind == FILE and region.backing.dev in devices
                   for region in process.space):
                return True
        return False

    def _layer_file(self, backing: Backing, overlays: frozenset[int] | None) -> Backing:
        """The file mapped executable in the tree that a descriptor opened
        for writing may write under another identity: overlayfs's stat (of
        the descriptor, or of a mapping made through the overlay) gives the
        overlay's device and the layer file's inode number (its low 32 bits
        with xino), and the kernel shows no more (maps and map_files of an
        overlay mapping name the overlay too). For an overlay descriptor
        (`overlays` None) any executable file mapping with that inode number
        is taken for it; for a file of another filesystem (a layer, maybe),
        one made through an overlay among `overlays` (attack_overlay_mapped).
        Else `backing`."""
        low = backing.inode & 0xFFFFFFFF
        seen: set[int] = set()
        for process in self.processes.values():
            if id(process.space) in seen:
                continue
            seen.add(id(process.space))
            for region in process.space:
                other = region.backing
                if region.prot & PROT_EXEC and other.kind == FILE and other.inode & 0xFFFFFFFF == low \
                        and other.identity != backing.identity and (not overlays or other.dev in overlays):
                    return other
        return backing

    def _plan_opaque(self, process: Process, call: MemCall) -> Change | None:
        """io_uring, userfaultfd, clone3, the shapes of clone, ioctl,
        seccomp and acct the filter stops only when they ask for what cannot be seen,
        and a call blocked while its siblings were held (BLOCKED_PSEUDO_SYSCALL)."""
        name, args = call.syscall, call.args
        if name == "clone":
            return _opaque(call, "CLONE_UNTRACED") if args[0] & CLONE_UNTRACED else None
        if name == "clone3" and call.target is not None:
            return _opaque(call, "CLONE_UNTRACED")  # its exit found a child nobody traces
        if name == "ioctl":
            return _opaque(call, _IOCTL_FACILITIES[args[1] & 0xFFFFFFFF]) \
                if args[1] & 0xFFFFFFFF in _IOCTL_FACILITIES else None
        if name == "seccomp":
            listener = args[0] == SECCOMP_SET_MODE_FILTER and args[1] & SECCOMP_FILTER_FLAG_NEW_LISTENER
            return _opaque(call, "seccomp-listener") if listener else None
        if name == "prctl":
            # Only PR_SET_MM stops: the kernel's layout record (the program
            # break among it) rewritten from a struct in the program's memory.
            return _opaque(call, "PR_SET_MM") if args[0] & 0xFFFFFFFF == PR_SET_MM else None
        if name == BLOCKED_PSEUDO_SYSCALL:
            return _opaque(call, f"blocked-{call.path}")
        if name == "io_uring_enter":
            # A ring entered by its registered index may have no descriptor,
            # mapping or thread that showed it when the process was attached.
            return _opaque(call, "io_uring") if args[3] & IORING_ENTER_REGISTERED_RING else None
        if name == "acct":
            # A path turns accounting on: the kernel appends to that file at
            # every exit on the host, records shaped by the exiting process.
            return _opaque(call, "acct") if args[0] else None
        if name == "remap_file_pages":
            region = process.space.find(args[0])
            risky = region is not None and region.shared and bool(region.prot & PROT_EXEC)
            return _opaque(call, "remap_file_pages") if risky else None
        return _opaque(call, _FACILITIES[name])

    # --- appliers ------------------------------------------------------------------

    def _apply_descriptor(self, process: Process, call: MemCall, result: int, change: Change | None) -> None:
        if call.fd_object is not None:
            self.rewritten_devices.update(call.fd_object.filesystems)
        if change is not None and change.kind == "write-object" and change.backing.identity:
            self.written.add(change.backing.identity)
            obj, key = call.fd_object, layer_key(change.backing.identity)
            if key is not None and obj is not None and obj.fs_type == OVERLAYFS_SUPER_MAGIC:
                # The layer file it writes is mapped under its own device.
                self.written.add(key)

    def add_written(self, objects) -> None:
        """Record objects the tree can write without a traced open."""
        for obj in objects:
            self.written.add(backing_from_fd(obj).identity)
            self.rewritten_devices.update(obj.filesystems)

    def _apply_mmap(self, process: Process, call: MemCall, result: int, change: Change | None) -> None:
        if change is None:
            return
        start = result & 0xFFFFFFFFFFFFFFFF if call.arch == "x86_64" else result & 0xFFFFFFFF
        end = start + (change.end - change.start)
        offset = call.args[5] if len(call.args) > 5 else 0
        if call.syscall == "mmap2":
            offset *= PAGE_SIZE
        prot = change.prot
        self._note_writable(change.backing, change.shared, prot)
        obj = call.fd_object
        if (not stat.S_ISREG(obj.mode)) if obj is not None else not call.args[3] & MAP_ANONYMOUS:
            process.space.holds_uncopied = True  # a device, a facility, or not known: maybe not copied
        process.space.insert(Region(start, end, prot, change.shared, offset, change.backing,
                                    bool(prot & PROT_WRITE), bool(prot & PROT_EXEC)))

    def _apply_mprotect(self, process: Process, call: MemCall, result: int, change: Change | None) -> None:
        if change is not None:
            for part in change.parts:
                self._note_writable(part.backing, part.shared, change.prot)
            process.space.protect(change.start, change.end, change.prot)

    def _apply_munmap(self, process: Process, call: MemCall, result: int, change: Change | None) -> None:
        start, length = call.args[0], call.args[1]
        process.space.remove(start, start + page_up(length))

    def _apply_mremap(self, process: Process, call: MemCall, result: int, change: Change | None) -> None:
        old, old_size, new_size, flags = call.args[0], call.args[1], call.args[2], call.args[3]
        space = process.space
        if old_size == 0:
            # A second view of the same shared object: the source stays.
            region = space.find(old)
            if region is None:
                return
            pieces = [region.cut(old, min(region.end, old + page_up(new_size)))]
        else:
            pieces = space.overlapping(old, old + page_up(old_size))
            if not flags & MREMAP_DONTUNMAP:
                space.remove(old, old + page_up(old_size))
        shift = result - old
        new_end = result + page_up(new_size)
        # Whatever the model held where the pages landed is gone (MREMAP_FIXED
        # unmaps the target); parts of the source it never saw are taken
        # from the kernel's maps at the exit (changes_unseen).
        space.remove(result, new_end)
        if not pieces:
            return
        for piece in pieces:
            moved = Region(piece.start + shift, min(piece.end + shift, new_end), piece.prot, piece.shared,
                           piece.offset, piece.backing, piece.ever_writable, piece.ever_exec)
            if moved.start < moved.end:
                space.insert(moved)
        last = pieces[-1]
        grown_from = last.end + shift
        if grown_from < new_end:
            offset = last.offset + (last.end - last.start) if last.backing.identity else last.offset
            space.insert(Region(grown_from, new_end, last.prot, last.shared, offset, last.backing,
                                last.ever_writable, last.ever_exec))

    def _apply_shmat(self, process: Process, call: MemCall, result: int, change: Change | None) -> None:
        if change is None:
            return
        size = _segment_bytes(call)
        prot = change.prot
        self._note_writable(change.backing, True, prot | (PROT_WRITE if call.object_written else 0))
        process.space.insert(Region(result, result + size, prot, True, 0, change.backing,
                                    bool(prot & PROT_WRITE), bool(prot & PROT_EXEC)))

    def _apply_shmdt(self, process: Process, call: MemCall, result: int, change: Change | None) -> None:
        # The kernel detaches every mapping of a System V segment whose base
        # (its start less its offset in the segment) is addr, whether or not
        # the page at addr is still one of them (a munmapped first page).
        addr = call.args[0]
        attached = [r for r in process.space.overlapping(addr, 1 << 64)
                    if r.backing.kind == SHM and r.start - r.offset == addr]
        if not attached:
            return
        identity = attached[0].backing.identity
        for region in attached:
            if region.backing.identity == identity:
                process.space.remove(region.start, region.end)

    def _apply_brk(self, process: Process, call: MemCall, result: int, change: Change | None) -> None:
        space = process.space
        if space.break_unknown:
            # brk returns the kernel's break; what it mapped or cut on the way
            # the caller takes from the kernel's maps (ShadowModel.reconcile).
            space.break_unknown = False
            space.brk_start = space.brk_start if space.brk_start is not None else result
            space.brk_end = result
            return
        new_end = page_up(result)
        if space.brk_start is None:
            space.brk_start = space.brk_end = new_end
            return
        old_end = page_up(space.brk_end or space.brk_start)
        if new_end > old_end and change is not None:
            prot = change.prot
            space.insert(Region(old_end, new_end, prot, False, 0, change.backing,
                                bool(prot & PROT_WRITE), bool(prot & PROT_EXEC)))
        elif new_end < old_end:
            space.remove(new_end, old_end)
        space.brk_end = result

    def _apply_prctl(self, process: Process, call: MemCall, result: int, change: Change | None) -> None:
        if change is not None:
            process.space.break_unknown = True

    def _apply_personality(self, process: Process, call: MemCall, result: int, change: Change | None) -> None:
        if change is not None and change.personality_set is not None:
            # personality(2) changes the calling thread's persona only.
            process.set_persona(call.tid, change.personality_set)


def _region_from_entry(entry: MapEntry, start: int, end: int, prot: int | None = None,
                       written: bool = False) -> Region:
    """The part [start, end) of a maps line as a region first seen now:
    its history is its protection (`prot`, default the line's), and
    possibly written as well with `written` (unknown history)."""
    prot = entry.prot & PROT_MASK if prot is None else prot
    offset = entry.offset + (start - entry.start)
    return Region(start, end, prot, entry.shared, offset, backing_from_entry(entry),
                  written or bool(prot & PROT_WRITE), bool(prot & PROT_EXEC))


def _replaced(known: Backing, seen: Backing) -> bool:
    """Whether the kernel maps another kind of thing (`seen`) where the model
    has `known`: an object where the model holds private memory, or the
    other way round. Two objects are not compared (a file mapped through
    overlayfs is seen by the kernel as its layer's inode), nor is what the
    model does not know (unknown backing)."""
    return known.kind != UNKNOWN and (known.identity is None) != (seen.identity is None)


def _segment_bytes(call: MemCall) -> int:
    """The size a shmat maps. A source that learns of the call after the
    segment was removed cannot know it: the model then keeps one page, enough
    to remember the object's identity (what dual-map is judged on)."""
    return page_up(call.object_size or PAGE_SIZE)


_IOCTL_FACILITIES = {USERFAULTFD_IOC_NEW: "userfaultfd", KVM_CREATE_VM: "kvm"}
_FACILITIES = {"io_uring_setup": "io_uring", "userfaultfd": "userfaultfd", "clone3": "clone3",
               "fanotify_init": "fanotify", "init_module": "kernel-module", "finit_module": "kernel-module",
               "kexec_load": "kexec", "kexec_file_load": "kexec", "swapon": "swapon",
               "acct": "acct"}
_DESCRIPTOR_CALLS = ("open", "openat", "openat2", "creat", "open_by_handle_at", "pidfd_getfd", "recvmsg",
                     "recvmmsg", "memfd_create", HELD_PSEUDO_SYSCALL)

_PLANNERS = {
    **dict.fromkeys(_DESCRIPTOR_CALLS, ShadowModel._plan_descriptor),
    **dict.fromkeys(("clone", "ioctl", "seccomp", "remap_file_pages", "prctl", "io_uring_enter",
                     BLOCKED_PSEUDO_SYSCALL, *_FACILITIES),
                    ShadowModel._plan_opaque),
    "ptrace": ShadowModel._plan_foreign_write,
    "mmap": ShadowModel._plan_mmap,
    "mmap2": ShadowModel._plan_mmap,
    "mprotect": ShadowModel._plan_mprotect,
    "pkey_mprotect": ShadowModel._plan_mprotect,
    "mremap": ShadowModel._plan_mremap,
    "shmat": ShadowModel._plan_shmat,
    "brk": ShadowModel._plan_brk,
    "personality": ShadowModel._plan_personality,
}

_APPLIERS = {
    **dict.fromkeys(_DESCRIPTOR_CALLS, ShadowModel._apply_descriptor),
    "mmap": ShadowModel._apply_mmap,
    "mmap2": ShadowModel._apply_mmap,
    "mprotect": ShadowModel._apply_mprotect,
    "pkey_mprotect": ShadowModel._apply_mprotect,
    "munmap": ShadowModel._apply_munmap,
    "mremap": ShadowModel._apply_mremap,
    "shmat": ShadowModel._apply_shmat,
    "shmdt": ShadowModel._apply_shmdt,
    "brk": ShadowModel._apply_brk,
    "personality": ShadowModel._apply_personality,
    "prctl": ShadowModel._apply_prctl,
}
