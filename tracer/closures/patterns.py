"""The trampolines emulate mode knows, recognised from their bytes.

A program that writes a trampoline into memory it asked to be writable and
executable got that memory without PROT_EXEC, so jumping there faults with
the PC on the trampoline's first byte. `match` reads the bytes there and
returns what running them would do (registers, PC, a word pushed), or None
for anything it does not know, which then gets its SIGSEGV. PaX EMUTRAMP
recognises the same shapes in its kernel fault handler.

Known shapes (bytes as real programs write them; docs/closures.md lists
them with their sources):

x86-64
- GCC nested function: [endbr64] movabs $fn,%r11 (49 bb imm64, or mov
  $fn,%r11d 41 bb imm32); movabs $chain,%r10 (49 ba imm64, or 41 ba imm32);
  jmp *%r11 (49 ff e3).
- ruby-ffi's method trampoline: movabs $ctx,%rcx (48 b9 imm64); movabs
  $fn,%r11; jmp *%r11 (41 ff e3).
- libffi 3.0-3.2: movabs $handler,%r11; movabs $closure,%r10; clc or stc
  (f8/f9: the carry flag tells the handler whether SSE registers are used);
  jmp *%r11.
- libffi 3.3+: [endbr64] lea disp(%rip),%r10 (4c 8d 15 disp32); jmp
  *disp(%rip) (ff 25 disp32): r10 is the trampoline's own address and the
  handler's address is read from the trampoline (+16 in 3.3, +24 in 3.4).

i386
- GCC nested functions and libffi closures: [endbr32] mov $imm32,%ecx
  (b9: GCC's static chain), mov $imm32,%eax (b8: libffi's closure, GCC's
  chain for fastcall) or push $imm32 (68: libffi's FFI_REGISTER, GCC's
  chain for regparm(3)); jmp rel32 (e9).
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

ENDBR64 = b"\xf3\x0f\x1e\xfa"
ENDBR32 = b"\xf3\x0f\x1e\xfb"
# How many bytes at the PC are enough for every shape (the longest: an
# endbr64, two movabs, clc and the jmp).
CODE_WINDOW = 32
_CARRY = 0x1
_U32 = struct.Struct("<I")
_I32 = struct.Struct("<i")
_U64 = struct.Struct("<Q")
_MASK32 = 0xFFFFFFFF
_MASK64 = 0xFFFFFFFFFFFFFFFF

Fetch = Callable[[int, int], bytes]
"""Read `size` bytes of the program's memory at an address (b'' if unmapped)."""


@dataclass(frozen=True)
class Invocation:
    """What running a recognised trampoline does.

    `registers` are ptrace register names with their new values (`rip` is
    the target), `data` the pointer it hands over (static chain or closure),
    `push` a (stack address, bytes) the trampoline pushes, if any."""

    pattern: str
    registers: Mapping[str, int]
    data: int
    push: tuple[int, bytes] | None = field(default=None)
    # True when it depends on nothing but the bytes and the PC (no flags, no stack).
    pure: bool = True

    @property
    def target(self) -> int:
        """The address the trampoline jumps to."""
        return self.registers["rip"]


def match(arch: str, pc: int, code: bytes, regs: Mapping[str, int], fetch: Fetch) -> Invocation | None:
    """Return the invocation of the trampoline whose bytes `code` start at
    `pc` (regs: the thread's registers, fetch: reads its memory), or None
    when the bytes are no known trampoline."""
    if arch == "x86_64":
        return _match_x86_64(pc, code, regs, fetch)
    if arch == "i386":
        return _match_i386(pc, code, regs)
    return None


# 64-bit immediate loads a trampoline may make: (prefix, opcode) -> register.
# movabs is REX.W B8+r imm64; the short form (REX.B B8+r imm32) zero-extends.
_IMM64 = {(0x49, 0xBB): "r11", (0x49, 0xBA): "r10", (0x48, 0xB9): "rcx"}
_IMM32 = {(0x41, 0xBB): "r11", (0x41, 0xBA): "r10"}
# jmp *%r11, with or without a (meaningless) REX.W.
_JMP_R11 = (b"\x49\xff\xe3", b"\x41\xff\xe3")
_LEA_R10_RIP = b"\x4c\x8d\x15"
_JMP_RIP = b"\xff\x25"


