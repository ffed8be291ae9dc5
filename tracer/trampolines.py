"""Recognise and decode trampolines in bytes read from a process: what shape
each one has, where it jumps and what value it hands its target.

Pure: recognisers take (address, bytes) and return Shapes; decoders that must
follow pointers (libffi closures, CPython ctypes thunks) take a `Reader`, a
function (address, size) -> bytes that returns b'' for unreadable memory. The
byte patterns are facts of the x86-64 encodings the producers emit:

- libffi >= 3.3 closures: [endbr64] lea r10,[rip-N] (the closure itself);
  jmp [rip+M] (a target slot right after the code); cif, fun and user_data
  follow the slot.
- libffi < 3.3 closures and GCC nested functions: [endbr64] mov r11,<target>;
  mov r10,<value>; jmp r11. libffi passes the closure (the trampoline's own
  address) in r10, GCC the static chain.
- libffi 3.4 static trampolines: [endbr64] sub rsp,16; mov [rsp],r10;
  mov r10,[rip+D]; mov [rsp+8],r10; mov r10,[rip+C]; jmp r10 -- D and C point
  into the parameter page one table size above the code (data, then target).
- trampfd v2 tables: movabs a,&code_table[X]; mov a,[a]; movabs b,&data_table[X];
  mov b,[b]; jmp a (any two registers), checked by decoding, not by bytes.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING

from tracer.abi import PF_X
from tracer.elf import ElfError, ElfInfo, read_at_vaddr

if TYPE_CHECKING:
    import capstone

Reader = Callable[[int, int], bytes]

LIBFFI_CLOSURE = "libffi-closure"
LIBFFI_STATIC = "libffi-static"
GCC_NESTED = "gcc-nested"
TRAMPFD_V2 = "trampfd-v2"
KINDS = (LIBFFI_CLOSURE, LIBFFI_STATIC, GCC_NESTED, TRAMPFD_V2)

# What the value a trampoline hands over is.
CLOSURE = "closure"
STATIC_CHAIN = "static-chain"
DATA = "data"

# x86-64 FFI_TRAMPOLINE_SIZE of libffi 3.4: a static trampoline's closure
# keeps cif, fun and user_data right after its (unused) trampoline bytes.
LIBFFI_TRAMPOLINE_SIZE = 32
# libffi < 3.3: a 24-byte trampoline, then cif, fun, user_data.
LIBFFI_LEGACY_TRAMPOLINE_SIZE = 24

_ENDBR = b"\xf3\x0f\x1e\xfa"
# No pattern starts with the optional endbr64: a literal first byte lets the
# regular expression engine skip ahead fast; _endbr() looks behind instead.
_LIBFFI_LEA_JMP = re.compile(rb"\x4c\x8d\x15(.{4})\xff\x25(.{4})", re.DOTALL)
_MOVABS_R11_R10_JMP = re.compile(
    rb"(?:\x49\xbb(.{8})|\x41\xbb(.{4}))(?:\x49\xba(.{8})|\x41\xba(.{4}))\x49\xff\xe3",
    re.DOTALL,
)
_LIBFFI_STATIC = re.compile(
    rb"\x48\x83\xec\x10\x4c\x89\x14\x24\x4c\x8b\x15(.{4})\x4c\x89\x54\x24\x08"
    rb"\x4c\x8b\x15(.{4})\x41\xff\xe2",
    re.DOTALL,
)
# Shapes that start with a choice of bytes are found from the literal jump
# that ends them, then matched backwards from each possible start.
_JMP_R11 = re.compile(rb"\x49\xff\xe3")
_MOVABS_LENGTHS = (23, 19, 15)
_JMP_REG = re.compile(rb"\xff[\xe0-\xe7]")
_V2_LENGTHS = range(26, 33)
# Two movabs-then-load pairs and a jump through a register; decoded with
# capstone afterwards, so the loads may use any base register encoding.
_TRAMPFD_V2 = re.compile(
    rb"[\x48\x49][\xb8-\xbf].{8}[\x48\x49\x4c\x4d]\x8b.{1,2}"
    rb"[\x48\x49][\xb8-\xbf].{8}[\x48\x49\x4c\x4d]\x8b.{1,2}\x41?\xff[\xe0-\xe7]",
    re.DOTALL,
)
# Every shape above ends in an indirect jump: jmp [rip+d] (ff 25) or jmp reg
# (ff e0..e7, after a REX prefix for r8..r15). Bytes without one hold no
# trampoline, whatever else they hold: a look for the 0xff (memchr) and then
# one search rule most code pages out.
_INDIRECT_JUMP = re.compile(rb"\xff[\x25\xe0-\xe7]")
# The furthest a trampoline's own slot may sit past its code.
_MAX_SLOT_DISTANCE = 64


@dataclass(frozen=True)
class Shape:
    """One recognised trampoline.

    `target` is the code address it jumps to when the bytes hold it; otherwise
    `target_slot` is the address of the word that does. Likewise `data` or
    `data_slot` for the value it hands over (`data_kind` says what that is).
    `size` counts code bytes only (not a slot that follows them).
    `fields` is where libffi's cif, fun and user_data words start, when known
    from the shape alone; `fields_from_data` is their offset from the data
    value instead (static trampolines pass the closure as data).
    """

    kind: str
    variant: str
    addr: int
    size: int
    data_kind: str
    target: int | None = None
    target_slot: int | None = None
    data: int | None = None
    data_slot: int | None = None
    fields: int | None = None
    fields_from_data: int | None = None


def _s32(raw: bytes) -> int:
    return struct.unpack("<i", raw)[0]


def _u64(raw: bytes, offset: int = 0) -> int:
    return struct.unpack_from("<Q", raw, offset)[0]


def _word(buf: bytes, pos: int) -> int | None:
    """The little-endian 64-bit word at `pos` of `buf`, or None past its end."""
    if pos >= 0 and pos + 8 <= len(buf):
        return _u64(buf, pos)
    return None


def find_trampolines(base: int, code: bytes) -> list[Shape]:
    """Return every trampoline recognised in `code`, which was read at `base`,
    sorted by address. Never raises."""
    if b"\xff" not in code or _INDIRECT_JUMP.search(code) is None:
        return []
    found: dict[int, Shape] = {}
    for shape in (*_libffi_closures(base, code), *_movabs_trampolines(base, code),
                  *_static_trampolines(base, code), *_trampfd_v2(base, code)):
        found.setdefault(shape.addr, shape)
    return [found[addr] for addr in sorted(found)]


def _endbr(code: bytes, pos: int) -> int:
    """The start of a trampoline whose first instruction after an optional
    endbr64 is at `pos`: pos - 4 when endbr64 precedes it, else pos."""
    return pos - 4 if pos >= 4 and code[pos - 4 : pos] == _ENDBR else pos


def _libffi_closures(base: int, code: bytes) -> list[Shape]:
    shapes = []
    for m in _LIBFFI_LEA_JMP.finditer(code):
        lea = m.start()
        # lea r10,[rip+d] must yield the closure, which starts with the trampoline.
        start = lea + 7 + _s32(m.group(1))
        if start not in (lea, _endbr(code, lea)) or start < 0:
            continue
        slot = lea + 13 + _s32(m.group(2))
        if not lea + 13 <= slot <= start + _MAX_SLOT_DISTANCE:
            continue
        variant = "libffi>=3.3" + (" endbr64" if start != lea else "")
        shapes.append(Shape(LIBFFI_CLOSURE, variant, base + start, slot - start, CLOSURE,
                            target=_word(code, slot), target_slot=base + slot, data=base + start,
                            fields=base + slot + 8))
    return shapes


def _movabs_trampolines(base: int, code: bytes) -> list[Shape]:
    shapes = []
    for jmp in _JMP_R11.finditer(code):
        end = jmp.end()
        m = next(filter(None, (_MOVABS_R11_R10_JMP.fullmatch(code, end - n, end)
                               for n in _MOVABS_LENGTHS if end - n >= 0)), None)
        if m is None:
            continue
        start = _endbr(code, m.start())
        target = _u64(m.group(1)) if m.group(1) else struct.unpack("<I", m.group(2))[0]
        value = _u64(m.group(3)) if m.group(3) else struct.unpack("<I", m.group(4))[0]
        endbr = " endbr64" if start != m.start() else ""
        size = m.end() - start
        if value == base + start:
            # r10 holds the trampoline's own address: a libffi closure.
            shapes.append(Shape(LIBFFI_CLOSURE, "libffi<3.3" + endbr, base + start, size, CLOSURE,
                                target=target, data=value,
                                fields=base + start + LIBFFI_LEGACY_TRAMPOLINE_SIZE))
        else:
            shapes.append(Shape(GCC_NESTED, "gcc x86-64" + endbr, base + start, size, STATIC_CHAIN,
                                target=target, data=value))
    return shapes


def _static_trampolines(base: int, code: bytes) -> list[Shape]:
    shapes = []
    for m in _LIBFFI_STATIC.finditer(code):
        first = m.start()
        start = _endbr(code, first)
        data_slot = first + 15 + _s32(m.group(1))
        target_slot = first + 27 + _s32(m.group(2))
        variant = "libffi 3.4 static" + (" endbr64" if start != first else "")
        shapes.append(Shape(LIBFFI_STATIC, variant, base + start, m.end() - start, CLOSURE,
                            target_slot=base + target_slot, data_slot=base + data_slot,
                            fields_from_data=LIBFFI_TRAMPOLINE_SIZE))
    return shapes


_CS: capstone.Cs | None = None


def _disassembler() -> capstone.Cs:
    """The one x86-64 disassembler, with operand details. capstone is
    imported here, on first use: it takes longer to import than inspecting
    most processes, and a region no shape matched needs no decoding."""
    global _CS
    if _CS is None:
        import capstone

        _CS = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64)
        _CS.detail = True
    return _CS


def _x86() -> ModuleType:
    """capstone's x86 constants, imported on first use like the disassembler."""
    from capstone import x86_const

    return x86_const


