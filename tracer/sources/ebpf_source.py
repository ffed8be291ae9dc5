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
import itertools
import mmap
import os
import platform
import re
import select
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
from tracer.elf import ExecStackCache
from tracer.errors import CapabilityMissing, NoSuchProcess, TraceError, TrampwatchError
from tracer.events import (
    UNKNOWN_PROCESS,
    AttachEvent,
    CallsRepeated,
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

# What an address space's special mapping (vdso, vvar) is called when the
# kernel side saw it but /proc can no longer name it.
SPECIAL_MAPPING = "[special]"

BPF_DIR = package_path("bpf")
RECORD_HEADER = BPF_DIR / "wx_record.h"
MONITOR_PROGRAM = BPF_DIR / "wx_monitor.bpf.c"

BTF_PATH = Path("/sys/kernel/btf/vmlinux")
TRACEFS_CANDIDATES = (Path("/sys/kernel/tracing"), Path("/sys/kernel/debug/tracing"))

# Entries of the per-process kernel maps (a build-time knob).
MAX_PROCS = 16384
# Repeat keys the kernel counts at once (process x region x transition);
# a call whose key finds the map full is sent like any other.
MAX_REPEAT_KEYS = 16384

# The thread_info status bit the x86 kernel sets during an i386 syscall
# (arch/x86/include/asm/thread_info.h); BTF has no macros, so it is stated here.
TS_COMPAT = 0x0002

# --- the Python view of wx_record.h (checked against the C layout by a test) ---

COMM_LEN = 16
PATH_LEN = 256
NAME_LEN = 48
PART_NAME_LEN = 32
MAX_KILL_RULES = 16
MAX_PARTS = 2


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
    REGION = 0x40
    REPEAT_KEY = 0x80


class PartFlag(enum.IntFlag):
    """WX_P_* bits of wx_part.flags."""

    READ = 0x1
    WRITE = 0x2
    EXEC = 0x4
    SHARED = 0x8
    GROWSDOWN = 0x10
    STACK = 0x20
    HEAP = 0x40
    FILE = 0x80
    SPECIAL = 0x100
    UNLINKED = 0x200


class RegionFlag(enum.IntFlag):
    """WX_R_* bits of wx_region_record.region_flags."""

    WALKED = 0x1
    MORE = 0x2
    HOLE = 0x4
    FAILED = 0x8


# The flags every syscall record is tested for, as plain ints: IntFlag
# arithmetic made up ~40% of decoding a record.
_SYSCALL = int(Kind.SYSCALL)
_KILLED = int(RecordFlag.KILLED)
_OBJECT = int(RecordFlag.OBJECT)
_REGION = int(RecordFlag.REGION)
_REPEAT_KEY = int(RecordFlag.REPEAT_KEY)
_GROUP_DEAD = int(RecordFlag.GROUP_DEAD)
_WALKED = int(RegionFlag.WALKED)
_P_FILE = int(PartFlag.FILE)
_P_UNLINKED = int(PartFlag.UNLINKED)
_P_SHARED = int(PartFlag.SHARED)
_P_NAMED = int(PartFlag.SPECIAL | PartFlag.HEAP | PartFlag.STACK | PartFlag.GROWSDOWN)
_MASK64 = (1 << 64) - 1


def _anon_name(flags: int) -> str:
    """What /proc calls a VMA with no file, by its WX_P_* flags."""
    if flags & PartFlag.SPECIAL:
        return SPECIAL_MAPPING
    if flags & PartFlag.HEAP:
        return "[heap]"
    if flags & (PartFlag.STACK | PartFlag.GROWSDOWN):
        return "[stack]"
    return ""


# The name of a VMA with no file, for every combination of the flags that name it.
_ANON_NAMES = {flags: _anon_name(flags) for flags in range(_P_NAMED + 1) if flags & ~_P_NAMED == 0}


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


class Part(ctypes.Structure):
    """struct wx_part: one VMA at a call's entry."""

    _fields_ = (
        ("start", ctypes.c_uint64),
        ("end", ctypes.c_uint64),
        ("ino", ctypes.c_uint64),
        ("dev", ctypes.c_uint32),
        ("flags", ctypes.c_uint32),
        ("name", ctypes.c_char * PART_NAME_LEN),
    )


class RegionRecord(ctypes.Structure):
    """struct wx_region_record: a syscall record with WX_F_REGION."""

    _fields_ = (
        ("rec", Record),
        ("mm", ctypes.c_uint64),
        ("start_stack", ctypes.c_uint64),
        ("start_brk", ctypes.c_uint64),
        ("brk", ctypes.c_uint64),
        ("nparts", ctypes.c_uint32),
        ("region_flags", ctypes.c_uint32),
        ("parts", Part * MAX_PARTS),
    )


class ExecRecord(ctypes.Structure):
    """struct wx_exec_record."""

    _fields_ = (
        ("rec", Record),
        ("uid", ctypes.c_uint32),
        ("comm", ctypes.c_char * COMM_LEN),
        ("filename", ctypes.c_char * PATH_LEN),
        ("mm", ctypes.c_uint64),
        ("stack", Part),
        ("exe", Part),
    )


class RepeatKey(ctypes.Structure):
    """struct wx_repeat_key."""

    _fields_ = (
        ("mm", ctypes.c_uint64),
        ("start", ctypes.c_uint64),
        ("end", ctypes.c_uint64),
        ("tgid", ctypes.c_uint32),
        ("sys", ctypes.c_uint32),
        ("prot", ctypes.c_uint32),
        ("flags", ctypes.c_uint32),
        ("rie", ctypes.c_uint32),
        ("pad", ctypes.c_uint32),
    )


class RepeatCount(ctypes.Structure):
    """struct wx_repeat_count."""

    _fields_ = (
        ("count", ctypes.c_uint64),
        ("last_ts", ctypes.c_uint64),
        ("last_tid", ctypes.c_uint32),
        ("pad", ctypes.c_uint32),
    )


# The same layouts as struct formats, for decoding in bulk (one unpack per
# record instead of a ctypes object; the layout test checks both views).
RECORD_FORMAT = struct.Struct("<Q6QqIIIIiIII")
REGION_FORMAT = struct.Struct("<QQQQII")  # after the record: mm .. region_flags
PART_FORMAT = struct.Struct(f"<QQQII{PART_NAME_LEN}s")
_REGION_AT = RECORD_FORMAT.size
_PARTS_AT = _REGION_AT + REGION_FORMAT.size
_PART_SIZE = PART_FORMAT.size

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
    `walk_vmas` lets the kernel side walk the VMA tree where this kernel's
    BTF allows it (False: only the mm's stack and brk addresses are recorded,
    as on a kernel where it cannot be walked). `repeats` counts equal
    repeatable calls in the kernel instead of sending each.
    """

    pids: tuple[int, ...] = ()
    comms: tuple[str, ...] = ()
    cgroups: tuple[str, ...] = ()
    buffer_pages: int = 1024
    kill_rules: tuple[KillRule, ...] = ()
    enforce: bool = True
    walk_vmas: bool = True
    repeats: bool = True

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
    "WX_OFF_MM_START_STACK": (("mm_struct", "start_stack"),),
    "WX_OFF_MM_START_BRK": (("mm_struct", "start_brk"),),
    "WX_OFF_MM_BRK": (("mm_struct", "brk"),),
    "WX_OFF_MM_EXE_FILE": (("mm_struct", "exe_file"),),
}

# What walking an mm's VMAs needs (a maple tree: Linux 6.1 on). Without
# them the kernel side records only the mm's stack and brk addresses.
VMA_WALK_OFFSETS: dict[str, tuple[tuple[str, str], ...]] = {
    "WX_OFF_MM_MT_ROOT": (("mm_struct", "mm_mt"), ("maple_tree", "ma_root")),
    "WX_OFF_MR64_PIVOT": (("maple_range_64", "pivot"),),
    "WX_OFF_MR64_SLOT": (("maple_range_64", "slot"),),
    "WX_OFF_MA64_PIVOT": (("maple_arange_64", "pivot"),),
    "WX_OFF_MA64_SLOT": (("maple_arange_64", "slot"),),
    "WX_OFF_VMA_START": (("vm_area_struct", "vm_start"),),
    "WX_OFF_VMA_END": (("vm_area_struct", "vm_end"),),
    "WX_OFF_VMA_FLAGS": (("vm_area_struct", "vm_flags"),),
    "WX_OFF_VMA_OPS": (("vm_area_struct", "vm_ops"),),
    "WX_OFF_VMA_FILE": (("vm_area_struct", "vm_file"),),
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


def vma_walk_offsets(btf_path: Path = BTF_PATH) -> tuple[dict[str, int] | None, str]:
    """Return the VMA_WALK_OFFSETS entries of the running kernel plus
    WX_VMA_READ_LEN (the bytes of a vm_area_struct read at once), with a
    note, or (None, why the VMAs cannot be walked here)."""
    try:
        btf = _Btf(btf_path.read_bytes())
        found = {
            macro: sum(btf.offset(struct_name, member) for struct_name, member in chain)
            for macro, chain in VMA_WALK_OFFSETS.items()
        }
    except (OSError, KeyError, ValueError, struct.error) as err:
        return None, f"the VMA tree cannot be walked on this kernel ({err})"
    vma = [found[name] for name in found if name.startswith("WX_OFF_VMA_")]
    # The walk reads a node's parent and pivots in one go, and 8-byte VMA members.
    if found["WX_OFF_MR64_PIVOT"] != 8 or found["WX_OFF_MA64_PIVOT"] != 8 or any(off % 8 for off in vma):
        return None, "the maple tree or vm_area_struct is laid out differently from what the walk expects"
    found["WX_VMA_READ_LEN"] = max(vma) + 8
    return found, "the VMA tree (a maple tree) is walked at each protection change"


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


# --- the ring buffer, read in bulk ---------------------------------------------------

# A BPF ring buffer record's 8-byte header: its length, with these bits.
_RINGBUF_BUSY = 1 << 31
_RINGBUF_DISCARD = 1 << 30
_RINGBUF_HEADER = 8
_U64 = struct.Struct("<Q")
_U32 = struct.Struct("<I")


class RingReader:
    """The consumer side of a BPF ring buffer map, read by mapping it.

    bcc's reader calls a Python function through ctypes for every record;
    this one copies every record that is ready in one pass. The map's first
    page is the consumer position (ours to write), the second the producer
    position, then the data pages, mapped twice in a row so a record that
    wraps around the end reads as one piece (kernel/bpf/ringbuf.c).
    """

    def __init__(self, map_fd: int, size: int):
        page = mmap.PAGESIZE
        self._mask = size - 1
        self._consumer = mmap.mmap(map_fd, page, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE, offset=0)
        self._view = mmap.mmap(map_fd, page + 2 * size, mmap.MAP_SHARED, mmap.PROT_READ, offset=page)
        self._data = page
        self._epoll = select.epoll()
        # Readable while records are ready; the producers wake a sleeping
        # reader only now and then (call_wakeup() in wx_monitor.bpf.c).
        self._epoll.register(map_fd, select.EPOLLIN)

    def wait(self, timeout_ms: int) -> None:
        """Sleep until records are ready (and a producer woke us) or `timeout_ms` passed."""
        with contextlib.suppress(InterruptedError):
            self._epoll.poll(timeout_ms / 1000)

    def take(self) -> list[bytes]:
        """Return every committed record, in order, and release their space."""
        view, data, mask = self._view, self._data, self._mask
        consumer = _U64.unpack_from(self._consumer, 0)[0]
        producer = _U64.unpack_from(view, 0)[0]
        records = []
        while consumer < producer:
            at = data + (consumer & mask)
            header = _U32.unpack_from(view, at)[0]
            if header & _RINGBUF_BUSY:
                break  # reserved, not yet submitted: later records wait for it
            length = header & ~(_RINGBUF_BUSY | _RINGBUF_DISCARD)
            if not header & _RINGBUF_DISCARD:
                records.append(view[at + _RINGBUF_HEADER : at + _RINGBUF_HEADER + length])
            consumer += (length + _RINGBUF_HEADER + 7) & ~7
        _U64.pack_into(self._consumer, 0, consumer)
        return records

    def close(self) -> None:
        """Unmap the buffer."""
        self._epoll.close()
        self._view.close()
        self._consumer.close()


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
        walk, self.vma_note = vma_walk_offsets() if config.walk_vmas else (None, "VMA walk turned off")
        self.walks_vmas = walk is not None
        cflags = [
            f"-DWX_RINGBUF_PAGES={config.buffer_pages}",
            f"-DWX_MAX_PROCS={MAX_PROCS}",
            f"-DWX_MAX_REPEAT_KEYS={MAX_REPEAT_KEYS if config.repeats else 1}",
            f"-DWX_REPEATS={int(config.repeats)}",
            f"-DWX_TS_COMPAT={TS_COMPAT}",
            f"-DWX_EXIT_HAS_GROUP_DEAD={int(_exit_has_group_dead())}",
            f"-DWX_VMA_WALK={int(walk is not None)}",
            *(f"-D{macro}={offset}" for macro, offset in kernel_offsets().items()),
            *(f"-D{macro}={offset}" for macro, offset in (walk or {}).items()),
        ]
        started = time.monotonic()
        self._bpf = load_program(MONITOR_PROGRAM, cflags, "eBPF monitor program")
        self.load_seconds = time.monotonic() - started
        self._reported_lost = 0
        self._ring = RingReader(self._bpf[b"records"].map_fd, config.buffer_pages * mmap.PAGESIZE)
        # bpf_ktime_get_ns() is CLOCK_MONOTONIC; events carry wall-clock time.
        self._clock_offset_ns = time.time_ns() - time.monotonic_ns()
        self._known: set[int] = set()
        # Repeat keys whose first call was delivered: key bytes -> (id, tgid,
        # mm, count delivered so far); the kernel counts the later calls.
        self._repeat_keys: dict[bytes, list[int]] = {}
        self._repeat_ids = itertools.count(1)
        self._repeated_total = 0
        self._maps_cache: dict[int, tuple[MapEntry, ...]] = {}
        self._exec_stacks = ExecStackCache()
        self._rule_names: list[str] = []
        self._filters = Filter(0)
        self._enforce = config.enforce
        try:
            # Selection first: each call writes the config, and kill rules
            # written before the filters would apply to every process.
            self.set_filters(pids=config.pids, comms=config.comms, cgroups=config.cgroups)
            self.set_kill_rules(config.kill_rules, config.enforce)
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
        self._ring.wait(timeout_ms)
        self._maps_cache.clear()
        events: list[Event] = []
        decode = self._decode
        for data in self._ring.take():
            decode(data, events)
        if self._repeat_keys:
            table = self._bpf[b"repeated"]
            total = int(table.sum(table.Key(0)).value)
            if total != self._repeated_total:
                self._repeated_total = total
                events.extend(self._repeats(list(self._repeat_keys)))
        by_reason = self.lost_counts()
        total = sum(by_reason.values())
        if total > self._reported_lost:
            count = total - self._reported_lost
            events.append(RecordsLost(time.time(), count, total, tuple(by_reason.items())))
            self._reported_lost = total
        return events

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
        ring, self._ring = getattr(self, "_ring", None), None
        if ring is not None:
            ring.close()
        bpf, self._bpf = getattr(self, "_bpf", None), None
        if bpf is not None:
            bpf.cleanup()

    # --- records to events ----------------------------------------------------------------

    def _decode(self, data: bytes, events: list[Event]) -> None:
        """Append the events of one record to `events`."""
        fields = RECORD_FORMAT.unpack_from(data)
        ts = (fields[0] + self._clock_offset_ns) / 1e9
        kind = fields[8]
        if kind == _SYSCALL:
            self._syscall(fields, data, ts, events)
            return
        rec = Record.from_buffer_copy(data)
        if kind == Kind.EXEC:
            exec_rec = ExecRecord.from_buffer_copy(data)
            # The old image's counts are final: deliver them before its end.
            events += self._repeats_of(rec.tgid, keep_mm=exec_rec.mm)
            events.append(self._exec(exec_rec, ts))
        elif kind == Kind.FORK:
            thread = bool(rec.flags & RecordFlag.THREAD)
            if rec.tgid in self._known and not thread:
                self._known.add(rec.args[1])
            shares_vm = bool(rec.flags & RecordFlag.SHARES_VM)
            events.append(ForkEvent(ts, rec.tgid, rec.tid, rec.args[0], thread, shares_vm))
        elif not rec.flags & _GROUP_DEAD:
            events.append(ExitEvent(ts, rec.tgid, rec.tid, None))
        else:
            self._known.discard(rec.tgid)
            events += self._repeats_of(rec.tgid)
            events.append(ExitEvent(ts, rec.tgid, rec.tid, rec.ret))

    # --- calls counted in the kernel -------------------------------------------------------

    def _repeat_key(self, mm: int, tgid: int, name: str, persona: int, part_flags: int,
                    args: tuple[int, ...]) -> int:
        """Note the repeat key the kernel made for this first call (the
        same fields wx_monitor.bpf.c's send_region() fills); return its id."""
        rie = persona & abi.READ_IMPLIES_EXEC != 0
        prot = args[2] & 7
        if rie and prot & 1:
            prot |= 4
        key = RepeatKey(
            mm,
            args[0] & ~4095 & _MASK64,
            (args[0] + (args[1] or 1) + 4095) & ~4095 & _MASK64,
            tgid,
            Sys.MPROTECT if name == "mprotect" else Sys.PKEY_MPROTECT,
            prot,
            part_flags,
            int(rie),
        )
        key_id = next(self._repeat_ids)
        self._repeat_keys[bytes(key)] = [key_id, tgid, mm, 0]
        return key_id

    def _repeats(self, keys: list[bytes], forget: bool = False) -> list[Event]:
        """CallsRepeated for every key in `keys` whose kernel count grew;
        with `forget`, the keys are dropped here and in the kernel (their
        process or image is gone, so the counts are final)."""
        table = self._bpf[b"repeats"]
        events: list[Event] = []
        for raw in keys:
            state = self._repeat_keys[raw] if not forget else self._repeat_keys.pop(raw)
            key = RepeatKey.from_buffer_copy(raw)
            try:
                value = table[key]
            except KeyError:
                continue
            if value.count > state[3]:
                ts = (value.last_ts + self._clock_offset_ns) / 1e9
                events.append(CallsRepeated(ts, state[1], value.last_tid, state[0], value.count - state[3]))
                state[3] = value.count
            if forget:
                with contextlib.suppress(KeyError):
                    del table[key]
        return events

    def _repeats_of(self, tgid: int, keep_mm: int | None = None) -> list[Event]:
        """Deliver and forget the repeat keys of process `tgid` (those of
        another address space than `keep_mm`, when given)."""
        keys = [raw for raw, (_, pid, mm, _) in self._repeat_keys.items() if pid == tgid and mm != keep_mm]
        return self._repeats(keys, forget=True) if keys else []

    def _syscall(self, fields: tuple, data: bytes, ts: float, events: list[Event]) -> None:
        """Append a syscall record's events: MemCall, KernelKill when a kill
        rule fired, MemReturn (after an AttachEvent for a process first seen)."""
        tgid, tid, arch_id, nr, flags = fields[9], fields[10], fields[11], fields[12], fields[13]
        arch = abi.ARCH_NAMES[arch_id]
        name, args = _normalise(abi.SYSCALL_NAMES[arch_id][nr], arch, fields[1:7])
        result = fields[7]
        if arch == "i386" and not -4096 < result < 0:
            result &= 0xFFFFFFFF
        fd_object = vmas = repeat_key = None
        if flags & _OBJECT:
            fd_object = self._fd_object(ObjectRecord.from_buffer_copy(data), args)
        elif flags & _REGION:
            mm, _stack, _brk_start, _brk, nparts, region_flags = REGION_FORMAT.unpack_from(data, _REGION_AT)
            if region_flags == _WALKED:
                parts = [PART_FORMAT.unpack_from(data, _PARTS_AT + i * _PART_SIZE) for i in range(nparts)]
                vmas = tuple(self._vma(tgid, part) for part in parts)
                if flags & _REPEAT_KEY:
                    repeat_key = self._repeat_key(mm, tgid, name, fields[14], parts[0][4], args)
        call = MemCall(ts, tgid, tid, name, arch, args, fd_object=fd_object,
                       object_size=_segment_size(name, args) if name == "shmat" else None,
                       vmas=vmas, repeat_key=repeat_key)
        if tgid not in self._known:
            events += self._attach_if_new(tgid, ts, fields[14])
        events.append(call)
        if flags & _KILLED:
            events.append(KernelKill(ts, tgid, tid, self._rule_names[fields[15]], call))
        events.append(MemReturn(call, result))

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

    def _vma(self, pid: int, part: tuple) -> MapEntry:
        """One VMA (a PART_FORMAT tuple) as /proc/PID/maps names it: a file
        by its path (from the live maps when the process still maps it, else
        from its dentry name), [heap] and [stack] as the kernel tests them,
        '' for anonymous memory. Only the protection changes that cross, and
        no more than WX_MAX_PARTS of them a call: walked only when whole
        (region_flags WALKED alone), else the caller falls back to /proc."""
        start, end, ino, kdev, flags, name = part
        dev = 0
        if flags & _P_FILE:
            dev = os.makedev(kdev >> 20, kdev & 0xFFFFF)
            path = next((m.path for m in self._maps_of(pid) if (m.dev, m.inode) == (dev, ino)), None)
            if path is None:
                path = _dentry_path(os.fsdecode(name.split(b"\0", 1)[0]), not flags & _P_UNLINKED)
        else:
            ino = 0
            path = _ANON_NAMES[flags & _P_NAMED]
        return MapEntry(start, end, flags & 7, bool(flags & _P_SHARED), 0, dev, ino, path)

    def _maps_of(self, pid: int) -> tuple[MapEntry, ...]:
        """/proc/PID/maps, read at most once per poll()."""
        if pid not in self._maps_cache:
            try:
                self._maps_cache[pid] = procfs.read_maps(pid)
            except TraceError:
                self._maps_cache[pid] = ()
        return self._maps_cache[pid]

    def _attach_if_new(self, pid: int, ts: float, persona_now: int) -> list[Event]:
        """Seed a process seen for the first time (running before we started)
        from /proc: after the call that revealed it, so the maps include it.
        A process already gone is seeded empty, with no name: the kernel's
        view of each call's range is all there is to judge it by."""
        if pid in self._known:
            return []
        self._known.add(pid)
        try:
            info = procfs.read_process_info(pid)
            maps = procfs.read_maps(pid)
            persona = procfs.read_personality(pid)
            threads = tuple(procfs.list_threads(pid))
        except TraceError:
            # Gone already: judged on what the kernel sent of its calls alone.
            return [AttachEvent(ts, pid, UNKNOWN_PROCESS, (), persona_now, ())]
        return [AttachEvent(ts, pid, info, maps, persona, threads)]

    def _exec(self, exec_rec: ExecRecord, ts: float) -> ExecEvent:
        rec = exec_rec.rec
        pid = rec.tgid
        self._known.add(pid)
        try:
            info = procfs.read_process_info(pid)
        except TraceError:
            # Gone already. A program with no name on disk (fexecve of a
            # memfd) is named as /proc would name it, from the kernel's view
            # of its file; any other by the path execve was given.
            exe = os.fsdecode(exec_rec.filename)
            if exec_rec.exe.flags & PartFlag.UNLINKED:
                exe = _dentry_path(os.fsdecode(exec_rec.exe.name), linked=False)
            info = ProcessInfo(exe, exec_rec.comm.decode(errors="replace"), exec_rec.uid)
        try:
            maps = procfs.read_maps(pid)
        except TraceError:
            # Gone already: the kernel's view of the new stack is what remains.
            stack = exec_rec.stack
            maps = ()
            if stack.end:
                maps = (MapEntry(stack.start, stack.end, stack.flags & 7, False, 0, 0, 0, "[stack]"),)
        execstack = self._exec_stacks.execstack(info.exe)
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
    name alone."""
    return _dentry_path(os.fsdecode(obj.obj_name), obj.obj_nlink != 0)


def _dentry_path(name: str, linked: bool) -> str:
    """The path /proc would show for an object known by its dentry name
    alone: no directory (but the '/' of memfds, SysV segments and shared
    anonymous memory), ' (deleted)' when it has no link left."""
    if name.startswith(("memfd:", "SYSV", "dev/zero")):
        name = "/" + name
    return name if linked else f"{name} (deleted)"


def _segment_size(name: str, args: tuple[int, ...]) -> int | None:
    """The size of the System V segment a shmat attaches, when it still exists."""
    return procfs.shm_segment_size(args[0]) if name == "shmat" else None
