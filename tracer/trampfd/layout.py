"""trampfd's ABI, bit-exact with the RFC: constants, struct layouts and the
two register numberings (docs/trampfd.md).

Every struct has the same field widths and offsets on 32 and 64 bit (only
u32 and u64 fields, u64s 8-aligned), so one little-endian `struct.Struct`
describes each. tracer/include/trampfd.h is the C view of the same facts;
tests/test_trampfd_layout.py compiles it and checks both agree.
"""

from __future__ import annotations

import struct

PAGE_SIZE = 4096


class Refused(Exception):
    """The emulated kernel refuses an operation: the call returns -errno."""

    def __init__(self, errno: int, why: str = ""):
        super().__init__(why or f"errno {errno}")
        self.errno = errno


# --- v1: fault-based trampolines ---------------------------------------------------

TRAMPFD_USER = 0
TRAMPFD_NUM_TYPES = 1

TRAMPFD_MAP_OFFSET = 0
TRAMPFD_REGS_OFFSET = 1
TRAMPFD_STACK_OFFSET = 2
TRAMPFD_ALLOWED_PCS_OFFSET = 3
TRAMPFD_NUM_OFFSETS = 4

TRAMPFD_MAX_REGS = 40
TRAMPFD_MAX_DATA_SIZE = 64
TRAMPFD_MAX_STACK_OFFSET = 256
TRAMPFD_MAX_PCS = 16
TRAMPFD_SET_SP = 0x1
TRAMPFD_STACK_FLAGS = TRAMPFD_SET_SP

USER = struct.Struct("<II")  # struct trampfd_user { u32 flags; u32 reserved; }
MAP = struct.Struct("<6I")  # struct trampfd_map { size, prot, flags, offset, ioffset, reserved }
REGS_HEADER = struct.Struct("<II")  # struct trampfd_regs { u32 nregs; u32 reserved; regs[] }
REG = struct.Struct("<IIQ")  # struct trampfd_reg { u32 name; u32 reserved; u64 value; }
STACK_HEADER = struct.Struct("<4I")  # struct trampfd_stack { flags, offset, size, reserved; data[] }
VALUES_HEADER = struct.Struct("<II")  # struct trampfd_values { u32 nvalues; u32 reserved; values[] }
VALUE = struct.Struct("<Q")

REGS_MAX_SIZE = REGS_HEADER.size + REG.size * TRAMPFD_MAX_REGS
STACK_MAX_SIZE = STACK_HEADER.size + TRAMPFD_MAX_DATA_SIZE

# --- v2: trampoline tables ----------------------------------------------------------

TRAMPFD_CODE = 0
TRAMPFD_DATA = 1

INFO = struct.Struct("<4I")  # struct trampfd_info { ntrampolines, code_size, code_offset, reserved }
CODE = struct.Struct("<IIQ")  # struct trampfd_code { u32 ntrampolines; u32 reg; u64 table; }
DATA = struct.Struct("<IIQ")  # struct trampfd_data { u32 reg; u32 reserved; u64 table; }

# Each table trampoline is at most 31 bytes of x86-64 (see v2.table_code);
# slots are 32 bytes, so a page holds 128 and the code stays 32-byte aligned.
V2_CODE_SIZE = 32
V2_NTRAMPOLINES = PAGE_SIZE // V2_CODE_SIZE
V2_CODE_OFFSET = PAGE_SIZE  # the mmap offset of the table: page offset 1

# --- register names (x86-64) -------------------------------------------------------------

_GPR32 = ("eax", "ebx", "ecx", "edx", "esi", "edi", "ebp")
_GPR64 = ("rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "r8", "r9", "r10", "r11", "r12", "r13", "r14",
          "r15")

# v1 (register contexts): 32-bit names and eip, then the 64-bit names and rip.
V1_REGISTERS: tuple[str, ...] = (*_GPR32, "eip", *_GPR64, "rip")
V1_REG_MAX = len(V1_REGISTERS)  # 24, the end marker
V1_FIRST_64 = V1_REGISTERS.index("rax")  # 8
V1_RIP = V1_REGISTERS.index("rip")  # 23

# v2 (code and data descriptors): no PC names.
V2_REGISTERS: tuple[str, ...] = (*_GPR32, *_GPR64)
V2_REG_MAX = len(V2_REGISTERS)  # 22, the end marker
V2_FIRST_64 = V2_REGISTERS.index("rax")  # 7

V1_NUMBERS: dict[str, int] = {name: number for number, name in enumerate(V1_REGISTERS)}
V2_NUMBERS: dict[str, int] = {name: number for number, name in enumerate(V2_REGISTERS)}
