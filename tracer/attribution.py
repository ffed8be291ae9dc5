"""Name the code that made a memory syscall: the first return address outside
libc, resolved through the address space's mappings to an object and symbol.

At a syscall stop the instruction pointer is inside libc's wrapper (or, for
i386, the vDSO's __kernel_vsyscall), which says nothing about who asked. The
Attributor walks the saved stack words and takes the first one that points
into a non-libc executable file mapping *and* follows a call instruction in
that file -- checked against the file's bytes, never the tracee's memory.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Collection, Sequence
from typing import TYPE_CHECKING, NamedTuple, Protocol

from tracer.abi import PF_X, Prot
from tracer.elf import ElfCache, ElfError, ElfLayout, map_to_vaddr, read_at_vaddr, symbolize

if TYPE_CHECKING:
    import capstone

# Basenames of the C library (glibc, musl) and of glibc's dynamic loader.
# Patterns, compiled (and cached by re) at the first attribution: a run that
# reports nothing never needs them.
_LIBC = r"libc\.so(\.\d+)?|libc-[\d.]+\.so|libc\.musl-.*|ld-musl-.*"
_LOADER = r"ld-linux.*\.so.*|ld-[\d.]+\.so|ld\.so(\.\d+)?"
_DELETED = " (deleted)"
# Lengths of `call rel32` first, then the `call r/m` (ff /2) forms: register,
# memory with SIB/displacement, REX- or segment-prefixed.
_CALL_LENGTHS = (5, 2, 3, 4, 6, 7, 8)
_CALL_REL32 = 0xE8
_CALL_INDIRECT = 0xFF
_MODRM_DISP32_CALL = 0x15  # mod 00, reg 2 (call), r/m 101: [rip+disp32] (64-bit), [disp32] (32-bit)
_MODRM_REG_CALL = 0xD0  # mod 11, reg 2 (call), r/m a register
_CACHE_LIMIT = 65536


class RegionLike(Protocol):
    """What attribution needs of a mapping; MapEntry and shadow regions fit."""

    @property
    def start(self) -> int: ...
    @property
    def end(self) -> int: ...
    @property
    def prot(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def path(self) -> str: ...
    @property
    def dev(self) -> int: ...
    @property
    def inode(self) -> int: ...


class Caller(NamedTuple):
    """Who made a call. `object` is the mapped file's path as the maps show
    it, '[anon]' for anonymous memory or the kernel's name ('[stack]',
    '[vdso]'); None when `addr` is in no executable mapping. `offset` is from
    the start of `symbol` when a symbol is known, otherwise the file offset of
    `addr` for a file mapping, or its offset in the region for other memory."""

    addr: int
    object: str | None
    symbol: str | None
    offset: int


class _ExecIndex:
    """The executable regions of one address space, sorted for bisect."""

    def __init__(self, regions: Sequence[RegionLike]):
        self.regions = sorted((r for r in regions if r.prot & Prot.EXEC), key=lambda r: r.start)
        self._starts = [r.start for r in self.regions]

    def find(self, addr: int) -> RegionLike | None:
        index = bisect.bisect_right(self._starts, addr) - 1
        if index >= 0 and addr < self.regions[index].end:
            return self.regions[index]
        return None


def _basename(path: str) -> str:
    return path.rsplit("/", 1)[-1]


def is_libc(path: str) -> bool:
    """True when `path` names a C library (glibc's libc.so.6, libc-2.x.so, musl)."""
    return re.fullmatch(_LIBC, _basename(path.removesuffix(_DELETED))) is not None


def is_loader(path: str) -> bool:
    """True when `path` names glibc's dynamic loader (ld-linux-x86-64.so.2, ...)."""
    return re.fullmatch(_LOADER, _basename(path.removesuffix(_DELETED))) is not None


def _is_file(path: str) -> bool:
    """True for a mapping of a file we may open: not anonymous, not a kernel
    region, not a file deleted (or replaced) since it was mapped."""
    return path.startswith("/") and not path.endswith(_DELETED)


def _object_name(region: RegionLike) -> str:
    return region.path or "[anon]"


class Attributor:
    """Attributes syscalls to callers; holds the ELF and call-site caches, so
    keep one for the life of a trace."""

    def __init__(self, elf_cache: ElfCache | None = None, max_words: int = 512,
                 unreadable_devices: Collection[int] = ()):
        """`unreadable_devices`: devices whose files are never read (a live
        collection: filesystems mounted after a run started, which the
        traced tree may serve from a task the tracer keeps stopped)."""
        self._elves = elf_cache if elf_cache is not None else ElfCache()
        self._unreadable = unreadable_devices
        self._max_words = max_words
        self._objects: dict[tuple[str, int | None], ElfLayout | None] = {}
        self._call_sites: dict[tuple[object, int], bool] = {}
        self._last: tuple[Sequence[RegionLike], _ExecIndex] | None = None
        self._disassemblers: dict[int, capstone.Cs] = {}

    def caller(self, ip: int, stack: bytes, sp: int, regions: Sequence[RegionLike]) -> Caller:
        """Return the caller of the syscall a thread is stopped at.

        `ip` is the thread's instruction pointer, `stack` the bytes read at
        stack pointer `sp`, `regions` the process's mappings (anything with
        start, end, prot, offset, path, dev, inode: a nonzero inode guards
        against a file replaced on disk). When `ip` is outside libc
        (a raw `syscall` in the program, ld.so, JIT code) the caller is `ip`
        itself; when no stack word qualifies, the caller is `ip`'s object with
        symbol None. Never raises for unreadable or odd files.
        """
        index = self._index(regions)
        here = index.find(ip)
        if here is None:
            return Caller(ip, None, None, 0)
        if not (here.path == "[vdso]" or is_libc(here.path)):
            return self._describe(ip, here, return_address=False)
        word = self._word_size(here, index)
        first = (-sp) % word
        end = min(len(stack), first + self._max_words * word)
        for pos in range(first, end - word + 1, word):
            value = int.from_bytes(stack[pos : pos + word], "little")
            region = index.find(value)
            if region is None or not _is_file(region.path):
                continue
            if is_libc(region.path) or is_loader(region.path):
                continue
            info = self._elf_for(region)
            if info is not None and self._follows_call(info, region, value):
                return self._describe(value, region, return_address=True)
        return Caller(ip, _object_name(here), None, ip - here.start + here.offset)

    def _index(self, regions: Sequence[RegionLike]) -> _ExecIndex:
        # A tuple cannot change, so the same tuple object means the same
        # address space: reuse its index.
        if self._last is not None and self._last[0] is regions:
            return self._last[1]
        index = _ExecIndex(regions)
        if isinstance(regions, tuple):
            self._last = (regions, index)
        return index

    def _elf_for(self, region: RegionLike) -> ElfLayout | None:
        """The ElfLayout behind a file mapping, or None when it cannot be read
        or the file on disk is no longer the one mapped."""
        if region.dev in self._unreadable:
            return None
        inode = region.inode
        key = (region.path, inode)
        if key in self._objects:
            return self._objects[key]
        try:
            # The program headers are all attribution needs: no pyelftools
            # parse of the whole file (libjvm.so: tens of milliseconds).
            info: ElfLayout | None = self._elves.layout(region.path)
        except ElfError:
            info = None
        if info is not None and inode and info.key.ino != inode:
            info = None
        if len(self._objects) >= _CACHE_LIMIT:
            self._objects.clear()
        self._objects[key] = info
        return info

    def _word_size(self, here: RegionLike, index: _ExecIndex) -> int:
        """Bytes per stack word: the ELF class of libc (or, for the vDSO,
        of the first readable object of the address space)."""
        candidates = [here] if _is_file(here.path) else [r for r in index.regions if _is_file(r.path)]
        for region in candidates:
            info = self._elf_for(region)
            if info is not None:
                return info.elfclass // 8
        return 8

    def _follows_call(self, info: ElfLayout, region: RegionLike, addr: int) -> bool:
        """True when the file bytes just before `addr` are a call instruction."""
        vaddr = map_to_vaddr(info, addr, region.start, region.offset)
        if vaddr is None:
            return False
        key = (info.key, vaddr)
        known = self._call_sites.get(key)
        if known is None:
            known = self._decode_call(info, vaddr)
            if len(self._call_sites) >= _CACHE_LIMIT:
                self._call_sites.clear()
            self._call_sites[key] = known
        return known

    def _decode_call(self, info: ElfLayout, vaddr: int) -> bool:
        seg = info.segment_for_vaddr(vaddr - 1)
        if seg is None or not seg.flags & PF_X:
            return False
        low = max(seg.vaddr, vaddr - max(_CALL_LENGTHS))
        try:
            code = read_at_vaddr(info, low, vaddr - low)
        except ElfError:
            return False
        if _plain_call_ends(code):
            return True
        disasm = self._disassembler(info.elfclass)
        for length in _CALL_LENGTHS:
            if length > len(code):
                continue
            insn = next(disasm.disasm(code[-length:], vaddr - length, 1), None)
            if insn is not None and insn.size == length and _is_call(insn):
                return True
        return False

    def _disassembler(self, elfclass: int) -> capstone.Cs:
        cs = self._disassemblers.get(elfclass)
        if cs is None:
            # Imported here: only a reported event's caller needs it.
            import capstone

            cs = capstone.Cs(
                capstone.CS_ARCH_X86, capstone.CS_MODE_32 if elfclass == 32 else capstone.CS_MODE_64
            )
            cs.detail = True
            self._disassemblers[elfclass] = cs
        return cs

    def _describe(self, addr: int, region: RegionLike, *, return_address: bool) -> Caller:
        name = _object_name(region)
        if not _is_file(region.path):
            return Caller(addr, name, None, addr - region.start)
        file_offset = addr - region.start + region.offset
        info = self._elf_for(region)
        if info is None:
            return Caller(addr, name, None, file_offset)
        # A return address may sit just past the end of its function (a call
        # to a noreturn function is the last instruction): look up addr - 1.
        probe = addr - 1 if return_address else addr
        try:
            found = symbolize(info, probe, region.start, region.offset)
        except ElfError:
            found = None
        if found is None:
            return Caller(addr, name, None, file_offset)
        symbol, offset = found
        return Caller(addr, name, symbol, offset + (addr - probe))


def _plain_call_ends(code: bytes) -> bool:
    """True when `code` ends with one of the three call encodings compilers
    emit most, whose length and meaning one or two bytes decide in both
    32- and 64-bit mode: e8 rel32 (5 bytes), ff 15 disp32 (call through a
    GOT slot, 6 bytes) and ff d0+r (call a register, 2 bytes). capstone says
    the same of them (tests/test_attribution.py compares); checking them
    first spares most reported events its import (~25 ms)."""
    return ((len(code) >= 5 and code[-5] == _CALL_REL32)
            or (len(code) >= 6 and code[-6] == _CALL_INDIRECT and code[-5] == _MODRM_DISP32_CALL)
            or (len(code) >= 2 and code[-2] == _CALL_INDIRECT and code[-1] & 0xF8 == _MODRM_REG_CALL))


def _is_call(insn: capstone.CsInsn) -> bool:
    """A near call: e8 rel32, or ff with ModRM reg field 2 (not ff /3, far)."""
    opcode = insn.opcode[0]
    return opcode == _CALL_REL32 or (opcode == _CALL_INDIRECT and (insn.modrm >> 3) & 7 == 2)
