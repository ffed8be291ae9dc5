"""Bulk symbol tables against pyelftools on real libraries, and the on-disk
cache per build-id: used on a second load, rebuilt when the file changes."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile
from elftools.elf.sections import SymbolTableSection

from tracer import elf, symbols

_KINDS = {"STT_FUNC": "func", "STT_LOOS": "func", "STT_OBJECT": "object"}  # STT_LOOS = GNU_IFUNC
# pyelftools builds one object per symbol: compare every entry of small
# tables, an even sample of the large ones (libjvm.so, node: minutes in full).
_SAMPLE = 4000


def _libc() -> str:
    return os.path.realpath("/lib/x86_64-linux-gnu/libc.so.6")


def _libjvm() -> str | None:
    java = shutil.which("java")
    if java is None:
        return None
    home = Path(os.path.realpath(java)).parent.parent
    found = sorted(home.glob("lib/server/libjvm.so"))
    return str(found[0]) if found else None


def _node() -> str | None:
    """Where node's code lives: the binary itself (nodesource builds) or the
    libnode.so it links (Debian's node 18 keeps its symbols there)."""
    node = shutil.which("node")
    if node is None:
        return None
    linked = subprocess.run(["ldd", node], capture_output=True, text=True).stdout
    for line in linked.splitlines():
        if "libnode.so" in line and "=>" in line:
            return os.path.realpath(line.split("=>")[1].split()[0])
    return os.path.realpath(node)


def _reference_kind(sym) -> str | None:
    """What a symbol is, decided from pyelftools' view of it."""
    kind = sym["st_info"]["type"]
    if sym["st_size"] > 0:
        return _KINDS.get(kind)
    if kind in ("STT_FUNC", "STT_NOTYPE") and sym["st_info"]["bind"] in ("STB_GLOBAL", "STB_WEAK"):
        return "label"
    return None


def _rank(kind: str, name: str) -> tuple[bool, bool, int, str]:
    return (kind != "func", name.startswith("_"), len(name), name)


def _reference(path: str) -> tuple[dict[int, tuple[str, int, str]], bool]:
    """pyelftools' symbols of `path`, one per address (the alias rule of
    SymbolTable); and whether every entry was read (False: a sample)."""
    chosen: dict[int, tuple[str, int, str]] = {}
    complete = True
    with open(path, "rb") as stream:
        for section in ELFFile(stream).iter_sections():
            if not isinstance(section, SymbolTableSection):
                continue
            count = section.num_symbols()
            step = max(1, count // _SAMPLE)
            complete = complete and step == 1
            for index in range(0, count, step):
                sym = section.get_symbol(index)
                kind = _reference_kind(sym)
                if not kind or sym["st_shndx"] == "SHN_UNDEF" or not sym.name:
                    continue
                old = chosen.get(sym["st_value"])
                if old is None or _rank(kind, sym.name) < _rank(old[2], old[0]):
                    chosen[sym["st_value"]] = (sym.name, sym["st_size"], kind)
    return chosen, complete


def _table(path: str, store: symbols.SymbolStore | None) -> symbols.SymbolTable:
    fd = os.open(path, os.O_RDONLY)
    try:
        st = os.fstat(fd)
        identity = symbols.Identity(st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
        return symbols.read_symbols(fd, identity, store)
    finally:
        os.close(fd)


@pytest.mark.parametrize("which", ["libc", pytest.param("libjvm.so", marks=pytest.mark.slow),
                                   pytest.param("node", marks=pytest.mark.slow)])
def test_bulk_table_matches_pyelftools(which: str) -> None:
    path = {"libc": _libc, "libjvm.so": _libjvm, "node": _node}[which]()
    if path is None:
        pytest.skip(f"{which} is not installed (java / node missing)")
    table = _table(path, None)
    got = {sym.addr: (sym.name, sym.size, sym.kind) for sym in table.symbols}
    want, complete = _reference(path)
    assert len(want) > 1000
    if complete:
        assert got == want
        return
    # A sample: each sampled symbol is in the table at its address, as itself
    # or as an alias that ranks before it.
    for addr, (name, size, kind) in want.items():
        assert addr in got, f"{name} at {addr:#x} missing"
        have_name, have_size, have_kind = got[addr]
        if have_name != name:
            assert _rank(have_kind, have_name) < _rank(kind, name)
        else:
            assert (have_size, have_kind) == (size, kind)
        found = table.lookup(addr)
        assert found is not None and found.addr == addr


def test_lookup_finds_enclosing_symbols_and_names(tmp_path: Path) -> None:
    table = _table(_libc(), None)
    mprotect = table.find("mprotect")
    assert mprotect is not None and mprotect.kind == "func" and mprotect.size > 0
    inside = table.lookup(mprotect.addr + mprotect.size - 1)
    assert inside is not None and inside.addr == mprotect.addr
    assert table.find("no_such_symbol_in_libc") is None


@pytest.fixture
def libc_copy(tmp_path: Path) -> Path:
    copy = tmp_path / "libc-copy.so"
    shutil.copy(_libc(), copy)
    return copy


def test_cache_is_used_on_the_second_load(libc_copy: Path, tmp_path: Path) -> None:
    store = symbols.SymbolStore(tmp_path / "cache")
    first = _table(str(libc_copy), store)
    assert (store.hits, store.misses, store.writes) == (0, 1, 1)
    entries = list((tmp_path / "cache").iterdir())
    assert len(entries) == 1 and len(entries[0].name) == 40  # a SHA-1 build-id
    second = _table(str(libc_copy), store)
    assert (store.hits, store.writes) == (1, 1)
    assert second.symbols == first.symbols


def test_cache_through_read_elf_in_xdg_cache_home(libc_copy: Path, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    store = symbols.default_store()
    assert store.directory == tmp_path / "xdg" / "trampwatch" / "symbols"
    first = elf.read_elf(str(libc_copy)).symbols
    second = elf.read_elf(str(libc_copy)).symbols
    assert (store.misses, store.hits) == (1, 1)
    assert second.symbols == first.symbols


def test_cache_is_invalidated_when_the_file_changes(libc_copy: Path, tmp_path: Path) -> None:
    store = symbols.SymbolStore(tmp_path / "cache")
    before = _table(str(libc_copy), store)
    # Touched: same bytes, new mtime -> rebuilt and rewritten.
    st = libc_copy.stat()
    os.utime(libc_copy, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    again = _table(str(libc_copy), store)
    assert (store.hits, store.misses, store.writes) == (0, 2, 2)
    assert again.symbols == before.symbols
    # Modified in place (build-id unchanged): move mprotect's address in
    # .dynsym; the table read afterwards must show the new address.
    mprotect = before.find("mprotect")
    assert mprotect is not None
    data = bytearray(libc_copy.read_bytes())
    old = mprotect.addr.to_bytes(8, "little") + mprotect.size.to_bytes(8, "little")
    at = data.find(old)
    assert at > 0
    data[at : at + 8] = (mprotect.addr + 0x100000000).to_bytes(8, "little")
    libc_copy.write_bytes(bytes(data))
    after = _table(str(libc_copy), store)
    assert store.hits == 0
    moved = after.lookup(mprotect.addr + 0x100000000)
    assert moved is not None and moved.name in ("mprotect", "__mprotect")
    assert _table(str(libc_copy), store).symbols == after.symbols and store.hits == 1


def test_entries_others_could_write_or_corrupt_are_not_trusted(libc_copy: Path, tmp_path: Path) -> None:
    store = symbols.SymbolStore(tmp_path / "cache")
    first = _table(str(libc_copy), store)
    (entry,) = (tmp_path / "cache").iterdir()
    entry.chmod(0o666)
    assert _table(str(libc_copy), store).symbols == first.symbols
    assert store.hits == 0 and stat.S_IMODE(entry.stat().st_mode) == 0o644  # rebuilt, rewritten
    entry.write_bytes(entry.read_bytes()[:-10])
    entry.chmod(0o644)
    assert _table(str(libc_copy), store).symbols == first.symbols
    assert store.hits == 0


def test_unwritable_cache_falls_back_to_memory_silently(libc_copy: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    store = symbols.SymbolStore(blocker / "cache")
    first = _table(str(libc_copy), store)
    second = _table(str(libc_copy), store)
    assert store.writes == 0 and store.hits == 0
    assert len(first) > 1000 and first.symbols == second.symbols


def test_small_tables_are_not_cached(tmp_path: Path) -> None:
    store = symbols.SymbolStore(tmp_path / "cache")
    _table(os.path.realpath("/bin/true"), store)
    assert (store.misses, store.writes) == (1, 0)
