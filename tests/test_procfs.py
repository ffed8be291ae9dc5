"""procfs reader: parsing the kernel's text, and reading live processes."""

from __future__ import annotations

import ctypes
import mmap
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from tracer.abi import READ_IMPLIES_EXEC, Prot
from tracer.errors import AccessDenied, NoSuchProcess, TraceError
from tracer.events import MapEntry
from tracer.sources import procfs

MAPS_TEXT = (
    "55d0c8a00000-55d0c8a21000 r--p 00000000 fd:01 1310744                    /usr/bin/cat\n"
    "55d0c8a21000-55d0c8a35000 r-xp 00021000 fd:01 1310744                    /usr/bin/cat\n"
    "7f1200000000-7f1200001000 rw-s 00000000 00:01 2049                       /memfd:libffi (deleted)\n"
    "7f1200001000-7f1200002000 r-xs 00000000 00:01 2049                       /memfd:libffi (deleted)\n"
    "7f1200002000-7f1200003000 rwxp 00000000 00:00 0 \n"
    "7f1200003000-7f1200004000 ---p 00000000 00:00 0\n"
    "7f1200004000-7f1200005000 r--p 00001000 103:02 77                        /tmp/a dir/my lib.so \n"
    "7ffd3b5e0000-7ffd3b601000 rw-p 00000000 00:00 0                          [stack]\n"
    "ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0                  [vsyscall]\n"
)


def test_parse_maps_reads_every_field() -> None:
    entries = procfs.parse_maps(MAPS_TEXT)
    assert entries[0] == MapEntry(
        0x55D0C8A00000, 0x55D0C8A21000, Prot.READ, False, 0, os.makedev(0xFD, 1), 1310744, "/usr/bin/cat"
    )
    assert entries[1].prot == Prot.READ | Prot.EXEC and entries[1].offset == 0x21000
    assert entries[2].shared and entries[2].prot == Prot.READ | Prot.WRITE
    assert entries[2].path == "/memfd:libffi (deleted)"
    assert entries[3].shared and entries[3].prot == Prot.READ | Prot.EXEC
    assert entries[4] == MapEntry(0x7F1200002000, 0x7F1200003000, 7, False, 0, 0, 0, "")
    assert entries[5].prot == Prot.NONE and entries[5].path == ""
    # Spaces inside and after a file name belong to it; major:minor are hex.
    assert entries[6].path == "/tmp/a dir/my lib.so "
    assert entries[6].dev == os.makedev(0x103, 2)
    assert entries[7].path == "[stack]"
    assert entries[8].end == 0xFFFFFFFFFF601000 and entries[8].prot == Prot.EXEC
    assert len(entries) == 9


def test_parse_maps_keeps_carriage_returns_in_names() -> None:
    line = "7f0000000000-7f0000001000 r--p 00000000 fd:01 5    /tmp/odd\rname\x1cx\n"
    (entry,) = procfs.parse_maps(line)
    assert entry.path == "/tmp/odd\rname\x1cx"


@pytest.mark.parametrize(
    "line",
    [
        "7f0000000000-7f0000001000 r--p 00000000 fd:01\n",
        "7f0000000000-7f0000001000 rw 00000000 fd:01 5\n",
        "zzzz-7f0000001000 r--p 00000000 fd:01 5\n",
    ],
)
def test_parse_maps_rejects_foreign_text(line: str) -> None:
    with pytest.raises(ValueError, match="maps"):
        procfs.parse_maps(line)


def test_read_maps_sees_a_file_mapping_with_its_identity(tmp_path) -> None:
    data = tmp_path / "data.bin"
    data.write_bytes(b"x" * 3 * mmap.PAGESIZE)
    st = os.stat(data)
    with open(data, "r+b") as f, mmap.mmap(f.fileno(), mmap.PAGESIZE, offset=mmap.PAGESIZE) as m:
        view = ctypes.c_char.from_buffer(m)
        addr = ctypes.addressof(view)
        del view
        entries = [e for e in procfs.read_maps(os.getpid()) if e.start == addr]
    expected = MapEntry(addr, addr + mmap.PAGESIZE, 3, True, mmap.PAGESIZE, st.st_dev, st.st_ino, str(data))
    assert entries == [expected]


