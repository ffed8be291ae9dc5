"""Scan files for W^X hazards without running them: executable stacks, W+X
load segments, text relocations, READ_IMPLIES_EXEC triggers, and imports of
the closure and memory APIs that trampolines are built with.

scan_paths() walks files and directories safely -- each inode once, symlink
loops harmless, unreadable and non-ELF files counted and skipped, never a
crash -- and yields one ScanResult per ELF file (and per file that failed).
"""

from __future__ import annotations

import errno
import os
import stat
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from tracer.categories import Category
from tracer.classify import classify
from tracer.elf import ElfError, ElfInfo, NotElfError, read_elf
from tracer.subject import file_subject

# Finding kinds: the first four are hazards (classify gives them taxonomy
# categories), the last three are facts worth knowing that no category covers.
EXECSTACK = "execstack"
WX_SEGMENT = "wx-segment"
TEXTREL = "textrel"
READ_IMPLIES_EXEC = "read-implies-exec"
CLOSURE_API = "closure-api"
MEMORY_API = "memory-api"
NO_GNU_STACK = "no-gnu-stack"

# Imports that build trampolines: libffi's closure API, and the cache flush
# that JITs and trampoline writers call after writing code.
CLOSURE_FUNCTIONS = frozenset(
    {
        "ffi_closure_alloc",
        "ffi_prep_closure_loc",
        "ffi_prep_closure",
        "__clear_cache",
        "__builtin___clear_cache",
    }
)
# Imports that can map or re-protect memory executable, or make the anonymous
# file a dual mapping needs.
MEMORY_FUNCTIONS = frozenset({"mmap", "mmap64", "mprotect", "pkey_mprotect", "memfd_create", "shmat"})

# 32-bit ABIs on which the kernel turns a missing PT_GNU_STACK into
# READ_IMPLIES_EXEC at exec (x86's ia32 and arm64's compat ARM).
_RIE_MACHINES = frozenset({"EM_386", "EM_ARM"})


@dataclass(frozen=True)
class Finding:
    """One hazard or indicator in one file. `categories` are the taxonomy
    categories classify gives it, most severe first (empty for indicators)."""

    kind: str
    categories: tuple[Category, ...]
    detail: str


@dataclass(frozen=True)
class ScanResult:
    """One scanned file: its ELF facts and findings, or why it could not be
    read (`error` is ElfError's reason code, `message` the explanation)."""

    path: str
    info: ElfInfo | None
    findings: tuple[Finding, ...] = ()
    error: str | None = None
    message: str = ""

    @property
    def categories(self) -> tuple[Category, ...]:
        """Every category of every finding, most severe first."""
        return classify(file_subject(self.path, tuple(finding.kind for finding in self.findings)))


@dataclass
class ScanSummary:
    """Counts over a scan, filled in as its results are consumed.

    `files_seen` counts regular files examined (ELF, non-ELF and failed);
    `skipped` entries not examined ('symlink', 'special', 'duplicate',
    'other-filesystem'); `errors` failures by reason; `categories` and
    `indicators` the number of files with at least one finding of each.
    """

    files_seen: int = 0
    directories: int = 0
    elf: int = 0
    not_elf: int = 0
    debug_only: int = 0
    elf_with_findings: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    categories: Counter[Category] = field(default_factory=Counter)
    indicators: Counter[str] = field(default_factory=Counter)
    elapsed: float = 0.0

    @property
    def files_per_second(self) -> float:
        """Files examined per second of scanning (0.0 before any time passed)."""
        return self.files_seen / self.elapsed if self.elapsed > 0 else 0.0


def findings_for(info: ElfInfo) -> tuple[Finding, ...]:
    """Return the W^X findings of one parsed ELF file, hazards first.

    Relocatable objects, core files and separate debug-info files (whose
    headers are copies of another file's) have no segment findings.
    """
    if info.e_type not in ("EXEC", "DYN") or not info.has_code:
        return ()
    found = [*_stack_findings(info)]
    for seg in info.segments:
        if seg.writable_executable:
            found.append((WX_SEGMENT,
                          f"PT_LOAD at {seg.vaddr:#x} ({seg.memsz:#x} bytes) is writable and executable"))
    if info.textrel:
        found.append((TEXTREL,
                      "DT_TEXTREL: the loader writes into code pages, then makes them executable again"))
    for kind, names in ((CLOSURE_API, CLOSURE_FUNCTIONS), (MEMORY_API, MEMORY_FUNCTIONS)):
        used = sorted(info.imports & names)
        if used:
            found.append((kind, "imports " + ", ".join(used)))
    return tuple(Finding(kind, classify(file_subject(info.path, (kind,))), detail) for kind, detail in found)


