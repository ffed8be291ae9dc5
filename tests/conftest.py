"""Shared test fixtures: build the C test programs, parse their line protocol.

Fixtures:
  build_program  -- session-scoped; ``build_program("wx_map") -> Path`` compiles
                    tests/programs/wx_map.c into tests/programs/bin/ when stale.
  parse_output   -- ``parse_output(stdout_text) -> ProgramOutput``.

The protocol the programs speak is described in tests/programs/README.md.
"""

from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

PROGRAMS_DIR = Path(__file__).resolve().parent / "programs"
BIN_DIR = PROGRAMS_DIR / "bin"

BASE_CFLAGS = ("-O1", "-g", "-Wall", "-Wextra")


@dataclass(frozen=True)
class Build:
    """How one program is built beyond BASE_CFLAGS.

    flags: gcc arguments placed after the source (so libraries link).
    m32: build an i386 binary (needs gcc-multilib; the test skips without it).
    drop_gnu_stack: turn the PT_GNU_STACK program header into PT_NULL after
        linking -- GNU ld cannot omit it, and its absence is the point.
    needs: other programs this one executes, built alongside it.
    source: the C file's stem when it is not the program's name (one source,
        several builds).
    rwx_load: after linking, make every writable PT_LOAD segment executable
        too (an RWX segment the kernel's loader maps W+X).
    rwx_interp: link against a copy of the dynamic loader whose writable
        PT_LOAD segment was made executable (bin/ld-rwx.so.2).
    """

    flags: tuple[str, ...] = ()
    m32: bool = False
    drop_gnu_stack: bool = False
    needs: tuple[str, ...] = ()
    source: str | None = None
    rwx_load: bool = False
    rwx_interp: bool = False


