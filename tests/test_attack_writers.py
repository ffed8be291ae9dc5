"""Attacks where the kernel writes code into a file for the tree with no
open of the file: the block device under a mounted filesystem, written
raw (attack_rawdev); process accounting appending records shaped by the
tree to a file it mapped executable before (attack_acct). Each C program natively runs the code it produced;
under strict enforce it must not, and under default the report must say
what happened (helpers of test_attack: the native run first)."""

from __future__ import annotations

import ctypes
import errno
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_attack import _native
from test_enforce import STRICT
from test_run_programs import ROOT, TRAMPWATCH, Traced, shape, trace

ZRAM_CONTROL = Path("/sys/class/zram-control")
CLEAN = b"\x90" * 4095 + b"\xc3"


def _trace_holding(argv: list[str], tmp_path: Path, fd: int, *options: str) -> Traced:
    """Run argv under `trampwatch run OPTIONS` started with descriptor `fd`
    (so the tree holds it from the start, with no open to judge)."""
    json_path = tmp_path / "events.jsonl"
    done = subprocess.run([*TRAMPWATCH, "run", "--json", str(json_path), *options, "--", *argv],
                          capture_output=True, text=True, timeout=120, cwd=ROOT, pass_fds=(fd,))
    records = [json.loads(line) for line in json_path.read_text().splitlines()] if json_path.exists() else []
    return Traced(done.returncode, done.stdout, done.stderr, [r for r in records if r["type"] == "event"],
                  next((r for r in records if r["type"] == "summary"), {}))


def _clean(file: Path) -> None:
    """Put the clean page (nops, ret) back in `file`, on its blocks."""
    file.write_bytes(CLEAN)
    subprocess.run(["sync"], check=True)