def _trampfd_v2(base: int, code: bytes) -> list[Shape]:
    shapes = []
    for jmp in _JMP_REG.finditer(code):
        end = jmp.end()
        m = next(filter(None, (_TRAMPFD_V2.fullmatch(code, end - n, end)
                               for n in _V2_LENGTHS if end - n >= 0)), None)
        if m is None:
            continue
        start = _endbr(code, m.start())
        shape = _evaluate_v2(base + start, code[start : m.end()])
        if shape is not None:
            shapes.append(shape)
    return shapes


def _evaluate_v2(addr: int, code: bytes) -> Shape | None:
    """Follow register values through a candidate v2 sequence: movabs gives an
    address, a load through it gives the slot's value, and the jump register's
    slot is the target; the other loaded register carries the data."""
    x86_const = _x86()
    loaded: dict[int, int] = {}
    addresses: dict[int, int] = {}
    for insn in _disassembler().disasm(code, addr):
        if insn.id == x86_const.X86_INS_ENDBR64:
            continue
        ops = insn.operands
        if insn.id == x86_const.X86_INS_MOVABS and len(ops) == 2 and ops[1].type == x86_const.X86_OP_IMM:
            addresses[ops[0].reg] = ops[1].imm & 0xFFFFFFFFFFFFFFFF
            loaded.pop(ops[0].reg, None)
        elif insn.id == x86_const.X86_INS_MOV and len(ops) == 2 and ops[1].type == x86_const.X86_OP_MEM:
            mem = ops[1].mem
            if mem.index or mem.base not in addresses or ops[0].size != 8:
                return None
            loaded[ops[0].reg] = addresses.pop(mem.base) + mem.disp
        elif insn.id == x86_const.X86_INS_JMP and ops and ops[0].type == x86_const.X86_OP_REG:
            target_slot = loaded.pop(ops[0].reg, None)
            if target_slot is None or len(loaded) != 1:
                return None
            (data_slot,) = loaded.values()
            return Shape(TRAMPFD_V2, "trampfd v2 table", addr, insn.address + insn.size - addr, DATA,
                         target_slot=target_slot, data_slot=data_slot)
        else:
            return None
    return None


