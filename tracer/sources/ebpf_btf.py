"""The running kernel's structure layouts, from its BTF
(/sys/kernel/btf/vmlinux): the offsets of the members the eBPF monitor's
programs read, passed to them as -DWX_OFF_*=N at build time. bcc compiles
against installed headers that may be for another kernel, so their layouts
cannot be trusted (docs/monitor.md).
"""

from __future__ import annotations

import errno
import functools
import os
import struct
from pathlib import Path

from tracer.errors import CapabilityMissing

BTF_PATH = Path("/sys/kernel/btf/vmlinux")

# The thread_info status bit the x86 kernel sets during an i386 syscall
# (arch/x86/include/asm/thread_info.h); BTF has no macros, so it is stated here.
TS_COMPAT = 0x0002

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


# What walking the executable's path up its dentries and mounts needs (the
# exec record's `path`). Without them the exec's path is execve's argument.
EXE_PATH_OFFSETS: dict[str, tuple[tuple[str, str], ...]] = {
    "WX_OFF_FILE_MNT": (("file", "f_path"), ("path", "mnt")),
    "WX_OFF_DENTRY_PARENT": (("dentry", "d_parent"),),
    "WX_OFF_VFSMOUNT_ROOT": (("vfsmount", "mnt_root"),),
    "WX_OFF_MOUNT_MNT": (("mount", "mnt"),),
    "WX_OFF_MOUNT_PARENT": (("mount", "mnt_parent"),),
    "WX_OFF_MOUNT_MOUNTPOINT": (("mount", "mnt_mountpoint"),),
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


@functools.lru_cache(maxsize=2)
def _parsed(btf_path: Path) -> _Btf:
    """The BTF at `btf_path`, parsed once (about 0.07 s) for every table."""
    return _Btf(btf_path.read_bytes())


def _offsets(btf_path: Path, table: dict[str, tuple[tuple[str, str], ...]]) -> dict[str, int]:
    """Each macro of `table` with the sum of its chain's member offsets."""
    btf = _parsed(btf_path)
    return {macro: sum(btf.offset(struct_name, member) for struct_name, member in chain)
            for macro, chain in table.items()}


def vma_walk_offsets(btf_path: Path = BTF_PATH) -> tuple[dict[str, int] | None, str]:
    """Return the VMA_WALK_OFFSETS entries of the running kernel plus
    WX_VMA_READ_LEN (the bytes of a vm_area_struct read at once), with a
    note, or (None, why the VMAs cannot be walked here)."""
    try:
        found = _offsets(btf_path, VMA_WALK_OFFSETS)
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
        return _offsets(btf_path, KERNEL_OFFSETS)
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


def exe_path_offsets(btf_path: Path = BTF_PATH) -> tuple[dict[str, int] | None, str]:
    """Return the EXE_PATH_OFFSETS entries of the running kernel with a note,
    or (None, why the executable's path cannot be walked here)."""
    try:
        found = _offsets(btf_path, EXE_PATH_OFFSETS)
    except (OSError, KeyError, ValueError, struct.error) as err:
        return None, f"an exec's path is execve's argument: its file's path cannot be walked here ({err})"
    return found, "an exec's path is its file's, walked up its dentries and mounts"