_libc = ctypes.CDLL(None, use_errno=True)
_libc.mmap.restype = ctypes.c_void_p
_libc.mmap.argtypes = [
    ctypes.c_void_p,
    ctypes.c_size_t,
    ctypes.c_int,
    ctypes.c_int,
    ctypes.c_int,
    ctypes.c_long,
]
_libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
MAP_PRIVATE_ANONYMOUS = 0x22
MAP_FAILED = 2**64 - 1


def test_read_maps_handles_ten_thousand_mappings() -> None:
    page = mmap.PAGESIZE
    # One reserved range, then each page remapped with alternating protections
    # so the kernel cannot merge neighbours: 12000 distinct mappings.
    base = _libc.mmap(None, 12000 * page, 0, MAP_PRIVATE_ANONYMOUS, -1, 0)
    assert base not in (None, MAP_FAILED)
    try:
        for i in range(0, 12000, 2):
            addr = _libc.mmap(base + i * page, page, 1, MAP_PRIVATE_ANONYMOUS | 0x10, -1, 0)
            assert addr == base + i * page
        entries = procfs.read_maps(os.getpid())
    finally:
        _libc.munmap(base, 12000 * page)
    mine = [e for e in entries if base <= e.start < base + 12000 * page]
    assert len(mine) == 12000
    assert [e.prot for e in mine[:4]] == [Prot.READ, Prot.NONE, Prot.READ, Prot.NONE]
    assert all(e.end - e.start == page and e.path == "" for e in mine)


@contextmanager
def child(argv: list[str]) -> Iterator[subprocess.Popen[bytes]]:
    """A child that prints one line once it is running, then sleeps."""
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        proc.stdout.readline()
        yield proc
    finally:
        proc.kill()
        proc.wait()
        procfs.close_mem(proc.pid)


SLEEPER = [sys.executable, "-c", "import time; print('up', flush=True); time.sleep(60)"]


def test_read_process_info_of_a_child() -> None:
    with child(SLEEPER) as proc:
        info = procfs.read_process_info(proc.pid)
    assert info.exe == os.path.realpath(sys.executable)
    assert info.comm == os.path.basename(sys.executable)[:15]
    assert info.uid == os.getuid()


def test_read_process_info_of_a_kernel_thread_has_no_exe() -> None:
    kthreadd = 2
    try:
        is_kernel = procfs.read_process_info(kthreadd).comm == "kthreadd"
    except NoSuchProcess:
        is_kernel = False
    if not is_kernel:
        pytest.skip("no kernel thread visible in this pid namespace")
    assert procfs.read_process_info(kthreadd).exe == ""


def test_read_personality_sees_read_implies_exec() -> None:
    # A 64-bit exec clears READ_IMPLIES_EXEC, so the child sets it itself.
    script = (
        "import ctypes, time; ctypes.CDLL(None).personality(0x0400000); "
        "print('up', flush=True); time.sleep(60)"
    )
    with child([sys.executable, "-c", script]) as proc:
        assert procfs.read_personality(proc.pid) & READ_IMPLIES_EXEC
    assert not procfs.read_personality(os.getpid()) & READ_IMPLIES_EXEC


def test_read_tgid_and_list_threads() -> None:
    started = threading.Event()
    stop = threading.Event()

    def run() -> None:
        started.set()
        stop.wait()

    thread = threading.Thread(target=run)
    thread.start()
    try:
        started.wait()
        assert thread.native_id is not None
        assert procfs.read_tgid(thread.native_id) == os.getpid()
        threads = procfs.list_threads(os.getpid())
    finally:
        stop.set()
        thread.join()
    assert os.getpid() in threads and thread.native_id in threads
    assert threads == sorted(threads)


def test_list_pids() -> None:
    pids = procfs.list_pids()
    assert os.getpid() in pids and pids == sorted(pids)


def test_read_mem_reads_own_memory_and_refuses_unmapped() -> None:
    buf = ctypes.create_string_buffer(b"trampwatch-read-mem-check", 64)
    pid = os.getpid()
    try:
        assert procfs.read_mem(pid, ctypes.addressof(buf), 25) == b"trampwatch-read-mem-check"
        with pytest.raises(TraceError, match="0x1000"):
            procfs.read_mem(pid, 0x1000, 16)
    finally:
        procfs.close_mem(pid)


