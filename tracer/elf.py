"""What an ELF file says about W^X: load segments and their flags, the stack
header, text relocations, imports -- read with struct (tracer.elf_fast) for
regular files, with pyelftools for the rest -- and symbols, read in bulk by
tracer.symbols (pyelftools is too slow for them).

read_elf() parses one file (read_elf_fd() one already open); ElfCache keeps parsed files by identity (path,
device, inode, mtime) so a file replaced on disk is read again. Any failure
to read or parse raises ElfError (NotElfError for a file that is not ELF at
all), never a pyelftools exception.
"""

from __future__ import annotations

import errno
import os
import stat
import struct
from collections import OrderedDict
from dataclasses import dataclass
from functools import cache, cached_property
from types import SimpleNamespace
from typing import TYPE_CHECKING, BinaryIO, NamedTuple, cast

from tracer.abi import PF_W, PF_X
from tracer.elf_fast import ELF_MAGIC, HEAD_SIZE, RegularElf, read_regular, undefined_names
from tracer.errors import EXIT_VIOLATION, TrampwatchError

__all__ = ["ElfCache", "ElfError", "ElfInfo", "ElfLayout", "FileKey", "NotElfError", "Segment",
           "map_to_vaddr", "read_at_vaddr", "read_elf", "read_elf_fd", "read_error", "read_layout",
           "symbolize"]

if TYPE_CHECKING:
    from elftools.elf.dynamic import DynamicSegment
    from elftools.elf.elffile import ELFFile
    from elftools.elf.sections import SymbolTableSection

    # Imported when a table is first loaded: a run that reports no event never needs it.
    from tracer.symbols import SymbolTable

# pyelftools reports malformed input through its own exceptions (added by
# _elftools()) and, on hostile input, through plain Python ones from its
# struct and string code.
_PYTHON_PARSE_ERRORS = (
    struct.error,
    ValueError,
    IndexError,
    KeyError,
    TypeError,
    AttributeError,
    AssertionError,
    UnicodeDecodeError,
    OverflowError,
)

_DF_TEXTREL = 0x4
_DF_1_PIE = 0x08000000


class ElfError(TrampwatchError):
    """A file could not be read as an ELF object.

    `reason` is a short stable code ('not-elf', 'not-regular', 'unreadable',
    'vanished', 'truncated', 'malformed', 'changed', 'io-error'); `detail` the
    human explanation.
    """

    exit_code = EXIT_VIOLATION

    def __init__(self, path: str, reason: str, detail: str):
        self.path = path
        self.reason = reason
        self.detail = detail
        super().__init__(f"{path}: {detail}")


class NotElfError(ElfError):
    """The file is readable but is not an ELF object (or not a regular file)."""


class FileKey(NamedTuple):
    """The identity of a file's contents: where it lives and when it last changed."""

    dev: int
    ino: int
    mtime_ns: int
    size: int

    @classmethod
    def of(cls, st: os.stat_result) -> FileKey:
        """Return the key of a stat result."""
        return cls(st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size)


class Segment(NamedTuple):
    """One PT_LOAD program header. `flags` holds PF_R/PF_W/PF_X."""

    vaddr: int
    memsz: int
    offset: int
    filesz: int
    flags: int

    @property
    def writable_executable(self) -> bool:
        """True when the segment is mapped writable and executable at once."""
        return self.flags & (PF_W | PF_X) == PF_W | PF_X


