"""Inspect live processes: every executable region that is not plain file
text, every W^X hazard, and the trampolines inside them, decoded.

Reads /proc/PID/maps and /proc/PID/mem only: the process is never stopped.
A snapshot is classified by the same classifier as a traced call (each
region judged as the call that would create it now, see _region_subject) and
decided by the same policy engine. docs/inspect.md describes the output.
"""

from __future__ import annotations

import bisect
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import NamedTuple

from tracer import trampolines as tr
from tracer.abi import (
    PAGE_SIZE,
    PF_X,
    PROT_EXEC,
    PROT_READ,
    PROT_WRITE,
    READ_IMPLIES_EXEC,
    prot_names,
    prot_text,
)
from tracer.categories import Category
from tracer.classify import classify
from tracer.collector import cycle_collector_paused
from tracer.elf import ElfCache, ElfError, ElfInfo, map_to_vaddr, symbolize
from tracer.errors import AccessDenied, NoSuchProcess, TraceError
from tracer.events import MapEntry, ProcessInfo
from tracer.policy import Action, Decision, Policy, decide
from tracer.policy.facts import facts_of
from tracer.shadow import FILE, HEAP, SHM, STACK, Backing, Change, ShadowModel, backing_from_entry
from tracer.sources import procfs
from tracer.subject import (
    EXEC_PSEUDO_SYSCALL,
    HOLDS_TRAMPFD,
    NO_BACKING,
    TRAMPFD_BACKING,
    TRAMPFD_OBJECT,
    TRAMPFD_PSEUDO_SYSCALL,
    Subject,
    region_subject,
)

# Bytes of one region, and of one process, scanned for trampolines; the rest
# is reported as not scanned (a JIT may reserve gigabytes).
REGION_SCAN_LIMIT = 32 << 20
PROCESS_SCAN_LIMIT = 128 << 20
_CHUNK = 1 << 20
# Chunks overlap by more than the longest trampoline, so none is cut in two.
_OVERLAP = 128
# Kernel-provided code: not a hazard, never listed.
_KERNEL_TEXT = frozenset({"[vdso]", "[vsyscall]", "[uprobes]"})
_FORBIDDING = frozenset({Action.DENY, Action.KILL})
# How a trampfd object shows in /proc/PID/maps: the RFC's anonymous inode,
# anonymous memory named "trampfd" (the emulator's v1 pages), or a memfd.
_TRAMPFD_OBJECT = re.compile(
    r"(?:anon_inode:)?\[trampfd\]|\[anon:trampfd\]|/memfd:(?:trampfd|\[trampfd\])(?: \(deleted\))?"
)
_PYTHON_EXE = re.compile(r"python(\d+)\.(\d+)(t?)$")
_PYTHON_LIB = re.compile(r"libpython(\d+)\.(\d+)(t?)\.so|\.cpython-(\d)(\d+)(t?)-")


@dataclass(frozen=True)
class SymbolRef:
    """An address resolved: `object` is the mapped file or region name
    ('[anon]', '[stack]', '/memfd:x (deleted)'), None when unmapped. With a
    `symbol`, `offset` is from the symbol's start; otherwise it is the ELF
    virtual address for an ELF file and the offset in the region for other
    memory. `source` is 'symtab' (the file's symbol tables) or 'derived'
    (recognised code: libffi's hidden closure entry points)."""

    addr: int
    object: str | None
    symbol: str | None
    offset: int
    source: str | None = None

    def __str__(self) -> str:
        if self.object is None:
            return f"{self.addr:#x} (unmapped)"
        where = os.path.basename(self.object) if self.object.startswith("/") else self.object
        if self.symbol is None:
            return f"{where}+{self.offset:#x}"
        suffix = f"+{self.offset:#x}" if self.offset else ""
        return f"{self.symbol}{suffix} in {where}"


