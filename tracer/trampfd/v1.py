"""v1 trampfd: one fault-based trampoline per descriptor.

A `TrampolineV1` holds the three contexts the program writes (registers,
stack, allowed PCs) and answers the descriptor's file operations exactly as
the RFC's kernel side does; `invoke()` turns a fault at the trampoline into
the register and stack changes the target must see. Pure: the caller reads
and writes the program's memory.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

from ..abi import MAP_PRIVATE
from .layout import (
    MAP,
    PAGE_SIZE,
    REG,
    REGS_HEADER,
    REGS_MAX_SIZE,
    STACK_HEADER,
    STACK_MAX_SIZE,
    TRAMPFD_ALLOWED_PCS_OFFSET,
    TRAMPFD_MAP_OFFSET,
    TRAMPFD_MAX_DATA_SIZE,
    TRAMPFD_MAX_PCS,
    TRAMPFD_MAX_REGS,
    TRAMPFD_MAX_STACK_OFFSET,
    TRAMPFD_NUM_OFFSETS,
    TRAMPFD_NUM_TYPES,
    TRAMPFD_REGS_OFFSET,
    TRAMPFD_SET_SP,
    TRAMPFD_STACK_FLAGS,
    TRAMPFD_STACK_OFFSET,
    USER,
    V1_FIRST_64,
    V1_REG_MAX,
    V1_REGISTERS,
    V1_RIP,
    VALUE,
    VALUES_HEADER,
    Refused,
)

# Where the trampoline sits in its page (struct trampfd_map.ioffset).
IOFFSET = 0
_MAP_STRUCT = MAP.pack(PAGE_SIZE, 0, MAP_PRIVATE, 0, IOFFSET, 0)
_VALUES_MAX_SIZE = VALUES_HEADER.size + VALUE.size * TRAMPFD_MAX_PCS
_U64 = (1 << 64) - 1

Fetch = Callable[[int], bytes]
"""Reads `count` bytes of the caller's buffer; raises Refused(EFAULT)."""


def check_create(kind: int, data: int, flags: int) -> None:
    """Check trampfd_create(type, data, flags)'s arguments before the user
    struct is read. Raises Refused(EINVAL)."""
    if kind >= TRAMPFD_NUM_TYPES:
        raise Refused(errno.EINVAL, f"type {kind} is not TRAMPFD_USER")
    if data == 0:
        raise Refused(errno.EINVAL, "data is NULL")
    if flags != 0:
        raise Refused(errno.EINVAL, "flags must be 0")


def check_user(raw: bytes) -> None:
    """Check struct trampfd_user: both fields must be 0. Raises Refused(EINVAL)."""
    flags, reserved = USER.unpack(raw)
    if flags or reserved:
        raise Refused(errno.EINVAL, "trampfd_user.flags and .reserved must be 0")


@dataclass(frozen=True)
class RegisterContext:
    """A register context as written: (name, value) pairs, in order."""

    entries: tuple[tuple[int, int], ...]

    @cached_property
    def loaded(self) -> dict[str, int]:
        """The register values a trampoline loads, by ptrace name (the last
        of a repeated name wins); 'rip' is the target. Shared: do not change."""
        return {V1_REGISTERS[name]: value for name, value in self.entries}

    def target(self) -> int:
        """Return the PC the context jumps to (the last rip written)."""
        return next(value for name, value in reversed(self.entries) if name == V1_RIP)

    def raw(self) -> bytes:
        """Return the context as struct trampfd_regs bytes."""
        return REGS_HEADER.pack(len(self.entries), 0) + b"".join(
            REG.pack(name, 0, value) for name, value in self.entries)


@dataclass(frozen=True)
class StackContext:
    """A stack context: `data` pushed `offset` bytes below the stack pointer."""

    flags: int
    offset: int
    data: bytes

    def raw(self) -> bytes:
        """Return the context as struct trampfd_stack bytes."""
        return STACK_HEADER.pack(self.flags, self.offset, len(self.data), 0) + self.data


@dataclass(frozen=True)
class Patch:
    """What an invocation changes: registers by ptrace name (rip, and rsp
    with TRAMPFD_SET_SP, included) and the data copied to `stack_addr`."""

    registers: dict[str, int]
    stack_addr: int = 0
    stack_data: bytes = b""


def _check_buffer(buf: int, count: int) -> None:
    if buf == 0 or count == 0:
        raise Refused(errno.EINVAL, "NULL buffer or zero count")


def _fit(raw: bytes, count: int) -> bytes:
    return raw[:count].ljust(count, b"\0")


