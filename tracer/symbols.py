"""Symbol tables of ELF files, read in bulk and cached on disk per build-id.

A symbol table is read straight from the file's bytes: the section headers
and each .symtab/.dynsym in one struct pass (a few preads, no mmap: a file
truncated under an mmap would kill the tracer with SIGBUS), the names kept as
bytes and decoded only when a lookup returns them. The result is columns (addresses,
sizes, kinds, names) sorted by address for bisect lookup. pyelftools builds
one object per symbol and needs seconds for the 58,000 of libjvm.so; this
takes a tenth of that, and a table loaded from the on-disk cache costs a
read and two array copies.

The cache follows perf's build-id cache: one file per build-id, under
$XDG_CACHE_HOME/trampwatch/symbols or else /var/cache/trampwatch/symbols.
Each entry records the identity of the file it was built from (device,
inode, size, mtime); an entry for another identity is rebuilt, so a file
changed on disk is read again. When the directory cannot be written the
store keeps tables in memory only, silently: the cache saves time, nothing
depends on it.
"""

from __future__ import annotations

import bisect
import contextlib
import mmap
import os
import struct
import sys
from array import array
from dataclasses import dataclass
from pathlib import Path

_SHT_SYMTAB = 2
_SHT_NOTE = 7
_SHT_DYNSYM = 11
_NT_GNU_BUILD_ID = 3
_STT_NOTYPE, _STT_OBJECT, _STT_FUNC, _STT_GNU_IFUNC = 0, 1, 2, 10
_STB_GLOBAL, _STB_WEAK = 1, 2
KINDS = ("func", "object", "label")
_FUNC, _OBJECT, _LABEL = 0, 1, 2
# Sized symbols by st_info type; GNU ifuncs are functions.
_SIZED_KIND = {_STT_FUNC: _FUNC, _STT_GNU_IFUNC: _FUNC, _STT_OBJECT: _OBJECT}

# (ELF header fields from e_shoff on, section header, symbol) per ELF class;
# symbol field positions: name, info, shndx, value, size.
_LAYOUTS = {
    1: ("I", "IIIIIIIIII", "IIIBBH", (0, 3, 5, 1, 2)),
    2: ("Q", "IIQQQQIIQQ", "IBBHQQ", (0, 1, 3, 4, 5)),
}

# Tables whose symbol sections are smaller than this are read again rather
# than cached: reading them costs about what loading an entry would.
CACHE_MIN_BYTES = 32 * 1024
_MAGIC = b"TWSYM\x01" + (b"L" if sys.byteorder == "little" else b"B") + b"\n"
_HEADER = struct.Struct("=8s4Q2Q")


class SymbolFormatError(Exception):
    """The symbol tables (or the headers pointing at them) are malformed."""


@dataclass(frozen=True)
class Symbol:
    """A function ('func', including GNU ifuncs), data ('object') or sizeless
    global entry point ('label') symbol."""

    name: str
    addr: int
    size: int
    kind: str


class SymbolTable:
    """Symbols of one ELF, one per address, sorted by address for bisect.

    Held as columns: `starts` and `sizes` (unsigned 64-bit: arrays, or views
    of a cached table's mapped file), `kinds` (bytes indexing KINDS) and the
    names as one NUL-separated blob decoded only when a lookup returns them.
    """

    def __init__(self, starts: array | memoryview, sizes: array | memoryview, kinds: bytes,
                 names: bytes | memoryview, name_ends: array | memoryview):
        self.starts = starts
        self.sizes = sizes
        self.kinds = kinds
        self.names = names
        self.name_ends = name_ends

    def __len__(self) -> int:
        return len(self.starts)

    def symbol(self, index: int) -> Symbol:
        """The symbol at position `index` (in address order)."""
        begin = self.name_ends[index - 1] if index else 0
        name = str(self.names[begin : self.name_ends[index]], "utf-8", "replace")
        return Symbol(name, self.starts[index], self.sizes[index], KINDS[self.kinds[index]])

    @property
    def symbols(self) -> tuple[Symbol, ...]:
        """Every symbol, in address order (builds one object each: not for hot paths)."""
        return tuple(self.symbol(i) for i in range(len(self)))

    def find(self, name: str) -> Symbol | None:
        """The symbol called `name`, or None (a scan of the names)."""
        wanted = name.encode("utf-8", "surrogateescape")
        for index in range(len(self)):
            begin = self.name_ends[index - 1] if index else 0
            if self.names[begin : self.name_ends[index]] == wanted:
                return self.symbol(index)
        return None

    def lookup(self, vaddr: int) -> Symbol | None:
        """Return the symbol whose [addr, addr+size) holds `vaddr` (or a
        sizeless label at exactly `vaddr`), or None."""
        index = bisect.bisect_right(self.starts, vaddr) - 1
        # A larger symbol may enclose a smaller one that starts later (a
        # function with a local object); look back a few entries for it.
        for i in range(index, max(-1, index - 4), -1):
            start, size = self.starts[i], self.sizes[i]
            if start <= vaddr < start + size or (size == 0 and start == vaddr):
                return self.symbol(i)
        return None


