"""Caller attribution on real processes stopped at real syscalls.

Each test compiles a small program (and a shared library it calls through),
runs it under a minimal ctypes ptrace loop local to this file, stops it at the
entry of one recognisable mmap, and asks the Attributor who made the call.
"""

from __future__ import annotations

import ctypes
import errno
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tracer.attribution import Attributor, Caller, is_libc, is_loader
from tracer.events import MapEntry
from tracer.sources import procfs

PTRACE_TRACEME = 0
PTRACE_SYSCALL = 24
PTRACE_GETREGS = 12
PTRACE_SETOPTIONS = 0x4200
PTRACE_O_TRACESYSGOOD = 0x1
PTRACE_O_EXITKILL = 0x100000
SYSCALL_STOP = signal.SIGTRAP | 0x80
ENOSYS_RAX = 2**64 - errno.ENOSYS

MMAP_X86_64 = 9
MMAP2_I386 = 192
LIB_LEN = 0x13000  # the mmap the library makes
RAW_LEN = 0x14000  # the mmap the program makes with its own `syscall`
LIBC_LEN = 0x15000  # the mmap the program makes through libc directly

LIB_SOURCE = r"""
#include <stddef.h>
#include <sys/mman.h>

__attribute__((noinline)) void *tw_map_region(void)
{
    void *p = mmap(NULL, 0x13000, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}
"""

MAIN_SOURCE = r"""
#include <stddef.h>
#include <sys/mman.h>

void *tw_map_region(void);

__attribute__((noinline)) void *tw_map_directly(void)
{
    void *p = mmap(NULL, 0x15000, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

#ifdef __x86_64__
__attribute__((noinline)) long tw_raw_mmap(void)
{
    long ret;
    register long r10 __asm__("r10") = MAP_PRIVATE | MAP_ANONYMOUS;
    register long r8 __asm__("r8") = -1;
    register long r9 __asm__("r9") = 0;
    __asm__ volatile("syscall"
                     : "=a"(ret)
                     : "a"(9L), "D"(0L), "S"(0x14000L), "d"((long)(PROT_READ | PROT_WRITE)),
                       "r"(r10), "r"(r8), "r"(r9)
                     : "rcx", "r11", "memory");
    return ret;
}
#endif

int main(void)
{
    void *a = tw_map_region();
    void *b = tw_map_directly();
#ifdef __x86_64__
    long c = tw_raw_mmap();
#else
    long c = 0;
#endif
    return a == NULL || b == NULL || c < 0;
}
"""


class UserRegs(ctypes.Structure):
    """struct user_regs_struct of x86-64 (what PTRACE_GETREGS fills, also for
    a 32-bit tracee, whose registers arrive zero-extended)."""

    _fields_ = [
        (name, ctypes.c_ulonglong)
        for name in (
            *("r15", "r14", "r13", "r12", "rbp", "rbx", "r11", "r10", "r9", "r8"),
            *("rax", "rcx", "rdx", "rsi", "rdi", "orig_rax", "rip", "cs", "eflags", "rsp"),
            *("ss", "fs_base", "gs_base", "ds", "es", "fs", "gs"),
        )
    ]


_libc = ctypes.CDLL(None, use_errno=True)
_libc.ptrace.restype = ctypes.c_long
_libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p]


def _ptrace(request: int, pid: int, addr: int = 0, data: object = None) -> None:
    if _libc.ptrace(request, pid, addr, data) == -1:
        err = ctypes.get_errno()
        raise OSError(err, f"ptrace({request}): {os.strerror(err)}")


@dataclass
class Stopped:
    pid: int
    regs: UserRegs