@dataclass(frozen=True)
class ClosureReport:
    """A libffi closure: `closure` its address, `fun` the C function libffi
    calls with `user_data`; `callback` the ctypes callback when the process
    is CPython and user_data is a ctypes thunk, else `callback_note` says why
    there is none."""

    closure: int
    cif: int
    fun: SymbolRef
    user_data: int
    abi: int | None
    nargs: int | None
    callback: tr.PythonCallback | None
    callback_note: str


@dataclass(frozen=True)
class TrampolineReport:
    """One trampoline: its shape (`kind`, `variant`), where it jumps
    (`target`) and the value it hands over (`data`, a `data_kind`).
    `live` is set for stack trampolines: True when at or above a thread's
    stack pointer, False below it, None when no stack pointer was readable."""

    kind: str
    variant: str
    addr: int
    size: int
    target: SymbolRef | None
    data: int | None
    data_kind: str
    closure: ClosureReport | None = None
    live: bool | None = None
    disasm: tuple[str, ...] = ()


@dataclass(frozen=True)
class Judged:
    """The call a standing region is judged as, and the policy's decision
    (None without a policy)."""

    syscall: str
    prot: frozenset[str]
    gained: frozenset[str]
    new_mapping: bool
    decision: Decision | None


class RegionReport(NamedTuple):
    """One region of interest. `categories` are its hazards, most severe
    first; `aliases` the other views of a dual-mapped object; `note` says why
    a region without categories is listed, or what could not be read.

    A named tuple, not a frozen dataclass like the other reports: a JIT
    has thousands of regions, and a frozen dataclass of these fields costs
    four times as much to make (one object.__setattr__ per field)."""

    start: int
    end: int
    perms: str
    path: str
    backing: str
    categories: tuple[Category, ...]
    judged: Judged
    aliases: tuple[tuple[int, int, str], ...] = ()
    note: str = ""
    trampolines: tuple[TrampolineReport, ...] = ()
    free_slots: int = 0
    scanned: int = 0
    truncated: bool = False


@dataclass(frozen=True)
class ProcessReport:
    """Everything inspect found in one process. `python` is the CPython
    version ('3.11') when the process is CPython; `personality` None when it
    could not be read; `findings` hazards of the whole process (a
    READ_IMPLIES_EXEC persona); `policy` the policy's name, if any."""

    pid: int
    exe: str
    comm: str
    uid: int
    python: str | None
    personality: int | None
    regions: tuple[RegionReport, ...]
    findings: tuple[tuple[Category, Judged], ...]
    notes: tuple[str, ...]
    policy: str | None

    @property
    def trampolines(self) -> tuple[TrampolineReport, ...]:
        """Every trampoline of every region, in address order."""
        return tuple(t for region in self.regions for t in region.trampolines)


@dataclass
class InspectAll:
    """The result of inspect_all(): one report per process inspected, and the
    processes skipped by reason ('self'; 'no-memory': kernel threads and
    zombies; 'vanished'; 'denied'; 'error')."""

    reports: list[ProcessReport] = field(default_factory=list)
    skipped: Counter[str] = field(default_factory=Counter)


# A region this small may be recognised as a whole trampfd v2 table.
_TABLE_LIMIT = 16 * PAGE_SIZE


class _Scan(NamedTuple):
    """What scanning one region found: decoded trampolines, unused table
    slots, bytes scanned, whether it stopped early, and whether the region
    holds trampfd v2 code and int3 padding only."""

    trampolines: tuple[TrampolineReport, ...]
    free: int
    scanned: int
    truncated: bool
    only_trampfd: bool


# --- reading memory ----------------------------------------------------------------