def _stack_findings(info: ElfInfo) -> list[tuple[str, str]]:
    """The stack's finding (kind, detail), if any."""
    if info.execstack:
        return [(EXECSTACK, "PT_GNU_STACK asks for an executable stack")]
    if info.execstack is False:
        return []
    if not info.is_program:
        # glibc's ld.so treats a library without the header as needing an
        # executable stack, and makes the whole process's stack executable.
        return [(EXECSTACK, "no PT_GNU_STACK: ld.so makes the stack executable when it loads this library")]
    if info.elfclass == 32 and info.machine in _RIE_MACHINES:
        return [(READ_IMPLIES_EXEC,
                 "no PT_GNU_STACK on a 32-bit program: the kernel sets READ_IMPLIES_EXEC at exec")]
    return [(NO_GNU_STACK, "no PT_GNU_STACK: READ_IMPLIES_EXEC on kernels before 5.8, none since")]


def scan_paths(
    paths: Iterable[str],
    follow_symlinks: bool = False,
    summary: ScanSummary | None = None,
    one_filesystem: bool = False,
) -> Iterator[ScanResult]:
    """Scan files and directory trees; yield a ScanResult for each ELF file
    and for each file or directory that could not be read.

    Paths named directly are followed even when they are symlinks (like
    `find -H`); symlinks met inside directories are followed only with
    `follow_symlinks`. Each (device, inode) is examined once, so hard links
    and symlink loops cost nothing. `one_filesystem` keeps the walk on each
    root's device. Pass a ScanSummary to have it filled in; its `elapsed`
    covers the time until the iterator is exhausted or closed. Never raises
    for unreadable or malformed files.
    """
    counts = summary if summary is not None else ScanSummary()
    seen: set[tuple[int, int]] = set()
    started = time.monotonic()
    try:
        for root in paths:
            yield from _scan_root(os.fspath(root), follow_symlinks, one_filesystem, seen, counts)
    finally:
        counts.elapsed += time.monotonic() - started


_WALK_REASONS = {
    errno.ENOENT: "vanished",
    errno.ENOTDIR: "vanished",
    errno.EACCES: "unreadable",
    errno.EPERM: "unreadable",
    errno.ELOOP: "symlink-loop",
}


def _failed(path: str, err: OSError, counts: ScanSummary) -> ScanResult:
    """Count and describe a path the walk itself could not stat or list."""
    reason = _WALK_REASONS.get(err.errno or 0, "io-error")
    counts.errors[reason] += 1
    return ScanResult(path, None, error=reason, message=os.strerror(err.errno) if err.errno else str(err))


def _scan_root(
    root: str, follow: bool, one_filesystem: bool, seen: set[tuple[int, int]], counts: ScanSummary
) -> Iterator[ScanResult]:
    try:
        st = os.stat(root)
    except OSError as err:
        yield _failed(root, err, counts)
        return
    if (st.st_dev, st.st_ino) in seen:
        counts.skipped["duplicate"] += 1
        return
    seen.add((st.st_dev, st.st_ino))
    if stat.S_ISREG(st.st_mode):
        yield from _examine(root, counts)
        return
    if not stat.S_ISDIR(st.st_mode):
        counts.skipped["special"] += 1
        return
    device = st.st_dev
    pending = [root]
    while pending:
        directory = pending.pop()
        counts.directories += 1
        try:
            with os.scandir(directory) as listing:
                entries = sorted(listing, key=lambda entry: entry.name)
        except OSError as err:
            yield _failed(directory, err, counts)
            continue
        subdirectories = []
        for entry in entries:
            try:
                if not follow and entry.is_symlink():
                    counts.skipped["symlink"] += 1
                    continue
                st = entry.stat(follow_symlinks=follow)
            except OSError as err:
                yield _failed(entry.path, err, counts)
                continue
            identity = (st.st_dev, st.st_ino)
            if identity in seen:
                counts.skipped["duplicate"] += 1
                continue
            seen.add(identity)
            if stat.S_ISDIR(st.st_mode):
                if one_filesystem and st.st_dev != device:
                    counts.skipped["other-filesystem"] += 1
                else:
                    subdirectories.append(entry.path)
            elif stat.S_ISREG(st.st_mode):
                yield from _examine(entry.path, counts)
            else:
                counts.skipped["special"] += 1
        # Reversed, so the depth-first walk visits subdirectories in name order.
        pending.extend(reversed(subdirectories))


def _examine(path: str, counts: ScanSummary) -> Iterator[ScanResult]:
    counts.files_seen += 1
    try:
        info = read_elf(path)
    except NotElfError:
        counts.not_elf += 1
        return
    except ElfError as err:
        counts.errors[err.reason] += 1
        yield ScanResult(path, None, error=err.reason, message=err.detail)
        return
    counts.elf += 1
    if not info.has_code:
        counts.debug_only += 1
    findings = findings_for(info)
    if findings:
        counts.elf_with_findings += 1
    for category in {cat for finding in findings for cat in finding.categories}:
        counts.categories[category] += 1
    for kind in {finding.kind for finding in findings if not finding.categories}:
        counts.indicators[kind] += 1
    yield ScanResult(path, info, findings)