def test_read_mem_reads_across_exec() -> None:
    """The cached descriptor belongs to the old address space: after the
    child execs, reading must still work (through a fresh descriptor)."""
    ready_r, ready_w = os.pipe()
    go_r, go_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(ready_r)
            os.close(go_w)
            os.write(ready_w, b"r")
            os.read(go_r, 1)
            os.dup2(ready_w, 1)
            os.execv(sys.executable, SLEEPER)
        finally:
            os._exit(127)
    os.close(ready_w)
    os.close(go_r)
    try:
        os.read(ready_r, 1)
        before = next(e for e in procfs.read_maps(pid) if e.prot & Prot.READ and e.path)
        assert procfs.read_mem(pid, before.start, 4)
        os.write(go_w, b"g")
        line = b""
        while not line.endswith(b"\n"):
            chunk = os.read(ready_r, 16)
            assert chunk, "the child exited instead of exec'ing"
            line += chunk
        assert line == b"up\n"
        exe = next(e for e in procfs.read_maps(pid) if e.path == os.path.realpath(sys.executable))
        assert procfs.read_mem(pid, exe.start, 4) == b"\x7fELF"
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        procfs.close_mem(pid)
        os.close(ready_r)
        os.close(go_w)


_LIBC = ctypes.CDLL(None, use_errno=True)
_LIBC.mmap.restype = ctypes.c_void_p
_LIBC.mmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int,
                       ctypes.c_long)
_RW = mmap.PROT_READ | mmap.PROT_WRITE
_MAP_FIXED = 0x10


def _map(addr: int | None, size: int, flags: int, prot: int = _RW, fd: int = -1) -> int:
    """mmap(2) through libc (Python's mmap module cannot place a mapping)."""
    mapped = _LIBC.mmap(addr, size, prot, flags | (_MAP_FIXED if addr else 0), fd, 0)
    assert mapped not in (None, ctypes.c_void_p(-1).value), os.strerror(ctypes.get_errno())
    return mapped