def only_trampfd_table(base: int, code: bytes, shapes: list[Shape]) -> bool:
    """True when `code` (read at `base`) holds trampfd v2 trampolines and
    int3 padding (0xcc) and nothing else. `shapes` are those found in it."""
    if not shapes or any(shape.kind != TRAMPFD_V2 for shape in shapes):
        return False
    rest = bytearray(code)
    for shape in shapes:
        start = shape.addr - base
        rest[start : start + shape.size] = b"\xcc" * shape.size
    return rest.count(0xCC) == len(rest)


def disassemble(addr: int, code: bytes) -> tuple[str, ...]:
    """Return `code` (read at `addr`) as one 'address: mnemonic operands' line
    per instruction, stopping at the first byte that does not decode."""
    return tuple(f"{insn.address:#x}: {insn.mnemonic} {insn.op_str}".rstrip()
                 for insn in _disassembler().disasm(code, addr))


# --- libffi's hidden entry points ---------------------------------------------------


def _entry_name(info: ElfInfo, vaddr: int) -> str | None:
    """Name one closure entry point of libffi by its first instructions: the
    SSE variant saves xmm0 first; the static-trampoline ('_alt') variants load
    the closure from the stack and jump to a plain entry."""
    try:
        code = read_at_vaddr(info, vaddr, 48)
    except ElfError:
        return None
    x86_const = _x86()
    insns = [i for i in _disassembler().disasm(code, vaddr) if i.id != x86_const.X86_INS_ENDBR64][:3]
    if not insns:
        return None
    first = insns[0]
    if first.id == x86_const.X86_INS_SUB and first.operands[0].type == x86_const.X86_OP_REG \
            and first.operands[0].reg == x86_const.X86_REG_RSP:
        saves_xmm = any(
            len(i.operands) == 2 and i.operands[1].type == x86_const.X86_OP_REG
            and i.operands[1].reg == x86_const.X86_REG_XMM0 for i in insns[1:]
        )
        return "ffi_closure_unix64_sse" if saves_xmm else "ffi_closure_unix64"
    if first.id == x86_const.X86_INS_MOV and first.operands[0].type == x86_const.X86_OP_REG \
            and first.operands[0].reg == x86_const.X86_REG_R10 and len(insns) == 3 \
            and insns[2].id == x86_const.X86_INS_JMP and insns[2].operands[0].type == x86_const.X86_OP_IMM:
        plain = _entry_name(info, insns[2].operands[0].imm)
        return f"{plain}_alt" if plain else None
    return None