# The one table of per-program build settings; a program not listed uses Build().
BUILDS: dict[str, Build] = {
    "attack_fuse": Build(flags=("-pthread",)),
    "attack_slow_open": Build(flags=("-pthread",)),
    "attack_late_exec": Build(flags=("-pthread",)),
    "attack_recv_race": Build(flags=("-pthread",)),
    "attack_recv_routes": Build(flags=("-pthread",)),
    "recv_semantics": Build(flags=("-pthread",)),
    "attack_uffd_stall": Build(flags=("-pthread",)),
    "attack_attach_thread_table": Build(flags=("-pthread",)),
    "attack_attach_clone_race": Build(flags=("-pthread",)),
    "attack_attach_exec": Build(flags=("-pthread",)),
    "attack_attach_siginfo": Build(flags=("-pthread",)),
    "attack_attach_stop": Build(flags=("-pthread",)),
    "attack_old_mmap": Build(flags=("-pthread",)),
    "attack_ipc_shmat": Build(m32=True, flags=("-pthread",)),
    "attack_ipc_shmat_remap": Build(flags=("-pthread",)),
    "attack_exit_window": Build(flags=("-pthread",)),
    "attack_seccomp_undo": Build(flags=("-pthread",)),
    "attack_stack_peek": Build(flags=("-pthread",)),
    "attack_fork_exec_orphan": Build(flags=("-pthread",)),
    "attack_exec_fd_leak": Build(flags=("-pthread",)),
    "attack_exec_drain": Build(flags=("-pthread",)),
    # The interpreter attack_fuse_exec serves with a VICTIM (no libc), and the clean
    # program whose PT_INTERP names where it serves it.
    "interp0_payload": Build(flags=("-static", "-nostdlib", "-fno-stack-protector", "-fno-builtin",
                                    "-fno-tree-loop-distribute-patterns")),
    "interp0_victim": Build(flags=("-Wl,--dynamic-linker=/tmp/tw_interp0/ld",)),
    "attack_ro_swap": Build(flags=("-pthread",)),
    "benign_dlopen": Build(flags=("-ldl",)),
    "benign_relro": Build(flags=("-Wl,-z,relro,-z,now",)),
    "benign_threads": Build(flags=("-pthread",)),
    "short_threads": Build(flags=("-pthread",)),
    "flip_disturb": Build(flags=("-pthread",)),
    "dlopen_execstack": Build(flags=("-ldl",), needs=("execstack_lib",)),
    "execstack": Build(flags=("-Wl,-z,execstack", "-Wl,--no-warn-execstack")),
    # A library, not a program: dlopen_execstack loads it.
    "execstack_lib": Build(flags=("-shared", "-fPIC", "-Wl,-z,execstack", "-Wl,--no-warn-execstack")),
    "fork_tree": Build(needs=("wx_map",)),
    "int80_clone": Build(flags=("-pthread",)),
    "m32_threads": Build(m32=True, flags=("-pthread",)),
    "exit_race": Build(flags=("-pthread",)),
    "mem_race": Build(flags=("-pthread",)),
    "wx_segment_static": Build(source="wx_segment", flags=("-static",), rwx_load=True),
    "wx_segment_dynamic": Build(source="wx_segment", rwx_load=True),
    "wx_segment_interp": Build(source="wx_segment", rwx_interp=True),
    "attack_attach_wx": Build(flags=("-static",), rwx_load=True),
    "i386_noheader": Build(m32=True, drop_gnu_stack=True),
    # x86-64 exec clears READ_IMPLIES_EXEC; an i386 image keeps an inherited one.
    "rie_reexec": Build(m32=True),
    "thread_second": Build(flags=("-pthread",)),
    "thread_persona": Build(flags=("-pthread",)),
    "zombie_leader": Build(flags=("-pthread",)),
    "procmem_routes": Build(flags=("-pthread",)),
    "opaque_routes": Build(flags=("-pthread",)),
    "threads_flood": Build(flags=("-pthread",)),
    # run --closures (tests/test_closures.py): closure users, 64- and 32-bit.
    "closures_nested": Build(source="closures/nested", flags=("-pthread",)),
    "closures_nested32": Build(source="closures/nested", m32=True, flags=("-pthread",)),
    "closures_ffi_closures": Build(source="closures/ffi_closures", flags=("-pthread", "-lffi")),
    "closures_ffi_closures32": Build(source="closures/ffi_closures", m32=True, flags=("-pthread", "-lffi")),
    "closures_old_mmap_closure32": Build(source="closures/old_mmap_closure", m32=True,
                                         flags=("-pthread", "-lffi")),
    "closures_prep_variants": Build(source="closures/prep_variants",
                                    flags=("-Wno-deprecated-declarations", "-lffi")),
    "closures_retry_loop": Build(source="closures/retry_loop", flags=("-lffi",)),
    "closures_jit_retry": Build(source="closures/jit_retry"),
    # The same address rewritten, made non-executable, remapped, across exec (-no-pie: same bytes after).
    "closures_stale_tramp": Build(source="closures/stale_tramp", flags=("-no-pie",)),
    # Read-only memory moved by mremap(MREMAP_FIXED) over a granted trampoline.
    "closures_remap_into_grant": Build(source="closures/remap_into_grant", flags=("-no-pie",)),
    # Granted memory replaced by shmat(SHM_REMAP), and a granted heap given back by brk.
    "closures_replace_grant": Build(source="closures/replace_grant", flags=("-no-pie",)),
    # The trampolines as GCC writes them with and without CET's endbr.
    "closures_tramp_bytes": Build(source="closures/tramp_bytes", flags=("-lffi",)),
    "closures_tramp_bytes_nocet": Build(source="closures/tramp_bytes",
                                        flags=("-fcf-protection=none", "-lffi")),
    "closures_tramp_bytes_cet": Build(source="closures/tramp_bytes", flags=("-fcf-protection", "-lffi")),
    "closures_tramp_bytes32": Build(source="closures/tramp_bytes", m32=True, flags=("-lffi",)),
    "closures_tramp_bytes32_cet": Build(source="closures/tramp_bytes", m32=True,
                                        flags=("-fcf-protection", "-lffi")),
}

PT_NULL = 0
PT_LOAD = 1
PT_GNU_STACK = 0x6474E551
PF_X, PF_W = 0x1, 0x2
RWX_INTERP = BIN_DIR / "ld-rwx.so.2"
SYSTEM_INTERP = Path("/lib64/ld-linux-x86-64.so.2")


