"""One directory tree walked by this process and one forked helper process,
with the results, counts and order of a walk by this process alone.

This process walks the tree depth first, as alone. Whenever the helper has
fewer than two subtrees in hand, it is given the one at the bottom of the
stack of directories still to walk: the one a lone walk would reach last, so
that everything this process walks afterwards comes before it. The helper
walks each subtree it is given with the identities seen in that subtree
only, and writes its results and counts to a memory file shared with this
process, then says so on a pipe.

Once its own part is done, this process takes the subtrees in walk order
(the reverse of the order given). A delivered one is checked against the
identities seen before it: a hard link seen earlier becomes a duplicate and
its result is dropped; a directory seen earlier (a bind mount) means the
subtree is walked again here. A subtree the helper did not deliver -- it
died, or had not started on it when this process ran out of work -- is
walked here, so a dead helper costs time, never results. The helper is
killed once nothing it holds is needed.
"""

from __future__ import annotations

import os
import pickle
import select
import signal
import struct
import threading
from collections.abc import Iterator
from typing import NoReturn

from .findings import ScanResult
from .walk import Pending, ScanSummary, Walk

# This process -> helper: subtree number, path length, the subtree's
# identity (device, inode); then the path.
_GIVE = struct.Struct("<IIQQ")
# Helper -> this process: subtree number, offset and length of its record
# in the shared memory file.
_DONE = struct.Struct("<IQQ")
# Subtrees the helper holds at once: one it walks, one ready for when it is done.
_HELD = 2


def split_tree(walk: Walk, top: Pending, device: int) -> Iterator[ScanResult]:
    """Walk the directory `top` (already seen, on `device`) like walk.tree(),
    with a forked helper process walking part of it. Falls back to walking
    alone when the process has threads (a fork copies only the calling one)
    or when the helper cannot be started. The caller must not reap child
    processes it does not know of while the iterator runs."""
    if threading.active_count() > 1:
        yield from walk.tree(top, device)
        return
    try:
        split = _Split(walk, device)
    except OSError:
        yield from walk.tree(top, device)
        return
    try:
        yield from split.run(top)
    finally:
        split.close()