class _Memory:
    """Reads of one process's memory, page-cached for the small pointer
    chases; unreadable memory reads as b''. A process that is gone or denied
    raises NoSuchProcess or AccessDenied."""

    def __init__(self, pid: int):
        self.pid = pid
        self._pages: dict[int, bytes] = {}

    def raw(self, addr: int, size: int) -> bytes:
        """Read `size` bytes at `addr` uncached (b'' when unmapped)."""
        try:
            return procfs.read_mem(self.pid, addr, size)
        except (NoSuchProcess, AccessDenied):
            raise
        except TraceError:
            return b""

    def read(self, addr: int, size: int) -> bytes:
        """Read up to `size` bytes at `addr` through the page cache."""
        out = bytearray()
        while size > 0 and 0 <= addr < 1 << 64:
            page = addr & ~(PAGE_SIZE - 1)
            data = self._pages.get(page)
            if data is None:
                data = self._pages[page] = self.raw(page, PAGE_SIZE)
            chunk = data[addr - page : addr - page + size]
            out += chunk
            if len(chunk) < min(size, PAGE_SIZE - (addr - page)):
                break
            addr += len(chunk)
            size -= len(chunk)
        return bytes(out)

    def word(self, addr: int | None) -> int | None:
        """The 64-bit word at `addr`, or None when unreadable."""
        raw = self.read(addr, 8) if addr is not None else b""
        return int.from_bytes(raw, "little") if len(raw) == 8 else None


# --- symbols -----------------------------------------------------------------------


class _Symbols:
    """Resolves addresses of one address space to object + symbol."""

    def __init__(self, maps: tuple[MapEntry, ...], elves: ElfCache, derived: dict):
        self._maps = sorted(maps, key=lambda m: m.start)
        self._starts = [m.start for m in self._maps]
        self._elves = elves
        self._derived = derived

    def entry(self, addr: int) -> MapEntry | None:
        """The mapping holding `addr`, or None."""
        i = bisect.bisect_right(self._starts, addr) - 1
        return self._maps[i] if i >= 0 and addr < self._maps[i].end else None

    def elf(self, entry: MapEntry) -> ElfInfo | None:
        """The ELF behind a file mapping, when it is still the file mapped."""
        backing = backing_from_entry(entry)
        if backing.kind != FILE or backing.deleted:
            return None
        try:
            info = self._elves.get(entry.path)
        except ElfError:
            return None
        return info if info.key.ino == entry.inode else None

    def resolve(self, addr: int) -> SymbolRef:
        """Return what `addr` is: object, symbol and offset (never raises)."""
        entry = self.entry(addr)
        if entry is None:
            return SymbolRef(addr, None, None, 0)
        name = entry.path or "[anon]"
        info = self.elf(entry)
        if info is None:
            return SymbolRef(addr, name, None, addr - entry.start)
        vaddr = map_to_vaddr(info, addr, entry.start, entry.offset)
        try:
            found = symbolize(info, addr, entry.start, entry.offset)
        except ElfError:
            found = None
        if found is not None:
            return SymbolRef(addr, name, found[0], found[1], "symtab")
        if os.path.basename(entry.path).startswith("libffi"):
            if info.key not in self._derived:
                self._derived[info.key] = tr.libffi_entry_points(info)
            derived = self._derived[info.key].get(vaddr)
            if derived is not None:
                return SymbolRef(addr, name, derived, 0, "derived")
        return SymbolRef(addr, name, None, vaddr if vaddr is not None else addr - entry.start + entry.offset)


# --- the process -------------------------------------------------------------------


def _python_version(info: ProcessInfo, maps: tuple[MapEntry, ...]) -> tuple[tuple[int, int] | None, str]:
    """The CPython version of a process, from its executable or a mapped
    libpython/extension name; (None, note) for free-threaded builds."""
    found = _PYTHON_EXE.search(os.path.basename(info.exe))
    groups = found.groups() if found else None
    if groups is None:
        for entry in maps:
            m = _PYTHON_LIB.search(entry.path) if entry.path else None
            if m:
                groups = m.groups()[:3] if m.group(1) else m.groups()[3:]
                break
    if groups is None:
        return None, ""
    if groups[2]:
        return None, "free-threaded CPython: its object layout is not known to trampwatch"
    return (int(groups[0]), int(groups[1])), ""