def _program_headers(data: bytes | bytearray) -> list[int]:
    """Offsets of the program headers of a little-endian ELF file."""
    if data[:4] != b"\x7fELF" or data[5] != 1:
        raise ValueError("not a little-endian ELF file")
    if data[4] == 1:  # ELFCLASS32
        phoff, (phentsize, phnum) = struct.unpack_from("<I", data, 28)[0], struct.unpack_from("<HH", data, 42)
    else:
        phoff, (phentsize, phnum) = struct.unpack_from("<Q", data, 32)[0], struct.unpack_from("<HH", data, 54)
    return [phoff + index * phentsize for index in range(phnum)]


def make_writable_segments_executable(path: Path) -> None:
    """Add PF_X to every writable PT_LOAD segment of the ELF at path (p_flags
    sits at offset 4 in a 64-bit header, 24 in a 32-bit one).
    Raises ValueError if path is not an ELF file or has no writable segment."""
    data = bytearray(path.read_bytes())
    flags_at = 24 if data[4] == 1 else 4
    changed = 0
    for offset in _program_headers(data):
        kind = struct.unpack_from("<I", data, offset)[0]
        flags = struct.unpack_from("<I", data, offset + flags_at)[0]
        if kind == PT_LOAD and flags & PF_W:
            struct.pack_into("<I", data, offset + flags_at, flags | PF_X)
            changed += 1
    if not changed:
        raise ValueError(f"{path}: has no writable PT_LOAD segment")
    path.write_bytes(bytes(data))


def drop_gnu_stack(path: Path) -> None:
    """Rewrite every PT_GNU_STACK program header of the ELF at path to PT_NULL.

    Raises ValueError if path is not a little-endian ELF or has no such header.
    """
    data = bytearray(path.read_bytes())
    if data[:4] != b"\x7fELF" or data[5] != 1:
        raise ValueError(f"{path}: not a little-endian ELF file")
    if data[4] == 1:  # ELFCLASS32
        phoff, phentsize, phnum = (
            struct.unpack_from("<I", data, 28)[0],
            *struct.unpack_from("<HH", data, 42),
        )
    else:
        phoff, phentsize, phnum = (
            struct.unpack_from("<Q", data, 32)[0],
            *struct.unpack_from("<HH", data, 54),
        )
    dropped = 0
    for index in range(phnum):
        offset = phoff + index * phentsize
        if struct.unpack_from("<I", data, offset)[0] == PT_GNU_STACK:
            struct.pack_into("<I", data, offset, PT_NULL)
            dropped += 1
    if not dropped:
        raise ValueError(f"{path}: has no PT_GNU_STACK header to drop")
    path.write_bytes(bytes(data))


# How long after a build its program may start: `attach` counts a file
# changed since the process it attaches to started as one the process may
# have written (exec-written), and can tell that start to a coarse clock
# tick (4 ms at HZ=250; two USER_HZ ticks, 20 ms, where taskstats is off).
_BUILD_SETTLE_NS = 25_000_000


def _settle(binary: Path) -> None:
    """Wait until `binary`'s change time is _BUILD_SETTLE_NS in the past, so
    a process started from it now is not taken for its writer."""
    settled = binary.stat().st_ctime_ns + _BUILD_SETTLE_NS
    while (now := time.clock_gettime_ns(time.CLOCK_REALTIME)) < settled:
        time.sleep((settled - now) / 1e9)