@contextmanager
def stopped_at_syscall(argv: list[str], wanted: Callable[[UserRegs], bool]) -> Iterator[Stopped]:
    """Run argv traced and stop it at the entry of the first syscall for which
    `wanted(regs)` holds; kill it afterwards."""
    pid = os.fork()
    if pid == 0:
        try:
            _libc.ptrace(PTRACE_TRACEME, 0, None, None)
            os.execv(argv[0], argv)
        finally:
            os._exit(127)
    try:
        _, status = os.waitpid(pid, 0)
        assert os.WIFSTOPPED(status), f"child did not stop at exec: status {status:#x}"
        _ptrace(PTRACE_SETOPTIONS, pid, 0, PTRACE_O_TRACESYSGOOD | PTRACE_O_EXITKILL)
        regs = UserRegs()
        while True:
            _ptrace(PTRACE_SYSCALL, pid)
            _, status = os.waitpid(pid, 0)
            if os.WIFEXITED(status) or os.WIFSIGNALED(status):
                pytest.fail(f"{argv} ended before the wanted syscall (status {status:#x})")
            if os.WSTOPSIG(status) != SYSCALL_STOP:
                continue
            _ptrace(PTRACE_GETREGS, pid, 0, ctypes.addressof(regs))
            # At entry the kernel has put -ENOSYS in rax; at exit the result.
            if regs.rax == ENOSYS_RAX and wanted(regs):
                yield Stopped(pid, regs)
                return
    finally:
        procfs.close_mem(pid)
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)


def attribute(stop: Stopped, attributor: Attributor | None = None) -> Caller:
    """Attribute the stopped syscall exactly as the tracer will: maps and
    stack read through procfs."""
    maps = procfs.read_maps(stop.pid)
    stack = procfs.read_mem(stop.pid, stop.regs.rsp, 4096)
    return (attributor or Attributor()).caller(stop.regs.rip, stack, stop.regs.rsp, maps)


def _gcc(args: list[str]) -> None:
    result = subprocess.run(["gcc", *args], capture_output=True, text=True)
    if result.returncode != 0:
        pytest.fail(f"gcc {' '.join(args)} failed:\n{result.stderr}")


def build(tmp_path: Path, bits: int) -> tuple[str, str]:
    """Compile libtw.so and the program that calls it; return (program, library)."""
    if shutil.which("gcc") is None:
        pytest.skip("gcc is not installed: cannot build the test programs")
    lib_c = tmp_path / "libtw.c"
    main_c = tmp_path / "main.c"
    lib_c.write_text(LIB_SOURCE)
    main_c.write_text(MAIN_SOURCE)
    arch = [f"-m{bits}", "-O1", "-fno-optimize-sibling-calls"]
    lib = tmp_path / "libtw.so"
    prog = tmp_path / "prog"
    _gcc([*arch, "-shared", "-fPIC", "-o", str(lib), str(lib_c)])
    _gcc([*arch, "-o", str(prog), str(main_c), f"-L{tmp_path}", "-ltw", f"-Wl,-rpath,{tmp_path}"])
    return str(prog), os.path.realpath(lib)


def test_mmap_from_a_shared_library_is_attributed_to_its_function(tmp_path: Path) -> None:
    prog, lib = build(tmp_path, 64)
    with stopped_at_syscall([prog], lambda r: r.orig_rax == MMAP_X86_64 and r.rsi == LIB_LEN) as stop:
        ip_object = Attributor().caller(stop.regs.rip, b"", stop.regs.rsp, procfs.read_maps(stop.pid))
        caller = attribute(stop)
    # The stop is inside libc's wrapper: with no stack, that is all we know.
    assert ip_object.object is not None and is_libc(ip_object.object)
    assert ip_object.symbol is None
    assert caller.object == lib
    assert caller.symbol == "tw_map_region"
    assert 0 < caller.offset < 64


def test_mmap_through_libc_from_the_program_is_attributed_to_the_program(tmp_path: Path) -> None:
    prog, _ = build(tmp_path, 64)
    with stopped_at_syscall([prog], lambda r: r.orig_rax == MMAP_X86_64 and r.rsi == LIBC_LEN) as stop:
        caller = attribute(stop)
    assert caller.object == os.path.realpath(prog)
    assert caller.symbol == "tw_map_directly"


def test_a_raw_syscall_instruction_is_its_own_caller(tmp_path: Path) -> None:
    prog, _ = build(tmp_path, 64)
    with stopped_at_syscall([prog], lambda r: r.orig_rax == MMAP_X86_64 and r.rsi == RAW_LEN) as stop:
        caller = attribute(stop)
        rip = stop.regs.rip
    assert caller.addr == rip
    assert caller.object == os.path.realpath(prog)
    assert caller.symbol == "tw_raw_mmap"


