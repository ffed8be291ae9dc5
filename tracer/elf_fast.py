"""The regular ELF file read with struct alone: what tracer.elf's read_elf
needs (header, program headers, dynamic section, interpreter, undefined
dynamic symbols) at a tenth of pyelftools' cost, which dominates a scan.

read_regular() vouches only for files whose every table pyelftools would
touch is where it should be; anything else (big-endian or unknown classes,
odd entry sizes, tables past the end of the file, compressed or unusual
sections, strings that do not end, a dynamic segment without its section)
returns None, and the caller asks pyelftools. The rules below mirror what
pyelftools 0.29 checks on the way, so that both give the same answer or
this one defers; tests/test_elf.py holds them to it on real and corrupted
files.
"""

from __future__ import annotations

import os
import struct
from typing import NamedTuple

# e_type, e_machine, e_version, e_entry, e_phoff, e_shoff, e_flags, e_ehsize,
# e_phentsize, e_phnum, e_shentsize, e_shnum, e_shstrndx: from offset 16.
_EHDR = {1: struct.Struct("<HHIIIIIHHHHHH"), 2: struct.Struct("<HHIQQQIHHHHHH")}
# Program headers without p_paddr and p_align: (p_type, p_offset, p_vaddr,
# p_filesz, p_memsz, p_flags) in class 32, (p_type, p_flags, p_offset,
# p_vaddr, p_filesz, p_memsz) in class 64.
_PHDR = {1: struct.Struct("<III4xIII4x"), 2: struct.Struct("<IIQQ8xQQ8x")}
# Section headers as (sh_name, sh_type, sh_flags, sh_offset, sh_size,
# sh_link, sh_entsize): sh_addr, sh_info and sh_addralign skipped.
_SHDR = {1: struct.Struct("<III4xIII8xI"), 2: struct.Struct("<IIQ8xQQI12xQ")}
_NAME, _TYPE, _FLAGS, _OFFSET, _SIZE, _LINK, _ENTSIZE = range(7)
_DYN = {1: struct.Struct("<iI"), 2: struct.Struct("<qQ")}
# Elf_Sym as (st_name, st_shndx), by class; either byte order.
_SYM = {(32, True): struct.Struct("<I10xH"), (64, True): struct.Struct("<I2xH16x"),
        (32, False): struct.Struct(">I10xH"), (64, False): struct.Struct(">I2xH16x")}
_CHDR_SIZE = {1: 12, 2: 24}
_REL_SIZE = {1: (8, 12), 2: (16, 24)}

_E_TYPES = {1: "REL", 2: "EXEC", 3: "DYN", 4: "CORE"}
# pyelftools' names for the machines this reader vouches for.
_MACHINES = {0: "EM_NONE", 3: "EM_386", 8: "EM_MIPS", 20: "EM_PPC", 21: "EM_PPC64", 22: "EM_S390",
             40: "EM_ARM", 62: "EM_X86_64", 183: "EM_AARCH64", 243: "EM_RISCV", 247: "EM_BPF"}
_EM_ARM = 40
_OSABI_SYSV, _OSABI_GNU = 0, 3

_PT_LOAD, _PT_DYNAMIC, _PT_INTERP = 1, 2, 3
_PT_GNU_STACK = 0x6474E551
_PF_X = 0x1
_SHT_PROGBITS, _SHT_SYMTAB, _SHT_STRTAB, _SHT_RELA = 1, 2, 3, 4
_SHT_DYNAMIC, _SHT_NOBITS, _SHT_REL, _SHT_DYNSYM = 6, 8, 9, 11
_SHT_SUNW_SYMINFO, _SHT_SUNW_LDYNSYM = 0x6FFFFFF2, 0x6FFFFFF3
_SHT_GNU_VERDEF, _SHT_GNU_VERNEED, _SHT_GNU_VERSYM = 0x6FFFFFFD, 0x6FFFFFFE, 0x6FFFFFFF
_SHT_ARM_ATTRIBUTES = 0x70000003
_SHF_COMPRESSED = 0x800
_SYMBOL_TABLES = (_SHT_SYMTAB, _SHT_DYNSYM, _SHT_SUNW_LDYNSYM)
_DT_NULL, _DT_NEEDED, _DT_SONAME, _DT_RPATH, _DT_TEXTREL, _DT_RUNPATH, _DT_FLAGS = 0, 1, 14, 15, 22, 29, 30
_DT_FLAGS_1 = 0x6FFFFFFB
_DF_TEXTREL = 0x4
_DF_1_PIE = 0x08000000

ELF_MAGIC = b"\x7fELF"
# How much of a file the first read takes: the ELF header and, for nearly
# every file, its program headers.
HEAD_SIZE = 1024


class RegularElf(NamedTuple):
    """The facts of one regular ELF file; `segments` holds each PT_LOAD as
    (p_vaddr, p_memsz, p_offset, p_filesz, p_flags)."""

    elfclass: int
    machine: str
    e_type: str
    entry: int
    segments: tuple[tuple[int, int, int, int, int], ...]
    gnu_stack_flags: int | None
    textrel: bool
    interpreter: str | None
    soname: str | None
    pie: bool
    needed: tuple[str, ...]
    imports: frozenset[str]


