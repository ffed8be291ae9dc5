"""The Python view of tracer/bpf/wx_record.h: the records the eBPF monitor's
kernel side sends and the knobs user space writes back (kill rules).

One definition each: the C header is the truth, and a test compiles it and
compares every offset, size and constant with the views here (ctypes for
reading single records and writing maps, struct formats for decoding in
bulk).
"""

from __future__ import annotations

import ctypes
import enum
import struct
from dataclasses import dataclass

from tracer import abi
from tracer.errors import TrampwatchError

# What an address space's special mapping (vdso, vvar) is called when the
# kernel side saw it but /proc can no longer name it.
SPECIAL_MAPPING = "[special]"

COMM_LEN = 16
PATH_LEN = 256
NAME_LEN = 48
PART_NAME_LEN = 32
MAX_KILL_RULES = 16
MAX_PARTS = 2
EXE_PATH_LEN = 512
NAME_MAX = 256


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
    PRCTL_MM = 11


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



class ExePathFlag(enum.IntFlag):
    """WX_X_* bits of wx_exec_record.path_flags."""

    WHOLE = 0x1
    TRUNCATED = 0x2


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
        ("path_flags", ctypes.c_uint32),
        ("path_len", ctypes.c_uint32),
        ("path", ctypes.c_char * EXE_PATH_LEN),
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
    "prctl": Sys.PRCTL_MM,
}




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



def check_kill_rules(rules: tuple[KillRule, ...]) -> None:
    """Raise TrampwatchError when the kernel side cannot hold `rules`."""
    if len(rules) > MAX_KILL_RULES:
        raise TrampwatchError(f"{len(rules)} kill rules: the kernel side holds at most {MAX_KILL_RULES}")

