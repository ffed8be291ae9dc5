"""Walking files and directories for scan: each (device, inode) examined
once, symlinks skipped unless followed, unreadable and non-ELF files counted,
never a crash.

A directory is opened once and its files are opened relative to it (one
path component for the kernel to look up, not the whole path), and a regular
file is opened before it is looked at: its fstat gives both the identity and
the key of its ElfInfo.
"""

from __future__ import annotations

import errno
import os
import stat
from collections import Counter
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from operator import attrgetter

from tracer.categories import Category
from tracer.elf import ElfError, read_elf_fd, read_error
from tracer.elf_fast import ELF_MAGIC, HEAD_SIZE

from .findings import ScanResult, findings_for

_DIRECTORY_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
# Non-blocking, so that a FIFO put in a file's place never waits for a writer.
_FILE_FLAGS = os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK
_NOFOLLOW_FILE_FLAGS = _FILE_FLAGS | os.O_NOFOLLOW
# How many entries of a directory go by between two calls of Walk.tick.
TICK_EVERY = 16

_NAME = attrgetter("name")

Identity = tuple[int, int]
# A directory still to walk: its path and its identity.
Pending = tuple[str, Identity]


@dataclass
class ScanSummary:
    """Counts over a scan, filled in as its results are consumed.

    `files_seen` counts regular files examined (ELF, non-ELF and failed);
    `skipped` entries not examined ('symlink', 'special', 'duplicate',
    'other-filesystem'); `errors` failures by reason; `categories` and
    `indicators` the number of files with at least one finding of each.
    `helper_units` counts the subtrees a helper process walked,
    `redone_units` those given to it and walked again here, and
    `helper_failure` says how the helper ended when it died early.
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
    helper_units: int = 0
    redone_units: int = 0
    helper_failure: str | None = None

    @property
    def files_per_second(self) -> float:
        """Files examined per second of scanning (0.0 before any time passed)."""
        return self.files_seen / self.elapsed if self.elapsed > 0 else 0.0

    def add(self, other: ScanSummary) -> None:
        """Add the walk counts of `other` (a part of the same scan) to these;
        a count of zero or less adds no key."""
        for name in ("files_seen", "directories", "elf", "not_elf", "debug_only", "elf_with_findings"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for mine, theirs in ((self.skipped, other.skipped), (self.errors, other.errors),
                             (self.categories, other.categories), (self.indicators, other.indicators)):
            mine += theirs

    def count_file(self, result: ScanResult | None, sign: int = 1) -> None:
        """Count one examined regular file: `result` is its ScanResult, None
        when it is not ELF. A sign of -1 takes the file back out (leaving
        zero counts that add() drops)."""
        self.files_seen += sign
        if result is None:
            self.not_elf += sign
            return
        if result.error is not None:
            self.errors[result.error] += sign
            return
        info = result.info
        assert info is not None
        self.elf += sign
        if not info.has_code:
            self.debug_only += sign
        if result.findings:
            self.elf_with_findings += sign
        for category in {cat for finding in result.findings for cat in finding.categories}:
            self.categories[category] += sign
        for kind in {finding.kind for finding in result.findings if not finding.categories}:
            self.indicators[kind] += sign


_WALK_REASONS = {
    errno.ENOENT: "vanished",
    errno.ENOTDIR: "vanished",
    errno.EACCES: "unreadable",
    errno.EPERM: "unreadable",
    errno.ELOOP: "symlink-loop",
}


def failed(path: str, err: OSError, counts: ScanSummary) -> ScanResult:
    """Count and describe a path the walk itself could not stat or list."""
    reason = _WALK_REASONS.get(err.errno or 0, "io-error")
    counts.errors[reason] += 1
    return ScanResult(path, None, error=reason, message=os.strerror(err.errno) if err.errno else str(err))


def examine(path: str, fd: int, st: os.stat_result) -> ScanResult | None:
    """The ScanResult of the regular file open at `fd` (`st` its fstat), or
    None when it is not ELF."""
    try:
        head = os.pread(fd, HEAD_SIZE, 0)
    except OSError as err:
        return _unopened(path, err)
    if not head.startswith(ELF_MAGIC):
        return None
    try:
        info = read_elf_fd(path, fd, st, head)
    except ElfError as err:
        return ScanResult(path, None, error=err.reason, message=err.detail)
    return ScanResult(path, info, findings_for(info))


def examine_path(path: str) -> ScanResult | None:
    """examine() for a file named by its path (a root given directly)."""
    try:
        fd = os.open(path, _FILE_FLAGS)
    except OSError as err:
        return _unopened(path, err)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return None
        return examine(path, fd, st)
    finally:
        os.close(fd)


def _unopened(path: str, err: OSError) -> ScanResult:
    """The result of a regular file that could not be opened or read."""
    failure = read_error(path, err)
    return ScanResult(path, None, error=failure.reason, message=failure.detail)


class Walk:
    """The state of one scan's walk: the identities seen, the counts, the
    options. `report`, when set, collects (identity, kind, result) for what
    another walk may also have seen: directories, special files, and regular
    files with more than one link or that are mount points (kind 'dir',
    'special' or 'file'; result the file's ScanResult, None when not ELF).
    `tick`, when set, is called between directories and every TICK_EVERY
    entries."""

    def __init__(self, counts: ScanSummary, seen: set[Identity], follow: bool, one_filesystem: bool):
        self.counts = counts
        self.seen = seen
        self.follow = follow
        self.one_filesystem = one_filesystem
        self.report: list[tuple[Identity, str, ScanResult | None]] | None = None
        self.tick: Callable[[], None] | None = None

    def tree(self, top: Pending, device: int) -> Iterator[ScanResult]:
        """Walk the directory `top` (already counted as seen) depth first,
        each directory's files in name order before its subdirectories."""
        pending = [top]
        while pending:
            subdirectories = yield from self.directory(pending.pop()[0], device)
            pending.extend(reversed(subdirectories))

    def directory(self, path: str, device: int) -> Generator[ScanResult, None, list[Pending]]:
        """Examine the entries of one directory; return its subdirectories
        still to walk, in name order. `device` is the root's, for
        one_filesystem."""
        counts = self.counts
        counts.directories += 1
        try:
            dir_fd = os.open(path, _DIRECTORY_FLAGS)
        except OSError as err:
            yield failed(path, err, counts)
            return []
        try:
            try:
                with os.scandir(dir_fd) as listing:
                    entries = sorted(listing, key=_NAME)
            except OSError as err:
                yield failed(path, err, counts)
                return []
            dir_dev = os.fstat(dir_fd).st_dev if self.report is not None else 0
            return (yield from self._entries(path, dir_fd, dir_dev, device, entries))
        finally:
            os.close(dir_fd)

    def _entries(self, path: str, dir_fd: int, dir_dev: int, device: int,
                 entries: list[os.DirEntry]) -> Generator[ScanResult, None, list[Pending]]:
        prefix = path if path.endswith("/") else path + "/"
        subdirectories: list[Pending] = []
        tick, follow, seen, counts = self.tick, self.follow, self.seen, self.counts
        for index, entry in enumerate(entries):
            if tick is not None and not index % TICK_EVERY:
                tick()
            if follow or not entry.is_file(follow_symlinks=False):
                result = self._other(entry, prefix, dir_fd, dir_dev, device, subdirectories)
                if result is not None:
                    yield result
                continue
            # The listing says a regular file: opened first, so that its
            # fstat is both its identity and the key of its ElfInfo. Inline:
            # this runs for nearly every entry.
            try:
                fd = os.open(entry.name, _NOFOLLOW_FILE_FLAGS, dir_fd=dir_fd)
            except OSError as err:
                result = self._other(entry, prefix, dir_fd, dir_dev, device, subdirectories, err)
                if result is not None:
                    yield result
                continue
            try:
                st = os.fstat(fd)
                identity = (st.st_dev, st.st_ino)
                if not stat.S_ISREG(st.st_mode):  # replaced since the listing
                    result = self._other(entry, prefix, dir_fd, dir_dev, device, subdirectories)
                elif identity in seen:
                    counts.skipped["duplicate"] += 1
                    continue
                else:
                    seen.add(identity)
                    # Most files are not ELF: four bytes say so.
                    try:
                        magic = os.pread(fd, 4, 0)
                    except OSError as err:
                        result = _unopened(prefix + entry.name, err)
                    else:
                        if magic != ELF_MAGIC and self.report is None:
                            counts.files_seen += 1
                            counts.not_elf += 1
                            continue
                        result = examine(prefix + entry.name, fd, st) if magic == ELF_MAGIC else None
                    self._count(identity, st, entry, dir_dev, result)
            finally:
                os.close(fd)
            if result is not None:
                yield result
        return subdirectories

    def _other(self, entry: os.DirEntry, prefix: str, dir_fd: int, dir_dev: int, device: int,
               subdirectories: list[Pending], unopened: OSError | None = None) -> ScanResult | None:
        """Any entry, looked at before it is opened: a symlink is skipped
        unless followed, a directory is added to `subdirectories`, a regular
        file examined (`unopened` the error opening it, if that was tried)."""
        counts, path = self.counts, prefix + entry.name
        try:
            if not self.follow and entry.is_symlink():
                counts.skipped["symlink"] += 1
                return None
            st = entry.stat(follow_symlinks=self.follow)
        except OSError as err:
            return failed(path, err, counts)
        identity = (st.st_dev, st.st_ino)
        if identity in self.seen:
            counts.skipped["duplicate"] += 1
            return None
        self.seen.add(identity)
        if stat.S_ISDIR(st.st_mode):
            if self.report is not None:
                self.report.append((identity, "dir", None))
            if self.one_filesystem and st.st_dev != device:
                counts.skipped["other-filesystem"] += 1
            else:
                subdirectories.append((path, identity))
            return None
        if not stat.S_ISREG(st.st_mode):
            counts.skipped["special"] += 1
            if self.report is not None:
                self.report.append((identity, "special", None))
            return None
        if unopened is None:
            flags = _FILE_FLAGS if self.follow else _NOFOLLOW_FILE_FLAGS
            try:
                fd = os.open(entry.name, flags, dir_fd=dir_fd)
            except OSError as err:
                unopened = err
            else:
                try:
                    result = examine(path, fd, os.fstat(fd))
                finally:
                    os.close(fd)
        if unopened is not None:
            result = _unopened(path, unopened)
        self._count(identity, st, entry, dir_dev, result)
        return result

    def _count(self, identity: Identity, st: os.stat_result, entry: os.DirEntry, dir_dev: int,
               result: ScanResult | None) -> None:
        """Count an examined file; report it when another walk may meet it
        too: more than one link, or a mount point."""
        self.counts.count_file(result)
        if self.report is not None and (st.st_nlink > 1 or st.st_dev != dir_dev
                                        or st.st_ino != entry.inode()):
            self.report.append((identity, "file", result))