class _Split:
    """The state of one split walk on this process's side."""

    def __init__(self, walk: Walk, device: int):
        self.walk = walk
        self.device = device
        self.memory = os.memfd_create("trampwatch-scan", os.MFD_CLOEXEC)
        work_read, self.work = os.pipe()
        self.done, done_write = os.pipe()
        try:
            self.pid = os.fork()
        except OSError:
            for fd in (self.memory, work_read, self.work, self.done, done_write):
                os.close(fd)
            raise
        if self.pid == 0:
            os.close(self.work)
            os.close(self.done)
            _helper(walk, device, work_read, done_write, self.memory)
        os.close(work_read)
        os.close(done_write)
        os.set_blocking(self.done, False)
        self.alive = True
        self.killed = False
        self.given: list[Pending] = []
        self.held: list[int] = []
        self.delivered: dict[int, tuple[int, int]] = {}
        self.loaded: dict[int, tuple[list[ScanResult], ScanSummary, list]] = {}
        self.pending: list[Pending] = []
        self.unread = b""

    def run(self, top: Pending) -> Iterator[ScanResult]:
        """Walk this process's part, then merge the helper's."""
        walk = self.walk
        pending = self.pending
        pending.append(top)
        walk.tick = self.serve
        try:
            while pending:
                subdirectories = yield from walk.directory(pending.pop()[0], self.device)
                pending.extend(reversed(subdirectories))
                self.serve()
        finally:
            walk.tick = None
        os.close(self.work)
        self.work = -1
        yield from self.merge()

    def serve(self) -> None:
        """Read what the helper delivered; give it subtrees while it holds
        fewer than _HELD and this process keeps one to walk."""
        self.collect()
        while self.alive and len(self.held) < _HELD and len(self.pending) > 1:
            unit = self.pending.pop(0)
            path = os.fsencode(unit[0])
            try:
                _write_all(self.work, _GIVE.pack(len(self.given), len(path), *unit[1]) + path)
            except OSError:
                self.pending.insert(0, unit)
                self.alive = False
                return
            self.held.append(len(self.given))
            self.given.append(unit)

    def collect(self, wait: bool = False) -> None:
        """Read the helper's delivery notes (waiting for one with `wait`);
        end of file means the helper is gone."""
        if wait:
            poller = select.poll()
            poller.register(self.done, select.POLLIN)
            poller.poll()
        while self.alive:
            try:
                data = os.read(self.done, 4096)
            except BlockingIOError:
                return
            if not data:
                self.alive = False
                return
            data = self.unread + data
            whole = len(data) - len(data) % _DONE.size
            for number, offset, length in _DONE.iter_unpack(data[:whole]):
                self.delivered[number] = (offset, length)
                self.held.remove(number)
            self.unread = data[whole:]

    def merge(self) -> Iterator[ScanResult]:
        """The given subtrees in walk order: the helper's results, checked,
        or a walk here of those it did not deliver."""
        counts = self.walk.counts
        order = list(reversed(range(len(self.given))))
        for place, number in enumerate(order):
            self.collect()
            # The oldest subtree it holds is the one the helper is walking:
            # wait for it, reading the records that come after it meanwhile.
            while number not in self.delivered and self.alive and self.held[:1] == [number]:
                later = next((n for n in order[place + 1:]
                              if n in self.delivered and n not in self.loaded), None)
                if later is None:
                    self.collect(wait=True)
                else:
                    self.load(later)
                    self.collect()
            if number in self.delivered:
                yield from self.merge_delivered(number)
            else:
                counts.redone_units += 1
                yield from self.walk.tree(self.given[number], self.device)

    def load(self, number: int) -> None:
        """Read and unpickle the record of a delivered subtree."""
        offset, length = self.delivered[number]
        self.loaded[number] = pickle.loads(os.pread(self.memory, length, offset))

    def merge_delivered(self, number: int) -> Iterator[ScanResult]:
        """One subtree the helper walked, against the identities seen before it."""
        if number not in self.loaded:
            self.load(number)
        results, part, report = self.loaded.pop(number)
        seen = self.walk.seen
        clashes = [(identity, kind, result) for identity, kind, result in report if identity in seen]
        if any(kind == "dir" for _, kind, _ in clashes):
            self.walk.counts.redone_units += 1
            yield from self.walk.tree(self.given[number], self.device)
            return
        dropped = set()
        for _, kind, result in clashes:
            if kind == "special":
                part.skipped["special"] -= 1
            else:
                part.count_file(result, -1)
                dropped.add(id(result))
            part.skipped["duplicate"] += 1
        seen.update(identity for identity, _, _ in report)
        self.walk.counts.add(part)
        self.walk.counts.helper_units += 1
        yield from (result for result in results if id(result) not in dropped)

    def close(self) -> None:
        """Stop and reap the helper; say in the counts how it ended when it
        died on its own."""
        for fd in (self.work, self.done, self.memory):
            if fd >= 0:
                os.close(fd)
        self.work = self.done = self.memory = -1
        pid, status = os.waitpid(self.pid, os.WNOHANG)
        if pid == 0:
            # Still walking: nothing it holds is needed any more.
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
            return
        if os.WIFSIGNALED(status):
            how = f"was killed by signal {os.WTERMSIG(status)}"
        elif os.WEXITSTATUS(status):
            how = f"exited with status {os.WEXITSTATUS(status)}"
        else:
            return
        self.walk.counts.helper_failure = (
            f"scan helper process {self.pid} {how}; "
            f"{self.walk.counts.redone_units} subtree(s) given to it were walked again")


def _helper(walk: Walk, device: int, work: int, done: int, memory: int) -> NoReturn:
    """The helper process: walk each subtree given on `work` until end of
    file, append each one's (results, counts, report) to `memory` and say
    where on `done`. Never returns; exits 1 on any error."""
    code = 0
    try:
        offset = 0
        while True:
            header = _read_exactly(work, _GIVE.size)
            if not header:
                break
            number, length, dev, ino = _GIVE.unpack(header)
            path = os.fsdecode(_read_exactly(work, length))
            part = Walk(ScanSummary(), {(dev, ino)}, walk.follow, walk.one_filesystem)
            part.report = []
            results = list(part.tree((path, (dev, ino)), device))
            record = pickle.dumps((results, part.counts, part.report), pickle.HIGHEST_PROTOCOL)
            written = 0
            while written < len(record):
                written += os.pwrite(memory, record[written:], offset + written)
            _write_all(done, _DONE.pack(number, offset, len(record)))
            offset += len(record)
    except BaseException:  # whatever it is, the helper must not go on as a copy of this process
        code = 1
    os._exit(code)


def _read_exactly(fd: int, size: int) -> bytes:
    """`size` bytes from `fd`, or b'' at end of file before the first."""
    data = b""
    while len(data) < size:
        chunk = os.read(fd, size - len(data))
        if not chunk:
            if data:
                raise EOFError("truncated message")
            return b""
        data += chunk
    return data


def _write_all(fd: int, data: bytes) -> None:
    """Write all of `data` to `fd`."""
    while data:
        data = data[os.write(fd, data):]