class TrampolineV1:
    """The state behind one v1 trampfd."""

    version = 1

    def __init__(self) -> None:
        self.regs: RegisterContext | None = None
        self.stack: StackContext | None = None
        self.allowed_pcs: tuple[int, ...] | None = None

    # --- file operations -----------------------------------------------------------

    @staticmethod
    def seek(offset: int, whence: int) -> int:
        """Return the new file position; only SEEK_SET to 0..3 is accepted.
        Raises Refused(EINVAL)."""
        if whence != os.SEEK_SET or not 0 <= offset < TRAMPFD_NUM_OFFSETS:
            raise Refused(errno.EINVAL, "lseek accepts only SEEK_SET to offsets 0..3")
        return offset

    def read(self, offset: int, buf: int, count: int) -> bytes:
        """Return the `count` bytes a read at `offset` stores in the buffer.

        The map struct needs count == 24 exactly; a context read needs at
        least its header and at most its largest size, and gets the context
        (a zeroed header when none is set) followed by zeros. Raises
        Refused(EINVAL).
        """
        _check_buffer(buf, count)
        if offset == TRAMPFD_MAP_OFFSET:
            if count != MAP.size:
                raise Refused(errno.EINVAL, "the map struct is read whole")
            return _MAP_STRUCT
        if offset == TRAMPFD_REGS_OFFSET:
            if not REGS_HEADER.size <= count <= REGS_MAX_SIZE:
                raise Refused(errno.EINVAL, "bad count for the register context")
            return _fit(self.regs.raw() if self.regs else b"", count)
        if offset == TRAMPFD_STACK_OFFSET:
            if not STACK_HEADER.size <= count <= STACK_MAX_SIZE:
                raise Refused(errno.EINVAL, "bad count for the stack context")
            return _fit(self.stack.raw() if self.stack else b"", count)
        raise Refused(errno.EINVAL, f"offset {offset} cannot be read")

    def write(self, offset: int, buf: int, count: int, fetch: Fetch) -> int:
        """Apply a write of `count` bytes at `offset`; return count.
        Raises Refused (EINVAL, or EFAULT from fetch)."""
        _check_buffer(buf, count)
        if offset == TRAMPFD_REGS_OFFSET:
            self._write_regs(count, fetch)
        elif offset == TRAMPFD_STACK_OFFSET:
            self._write_stack(count, fetch)
        elif offset == TRAMPFD_ALLOWED_PCS_OFFSET:
            self._write_allowed_pcs(count, fetch)
        else:
            raise Refused(errno.EINVAL, f"offset {offset} cannot be written")
        return count

    def _write_regs(self, count: int, fetch: Fetch) -> None:
        if not REGS_HEADER.size <= count <= REGS_MAX_SIZE:
            raise Refused(errno.EINVAL, "bad count for a register context")
        raw = fetch(count)
        nregs, reserved = REGS_HEADER.unpack_from(raw)
        if reserved or nregs > TRAMPFD_MAX_REGS or count != REGS_HEADER.size + REG.size * nregs:
            raise Refused(errno.EINVAL, "bad register context header")
        if nregs == 0:
            self.regs = None
            return
        entries = []
        for index in range(nregs):
            name, reserved, value = REG.unpack_from(raw, REGS_HEADER.size + REG.size * index)
            if reserved or not V1_FIRST_64 <= name < V1_REG_MAX:
                raise Refused(errno.EINVAL, f"register entry {index}: not a 64-bit name, or reserved set")
            entries.append((name, value))
        context = RegisterContext(tuple(entries))
        if not any(name == V1_RIP for name, _ in entries) or context.target() == 0:
            raise Refused(errno.EINVAL, "the register context must set rip to a non-zero value")
        if self.allowed_pcs is not None and context.target() not in self.allowed_pcs:
            raise Refused(errno.EINVAL, "rip is not an allowed PC")
        self.regs = context

    def _write_stack(self, count: int, fetch: Fetch) -> None:
        if not STACK_HEADER.size <= count <= STACK_MAX_SIZE:
            raise Refused(errno.EINVAL, "bad count for a stack context")
        raw = fetch(count)
        flags, offset, size, reserved = STACK_HEADER.unpack_from(raw)
        if (flags & ~TRAMPFD_STACK_FLAGS or reserved or offset > TRAMPFD_MAX_STACK_OFFSET
                or size > TRAMPFD_MAX_DATA_SIZE or count != STACK_HEADER.size + size):
            raise Refused(errno.EINVAL, "bad stack context")
        self.stack = StackContext(flags, offset, raw[STACK_HEADER.size:]) if size else None

    def _write_allowed_pcs(self, count: int, fetch: Fetch) -> None:
        if not VALUES_HEADER.size <= count <= _VALUES_MAX_SIZE:
            raise Refused(errno.EINVAL, "bad count for the allowed PCs")
        raw = fetch(count)
        nvalues, reserved = VALUES_HEADER.unpack_from(raw)
        if reserved or nvalues > TRAMPFD_MAX_PCS or count != VALUES_HEADER.size + VALUE.size * nvalues:
            raise Refused(errno.EINVAL, "bad allowed-PC list header")
        values = tuple(VALUE.unpack_from(raw, VALUES_HEADER.size + VALUE.size * i)[0] for i in range(nvalues))
        if 0 in values:
            raise Refused(errno.EINVAL, "an allowed PC is 0")
        self.allowed_pcs = values or None

    # --- mapping and invocation ---------------------------------------------------------

    @staticmethod
    def check_map(length: int, prot: int, flags: int, offset: int) -> None:
        """Check an mmap of the descriptor against struct trampfd_map.
        Raises Refused(EINVAL)."""
        if (length, prot, flags, offset) != (PAGE_SIZE, 0, MAP_PRIVATE, 0):
            raise Refused(errno.EINVAL, "map with exactly (one page, PROT_NONE, MAP_PRIVATE, offset 0)")

    def invoke(self, mapping: int, pc: int, sp: int) -> Patch | None:
        """Return the changes an instruction fetch at `pc` in the trampoline
        mapped at `mapping` makes, with the stack pointer at `sp`; None when
        the fault is an ordinary one (the process gets SIGSEGV)."""
        if pc != mapping + IOFFSET:
            return None
        if self.regs is None:
            return None
        stack = self.stack
        if stack is None:
            return Patch(self.regs.loaded)
        registers = dict(self.regs.loaded)
        new_sp = (sp - len(stack.data) - stack.offset) & _U64
        if stack.flags & TRAMPFD_SET_SP:
            # Aligned as right after a call: (rsp + 8) is a multiple of 16.
            new_sp = ((new_sp & ~0xF) - 8) & _U64
            registers["rsp"] = new_sp
        return Patch(registers, new_sp, stack.data)
