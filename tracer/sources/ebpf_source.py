"""The eBPF source: memory syscalls, execs, forks and exits of a whole host,
from kernel tracepoints, through bcc. This is the one module that imports
`bcc`.

The kernel side lives in tracer/bpf/ (wx_monitor.bpf.c, the record layout in
wx_record.h). It filters in the kernel -- only selected processes, only calls
that can matter for W^X -- pairs each call's entry with its exit, and sends
one record per call; this module turns records into tracer.events values.
Deny rules the kernel can express statelessly (KillRule) are applied at
syscall entry with bpf_send_signal(SIGKILL). docs/monitor.md says what is
filtered, what is exact, and what is best effort.
"""

from __future__ import annotations

import contextlib
import ctypes
import enum
import errno
import os
import platform
import re
import struct
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tracer import abi
from tracer.categories import Category
from tracer.elf import ElfCache, ElfError
from tracer.errors import CapabilityMissing, NoSuchProcess, TraceError, TrampwatchError
from tracer.events import (
    AttachEvent,
    Event,
    ExecEvent,
    ExitEvent,
    FdObject,
    ForkEvent,
    KernelKill,
    MapEntry,
    MemCall,
    MemReturn,
    ProcessInfo,
    RecordsLost,
)
from tracer.resources import package_path
from tracer.sources import procfs

BPF_DIR = package_path("bpf")
RECORD_HEADER = BPF_DIR / "wx_record.h"
MONITOR_PROGRAM = BPF_DIR / "wx_monitor.bpf.c"

BTF_PATH = Path("/sys/kernel/btf/vmlinux")
TRACEFS_CANDIDATES = (Path("/sys/kernel/tracing"), Path("/sys/kernel/debug/tracing"))

# Entries of the per-process kernel maps (a build-time knob).
MAX_PROCS = 16384

# The thread_info status bit the x86 kernel sets during an i386 syscall
# (arch/x86/include/asm/thread_info.h); BTF has no macros, so it is stated here.
TS_COMPAT = 0x0002

# --- the Python view of wx_record.h (checked against the C layout by a test) ---

COMM_LEN = 16
PATH_LEN = 256
NAME_LEN = 48
MAX_KILL_RULES = 16


class Kind(enum.IntEnum):
    """enum wx_kind: what a record reports."""

    SYSCALL = 1
    EXEC = 2
    FORK = 3
    EXIT = 4


class Sys(enum.IntEnum):
    """enum wx_sys: a syscall family, however an ABI spells it."""

    NONE = 0
    MMAP = 1
    MPROTECT = 2
    PKEY_MPROTECT = 3
    MREMAP = 4
    MUNMAP = 5
    BRK = 6
    SHMAT = 7
    SHMDT = 8
    MEMFD_CREATE = 9
    PERSONALITY = 10


class RecordFlag(enum.IntFlag):
    """WX_F_* bits of wx_record.flags."""

    KILLED = 0x1
    ARGS_FAULT = 0x2
    THREAD = 0x4
    SHARES_VM = 0x8
    GROUP_DEAD = 0x10
    OBJECT = 0x20


# The flags every syscall record is tested for, as plain ints: IntFlag
# arithmetic made up ~40% of decoding a record.
_KILLED = int(RecordFlag.KILLED)
_OBJECT = int(RecordFlag.OBJECT)


class Filter(enum.IntFlag):
    """WX_FILTER_* bits of wx_config.filters."""

    PIDS = 0x1
    COMMS = 0x2
    CGROUPS = 0x4


class LostSlot(enum.IntEnum):
    """enum wx_lost: why a record was dropped (slots of the `lost` map)."""

    RINGBUF = 0
    PENDING = 1


class Record(ctypes.Structure):
    """struct wx_record: the part every record starts with."""

    _fields_ = (
        ("ts", ctypes.c_uint64),
        ("args", ctypes.c_uint64 * 6),
        ("ret", ctypes.c_int64),
        ("kind", ctypes.c_uint32),
        ("tgid", ctypes.c_uint32),
        ("tid", ctypes.c_uint32),
        ("arch", ctypes.c_uint32),
        ("nr", ctypes.c_int32),
        ("flags", ctypes.c_uint32),
        ("personality", ctypes.c_uint32),
        ("kill_rule", ctypes.c_uint32),
    )


class ObjectRecord(ctypes.Structure):
    """struct wx_object_record: a syscall record with WX_F_OBJECT."""

    _fields_ = (
        ("rec", Record),
        ("obj_ino", ctypes.c_uint64),
        ("obj_dev", ctypes.c_uint32),
        ("obj_nlink", ctypes.c_uint32),
        ("obj_name", ctypes.c_char * NAME_LEN),
    )


