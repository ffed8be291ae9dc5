"""Pure unit tests of the shadow model and the classifier, built from event
lists (no kernel involved: these layers only read events)."""

from __future__ import annotations

import os

import pytest

from tracer.abi import MAP_ANONYMOUS, MAP_FIXED, MAP_PRIVATE, MAP_SHARED, READ_IMPLIES_EXEC, SHM_EXEC, Prot
from tracer.categories import Category as C
from tracer.classify import classify
from tracer.events import ExecEvent, FdObject, ForkEvent, MapEntry, MemCall, ProcessInfo
from tracer.shadow import MEMFD, SHARED_ANON, ShadowModel
from tracer.subject import call_subject, exec_subject

R, W, X = Prot.READ, Prot.WRITE, Prot.EXEC
PID = 100
INFO = ProcessInfo("/usr/bin/prog", "prog", 0)


def exec_categories(event: ExecEvent, written: set[tuple] | frozenset[tuple] = frozenset()) -> tuple[C, ...]:
    """The categories of a new program, the tree having written `written`."""
    model = ShadowModel()
    model.written.update(written)
    return classify(exec_subject(event), model)
ANON = MAP_PRIVATE | MAP_ANONYMOUS
BASE_MAPS = (
    MapEntry(0x400000, 0x401000, R, False, 0, os.makedev(8, 1), 11, "/usr/bin/prog"),
    MapEntry(0x401000, 0x402000, R | X, False, 0x1000, os.makedev(8, 1), 11, "/usr/bin/prog"),
    MapEntry(0x600000, 0x621000, R | W, False, 0, 0, 0, "[heap]"),
    MapEntry(0x7FFF0000, 0x7FFF8000, R | W, False, 0, 0, 0, "[stack]"),
)


def model(personality: int = 0) -> ShadowModel:
    shadow = ShadowModel()
    shadow.seed(PID, INFO, BASE_MAPS, personality)
    return shadow


def call(
    name: str, *args: int, fd_object: FdObject | None = None, pid: int = PID, object_size: int | None = None,
    tid: int | None = None,
) -> MemCall:
    return MemCall(0.0, pid, pid if tid is None else tid, name, "x86_64", tuple(args), fd_object=fd_object,
                   object_size=object_size)


def fork_event(child: int, shares_vm: bool = False, thread: bool = False, parent_tid: int = PID,
               personality: int | None = None) -> ForkEvent:
    """A new task made by thread `parent_tid` of PID: a thread of PID (`child`
    its tid), else process `child`."""
    return ForkEvent(0.0, PID, parent_tid, PID if thread else child, thread, shares_vm or thread,
                     child_tid=child, personality=personality)


def step(shadow: ShadowModel, c: MemCall, result: int, pid: int = PID) -> tuple[C, ...]:
    """Plan, classify and apply one call; return its categories."""
    change = shadow.plan(c)
    cats = classify(call_subject(pid, c.syscall, change, INFO), shadow)
    shadow.apply(c, result, change)
    return cats


def test_anonymous_wx_mmap_is_wx_map_and_anon_exec():
    shadow = model()
    assert step(shadow, call("mmap", 0, 4096, R | W | X, ANON, -1, 0), 0x10000) == (C.WX_MAP, C.ANON_EXEC)
    region = shadow.process(PID).space.find(0x10000)
    assert region.prot == R | W | X and region.ever_writable


def test_plain_rw_and_relro_produce_nothing():
    shadow = model()
    assert step(shadow, call("mmap", 0, 8192, R | W, ANON, -1, 0), 0x20000) == ()
    assert step(shadow, call("mprotect", 0x20000, 4096, R), 0) == ()
    space = shadow.process(PID).space
    assert space.find(0x20000).prot == R and space.find(0x21000).prot == R | W


def test_write_then_exec_is_w_to_x_even_after_dropping_write():
    shadow = model()
    step(shadow, call("mmap", 0, 4096, R | W, ANON, -1, 0), 0x10000)
    assert step(shadow, call("mprotect", 0x10000, 4096, R), 0) == ()
    assert step(shadow, call("mprotect", 0x10000, 4096, R | X), 0) == (C.W_TO_X, C.ANON_EXEC)


