"""The fast path of emulate mode's faults: tracer/sources/fast_faults.c,
built with the system's gcc at first use (into the closures cache, once per
version of its source) and loaded with ctypes. Every call into it is here.

`FastFaults.wait` replaces the ptrace source's waitpid(-1, __WALL): a
SIGSEGV stop of a tracked thread at a PC whose decision the emulator
remembered, with the same bytes there now, is served in C (registers set,
signal suppressed, thread resumed) and the wait goes on; any other stop is
returned as waitpid gave it, for the Python path to handle. What is
remembered is forgotten when it could be stale: the emulator forgets the
PCs of memory it no longer grants, the source forgets a process at exec
and exit and a thread when it is gone.
"""

from __future__ import annotations

import ctypes
import fcntl
import hashlib
import os
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

from ..closures.preload import cache_dir
from ..errors import TrampwatchError
from ..resources import package_path, writable_by_others

SOURCE = package_path("sources", "fast_faults.c")
LIBRARY = "libtrampwatch-fast-faults.so"
_U64_MAX = (1 << 64) - 1
_CODE_MAX = 32
_WRITES_MAX = 8


class FastFaults:
    """The C library's state for one run (load() resets it)."""

    def __init__(self, lib: ctypes.CDLL):
        self._lib = lib
        lib.tw_reset()

    @classmethod
    def load(cls, directory: Path | None = None) -> FastFaults:
        """Build the library if needed in `directory` (default: the closures
        cache; a run not alone on it passes a private one) and load it from
        a sealed copy in memory. Raises TrampwatchError when it cannot be
        built (no gcc) or loaded."""
        digest = hashlib.sha256(SOURCE.read_bytes()).hexdigest()[:16]
        path = (directory or cache_dir()) / f"fast-faults-{digest}" / LIBRARY
        if not path.exists():
            _build(path)
        fd = _sealed_copy(path)
        try:
            lib = ctypes.CDLL(f"/proc/self/fd/{fd}", use_errno=True)
        except OSError as err:
            raise TrampwatchError(f"cannot load {path}: {err}") from err
        finally:
            os.close(fd)
        lib.tw_wait.argtypes = (ctypes.POINTER(ctypes.c_int),)
        lib.tw_wait.restype = ctypes.c_int
        lib.tw_remember.argtypes = (ctypes.c_int, ctypes.c_uint64, ctypes.c_uint64, ctypes.c_char_p,
                                    ctypes.c_uint32, ctypes.c_uint32, ctypes.POINTER(ctypes.c_uint32),
                                    ctypes.POINTER(ctypes.c_uint64))
        lib.tw_remember.restype = ctypes.c_int
        lib.tw_forget.argtypes = (ctypes.c_int, ctypes.c_uint64, ctypes.c_uint64)
        lib.tw_forget.restype = None
        lib.tw_track.argtypes = (ctypes.c_int, ctypes.c_int, ctypes.c_long)
        lib.tw_track.restype = ctypes.c_int
        lib.tw_untrack.argtypes = (ctypes.c_int,)
        lib.tw_untrack.restype = None
        lib.tw_forget_process.argtypes = (ctypes.c_int,)
        lib.tw_forget_process.restype = None
        lib.tw_served.argtypes = ()
        lib.tw_served.restype = ctypes.c_ulong
        lib.tw_reset.argtypes = ()
        lib.tw_reset.restype = None
        return cls(lib)

    def wait(self) -> tuple[int, int]:
        """The next stop the C side did not serve, as os.waitpid(-1, __WALL)
        returns it; raises OSError (ChildProcessError, InterruptedError) as
        it does."""
        status = ctypes.c_int()
        tid = self._lib.tw_wait(ctypes.byref(status))
        if tid < 0:
            raise OSError(-tid, os.strerror(-tid))
        return tid, status.value

    def remember(self, tgid: int, pc: int, cs: int, code: bytes, writes: Sequence[tuple[int, int]]) -> bool:
        """Serve faults of process tgid at pc while the bytes there are
        `code`: write each (offset in struct user_regs_struct, value) and
        resume. False when the C side cannot keep it."""
        if not code or len(code) > _CODE_MAX or len(writes) > _WRITES_MAX:
            return False
        offsets = (ctypes.c_uint32 * len(writes))(*(offset for offset, _ in writes))
        values = (ctypes.c_uint64 * len(writes))(*(value & _U64_MAX for _, value in writes))
        return self._lib.tw_remember(tgid, pc, cs, code, len(code), len(writes), offsets, values) == 0

    def forget(self, tgid: int, start: int, end: int) -> None:
        """Forget process tgid's decisions at PCs in [start, end)."""
        self._lib.tw_forget(tgid, start, min(end, _U64_MAX))

    def track(self, tid: int, tgid: int, request: int) -> None:
        """Serve thread tid of process tgid, resuming it with the ptrace `request`."""
        self._lib.tw_track(tid, tgid, request)

    def untrack(self, tid: int) -> None:
        """Stop serving thread tid."""
        self._lib.tw_untrack(tid)

    def forget_process(self, tgid: int) -> None:
        """Process tgid exited or exec'd: forget its decisions and threads."""
        self._lib.tw_forget_process(tgid)

    @property
    def served(self) -> int:
        """How many faults the C side served in this run."""
        return self._lib.tw_served()


def _sealed_copy(path: Path) -> int:
    """A memfd holding the library at `path`, checked as it is read: loaded
    into the tracer, it must be no library someone else could have put
    there, and a file the traced program may rewrite later (the user's
    cache) is not what the tracer maps. Sealed, so that no one writes it
    through /proc/PID/fd either. Raises TrampwatchError."""
    unsafe = writable_by_others(path)
    if unsafe is not None:
        raise TrampwatchError(f"not loading {path}: {unsafe}")
    try:
        src = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as err:
        raise TrampwatchError(f"cannot load {path}: {err.strerror}") from err
    try:
        st = os.fstat(src)
        others_write = st.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
        if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid() or others_write:
            raise TrampwatchError(f"not loading {path}: it changed while it was checked")
        data = b"".join(iter(lambda: os.read(src, 1 << 20), b""))
    finally:
        os.close(src)
    try:
        fd = os.memfd_create(LIBRARY, os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    except OSError as err:
        raise TrampwatchError(f"cannot load {path}: memfd_create: {err.strerror}") from err
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        fcntl.fcntl(fd, fcntl.F_ADD_SEALS,
                    fcntl.F_SEAL_WRITE | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_SEAL)
    except OSError as err:
        os.close(fd)
        raise TrampwatchError(f"cannot load {path}: a sealed copy: {err.strerror}") from err
    return fd


def _build(target: Path) -> None:
    gcc = shutil.which("gcc")
    if gcc is None:
        raise TrampwatchError("gcc is not on PATH to build the fast path of emulated faults")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{LIBRARY}.")
    except OSError as err:
        raise TrampwatchError(f"cannot build the fast path of emulated faults in {target.parent}: "
                              f"{err.strerror}") from err
    os.close(fd)
    cmd = [gcc, "-shared", "-fPIC", "-O2", "-Wall", "-Wextra", "-Werror", "-o", tmp, str(SOURCE)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        os.unlink(tmp)
        raise TrampwatchError(f"cannot build the fast path of emulated faults ({' '.join(cmd)}):\n"
                              f"{done.stderr.strip()}")
    os.chmod(tmp, 0o755)
    os.replace(tmp, target)
