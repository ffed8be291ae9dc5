"""Pure unit tests of descriptors judged at exit, exec-written and opaque:
the shadow model and classifier fed with the kernel's view of descriptors
(FdObject as the source reads it), no kernel involved."""

from __future__ import annotations

import os
import stat

from tracer.abi import (
    CLONE_UNTRACED,
    MAP_ANONYMOUS,
    MAP_PRIVATE,
    MAP_SHARED,
    O_RDWR,
    O_WRONLY,
    PROC_SUPER_MAGIC,
    SECCOMP_FILTER_FLAG_NEW_LISTENER,
    SECCOMP_SET_MODE_FILTER,
    USERFAULTFD_IOC_NEW,
    Prot,
)
from tracer.categories import Category as C
from tracer.classify import classify
from tracer.events import ExecEvent, FdObject, MapEntry, MemCall, ProcessInfo
from tracer.shadow import ShadowModel, descriptor_facility
from tracer.subject import call_subject, exec_subject

R, W, X = Prot.READ, Prot.WRITE, Prot.EXEC
PID = 100
INFO = ProcessInfo("/usr/bin/prog", "prog", 0)


def exec_categories(event: ExecEvent, written: set[tuple] | frozenset[tuple] = frozenset()) -> tuple[C, ...]:
    """The categories of a new program, the tree having written `written`."""
    model = ShadowModel()
    model.written.update(written)
    return classify(exec_subject(event), model)
DISK = os.makedev(8, 1)
PROCFS = os.makedev(0, 22)
MAPS = (MapEntry(0x400000, 0x401000, R | X, False, 0, DISK, 11, "/usr/bin/prog"),)
REG = stat.S_IFREG | 0o644
O_RDONLY = os.O_RDONLY


def shadow() -> ShadowModel:
    model = ShadowModel()
    model.seed(PID, INFO, MAPS, 0)
    return model


def obj(path: str, inode: int = 50, access: int | None = O_RDWR, fs_type: int = 0xEF53,
        mode: int = REG, dev: int = DISK, misc: str | None = None) -> FdObject:
    return FdObject(3, path, dev, inode, mode=mode, fs_type=fs_type, access=access, misc=misc)


def call(name: str, *args: int, fd_object: FdObject | None = None) -> MemCall:
    return MemCall(0.0, PID, PID, name, "x86_64", tuple(args), fd_object=fd_object)


def step(model: ShadowModel, c: MemCall, result: int) -> tuple[C, ...]:
    change = model.plan(c)
    cats = classify(call_subject(PID, c.syscall, change, INFO), model)
    model.apply(c, result, change)
    return cats


def test_a_procfs_file_named_mem_open_for_writing_is_foreign_write_whatever_its_path():
    for path in ("/proc/7/mem", "/tmp/tw-proc-x/7/task/8/mem", "/7/mem", "/proc/7/mem (deleted)"):
        mem = obj(path, fs_type=PROC_SUPER_MAGIC, dev=PROCFS, mode=stat.S_IFREG | 0o600)
        assert descriptor_facility(mem) == "mem"
        assert step(shadow(), call("openat", 0, 0, O_RDWR, fd_object=mem), 3) == (C.FOREIGN_WRITE,)


def test_a_mem_file_read_only_or_another_procfs_file_is_nothing():
    assert descriptor_facility(obj("/proc/7/mem", access=O_RDONLY, fs_type=PROC_SUPER_MAGIC)) is None
    assert descriptor_facility(obj("/proc/7/attr/current", fs_type=PROC_SUPER_MAGIC)) is None
    # a file named mem on a disk is just a written file
    assert descriptor_facility(obj("/home/u/mem")) == "written"