def _stack_pointers(pid: int) -> list[int]:
    """Stack pointers of the threads of `pid` that are blocked (from
    /proc/PID/task/TID/syscall); running threads have none to read."""
    sps = []
    try:
        tids = procfs.list_threads(pid)
    except TraceError:
        return sps
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/syscall", encoding="ascii") as f:
                fields = f.read().split()
        except OSError:
            continue
        if len(fields) >= 3 and fields[0] != "running":
            sps.append(int(fields[-2], 16))
    return sps


def _exe_execstack(elves: ElfCache, exe: str) -> bool:
    try:
        return bool(elves.get(exe).execstack) if exe else False
    except ElfError:
        return False


def _perms(entry: MapEntry) -> str:
    return prot_text(entry.prot) + ("s" if entry.shared else "p")


def _shared_writable(entry: MapEntry) -> bool:
    """A view whose writes reach every other view of its object."""
    return entry.shared and bool(entry.prot & PROT_WRITE)


def _is_trampfd_page(entry: MapEntry) -> bool:
    """The emulator's (or a kernel's) trampfd mapping, recognised by its
    object's name and by never being writable."""
    return not entry.prot & PROT_WRITE and _TRAMPFD_OBJECT.fullmatch(entry.path) is not None


def _displaced(entry: MapEntry, info: ElfInfo, head: int | None) -> bool:
    """True when an executable file mapping is not where the loader put the
    file's code: its load bias differs from that of `head`, the nearest
    mapping of the file's start below it (libffi's static trampoline tables
    and V8's embedded builtins are such second mappings of a code page)."""
    seg = next((s for s in info.segments if s.flags & PF_X and s.offset <= entry.offset + (
        entry.end - entry.start) and entry.offset < s.offset + s.filesz), None)
    if seg is None:
        return False
    if head is None:
        return True
    point = max(entry.offset, seg.offset)
    bias = entry.start + (point - entry.offset) - (seg.vaddr + (point - seg.offset))
    head_vaddr = map_to_vaddr(info, head, head, 0)
    return head_vaddr is None or head - head_vaddr != bias


def _decide(policy: Policy | None, subject: Subject, categories: tuple[Category, ...]) -> Judged:
    """Judge a standing state with `policy` (no decision without one)."""
    decision = decide(policy, facts_of(subject, categories)) if policy is not None else None
    return Judged(subject.syscall, prot_names(subject.prot), prot_names(subject.gained or 0),
                  subject.new_mapping, decision)


def _region_subject(pid: int, info: ProcessInfo, entry: MapEntry, backing: Backing, execstack: bool,
                    personality: int | None, traits: tuple[str, ...]) -> Subject:
    """A standing region as the one call that would create it now: an mmap
    of it with its protection (a new mapping, every bit gained); the stack
    as exec when the program's PT_GNU_STACK asked for it, else as the
    mprotect that added exec; a heap under READ_IMPLIES_EXEC as brk, else
    as an mprotect."""
    executable = bool(entry.prot & PROT_EXEC)
    syscall, gained, new_mapping = "mmap", entry.prot, True
    if (backing.kind == STACK and not execstack) or (
            backing.kind == HEAP and not (personality is not None and personality & READ_IMPLIES_EXEC)):
        syscall, gained, new_mapping = "mprotect", PROT_EXEC, False
    elif backing.kind == STACK:
        syscall = EXEC_PSEUDO_SYSCALL
    elif backing.kind == HEAP:
        syscall = "brk"
    change = Change(syscall="mmap", kind="map", start=entry.start, end=entry.end, prot=entry.prot,
                    backing=backing, shared=entry.shared, new_mapping=new_mapping,
                    shm_exec=backing.kind == SHM and executable)
    return region_subject(pid, info, change, syscall, backing, gained, traits)