class ProgramBuilder:
    """Compiles test programs on demand, at most once per session each."""

    def __init__(self, gcc: str) -> None:
        self._gcc = gcc
        self._built: dict[str, Path] = {}
        self._m32_problem: str | None = None
        self._m32_probed = False

    def __call__(self, name: str) -> Path:
        """Return the path of the built program `name`, compiling it if stale.

        Fails the test on a compile error; skips it for -m32 programs when
        the compiler cannot build i386 binaries (multilib missing).
        """
        if name in self._built:
            return self._built[name]
        build = BUILDS.get(name, Build())
        source = PROGRAMS_DIR / f"{build.source or name}.c"
        if not source.is_file():
            pytest.fail(f"no test program named {name!r}: {source} does not exist")
        for needed in build.needs:
            self(needed)
        if build.m32:
            problem = self._m32_unavailable()
            if problem:
                pytest.skip(f"gcc -m32 cannot build i386 programs (gcc-multilib missing?): {problem}")
        binary = BIN_DIR / name
        if self._stale(source, binary):
            self._compile(name, source, build, binary)
        self._built[name] = binary
        return binary

    @staticmethod
    def _stale(source: Path, binary: Path) -> bool:
        if not binary.exists():
            return True
        # conftest.py holds the flags table, so a flag change rebuilds too;
        # any shared header (common.h, tw_fuse.h) may be included.
        inputs = (source, *PROGRAMS_DIR.glob("*.h"), Path(__file__))
        return binary.stat().st_mtime < max(p.stat().st_mtime for p in inputs)

    def _compile(self, name: str, source: Path, build: Build, binary: Path) -> None:
        BIN_DIR.mkdir(parents=True, exist_ok=True)
        # Build beside the target and rename into place: other sessions may
        # run the same binary while this one rebuilds it.
        fd, tmp_name = tempfile.mkstemp(dir=BIN_DIR, prefix=f".{name}.")
        os.close(fd)
        tmp = Path(tmp_name)
        try:
            arch = ("-m32",) if build.m32 else ()
            interp = (f"-Wl,--dynamic-linker={self._rwx_interp()}",) if build.rwx_interp else ()
            cmd = [self._gcc, *BASE_CFLAGS, *arch, "-o", str(tmp), str(source), *build.flags, *interp]
            result = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if result.returncode != 0:
                pytest.fail(f"building {name} failed ({' '.join(cmd)}):\n{result.stderr}", pytrace=False)
            if build.drop_gnu_stack:
                drop_gnu_stack(tmp)
            if build.rwx_load:
                make_writable_segments_executable(tmp)
            tmp.chmod(0o755)
            tmp.replace(binary)
        finally:
            tmp.unlink(missing_ok=True)
        _settle(binary)

    @staticmethod
    def _rwx_interp() -> Path:
        """A copy of the system's dynamic loader with an RWX data segment."""
        if not RWX_INTERP.exists() or RWX_INTERP.stat().st_mtime < Path(__file__).stat().st_mtime:
            BIN_DIR.mkdir(parents=True, exist_ok=True)
            fd, tmp_name = tempfile.mkstemp(dir=BIN_DIR, prefix=".ld-rwx.")
            os.close(fd)
            tmp = Path(tmp_name)
            shutil.copyfile(SYSTEM_INTERP, tmp)
            make_writable_segments_executable(tmp)
            tmp.chmod(0o755)
            tmp.replace(RWX_INTERP)
        return RWX_INTERP

    def _m32_unavailable(self) -> str | None:
        """Return why gcc cannot link an i386 program, or None if it can."""
        if not self._m32_probed:
            self._m32_probed = True
            with tempfile.TemporaryDirectory() as tmp:
                probe = Path(tmp) / "probe.c"
                probe.write_text("int main(void) { return 0; }\n")
                result = subprocess.run(
                    [self._gcc, "-m32", "-o", str(Path(tmp) / "probe"), str(probe)],
                    capture_output=True,
                    text=True,
                    check=False,
                )
            if result.returncode != 0:
                self._m32_problem = result.stderr.strip() or f"gcc exited {result.returncode}"
        return self._m32_problem


@pytest.fixture(scope="session")
def build_program() -> ProgramBuilder:
    """Return the session's program builder: ``build_program(name) -> Path``.

    Fails (does not skip) when gcc is missing: scripts/setup installs it.
    """
    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.fail("gcc is not on PATH; the C test programs need it (run scripts/setup)", pytrace=False)
    return ProgramBuilder(gcc)


# --- the line protocol -------------------------------------------------------


@dataclass(frozen=True)
class Step:
    """One attempted call: ``STEP <label> <syscall> rc=<rc> errno=<name>``."""

    label: str
    syscall: str
    rc: int
    errno: str

    @property
    def ok(self) -> bool:
        """True when the call succeeded (errno is reported as 0)."""
        return self.errno == "0"