class _Image:
    """An open ELF file read with pread, bounds checked against its size."""

    def __init__(self, fd: int, size: int):
        self.fd = fd
        self.size = size

    def read(self, offset: int, count: int) -> bytes:
        """Exactly `count` bytes at `offset`; SymbolFormatError past the end."""
        if offset < 0 or count < 0 or offset + count > self.size:
            raise SymbolFormatError("a table lies outside the file")
        data = os.pread(self.fd, count, offset)
        if len(data) != count:
            raise SymbolFormatError("the file is shorter than it was")
        return data


@dataclass(frozen=True)
class _Section:
    kind: int
    offset: int
    size: int
    link: int
    entsize: int


def _sections(image: _Image) -> tuple[list[_Section], str, int]:
    """The section headers of an ELF image; also its struct byte order and class."""
    data = image.read(0, 64) if image.size >= 64 else b""
    if data[:4] != b"\x7fELF":
        raise SymbolFormatError("not an ELF file")
    elfclass, order = data[4], data[5]
    if elfclass not in _LAYOUTS or order not in (1, 2):
        raise SymbolFormatError(f"unknown ELF class {elfclass} or byte order {order}")
    endian = "<" if order == 1 else ">"
    offword, shdr, _, _ = _LAYOUTS[elfclass]
    # e_shoff, then e_flags, e_ehsize, e_phentsize, e_phnum, e_shentsize, e_shnum.
    shoff_at = 0x28 if elfclass == 2 else 0x20
    shoff, _, _, _, _, shentsize, shnum, _ = struct.unpack_from(f"{endian}{offword}IHHHHHH", data, shoff_at)
    header = struct.Struct(endian + shdr)
    if shnum == 0 or shoff == 0:
        return [], endian, elfclass
    if shentsize < header.size:
        raise SymbolFormatError("section headers too small")
    table = image.read(shoff, shnum * shentsize)
    sections = []
    for index in range(shnum):
        fields = header.unpack_from(table, index * shentsize)
        # sh_type, sh_offset, sh_size, sh_link, sh_entsize (same positions in both classes).
        sections.append(_Section(fields[1], fields[4], fields[5], fields[6], fields[9]))
    return sections, endian, elfclass


def _build_id(image: _Image, sections: list[_Section], endian: str) -> str | None:
    """The GNU build-id of an ELF image as hex, or None when it has none."""
    note = struct.Struct(endian + "III")
    for section in sections:
        if section.kind != _SHT_NOTE or section.size > 1 << 16:
            continue
        notes = image.read(section.offset, section.size)
        pos = 0
        while pos + note.size <= len(notes):
            namesz, descsz, kind = note.unpack_from(notes, pos)
            name_at = pos + note.size
            desc_at = name_at + (namesz + 3) // 4 * 4
            pos = desc_at + (descsz + 3) // 4 * 4
            if kind == _NT_GNU_BUILD_ID and notes[name_at : name_at + namesz] == b"GNU\0":
                desc = notes[desc_at : desc_at + descsz]
                return desc.hex() if len(desc) == descsz and desc else None
    return None