# One section header, indexed by _NAME, _TYPE, ... _ENTSIZE.
_Section = tuple[int, int, int, int, int, int, int]


def read_regular(fd: int, size: int, head: bytes) -> RegularElf | None:
    """The facts of the ELF file open at `fd` (`size` bytes, starting with
    `head`, at least its first HEAD_SIZE bytes), or None when the file is not
    regular enough to vouch for. Raises OSError from reading."""
    if len(head) < 64 or head[5] != 1 or head[4] not in _EHDR or head[7] not in (_OSABI_SYSV, _OSABI_GNU):
        return None
    elfclass = head[4]
    (e_type, e_machine, _, entry, phoff, shoff, _, _,
     phentsize, phnum, shentsize, shnum, shstrndx) = _EHDR[elfclass].unpack_from(head, 16)
    if e_type not in _E_TYPES or e_machine not in _MACHINES:
        return None
    phdr = _PHDR[elfclass]
    if phnum and (phentsize != phdr.size or phnum >= 0xFFFF or phoff + phnum * phdr.size > size):
        return None
    shdr = _SHDR[elfclass]
    if (not shoff or not shnum or shentsize != shdr.size or shstrndx >= shnum
            or shoff + shnum * shdr.size > size):
        return None
    table_end = phoff + phnum * phdr.size
    table = head[phoff:table_end] if table_end <= len(head) else os.pread(fd, phnum * phdr.size, phoff)
    rows = phdr.iter_unpack(table)
    if elfclass == 1:
        rows = ((kind, flags, offset, vaddr, filesz, memsz)
                for kind, offset, vaddr, filesz, memsz, flags in rows)
    segments = []
    gnu_stack_flags = interp = dynamic = None
    for kind, flags, offset, vaddr, filesz, memsz in rows:
        if kind == _PT_LOAD:
            segments.append((vaddr, memsz, offset, filesz, flags))
        elif kind == _PT_GNU_STACK:
            gnu_stack_flags = flags
        elif kind == _PT_INTERP:
            interp = (offset, filesz)
        elif kind == _PT_DYNAMIC:
            dynamic = (offset, filesz)
    if max((seg[2] + seg[3] for seg in segments), default=0) > size:
        return None  # truncated: pyelftools' path says so
    sections: list[_Section] = []
    if dynamic is not None:
        # pyelftools builds every section for a file with PT_DYNAMIC.
        sections = list(shdr.iter_unpack(os.pread(fd, shnum * shdr.size, shoff)))
        if not _sections_regular(fd, size, elfclass, e_machine, sections, sections[shstrndx]):
            return None
    if segments and not any(seg[4] & _PF_X and seg[3] for seg in segments):
        # A separate debug-info file: no contents read through its headers.
        interp = dynamic = None
    interpreter = None
    if interp is not None:
        raw = _cstring(fd, interp[0], size)
        if raw is None:
            return None
        try:
            interpreter = raw.decode("utf-8")
        except UnicodeDecodeError:
            return None
    textrel = pie = False
    soname = None
    needed: list[str] = []
    imports: frozenset[str] = frozenset()
    if dynamic is not None:
        tags = _dynamic_tags(fd, size, elfclass, dynamic)
        strings = next((sections[sec[_LINK]][_OFFSET] for sec in sections
                        if sec[_TYPE] == _SHT_DYNAMIC and sec[_OFFSET] == dynamic[0]), None)
        if tags is None or strings is None:
            return None  # pyelftools would look for DT_STRTAB or .dynstr instead
        for tag, value in tags:
            if tag == _DT_TEXTREL or (tag == _DT_FLAGS and value & _DF_TEXTREL):
                textrel = True
            elif tag == _DT_FLAGS_1 and value & _DF_1_PIE:
                pie = True
            elif tag in (_DT_NEEDED, _DT_SONAME):
                # pyelftools reads '' past the end of the file, or fails
                # seeking too far: not regular either way.
                name = _string(fd, strings + value, size)
                if name is None:
                    return None
                if tag == _DT_NEEDED:
                    needed.append(name)
                else:
                    soname = name
            elif tag in (_DT_RPATH, _DT_RUNPATH) and strings + value >= size:
                return None  # pyelftools reads these strings too
        dynsym = next((sec for sec in sections if sec[_TYPE] == _SHT_DYNSYM), None)
        if dynsym is not None:
            names = _undefined(fd, size, elfclass, dynsym, sections[dynsym[_LINK]])
            if names is None:
                return None
            imports = names
    return RegularElf(32 * elfclass, _MACHINES[e_machine], _E_TYPES[e_type], entry, tuple(segments),
                      gnu_stack_flags, textrel, interpreter, soname, pie, tuple(needed), imports)