def test_rw_to_rwx_is_wx_protect_w_to_x_anon_exec():
    shadow = model()
    step(shadow, call("mmap", 0, 4096, R | W, ANON, -1, 0), 0x10000)
    assert step(shadow, call("mprotect", 0x10000, 4096, R | W | X), 0) == (
        C.WX_PROTECT,
        C.W_TO_X,
        C.ANON_EXEC,
    )


def test_rx_to_rwx_is_wx_protect_only():
    shadow = model()
    step(shadow, call("mmap", 0, 4096, R | X, ANON, -1, 0), 0x10000)
    assert step(shadow, call("mprotect", 0x10000, 4096, R | W | X), 0) == (C.WX_PROTECT,)


def test_failed_call_leaves_model_unchanged():
    shadow = model()
    step(shadow, call("mmap", 0, 4096, R | W, ANON, -1, 0), 0x10000)
    step(shadow, call("mprotect", 0x10000, 4096, R | X), -13)
    assert shadow.process(PID).space.find(0x10000).prot == R | W


def test_split_and_merge_like_the_kernel():
    shadow = model()
    step(shadow, call("mmap", 0, 3 * 4096, R | W, ANON, -1, 0), 0x10000)
    step(shadow, call("mprotect", 0x11000, 4096, R), 0)
    space = shadow.process(PID).space
    assert [(r.start, r.end, r.prot) for r in space.overlapping(0x10000, 0x13000)] == [
        (0x10000, 0x11000, R | W),
        (0x11000, 0x12000, R),
        (0x12000, 0x13000, R | W),
    ]
    step(shadow, call("mprotect", 0x11000, 4096, R | W), 0)
    assert [(r.start, r.end) for r in space.overlapping(0x10000, 0x13000)] == [(0x10000, 0x13000)]
    step(shadow, call("munmap", 0x11000, 4096), 0)
    assert space.find(0x11000) is None and space.find(0x12000) is not None


def test_execstack_by_mprotect_and_at_exec():
    shadow = model()
    assert step(shadow, call("mprotect", 0x7FFF0000, 4096, R | W | X), 0) == (
        C.WX_PROTECT,
        C.W_TO_X,
        C.EXECSTACK,
    )
    maps = (*BASE_MAPS[:3], MapEntry(0x7FFF0000, 0x7FFF8000, R | W | X, False, 0, 0, 0, "[stack]"))
    event = ExecEvent(0.0, PID, PID, INFO, maps, True, 0)
    assert exec_categories(event) == (C.EXECSTACK,)
    assert exec_categories(ExecEvent(0.0, PID, PID, INFO, BASE_MAPS, False, 0)) == ()


def test_execheap_by_mprotect_and_by_brk_under_read_implies_exec():
    shadow = model()
    assert C.EXECHEAP in step(shadow, call("mprotect", 0x600000, 4096, R | W | X), 0)
    rie = model(READ_IMPLIES_EXEC)
    cats = step(rie, call("brk", 0x640000), 0x640000)
    assert cats == (C.WX_MAP, C.EXECHEAP, C.READ_IMPLIES_EXEC)
    assert rie.process(PID).space.find(0x630000).prot == R | W | X
    # Without the persona, growing the heap is ordinary.
    assert step(model(), call("brk", 0x640000), 0x640000) == ()


def test_execmod_is_a_written_private_file_mapping_made_executable():
    shadow = model()
    lib = FdObject(3, "/usr/lib/libtextrel.so", os.makedev(8, 1), 77)
    step(shadow, call("mmap", 0, 4096, R | X, MAP_PRIVATE, 3, 0, fd_object=lib), 0x30000)
    assert step(shadow, call("mprotect", 0x30000, 4096, R | W), 0) == ()
    assert step(shadow, call("mprotect", 0x30000, 4096, R | X), 0) == (C.W_TO_X, C.EXECMOD)


def test_dual_map_through_a_memfd_either_order():
    memfd = FdObject(5, "/memfd:libffi (deleted)", os.makedev(0, 1), 4242)
    shadow = model()
    assert step(shadow, call("mmap", 0, 4096, R | W, MAP_SHARED, 5, 0, fd_object=memfd), 0x40000) == ()
    cats = step(shadow, call("mmap", 0, 4096, R | X, MAP_SHARED, 5, 0, fd_object=memfd), 0x50000)
    assert cats == (C.DUAL_MAP, C.EXEC_UNLINKED)
    assert shadow.process(PID).space.find(0x40000).backing.kind == MEMFD
    other = model()
    step(other, call("mmap", 0, 4096, R | X, MAP_SHARED, 5, 0, fd_object=memfd), 0x50000)
    assert C.DUAL_MAP in step(other, call("mmap", 0, 4096, R | W, MAP_SHARED, 5, 0, fd_object=memfd), 0x40000)