class _Inspector:
    """One inspection of one process."""

    def __init__(self, pid: int, policy: Policy | None, disasm: bool, elves: ElfCache, derived: dict):
        self.pid = pid
        self.policy = policy
        self.disasm = disasm
        self.elves = elves
        self.info = procfs.read_process_info(pid)
        self.maps = procfs.read_maps(pid)
        self.notes: list[str] = []
        self.personality = self._personality()
        self.version, note = _python_version(self.info, self.maps)
        if note:
            self.notes.append(note)
        self.mem = _Memory(pid)
        self.symbols = _Symbols(self.maps, elves, derived)
        self.model = ShadowModel()
        self.model.seed(pid, self.info, self.maps, self.personality or 0)
        self._heads: dict[tuple[int, int], list[int]] = {}
        for entry in self.maps:
            if entry.offset == 0 and entry.inode:
                self._heads.setdefault((entry.dev, entry.inode), []).append(entry.start)
        self.sps = _stack_pointers(pid)
        self.scan_budget = PROCESS_SCAN_LIMIT
        self._judged: dict[tuple, tuple[tuple[Category, ...], Judged]] = {}

    def _personality(self) -> int | None:
        try:
            return procfs.read_personality(self.pid)
        except NoSuchProcess:
            raise
        except TraceError as err:
            self.notes.append(f"personality unreadable ({err}): READ_IMPLIES_EXEC not checked")
            return None

    def report(self) -> ProcessReport:
        """Inspect the process; raises NoSuchProcess or AccessDenied."""
        partners = self._dual_map_partners()
        regions = []
        for entry in self.maps:
            region = self._region(entry, partners.get(entry.start, ()))
            if region is not None:
                regions.append(region)
        findings = []
        if self.personality is not None:
            persona = Change(syscall="personality", kind="personality", start=0, end=0, prot=0,
                             backing=NO_BACKING, shared=False, new_mapping=False,
                             personality_set=self.personality)
            subject = region_subject(self.pid, self.info, persona, "personality", NO_BACKING, 0)
            categories = classify(subject, self.model)
            if categories:
                judged = _decide(self.policy, subject, categories)
                findings.extend((category, judged) for category in categories)
        policy_name = self.policy.name if self.policy is not None else None
        version = f"{self.version[0]}.{self.version[1]}" if self.version else None
        return ProcessReport(self.pid, self.info.exe, self.info.comm, self.info.uid, version,
                             self.personality, tuple(regions), tuple(findings), tuple(self.notes),
                             policy_name)

    def _dual_map_partners(self) -> dict[int, tuple[tuple[int, int, str], ...]]:
        """For each region in a dual map (one object writable through a shared
        view and executable through another), the other views."""
        groups: dict[tuple, list[MapEntry]] = {}
        for entry in self.maps:
            identity = backing_from_entry(entry).identity
            if identity is not None and (entry.prot & PROT_EXEC or _shared_writable(entry)):
                groups.setdefault(identity, []).append(entry)
        partners = {}
        for members in groups.values():
            writers = [m for m in members if _shared_writable(m)]
            runners = [m for m in members if m.prot & PROT_EXEC]
            for m in members:
                others = (writers if m.prot & PROT_EXEC else []) + (runners if _shared_writable(m) else [])
                views = tuple(sorted({(o.start, o.end, _perms(o)) for o in others if o is not m}))
                if views:
                    partners[m.start] = views
        return partners

    def _region(self, entry: MapEntry, aliases: tuple) -> RegionReport | None:
        executable = bool(entry.prot & PROT_EXEC)
        trampfd_page = _is_trampfd_page(entry)
        if entry.path in _KERNEL_TEXT or not (executable or aliases or trampfd_page):
            return None
        backing = backing_from_entry(entry)
        note = ""
        if executable and backing.kind == FILE and not backing.deleted and not entry.prot & PROT_WRITE:
            note = self._unusual_file_code(entry)
            if not note:
                return None
        trampolines: tuple[TrampolineReport, ...] = ()
        free = scanned = 0
        truncated = False
        traits: tuple[str, ...] = ()
        if trampfd_page:
            traits = (TRAMPFD_OBJECT,)
            if not executable:
                note = "trampfd v1 page: its register context lives in the kernel (or emulator), not here"
        if executable and entry.prot & PROT_READ:
            trampolines, free, scanned, truncated, table = self._scan(entry)
            if table and not entry.prot & PROT_WRITE and not aliases:
                # Nothing but trampfd v2 code: whoever wrote it, it can do
                # no more than a trampfd table (the emulator's are such pages).
                traits = (TRAMPFD_OBJECT,)
                note = note or "holds trampfd v2 trampolines and int3 padding only"
            elif not traits and any(t.kind == tr.TRAMPFD_V2 for t in trampolines):
                traits = (HOLDS_TRAMPFD,)
        elif executable:
            note = note or "execute-only: not scanned"
        cats, judged = self._judge(entry, backing, traits)
        return RegionReport(entry.start, entry.end, _perms(entry), entry.path, backing.kind, cats, judged,
                            aliases, note, trampolines, free, scanned, truncated)

    def _judge(self, entry: MapEntry, backing: Backing,
               traits: tuple[str, ...]) -> tuple[tuple[Category, ...], Judged]:
        """A region's categories and judgement. Memory no other view can
        alias (no object identity: private anonymous memory, stack, heap) is
        judged by what it is, never by where it is: its protection, sharing,
        backing and traits are all classify and the policy read of it
        besides the process's own facts, so regions alike in all of them
        share one judgement (a JIT's thousands of pages). An object's views
        are judged one by one: whether one is a dual map depends on where
        the others are."""
        key = (entry.prot, entry.shared, backing, traits) if backing.identity is None else None
        if key is not None and key in self._judged:
            return self._judged[key]
        execstack = backing.kind == STACK and _exe_execstack(self.elves, self.info.exe)
        subject = _region_subject(self.pid, self.info, entry, backing, execstack, self.personality, traits)
        cats = classify(subject, self.model)
        if cats == (Category.TRAMPFD,):
            # Nothing but a trampoline object: judged as the trampfd operation that made it.
            subject = subject._replace(syscall=TRAMPFD_PSEUDO_SYSCALL, backing=TRAMPFD_BACKING)
        result = cats, _decide(self.policy, subject, cats)
        if key is not None:
            self._judged[key] = result
        return result

    def _unusual_file_code(self, entry: MapEntry) -> str:
        """'' for a file's code where the loader put it (plain text, not
        listed), else why the executable file mapping is listed."""
        heads = self._heads.get((entry.dev, entry.inode), [])
        i = bisect.bisect_right(heads, entry.start) - 1
        head = heads[i] if i >= 0 else None
        # The common case needs no ELF parsing: the file's start is mapped
        # below, and code sits as far above it as it lies in the file.
        if head is not None and head != entry.start and entry.start - head == entry.offset:
            return ""
        elf = self.symbols.elf(entry)
        if elf is None:
            try:
                self.elves.get(entry.path)
            except ElfError as err:
                if err.reason == "not-elf":
                    return "executable mapping of a file that is not ELF"
            return ""
        if _displaced(entry, elf, head):
            return "file code mapped a second time, away from where the loader put it"
        return ""

    def _scan(self, entry: MapEntry) -> _Scan:
        """Find and decode the trampolines of one region."""
        size = entry.end - entry.start
        limit = min(size, REGION_SCAN_LIMIT, self.scan_budget)
        shapes: dict[int, tr.Shape] = {}
        pos = entry.start
        only_v2 = size <= _TABLE_LIMIT
        while pos < entry.start + limit:
            want = min(_CHUNK + _OVERLAP, entry.start + limit - pos)
            code = self.mem.raw(pos, want)
            if not code:
                break
            found = tr.find_trampolines(pos, code)
            only_v2 = only_v2 and len(code) == size and tr.only_trampfd_table(pos, code, found)
            for shape in found:
                shapes.setdefault(shape.addr, shape)
            pos += _CHUNK
        scanned = min(limit, max(0, pos - entry.start))
        self.scan_budget -= scanned
        reports, free = [], 0
        for shape in (shapes[a] for a in sorted(shapes)):
            report = self._trampoline(shape, entry)
            if report is None:
                free += 1
            else:
                reports.append(report)
        return _Scan(tuple(reports), free, scanned, scanned < size, only_v2 and bool(shapes))

    def _trampoline(self, shape: tr.Shape, entry: MapEntry) -> TrampolineReport | None:
        """Decode one shape; None for an unused table slot (no target set)."""
        target = shape.target if shape.target is not None else self.mem.word(shape.target_slot)
        data = shape.data if shape.data is not None else self.mem.word(shape.data_slot)
        if shape.kind in (tr.LIBFFI_STATIC, tr.TRAMPFD_V2) and not target:
            return None
        closure = None
        if shape.data_kind == tr.CLOSURE and data:
            closure = self._closure(shape, data)
        live = None
        if shape.kind == tr.GCC_NESTED:
            # Stacks grow down: a trampoline below every blocked thread's
            # stack pointer in this region belongs to a frame that returned.
            inside = [sp for sp in self.sps if entry.start <= sp < entry.end]
            live = shape.addr >= min(inside) if inside else None
        disasm = tr.disassemble(shape.addr, self.mem.read(shape.addr, shape.size)) if self.disasm else ()
        return TrampolineReport(shape.kind, shape.variant, shape.addr, shape.size,
                                self.symbols.resolve(target) if target is not None else None,
                                data, shape.data_kind, closure, live, disasm)

    def _closure(self, shape: tr.Shape, closure: int) -> ClosureReport | None:
        fields = shape.fields if shape.fields is not None else closure + (shape.fields_from_data or 0)
        words = tr.read_closure_fields(self.mem.read, fields)
        if words is None:
            return None
        callback, note = None, ""
        if self.version is None:
            note = "not a CPython process"
        else:
            callback, note = tr.read_ctypes_callback(self.mem.read, self.version, words.user_data,
                                                     shape.addr, words.cif)
        return ClosureReport(closure, words.cif, self.symbols.resolve(words.fun), words.user_data,
                             words.abi, words.nargs, callback, note)