def test_i386_program_through_the_vdso_is_attributed_to_the_library(tmp_path: Path) -> None:
    probe = subprocess.run(
        ["gcc", "-m32", "-x", "c", "-o", str(tmp_path / "probe"), "-"],
        input="int main(void){return 0;}",
        capture_output=True,
        text=True,
    )
    if probe.returncode != 0:
        pytest.skip(f"gcc -m32 cannot link (gcc-multilib missing): {probe.stderr.strip()}")
    prog, lib = build(tmp_path, 32)
    # i386 mmap2 takes its length in ecx.
    with stopped_at_syscall([prog], lambda r: r.orig_rax == MMAP2_I386 and r.rcx == LIB_LEN) as stop:
        maps = procfs.read_maps(stop.pid)
        ip_region = next(m for m in maps if m.start <= stop.regs.rip < m.end)
        caller = attribute(stop)
    assert ip_region.path in ("[vdso]", *(m.path for m in maps if is_libc(m.path)))
    assert caller.object == lib
    assert caller.symbol == "tw_map_region"


def test_ctypes_callback_mmap_is_attributed_to_libffi() -> None:
    script = "import ctypes; f = ctypes.CFUNCTYPE(ctypes.c_int)(lambda: 0)"
    rwx = 7
    with stopped_at_syscall(
        [sys.executable, "-c", script], lambda r: r.orig_rax == MMAP_X86_64 and r.rdx == rwx
    ) as stop:
        caller = attribute(stop)
    assert caller.object is not None
    assert os.path.basename(caller.object).startswith("libffi.so.8"), caller
    # libffi's allocator (dlmmap) is a static function: the stripped library
    # has no symbol for it, and a neighbouring export must not be named.
    assert caller.symbol in (None, "ffi_closure_alloc"), caller


def _own_maps() -> tuple[MapEntry, ...]:
    return procfs.read_maps(os.getpid())


def test_anonymous_executable_ip_is_named_anon() -> None:
    region = MapEntry(0x10000, 0x11000, 7, False, 0, 0, 0, "")
    caller = Attributor().caller(0x10010, b"", 0x7FF000, (*_own_maps(), region))
    assert caller == Caller(0x10010, "[anon]", None, 0x10)


def test_ip_in_no_mapping_has_no_object() -> None:
    assert Attributor().caller(0x10, b"", 0, _own_maps()) == Caller(0x10, None, None, 0)


def test_stack_words_that_are_not_return_addresses_are_skipped() -> None:
    """A word pointing at the start of a function (not after a call) must not
    be taken as the caller: the result falls back to libc with no symbol."""
    maps = _own_maps()
    libc_text = next(m for m in maps if is_libc(m.path) and m.prot & 4)
    python_text = next(m for m in maps if m.prot & 4 and m.path and not is_libc(m.path) and m.path[0] == "/")
    # The first byte of a text mapping follows no instruction of that mapping.
    stack = python_text.start.to_bytes(8, "little") + (12345).to_bytes(8, "little")
    caller = Attributor().caller(libc_text.start + 16, stack, 0x7FFF0000, maps)
    assert caller.object == libc_text.path
    assert caller.symbol is None
    assert caller.offset == 16 + libc_text.offset


@pytest.mark.parametrize(
    ("path", "libc", "loader"),
    [
        ("/usr/lib/x86_64-linux-gnu/libc.so.6", True, False),
        ("/lib/i386-linux-gnu/libc-2.31.so", True, False),
        ("/lib/ld-musl-x86_64.so.1", True, False),
        ("/usr/lib/x86_64-linux-gnu/libc.so.6 (deleted)", True, False),
        ("/lib64/ld-linux-x86-64.so.2", False, True),
        ("/lib/ld-linux.so.2", False, True),
        ("/usr/lib/x86_64-linux-gnu/libcap.so.2", False, False),
        ("/usr/lib/x86_64-linux-gnu/libcrypt.so.1", False, False),
        ("/opt/libc.so.6.bak", False, False),
    ],
)
def test_libc_and_loader_names(path: str, libc: bool, loader: bool) -> None:
    assert is_libc(path) is libc
    assert is_loader(path) is loader


