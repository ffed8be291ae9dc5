"""Which trampwatch runs are live on a cache directory, so that a run does
not read what another run's traced program may be writing.

A run binds, for its lifetime, one abstract unix socket per cache
directory it registers on: `@trampwatch-run/<directory's key>/<token>`.
The kernel frees the name when the tracer's last descriptor closes, killed
or not, so a live name is a live run and no lock is ever stale; the names
bound now are read from /proc/net/unix. A cache is used (read, written)
only by a run alone on it.

Files are what a killed tracer leaves: each run also writes
`<directory>/.runs/<token>` and removes it only after its sweep
(tracer/caches.py). A marker whose socket is gone is a run that ended
without sweeping: the next run alone on the directory empties it.

Abstract sockets belong to a network namespace: a run in another one is
not seen (docs/enforce.md, residuals).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import socket
import stat
from pathlib import Path

MARKERS = ".runs"
_PREFIX = "trampwatch-run/"


def _key(directory: Path) -> str:
    return hashlib.sha256(os.path.realpath(directory).encode("utf-8", "surrogateescape")).hexdigest()[:16]


def _bound(key: str) -> set[str] | None:
    """The tokens of the runs whose socket for `key` is bound now, or None
    when that cannot be known (no /proc/net/unix)."""
    prefix = f"@{_PREFIX}{key}/"
    try:
        with open("/proc/net/unix", encoding="utf-8", errors="replace") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    names = (line.rsplit(" ", 1)[-1] for line in lines[1:])
    return {name[len(prefix):] for name in names if name.startswith(prefix)}


def _markers(directory: Path) -> set[str]:
    try:
        return {entry.name for entry in os.scandir(directory / MARKERS)}
    except OSError:
        return set()


def _empty(directory: Path, key: str) -> None:
    """Remove everything in directory but the markers of runs live now (one
    that registered since we looked keeps its marker)."""
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return
    for entry in entries:
        if entry.name == MARKERS and entry.is_dir(follow_symlinks=False):
            for marker in _markers(directory) - (_bound(key) or set()):
                with contextlib.suppress(OSError):
                    os.unlink(directory / MARKERS / marker)
        elif entry.is_dir(follow_symlinks=False):
            import shutil  # here: only a killed run's leftovers need it, and a run starts faster without

            shutil.rmtree(entry.path, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                os.unlink(entry.path)


class Registry:
    """This process's registration on cache directories (one per process:
    `register` sets it)."""

    def __init__(self) -> None:
        self.token = os.urandom(8).hex()
        self._sockets: dict[str, socket.socket] = {}
        self._markers: list[Path] = []
        self.emptied: list[Path] = []

    def add(self, directory: Path) -> None:
        """Register on `directory`: bind its name, then, alone there, empty
        what killed runs left; write our marker."""
        key = _key(directory)
        if key in self._sockets:
            return
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        sock.bind(f"\0{_PREFIX}{key}/{self.token}")
        self._sockets[key] = sock
        live = _bound(key)
        if live == {self.token} and _markers(directory) - live:
            _empty(directory, key)
            self.emptied.append(directory)
        marker = directory / MARKERS / self.token
        try:
            marker.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            st = os.lstat(marker.parent)
            if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid():
                return
            marker.touch(mode=0o600)
        except OSError:
            return
        self._markers.append(marker)

    def close(self) -> None:
        """Remove our markers and free our names (after the sweep)."""
        for marker in self._markers:
            with contextlib.suppress(OSError):
                marker.unlink()
        for sock in self._sockets.values():
            sock.close()
        self._sockets.clear()
        self._markers.clear()
        global _current
        if _current is self:
            _current = None


_current: Registry | None = None


def register(directories: tuple[Path, ...]) -> Registry:
    """Register this process as a run on each of `directories` (see the
    module's docstring) and return the registration; close() ends it."""
    global _current
    registry = Registry()
    for directory in directories:
        registry.add(directory)
    _current = registry
    return registry


def alone(directory: Path) -> bool:
    """Whether this process may use the cache in `directory`: no other run
    is live there and no killed run's leftovers wait to be emptied. A
    process that did not register (policy check, monitor) is judged
    likewise: any run live, any marker, and the cache is not used; so is
    one that cannot list the live runs."""
    own = {_current.token} if _current is not None else set()
    live = _bound(_key(directory))
    return live is not None and not live - own and not _markers(directory) - own
