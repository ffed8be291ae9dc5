"""Attacks on enforce mode found by red team 14: what `attach` reads from
change times. Each program natively runs code it produced and, under strict
enforce, must not (the native run first, then no RAN line and a truthful
report)."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest
from test_enforce import STRICT
from test_enforce_memory import _attached, _native

SHM = Path("/dev/shm")


def _tmpfs(path: Path) -> bool:
    with open("/proc/self/mountinfo") as mounts:
        return any(line.split(" ")[4] == str(path) and line.partition(" - ")[2].startswith("tmpfs ")
                   for line in mounts)


def _one_exec_written_mmap_denied(events: list[dict], pid: int) -> None:
    """The run's one mmap event: `exec-written`, refused with EACCES, in `pid`."""
    written = [e for e in events if e["syscall"] == "mmap"]
    assert len(written) == 1 and "exec-written" in written[0]["categories"]
    assert written[0]["verdict"] == "denied" and written[0]["result"] == -errno.EACCES
    assert written[0]["pid"] == pid


@pytest.mark.root
@pytest.mark.parametrize("target", ["tmpfs", "memfd"])
def test_attach_counts_unstamped_stores_as_written(target, build_program, parse_output, tmp_path):
    """A child started after a tmpfs file's last change maps it shared
    read-write, reads the page (mapped writable: shmem asks for no write
    notice), stores code, unmaps and closes it, all before the attach; the
    change time never moved. After the attach it maps the file R-X and
    calls it: before, the code ran under strict with no event; now a
    tmpfs file counts as possibly written before the seize (exec-written).
    `memfd`: the same stores into a memfd the parent keeps, mapped R-X
    through /proc/PPID/fd/N after the attach (exec-written already: it
    guards that path)."""
    if target == "tmpfs" and not _tmpfs(SHM):
        pytest.skip("needs a tmpfs mounted at /dev/shm")
    path = SHM / f"trampwatch-store-{os.getpid()}-{tmp_path.name}" if target == "tmpfs" else Path("memfd")
    try:
        native = _native(build_program, parse_output, "attack_attach_store", str(path))
        assert native.ran == ["store_call"] and native.count == 0  # no stamp
        out_text, returncode, events, pid = _attached([str(build_program("attack_attach_store")), str(path)],
                                                      STRICT, tmp_path)
    finally:
        if target == "tmpfs":
            path.unlink(missing_ok=True)
    out = parse_output(out_text)
    assert returncode == 0 and out.ran == [] and out.failed() == {"store_map_rx": "EACCES"}, out_text
    _one_exec_written_mmap_denied(events, pid)


@pytest.mark.root
def test_attach_counts_a_fuse_file_as_written(build_program, parse_output, tmp_path):
    """A FUSE filesystem a thread of the process serves (private mount
    namespace), mounted before the attach: after it, main maps the file R-X
    and the thread serves code with 1970 times. The mount is no new one
    (`attach` knows only the mounts at the seize), so the file read as old:
    the code ran under strict with no event; now a FUSE file counts as
    written under `attach` (exec-written)."""
    native = _native(build_program, parse_output, "attack_fuse", "attach")
    if native.steps["fuse_mount"].rc != 0:
        pytest.skip(f"cannot mount FUSE here: {native.steps['fuse_mount'].errno}")
    assert native.ran == ["fuse_call"]
    out_text, returncode, events, pid = _attached([str(build_program("attack_fuse")), "attach"], STRICT,
                                                  tmp_path, threads=2)
    out = parse_output(out_text)
    assert returncode == 0 and out.ran == [] and out.failed() == {"fuse_rx_mmap": "EACCES"}, out_text
    _one_exec_written_mmap_denied(events, pid)