def test_private_writable_view_is_not_a_dual_map():
    lib = FdObject(3, "/usr/lib/libx.so", os.makedev(8, 1), 78)
    shadow = model()
    step(shadow, call("mmap", 0, 4096, R | X, MAP_PRIVATE, 3, 0, fd_object=lib), 0x30000)
    assert step(shadow, call("mmap", 0, 4096, R | W, MAP_PRIVATE, 3, 0, fd_object=lib), 0x40000) == ()


def test_shared_anonymous_alias_by_mremap_and_by_fork():
    shadow = model()
    step(shadow, call("mmap", 0, 4096, R | X, MAP_SHARED | MAP_ANONYMOUS, -1, 0), 0x70000)
    assert shadow.process(PID).space.find(0x70000).backing.kind == SHARED_ANON
    step(shadow, call("mremap", 0x70000, 0, 4096, 1, 0), 0x80000)
    assert step(shadow, call("mprotect", 0x80000, 4096, R | W), 0) == (C.DUAL_MAP,)
    # The same object shared with a forked child, made writable there.
    forked = model()
    step(forked, call("mmap", 0, 4096, R | X, MAP_SHARED | MAP_ANONYMOUS, -1, 0), 0x70000)
    forked.fork(fork_event(PID + 1, shares_vm=False))
    assert step(forked, call("mprotect", 0x70000, 4096, R | W, pid=PID + 1), 0, pid=PID + 1) == (C.DUAL_MAP,)


def test_mremap_moves_history():
    shadow = model()
    step(shadow, call("mmap", 0, 4096, R | W, ANON, -1, 0), 0x10000)
    step(shadow, call("mprotect", 0x10000, 4096, R), 0)
    step(shadow, call("mremap", 0x10000, 4096, 8192, 1, 0), 0x90000)
    space = shadow.process(PID).space
    assert space.find(0x10000) is None
    assert space.find(0x91000).ever_writable
    assert step(shadow, call("mprotect", 0x90000, 8192, R | X), 0) == (C.W_TO_X, C.ANON_EXEC)


def test_shmat_with_shm_exec():
    shadow = model()
    cats = step(shadow, call("shmat", 7, 0, SHM_EXEC, object_size=8192), 0xA0000)
    assert cats == (C.WX_MAP, C.SHM_EXEC)
    assert shadow.process(PID).space.find(0xA1000).backing.identity == ("shm", 7)
    step(shadow, call("shmdt", 0xA0000), 0)
    assert shadow.process(PID).space.find(0xA0000) is None


def test_personality_read_implies_exec_then_readable_maps_are_executable():
    shadow = model()
    assert step(shadow, call("personality", READ_IMPLIES_EXEC), 0) == (C.READ_IMPLIES_EXEC,)
    assert step(shadow, call("personality", 0xFFFFFFFF), READ_IMPLIES_EXEC) == ()
    cats = step(shadow, call("mmap", 0, 4096, R | W, ANON, -1, 0), 0x10000)
    assert cats == (C.WX_MAP, C.READ_IMPLIES_EXEC, C.ANON_EXEC)


RW_MAP = ("mmap", 0, 4096, R | W, ANON, -1, 0)
RIE_MAP = (C.WX_MAP, C.READ_IMPLIES_EXEC, C.ANON_EXEC)


def test_each_thread_keeps_its_own_persona():
    """personality(2) changes the caller's persona only; a thread starts
    with its creator's (the kernel's task->personality, per thread)."""
    shadow = model()
    shadow.fork(fork_event(PID + 1, thread=True))
    assert step(shadow, call("personality", READ_IMPLIES_EXEC, tid=PID + 1), 0) == (C.READ_IMPLIES_EXEC,)
    assert step(shadow, call(*RW_MAP, tid=PID + 1), 0x10000) == RIE_MAP
    assert step(shadow, call(*RW_MAP), 0x20000) == ()
    assert shadow.process(PID).space.find(0x20000).prot == R | W
    # Made by the thread with the persona, and by the one without.
    shadow.fork(fork_event(PID + 2, thread=True, parent_tid=PID + 1))
    shadow.fork(fork_event(PID + 3, thread=True))
    assert step(shadow, call(*RW_MAP, tid=PID + 2), 0x30000) == RIE_MAP
    assert step(shadow, call(*RW_MAP, tid=PID + 3), 0x40000) == ()
    # A child process copies its forking thread's persona.
    child = shadow.fork(fork_event(PID + 10, parent_tid=PID + 1))
    assert child.persona(PID + 10) == READ_IMPLIES_EXEC


