"""trampfd for Python programs (ctypes): create, map and invoke trampolines.

A program using this module runs under `trampwatch run --emulate-trampfd --
python3 prog.py` (or on a kernel with the RFC applied); without either, the
first call fails with the errno of the kernel's process_madvise. Layouts and
numbers come from tracer.trampfd.layout, the same facts as
tracer/include/trampfd.h. Failures raise OSError with the kernel's errno.

    with Trampoline() as tramp:
        tramp.set_registers(rdx=16, rip=address_of(libc.strtol))
        hex_to_int = tramp.function(ctypes.c_long, ctypes.c_char_p, ctypes.c_void_p)
        hex_to_int(b"ff", None)                      # strtol("ff", NULL, 16) == 255

    table = TrampolineTable(4, code_reg="r11", data_reg="rdx")
    table.set(0, code=address_of(callback), data=7)  # entry 0 calls callback(a, b, 7)
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Callable, Iterable

from tracer.trampfd.layout import (
    CODE,
    DATA,
    INFO,
    MAP,
    REG,
    REGS_HEADER,
    REGS_MAX_SIZE,
    STACK_HEADER,
    TRAMPFD_ALLOWED_PCS_OFFSET,
    TRAMPFD_CODE,
    TRAMPFD_DATA,
    TRAMPFD_MAP_OFFSET,
    TRAMPFD_REGS_OFFSET,
    TRAMPFD_SET_SP,
    TRAMPFD_STACK_OFFSET,
    TRAMPFD_USER,
    USER,
    V1_NUMBERS,
    V1_REGISTERS,
    V2_NUMBERS,
    VALUE,
    VALUES_HEADER,
)

TRAMPFD_NR = 440
_PROT_EXEC_READ = 0x5

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long
_libc.mmap.restype = ctypes.c_void_p
_libc.mmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int,
                       ctypes.c_long)
_libc.munmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t)
_MAP_FAILED = ctypes.c_void_p(-1).value


def _check(result: int) -> int:
    if result == -1:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return result


def _syscall(nr: int, *args: int) -> int:
    padded = [ctypes.c_long(arg) for arg in args] + [ctypes.c_long(0)] * (6 - len(args))
    return _check(_libc.syscall(ctypes.c_long(nr), *padded))


def _mmap(length: int, prot: int, flags: int, fd: int, offset: int) -> int:
    address = _libc.mmap(None, length, prot, flags, fd, offset)
    if address in (None, _MAP_FAILED):
        _check(-1)
    return address


def address_of(function: object) -> int:
    """Return the address of a ctypes function (a library function or a
    CFUNCTYPE callback)."""
    return ctypes.cast(function, ctypes.c_void_p).value or 0


class Trampoline:
    """A v1 trampoline: a descriptor with register, stack and allowed-PC
    contexts, and (after map()) an address that runs them."""

    def __init__(self, nr: int = TRAMPFD_NR):
        user = ctypes.create_string_buffer(USER.pack(0, 0), USER.size)
        self.fd = _syscall(nr, TRAMPFD_USER, ctypes.addressof(user), 0)
        self.address = 0
        self._length = 0

    def set_registers(self, *pairs: tuple[str, int], **registers: int) -> None:
        """Set the register context: names as in `V1_REGISTERS` ('rdi',
        'r10', 'rip'...), as (name, value) pairs (kept in order, repeats
        allowed) and/or keywords. An empty call removes the context."""
        entries = [*pairs, *registers.items()]
        raw = REGS_HEADER.pack(len(entries), 0) + b"".join(
            REG.pack(V1_NUMBERS[name], 0, value & 0xFFFFFFFFFFFFFFFF) for name, value in entries)
        os.pwrite(self.fd, raw, TRAMPFD_REGS_OFFSET)

    def registers(self) -> list[tuple[str, int]]:
        """Return the register context as (name, value) pairs ([] when none)."""
        raw = os.pread(self.fd, REGS_MAX_SIZE, TRAMPFD_REGS_OFFSET)
        count = REGS_HEADER.unpack_from(raw)[0]
        entries = (REG.unpack_from(raw, REGS_HEADER.size + REG.size * i) for i in range(count))
        return [(V1_REGISTERS[name], value) for name, _, value in entries]

    def set_stack(self, data: bytes, offset: int = 0, set_sp: bool = False) -> None:
        """Push `data` `offset` bytes below the stack pointer at each
        invocation (and move the stack pointer there with set_sp). Empty
        data removes the context."""
        flags = TRAMPFD_SET_SP if set_sp else 0
        os.pwrite(self.fd, STACK_HEADER.pack(flags, offset, len(data), 0) + data, TRAMPFD_STACK_OFFSET)

    def set_allowed_pcs(self, pcs: Iterable[int]) -> None:
        """Restrict the targets later register contexts may name ([] lifts it)."""
        values = list(pcs)
        raw = VALUES_HEADER.pack(len(values), 0) + b"".join(VALUE.pack(pc) for pc in values)
        os.pwrite(self.fd, raw, TRAMPFD_ALLOWED_PCS_OFFSET)

    def map(self) -> int:
        """Map the trampoline as the descriptor says; return its address."""
        size, prot, flags, offset, ioffset, _ = MAP.unpack(os.pread(self.fd, MAP.size, TRAMPFD_MAP_OFFSET))
        self._length = size
        self.address = _mmap(size, prot, flags, self.fd, offset) + ioffset
        return self.address

    def function(self, restype: object, *argtypes: object) -> Callable[..., object]:
        """Return the trampoline (mapped on first use) as a callable ctypes
        function with this prototype."""
        if not self.address:
            self.map()
        return ctypes.CFUNCTYPE(restype, *argtypes)(self.address)

    def close(self) -> None:
        """Unmap the trampoline and close the descriptor."""
        if self.address:
            _libc.munmap(self.address & ~(self._length - 1), self._length)
            self.address = 0
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> Trampoline:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class TrampolineTable:
    """A v2 trampoline table: `count` trampolines in a read+execute page.
    Entry X loads data[X] into `data_reg`, code[X] into `code_reg` and jumps
    to it; both arrays are ordinary memory the program changes at will."""

    def __init__(self, count: int, code_reg: str = "r11", data_reg: str = "r10", nr: int = TRAMPFD_NR):
        info = ctypes.create_string_buffer(INFO.size)
        self.fd = _syscall(nr, ctypes.addressof(info))
        self.capacity, self.code_size, code_offset, _ = INFO.unpack(info.raw)
        self.code = (ctypes.c_uint64 * count)()
        self.data = (ctypes.c_uint64 * count)()
        os.pwrite(self.fd, CODE.pack(count, V2_NUMBERS[code_reg], ctypes.addressof(self.code)), TRAMPFD_CODE)
        os.pwrite(self.fd, DATA.pack(V2_NUMBERS[data_reg], 0, ctypes.addressof(self.data)), TRAMPFD_DATA)
        self.page = _mmap(self.code_size * self.capacity, _PROT_EXEC_READ, 0x02, self.fd, code_offset)

    def address(self, index: int) -> int:
        """Return the address of trampoline `index`."""
        if not 0 <= index < len(self.code):
            raise IndexError(f"trampoline {index} of {len(self.code)}")
        return self.page + self.code_size * index

    def set(self, index: int, code: int, data: int) -> None:
        """Make trampoline `index` call `code` with `data` in the data register."""
        self.address(index)
        self.code[index] = code
        self.data[index] = data & 0xFFFFFFFFFFFFFFFF

    def function(self, index: int, restype: object, *argtypes: object) -> Callable[..., object]:
        """Return trampoline `index` as a callable ctypes function."""
        return ctypes.CFUNCTYPE(restype, *argtypes)(self.address(index))

    def close(self) -> None:
        """Unmap the table and close the descriptor."""
        if self.page:
            _libc.munmap(self.page, self.code_size * self.capacity)
            self.page = 0
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