def test_private_anonymous_asks_the_kernel_vma_by_vma(tmp_path) -> None:
    """PROCMAP_QUERY's answer for each range equals the one read from the
    whole maps file and the layout this test made: private anonymous
    pieces of differing protections in a row count; a hole, a shared
    anonymous page, a private file page or a private memfd page does not."""
    release = os.uname().release.split(".")
    if (int(release[0]), int(release[1])) < (6, 11):
        pytest.skip(f"PROCMAP_QUERY needs Linux 6.11; this kernel is {os.uname().release}")
    page = mmap.PAGESIZE
    base = _map(None, 8 * page, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    # Pages [0,3) rw-, [3] r--, [4] a hole, [5] shared anonymous, [6] a file, [7] a memfd.
    assert _LIBC.mprotect(ctypes.c_void_p(base + 3 * page), page, mmap.PROT_READ) == 0
    assert _LIBC.munmap(ctypes.c_void_p(base + 4 * page), page) == 0
    _map(base + 5 * page, page, mmap.MAP_SHARED | mmap.MAP_ANONYMOUS)
    data = tmp_path / "data"
    data.write_bytes(b"x" * page)
    with open(data, "rb") as f:
        _map(base + 6 * page, page, mmap.MAP_PRIVATE, mmap.PROT_READ, f.fileno())
    memfd = os.memfd_create("tw-query")
    os.ftruncate(memfd, page)
    _map(base + 7 * page, page, mmap.MAP_PRIVATE, fd=memfd)
    os.close(memfd)
    expected = {(0, 1): True, (0, 3): True, (0, 4): True, (2, 4): True, (3, 4): True, (0, 5): False,
                (4, 5): False, (3, 5): False, (5, 6): False, (6, 7): False, (7, 8): False, (2, 6): False}
    pid = os.getpid()
    try:
        for (first, last), covered in expected.items():
            start, end = base + first * page, base + last * page
            assert procfs.private_anonymous(pid, start, end) is covered, (first, last)
            procfs._procmap_query[0] = False  # the maps file, as before Linux 6.11
            try:
                assert procfs.private_anonymous(pid, start, end) is covered, (first, last)
            finally:
                procfs._procmap_query[0] = True
            queried = procfs.vmas_covering(pid, start, end)
            assert queried == procfs.vmas_in(procfs.read_maps(pid), start, end), (first, last)
            assert (queried is None) == (first <= 4 < last), (first, last)
        file_vma, = procfs.vmas_covering(pid, base + 6 * page, base + 7 * page)
        assert (file_vma.inode, file_vma.dev) == (data.stat().st_ino, data.stat().st_dev)
        assert procfs._procmap_query[0], "the kernel refused PROCMAP_QUERY: the whole maps file was read"
        assert procfs.private_anonymous(pid, 0x1000, 0x2000) is False
    finally:
        procfs.close_mem(pid)
        _LIBC.munmap(ctypes.c_void_p(base), 8 * page)


def test_private_anonymous_of_a_gone_process_is_false() -> None:
    with child(SLEEPER) as proc:
        stack = next(e for e in procfs.read_maps(proc.pid) if e.path == "[stack]")
        assert procfs.private_anonymous(proc.pid, stack.start, stack.end)
        proc.kill()
        proc.wait()
        assert procfs.private_anonymous(proc.pid, stack.start, stack.end) is False
    procfs.close_mem(proc.pid)


def _mem_fds_open() -> int:
    count = 0
    for name in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{name}").endswith("/mem"):
                count += 1
        except OSError:
            continue
    return count


def test_close_mem_closes_the_descriptor() -> None:
    buf = ctypes.create_string_buffer(8)
    base = _mem_fds_open()
    procfs.read_mem(os.getpid(), ctypes.addressof(buf), 8)
    assert _mem_fds_open() == base + 1
    procfs.close_mem(os.getpid())
    assert _mem_fds_open() == base
    procfs.close_mem(os.getpid())


def test_fd_object_names_files_and_memfds(tmp_path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"")
    pid = os.getpid()
    fd = os.open(path, os.O_RDONLY)
    memfd = os.memfd_create("tw-test")
    try:
        obj = procfs.fd_object(pid, fd)
        mem = procfs.fd_object(pid, memfd)
        st = os.fstat(fd)
        mst = os.fstat(memfd)
    finally:
        os.close(fd)
        os.close(memfd)
    assert obj is not None and (obj.path, obj.dev, obj.inode) == (str(path), st.st_dev, st.st_ino)
    assert mem is not None and mem.path == "/memfd:tw-test (deleted)" and mem.inode == mst.st_ino
    assert procfs.fd_object(pid, -1) is None
    assert procfs.fd_object(pid, fd) is None  # closed now


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


@pytest.mark.parametrize(
    "read",
    [
        procfs.read_maps,
        procfs.read_process_info,
        procfs.read_tgid,
        procfs.read_personality,
        procfs.list_threads,
        lambda pid: procfs.read_mem(pid, 0x1000, 8),
        lambda pid: procfs.fd_object(pid, 0),
    ],
)
def test_a_gone_process_raises_no_such_process(read) -> None:
    pid = _dead_pid()
    with pytest.raises(NoSuchProcess) as info:
        read(pid)
    assert info.value.pid == pid
    assert isinstance(info.value.__cause__, OSError)


def test_reading_another_users_process_raises_access_denied() -> None:
    """A child that drops to 'nobody' may not read its root parent's memory
    or personality: both must come back as AccessDenied."""
    parent = os.getpid()
    buf = ctypes.create_string_buffer(8)
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            procfs.close_mem(parent)  # a descriptor opened as root would still read
            os.setgroups([])
            os.setresgid(65534, 65534, 65534)
            os.setresuid(65534, 65534, 65534)
            for read in (
                lambda: procfs.read_mem(parent, ctypes.addressof(buf), 8),
                lambda: procfs.read_personality(parent),
            ):
                try:
                    read()
                    code |= 1
                except AccessDenied as err:
                    code |= 0 if isinstance(err.__cause__, PermissionError) else 2
        except BaseException:
            code = 4
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, f"child status {status:#x}"


_libc.shmget.argtypes = [ctypes.c_int, ctypes.c_size_t, ctypes.c_int]
_libc.shmctl.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_void_p]
IPC_PRIVATE = 0
IPC_CREAT = 0o1000
IPC_RMID = 0
CLONE_NEWIPC = 0x08000000


def test_shm_segment_reads_sysvipc() -> None:
    """Size and latest stamp (here its creation: never attached) from
    /proc/sysvipc/shm; None once the segment is gone."""
    before = int(time.time())
    shmid = _libc.shmget(IPC_PRIVATE, 12345, IPC_CREAT | 0o600)
    if shmid < 0:
        pytest.skip(f"System V shared memory unavailable: {os.strerror(ctypes.get_errno())}")
    try:
        segment = procfs.shm_segment(shmid)
        assert segment is not None and segment.size == 12345
        assert before <= segment.touched_s <= time.time()
    finally:
        _libc.shmctl(shmid, IPC_RMID, None)
    assert procfs.shm_segment(shmid) is None