def libffi_entry_points(info: ElfInfo) -> dict[int, str]:
    """Return {ELF virtual address: name} for libffi's closure entry points,
    which are hidden symbols and so missing from a stripped libffi.

    They are found where ffi_prep_closure_loc (exported) takes their address
    (rip-relative lea into an executable segment) and named by their first
    instructions. Returns {} when `info` has no ffi_prep_closure_loc or the
    code does not look as expected. Never raises for unreadable files.
    """
    try:
        prep = info.symbols.find("ffi_prep_closure_loc")
        if prep is None:
            return {}
        code = read_at_vaddr(info, prep.addr, prep.size)
    except ElfError:
        return {}
    x86_const = _x86()
    names = {}
    for insn in _disassembler().disasm(code, prep.addr):
        if insn.id != x86_const.X86_INS_LEA or insn.operands[1].mem.base != x86_const.X86_REG_RIP:
            continue
        vaddr = insn.address + insn.size + insn.operands[1].mem.disp
        seg = info.segment_for_vaddr(vaddr)
        if seg is None or not seg.flags & PF_X:
            continue
        name = _entry_name(info, vaddr)
        if name is not None:
            names[vaddr] = name
    return names


# --- libffi closures and CPython's ctypes thunks -------------------------------------


@dataclass(frozen=True)
class ClosureFields:
    """The words of an ffi_closure after its trampoline, and its cif's head."""

    cif: int
    fun: int
    user_data: int
    abi: int | None
    nargs: int | None


def read_closure_fields(read: Reader, fields: int) -> ClosureFields | None:
    """Return the cif, fun and user_data words at `fields` (and the cif's abi
    and argument count when the cif is readable), or None when unreadable."""
    raw = read(fields, 24)
    if len(raw) < 24:
        return None
    cif, fun, user_data = struct.unpack("<3Q", raw)
    head = read(cif, 8) if cif else b""
    abi, nargs = struct.unpack("<II", head) if len(head) == 8 else (None, None)
    return ClosureFields(cif, fun, user_data, abi, nargs)


@dataclass(frozen=True)
class PythonCallback:
    """A ctypes callback object found through a closure's user_data.

    `thunk` is the CThunkObject, `callable` the Python object it calls and
    `type_name` that object's type; `qualname` and `module` are set for
    Python functions and bound methods (whose function is shown)."""

    thunk: int
    callable: int
    type_name: str
    qualname: str | None
    module: str | None


