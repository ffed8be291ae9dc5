"""v2 trampfd: a table of trampolines whose code the kernel writes once.

A `TrampolineTable` holds the code and data descriptors the program writes,
checks the mmap of the table, and produces the page of x86-64 code the
emulator places in the program (read+execute, never writable by it).
Trampoline X loads code_table[X] and data_table[X] into the two chosen
registers and jumps to the code address.
"""

from __future__ import annotations

import errno
import os
import struct
from dataclasses import dataclass

from ..abi import MAP_PRIVATE, PROT_EXEC, PROT_READ
from .layout import (
    CODE,
    DATA,
    INFO,
    PAGE_SIZE,
    TRAMPFD_CODE,
    TRAMPFD_DATA,
    V2_CODE_OFFSET,
    V2_CODE_SIZE,
    V2_FIRST_64,
    V2_NTRAMPOLINES,
    V2_REG_MAX,
    V2_REGISTERS,
    Refused,
)
from .v1 import Fetch

INFO_STRUCT = INFO.pack(V2_NTRAMPOLINES, V2_CODE_SIZE, V2_CODE_OFFSET, 0)
_INT3 = b"\xcc"
# The hardware numbers of the x86-64 general registers (ModRM/REX encoding).
_HW = {name: number for number, name in enumerate(
    ("rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi",
     "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15"))}


@dataclass(frozen=True)
class Descriptor:
    """A written code or data descriptor: register (v2 name) and table address."""

    reg: int
    table: int
    ntrampolines: int = 0

    @property
    def register(self) -> str:
        """Return the register's ptrace name ('r10')."""
        return V2_REGISTERS[self.reg]


def _check_reg(reg: int) -> None:
    # Table entries are 64-bit addresses: only a 64-bit register holds one.
    if not V2_FIRST_64 <= reg < V2_REG_MAX:
        raise Refused(errno.EINVAL, f"register {reg} is not a 64-bit v2 register name")


class TrampolineTable:
    """The state behind one v2 trampfd, created by process `creator`."""

    version = 2

    def __init__(self, creator: int):
        self.creator = creator
        self.code: Descriptor | None = None
        self.data: Descriptor | None = None

    @staticmethod
    def seek(offset: int, whence: int) -> int:
        """Return the new position; only SEEK_SET to TRAMPFD_CODE or
        TRAMPFD_DATA. Raises Refused(EINVAL)."""
        if whence != os.SEEK_SET or offset not in (TRAMPFD_CODE, TRAMPFD_DATA):
            raise Refused(errno.EINVAL, "lseek accepts only SEEK_SET to offsets 0..1")
        return offset

    @staticmethod
    def read(offset: int, buf: int, count: int) -> bytes:
        """A v2 descriptor has nothing to read. Raises Refused(EINVAL)."""
        raise Refused(errno.EINVAL, "a v2 trampfd cannot be read")

    def write(self, offset: int, buf: int, count: int, fetch: Fetch) -> int:
        """Set the code (offset 0) or data (offset 1) descriptor; return count.
        Raises Refused: EINVAL (bad buffer, count != 16, reserved set, bad
        register or table), EEXIST (written before), EFAULT (from fetch)."""
        if buf == 0 or count == 0 or offset not in (TRAMPFD_CODE, TRAMPFD_DATA):
            raise Refused(errno.EINVAL, "NULL buffer, zero count or no such offset")
        if count != CODE.size:
            raise Refused(errno.EINVAL, "a descriptor is written whole (16 bytes)")
        if (self.code if offset == TRAMPFD_CODE else self.data) is not None:
            raise Refused(errno.EEXIST, "descriptor already written")
        raw = fetch(count)
        if offset == TRAMPFD_CODE:
            ntrampolines, reg, table = CODE.unpack(raw)
            if not 1 <= ntrampolines <= V2_NTRAMPOLINES:
                raise Refused(errno.EINVAL, f"ntrampolines must be 1..{V2_NTRAMPOLINES}")
            descriptor = Descriptor(reg, table, ntrampolines)
        else:
            reg, reserved, table = DATA.unpack(raw)
            if reserved:
                raise Refused(errno.EINVAL, "trampfd_data.reserved must be 0")
            descriptor = Descriptor(reg, table)
        _check_reg(reg)
        if table == 0:
            raise Refused(errno.EINVAL, "the table address is NULL")
        other = self.data if offset == TRAMPFD_CODE else self.code
        if other is not None and other.reg == reg:
            raise Refused(errno.EINVAL, "code and data registers must differ")
        if offset == TRAMPFD_CODE:
            self.code = descriptor
        else:
            self.data = descriptor
        return count

    def check_map(self, length: int, prot: int, flags: int, offset: int, pid: int, mapped: bool) -> None:
        """Check an mmap of the table by process `pid` (`mapped`: it already
        has this table mapped). Raises Refused: EINVAL or EEXIST."""
        if length != PAGE_SIZE or flags != MAP_PRIVATE or offset != V2_CODE_OFFSET:
            raise Refused(errno.EINVAL, "map one page, MAP_PRIVATE, at info.code_offset")
        if prot != PROT_READ | PROT_EXEC:
            raise Refused(errno.EINVAL, "the table is mapped PROT_READ|PROT_EXEC")
        if self.code is None or self.data is None:
            raise Refused(errno.EINVAL, "write both descriptors before mapping")
        if pid != self.creator:
            raise Refused(errno.EINVAL, "only the creating process maps the table")
        if mapped:
            raise Refused(errno.EEXIST, "the table is already mapped in this address space")

    def code_page(self) -> bytes:
        """Return the table page: one trampoline per slot, int3 elsewhere.
        Raises Refused(EINVAL) before both descriptors are written."""
        if self.code is None or self.data is None:
            raise Refused(errno.EINVAL, "write both descriptors before mapping")
        slots = []
        for index in range(self.code.ntrampolines):
            code = table_code(self.code.register, self.code.table + 8 * index,
                              self.data.register, self.data.table + 8 * index)
            slots.append(code.ljust(V2_CODE_SIZE, _INT3))
        return b"".join(slots).ljust(PAGE_SIZE, _INT3)


def _rex(w: bool, reg: int, rm: int) -> bytes:
    value = 0x40 | (0x8 if w else 0) | (0x4 if reg >= 8 else 0) | (0x1 if rm >= 8 else 0)
    return bytes([value]) if value != 0x40 else b""


def _load_address(reg: int, address: int) -> bytes:
    """movabs $address, %reg; mov (%reg), %reg."""
    movabs = _rex(True, 0, reg) + bytes([0xB8 + (reg & 7)]) + struct.pack("<Q", address)
    low = reg & 7
    if low == 5:  # rbp/r13 as a base needs a displacement: (%reg) is disp8 0
        modrm = bytes([0x40 | (low << 3) | low, 0])
    elif low == 4:  # rsp/r12 as a base needs a SIB byte
        modrm = bytes([(low << 3) | low, 0x24])
    else:
        modrm = bytes([(low << 3) | low])
    return movabs + _rex(True, reg, reg) + b"\x8b" + modrm


def table_code(code_reg: str, code_slot: int, data_reg: str, data_slot: int) -> bytes:
    """Return one table trampoline: load *code_slot into code_reg and
    *data_slot into data_reg, then jump to code_reg (at most 31 bytes)."""
    code, data = _HW[code_reg], _HW[data_reg]
    jump = _rex(False, 0, code) + bytes([0xFF, 0xE0 | (code & 7)])
    return _load_address(code, code_slot) + _load_address(data, data_slot) + jump