@pytest.mark.root
def test_same_namespace_is_false_for_another_ipc_namespace() -> None:
    """A child that unshared its IPC namespace is in another one."""
    reader, writer = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(reader)
        os.write(writer, b"x" if _libc.unshare(CLONE_NEWIPC) == 0 else b"!")
        time.sleep(30)
        os._exit(0)
    os.close(writer)
    try:
        assert os.read(reader, 1) == b"x"
        assert procfs.same_namespace(os.getpid(), "ipc")
        assert not procfs.same_namespace(pid, "ipc")
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        os.close(reader)


def test_write_mem_writes_even_read_only_pages() -> None:
    page = mmap.PAGESIZE
    addr = _libc.mmap(None, page, mmap.PROT_READ, MAP_PRIVATE_ANONYMOUS, -1, 0)
    assert addr not in (None, MAP_FAILED)
    pid = os.getpid()
    try:
        procfs.write_mem(pid, addr + 100, b"forced")
        assert ctypes.string_at(addr + 100, 6) == b"forced"
        assert next(e for e in procfs.read_maps(pid) if e.start == addr).prot == Prot.READ
        with pytest.raises(TraceError, match="0x1000"):
            procfs.write_mem(pid, 0x1000, b"x")
    finally:
        _libc.munmap(addr, page)
    with pytest.raises(NoSuchProcess):
        procfs.write_mem(_dead_pid(), 0x1000, b"x")


def test_mount_device_names_the_filesystem_of_a_file() -> None:
    """A file's superblock, found by its mount id in the process's own
    mountinfo, is one of the mounted filesystems (a file on /dev/shm: a
    mount in any root this suite runs in, a chroot's included, where the
    root directory itself may be no mount point); a memfd lives on an
    internal mount no mountinfo lists. The root directory's filesystem is
    among the mounted ones even when no mountinfo line names it."""
    pid = os.getpid()
    mounted = procfs.mount_devices(pid)
    assert os.stat("/").st_dev in mounted
    with tempfile.NamedTemporaryFile(dir="/dev/shm") as f:
        assert procfs.mount_device(pid, f"/proc/{pid}/fd/{f.fileno()}") in mounted
    fd = os.memfd_create("tw-test")
    try:
        assert procfs.mount_device(pid, f"/proc/{pid}/fd/{fd}") is None
    finally:
        os.close(fd)