class ExecRecord(ctypes.Structure):
    """struct wx_exec_record."""

    _fields_ = (
        ("rec", Record),
        ("uid", ctypes.c_uint32),
        ("comm", ctypes.c_char * COMM_LEN),
        ("filename", ctypes.c_char * PATH_LEN),
    )


# The syscall names a kill rule may use, by family (i386's mmap2 and ipc fold in).
KILL_SYSCALLS: dict[str, Sys] = {
    "mmap": Sys.MMAP,
    "mmap2": Sys.MMAP,
    "mprotect": Sys.MPROTECT,
    "pkey_mprotect": Sys.PKEY_MPROTECT,
    "mremap": Sys.MREMAP,
    "munmap": Sys.MUNMAP,
    "brk": Sys.BRK,
    "shmat": Sys.SHMAT,
    "shmdt": Sys.SHMDT,
    "memfd_create": Sys.MEMFD_CREATE,
    "personality": Sys.PERSONALITY,
}

_WX = int(abi.Prot.WRITE | abi.Prot.EXEC)
_X = int(abi.Prot.EXEC)


# --- configuration ----------------------------------------------------------------


@dataclass(frozen=True)
class KillRule:
    """A deny rule the kernel applies at syscall entry with SIGKILL.

    It fires when a call of `syscall` (a name from KILL_SYSCALLS) requests
    every PROT bit of `prot_all` and every bit of `flags_all`, and none of
    `flags_none`. The requested prot is the call's prot after
    READ_IMPLIES_EXEC for mmap/mprotect/pkey_mprotect; for shmat it is read,
    write unless SHM_RDONLY, exec with SHM_EXEC; for a brk that moves the
    break read+write, plus exec under READ_IMPLIES_EXEC; exec for a
    personality() that sets READ_IMPLIES_EXEC. `flags` are mmap's flags,
    mremap's flags, shmat's shmflg or memfd_create's flags. `rule` names the
    policy rule, reported back in KernelKill. Raises TrampwatchError for a
    syscall the kernel side does not see.
    """

    rule: str
    syscall: str
    prot_all: int = 0
    flags_all: int = 0
    flags_none: int = 0

    def __post_init__(self) -> None:
        if self.syscall not in KILL_SYSCALLS:
            known = ", ".join(sorted(KILL_SYSCALLS))
            raise TrampwatchError(
                f"kill rule {self.rule!r}: the kernel cannot stop syscall {self.syscall!r} (it can: {known})"
            )
        if self.prot_all & ~int(abi.PROT_MASK):
            raise TrampwatchError(f"kill rule {self.rule!r}: prot_all {self.prot_all:#x} has non-PROT bits")


@dataclass(frozen=True)
class KillCoverage:
    """How far the kernel can enforce one category: the rules, whether they
    stop exactly the calls the classifier puts in it (`exact`), and what
    differs (`note`)."""

    rules: tuple[KillRule, ...]
    exact: bool
    note: str


def kill_rules_for(category: Category, rule: str) -> KillCoverage | None:
    """Return the kernel kill rules for a deny/kill policy rule named `rule`
    that matches `category` (and nothing narrower), or None when no
    stateless syscall-entry check can express the category."""
    if category is Category.WX_MAP:
        return KillCoverage(
            (KillRule(rule, "mmap", _WX), KillRule(rule, "shmat", _WX)),
            False,
            "exact for mmap and shmat asking for write+exec (after READ_IMPLIES_EXEC); "
            "an mremap that moves an existing W+X region is not stopped",
        )
    if category is Category.WX_PROTECT:
        return KillCoverage(
            (KillRule(rule, "mprotect", _WX), KillRule(rule, "pkey_mprotect", _WX)),
            True,
            "exact: mprotect/pkey_mprotect asking for write+exec",
        )
    if category is Category.SHM_EXEC:
        return KillCoverage((KillRule(rule, "shmat", _X),), True, "exact: shmat with SHM_EXEC")
    if category is Category.READ_IMPLIES_EXEC:
        return KillCoverage(
            (KillRule(rule, "personality", _X),),
            False,
            "exact for personality() setting READ_IMPLIES_EXEC; the persona the kernel "
            "gives an old binary at exec involves no syscall and is not stopped",
        )
    if category is Category.ANON_EXEC:
        return KillCoverage(
            (KillRule(rule, "mmap", _X, flags_all=abi.MAP_ANONYMOUS),),
            False,
            "exact for anonymous mmap asking for exec; mprotect making an anonymous "
            "region executable is not stopped (the kernel side does not know regions)",
        )
    if category is Category.W_TO_X:
        return KillCoverage(
            (KillRule(rule, "mprotect", _X), KillRule(rule, "pkey_mprotect", _X)),
            False,
            "over-approximation (systemd MemoryDenyWriteExecute's): every mprotect asking "
            "for exec is stopped, also of regions that were never writable",
        )
    if category is Category.EXECHEAP:
        return KillCoverage(
            (KillRule(rule, "brk", _X),),
            False,
            "brk moving the break under READ_IMPLIES_EXEC (also when it shrinks the heap); "
            "mprotect of the heap is not stopped",
        )
    return None