def test_clearing_a_threads_persona_leaves_its_siblings():
    shadow = model(READ_IMPLIES_EXEC)
    shadow.fork(fork_event(PID + 1, thread=True))
    assert step(shadow, call("personality", 0, tid=PID + 1), READ_IMPLIES_EXEC) == ()
    assert step(shadow, call(*RW_MAP, tid=PID + 1), 0x10000) == ()
    assert step(shadow, call(*RW_MAP), 0x20000) == RIE_MAP


def test_the_persona_a_source_read_is_the_new_tasks():
    """What the kernel gave the new task (read by the source) wins over the model's guess."""
    shadow = model()
    shadow.fork(fork_event(PID + 1, thread=True, personality=READ_IMPLIES_EXEC))
    assert step(shadow, call(*RW_MAP, tid=PID + 1), 0x10000) == RIE_MAP
    assert step(shadow, call(*RW_MAP), 0x20000) == ()


def test_seeded_threads_keep_the_personas_read_for_them():
    shadow = ShadowModel()
    shadow.seed(PID, INFO, BASE_MAPS, 0, ((PID + 1, READ_IMPLIES_EXEC), (PID + 2, 0)))
    assert step(shadow, call(*RW_MAP, tid=PID + 1), 0x10000) == RIE_MAP
    assert step(shadow, call(*RW_MAP, tid=PID + 2), 0x20000) == ()
    assert step(shadow, call(*RW_MAP), 0x30000) == ()
    # A gone thread's persona is forgotten: a later thread with its id is a new one.
    shadow.thread_exit(PID, PID + 1)
    assert step(shadow, call(*RW_MAP, tid=PID + 1), 0x40000) == ()


def test_exec_unlinked_memfd_and_deleted_file():
    shadow = model()
    memfd = FdObject(5, "/memfd:jit (deleted)", os.makedev(0, 1), 99)
    assert step(shadow, call("mmap", 0, 4096, R | X, MAP_PRIVATE, 5, 0, fd_object=memfd), 0x40000) == (
        C.EXEC_UNLINKED,
    )
    tmp = FdObject(6, "/tmp/#1234 (deleted)", os.makedev(0, 30), 1234)
    assert step(shadow, call("mmap", 0, 4096, R | X, MAP_PRIVATE, 6, 0, fd_object=tmp), 0x50000) == (
        C.EXEC_UNLINKED,
    )
    fexec = ExecEvent(0.0, PID, PID, ProcessInfo("/memfd:payload (deleted)", "3", 0), BASE_MAPS, False, 0)
    assert exec_categories(fexec) == (C.EXEC_UNLINKED,)


def test_fixed_mapping_replaces_and_threads_share_a_space():
    shadow = model()
    step(shadow, call("mmap", 0, 4096, R | W, ANON, -1, 0), 0x10000)
    step(shadow, call("mmap", 0x10000, 4096, R, ANON | MAP_FIXED, -1, 0), 0x10000)
    region = shadow.process(PID).space.find(0x10000)
    assert region.prot == R and not region.ever_writable
    vfork_child = shadow.fork(fork_event(PID + 5, shares_vm=True))
    assert vfork_child.space is shadow.process(PID).space


@pytest.mark.parametrize("prot", [R, R | W, W])
def test_nothing_executable_is_never_a_category(prot):
    shadow = model()
    assert step(shadow, call("mmap", 0, 4096, prot, ANON, -1, 0), 0x10000) == ()


# --- the kernel's view of a range (the eBPF source) ----------------------------------


def test_a_range_the_model_never_saw_is_judged_on_the_kernels_view():
    # A process gone before its maps could be read: the model knows nothing.
    shadow = ShadowModel()
    shadow.seed(PID, INFO, (), 0)
    stack = MapEntry(0x7FFF0000, 0x7FFF8000, R | W, False, 0, 0, 0, "[stack]")
    shadow.observe(PID, (stack,))
    cats = step(shadow, call("mprotect", 0x7FFF7000, 4096, R | W | X), 0)
    assert cats == (C.WX_PROTECT, C.W_TO_X, C.EXECSTACK)