def test_a_file_replaced_on_disk_is_not_symbolized() -> None:
    """The maps' inode guards the lookup: when the file at the path is no
    longer the one mapped, its symbols would be wrong, so none are given."""
    ip = ctypes.cast(ctypes.pythonapi.Py_IsInitialized, ctypes.c_void_p).value
    assert ip is not None
    maps = _own_maps()
    region = next(m for m in maps if m.start <= ip < m.end)
    if is_libc(region.path) or not region.path.startswith("/"):
        pytest.skip(f"Py_IsInitialized is not in a plain file mapping here ({region.path!r})")
    assert Attributor().caller(ip, b"", 0, maps) == Caller(ip, region.path, "Py_IsInitialized", 0)
    replaced = tuple(m._replace(inode=m.inode + 1) if m.path == region.path else m for m in maps)
    caller = Attributor().caller(ip, b"", 0, replaced)
    assert caller == Caller(ip, region.path, None, ip - region.start + region.offset)


def _capstone_says_call(code: bytes, bits: int) -> bool:
    """What the Attributor decided from capstone alone: some instruction of
    one of the call lengths ends exactly at the end of `code` and is a near call."""
    import capstone

    from tracer.attribution import _CALL_LENGTHS, _is_call

    cs = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_32 if bits == 32 else capstone.CS_MODE_64)
    cs.detail = True
    for length in _CALL_LENGTHS:
        if length <= len(code):
            insn = next(cs.disasm(code[-length:], 0x1000, 1), None)
            if insn is not None and insn.size == length and _is_call(insn):
                return True
    return False


@pytest.mark.parametrize("bits", [32, 64])
def test_plain_call_encodings_agree_with_capstone(bits: int) -> None:
    """The shortcut that spares capstone's import says `call` only where
    capstone says it too, and it finds the three encodings it claims."""
    import random

    from tracer.attribution import _plain_call_ends

    rng = random.Random(13)
    tails = [b"\xe8\x10\x20\x30\x40", b"\xff\x15\x00\x10\x00\x00",
             *(bytes([0xFF, 0xD0 + r]) for r in range(8))]
    samples = [bytes(rng.randrange(256) for _ in range(8)) for _ in range(20000)]
    samples += [bytes(rng.randrange(256) for _ in range(8 - len(t))) + t for t in tails for _ in range(200)]
    # Near misses: the same opcodes with another ModRM (ff /3 is a far call, ff /4 a jump).
    samples += [b"\x90\x90" + bytes([0xFF, modrm]) + b"\x00\x00\x00\x00" for modrm in range(256)]
    samples += [b"\x90" * 6 + bytes([0xFF, modrm]) for modrm in range(256)]
    shortcut = [code for code in samples if _plain_call_ends(code)]
    assert len(shortcut) > 2000
    for code in shortcut:
        assert _capstone_says_call(code, bits), (code.hex(), bits)
    for tail in tails:
        assert _plain_call_ends(b"\x90" * 8 + tail)
    assert not _plain_call_ends(b"\x90" * 6 + b"\xff\xd8")  # ff /3: a far call through memory
    assert not _plain_call_ends(b"\x90" * 8 + b"\xff\xe0")  # ff /4: jmp rax


def test_a_direct_call_site_is_found_without_capstone(tmp_path: Path) -> None:
    """A caller reached by e8 rel32 (what gcc emits for a call through the
    PLT) is named with no disassembler loaded: the tracer skips capstone's
    import for it."""
    prog, _ = build(tmp_path, 64)
    with stopped_at_syscall([prog], lambda r: r.orig_rax == MMAP_X86_64 and r.rsi == LIB_LEN) as stop:
        attributor = Attributor()
        caller = attribute(stop, attributor)
    assert caller.symbol == "tw_map_region"
    assert not attributor._disassemblers