def _imm_loads(code: bytes, at: int) -> tuple[list[tuple[str, int]], int]:
    """The immediate register loads starting at `at`: [(register, value)]
    and the offset after them."""
    loads = []
    while len(loads) < 2:
        key = tuple(code[at:at + 2])
        if key in _IMM64 and len(code) >= at + 10:
            loads.append((_IMM64[key], _U64.unpack_from(code, at + 2)[0]))
            at += 10
        elif key in _IMM32 and len(code) >= at + 6:
            loads.append((_IMM32[key], _U32.unpack_from(code, at + 2)[0]))
            at += 6
        else:
            break
    return loads, at


def _match_x86_64(pc: int, code: bytes, regs: Mapping[str, int], fetch: Fetch) -> Invocation | None:
    endbr = code.startswith(ENDBR64)
    at = len(ENDBR64) if endbr else 0
    prefix = "endbr64, " if endbr else ""
    loads, tail = _imm_loads(code, at)
    values = dict(loads)
    if len(loads) == 2 and len(values) == 2 and "r11" in values:
        target = values["r11"]
        other, data = next((name, value) for name, value in loads if name != "r11")
        if code[tail:tail + 3] in _JMP_R11:
            kind = "gcc nested function" if other == "r10" else "ruby-ffi method trampoline"
            return Invocation(f"{kind} ({prefix}mov r11, {other}; jmp *r11)", {**values, "rip": target}, data)
        carry_byte = code[tail:tail + 1]
        if (carry_byte in (b"\xf8", b"\xf9") and code[tail + 1:tail + 4] in _JMP_R11 and not endbr
                and other == "r10"):
            carry = carry_byte == b"\xf9"
            eflags = (regs["eflags"] | _CARRY) if carry else (regs["eflags"] & ~_CARRY)
            return Invocation("libffi 3.0-3.2 closure (movabs r11, r10; " + ("stc" if carry else "clc")
                              + "; jmp *r11)", {**values, "eflags": eflags, "rip": target}, data, pure=False)
        return None
    if code[at:at + 3] == _LEA_R10_RIP and code[at + 7:at + 9] == _JMP_RIP and len(code) >= at + 13:
        lea_end = pc + at + 7
        data = (lea_end + _I32.unpack_from(code, at + 3)[0]) & _MASK64
        slot = (pc + at + 13 + _I32.unpack_from(code, at + 9)[0]) & _MASK64
        raw = fetch(slot, 8)
        if len(raw) != 8:
            return None
        target = _U64.unpack(raw)[0]
        # Pure only when the handler's address lies in the bytes given (libffi
        # keeps it right after the code); read from elsewhere, it may change.
        inside = pc <= slot and slot + 8 <= pc + len(code)
        return Invocation(f"libffi 3.3+ closure ({prefix}lea r10; jmp *mem)",
                          {"r10": data, "rip": target}, data, pure=inside)
    return None


# i386 immediate loads: opcode -> (register set, ptrace name); who writes them.
_I386_MOV = {0xB8: ("eax", "rax"), 0xB9: ("ecx", "rcx")}
_PUSH_IMM32 = 0x68
_JMP_REL32 = 0xE9


def _match_i386(pc: int, code: bytes, regs: Mapping[str, int]) -> Invocation | None:
    endbr = code.startswith(ENDBR32)
    at = len(ENDBR32) if endbr else 0
    if len(code) < at + 10 or code[at + 5] != _JMP_REL32:
        return None
    opcode = code[at]
    value = _U32.unpack_from(code, at + 1)[0]
    target = (pc + at + 10 + _I32.unpack_from(code, at + 6)[0]) & _MASK32
    prefix = "endbr32, " if endbr else ""
    if opcode in _I386_MOV:
        register, name = _I386_MOV[opcode]
        return Invocation(f"i386 trampoline ({prefix}mov ${register}; jmp rel32)",
                          {name: value, "rip": target}, value)
    if opcode == _PUSH_IMM32:
        sp = (regs["rsp"] - 4) & _MASK32
        return Invocation(f"i386 trampoline ({prefix}push imm32; jmp rel32)",
                          {"rsp": sp, "rip": target}, value, push=(sp, _U32.pack(value)), pure=False)
    return None