@dataclass(frozen=True)
class EbpfConfig:
    """What `EbpfSource` watches and enforces.

    `pids` (with their descendants), `comms` and `cgroups` select processes:
    every non-empty set must match, all empty selects every process.
    `cgroups` are cgroup v2 directories, absolute or relative to the cgroup2
    mount. `buffer_pages` is the ring buffer's size in pages, a power of two.
    `kill_rules` are sent SIGKILL at entry when `enforce` is true.
    """

    pids: tuple[int, ...] = ()
    comms: tuple[str, ...] = ()
    cgroups: tuple[str, ...] = ()
    buffer_pages: int = 1024
    kill_rules: tuple[KillRule, ...] = ()
    enforce: bool = True

    def __post_init__(self) -> None:
        pages = self.buffer_pages
        if pages < 1 or pages & (pages - 1):
            raise TrampwatchError(f"--buffer-pages must be a power of two (1, 2, 4, ...), not {pages}")
        check_kill_rules(self.kill_rules)


def check_kill_rules(rules: tuple[KillRule, ...]) -> None:
    """Raise TrampwatchError when the kernel side cannot hold `rules`."""
    if len(rules) > MAX_KILL_RULES:
        raise TrampwatchError(f"{len(rules)} kill rules: the kernel side holds at most {MAX_KILL_RULES}")


# --- the running kernel's task_struct, from its BTF ----------------------------------

_BTF_MAGIC = 0xEB9F
_BTF_STRUCT, _BTF_UNION = 4, 5
_BTF_MODIFIERS = frozenset({8, 9, 10, 11, 18})  # typedef, volatile, const, restrict, type_tag
# Bytes after the 12-byte header of a type: a fixed trailer, or one entry per member.
_BTF_TRAILER = {1: 4, 3: 12, 14: 4, 17: 4}
_BTF_PER_MEMBER = {4: 12, 5: 12, 6: 8, 13: 8, 15: 12, 19: 12}


# The kernel structure members wx_monitor.bpf.c reads, as the -D name it
# expects and the chain of (struct, member) whose offsets add up to it.
KERNEL_OFFSETS: dict[str, tuple[tuple[str, str], ...]] = {
    "WX_OFF_TASK_PID": (("task_struct", "pid"),),
    "WX_OFF_TASK_TGID": (("task_struct", "tgid"),),
    "WX_OFF_TASK_MM": (("task_struct", "mm"),),
    "WX_OFF_TASK_PERSONALITY": (("task_struct", "personality"),),
    "WX_OFF_TASK_GROUP_LEADER": (("task_struct", "group_leader"),),
    "WX_OFF_TASK_COMM": (("task_struct", "comm"),),
    "WX_OFF_TASK_EXIT_CODE": (("task_struct", "exit_code"),),
    "WX_OFF_TASK_TI_STATUS": (("task_struct", "thread_info"), ("thread_info", "status")),
    "WX_OFF_TASK_FILES": (("task_struct", "files"),),
    "WX_OFF_FILES_FDT": (("files_struct", "fdt"),),
    "WX_OFF_FDT_MAX_FDS": (("fdtable", "max_fds"),),
    "WX_OFF_FDT_FD": (("fdtable", "fd"),),
    "WX_OFF_FILE_INODE": (("file", "f_inode"),),
    "WX_OFF_FILE_DENTRY": (("file", "f_path"), ("path", "dentry")),
    "WX_OFF_DENTRY_NAME": (("dentry", "d_name"), ("qstr", "name")),
    "WX_OFF_INODE_INO": (("inode", "i_ino"),),
    "WX_OFF_INODE_SB": (("inode", "i_sb"),),
    "WX_OFF_INODE_NLINK": (("inode", "i_nlink"),),
    "WX_OFF_SB_DEV": (("super_block", "s_dev"),),
}