def _symbol_sections(sections: list[_Section]) -> list[tuple[_Section, _Section]]:
    """Each (symbol table, its string table) section pair."""
    pairs = []
    for section in sections:
        if section.kind in (_SHT_SYMTAB, _SHT_DYNSYM):
            if section.link >= len(sections):
                raise SymbolFormatError("a symbol table links to no string table")
            pairs.append((section, sections[section.link]))
    return pairs


def _parse(image: _Image, pairs: list[tuple[_Section, _Section]], endian: str, elfclass: int) -> SymbolTable:
    """Read every .symtab and .dynsym entry in bulk; return the table of
    defined, named functions, objects and global labels."""
    _, _, sym_layout, (at_name, at_info, at_shndx, at_value, at_size) = _LAYOUTS[elfclass]
    entry = struct.Struct(endian + sym_layout)
    chosen: dict[int, tuple[tuple[bool, bool, int, bytes], int, int, bytes]] = {}
    for table, strtab in pairs:
        raw = image.read(table.offset, table.size)
        strings = image.read(strtab.offset, strtab.size)
        raw = raw[: len(raw) - len(raw) % entry.size]
        for fields in entry.iter_unpack(raw):
            offset, shndx = fields[at_name], fields[at_shndx]
            if not offset or not shndx:  # unnamed, or SHN_UNDEF (an import)
                continue
            info, size = fields[at_info], fields[at_size]
            if size:
                kind = _SIZED_KIND.get(info & 0xF)
                if kind is None:
                    continue
            elif info & 0xF in (_STT_FUNC, _STT_NOTYPE) and info >> 4 in (_STB_GLOBAL, _STB_WEAK):
                kind = _LABEL
            else:
                continue
            end = strings.find(b"\0", offset)
            name = strings[offset:end] if end >= 0 else strings[offset:]
            if not name:
                continue
            addr = fields[at_value]
            rank = (kind != _FUNC, name[:1] == b"_", len(name), name)
            old = chosen.get(addr)
            if old is None or rank < old[0]:
                chosen[addr] = (rank, size, kind, name)
    starts, sizes, kinds, name_ends = array("Q"), array("Q"), bytearray(), array("Q")
    names = bytearray()
    for addr in sorted(chosen):
        _, size, kind, name = chosen[addr]
        starts.append(addr)
        sizes.append(size)
        kinds.append(kind)
        names += name
        name_ends.append(len(names))
    return SymbolTable(starts, sizes, bytes(kinds), bytes(names), name_ends)


@dataclass(frozen=True)
class Identity:
    """What says a file is unchanged: device, inode, size, mtime."""

    dev: int
    ino: int
    size: int
    mtime_ns: int


def default_cache_dir() -> Path:
    """$XDG_CACHE_HOME/trampwatch/symbols when XDG_CACHE_HOME is set, else
    /var/cache/trampwatch/symbols."""
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) / "trampwatch" if xdg else Path("/var/cache/trampwatch")
    return base / "symbols"


