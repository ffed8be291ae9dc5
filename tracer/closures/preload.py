"""The LD_PRELOAD library of trampfd mode (tracer/closures/ffi_closures.c):
built with the system's gcc at first use into a cache directory, once per
version of its source.

The directory holds lib/x86_64-linux-gnu/ (the library) and
lib/i386-linux-gnu/ (the same source built -m32, where it interposes
nothing), and LD_PRELOAD names it with the dynamic loader's $LIB, so a
32-bit program in the traced tree loads its own build instead of failing
to load a 64-bit one (and printing an error that is not the program's).
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import TrampwatchError
from ..resources import package_path, writable_by_others

# hashlib, the build tools and tracer.trampfd are imported where a library
# is looked up or built: every run imports this module for cache_dir()
# (tracer/caches.py), and only `run --closures` needs the rest.

SOURCE = package_path("closures", "ffi_closures.c")
LIBRARY = "libtrampwatch-closures.so"
# The syscall number the library announces each closure with (TW_CLOSURE_NR
# in the C source): no kernel has it; the tracer traps it.
ANNOUNCE_NR = 1021
_BUILDS = {"x86_64-linux-gnu": (), "i386-linux-gnu": ("-m32",)}


def cache_dir() -> Path:
    """Where built libraries are kept ($XDG_CACHE_HOME/trampwatch, else ~/.cache/trampwatch)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "trampwatch" / "closures"


def preload_value(directory: Path | None = None) -> str:
    """Return the LD_PRELOAD entry of the closure library, built if needed
    in `directory` (default: cache_dir(); a run that is not alone on the
    cache passes a private one, tracer/runs.py). Raises TrampwatchError
    when it cannot be built."""
    import hashlib

    from ..trampfd import include_dir

    digest = hashlib.sha256(SOURCE.read_bytes() + (include_dir() / "trampfd.h").read_bytes()).hexdigest()[:16]
    root = (directory or cache_dir()) / digest
    if not (root / "lib" / "x86_64-linux-gnu" / LIBRARY).exists():
        _build(root)
    # Preloaded into the traced program: never a library someone else could have put there.
    for lib in root.glob(f"lib/*/{LIBRARY}"):
        unsafe = writable_by_others(lib)
        if unsafe is not None:
            raise TrampwatchError(f"not preloading {lib}: {unsafe}")
    return f"{root}/$LIB/{LIBRARY}"


def _build(root: Path) -> None:
    import shutil
    import subprocess
    import tempfile

    from ..trampfd import include_dir

    gcc = shutil.which("gcc")
    if gcc is None:
        raise TrampwatchError("--closures=trampfd builds its LD_PRELOAD library with gcc, which is not on "
                              "PATH (apt-get install gcc, or use --closures=emulate)")
    for multiarch, flags in _BUILDS.items():
        target = root / "lib" / multiarch / LIBRARY
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{LIBRARY}.")
        os.close(fd)
        cmd = [gcc, *flags, "-shared", "-fPIC", "-O2", "-Wall", "-Wextra", "-Werror", f"-I{include_dir()}",
               f"-DTW_CLOSURE_NR={ANNOUNCE_NR}", "-o", tmp, str(SOURCE), "-ldl", "-pthread"]
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            os.unlink(tmp)
            if flags:
                continue  # no 32-bit toolchain: 32-bit programs get the loader's warning
            raise TrampwatchError(f"cannot build the closure library ({' '.join(cmd)}):\n"
                                  f"{done.stderr.strip()}")
        os.chmod(tmp, 0o755)
        os.replace(tmp, target)