@dataclass(frozen=True)
class ElfLayout:
    """How one ELF file is laid out in memory: its class (32 or 64) and its
    PT_LOAD segments, read from the program headers alone (no pyelftools):
    what mapping an address to the file, its bytes and its symbols needs."""

    path: str
    key: FileKey
    elfclass: int
    segments: tuple[Segment, ...]

    @cached_property
    def symbols(self) -> SymbolTable:
        """The .symtab and .dynsym symbols, loaded on first use.
        Raises ElfError (reason 'changed') if the file changed since it was read."""
        return _load_symbols(self)

    @property
    def has_code(self) -> bool:
        """False for a separate debug-info file, whose executable segments
        have no bytes in the file (only headers copied from the real object)."""
        return any(seg.flags & PF_X and seg.filesz for seg in self.segments)

    def segment_for_offset(self, file_offset: int) -> Segment | None:
        """Return the PT_LOAD segment whose file bytes hold `file_offset`, or None."""
        for seg in self.segments:
            if seg.offset <= file_offset < seg.offset + seg.filesz:
                return seg
        return None

    def segment_for_vaddr(self, vaddr: int) -> Segment | None:
        """Return the PT_LOAD segment whose memory image holds `vaddr`, or None."""
        for seg in self.segments:
            if seg.vaddr <= vaddr < seg.vaddr + seg.memsz:
                return seg
        return None


@dataclass(frozen=True, kw_only=True)
class ElfInfo(ElfLayout):
    """The W^X-relevant facts of one ELF file (its layout and the rest).

    `e_type` is 'EXEC', 'DYN', 'REL' or 'CORE'; `machine` pyelftools' name
    ('EM_X86_64', 'EM_386'); `gnu_stack_flags` the PT_GNU_STACK flags or None
    when the header is absent; `pie` is DF_1_PIE from DT_FLAGS_1; `imports`
    the undefined dynamic symbols.
    """

    machine: str
    e_type: str
    entry: int
    gnu_stack_flags: int | None
    textrel: bool
    interpreter: str | None
    soname: str | None
    pie: bool
    needed: tuple[str, ...]
    imports: frozenset[str]

    @property
    def execstack(self) -> bool | None:
        """True/False from PT_GNU_STACK's PF_X; None when the header is absent."""
        return None if self.gnu_stack_flags is None else bool(self.gnu_stack_flags & PF_X)

    @property
    def is_program(self) -> bool:
        """True for a program (ET_EXEC, or a PIE: DF_1_PIE, or an interpreter
        and no soname); False for shared libraries, which ld.so loads -- even
        runnable ones such as libc.so.6."""
        if self.e_type == "EXEC" or self.pie:
            return True
        return self.e_type == "DYN" and self.interpreter is not None and self.soname is None



@cache
def _elftools() -> SimpleNamespace:
    """pyelftools, imported on first use: a traced program whose calls are
    never reported needs none of it, and the import costs a start-up.
    Holds ELFFile, ElfFile (ELFFile without hash sections), SymbolTableSection
    and parse_errors."""
    from elftools.common.exceptions import ELFError
    from elftools.construct.core import ConstructError
    from elftools.elf.elffile import ELFFile
    from elftools.elf.sections import Section, SymbolTableSection

    class ElfFile(ELFFile):
        """ELFFile without parsing hash sections: building one reads its
        bucket and chain arrays element by element (80,000 for node, most of
        a read_elf), each time a walk of the sections meets it; nothing here
        uses them."""

        def _make_gnu_hash_section(self, section_header, name: str) -> Section:
            return Section(section_header, name, self)

        def _make_elf_hash_section(self, section_header, name: str) -> Section:
            return Section(section_header, name, self)

    return SimpleNamespace(ELFFile=ELFFile, ElfFile=ElfFile, SymbolTableSection=SymbolTableSection,
                           parse_errors=(ELFError, ConstructError, *_PYTHON_PARSE_ERRORS))


