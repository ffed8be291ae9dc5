"""The taxonomy's categories for each change the shadow model plans: all that
apply, most severe first. Pure: it reads the model, never changes it.
"""

from __future__ import annotations

from .abi import PROT_EXEC, PROT_WRITE, READ_IMPLIES_EXEC
from .categories import Category, by_severity
from .events import ExecEvent
from .shadow import ANON, FILE, HEAP, MEMFD, SHARED_ANON, STACK, Backing, Change, ShadowModel

ANONYMOUS_KINDS = frozenset({ANON, SHARED_ANON})


def _unlinked(backing: Backing) -> bool:
    """True for objects with no name on disk: memfds, deleted or O_TMPFILE files."""
    return backing.kind == MEMFD or (backing.kind == FILE and backing.deleted)


def classify(change: Change, model: ShadowModel, pid: int) -> tuple[Category, ...]:
    """Return every category `change` (made by process `pid`) falls in."""
    found: set[Category] = set()
    prot = change.prot
    exec_now = bool(prot & PROT_EXEC)
    write_now = bool(prot & PROT_WRITE)

    if change.kind == "foreign-write":
        return (Category.FOREIGN_WRITE,)

    if change.kind == "personality":
        if change.personality_set is not None and change.personality_set & READ_IMPLIES_EXEC:
            found.add(Category.READ_IMPLIES_EXEC)
        return by_severity(found)

    if change.kind in ("map", "remap", "brk"):
        if exec_now and write_now:
            found.add(Category.WX_MAP)
        if change.kind == "map" and exec_now:
            _exec_gain(found, change.backing, change)
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


def classify_exec(event: ExecEvent) -> tuple[Category, ...]:
    """Return the categories a fresh address space is in at exec time:
    an executable stack, any other writable and executable region (an RWX
    PT_LOAD segment of the program or its interpreter), READ_IMPLIES_EXEC
    given by the kernel, or code run from an object with no name on disk
    (fexecve of a memfd)."""
    found: set[Category] = set()
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