def _sections_regular(fd: int, size: int, elfclass: int, machine: int, sections: list[_Section],
                      names: _Section) -> bool:
    """True when pyelftools builds every section without error, the way
    this reader sees them: linked sections of the right type, entry sizes it
    asserts, compression headers inside the file, no section it parses
    further (.stab, ARM attributes, Solaris syminfo)."""
    count = len(sections)
    name_table: bytes | None = None
    for name, kind, flags, offset, sec_size, link, entsize in sections:
        if names[_OFFSET] + name >= size:
            return False  # a name past the end of the file: '' or a failed seek
        if flags & _SHF_COMPRESSED and offset + _CHDR_SIZE[elfclass] > size:
            return False
        if kind in _SYMBOL_TABLES or kind in (_SHT_DYNAMIC, _SHT_GNU_VERDEF, _SHT_GNU_VERNEED):
            if link >= count or sections[link][_TYPE] != _SHT_STRTAB:
                return False
            if kind in _SYMBOL_TABLES and (entsize <= 0 or sec_size % entsize):
                return False
        elif kind == _SHT_GNU_VERSYM:
            if link >= count or sections[link][_TYPE] not in (_SHT_STRTAB, *_SYMBOL_TABLES):
                return False
        elif kind in (_SHT_REL, _SHT_RELA):
            if entsize != _REL_SIZE[elfclass][kind == _SHT_RELA]:
                return False
        elif kind == _SHT_SUNW_SYMINFO or (kind == _SHT_ARM_ATTRIBUTES and machine == _EM_ARM):
            return False
        elif kind == _SHT_PROGBITS:
            if name_table is None:
                if names[_OFFSET] + names[_SIZE] > size:
                    return False
                name_table = os.pread(fd, names[_SIZE], names[_OFFSET])
            if name + 6 > len(name_table) or name_table[name:name + 6] == b".stab\0":
                return False
    return True


def _dynamic_tags(fd: int, size: int, elfclass: int,
                  dynamic: tuple[int, int]) -> list[tuple[int, int]] | None:
    """The dynamic segment's (d_tag, d_val) pairs up to DT_NULL, or None when
    it does not end inside the segment and the file."""
    offset, filesz = dynamic
    if filesz == 0:
        return []
    if offset + filesz > size:
        return None
    tags = []
    for tag, value in _DYN[elfclass].iter_unpack(_whole(os.pread(fd, filesz, offset), _DYN[elfclass].size)):
        tags.append((tag, value))
        if tag == _DT_NULL:
            return tags
    return None


def _whole(data: bytes, entry: int) -> bytes:
    """`data` cut to whole entries."""
    return data[:len(data) - len(data) % entry]


def _cstring(fd: int, offset: int, size: int) -> bytes | None:
    """The NUL-terminated bytes at `offset`, or None when the file ends first."""
    chunks = []
    while offset < size:
        chunk = os.pread(fd, 256, offset)
        end = chunk.find(b"\0")
        if end >= 0:
            chunks.append(chunk[:end])
            return b"".join(chunks)
        if not chunk:
            break
        chunks.append(chunk)
        offset += len(chunk)
    return None


def _string(fd: int, offset: int, size: int) -> str | None:
    """A string-table string as pyelftools decodes it, or None when it does
    not end inside the file."""
    raw = _cstring(fd, offset, size)
    return None if raw is None else raw.decode("utf-8", "replace")


def _undefined(fd: int, size: int, elfclass: int, table: _Section,
               strings: _Section) -> frozenset[str] | None:
    """The undefined names of a symbol table section, or None when it or its
    string table is compressed, has no bytes, or lies past the end of the file."""
    for sec in (table, strings):
        if sec[_FLAGS] & _SHF_COMPRESSED or sec[_TYPE] == _SHT_NOBITS or sec[_OFFSET] + sec[_SIZE] > size:
            return None
    return undefined_names(32 * elfclass, True, os.pread(fd, table[_SIZE], table[_OFFSET]),
                           os.pread(fd, strings[_SIZE], strings[_OFFSET]))


# Decoded symbol names by their bytes: the same few thousand names recur in
# every library, and one str object each keeps ElfInfos small to pickle
# (scan's helper process sends them).
_NAMES: dict[bytes, str] = {}
_NAMES_KEPT = 200_000


def undefined_names(elfclass: int, little_endian: bool, data: bytes, strings: bytes) -> frozenset[str]:
    """The names of the undefined symbols in the bytes of a symbol table,
    decoded in one struct pass (pyelftools' one parse per symbol costs 30x
    more). A name that does not end runs to the end of `strings`."""
    entry = _SYM[elfclass, little_endian]
    offsets = {name for name, shndx in entry.iter_unpack(_whole(data, entry.size))
               if not shndx and name}  # SHN_UNDEF, named
    find = strings.find
    raw = {strings[offset:end if (end := find(b"\0", offset)) >= 0 else None] for offset in offsets}
    if len(_NAMES) > _NAMES_KEPT:
        _NAMES.clear()
    known = _NAMES.get
    return frozenset([known(name) or _NAMES.setdefault(name, name.decode("utf-8", "replace"))
                      for name in raw])