def test_without_any_view_the_backing_is_unknown_not_anon():
    shadow = ShadowModel()
    shadow.seed(PID, INFO, (), 0)
    change = shadow.plan(call("mprotect", 0x7FFF7000, 4096, R | W | X))
    assert change.backing.kind == "unknown" and change.parts == ()
    # Only what the call itself shows: it asks for write and exec together.
    assert classify(call_subject(PID, "mprotect", change, INFO), shadow) == (C.WX_PROTECT,)


def test_the_kernels_view_corrects_a_protection_the_model_missed():
    shadow = model()
    assert step(shadow, call("mmap", 0, 4096, R | W, ANON, -1, 0), 0x10000) == ()
    assert step(shadow, call("mprotect", 0x10000, 4096, R | X), 0) == (C.W_TO_X, C.ANON_EXEC)
    # Calls counted in the kernel left the page read+write+exec; the next one
    # that crosses says so, and keeps the region's backing and history.
    shadow.observe(PID, (MapEntry(0x10000, 0x11000, R | W | X, False, 0, 0, 0, ""),))
    region = shadow.process(PID).space.find(0x10000)
    assert region.prot == R | W | X and region.ever_writable
    assert step(shadow, call("mprotect", 0x10000, 4096, R | X), 0) == ()

# --- issue 10: unknown is unsafe, object history, exec before fork, W+X at exec ----------


def test_pages_the_model_never_saw_count_as_written():
    shadow = model()
    grown = (MapEntry(0x7FFE0000, 0x7FFF8000, R | W, False, 0, 0, 0, "[stack]"),)
    assert shadow.fill_unknown(PID, 0x7FFE0000, 0x7FFE1000, grown) == 1
    assert step(shadow, call("mprotect", 0x7FFE0000, 4096, R | X), 0) == (C.W_TO_X, C.EXECSTACK)
    # A page it knew and never saw written stays clean.
    assert shadow.fill_unknown(PID, 0x401000, 0x402000, BASE_MAPS) == 0


def test_pages_a_reporting_source_never_sent_were_never_written():
    # eBPF reports every writable mapping: a page it never sent was not writable,
    # so its history is its protection; only the gaps are filled, precisely.
    shadow = model()
    step(shadow, call("mmap", 0x20000, 4096, R | W, ANON, -1, 0), 0x20000)
    seen = (MapEntry(0x1F000, 0x22000, R, False, 0, 0, 0, ""),)
    assert shadow.fill_unknown(PID, 0x1F000, 0x22000, seen, written=False) == 2
    space = shadow.process(PID).space
    assert [(r.start, r.prot, r.ever_writable) for r in space.overlapping(0x1F000, 0x22000)] == [
        (0x1F000, R, False), (0x20000, R | W, True), (0x21000, R, False)]
    assert step(shadow, call("mprotect", 0x21000, 4096, R | X), 0) == (C.ANON_EXEC,)
    assert step(shadow, call("mprotect", 0x20000, 4096, R | X), 0) == (C.W_TO_X, C.ANON_EXEC)


def test_write_history_belongs_to_the_segment_not_the_attach():
    shadow = model()
    seg = 7
    step(shadow, call("shmat", seg, 0, 0, object_size=4096), 0x30000)
    step(shadow, call("shmdt", 0x30000), 0)
    step(shadow, call("shmat", seg, 0, 0o10000, object_size=4096), 0x31000)  # SHM_RDONLY
    assert step(shadow, call("mprotect", 0x31000, 4096, R | X), 0) == (C.W_TO_X,)
    other = 8
    step(shadow, call("shmat", other, 0, 0o10000, object_size=4096), 0x32000)
    assert step(shadow, call("mprotect", 0x32000, 4096, R | X), 0) == ()


def test_a_fork_event_after_the_childs_exec_keeps_the_childs_space():
    shadow = model()
    child = PID + 1
    exec_maps = (MapEntry(0x500000, 0x501000, R | X, False, 0, os.makedev(8, 1), 12, "/usr/bin/other"),)
    shadow.exec(ExecEvent(0.0, child, child, ProcessInfo("/usr/bin/other", "other", 0), exec_maps, False, 0))
    shadow.fork(fork_event(child, shares_vm=False))
    assert shadow.process(child).info.exe == "/usr/bin/other"
    assert shadow.process(child).space.find(0x400000) is None