@pytest.fixture
def zram_mounted_file(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """An ext4 filesystem on a zram device of its own (no image file under
    it: a raw block device), mounted before the run, holding `code`, a
    clean page: (file, device). Skips where no zram device can be made."""
    if os.geteuid() != 0 or not (ZRAM_CONTROL / "hot_add").exists():
        pytest.skip("making a zram device needs root and /sys/class/zram-control (CONFIG_ZRAM)")
    number = (ZRAM_CONTROL / "hot_add").read_text().strip()
    device, mount = f"/dev/zram{number}", tmp_path / "mnt"
    mount.mkdir()
    try:
        Path(f"/sys/block/zram{number}/disksize").write_text("16M")
        made = subprocess.run(["mkfs.ext4", "-q", "-F", device], capture_output=True, text=True)
        if made.returncode == 0:
            made = subprocess.run(["mount", device, str(mount)], capture_output=True, text=True)
        if made.returncode != 0:
            pytest.skip(f"cannot make and mount ext4 on {device}: {made.stderr.strip()}")
        try:
            _clean(mount / "code")
            yield mount / "code", device
        finally:
            subprocess.run(["umount", str(mount)], check=False)
    finally:
        (ZRAM_CONTROL / "hot_remove").write_text(number)


def test_file_rewritten_through_the_block_device_under_it_is_written(build_program, parse_output,
                                                                    zram_mounted_file, tmp_path):
    """FILE's block, found by FIEMAP, rewritten with code through the raw
    device under its filesystem (no loop image), its cached page dropped,
    FILE mapped R-X. The tree holds the device open for writing from the
    start (no open to refuse): the filesystem's files count as written, so
    strict refuses the mapping. Under default, the device's open is opaque
    and the mapping exec-written, both logged; opened while FILE is already
    mapped R-X (`early`), the open itself is exec-written too."""
    file, device = zram_mounted_file
    program = str(build_program("attack_rawdev"))
    for mode in ("open", "direct", "early"):
        native = _native(build_program, parse_output, "attack_rawdev", str(file), device, mode)
        assert native.ran == ["early_call" if mode == "early" else "rawdev_call"], mode
        _clean(file)
    held = os.open(device, os.O_RDWR | os.O_CLOEXEC)
    try:
        traced = _trace_holding([program, str(file), str(held), "held"], tmp_path, held, *STRICT)
    finally:
        os.close(held)
    out = parse_output(traced.stdout)
    assert out.ran == [] and out.done == 1, traced.stdout + traced.stderr
    assert out.failed()["file_rx_mmap"] == "EACCES"
    assert shape(traced.events) == [("mmap", ("exec-written",))]
    assert traced.events[0]["verdict"] == "denied"
    _clean(file)
    refused = trace([program, str(file), device], tmp_path, *STRICT)
    assert parse_output(refused.stdout).failed()["device_open"] == "EPERM"
    assert shape(refused.events) == [("openat", ("opaque",))]
    logged = trace([program, str(file), device], tmp_path)
    assert parse_output(logged.stdout).ran == ["rawdev_call"]
    assert shape(logged.events) == [("openat", ("opaque",)), ("mmap", ("exec-written",))]
    _clean(file)
    early = trace([program, str(file), device, "early"], tmp_path)
    assert parse_output(early.stdout).ran == ["early_call"]
    assert shape(early.events) == [("openat", ("opaque", "exec-written"))]


@pytest.fixture
def accounting_off() -> Iterator[None]:
    """Turn process accounting off after the test, whatever it left (the
    programs turn it off themselves). Skips without root."""
    if os.geteuid() != 0:
        pytest.skip("acct(2) needs root (CAP_SYS_PACCT)")
    try:
        yield
    finally:
        ctypes.CDLL(None, use_errno=True).acct(None)


def test_process_accounting_into_a_file_mapped_executable_is_opaque(build_program, parse_output, tmp_path,
                                                                  accounting_off):
    """A file made before the run, mapped R-X (shared or private) while
    empty; acct(2) turned on into it; children whose comm is code exit, so
    the kernel appends records holding it through the page cache the
    mapping shows; the program calls one. acct with a path is `opaque`
    (the kernel writes for every exit on the host, as the tree shapes it):
    strict refuses it (EPERM), default logs it; acct(NULL) is no event."""
    program = str(build_program("attack_acct"))
    native_file = tmp_path / "native.pacct"
    native_file.touch()
    native = _native(build_program, parse_output, "attack_acct", str(native_file), "private")
    if "acct_on" in native.failed():
        pytest.skip(f"process accounting cannot be turned on here: {native.failed()['acct_on']}")
    assert native.ran == ["acct_call"]
    for mode in ("shared", "private"):
        file = tmp_path / f"{mode}.pacct"
        file.touch()
        traced = trace([program, str(file), mode], tmp_path, *STRICT)
        out = parse_output(traced.stdout)
        assert out.ran == [] and out.done == 1, traced.stdout + traced.stderr
        assert out.failed() == {"acct_on": "EPERM"}
        assert shape(traced.events) == [("acct", ("opaque",))]
        event = traced.events[0]
        assert event["verdict"] == "denied" and event["result"] == -errno.EPERM, event
        assert event["detail"]["facility"] == "acct", event
    file = tmp_path / "logged.pacct"
    file.touch()
    logged = trace([program, str(file)], tmp_path)
    assert parse_output(logged.stdout).ran == ["acct_call"]
    assert shape(logged.events) == [("acct", ("opaque",))]
    assert logged.events[0]["verdict"] == "logged"


def test_accounting_on_before_the_run_makes_its_file_written(build_program, parse_output, tmp_path,
                                                             accounting_off):
    """Accounting turned on before the run (the host's) into a file made
    empty before it: the tree makes no acct call, maps the file R-X (shared)
    past its end and names exiting children with code; the kernel appends
    their records under the mapping and the program calls one. The file is
    `exec-written` at the mmap (a child's exit appends to it): strict
    refuses it. Before, the code ran with no event."""
    program = str(build_program("attack_acct"))
    libc = ctypes.CDLL(None, use_errno=True)
    for run in ("native", "traced"):
        file = tmp_path / f"{run}.pacct"
        file.touch()
        if libc.acct(str(file).encode()) != 0:
            pytest.skip(f"process accounting cannot be turned on here: {os.strerror(ctypes.get_errno())}")
        if run == "native":
            native = _native(build_program, parse_output, "attack_acct", str(file), "already")
            libc.acct(None)
            assert native.ran == ["acct_call"]
            continue
        traced = trace([program, str(file), "already"], tmp_path, *STRICT)
        libc.acct(None)
        out = parse_output(traced.stdout)
        assert out.ran == [] and out.done == 1, traced.stdout + traced.stderr
        assert out.failed() == {"file_rx_mmap": "EACCES"}
        assert shape(traced.events) == [("mmap", ("exec-written",))]
