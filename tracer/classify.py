"""The taxonomy's categories of each judged subject (tracer/subject.py): all
that apply, most severe first. The only source of categories: the Judge,
inspect and scan all ask here. Pure: it reads the model, never changes it.
"""

from __future__ import annotations

from .abi import PROT_EXEC, PROT_WRITE, READ_IMPLIES_EXEC
from .categories import Category, by_severity
from .events import ClosureEvent, ExecEvent
from .shadow import (
    ANON,
    FILE,
    HEAP,
    HELD_MEMORY,
    MEMFD,
    SHARED_ANON,
    STACK,
    Backing,
    Change,
    ShadowModel,
    layer_key,
)
from .subject import HOLDS_TRAMPFD, TRAMPFD_OBJECT, Kind, Subject

ANONYMOUS_KINDS = frozenset({ANON, SHARED_ANON})


def _unlinked(backing: Backing) -> bool:
    """True for objects with no name on disk: memfds, deleted or O_TMPFILE files."""
    return backing.kind == MEMFD or (backing.kind == FILE and backing.deleted)


# The hazards scan finds in an ELF file (tracer/scan/findings.py), by what executing
# the file would do; indicators (imports, a missing PT_GNU_STACK on a kernel
# that ignores it) have none.
FILE_HAZARDS: dict[str, tuple[Category, ...]] = {
    "execstack": (Category.EXECSTACK,),
    "wx-segment": (Category.WX_MAP,),
    "textrel": (Category.EXECMOD,),
    "read-implies-exec": (Category.READ_IMPLIES_EXEC,),
}
_TRAMPFD = (Category.TRAMPFD,)
_REFUSED_JUMP = (Category.W_TO_X,)


def classify(subject: Subject, model: ShadowModel | None = None) -> tuple[Category, ...]:
    """Return every category `subject` falls in, most severe first. `model`
    is the shadow model a call, an exec or a region is judged against
    (required for calls and regions; an exec reads the objects it says the
    tree wrote)."""
    kind = subject.kind
    if kind is Kind.CALL:
        change = subject.change
        return () if change is None or model is None else _change(change, model, subject.pid)
    if kind is Kind.EXEC:
        event = subject.event
        if not isinstance(event, ExecEvent):
            return ()
        return _exec(event, model.written, model.rewritten_devices) if model is not None \
            else _exec(event, frozenset(), frozenset())
    if kind is Kind.TRAMPFD:
        return _TRAMPFD
    if kind is Kind.CLOSURE:
        # A jump into memory granted without exec that holds no known
        # trampoline: written memory run as code.
        event = subject.event
        return _REFUSED_JUMP if isinstance(event, ClosureEvent) and event.op == "refused" else _TRAMPFD
    if kind is Kind.REGION:
        change = subject.change
        if change is None or model is None:
            return ()
        return _region(subject, _change(change, model, subject.pid))
    return by_severity({cat for hazard in subject.traits for cat in FILE_HAZARDS.get(hazard, ())})


def _region(subject: Subject, categories: tuple[Category, ...]) -> tuple[Category, ...]:
    """A standing region's categories: those of the call that would create
    it, with what its name or bytes say of trampfd."""
    if TRAMPFD_OBJECT in subject.traits:
        # Being anonymous or unlinked is what a trampfd object is, not a hazard.
        found = set(categories) - {Category.ANON_EXEC, Category.EXEC_UNLINKED}
        return by_severity(found | {Category.TRAMPFD})
    if HOLDS_TRAMPFD in subject.traits:
        return by_severity({*categories, Category.TRAMPFD})
    return categories


def _change(change: Change, model: ShadowModel, pid: int) -> tuple[Category, ...]:
    """Return every category `change` (made by process `pid`) falls in."""
    found: set[Category] = set()
    prot = change.prot
    exec_now = bool(prot & PROT_EXEC)
    write_now = bool(prot & PROT_WRITE)

    if change.kind == "foreign-write":
        return (Category.FOREIGN_WRITE,)

    if change.kind == HELD_MEMORY:
        return by_severity({Category.WX_MAP, Category.EXECSTACK} if change.backing.kind == STACK
                           else {Category.WX_MAP})

    if change.kind == "opaque":
        # A block device opened for writing under a file mapped executable in
        # the tree: what it writes there becomes code once the page is read.
        if change.rewrites and model.exec_mapped_on(change.rewrites):
            return by_severity({Category.OPAQUE, Category.EXEC_WRITTEN})
        return (Category.OPAQUE,)

    if change.kind == "write-object":
        # Opened for writing while it is mapped executable somewhere in the
        # tree: what is written becomes code (a file mapping shares the page cache).
        mapped_exec = any(region.prot & PROT_EXEC for _, region in model.aliases(change.backing.identity))
        return (Category.EXEC_WRITTEN,) if mapped_exec else ()

    if change.kind == "personality":
        if change.personality_set is not None and change.personality_set & READ_IMPLIES_EXEC:
            found.add(Category.READ_IMPLIES_EXEC)
        return by_severity(found)

    if change.kind in ("map", "remap", "brk"):
        if exec_now and write_now:
            found.add(Category.WX_MAP)
        if change.kind == "map" and exec_now:
            _exec_gain(found, change.backing, change)
            _exec_written(found, change.backing, model)
        if change.kind == "brk" and exec_now:
            found.add(Category.EXECHEAP)
        if change.shm_exec:
            found.add(Category.SHM_EXEC)
        if change.exec_from_rie:
            found.add(Category.READ_IMPLIES_EXEC)
        if change.backing.identity and change.kind != "brk":
            _dual_map(found, change, change.backing, model, pid)
        return by_severity(found)

    # A protection change: judge each part by what it was.
    if exec_now and write_now:
        found.add(Category.WX_PROTECT)
    for part in change.parts:
        gains_exec = exec_now and not part.prot & PROT_EXEC
        if gains_exec:
            if part.prot & PROT_WRITE or part.ever_writable or model.object_written(part.backing.identity):
                found.add(Category.W_TO_X)
            if part.backing.kind == FILE and not part.shared and part.ever_writable:
                found.add(Category.EXECMOD)
            _exec_gain(found, part.backing, change)
            _exec_written(found, part.backing, model)
        if part.backing.identity:
            _dual_map(found, change, part.backing, model, pid)
    if change.exec_from_rie and any(not p.prot & PROT_EXEC for p in change.parts):
        found.add(Category.READ_IMPLIES_EXEC)
    return by_severity(found)