def test_opaque_descriptors_and_unreadable_ones():
    assert descriptor_facility(obj("anon_inode:[io_uring]", mode=0)) == "io_uring"
    assert descriptor_facility(obj("anon_inode:[userfaultfd]", mode=0)) == "userfaultfd"
    device = obj("/anywhere/uffd", mode=stat.S_IFCHR | 0o600, misc="userfaultfd")
    assert descriptor_facility(device) == "userfaultfd"
    assert descriptor_facility(FdObject(3, "", 0, 0)) == "unreadable"
    disk = obj("/dev/loop7", mode=stat.S_IFBLK | 0o660, fs_type=0x1021994)
    assert descriptor_facility(disk) == "block-device"
    assert descriptor_facility(obj("/dev/loop7", mode=stat.S_IFBLK | 0o660, access=O_RDONLY)) is None
    assert step(shadow(), call("recvmsg", 4, 0, 0, fd_object=FdObject(3, "", 0, 0)), 8) == (C.OPAQUE,)


def test_a_written_file_mapped_executable_is_exec_written():
    model = shadow()
    written = obj("/tmp/code", inode=77, access=O_WRONLY)
    assert step(model, call("openat", 0, 0, O_WRONLY, fd_object=written), 3) == ()
    assert ("ino", DISK, 77) in model.written
    mapped = obj("/tmp/code", inode=77, access=O_RDWR)
    cats = step(model, call("mmap", 0, 4096, R | X, MAP_PRIVATE, 3, 0, fd_object=mapped), 0x10000)
    assert cats == (C.EXEC_WRITTEN,)


def test_a_refused_open_records_nothing():
    model = shadow()
    step(model, call("openat", 0, 0, O_WRONLY, fd_object=obj("/tmp/code", inode=78)), -13)
    assert ("ino", DISK, 78) not in model.written


def test_mprotect_gaining_exec_of_a_written_file_mapping():
    model = shadow()
    model.add_written([obj("/tmp/lib.so", inode=90)])
    step(model, call("mmap", 0, 4096, R, MAP_SHARED, 3, 0, fd_object=obj("/tmp/lib.so", inode=90)), 0x20000)
    assert C.EXEC_WRITTEN in step(model, call("mprotect", 0x20000, 4096, R | X), 0)


def test_opening_for_writing_an_object_mapped_executable_is_exec_written():
    model = shadow()
    lib = obj("/tmp/lib.so", inode=91, access=O_RDONLY)
    assert step(model, call("mmap", 0, 4096, R | X, MAP_SHARED, 3, 0, fd_object=lib), 0x30000) == ()
    assert step(model, call("openat", 0, 0, O_RDWR, fd_object=obj("/tmp/lib.so", inode=91)), 4) == (
        C.EXEC_WRITTEN,)


def test_exec_of_a_written_program_or_interpreter():
    event = ExecEvent(0.0, PID, PID, INFO, MAPS, False, 0, exe_object=FdObject(-1, "", DISK, 11))
    assert exec_categories(event, {("ino", DISK, 11)}) == (C.EXEC_WRITTEN,)
    assert exec_categories(event, {("ino", DISK, 12)}) == ()
    interp = MapEntry(0x500000, 0x501000, R | X, False, 0, DISK, 12, "/tmp/ld.so")
    with_interp = ExecEvent(0.0, PID, PID, INFO, (*MAPS, interp), False, 0)
    assert exec_categories(with_interp, {("ino", DISK, 12)}) == (C.EXEC_WRITTEN,)


ZRAM = os.makedev(253, 1)
BLOCK = stat.S_IFBLK | 0o660


def disk_writer(access: int = O_RDWR) -> FdObject:
    """A block device holding a filesystem (its files' device is ZRAM), open
    for writing, as the source sees it."""
    return FdObject(4, "/dev/zram1", os.makedev(0, 5), 9, mode=BLOCK, rdev=ZRAM, access=access,
                    filesystems=frozenset({ZRAM}))