# --- the API -----------------------------------------------------------------------


def inspect_process(pid: int, policy: Policy | None = None, disasm: bool = False,
                    elf_cache: ElfCache | None = None) -> ProcessReport:
    """Inspect one live process without stopping it and return its report.

    `policy` judges each hazard (None: no decisions); `disasm` adds each
    trampoline's instructions. Raises NoSuchProcess (no such pid, or it
    exited meanwhile), AccessDenied (may not read its maps or memory) or
    TraceError.
    """
    if pid <= 0:
        raise NoSuchProcess(f"not a process id: {pid}", pid=pid)
    elves = elf_cache if elf_cache is not None else ElfCache()
    try:
        with cycle_collector_paused():
            return _Inspector(pid, policy, disasm, elves, {}).report()
    finally:
        procfs.close_mem(pid)


def inspect_all(policy: Policy | None = None, disasm: bool = False) -> InspectAll:
    """Inspect every process the caller may read, except this one; count the
    others by reason in `skipped`. Never raises for a process that vanishes
    or is denied."""
    result = InspectAll()
    elves = ElfCache()
    me = os.getpid()
    for pid in procfs.list_pids():
        if pid == me:
            result.skipped["self"] += 1
            continue
        try:
            report = inspect_process(pid, policy, disasm, elves)
        except NoSuchProcess:
            result.skipped["vanished"] += 1
            continue
        except AccessDenied:
            result.skipped["denied"] += 1
            continue
        except TraceError:
            result.skipped["error"] += 1
            continue
        if not report.exe and not report.regions:
            result.skipped["no-memory"] += 1
            continue
        result.reports.append(report)
    return result


def forbidden(report: ProcessReport) -> bool:
    """True when the report's policy denies or kills something the process holds."""
    judged = [r.judged for r in report.regions] + [j for _, j in report.findings]
    return any(j.decision is not None and j.decision.action in _FORBIDDING for j in judged)


# --- output ------------------------------------------------------------------------