def _open_regular(path: str) -> tuple[int, os.stat_result]:
    """Open `path` read-only without blocking on a FIFO; return (fd, fstat)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError as err:
        raise read_error(path, err) from err
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise NotElfError(path, "not-regular", "not a regular file")
    return fd, st


def read_error(path: str, err: OSError) -> ElfError:
    """The ElfError for an OSError met opening or reading `path`."""
    reason = {
        errno.EACCES: "unreadable",
        errno.EPERM: "unreadable",
        errno.ENOENT: "vanished",
        errno.ENOTDIR: "vanished",
    }.get(err.errno or 0, "io-error")
    return ElfError(path, reason, f"cannot read: {os.strerror(err.errno) if err.errno else err}")


def read_elf(path: str) -> ElfInfo:
    """Parse the ELF file at `path` and return its ElfInfo.

    Raises NotElfError when the file is not a regular file or lacks the ELF
    magic, and ElfError for unreadable, truncated or malformed files.
    """
    fd, st = _open_regular(path)
    try:
        return read_elf_fd(path, fd, st)
    finally:
        os.close(fd)


def read_elf_fd(path: str, fd: int, st: os.stat_result, head: bytes | None = None) -> ElfInfo:
    """Parse the ELF file open at `fd` (a regular file; `st` its fstat, `path`
    its name in the result and errors, `head` its first HEAD_SIZE bytes if
    already read) and return its ElfInfo; `fd` stays open. Raises as
    read_elf() does.

    A regular file is read with struct alone (tracer.elf_fast); pyelftools
    reads whatever that reader does not vouch for, and classifies failures.
    """
    if head is None:
        try:
            head = os.pread(fd, HEAD_SIZE, 0)
        except OSError as err:
            raise read_error(path, err) from err
    if not head.startswith(ELF_MAGIC):
        raise NotElfError(path, "not-elf", "not an ELF file")
    key = FileKey.of(st)
    try:
        regular = read_regular(fd, st.st_size, head)
    except OSError as err:
        raise read_error(path, err) from err
    if regular is not None:
        return _regular_info(path, key, regular)
    return _read_with_pyelftools(path, fd, st)


def _regular_info(path: str, key: FileKey, regular: RegularElf) -> ElfInfo:
    """The ElfInfo of what tracer.elf_fast read."""
    return ElfInfo(path=path, key=key, elfclass=regular.elfclass, machine=regular.machine,
                   e_type=regular.e_type, entry=regular.entry,
                   segments=tuple(Segment(*seg) for seg in regular.segments),
                   gnu_stack_flags=regular.gnu_stack_flags, textrel=regular.textrel,
                   interpreter=regular.interpreter, soname=regular.soname, pie=regular.pie,
                   needed=regular.needed, imports=regular.imports)


def _read_with_pyelftools(path: str, fd: int, st: os.stat_result) -> ElfInfo:
    """read_elf_fd() by pyelftools alone."""
    parse_errors = _elftools().parse_errors
    key = FileKey.of(st)
    with os.fdopen(fd, "rb", closefd=False) as stream:
        try:
            return _parse(path, key, stream)
        except OSError as err:
            # EINVAL is a seek to a negative offset a bogus header asked for.
            if err.errno != errno.EINVAL:
                raise read_error(path, err) from err
            raise _malformed(path, st.st_size, stream, err) from err
        except parse_errors as err:
            raise _malformed(path, st.st_size, stream, err) from err


def _malformed(path: str, size: int, stream: BinaryIO, err: Exception) -> ElfError:
    """Classify a parse failure: 'truncated' when the ELF header claims tables
    past the end of the file, 'malformed' otherwise."""
    lib = _elftools()
    try:
        elf = lib.ELFFile(stream)
        ends = (
            elf["e_phoff"] + elf["e_phnum"] * elf["e_phentsize"],
            elf["e_shoff"] + elf["e_shnum"] * elf["e_shentsize"],
        )
    except (*lib.parse_errors, OSError):
        # Not even the ELF header parses: only a short file does that.
        if size < 64:
            return ElfError(path, "truncated", f"truncated ELF ({size} bytes)")
        return ElfError(path, "malformed", f"malformed ELF: {err}")
    if max(ends) > size:
        return ElfError(
            path, "truncated", f"truncated ELF: headers end at {max(ends)}, file has {size} bytes"
        )
    return ElfError(path, "malformed", f"malformed ELF: {err}")


def _parse(path: str, key: FileKey, stream: BinaryIO) -> ElfInfo:
    elf = _elftools().ElfFile(stream)
    segments = []
    gnu_stack_flags = None
    interp = dynamic = None
    for seg in elf.iter_segments():
        kind = seg["p_type"]
        if kind == "PT_LOAD":
            segments.append(
                Segment(seg["p_vaddr"], seg["p_memsz"], seg["p_offset"], seg["p_filesz"], seg["p_flags"])
            )
        elif kind == "PT_GNU_STACK":
            gnu_stack_flags = seg["p_flags"]
        elif kind == "PT_INTERP":
            interp = seg
        elif kind == "PT_DYNAMIC":
            dynamic = seg
    file_end = max((seg.offset + seg.filesz for seg in segments), default=0)
    if file_end > key.size:
        raise ElfError(
            path, "truncated", f"truncated ELF: segments end at {file_end}, file has {key.size} bytes"
        )
    if segments and not any(seg.flags & PF_X and seg.filesz for seg in segments):
        # A separate debug-info file: its program headers are copies and the
        # bytes they point at are something else. Read no contents from them.
        interp = dynamic = None
    textrel = pie = False
    soname = None
    needed = []
    if dynamic is not None:
        for tag in dynamic.iter_tags():
            name = tag.entry.d_tag
            if name == "DT_TEXTREL" or (name == "DT_FLAGS" and tag.entry.d_val & _DF_TEXTREL):
                textrel = True
            elif name == "DT_FLAGS_1" and tag.entry.d_val & _DF_1_PIE:
                pie = True
            elif name == "DT_NEEDED":
                needed.append(tag.needed)
            elif name == "DT_SONAME":
                soname = tag.soname
    e_type = elf["e_type"]
    return ElfInfo(
        path=path,
        key=key,
        elfclass=elf.elfclass,
        machine=str(elf["e_machine"]),
        e_type=e_type[3:] if isinstance(e_type, str) and e_type.startswith("ET_") else str(e_type),
        entry=elf["e_entry"],
        segments=tuple(segments),
        gnu_stack_flags=gnu_stack_flags,
        textrel=textrel,
        interpreter=interp.get_interp_name() if interp is not None else None,
        soname=soname,
        pie=pie,
        needed=tuple(needed),
        imports=_imports(elf, dynamic) if dynamic is not None else frozenset(),
    )


def _imports(elf: ELFFile, dynamic: DynamicSegment) -> frozenset[str]:
    """Names of the undefined symbols of the dynamic symbol table: .dynsym,
    or the table DT_SYMTAB points at when the section headers are stripped."""
    table: SymbolTableSection | DynamicSegment | None = None
    if elf.num_sections():
        table = next(elf.iter_sections("SHT_DYNSYM"), None)
    elif dynamic.get_table_offset("DT_SYMTAB")[1] is not None:
        table = dynamic
    if table is None:
        return frozenset()
    if isinstance(table, _elftools().SymbolTableSection):
        return _undefined_names(elf, table)
    return frozenset(sym.name for sym in table.iter_symbols() if sym.name and sym["st_shndx"] == "SHN_UNDEF")


def _undefined_names(elf: ELFFile, table: SymbolTableSection) -> frozenset[str]:
    """The undefined symbols of a symbol table section, decoded in bulk."""
    strings = elf.get_section(table["sh_link"]).data()
    return undefined_names(elf.elfclass, elf.little_endian, table.data(), strings)


def _load_symbols(info: ElfLayout) -> SymbolTable:
    """The symbol table of `info`'s file, read in bulk (tracer.symbols) or
    taken from the on-disk cache for its build-id."""
    from tracer.symbols import Identity, SymbolFormatError, default_store, read_symbols

    fd, st = _open_regular(info.path)
    try:
        if FileKey.of(st) != info.key:
            raise ElfError(info.path, "changed", "file changed on disk since it was read")
        identity = Identity(st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
        return read_symbols(fd, identity, default_store())
    except OSError as err:
        raise read_error(info.path, err) from err
    except SymbolFormatError as err:
        raise ElfError(info.path, "malformed", f"malformed symbol table: {err}") from err
    finally:
        os.close(fd)


def map_to_vaddr(info: ElfLayout, addr: int, map_start: int, map_offset: int) -> int | None:
    """Translate `addr`, inside a mapping of `info` that starts at `map_start`
    with file offset `map_offset`, to the ELF's own virtual address.

    Going through the file offset gives the right answer for PIE executables
    and shared libraries (any load bias) and for fixed-address executables
    alike. Returns None when the address lies in no PT_LOAD segment.
    """
    file_offset = addr - map_start + map_offset
    seg = info.segment_for_offset(file_offset)
    if seg is None:
        return None
    return seg.vaddr + (file_offset - seg.offset)


def symbolize(info: ElfLayout, addr: int, map_start: int, map_offset: int) -> tuple[str, int] | None:
    """Return (symbol name, offset of `addr` from the symbol's start) for an
    address inside a mapping of `info`, or None when no sized symbol covers it.
    Raises ElfError when the symbol tables cannot be read."""
    vaddr = map_to_vaddr(info, addr, map_start, map_offset)
    if vaddr is None:
        return None
    sym = info.symbols.lookup(vaddr)
    if sym is None:
        return None
    return sym.name, vaddr - sym.addr


def read_at_vaddr(info: ElfLayout, vaddr: int, size: int) -> bytes:
    """Return up to `size` file bytes at the ELF virtual address `vaddr` (fewer
    at the end of a segment's file image; b'' outside every segment).
    Raises ElfError when the file is unreadable or changed since read_elf()."""
    seg = next((s for s in info.segments if s.vaddr <= vaddr < s.vaddr + s.filesz), None)
    if seg is None or size <= 0:
        return b""
    count = min(size, seg.vaddr + seg.filesz - vaddr)
    fd, st = _open_regular(info.path)
    try:
        if FileKey.of(st) != info.key:
            raise ElfError(info.path, "changed", "file changed on disk since it was read")
        return os.pread(fd, count, seg.offset + (vaddr - seg.vaddr))
    except OSError as err:
        raise read_error(info.path, err) from err
    finally:
        os.close(fd)


_PT_GNU_STACK = 0x6474E551
# Per ELF class: (e_phoff format, e_phoff offset, program header format, the
# positions of p_type, p_flags, p_offset, p_vaddr, p_filesz and p_memsz in it).
_PHDR_LAYOUTS = {1: ("I", 0x1C, "8I", (0, 6, 1, 2, 4, 5)), 2: ("Q", 0x20, "IIQQQQQQ", (0, 1, 2, 3, 5, 6))}


_PT_LOAD = 1


def _program_headers(path: str) -> tuple[os.stat_result, int, list[tuple[int, ...]]]:
    """Read the program headers of the ELF file at `path` with struct alone;
    return (its stat, its class: 32 or 64, each header as (p_type, p_flags,
    p_offset, p_vaddr, p_filesz, p_memsz)). Raises ElfError (NotElfError)
    when the file cannot be read or its program headers are not there."""
    fd, st = _open_regular(path)
    try:
        head = os.pread(fd, 64, 0)
        if head[:4] != ELF_MAGIC:
            raise NotElfError(path, "not-elf", "not an ELF file")
        if len(head) < 64 or head[4] not in _PHDR_LAYOUTS or head[5] not in (1, 2):
            raise ElfError(path, "malformed", "malformed ELF header")
        endian = "<" if head[5] == 1 else ">"
        offword, at, phdr_format, order = _PHDR_LAYOUTS[head[4]]
        (phoff,) = struct.unpack_from(endian + offword, head, at)
        # e_phoff, e_shoff, e_flags, e_ehsize, then e_phentsize and e_phnum.
        phentsize, phnum = struct.unpack_from(endian + "HH", head, at + 2 * struct.calcsize(offword) + 6)
        phdr = struct.Struct(endian + phdr_format)
        if phnum == 0:
            return st, 32 * head[4], []
        if phentsize < phdr.size:
            raise ElfError(path, "malformed", f"program header entries of {phentsize} bytes")
        if phoff + phnum * phentsize > st.st_size:
            raise ElfError(path, "truncated", "program headers lie past the end of the file")
        table = os.pread(fd, phnum * phentsize, phoff)
    except OSError as err:
        raise read_error(path, err) from err
    finally:
        os.close(fd)
    headers = []
    for index in range(len(table) // phentsize):
        fields = phdr.unpack_from(table, index * phentsize)
        headers.append(tuple(fields[i] for i in order))
    return st, 32 * head[4], headers


def read_stack_flags(path: str) -> int | None:
    """The PT_GNU_STACK flags of the ELF file at `path`, None when it has no
    such header -- from the program headers alone, as the kernel's exec reads
    them. Raises ElfError (NotElfError) when the file cannot be read or its
    program headers are not there."""
    _, _, headers = _program_headers(path)
    return next((flags for kind, flags, *_ in headers if kind == _PT_GNU_STACK), None)


def read_layout(path: str) -> ElfLayout:
    """The class and PT_LOAD segments of the ELF file at `path`, from its
    program headers alone (a fraction of read_elf's cost, and no pyelftools).
    Raises ElfError (NotElfError) as read_elf() does, also for segments that
    lie past the end of the file."""
    st, elfclass, headers = _program_headers(path)
    segments = tuple(Segment(vaddr, memsz, offset, filesz, flags)
                     for kind, flags, offset, vaddr, filesz, memsz in headers if kind == _PT_LOAD)
    key = FileKey.of(st)
    file_end = max((seg.offset + seg.filesz for seg in segments), default=0)
    if file_end > key.size:
        raise ElfError(path, "truncated",
                       f"truncated ELF: segments end at {file_end}, file has {key.size} bytes")
    return ElfLayout(path, key, elfclass, segments)


class ExecStackCache:
    """PT_GNU_STACK verdicts of executables by (path, device, inode, mtime,
    size): a program exec'd again and again (a shell loop) costs one stat."""

    def __init__(self, maxsize: int = 1024):
        self.maxsize = maxsize
        self._entries: dict[tuple[str, int, int, int, int], bool | None] = {}

    def execstack(self, path: str) -> bool | None:
        """True/False from PT_GNU_STACK's PF_X; None when the header is absent
        or the file cannot be read as ELF."""
        try:
            st = os.stat(path)
        except OSError:
            return None
        key = (path, st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size)
        if key in self._entries:
            return self._entries[key]
        try:
            flags = read_stack_flags(path)
            verdict = None if flags is None else bool(flags & PF_X)
        except ElfError:
            verdict = None
        if len(self._entries) >= self.maxsize:
            self._entries.clear()
        self._entries[key] = verdict
        return verdict


class ElfCache:
    """Parsed ELF files (whole, or their layout alone) by (path, device,
    inode, mtime), least recently used evicted first. Failures are
    remembered too, so a non-ELF or unreadable file costs one stat per
    lookup, not one parse."""

    def __init__(self, maxsize: int = 256):
        self.maxsize = maxsize
        self._entries: OrderedDict[tuple[bool, str, int, int, int], ElfLayout | ElfError] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, path: str) -> ElfInfo:
        """Return the ElfInfo of `path`, parsing it if it is new or changed.
        Raises ElfError (or NotElfError) as read_elf() does."""
        return cast(ElfInfo, self._lookup(path, True))

    def layout(self, path: str) -> ElfLayout:
        """Return the ElfLayout of `path` (read_layout), read again if the
        file is new or changed. Raises ElfError (or NotElfError)."""
        return self._lookup(path, False)

    def _lookup(self, path: str, whole: bool) -> ElfLayout:
        try:
            st = os.stat(path)
        except OSError as err:
            raise read_error(path, err) from err
        key = (whole, path, st.st_dev, st.st_ino, st.st_mtime_ns)
        entry = self._entries.get(key)
        if entry is None:
            try:
                entry = read_elf(path) if whole else read_layout(path)
            except ElfError as err:
                entry = err
            self._entries[key] = entry
            if len(self._entries) > self.maxsize:
                self._entries.popitem(last=False)
        else:
            self._entries.move_to_end(key)
        if isinstance(entry, ElfError):
            # A fresh exception each time: re-raising one instance would
            # grow its traceback with every lookup.
            raise type(entry)(entry.path, entry.reason, entry.detail)
        return entry