def test_a_block_device_written_under_a_filesystem_makes_its_files_written():
    """Opened for writing (and let run), the device rewrites every file of
    the filesystems on it: mapping one executable, gaining exec on one
    mapped before, and exec'ing one are exec-written; another filesystem's
    files are not."""
    model = shadow()
    old = obj("/mnt/old", inode=60, dev=ZRAM)
    step(model, call("mmap", 0, 4096, R, MAP_PRIVATE, 3, 0, fd_object=old), 0x40000)
    assert step(model, call("openat", 0, 0, O_RDWR, fd_object=disk_writer()), 4) == (C.OPAQUE,)
    assert model.rewritten_devices == {ZRAM}
    clean = obj("/mnt/code", inode=61, access=O_RDONLY, dev=ZRAM)
    assert step(model, call("mmap", 0, 4096, R | X, MAP_PRIVATE, 3, 0, fd_object=clean), 0x50000) == (
        C.EXEC_WRITTEN,)
    assert C.EXEC_WRITTEN in step(model, call("mprotect", 0x40000, 4096, R | X), 0)
    other = obj("/other/code", inode=61, access=O_RDONLY)
    assert step(model, call("mmap", 0, 4096, R | X, MAP_PRIVATE, 3, 0, fd_object=other), 0x60000) == ()
    assert classify(exec_subject(ExecEvent(0.0, PID, PID, INFO, MAPS, False, 0)), model) == ()
    event = ExecEvent(0.0, PID, PID, INFO, MAPS, False, 0, exe_object=FdObject(-1, "", ZRAM, 63))
    assert classify(exec_subject(event), model) == (C.EXEC_WRITTEN,)


def test_a_block_device_refused_or_held_before_the_run():
    """A refused open rewrites nothing; a descriptor the tree started with
    rewrites from the start; opening the device while a file on it is mapped
    executable is exec-written as well as opaque."""
    model = shadow()
    step(model, call("openat", 0, 0, O_RDWR, fd_object=disk_writer()), -1)
    assert not model.rewritten_devices
    model.add_written([disk_writer()])
    assert model.rewritten_devices == {ZRAM}
    mapped = shadow()
    lib = obj("/mnt/lib.so", inode=62, access=O_RDONLY, dev=ZRAM)
    assert step(mapped, call("mmap", 0, 4096, R | X, MAP_PRIVATE, 3, 0, fd_object=lib), 0x30000) == ()
    assert set(step(mapped, call("openat", 0, 0, O_RDWR, fd_object=disk_writer()), 4)) == {
        C.OPAQUE, C.EXEC_WRITTEN}


def test_opaque_calls_by_shape():
    model = shadow()
    assert step(model, call("clone", CLONE_UNTRACED | 17, 0, 0, 0, 0), 0) == (C.OPAQUE,)
    assert step(model, call("clone", 17, 0, 0, 0, 0), 0) == ()
    assert step(model, call("ioctl", 3, USERFAULTFD_IOC_NEW | (1 << 32)), 4) == (C.OPAQUE,)
    assert step(model, call("ioctl", 3, 0x5401), 0) == ()
    listener = call("seccomp", SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_NEW_LISTENER, 0)
    assert step(model, listener, 3) == (C.OPAQUE,)
    assert step(model, call("seccomp", SECCOMP_SET_MODE_FILTER, 0, 0), 0) == ()
    assert step(model, call("acct", 0x7000), 0) == (C.OPAQUE,)
    assert step(model, call("acct", 0), 0) == ()
    for name in ("io_uring_setup", "userfaultfd", "clone3", "fanotify_init"):
        change = model.plan(call(name, 0, 0))
        assert classify(call_subject(PID, name, change, INFO), model) == (C.OPAQUE,) and change.facility


def test_remap_file_pages_only_of_executable_shared_memory():
    model = shadow()
    lib = obj("/tmp/code", inode=92)
    step(model, call("mmap", 0, 4096, R | X, MAP_SHARED, 3, 0, fd_object=lib), 0x40000)
    step(model, call("mmap", 0, 4096, R | W, MAP_SHARED | 0, 3, 0, fd_object=obj("/tmp/data", inode=93)),
         0x50000)
    step(model, call("mmap", 0, 4096, R | W, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0), 0x60000)
    assert step(model, call("remap_file_pages", 0x40000, 4096, 0, 1, 0), 0) == (C.OPAQUE,)
    assert step(model, call("remap_file_pages", 0x50000, 4096, 0, 1, 0), 0) == ()