class _Btf:
    """Just enough of a BTF blob to find struct member offsets."""

    def __init__(self, data: bytes):
        magic, _version, _flags, hdr_len, type_off, type_len, str_off, str_len = struct.unpack_from(
            "<HBBIIIII", data, 0
        )
        if magic != _BTF_MAGIC:
            raise ValueError(f"bad BTF magic {magic:#x}")
        self._types = data[hdr_len + type_off : hdr_len + type_off + type_len]
        self._strings = data[hdr_len + str_off : hdr_len + str_off + str_len]
        # id -> (kind, name_off, size_or_type, vlen, kind_flag, members_pos); id 0 is void.
        self._index: list[tuple[int, int, int, int, int, int]] = [(0, 0, 0, 0, 0, 0)]
        self._by_name: dict[str, int] = {}
        pos, end = 0, len(self._types)
        while pos < end:
            name_off, info, size_or_type = struct.unpack_from("<III", self._types, pos)
            kind, vlen, kind_flag = (info >> 24) & 0x1F, info & 0xFFFF, info >> 31
            self._index.append((kind, name_off, size_or_type, vlen, kind_flag, pos + 12))
            if kind == _BTF_STRUCT and name_off:
                self._by_name.setdefault(self._name(name_off), len(self._index) - 1)
            pos += 12 + _BTF_TRAILER.get(kind, 0) + _BTF_PER_MEMBER.get(kind, 0) * vlen

    def _name(self, offset: int) -> str:
        return self._strings[offset : self._strings.index(b"\0", offset)].decode()

    def _resolve(self, type_id: int) -> int:
        while self._index[type_id][0] in _BTF_MODIFIERS:
            type_id = self._index[type_id][2]
        return type_id

    def _find(self, type_id: int, member: str) -> int | None:
        _, _, _, vlen, kind_flag, pos = self._index[type_id]
        for i in range(vlen):
            name_off, member_type, offset = struct.unpack_from("<III", self._types, pos + 12 * i)
            bits = offset & 0xFFFFFF if kind_flag else offset
            if name_off and self._name(name_off) == member:
                return bits // 8
            inner = self._resolve(member_type)
            if not name_off and self._index[inner][0] in (_BTF_STRUCT, _BTF_UNION):
                found = self._find(inner, member)
                if found is not None:
                    return bits // 8 + found
        return None

    def offset(self, struct_name: str, member: str) -> int:
        """Return the byte offset of `member` in `struct struct_name`
        (looking into anonymous members). Raises KeyError when absent."""
        type_id = self._by_name.get(struct_name)
        found = None if type_id is None else self._find(type_id, member)
        if found is None:
            raise KeyError(f"struct {struct_name} has no member {member}")
        return found


def kernel_offsets(btf_path: Path = BTF_PATH) -> dict[str, int]:
    """Return every KERNEL_OFFSETS entry's byte offset in the running kernel,
    read from its BTF.

    Raises CapabilityMissing when the BTF is absent or lacks a member.
    """
    try:
        btf = _Btf(btf_path.read_bytes())
        return {
            macro: sum(btf.offset(struct_name, member) for struct_name, member in chain)
            for macro, chain in KERNEL_OFFSETS.items()
        }
    except OSError as err:
        raise CapabilityMissing(
            "kernel BTF",
            f"cannot read {btf_path}: {os.strerror(err.errno or errno.EIO)}",
            "use a kernel built with CONFIG_DEBUG_INFO_BTF=y (every major distribution's is)",
        ) from err
    except (KeyError, ValueError, struct.error) as err:
        raise CapabilityMissing(
            "kernel BTF", f"{btf_path} does not describe the kernel structures as expected: {err}", ""
        ) from err


# --- host checks and loading ------------------------------------------------------


def _bcc() -> Any:
    """Import bcc. Raises CapabilityMissing with the fix when it is missing."""
    try:
        import bcc
    except ImportError as err:
        raise CapabilityMissing(
            "bcc",
            f"the Python module bcc does not import ({err}); {sys.executable} cannot see it",
            "apt-get install python3-bpfcc and make the venv with --system-site-packages "
            "(scripts/setup does both)",
        ) from err
    return bcc


def bcc_location() -> str:
    """Return where the bcc module is imported from. Raises CapabilityMissing."""
    return str(Path(_bcc().__file__).parent)


def tracefs_root() -> Path | None:
    """Return the mounted tracefs directory (the one with events/), or None."""
    return next((p for p in TRACEFS_CANDIDATES if (p / "events").is_dir()), None)


def headers_dir() -> Path:
    """Return /lib/modules/$(uname -r)/build, where bcc looks for kernel headers."""
    return Path("/lib/modules") / platform.release() / "build"


def required_tracepoints() -> list[str]:
    """Return the tracepoints the monitor program attaches to, as paths
    under tracefs's events/ ('sched/sched_process_exec'; a raw tracepoint,
    which names no category, as '*/sys_enter'), read from its source."""
    names: list[str] = []
    for line in MONITOR_PROGRAM.read_text().splitlines():
        if found := re.match(r"TRACEPOINT_PROBE\((\w+), (\w+)\)", line):
            names.append(f"{found[1]}/{found[2]}")
        elif found := re.match(r"RAW_TRACEPOINT_PROBE\((\w+)\)", line):
            names.append(f"*/{found[1]}")
    return names