@dataclass(frozen=True)
class MapsLine:
    """A /proc/self/maps line the program printed: ``MAPS <label> <start>-<end> <perms> <path>``."""

    start: int
    end: int
    perms: str
    path: str

    @property
    def executable(self) -> bool:
        """True when the region's permissions include x."""
        return self.perms[2] == "x"


@dataclass
class ProgramOutput:
    """Everything a program reported, by label."""

    steps: dict[str, Step] = field(default_factory=dict)
    ran: list[str] = field(default_factory=list)
    maps: dict[str, MapsLine | None] = field(default_factory=dict)
    children: dict[str, str] = field(default_factory=dict)
    count: int | None = None
    ready: int | None = None
    done: int = 0

    def failed(self) -> dict[str, str]:
        """Return {label: errno name} for every step that failed."""
        return {label: s.errno for label, s in self.steps.items() if not s.ok}


_STEP = re.compile(r"STEP (\S+) (\S+) rc=(-?\d+|0x[0-9a-f]+) errno=(0|E[A-Z0-9]+)")
_MAPS = re.compile(r"MAPS (\S+) (?:([0-9a-f]+)-([0-9a-f]+) (\S{4}) (\S+)|(unmapped))")
_CHILD = re.compile(r"CHILD (\S+) ((?:exit=\d+)|(?:signal=SIG[A-Z0-9]+))")
_RAN = re.compile(r"RAN (\S+)")
_COUNT = re.compile(r"COUNT (\d+)")
_READY = re.compile(r"READY (\d+)")


def _claim(seen: set[str], label: str, line: str) -> None:
    if label in seen:
        raise ValueError(f"label {label!r} reported twice: {line!r}")
    seen.add(label)


def parse_program_output(text: str) -> ProgramOutput:
    """Parse a test program's stdout into a ProgramOutput.

    Raises ValueError on a line outside the protocol (including BADRET, which
    a program prints when its code ran but returned the wrong value), on a
    label reported twice, or on more than one COUNT.
    """
    out = ProgramOutput()
    step_labels: set[str] = set()
    other_labels: set[str] = set()
    for line in text.splitlines():
        if m := _STEP.fullmatch(line):
            label, syscall, rc, err = m.groups()
            _claim(step_labels, label, line)
            out.steps[label] = Step(label, syscall, int(rc, 0), err)
        elif m := _RAN.fullmatch(line):
            _claim(other_labels, "RAN " + m[1], line)
            out.ran.append(m[1])
        elif m := _MAPS.fullmatch(line):
            _claim(other_labels, "MAPS " + m[1], line)
            unmapped = m[6] is not None
            out.maps[m[1]] = None if unmapped else MapsLine(int(m[2], 16), int(m[3], 16), m[4], m[5])
        elif m := _CHILD.fullmatch(line):
            _claim(other_labels, "CHILD " + m[1], line)
            out.children[m[1]] = m[2]
        elif m := _COUNT.fullmatch(line):
            if out.count is not None:
                raise ValueError(f"COUNT reported twice: {line!r}")
            out.count = int(m[1])
        elif m := _READY.fullmatch(line):
            out.ready = int(m[1])
        elif line == "DONE":
            out.done += 1
        else:
            raise ValueError(f"line outside the test program protocol: {line!r}")
    return out


@pytest.fixture(scope="session")
def parse_output() -> Callable[[str], ProgramOutput]:
    """Return parse_program_output: ``parse_output(stdout_text) -> ProgramOutput``."""
    return parse_program_output


# --- markers (registered in pyproject.toml) ------------------------------------------


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Loading BPF programs needs root: every `ebpf` test is a `root` test too."""
    for item in items:
        if item.get_closest_marker("ebpf") and not item.get_closest_marker("root"):
            item.add_marker(pytest.mark.root)


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Skip `root` tests, saying why, when the suite does not run as root."""
    if item.get_closest_marker("root") and os.geteuid() != 0:
        pytest.skip("needs root (BPF programs, tracing processes the test did not start): run as root")
