"""ELF reading against compiled fixtures, binutils as the oracle, and live
processes for symbolization."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tracer import elf, elf_fast
from tracer.abi import PF_R, PF_W, PF_X
from tracer.events import MapEntry
from tracer.sources import procfs

LIB_SOURCE = r"""
__attribute__((noinline)) int tw_lib_function(int x) { return x * 7 + 1; }
"""

PROG_SOURCE = r"""
#include <stdio.h>
#include <sys/mman.h>

int tw_object[64] = {1};
extern int tw_lib_function(int);

__attribute__((noinline)) int tw_function(int x)
{
    return x * 3 + tw_object[x & 63];
}

int main(void)
{
    printf("%p %p %p\n", (void *)tw_function, (void *)tw_lib_function, (void *)tw_object);
    fflush(stdout);
    getchar();
    void *page = mmap(NULL, 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return tw_function(1) + tw_lib_function(2) + (page == MAP_FAILED);
}
"""


def _gcc(*args: str) -> None:
    result = subprocess.run(["gcc", *args], capture_output=True, text=True)
    if result.returncode != 0:
        pytest.fail(f"gcc {' '.join(args)} failed:\n{result.stderr}")


@dataclass(frozen=True)
class Fixtures:
    pie: str
    nopie: str
    lib: str
    execstack: str


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Fixtures:
    if shutil.which("gcc") is None:
        pytest.skip("gcc is not installed: cannot build the ELF fixtures")
    d = tmp_path_factory.mktemp("elf")
    (d / "lib.c").write_text(LIB_SOURCE)
    (d / "prog.c").write_text(PROG_SOURCE)
    lib = d / "libtwlib.so"
    _gcc("-O1", "-shared", "-fPIC", "-o", str(lib), str(d / "lib.c"))
    link = [f"-L{d}", "-ltwlib", f"-Wl,-rpath,{d}"]
    _gcc("-O1", "-o", str(d / "pie"), str(d / "prog.c"), *link)
    _gcc("-O1", "-no-pie", "-o", str(d / "nopie"), str(d / "prog.c"), *link)
    _gcc("-O1", "-Wl,-z,execstack", "-o", str(d / "execstack"), str(d / "prog.c"), *link)
    return Fixtures(str(d / "pie"), str(d / "nopie"), str(lib), str(d / "execstack"))


def _readelf_loads(path: str) -> list[elf.Segment]:
    """PT_LOAD headers as binutils' readelf prints them."""
    out = subprocess.run(["readelf", "-lW", path], capture_output=True, text=True, check=True).stdout
    loads = []
    for line in out.splitlines():
        fields = line.split()
        if fields[:1] == ["LOAD"]:
            offset, vaddr, _, filesz, memsz = (int(x, 16) for x in fields[1:6])
            flags = " ".join(fields[6:-1])
            bits = (
                (PF_R if "R" in flags else 0) | (PF_W if "W" in flags else 0) | (PF_X if "E" in flags else 0)
            )
            loads.append(elf.Segment(vaddr, memsz, offset, filesz, bits))
    return loads


def _nm(path: str, name: str) -> tuple[int, int]:
    out = subprocess.run(
        ["nm", "-S", "--defined-only", path], capture_output=True, text=True, check=True
    ).stdout
    for line in out.splitlines():
        fields = line.split()
        if len(fields) == 4 and fields[3] == name:
            return int(fields[0], 16), int(fields[1], 16)
    raise AssertionError(f"nm does not list {name} in {path}")


def test_pie_program_facts(built: Fixtures) -> None:
    info = elf.read_elf(built.pie)
    assert (info.elfclass, info.machine, info.e_type) == (64, "EM_X86_64", "DYN")
    assert info.pie and info.is_program
    assert info.interpreter == "/lib64/ld-linux-x86-64.so.2"
    assert info.execstack is False and info.gnu_stack_flags == PF_R | PF_W
    assert not info.textrel
    assert list(info.segments) == _readelf_loads(built.pie)
    assert {"mmap", "printf", "tw_lib_function"} <= info.imports
    assert "tw_function" not in info.imports
    assert info.needed == ("libtwlib.so", "libc.so.6")
    assert info.has_code
    sym = info.symbols.lookup(_nm(built.pie, "tw_function")[0])
    assert sym is not None and (sym.addr, sym.size, sym.kind) == (*_nm(built.pie, "tw_function"), "func")
    obj = info.symbols.lookup(_nm(built.pie, "tw_object")[0] + 8)
    assert obj is not None and (obj.name, obj.kind) == ("tw_object", "object")


def test_fixed_address_program_and_library_facts(built: Fixtures) -> None:
    nopie = elf.read_elf(built.nopie)
    assert nopie.e_type == "EXEC" and nopie.is_program and not nopie.pie
    assert list(nopie.segments) == _readelf_loads(built.nopie)
    lib = elf.read_elf(built.lib)
    assert lib.e_type == "DYN" and not lib.is_program and lib.interpreter is None
    assert lib.soname is None
    libc = elf.read_elf(os.path.realpath("/lib/x86_64-linux-gnu/libc.so.6"))
    # libc.so.6 is runnable (it has an interpreter) but is still a library.
    assert libc.interpreter is not None and libc.soname == "libc.so.6" and not libc.is_program


def test_execstack_is_read_from_pt_gnu_stack(built: Fixtures) -> None:
    info = elf.read_elf(built.execstack)
    assert info.execstack is True
    assert info.gnu_stack_flags == PF_R | PF_W | PF_X


@contextmanager
def running(path: str) -> Iterator[tuple[int, list[int]]]:
    """Run a fixture program until it has printed its addresses; yield (pid, addresses)."""
    proc = subprocess.Popen([path], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        addresses = [int(word, 16) for word in proc.stdout.readline().split()]
        yield proc.pid, addresses
    finally:
        proc.kill()
        proc.wait()
        procfs.close_mem(proc.pid)


def _mapping(pid: int, addr: int) -> MapEntry:
    return next(m for m in procfs.read_maps(pid) if m.start <= addr < m.end)


@pytest.mark.parametrize("which", ["pie", "nopie"])
def test_symbolize_live_addresses(built: Fixtures, which: str) -> None:
    path = getattr(built, which)
    info, lib = elf.read_elf(path), elf.read_elf(built.lib)
    with running(path) as (pid, (function, lib_function, data)):
        fmap, lmap, dmap = (_mapping(pid, a) for a in (function, lib_function, data))
        code = procfs.read_mem(pid, function, 16)
    assert fmap.path == path and lmap.path == built.lib and dmap.path == path
    assert elf.symbolize(info, function, fmap.start, fmap.offset) == ("tw_function", 0)
    assert elf.symbolize(info, function + 5, fmap.start, fmap.offset) == ("tw_function", 5)
    assert elf.symbolize(lib, lib_function + 3, lmap.start, lmap.offset) == ("tw_lib_function", 3)
    assert elf.symbolize(info, data + 4 * 63, dmap.start, dmap.offset) == ("tw_object", 4 * 63)
    vaddr = elf.map_to_vaddr(info, function, fmap.start, fmap.offset)
    assert vaddr == _nm(path, "tw_function")[0]
    # The file holds the same bytes the process runs.
    assert elf.read_at_vaddr(info, vaddr, 16) == code


def test_addresses_outside_segments_and_symbols(built: Fixtures) -> None:
    info = elf.read_elf(built.pie)
    last = max(info.segments, key=lambda s: s.offset + s.filesz)
    end_offset = last.offset + last.filesz + 0x10000
    assert elf.map_to_vaddr(info, 0x1000 + end_offset, 0x1000, 0) is None
    assert elf.symbolize(info, 0x1000 + end_offset, 0x1000, 0) is None
    assert info.symbols.lookup(0) is None
    assert elf.read_at_vaddr(info, 1 << 60, 16) == b""


def _expect(path: str, reason: str, cls: type[elf.ElfError] = elf.ElfError) -> elf.ElfError:
    with pytest.raises(cls) as caught:
        elf.read_elf(path)
    assert caught.value.reason == reason, caught.value
    assert caught.value.path == path
    return caught.value


@pytest.mark.parametrize("size", [5, 40, 64, 300, 2000, "half"])
def test_truncated_files_are_reported_as_truncated(built: Fixtures, tmp_path: Path, size: int | str) -> None:
    data = Path(built.pie).read_bytes()
    cut = tmp_path / "cut"
    cut.write_bytes(data[: len(data) // 2 if size == "half" else size])
    err = _expect(str(cut), "truncated")
    assert not isinstance(err, elf.NotElfError)
    assert "truncated" in str(err)


def test_non_elf_inputs(tmp_path: Path) -> None:
    text = tmp_path / "script.sh"
    text.write_text("#!/bin/sh\necho hi\n")
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    _expect(str(text), "not-elf", elf.NotElfError)
    _expect(str(empty), "not-elf", elf.NotElfError)
    _expect(str(tmp_path), "not-regular", elf.NotElfError)
    # Opening a FIFO must not wait for a writer.
    _expect(str(fifo), "not-regular", elf.NotElfError)
    missing = _expect(str(tmp_path / "missing"), "vanished")
    assert not isinstance(missing, elf.NotElfError)
    assert isinstance(missing.__cause__, FileNotFoundError)


def test_unreadable_file_is_reported_as_unreadable(built: Fixtures, tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    shutil.copy(built.pie, secret)
    secret.chmod(0o600)
    tmp_path.chmod(0o755)
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.setgroups([])
            os.setresgid(65534, 65534, 65534)
            os.setresuid(65534, 65534, 65534)
            elf.read_elf(str(secret))
        except elf.ElfError as err:
            code = 0 if err.reason == "unreadable" and isinstance(err.__cause__, PermissionError) else 2
        except BaseException:
            code = 3
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    if os.WIFEXITED(status) and os.WEXITSTATUS(status) == 1:
        pytest.fail("a file mode 0600 owned by root was readable as nobody")
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, f"child status {status:#x}"


def test_debug_info_file_has_no_code_and_no_imports(built: Fixtures, tmp_path: Path) -> None:
    debug = tmp_path / "pie.debug"
    subprocess.run(["objcopy", "--only-keep-debug", built.pie, str(debug)], check=True)
    info = elf.read_elf(str(debug))
    assert not info.has_code
    assert info.imports == frozenset() and info.interpreter is None and info.needed == ()
    assert elf.read_elf(built.pie).has_code


def test_symbols_and_bytes_refuse_a_file_changed_since_it_was_read(built: Fixtures, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copy(built.pie, copy)
    info = elf.read_elf(str(copy))
    with open(copy, "ab") as f:
        f.write(b"\0")
    with pytest.raises(elf.ElfError) as caught:
        _ = info.symbols
    assert caught.value.reason == "changed"
    with pytest.raises(elf.ElfError) as caught:
        elf.read_at_vaddr(info, info.segments[0].vaddr, 4)
    assert caught.value.reason == "changed"


def test_cache_reuses_until_the_file_changes(built: Fixtures, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copy(built.pie, copy)
    cache = elf.ElfCache(maxsize=2)
    first = cache.get(str(copy))
    assert cache.get(str(copy)) is first
    shutil.copy(built.nopie, copy)
    os.utime(copy, ns=(1, first.key.mtime_ns + 1))
    second = cache.get(str(copy))
    assert second is not first and second.e_type == "EXEC"


def test_cache_remembers_failures_as_fresh_exceptions(tmp_path: Path) -> None:
    text = tmp_path / "text"
    text.write_text("hello")
    cache = elf.ElfCache()
    raised = []
    for _ in range(2):
        with pytest.raises(elf.NotElfError) as caught:
            cache.get(str(text))
        raised.append(caught.value)
    assert raised[0] is not raised[1]
    assert raised[0].reason == raised[1].reason == "not-elf"


def test_cache_evicts_the_least_recently_used(built: Fixtures) -> None:
    cache = elf.ElfCache(maxsize=2)
    pie = cache.get(built.pie)
    cache.get(built.nopie)
    cache.get(built.pie)
    cache.get(built.lib)  # evicts nopie, the least recently used
    assert cache.get(built.pie) is pie
    assert len(cache) == 2


def test_stack_flags_from_program_headers_alone(built: Fixtures, tmp_path: Path) -> None:
    """read_stack_flags (exec's fast path) agrees with read_elf, including
    i386 and a header-less object, and refuses what is not ELF."""
    paths = [built.pie, built.nopie, built.lib, built.execstack, "/usr/lib/i386-linux-gnu/libc.so.6"]
    for path in paths:
        if os.path.exists(path):  # the i386 libc comes with gcc-multilib
            assert elf.read_stack_flags(path) == elf.read_elf(path).gnu_stack_flags, path
    assert elf.read_stack_flags(built.execstack) == PF_R | PF_W | PF_X
    obj = tmp_path / "lib.o"
    _gcc("-c", "-o", str(obj), str(Path(built.lib).parent / "lib.c"))
    assert elf.read_stack_flags(str(obj)) is None  # relocatable: no program headers
    text = tmp_path / "text"
    text.write_text("hello")
    with pytest.raises(elf.NotElfError):
        elf.read_stack_flags(str(text))
    short = tmp_path / "short"
    short.write_bytes(Path(built.pie).read_bytes()[:80])
    with pytest.raises(elf.ElfError) as caught:
        elf.read_stack_flags(str(short))
    assert caught.value.reason == "truncated"


def test_exec_stack_cache_reads_a_program_once_until_it_changes(built: Fixtures, tmp_path: Path) -> None:
    copy = tmp_path / "prog"
    shutil.copy(built.pie, copy)
    cache = elf.ExecStackCache()
    assert cache.execstack(str(copy)) is False
    # Same identity: the cached verdict, even if the bytes are swapped behind
    # an unchanged mtime (what the key promises and no more).
    mtime = copy.stat().st_mtime_ns
    shutil.copy(built.execstack, copy)
    os.utime(copy, ns=(mtime, mtime))
    if copy.stat().st_size == Path(built.pie).stat().st_size:
        assert cache.execstack(str(copy)) is False
    # A new mtime: read again.
    os.utime(copy, ns=(mtime + 1_000_000_000, mtime + 1_000_000_000))
    assert cache.execstack(str(copy)) is True
    assert cache.execstack(str(tmp_path / "missing")) is None


@pytest.fixture(scope="module")
def fuzz_input(built: Fixtures, tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, str]:
    """The bytes of a small real program, and where to write mutated copies."""
    return Path(built.nopie).read_bytes(), str(tmp_path_factory.mktemp("fuzz") / "fuzzed")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(edits=st.lists(st.tuples(st.integers(0, 4095), st.integers(0, 255)), min_size=1, max_size=12))
def test_corrupted_headers_raise_elf_error_or_parse(
    fuzz_input: tuple[bytes, str], edits: list[tuple[int, int]]
) -> None:
    """Bytes changed anywhere in the headers: read_elf and the symbol table
    either work or raise ElfError -- never a pyelftools or Python error."""
    original, path = fuzz_input
    data = bytearray(original)
    for position, value in edits:
        data[position] = value
    with open(path, "wb") as f:
        f.write(data)
    try:
        info = elf.read_elf(path)
        _ = info.symbols
        for seg in info.segments[:2]:
            elf.read_at_vaddr(info, seg.vaddr, 8)
    except elf.ElfError:
        pass


# Where the struct reader meets every kind of ELF file this system has:
# programs, shared libraries (64-bit, i386, x32), objects and archives'
# neighbours under gcc, and separate debug-info files.
SYSTEM_DIRS = ("/usr/bin", "/usr/lib/x86_64-linux-gnu", "/usr/lib32", "/usr/libx32", "/usr/lib/gcc",
               "/usr/lib/debug")


def _both_readers(path: str) -> tuple[elf.ElfInfo | None, elf.ElfInfo | tuple[str, str]]:
    """What the struct reader says about `path` (None: it defers) and what
    pyelftools says (an ElfInfo, or the ElfError's reason and detail)."""
    fd, st = elf._open_regular(path)
    try:
        head = os.pread(fd, elf_fast.HEAD_SIZE, 0)
        regular = elf_fast.read_regular(fd, st.st_size, head)
        fast = None if regular is None else elf._regular_info(path, elf.FileKey.of(st), regular)
        try:
            slow: elf.ElfInfo | tuple[str, str] = elf._read_with_pyelftools(path, fd, st)
        except elf.ElfError as err:
            slow = (err.reason, err.detail)
        return fast, slow
    finally:
        os.close(fd)


def _elf_files(roots: tuple[str, ...]) -> list[str]:
    found = []
    for root in roots:
        for directory, _, names in os.walk(root):
            for name in names:
                path = os.path.join(directory, name)
                if os.path.isfile(path) and not os.path.islink(path):
                    with open(path, "rb") as f:
                        if f.read(4) == elf_fast.ELF_MAGIC:
                            found.append(path)
    return found


def test_struct_reader_agrees_with_pyelftools_on_system_files(built: Fixtures, tmp_path: Path) -> None:
    """Every ELF file of a few system directories, and the fixtures (a
    relocatable object, a stripped copy, a debug-info file): the struct
    reader gives pyelftools' ElfInfo, and defers for almost none."""
    obj = tmp_path / "lib.o"
    _gcc("-c", "-o", str(obj), str(Path(built.lib).parent / "lib.c"))
    stripped = tmp_path / "stripped"
    subprocess.run(["strip", "-o", str(stripped), built.pie], check=True)
    debug = tmp_path / "pie.debug"
    subprocess.run(["objcopy", "--only-keep-debug", built.pie, str(debug)], check=True)
    paths = [*_elf_files(SYSTEM_DIRS), built.pie, built.nopie, built.lib, built.execstack, str(obj),
             str(stripped), str(debug)]
    deferred = []
    for path in paths:
        fast, slow = _both_readers(path)
        if fast is None:
            deferred.append(path)
        else:
            assert fast == slow, path
    assert len(paths) > 100
    assert len(deferred) <= len(paths) // 100, deferred


class Corpus(list):
    """(bytes, ranges) of real ELF files, shown by their count alone."""

    def __repr__(self) -> str:
        return f"<{len(self)} ELF files>"


@pytest.fixture(scope="module")
def corruptible(built: Fixtures) -> Corpus:
    """Real ELF files (a program, a library, an i386 library when there is
    one) and, for each, the byte ranges both readers look at: ELF and program
    headers, section headers, the dynamic segment, .interp, .dynsym, .dynstr
    and .shstrtab."""
    paths = [built.nopie, built.lib]
    if os.path.exists("/usr/lib/i386-linux-gnu/libc.so.6"):
        paths.append("/usr/lib/i386-linux-gnu/libc.so.6")
    found = Corpus()
    for path in paths:
        data = Path(path).read_bytes()
        ranges = [range(0, 64)]
        out = subprocess.run(["readelf", "-lSW", path], capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            fields = line.split()
            if fields[:1] == ["DYNAMIC"] or fields[:1] == ["INTERP"]:
                offset, size = int(fields[1], 16), int(fields[4], 16)
                ranges.append(range(offset, offset + size))
            elif len(fields) > 6 and fields[2] in (".dynsym", ".dynstr", ".shstrtab"):
                offset, size = int(fields[5], 16), int(fields[6], 16)
                ranges.append(range(offset, offset + min(size, 4096)))
        phoff, shoff = (int.from_bytes(data[at:at + width], "little")
                        for at, width in (((0x1C, 4), (0x20, 4)) if data[4] == 1 else ((0x20, 8), (0x28, 8))))
        ranges.append(range(phoff, phoff + 1024))
        ranges.append(range(shoff, len(data)))
        found.append((data, ranges))
    return found


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(which=st.integers(0, 2), picks=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 10**6),
                                                           st.integers(0, 255)), min_size=1, max_size=6),
       cut=st.one_of(st.none(), st.integers(0, 10**6)))
def test_struct_reader_agrees_with_pyelftools_or_defers_on_corrupted_files(
    corruptible: Corpus, tmp_path_factory: pytest.TempPathFactory,
    which: int, picks: list[tuple[int, int, int]], cut: int | None,
) -> None:
    """Bytes changed where the readers look, and files cut short: the struct
    reader says what pyelftools says (an ElfInfo equal to its, or nothing
    where pyelftools fails) or defers."""
    original, ranges = corruptible[which % len(corruptible)]
    data = bytearray(original)
    for which_range, at, value in picks:
        span = ranges[which_range % len(ranges)]
        data[span[at % len(span)]] = value
    if cut is not None:
        data = data[:cut % len(data)]
    path = tmp_path_factory.getbasetemp() / "corrupted"
    path.write_bytes(bytes(data))
    if data[:4] != elf_fast.ELF_MAGIC:
        return
    fast, slow = _both_readers(str(path))
    assert fast is None or fast == slow