def test_private_anonymous_follows_an_exec() -> None:
    """A maps descriptor kept from before an exec shows the old, gone
    address space (ESRCH): the answer is the new space's all the same."""
    proc = subprocess.Popen(["sh", "-c", 'echo up; read x; exec "$0" -c "$1"', *SLEEPER[::2]],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert proc.stdin is not None and proc.stdout is not None
    try:
        assert proc.stdout.readline() == b"up\n"
        before = next(e for e in procfs.read_maps(proc.pid) if e.path == "[stack]")
        assert procfs.private_anonymous(proc.pid, before.start, before.end)
        proc.stdin.write(b"go\n")
        proc.stdin.flush()
        assert proc.stdout.readline() == b"up\n"
        after = next(e for e in procfs.read_maps(proc.pid) if e.path == "[stack]")
        assert procfs.private_anonymous(proc.pid, after.start, after.end)
        exe = next(e for e in procfs.read_maps(proc.pid) if e.path == os.path.realpath(sys.executable))
        assert not procfs.private_anonymous(proc.pid, exe.start, exe.end)
    finally:
        proc.kill()
        proc.wait()
        procfs.close_mem(proc.pid)


def test_private_copies_are_the_written_pages_of_private_file_mappings(tmp_path) -> None:
    """The kernel's pages tell which private file pages were written: of a
    file mapped private read+write, the pages written and then made
    read-only (or no-access) are copies; a page only read, one never
    touched, one still writable, a shared file page written, and a private
    anonymous page written and made read-only are not reported."""
    page = mmap.PAGESIZE
    data = tmp_path / "data"
    data.write_bytes(b"x" * 8 * page)
    with open(data, "r+b") as f:
        base = _map(None, 6 * page, mmap.MAP_PRIVATE, fd=f.fileno())
        shared = _map(None, page, mmap.MAP_SHARED, fd=f.fileno())
    anon = _map(None, page, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    try:
        # [0] written, r--; [1] written, ---; [2] read only; [3] untouched;
        # [4] written, still rw-; [5] written, r--.
        for index in (0, 1, 4, 5):
            ctypes.memset(base + index * page, 0xC3, 1)
        assert ctypes.string_at(base + 2 * page, 1) == b"x"
        ctypes.memset(shared, 0x78, 1)
        ctypes.memset(anon, 0xC3, 1)
        assert _LIBC.mprotect(ctypes.c_void_p(base), 2 * page, mmap.PROT_READ) == 0
        assert _LIBC.mprotect(ctypes.c_void_p(base + page), page, 0) == 0
        assert _LIBC.mprotect(ctypes.c_void_p(base + 2 * page), 2 * page, mmap.PROT_READ) == 0
        assert _LIBC.mprotect(ctypes.c_void_p(base + 5 * page), page, mmap.PROT_READ) == 0
        assert _LIBC.mprotect(ctypes.c_void_p(shared), page, mmap.PROT_READ) == 0
        assert _LIBC.mprotect(ctypes.c_void_p(anon), page, mmap.PROT_READ) == 0
        copies = procfs.private_copies(os.getpid(), procfs.read_maps(os.getpid()))
        mine = [(lo, hi) for lo, hi in copies
                if any(lo < start + size and hi > start
                       for start, size in ((base, 6 * page), (shared, page), (anon, page)))]
        assert mine == [(base, base + 2 * page), (base + 5 * page, base + 6 * page)]
    finally:
        for start, size in ((base, 6 * page), (shared, page), (anon, page)):
            _LIBC.munmap(ctypes.c_void_p(start), size)


def test_private_copies_of_a_gone_process_raise_no_such_process() -> None:
    child = subprocess.Popen(["sleep", "30"])
    child.kill()
    child.wait()
    # A private read-only file mapping, so pagemap is read (Popen may return
    # while the kernel still loads the program: its maps then hold no file).
    program = MapEntry(0x400000, 0x401000, Prot.READ, False, 0, os.makedev(8, 1), 2, "/usr/bin/sleep")
    with pytest.raises(NoSuchProcess):
        procfs.private_copies(child.pid, (program,))


def test_start_time_is_no_later_than_any_change_the_process_makes(tmp_path) -> None:
    """A file a process writes as its first act has a change time (the
    kernel's coarse clock) no earlier than the start time read for it, and
    that start time lies between a clock reading before it was made (less
    two ticks: whole ticks, one more for the coarse clock) and one after."""
    tick = 1_000_000_000 // os.sysconf("SC_CLK_TCK")
    for attempt in range(20):
        mark = tmp_path / f"mark{attempt}"
        before = time.clock_gettime_ns(time.CLOCK_REALTIME)
        child = subprocess.Popen(["sh", "-c", f": > {mark}; exec sleep 30"])
        after = time.clock_gettime_ns(time.CLOCK_REALTIME)
        try:
            started = procfs.start_time_ns(child.pid)
            while not mark.exists():  # a guard: sh writes it at once
                time.sleep(0.001)
            assert before - 2 * tick <= started <= after
            assert mark.stat().st_ctime_ns >= started
        finally:
            child.kill()
            child.wait()


def test_thread_hold_and_is_running_follow_the_kernel() -> None:
    """thread_hold: who traces a thread and its state letter; is_running:
    alive and no zombie. A child sleeping, stopped by SIGSTOP, then a
    zombie (killed, not yet reaped)."""
    child = subprocess.Popen(["sleep", "30"])
    try:
        deadline = time.monotonic() + 5
        while procfs.thread_hold(child.pid, child.pid)[1] != "S" and time.monotonic() < deadline:
            time.sleep(0.01)
        assert procfs.thread_hold(child.pid, child.pid) == (0, "S")
        assert procfs.is_running(child.pid)
        os.kill(child.pid, signal.SIGSTOP)
        while procfs.thread_hold(child.pid, child.pid)[1] != "T" and time.monotonic() < deadline:
            time.sleep(0.01)
        assert procfs.thread_hold(child.pid, child.pid) == (0, "T")
        os.kill(child.pid, signal.SIGKILL)
        os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOWAIT)  # a zombie, not reaped
        assert procfs.thread_hold(child.pid, child.pid)[1] == "Z"
        assert not procfs.is_running(child.pid)
    finally:
        child.kill()
        child.wait()
    assert not procfs.is_running(child.pid)
    with pytest.raises(NoSuchProcess):
        procfs.thread_hold(child.pid, child.pid)