def _check_host() -> None:
    """Raise CapabilityMissing, with the fix, when tracefs or headers are missing."""
    if tracefs_root() is None:
        raise CapabilityMissing(
            "tracefs",
            "tracefs is not mounted: the tracepoints cannot be found",
            "mount -t tracefs tracefs /sys/kernel/tracing",
        )
    if not headers_dir().is_dir():
        raise CapabilityMissing(
            "kernel headers",
            f"{headers_dir()} does not exist: bcc compiles against the kernel headers",
            "scripts/setup (links it to Debian's linux-headers-amd64), or "
            "apt-get install linux-headers-$(uname -r)",
        )


@contextlib.contextmanager
def _stderr_into(lines: list[str]) -> Iterator[None]:
    """Collect what C code (clang, libbpf) writes to fd 2 into `lines`.

    bcc reports a refused program only as 'Failed to load' on stderr; the
    kernel's reason is there. Other threads' stderr is captured meanwhile too.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            lines.extend(sink.read().decode(errors="replace").splitlines())


def load_program(path: Path, cflags: list[str], what: str) -> Any:
    """Compile, load and attach the BPF C file at `path` with bcc; return the
    bcc.BPF object (call .cleanup() to detach).

    Raises CapabilityMissing naming `what`, with bcc's and the kernel's
    messages, when compiling or loading fails.
    """
    bcc = _bcc()
    messages: list[str] = []
    try:
        with _stderr_into(messages):
            return bcc.BPF(src_file=str(path).encode(), cflags=[f"-I{BPF_DIR}", *cflags])
    except Exception as err:  # bcc raises bare Exception for every failure
        raise CapabilityMissing(what, _load_failure(err, messages), _load_fix(messages)) from err


def _load_failure(err: Exception, messages: list[str]) -> str:
    kernel = [m for m in messages if "error" in m.lower() or "failed" in m.lower() or "bpf:" in m]
    # The verifier's verdict is the line before its "processed N insns" summary.
    verdict = [messages[i - 1] for i, m in enumerate(messages) if m.startswith("processed ") and i]
    detail = "; ".join(dict.fromkeys([*verdict, *kernel[-4:]])) or str(err)
    if any("Operation not permitted" in m for m in messages):
        return f"the kernel refused it: Operation not permitted (EPERM) -- {detail}"
    return detail


def _load_fix(messages: list[str]) -> str:
    if any("Operation not permitted" in m for m in messages):
        return "run as root (CAP_BPF and CAP_PERFMON, or CAP_SYS_ADMIN); see `trampwatch doctor`"
    return "see `trampwatch doctor`"


def try_program(name: str, cflags: tuple[str, ...] = ()) -> tuple[bool, str]:
    """Load and attach tracer/bpf/probe_<name>.bpf.c, then detach it.

    Returns (True, detail) when the kernel accepted it, (False, reason)
    otherwise -- the reason carries the kernel's error (EPERM, ...).
    """
    try:
        bpf = load_program(BPF_DIR / f"probe_{name}.bpf.c", list(cflags), f"probe {name}")
    except CapabilityMissing as err:
        return False, err.reason
    bpf.cleanup()
    return True, "loaded and attached"


# getpgid() of this pid is the probe child's signal to the probe program.
_PROBE_PID = 0x7EADBEEF


def try_send_signal() -> tuple[bool, str]:
    """Check that bpf_send_signal(SIGKILL) from a syscall tracepoint kills a
    process before the syscall returns to user mode: a forked child calls
    getpgid() and would exit 0 if it survived.

    Returns (ok, detail).
    """
    try:
        bpf = load_program(
            BPF_DIR / "probe_send_signal.bpf.c", [f"-DWX_PROBE_PID={_PROBE_PID}"], "bpf_send_signal probe"
        )
    except CapabilityMissing as err:
        return False, err.reason
    try:
        ready_r, ready_w = os.pipe()
        child = os.fork()
        if child == 0:
            os.close(ready_w)
            os.read(ready_r, 1)
            with contextlib.suppress(OSError):
                os.getpgid(_PROBE_PID)
            os._exit(0)
        os.close(ready_r)
        target = bpf[b"target"]
        target[target.Key(0)] = target.Leaf(child)
        os.write(ready_w, b"x")
        os.close(ready_w)
        _, status = os.waitpid(child, 0)
    finally:
        bpf.cleanup()
    if os.WIFSIGNALED(status) and os.WTERMSIG(status) == 9:
        return True, "SIGKILL sent from sys_enter killed the caller before the syscall returned"
    return False, f"the child was not killed (wait status {status:#x})"


# --- cgroups and processes ---------------------------------------------------------


def cgroup2_mount() -> Path | None:
    """Return where the cgroup v2 hierarchy is mounted, or None."""
    with contextlib.suppress(OSError), open("/proc/self/mounts", encoding="utf-8") as mounts:
        for line in mounts:
            fields = line.split()
            if len(fields) > 2 and fields[2] == "cgroup2":
                return Path(fields[1])
    return None


def cgroup_id(spec: str) -> int:
    """Return the id of cgroup v2 directory `spec` (absolute, or relative to
    the cgroup2 mount) as bpf_get_current_cgroup_id() reports it: its inode.

    Raises CapabilityMissing without cgroup v2, TrampwatchError for a path
    that is not a cgroup v2 directory.
    """
    root = cgroup2_mount()
    if root is None:
        raise CapabilityMissing(
            "cgroup v2", "no cgroup2 file system is mounted", "mount -t cgroup2 none /sys/fs/cgroup"
        )
    path = Path(spec) if spec.startswith("/") else root / spec
    try:
        st, root_st = path.stat(), root.stat()
    except OSError as err:
        raise TrampwatchError(f"--cgroup {spec}: {path}: {os.strerror(err.errno or errno.EIO)}") from err
    if st.st_dev != root_st.st_dev or not path.is_dir():
        raise TrampwatchError(f"--cgroup {spec}: {path} is not a directory of the cgroup2 mount {root}")
    return st.st_ino


def _descendants(pids: set[int]) -> set[int]:
    """Return the processes now running whose ancestry leads to one of `pids`."""
    parents: dict[int, int] = {}
    for pid in procfs.list_pids():
        with contextlib.suppress(OSError), open(f"/proc/{pid}/stat", "rb") as stat:
            # The comm field may hold spaces and parentheses: split after the last ')'.
            parents[pid] = int(stat.read().rsplit(b")", 1)[1].split()[1])
    found: set[int] = set()
    for pid in parents:
        seen, cur = [], pid
        while cur > 1 and cur not in pids and cur not in found and len(seen) < 4096:
            seen.append(cur)
            cur = parents.get(cur, 0)
        if cur in pids or cur in found:
            found.update(seen)
    return found


# --- the source ------------------------------------------------------------------------


class EbpfSource:
    """Host-wide memory events from the kernel.

    Construction compiles and attaches the kernel side (about a second) and
    raises CapabilityMissing, with the fix, when bcc, kernel headers,
    tracefs, BTF or the privileges are missing. Use as a context manager or
    call close().
    """

    def __init__(self, config: EbpfConfig):
        _check_host()
        cflags = [
            f"-DWX_RINGBUF_PAGES={config.buffer_pages}",
            f"-DWX_MAX_PROCS={MAX_PROCS}",
            f"-DWX_TS_COMPAT={TS_COMPAT}",
            f"-DWX_EXIT_HAS_GROUP_DEAD={int(_exit_has_group_dead())}",
            *(f"-D{macro}={offset}" for macro, offset in kernel_offsets().items()),
        ]
        started = time.monotonic()
        self._bpf = load_program(MONITOR_PROGRAM, cflags, "eBPF monitor program")
        self.load_seconds = time.monotonic() - started
        self._raw: list[bytes] = []
        self._reported_lost = 0
        self._bpf[b"records"].open_ring_buffer(self._on_record)
        # bpf_ktime_get_ns() is CLOCK_MONOTONIC; events carry wall-clock time.
        self._clock_offset_ns = time.time_ns() - time.monotonic_ns()
        self._known: set[int] = set()
        self._maps_cache: dict[int, tuple[MapEntry, ...]] = {}
        self._elf = ElfCache()
        self._rule_names: list[str] = []
        self._filters = Filter(0)
        self._enforce = config.enforce
        try:
            self.set_kill_rules(config.kill_rules, config.enforce)
            self.set_filters(pids=config.pids, comms=config.comms, cgroups=config.cgroups)
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> EbpfSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- run-time knobs ----------------------------------------------------------------

    def set_filters(
        self,
        pids: tuple[int, ...] | None = None,
        comms: tuple[str, ...] | None = None,
        cgroups: tuple[str, ...] | None = None,
    ) -> None:
        """Replace the selection sets given (None keeps a set as it is; an
        empty tuple selects everything for that kind). Pids bring their
        running descendants and, from now on, every child they fork. Comms
        longer than the kernel's 15 characters are cut as the kernel cuts them.

        Raises NoSuchProcess for a pid that does not exist, TrampwatchError /
        CapabilityMissing for a bad cgroup.
        """
        # Resolve everything first: a bad entry must leave the sets untouched.
        updates: list[tuple[str, list[Any], Filter]] = []
        if pids is not None:
            missing = [pid for pid in pids if not Path(f"/proc/{pid}").is_dir()]
            if missing:
                raise NoSuchProcess("no such process to monitor", pid=missing[0])
            wanted = set(pids)
            updates.append(("sel_pids", sorted(wanted | _descendants(wanted)), Filter.PIDS))
        if comms is not None:
            updates.append(("sel_comms", [name.encode()[: COMM_LEN - 1] for name in comms], Filter.COMMS))
        if cgroups is not None:
            updates.append(("sel_cgroups", [cgroup_id(spec) for spec in cgroups], Filter.CGROUPS))
        for name, keys, bit in updates:
            self._replace_set(name, keys, bit)
        self._write_config()

    def set_kill_rules(self, rules: tuple[KillRule, ...], enforce: bool) -> None:
        """Load `rules` into the kernel (at most MAX_KILL_RULES); they send
        SIGKILL at entry only while `enforce` is true."""
        check_kill_rules(rules)
        table = self._bpf[b"kill_rules"]
        for index, rule in enumerate(rules):
            leaf = table.Leaf()
            leaf.sys = KILL_SYSCALLS[rule.syscall]
            leaf.prot_all = rule.prot_all
            leaf.flags_all = rule.flags_all
            leaf.flags_none = rule.flags_none
            table[table.Key(index)] = leaf
        self._rule_names = [rule.rule for rule in rules]
        self._enforce = enforce
        self._write_config()

    def _replace_set(self, name: str, keys: list[Any], bit: Filter) -> None:
        """Make map `name` hold exactly `keys`; an empty set turns its filter off."""
        table = self._bpf[name.encode()]
        table.clear()
        for key in keys:
            table[table.Key(key)] = table.Leaf(1)
        self._filters = self._filters | bit if keys else self._filters & ~bit

    def _write_config(self) -> None:
        table = self._bpf[b"config"]
        leaf = table.Leaf()
        leaf.active = 1
        leaf.filters = int(self._filters)
        leaf.enforce = int(self._enforce)
        leaf.nrules = len(self._rule_names)
        table[table.Key(0)] = leaf

    # --- reading -------------------------------------------------------------------------

    def poll(self, timeout_ms: int) -> list[Event]:
        """Wait up to `timeout_ms` for records; return them as events, in order.

        A syscall gives MemCall then MemReturn (preceded by an AttachEvent the
        first time a process already running is seen; KernelKill between the
        two when a kill rule fired, so the call's judgement is settled by its
        return). Also ExecEvent, ForkEvent, ExitEvent, and
        last RecordsLost when the kernel side dropped records since the
        previous poll. Syscall records wake the reader only in bulk (call_wakeup() in the C
        side), so what is in the buffer is taken whether or not it woke us.
        """
        self._bpf.ring_buffer_poll(timeout_ms)
        self._bpf.ring_buffer_consume()
        raw, self._raw = self._raw, []
        self._maps_cache.clear()
        events: list[Event] = []
        for data in raw:
            events.extend(self._decode(data))
        by_reason = self.lost_counts()
        total = sum(by_reason.values())
        if total > self._reported_lost:
            count = total - self._reported_lost
            events.append(RecordsLost(time.time(), count, total, tuple(by_reason.items())))
            self._reported_lost = total
        return events

    def _on_record(self, _ctx: Any, data: Any, size: int) -> int:
        self._raw.append(ctypes.string_at(data, size))
        return 0

    def lost_counts(self) -> dict[str, int]:
        """Return records dropped so far, by reason: 'ringbuf' (the buffer was
        full) and 'pending' (no per-thread entry could be made: kernel memory)."""
        table = self._bpf[b"lost"]
        return {slot.name.lower(): int(table.sum(table.Key(slot)).value) for slot in LostSlot}

    def lost(self) -> int:
        """Return how many records the kernel side dropped so far."""
        return sum(self.lost_counts().values())

    def close(self) -> None:
        """Detach every program and free the maps (idempotent)."""
        bpf, self._bpf = getattr(self, "_bpf", None), None
        if bpf is not None:
            bpf.cleanup()

    # --- records to events ----------------------------------------------------------------

    def _decode(self, data: bytes) -> list[Event]:
        rec = Record.from_buffer_copy(data)
        ts = (rec.ts + self._clock_offset_ns) / 1e9
        kind = rec.kind
        if kind == Kind.SYSCALL:
            return self._syscall(rec, data, ts)
        if kind == Kind.EXEC:
            return [self._exec(ExecRecord.from_buffer_copy(data), ts)]
        if kind == Kind.FORK:
            thread = bool(rec.flags & RecordFlag.THREAD)
            if rec.tgid in self._known and not thread:
                self._known.add(rec.args[1])
            shares_vm = bool(rec.flags & RecordFlag.SHARES_VM)
            return [ForkEvent(ts, rec.tgid, rec.tid, rec.args[0], thread, shares_vm)]
        group_dead = bool(rec.flags & RecordFlag.GROUP_DEAD)
        if group_dead:
            self._known.discard(rec.tgid)
        return [ExitEvent(ts, rec.tgid, rec.tid, rec.ret if group_dead else None)]

    def _syscall(self, rec: Record, data: bytes, ts: float) -> list[Event]:
        arch = abi.ARCH_NAMES[rec.arch]
        name, args = _normalise(abi.SYSCALL_NAMES[rec.arch][rec.nr], arch, tuple(rec.args))
        result = rec.ret
        if arch == "i386" and not -4096 < result < 0:
            result &= 0xFFFFFFFF
        fd_object = None
        if rec.flags & _OBJECT:
            fd_object = self._fd_object(ObjectRecord.from_buffer_copy(data), args)
        call = MemCall(
            ts,
            rec.tgid,
            rec.tid,
            name,
            arch,
            args,
            fd_object=fd_object,
            object_size=_segment_size(name, args),
        )
        events: list[Event] = [*self._attach_if_new(rec.tgid, ts), call]
        if rec.flags & _KILLED:
            events.append(KernelKill(ts, rec.tgid, rec.tid, self._rule_names[rec.kill_rule], call))
        events.append(MemReturn(call, result))
        return events

    def _fd_object(self, obj: ObjectRecord, args: tuple[int, ...]) -> FdObject:
        """The object the kernel saw behind an mmap's descriptor, with the
        best path we can still find: the descriptor's link if it still refers
        to that object, else a mapping of it in /proc/PID/maps, else the
        bare dentry name (the process is gone or unmapped it)."""
        fd = ctypes.c_int32(args[4] & 0xFFFFFFFF).value
        dev, ino = os.makedev(obj.obj_dev >> 20, obj.obj_dev & 0xFFFFF), obj.obj_ino
        try:
            live = procfs.fd_object(obj.rec.tid, fd)
        except TraceError:
            live = None
        if live is not None and (live.dev, live.inode) == (dev, ino):
            return live
        path = next((m.path for m in self._maps_of(obj.rec.tgid) if (m.dev, m.inode) == (dev, ino)), None)
        return FdObject(fd, path or _object_name(obj), dev, ino)

    def _maps_of(self, pid: int) -> tuple[MapEntry, ...]:
        """/proc/PID/maps, read at most once per poll()."""
        if pid not in self._maps_cache:
            try:
                self._maps_cache[pid] = procfs.read_maps(pid)
            except TraceError:
                self._maps_cache[pid] = ()
        return self._maps_cache[pid]

    def _attach_if_new(self, pid: int, ts: float) -> list[Event]:
        """Seed a process seen for the first time (running before we started)
        from /proc: after the call that revealed it, so the maps include it."""
        if pid in self._known:
            return []
        self._known.add(pid)
        try:
            info = procfs.read_process_info(pid)
            maps = procfs.read_maps(pid)
            persona = procfs.read_personality(pid)
            threads = tuple(procfs.list_threads(pid))
        except TraceError:
            return []
        return [AttachEvent(ts, pid, info, maps, persona, threads)]

    def _exec(self, exec_rec: ExecRecord, ts: float) -> ExecEvent:
        rec = exec_rec.rec
        pid = rec.tgid
        self._known.add(pid)
        try:
            info = procfs.read_process_info(pid)
        except TraceError:
            info = ProcessInfo(os.fsdecode(exec_rec.filename), exec_rec.comm.decode(errors="replace"),
                               exec_rec.uid)
        try:
            maps = procfs.read_maps(pid)
        except TraceError:
            maps = ()
        try:
            execstack = self._elf.get(info.exe).execstack
        except ElfError:
            execstack = None
        former = rec.args[0] if rec.args[0] != pid else None
        return ExecEvent(ts, pid, pid, info, maps, execstack, rec.personality, former_pid=former)


def _exit_has_group_dead() -> bool:
    """True when this kernel's sched_process_exit tracepoint has `group_dead`."""
    root = tracefs_root()
    fmt = root / "events/sched/sched_process_exit/format" if root else None
    try:
        return fmt is not None and "group_dead" in fmt.read_text()
    except OSError:
        return False


def _normalise(name: str, arch: str, args: tuple[int, ...]) -> tuple[str, tuple[int, ...]]:
    """Fold i386's ipc(2) into shmat/shmdt with their own argument order, as
    the ptrace source does (old_mmap's block was already read in the kernel)."""
    if arch != "i386" or name != "ipc":
        return name, args
    if args[0] & 0xFFFF == abi.IPC_SHMAT:
        return "shmat", (args[1], args[4], args[2], args[3])
    return "shmdt", (args[4],)


def _object_name(obj: ObjectRecord) -> str:
    """The path /proc would show for the object of `obj`, from its dentry
    name alone: no directory, ' (deleted)' when it has no link left."""
    name = os.fsdecode(obj.obj_name)
    if name.startswith("memfd:"):
        name = "/" + name
    return f"{name} (deleted)" if obj.obj_nlink == 0 else name


def _segment_size(name: str, args: tuple[int, ...]) -> int | None:
    """The size of the System V segment a shmat attaches, when it still exists."""
    return procfs.shm_segment_size(args[0]) if name == "shmat" else None