def test_rwx_segment_at_exec_is_wx_map_and_the_stack_alone_is_execstack():
    rwx = MapEntry(0x402000, 0x403000, R | W | X, False, 0x2000, os.makedev(8, 1), 11, "/usr/bin/prog")
    event = ExecEvent(0.0, PID, PID, INFO, (*BASE_MAPS, rwx), False, 0)
    assert exec_categories(event) == (C.WX_MAP,)
    stack = MapEntry(0x7FFF0000, 0x7FFF8000, R | W | X, False, 0, 0, 0, "[stack]")
    assert exec_categories(ExecEvent(0.0, PID, PID, INFO, (*BASE_MAPS[:3], stack), None, 0)) == (C.EXECSTACK,)


def test_reconcile_takes_a_failed_calls_range_from_the_kernel():
    """After a call that failed part-way, the range is what the maps show:
    a page the kernel made writable carries that history (its later R-X is
    w-to-x), a page the kernel unmapped is forgotten, and a page the model
    never saw is unknown (counted as written)."""
    shadow = model()
    lib = FdObject(3, "/usr/lib/data", os.makedev(8, 1), 42)
    assert step(shadow, call("mmap", 0, 3 * 4096, R, MAP_PRIVATE, 3, 0, fd_object=lib), 0x30000) == ()
    assert step(shadow, call("mprotect", 0x30000, 3 * 4096, R | W), -12) == ()
    kernel = (MapEntry(0x30000, 0x31000, R | W, False, 0, os.makedev(8, 1), 42, "/usr/lib/data"),
              MapEntry(0x32000, 0x34000, R | W, False, 0, 0, 0, ""))
    shadow.reconcile(PID, 0x30000, 0x34000, kernel)
    space = shadow.process(PID).space
    assert space.find(0x30000).prot == R | W and space.find(0x30000).ever_writable
    assert space.find(0x31000) is None
    assert space.find(0x33000).ever_writable
    assert C.W_TO_X in step(shadow, call("mprotect", 0x30000, 4096, R | X), 0)


def test_a_space_that_may_hold_mappings_fork_does_not_copy_says_so():
    """A forked child's model is its parent's copy only while the parent's
    space holds nothing the kernel may keep out of children: special kernel
    mappings ([uprobes]), devices and facilities (perf, io_uring) mapped
    through a descriptor, or anything mapped from a descriptor not known."""
    assert not model().process(PID).space.holds_uncopied  # program, heap, stack
    shadow = model()
    regular = FdObject(3, "/usr/lib/libx.so", os.makedev(8, 1), 12, 0o100644)
    step(shadow, call("mmap", 0, 4096, R | X, MAP_PRIVATE, 3, 0, fd_object=regular), 0x30000)
    step(shadow, call("mmap", 0, 4096, R | W, ANON, -1, 0), 0x40000)
    assert not shadow.process(PID).space.holds_uncopied
    shadow.fork(fork_event(PID + 1, shares_vm=False))
    assert not shadow.process(PID + 1).space.holds_uncopied
    for obj in (FdObject(4, "anon_inode:[perf_event]", 0, 13, 0), FdObject(5, "/dev/fb0", 5, 14, 0o20660),
                None):
        shadow = model()
        step(shadow, call("mmap", 0, 4096, R | W, MAP_SHARED, 4, 0, fd_object=obj), 0x50000)
        assert shadow.process(PID).space.holds_uncopied, obj
        shadow.fork(fork_event(PID + 1, shares_vm=False))
        assert shadow.process(PID + 1).space.holds_uncopied, obj  # its model came from its maps: still may
    uprobes = (*BASE_MAPS, MapEntry(0x7FFFF000, 0x80000000, R | X, False, 0, 0, 0, "[uprobes]"))
    shadow = ShadowModel()
    shadow.seed(PID, INFO, uprobes, 0)
    assert shadow.process(PID).space.holds_uncopied
    shadow = model()
    shadow.fill_unknown(PID, 0x90000, 0x91000, (MapEntry(0x90000, 0x91000, R, True, 0, 0, 15,
                                                         "anon_inode:[io_uring]"),))
    assert shadow.process(PID).space.holds_uncopied