# Offsets in CPython 3.10-3.13 (default, non-free-threaded builds), x86-64.
_OB_TYPE = 8
_TP_NAME = 24
_THUNK_PCL_EXEC = 32
_THUNK_CIF = 40
_THUNK_CALLABLE = 88
_FUNC_QUALNAME = 40
_FUNC_MODULE = 104
_METHOD_FUNC = 16
_STR_LENGTH = 16
_STR_STATE = 32
SUPPORTED_PYTHON = ((3, 10), (3, 11), (3, 12), (3, 13))
_THUNK_TYPE_NAMES = frozenset({"_ctypes.CThunkObject", "CThunkObject"})
_MAX_NAME = 512


def _c_string(read: Reader, addr: int, limit: int = 128) -> str | None:
    raw = read(addr, limit) if addr else b""
    end = raw.find(b"\0")
    if end < 0:
        return None
    try:
        return raw[:end].decode("utf-8")
    except UnicodeDecodeError:
        return None


def _type_name(read: Reader, obj: int) -> str | None:
    raw = read(obj + _OB_TYPE, 8) if obj else b""
    if len(raw) < 8:
        return None
    tp = _u64(raw)
    name_ptr = read(tp + _TP_NAME, 8) if tp else b""
    return _c_string(read, _u64(name_ptr)) if len(name_ptr) == 8 else None


def _read_str(read: Reader, obj: int, version: tuple[int, int]) -> str | None:
    """Decode a compact str object; None when `obj` is not one."""
    if not obj or _type_name(read, obj) != "str":
        return None
    head = read(obj, 40)
    if len(head) < 40:
        return None
    length = struct.unpack_from("<q", head, _STR_LENGTH)[0]
    state = struct.unpack_from("<I", head, _STR_STATE)[0]
    kind, compact, ascii_only = (state >> 2) & 7, (state >> 5) & 1, (state >> 6) & 1
    if not compact or kind not in (1, 2, 4) or not 0 <= length <= _MAX_NAME:
        return None
    # PyASCIIObject lost its wstr pointer in 3.12; the compact header its
    # wstr_length too.
    ascii_size, compact_size = (48, 72) if version < (3, 12) else (40, 56)
    data = read(obj + (ascii_size if ascii_only else compact_size), length * kind)
    if len(data) < length * kind:
        return None
    codec = {1: "latin-1", 2: "utf-16-le", 4: "utf-32-le"}[kind]
    return data.decode(codec, errors="replace")


def read_ctypes_callback(
    read: Reader, version: tuple[int, int], user_data: int, code: int, cif: int
) -> tuple[PythonCallback | None, str]:
    """Follow a libffi closure's user_data into CPython's ctypes.

    `code` is the closure's executable address and `cif` the cif pointer the
    closure holds: a CThunkObject keeps the one and embeds the other, which
    confirms the layout. Returns (callback, '') or (None, why not). Only
    CPython 3.10-3.13 layouts are known.
    """
    if version not in SUPPORTED_PYTHON:
        return None, f"CPython {version[0]}.{version[1]} object layouts are not known to trampwatch"
    type_name = _type_name(read, user_data)
    if type_name not in _THUNK_TYPE_NAMES:
        return None, f"user_data is not a ctypes CThunkObject (type {type_name or 'unreadable'})"
    raw = read(user_data, _THUNK_CALLABLE + 8)
    if len(raw) < _THUNK_CALLABLE + 8:
        return None, "the CThunkObject is unreadable"
    if _u64(raw, _THUNK_PCL_EXEC) != code or cif != user_data + _THUNK_CIF:
        return None, "the CThunkObject does not point back at this closure (unknown layout)"
    func = _u64(raw, _THUNK_CALLABLE)
    func_type = _type_name(read, func)
    if func_type is None:
        return None, "the callback's callable is unreadable"
    target = func
    if func_type == "method":
        raw_func = read(func + _METHOD_FUNC, 8)
        target = _u64(raw_func) if len(raw_func) == 8 else 0
    qualname = module = None
    if _type_name(read, target) == "function":
        fields = read(target, _FUNC_MODULE + 8)
        if len(fields) == _FUNC_MODULE + 8:
            qualname = _read_str(read, _u64(fields, _FUNC_QUALNAME), version)
            module = _read_str(read, _u64(fields, _FUNC_MODULE), version)
    return PythonCallback(user_data, func, func_type, qualname, module), ""
