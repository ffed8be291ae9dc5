"""Files trampwatch ships inside its package, found through importlib.resources:
the policy presets (tracer/presets, which in the source tree is a link to
policies/), the BPF C programs and their header (tracer/bpf), and the C
headers and sources programs build against (tracer/include)."""

from __future__ import annotations

import sys
from pathlib import Path

from .errors import TrampwatchError


def package_path(*parts: str) -> Path:
    """Return the real path of a directory or file shipped in the package.

    gcc and bcc take file names, so the package must be installed as files
    (a wheel, the source tree), not zipped. Raises TrampwatchError otherwise.
    """
    spec = sys.modules["tracer"].__spec__
    if spec is not None and spec.origin and Path(spec.origin).is_file():
        # A package of plain files (a wheel, the source tree): what files()
        # answers for it, without importing importlib.resources at start-up.
        return Path(spec.origin).parent.joinpath(*parts).resolve()
    from importlib.resources import files

    found = files("tracer").joinpath(*parts)
    if not isinstance(found, Path):
        raise TrampwatchError(f"trampwatch's {'/'.join(parts)} is not a file on disk ({found}): install "
                              "trampwatch as a wheel or from the source tree, not as a zip")
    return found.resolve()
