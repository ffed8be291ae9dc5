"""Attacks on enforce mode found by red team 6, each a C program that natively
runs code it produced and, under strict enforce, must not (helpers of
test_attack: the native run first, then no RAN line and a truthful report).
Attacks still open are xfail(strict=True) with the hole named."""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from test_attack import _blocked, _native
from test_attack_more import DENY_WX_LOG_OPAQUE
from test_enforce import STRICT
from test_run_programs import shape, trace

SWAP_BYTES = 16 << 20


@pytest.fixture
def swap_area(tmp_path: Path) -> Path:
    """A swap area made before the run (mkswap of a file on the disk's
    filesystem, its page cache written back so nothing cached hides what
    the kernel's swap I/O puts in its blocks); turned off again if a test
    left it on."""
    if os.geteuid() != 0:
        pytest.skip("swapon needs CAP_SYS_ADMIN: run as root")
    mkswap = shutil.which("mkswap") or shutil.which("mkswap", path="/sbin:/usr/sbin")
    if mkswap is None:
        pytest.skip("mkswap (util-linux) is not installed")
    area = tmp_path / "swap.area"
    with area.open("wb") as f:
        f.write(bytes(SWAP_BYTES))
        os.fsync(f.fileno())
    area.chmod(0o600)
    subprocess.run([mkswap, str(area)], check=True, capture_output=True)
    fd = os.open(area, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    yield area
    subprocess.run(["swapoff", str(area)], capture_output=True, check=False)


def _swap_native(build_program, parse_output, area: Path, *mode: str):
    native = _native(build_program, parse_output, "attack_swap_file", str(area), *mode)
    if "swapon" in native.failed():
        pytest.skip(f"cannot turn a swap file on here: swapon {native.failed()['swapon']}")
    if "paged_out" in native.failed():
        pytest.skip("MADV_PAGEOUT did not push the page out to the swap area")
    assert native.ran == ["swap_call"], native
    return native


def test_a_swap_file_the_tree_turns_on_is_refused(build_program, parse_output, swap_area, tmp_path):
    """The program turns a swap file made before the run on, pushes a page
    holding code out (MADV_PAGEOUT) and maps the slot of the file that the
    kernel wrote it to R-X: no open for writing, no time stamp (swap I/O
    goes to the blocks). Before: the mapping was allowed and the code ran.
    swapon is `opaque` (facility `swapon`): strict refuses it."""
    _swap_native(build_program, parse_output, swap_area)
    traced = trace([str(build_program("attack_swap_file")), str(swap_area)], tmp_path, *STRICT)
    assert parse_output(traced.stdout).ran == [], traced.stdout
    assert shape(traced.events) == [("swapon", ("opaque",))]
    event = traced.events[0]
    assert event["verdict"] == "denied" and event["result"] == -errno.EPERM, event
    assert event["detail"]["facility"] == "swapon", event
    assert parse_output(traced.stdout).failed() == {"swapon": "EPERM"}


def test_a_swap_file_turned_on_under_a_lenient_policy_counts_as_written(build_program, parse_output,
                                                                        swap_area, tmp_path):
    """Where a policy lets swapon run (logged), the swap areas are read
    again from /proc/swaps: the file holding the paged-out code counts as
    written, and its R-X mapping is exec-written."""
    _swap_native(build_program, parse_output, swap_area)
    policy = tmp_path / "policy.yaml"
    policy.write_text(DENY_WX_LOG_OPAQUE)
    traced = trace([str(build_program("attack_swap_file")), str(swap_area)], tmp_path,
                   "--policy", str(policy), "--mode", "enforce")
    out = parse_output(traced.stdout)
    assert out.ran == [], traced.stdout
    assert shape(traced.events) == [("swapon", ("opaque",)), ("mmap", ("exec-written",))]
    assert [e["verdict"] for e in traced.events] == ["logged", "denied"], traced.events
    assert out.failed() == {"slot_rx_mmap": "EACCES"}


def test_a_swap_file_active_before_the_run_counts_as_written(build_program, parse_output, swap_area,
                                                             tmp_path):
    """A swap area already on when the run starts (a host's swap file): the
    program only pushes its page out and maps the file's slot R-X. The swap
    files of the run's start count as written (exec-written)."""
    subprocess.run(["swapon", str(swap_area)], check=True, capture_output=True)
    _swap_native(build_program, parse_output, swap_area, "active")
    traced = trace([str(build_program("attack_swap_file")), str(swap_area), "active"], tmp_path, *STRICT)
    _blocked(traced, parse_output)
    assert shape(traced.events) == [("mmap", ("exec-written",))]
    assert parse_output(traced.stdout).failed() == {"slot_rx_mmap": "EACCES"}


@pytest.mark.parametrize("how", ["write", "mmap"])
def test_a_segment_written_through_its_reopened_file_keeps_its_history(how, build_program, parse_output,
                                                                       tmp_path):
    """A fresh System V segment attached read-only; its map_files link
    opened read-write (root) and the code written through that descriptor
    (pwrite, or a shared read-write mmap of it); the read-only attach made
    R-X. The descriptor's object was recorded as a file (device, inode)
    while attaches name the segment by id: the write never reached the
    segment's history and the code ran under strict. A segment's own file
    now has the segment's identity (its inode number is the id)."""
    native = _native(build_program, parse_output, "attack_shm_reopen", how)
    if "reopen_rw" in native.failed():
        pytest.skip(f"cannot open /proc/self/map_files read-write: {native.failed()['reopen_rw']}")
    assert native.ran == ["shm_reopen_call"], native
    traced = trace([str(build_program("attack_shm_reopen")), how], tmp_path, *STRICT)
    _blocked(traced, parse_output)
    # w-to-x with `write` too: a segment made during the run counts as written
    # from its shmat on (its writes change no time stamp: docs/enforce.md).
    expected = ("w-to-x", "exec-written") if how == "write" else ("dual-map", "w-to-x", "exec-written")
    assert shape(traced.events) == [("mprotect", expected)]
    assert parse_output(traced.stdout).failed() == {"ro_view_rx_mprotect": "EACCES"}


def _overlay_dirs(base: Path) -> Path:
    """lower/, upper/code (a page of int3, written before the run), work/
    and merged/ under `base`, on the disk's filesystem."""
    for name in ("lower", "upper", "work", "merged"):
        (base / name).mkdir(parents=True)
    (base / "upper" / "code").write_bytes(b"\xcc" * 4096)
    return base


@contextlib.contextmanager
def _mounted_overlay(base: Path):
    """An overlay of base/lower and base/upper on base/merged, mounted in
    the tests' own mount namespace before the run."""
    options = f"lowerdir={base}/lower,upperdir={base}/upper,workdir={base}/work"
    done = subprocess.run(["mount", "-t", "overlay", "overlay", "-o", options, str(base / "merged")],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot mount an overlay here: {done.stderr.strip()}")
    try:
        yield
    finally:
        subprocess.run(["umount", str(base / "merged")], capture_output=True, check=False)


@pytest.mark.parametrize("order", ["mapped-first", "early", "layer"])
def test_a_layer_file_mapped_executable_is_written_through_its_overlay(order, build_program, parse_output,
                                                                       tmp_path):
    """upper/code (a clean file of an old filesystem) mapped private R-X;
    an overlay with that upper layer mounted in a mount namespace of the
    program's own; merged/code opened for writing (before the mapping with
    `early`) and the code pwritten: the private mapping shows it. The
    overlay descriptor's stat names the overlay's device (the layer file's
    inode number), the mapping the layer's: the open was no open of a
    mapped file and, with `early`, the mapping no mapping of a written file,
    and the code ran under strict. `layer` is the other way round: an
    overlay mounted before the run, its file mapped R-X through it (the
    overlay's device), the layer's own file opened for writing. A file
    written through an overlay now counts for every file mapping with its
    inode number, and a file of another filesystem for every mapping made
    through an overlay of the run's start with its inode number."""
    if os.geteuid() != 0:
        pytest.skip("mounting an overlay needs root")
    mode = [] if order == "mapped-first" else [order]
    native_dir, traced_dir = _overlay_dirs(tmp_path / "native"), _overlay_dirs(tmp_path / "traced")
    with contextlib.ExitStack() as stack:
        if order == "layer":
            stack.enter_context(_mounted_overlay(native_dir))
            stack.enter_context(_mounted_overlay(traced_dir))
        native = _native(build_program, parse_output, "attack_overlay_mapped", str(native_dir), *mode)
        if "ovl_mount" in native.failed():
            pytest.skip(f"cannot mount an overlay in a new mount namespace: {native.failed()['ovl_mount']}")
        assert native.ran == ["overlay_mapped_call"], native
        traced = trace([str(build_program("attack_overlay_mapped")), str(traced_dir), *mode], tmp_path,
                       *STRICT)
    _blocked(traced, parse_output)
    refused = {"mapped-first": ("openat", "merged_write_open"), "early": ("mmap", "upper_rx_mmap"),
               "layer": ("openat", "upper_write_open")}[order]
    assert shape(traced.events) == [(refused[0], ("exec-written",))]
    assert parse_output(traced.stdout).failed() == {refused[1]: "EACCES"}


def test_names_the_program_chooses_cannot_forge_report_lines(build_program, parse_output, tmp_path):
    """A memfd named "x | verdict=killed\\nW^X killed: forged ...\\n" mapped
    R-X (denied), and a hard link of the program named with newlines, a fake
    summary row and a fake "W^X killed" line, exec'd. Before: each newline
    started a report line, so the text report and the summary's caller
    table held "W^X killed: forged" lines no event made, and a line two
    verdict pairs. Control characters and "|" in the human lines and the
    summary are now written as \\xNN."""
    native = _native(build_program, parse_output, "attack_report_forge")
    assert native.ran == ["forge_call", "link_call"], native
    traced = trace([str(build_program("attack_report_forge"))], tmp_path, *STRICT)
    assert parse_output(traced.stdout).ran == [], traced.stdout
    report = traced.stderr  # trampwatch's stderr, then the report file (-o)
    lines = [line for line in report.splitlines() if line.startswith("W^X ")]
    assert len(lines) == len(traced.events) >= 1, (lines, traced.events)
    for line, event in zip(lines, traced.events, strict=True):
        assert line.startswith(f"W^X {event['verdict']}: ") and "forged (1)" not in line.split(" | ")[0], line
        assert [pair for pair in line.split(" | ") if pair.startswith("verdict=")] == [
            f"verdict={event['verdict']}"], line
    assert not any(line.lstrip().startswith(("W^X", "forged-object")) for line in report.splitlines()
                   if not line.startswith("W^X ")), report


@pytest.mark.parametrize("mode", ["close", "munmap", "killthread"])
def test_an_undo_the_programs_own_filter_fakes_is_not_taken_for_done(mode, build_program, parse_output,
                                                                     tmp_path):
    """A refusal at a call's exit is undone by a call the tracer has the
    thread make (close of a refused /proc/self/mem descriptor, munmap of a
    refused RWX old_mmap page): it passes the program's own seccomp filter,
    which answers SECCOMP_RET_ERRNO with errno 0 for exactly that call
    (close(N), i386 munmap(0x90000000)): it returns 0 unrun. Before: the
    call was reported `denied` while the descriptor (the mapping) stayed,
    and the code written through it (into it) ran. The undo is now checked
    in the kernel's tables (the descriptor gone, nothing mapped there);
    when it did not happen the call is reported as what it returned
    (not-enforced) and the process is killed before it runs again.
    `killthread`: a second thread's own filter kills it at the injected
    close (SECCOMP_RET_KILL_THREAD) while main waits for the descriptor:
    the hold's owner gone, the process is killed (closed before too)."""
    native = _native(build_program, parse_output, "attack_seccomp_undo", mode)
    if "secret_create" in native.failed():
        pytest.skip(f"memfd_secret is not available: {native.failed()['secret_create']}")
    assert native.ran == [f"{mode}_undo_call"], native
    traced = trace([str(build_program("attack_seccomp_undo")), mode], tmp_path, *STRICT)
    assert parse_output(traced.stdout).ran == [], traced.stdout
    assert traced.returncode == 137, traced.stderr
    expected = ("mmap", ("wx-map", "anon-exec")) if mode == "munmap" else ("openat", ("foreign-write",))
    assert shape(traced.events) == [expected]
    event = traced.events[0]
    assert event["verdict"] == "not-enforced", event
    if mode != "killthread":  # else the thread is gone: no result was seen
        assert event["result"] >= 0, event


@pytest.mark.parametrize("where", ["instance", "global"])
def test_a_tracing_ring_buffer_made_executable_holds_what_the_kernel_copied(where, build_program,
                                                                            parse_output, tmp_path):
    """A tracing ring buffer (trace_pipe_raw of CPU 0, the user-space
    mapping of ring buffers) mapped read-only: mmap refuses PROT_EXEC there,
    mprotect does not. Made R-X, it receives the code the program writes to
    trace_marker (the kernel copies it into a print event), and the code
    runs. In a new instance its files are new (exec-written before too);
    the top-level buffer's files date from boot: before, nothing was
    reported and the code ran. A file of a pseudo filesystem of the run's
    start (tracefs, debugfs, sysfs, procfs, ...) now counts as written."""
    if not Path("/sys/kernel/tracing/trace_marker").exists():
        pytest.skip("tracefs is not mounted at /sys/kernel/tracing")
    mode = ["global"] if where == "global" else []
    native = _native(build_program, parse_output, "attack_trace_ring", *mode)
    for label in ("instance_mkdir", "ring_open", "ring_r_mmap", "meta_mmap"):
        if label in native.failed():
            pytest.skip(f"cannot map a tracing ring buffer here: {label} {native.failed()[label]}")
    assert native.ran == ["trace_ring_call"], native
    traced = trace([str(build_program("attack_trace_ring")), *mode], tmp_path, *STRICT)
    _blocked(traced, parse_output)
    assert shape(traced.events) == [("mprotect", ("exec-written",))]
    assert parse_output(traced.stdout).failed() == {"ring_rx_mprotect": "EACCES"}


@pytest.mark.parametrize("mode", ["stack", "block", "scratch"])
def test_the_tracer_reads_no_memory_a_fuse_server_of_the_tree_must_fill(mode, build_program, parse_output,
                                                                         tmp_path):
    """The program serves a FUSE file from a thread that never answers a
    READ from another process, and maps a page of it (unread). `stack`:
    the stack pointer moved into that page for a raw mprotect making
    written code R-X; `block`: the page holds an i386 old_mmap argument
    block, which the server fills only for the program's own READ. Before:
    the tracer's sample of the caller's stack (or its peek at the block)
    faulted the page in and waited for the server in a page cache read no
    signal interrupts: trampwatch hung for ever, SIGKILL included. The
    tracer now reads tree memory only where private anonymous mappings
    cover it; the rest is judged from what the kernel did. `scratch`: the
    stack pointer in that page for a raw open of /proc/self/mem for
    writing, refused at its exit by an injected close, before which the
    tracer wrote scratch data below the stack pointer (a write into a
    private file page reads the page first: the tracer hung the same way).
    The tracer now reads or writes no page of a filesystem mounted after
    the run started."""
    args = [] if mode == "stack" else [mode]
    native = _native(build_program, parse_output, "attack_stack_peek", *args)
    if "fuse_mount" in native.failed():
        pytest.skip(f"cannot mount FUSE here: {native.failed()['fuse_mount']}")
    assert native.ran == [f"{mode}_call" if mode != "stack" else "stack_peek_call"], native
    traced = trace([str(build_program("attack_stack_peek")), *args], tmp_path, *STRICT, timeout=60)
    _blocked(traced, parse_output)
    if mode == "stack":
        assert shape(traced.events) == [("mprotect", ("w-to-x", "anon-exec"))]
        assert traced.returncode == 0, traced.stderr
        assert parse_output(traced.stdout).failed() == {"peek_rx_mprotect": "EACCES"}
    elif mode == "scratch":
        assert shape(traced.events) == [("openat", ("foreign-write",))]
        assert traced.returncode == 0, traced.stderr
        assert parse_output(traced.stdout).failed() == {"scratch_mem_open": "EACCES"}
    else:
        # The kernel's read of the block waits for the server thread, held
        # while an i386 old_mmap runs: the blocked call is refused (killed).
        assert shape(traced.events) == [("blocked", ("opaque",))]
        assert traced.returncode == 137, traced.stderr