class SymbolStore:
    """Symbol tables on disk, one file per build-id.

    `directory` None means the default (see default_cache_dir), resolved on
    first use; a directory that cannot be created or written turns the store
    off for the rest of its life. `hits`, `misses` and `writes` count what
    happened, for tests and benchmarks.
    """

    def __init__(self, directory: Path | str | None = None):
        self._directory = Path(directory) if directory is not None else None
        self._usable: bool | None = None
        self.hits = self.misses = self.writes = 0

    @property
    def directory(self) -> Path:
        """Where entries live."""
        if self._directory is None:
            self._directory = default_cache_dir()
        return self._directory

    def load(self, build: str, identity: Identity) -> SymbolTable | None:
        """The cached table for `build` if it was built from a file with this
        identity; None otherwise (no entry, another file, unreadable, corrupt)."""
        try:
            fd = os.open(self.directory / build, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
        except OSError:
            self.misses += 1
            return None
        try:
            st = os.fstat(fd)
            # Only entries this user wrote, and nobody else can rewrite: the
            # names end up in reports.
            if st.st_uid != os.geteuid() or st.st_mode & 0o022:
                self.misses += 1
                return None
            # Mapped, not read: a lookup touches a few pages of a table that
            # can be megabytes (node's). Entries are replaced, never rewritten
            # in place, so the mapped file never changes under us.
            blob = memoryview(mmap.mmap(fd, 0, access=mmap.ACCESS_READ)) if st.st_size else b""
        except (OSError, ValueError):
            self.misses += 1
            return None
        finally:
            os.close(fd)
        table = _decode(blob, identity)
        if table is None:
            self.misses += 1
        else:
            self.hits += 1
        return table

    def save(self, build: str, identity: Identity, table: SymbolTable) -> None:
        """Write the entry for `build` atomically; silently nothing when the
        directory cannot be written."""
        if self._usable is False:
            return
        directory = self.directory
        try:
            directory.mkdir(mode=0o755, parents=True, exist_ok=True)
            import tempfile  # only a cache write needs it (it costs a start-up ~3 ms)

            fd, temp = tempfile.mkstemp(prefix=".tmp-", dir=directory)
        except OSError:
            self._usable = False
            return
        try:
            with os.fdopen(fd, "wb") as stream:
                os.fchmod(stream.fileno(), 0o644)
                stream.write(_encode(identity, table))
            os.replace(temp, directory / build)
            self.writes += 1
            self._usable = True
        except OSError:
            self._usable = False
            with contextlib.suppress(OSError):
                os.unlink(temp)


def _encode(identity: Identity, table: SymbolTable) -> bytes:
    header = _HEADER.pack(_MAGIC, identity.dev, identity.ino, identity.size, identity.mtime_ns,
                          len(table), len(table.names))
    return b"".join((header, table.starts.tobytes(), table.sizes.tobytes(), table.name_ends.tobytes(),
                     table.kinds, table.names))


def _decode(blob: bytes | memoryview, identity: Identity) -> SymbolTable | None:
    if len(blob) < _HEADER.size:
        return None
    magic, dev, ino, size, mtime_ns, count, names_len = _HEADER.unpack_from(blob)
    if magic != _MAGIC or Identity(dev, ino, size, mtime_ns) != identity:
        return None
    words = 8 * count
    if len(blob) != _HEADER.size + 3 * words + count + names_len:
        return None
    view = memoryview(blob)
    at = _HEADER.size
    starts, sizes, name_ends = (view[at + i * words : at + (i + 1) * words].cast("Q") for i in range(3))
    at += 3 * words
    kinds = bytes(view[at : at + count])
    names = view[at + count :]
    if count and (name_ends[-1] != names_len or max(kinds) >= len(KINDS)):
        return None
    return SymbolTable(starts, sizes, kinds, names, name_ends)


_STORES: dict[Path, SymbolStore] = {}


def default_store() -> SymbolStore:
    """The store at default_cache_dir() (one per directory, so a changed
    $XDG_CACHE_HOME takes effect)."""
    directory = default_cache_dir()
    store = _STORES.get(directory)
    if store is None:
        store = _STORES[directory] = SymbolStore(directory)
    return store


def read_symbols(fd: int, identity: Identity, store: SymbolStore | None) -> SymbolTable:
    """The symbol table of the open ELF file `fd`, whose identity the caller
    checked: from `store` when it holds an entry for this build-id and file,
    otherwise parsed in bulk (and saved when large enough to be worth it).
    Raises SymbolFormatError for a malformed file, OSError for I/O errors."""
    image = _Image(fd, identity.size)
    try:
        sections, endian, elfclass = _sections(image)
        pairs = _symbol_sections(sections)
        build = _build_id(image, sections, endian) if store is not None else None
        if build is not None:
            cached = store.load(build, identity)
            if cached is not None:
                return cached
        table = _parse(image, pairs, endian, elfclass)
        if build is not None and sum(t.size for t, _ in pairs) >= CACHE_MIN_BYTES:
            store.save(build, identity, table)
        return table
    except (struct.error, ValueError, IndexError, OverflowError, MemoryError) as err:
        raise SymbolFormatError(str(err)) from err


def file_build_id(fd: int, size: int) -> str | None:
    """The GNU build-id of the open ELF file `fd` (of `size` bytes) as hex,
    or None. Raises SymbolFormatError for malformed headers."""
    image = _Image(fd, size)
    sections, endian, _ = _sections(image)
    return _build_id(image, sections, endian)