def _exec_gain(found: set[Category], backing: Backing, change: Change) -> None:
    """Categories for memory of `backing` that becomes executable."""
    if backing.kind in ANONYMOUS_KINDS:
        found.add(Category.ANON_EXEC)
    elif backing.kind == STACK:
        found.add(Category.EXECSTACK)
    elif backing.kind == HEAP:
        found.add(Category.EXECHEAP)
    if _unlinked(backing):
        found.add(Category.EXEC_UNLINKED)


def _exec_written(found: set[Category], backing: Backing, model: ShadowModel) -> None:
    """exec-written when the object made executable is one the tree could
    write: by a descriptor of its own (or its overlay layer's), or by the
    blocks of its filesystem."""
    identity = backing.identity
    if identity is not None and (identity in model.written or layer_key(identity) in model.written
                                 or (backing.kind == FILE and backing.dev in model.rewritten_devices)):
        found.add(Category.EXEC_WRITTEN)


def _dual_map(found: set[Category], change: Change, backing: Backing, model: ShadowModel, pid: int) -> None:
    """Add dual-map when, after `change`, one object is writable through a
    shared view and executable through another."""
    grants_write = bool(change.prot & PROT_WRITE) and change.shared
    grants_exec = bool(change.prot & PROT_EXEC)
    if not (grants_write or grants_exec):
        return
    process = model.process(pid)
    for owner, region in model.aliases(backing.identity):
        if owner is not None and process is not None and owner.space is process.space and (
            region.start < change.end and change.start < region.end
        ):
            continue
        if grants_write and region.prot & PROT_EXEC:
            found.add(Category.DUAL_MAP)
            return
        if grants_exec and region.shared and region.prot & PROT_WRITE:
            found.add(Category.DUAL_MAP)
            return


def _exec(event: ExecEvent, written: set[tuple] | frozenset[tuple],
          rewritten: set[int] | frozenset[int]) -> tuple[Category, ...]:
    """Return the categories a fresh address space is in at exec time:
    an executable stack, any other writable and executable region (an RWX
    PT_LOAD segment of the program or its interpreter), READ_IMPLIES_EXEC
    given by the kernel, code run from an object with no name on disk
    (fexecve of a memfd), or a program (or its interpreter) the traced tree
    wrote (`written`: object identities; `rewritten`: devices of filesystems
    whose blocks it wrote)."""
    found: set[Category] = set()
    if written or rewritten:
        exe = event.exe_object
        # Every executable file mapping (a device: its inode number may be 0).
        mapped = {("ino", m.dev, m.inode) for m in event.maps if m.prot & PROT_EXEC and m.dev}
        if exe is not None:
            mapped.add(("ino", exe.dev, exe.inode))
        devices = {identity[1] for identity in mapped}
        mapped |= {layer_key(identity) for identity in mapped}
        if not mapped.isdisjoint(written) or not devices.isdisjoint(rewritten):
            found.add(Category.EXEC_WRITTEN)
    stack = next((m for m in event.maps if m.path == "[stack]"), None)
    # What the kernel did decides; PT_GNU_STACK only when no stack is listed
    # (run --closures takes PROT_EXEC off the stack before this is judged).
    if (stack.prot & PROT_EXEC) if stack is not None else event.elf_execstack:
        found.add(Category.EXECSTACK)
    # The program's or its interpreter's PT_LOAD segments mapped W+X by the
    # kernel's loader (an RWX segment, READ_IMPLIES_EXEC): no syscall asks.
    if any(m.prot & PROT_WRITE and m.prot & PROT_EXEC for m in event.maps if m.path != "[stack]"):
        found.add(Category.WX_MAP)
    if event.personality & READ_IMPLIES_EXEC:
        found.add(Category.READ_IMPLIES_EXEC)
    exe = event.process.exe
    if exe.startswith("/memfd:") or exe.endswith(" (deleted)"):
        found.add(Category.EXEC_UNLINKED)
    return by_severity(found)
