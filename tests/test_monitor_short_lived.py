"""`monitor` agrees with `run` on processes that are gone before it judges them.

Each program makes its W^X calls and exits at once. The monitor is stopped
(SIGSTOP) while they run and continued only once every one of them has been
reaped, so no process's /proc can be read when its records are judged: the
categories must come from what the kernel side recorded (each protection
change's VMAs, the stack at exec), and they must equal `run`'s, call by call.
Real BPF, the real kernel, compiled C programs.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
from test_run_programs import ROOT, TRAMPWATCH, shape, trace

from tracer.categories import DESCRIPTOR_CATEGORIES

# One program per category monitor can see (foreign-write and trampfd are
# not syscalls it watches), with the call patterns each category has.
PROGRAMS = [
    "wx_map",              # wx-map, anon-exec
    "wx_protect",          # wx-protect, w-to-x on anonymous memory
    "w_to_x",              # w-to-x
    "anon_exec",           # anon-exec, never writable
    "rx_to_rwx",           # wx-protect alone (the region was never writable)
    "pkey_wx",             # pkey_mprotect
    "mremap_written",      # write history follows a move
    "execstack",           # execstack at exec (PT_GNU_STACK)
    "execstack_mprotect",  # execstack by mprotect of the stack
    "dlopen_execstack",    # glibc makes the stack executable for a library
    "execheap",            # execheap by mprotect of the brk heap
    "execmod",             # a written private file mapping made executable
    "dual_map_memfd",      # dual-map, exec-unlinked
    "dual_map_tmpfile",    # through O_TMPFILE and unlinked files
    "exec_unlinked",       # exec-unlinked, and an fexecve'd memfd
    "shared_anon_alias",   # dual-map through shared anonymous memory
    "shm_exec",            # shm-exec, and dual-map through System V memory
    "read_implies_exec",   # read-implies-exec, by personality
    "int80_mprotect",      # an i386 call from a 64-bit program
]


def _by_exe(events: list[dict]) -> dict[str, list[tuple[str, tuple[str, ...]]]]:
    """(syscall, categories) of each event, in order, per program (exe)."""
    grouped: dict[str, list[tuple[str, tuple[str, ...]]]] = {}
    for event in events:
        grouped.setdefault(event["exe"], []).extend(shape([event]))
    return grouped


def _monitor_batch(lines: list[str], tmp_path: Path, *monitor_args: str) -> list[dict]:
    """Run the shell `lines` under `monitor --pid` (its other arguments
    `monitor_args`), the monitor stopped (SIGSTOP) until the shell and every
    program it ran are reaped; return the monitor's JSON records."""
    script = tmp_path / "batch.sh"
    # `read` waits until the monitor watches this shell.
    script.write_text("read go\n" + "".join(f"{line}\n" for line in lines))
    batch = subprocess.Popen(["sh", str(script)], stdin=subprocess.PIPE, text=True)
    json_path = tmp_path / "monitor.jsonl"
    monitor = subprocess.Popen(
        [*TRAMPWATCH, "monitor", "--pid", str(batch.pid), *monitor_args, "--json", str(json_path),
         "-o", str(tmp_path / "m.txt")],
        stderr=subprocess.PIPE, text=True, cwd=ROOT,
    )
    try:
        line = monitor.stderr.readline()
        if "monitoring" not in line:
            pytest.fail(f"monitor did not start: {line}{monitor.stderr.read()}")
        monitor.send_signal(signal.SIGSTOP)
        # The shell waits for each program (and each program for its
        # children): once it has exited, every process of the batch is gone.
        batch.communicate("go\n", timeout=120)
        assert batch.returncode == 0
        # No wait: the batch's records are in the ring buffer (written at each
        # call's exit), and a stopping monitor drains what the kernel sent.
    finally:
        # Whatever happened, the monitor is stopped (never left running).
        monitor.send_signal(signal.SIGCONT)
        monitor.send_signal(signal.SIGINT)
        status = monitor.wait(timeout=60)
        batch.kill()
    assert status == 0, monitor.stderr.read()
    return [json.loads(line) for line in json_path.read_text().splitlines()]


def test_short_lived_programs_get_the_same_categories_as_under_run(build_program, tmp_path: Path) -> None:
    programs = [str(build_program(name)) for name in PROGRAMS]
    records = _monitor_batch([f"{p} > /dev/null" for p in programs], tmp_path)
    assert records[-1]["type"] == "summary" and records[-1]["lost"] == 0
    monitored = _by_exe([r for r in records if r["type"] == "event"])
    assert not [r for r in records if r["type"] == "event" and r["backing"]["kind"] == "unknown"]

    for name, program in zip(PROGRAMS, programs, strict=True):
        run_dir = tmp_path / name
        run_dir.mkdir()
        traced = trace([program], run_dir)
        assert traced.returncode == 0, traced.stderr
        # Descriptor categories are the ptrace source's alone (docs/monitor.md).
        visible = [{**e, "categories": [c for c in e["categories"] if c not in DESCRIPTOR_CATEGORIES]}
                   for e in traced.events]
        expected = _by_exe(visible)
        assert expected.get(program), f"{name}: run reports nothing (the program is no test)"
        got = {exe: shape for exe, shape in monitored.items() if exe in expected}
        assert got == expected, name


def test_dlopen_of_an_execstack_library_is_execstack_on_the_stack(build_program, tmp_path: Path) -> None:
    """The case the issue names: run's categories and backing, under run itself."""
    traced = trace([str(build_program("dlopen_execstack"))], tmp_path)
    assert traced.returncode == 0, traced.stderr
    assert shape(traced.events) == [("mprotect", ("wx-protect", "w-to-x", "execstack"))]
    assert traced.events[0]["backing"]["kind"] == "stack"


EXE_POLICY = """\
apiVersion: trampwatch.dev/v1
kind: WXPolicy
metadata: {name: by-exe}
spec:
  defaultAction: allow
  rules:
    - {name: by-exe, match: {category: wx-map, exe: '*/twexename'}, action: log}
"""


def test_a_program_gone_before_proc_is_read_is_named_by_its_full_path(build_program, tmp_path: Path) -> None:
    """Issue 12: the exec names its program from the kernel's record alone,
    as /proc/PID/exe would (symlinks resolved, mounts crossed, a relative
    execve resolved), so an exe glob matches a process that is gone before
    the monitor reads anything of it. Each program maps W+X memory and exits
    at once; the monitor is stopped until all of them are reaped."""
    real = tmp_path / "bin"
    real.mkdir()
    shutil.copy(build_program("wx_map"), real / "twexename")
    (tmp_path / "link").symlink_to(real)
    # A tmpfs mount (/dev/shm on this host): the path crosses mounts on its way up.
    shm = Path(tempfile.mkdtemp(prefix="twexe", dir="/dev/shm"))
    try:
        shutil.copy(real / "twexename", shm / "twexename")
        policy = tmp_path / "by-exe.yaml"
        policy.write_text(EXE_POLICY)
        records = _monitor_batch([f"cd {real}", "./twexename > /dev/null", "../link/twexename > /dev/null",
                                  f"{shm}/twexename > /dev/null"], tmp_path, "--policy", str(policy))
    finally:
        shutil.rmtree(shm)
    events = [r for r in records if r["type"] == "event"]
    named = [(e["exe"], e["rule"], e["verdict"]) for e in events if e["comm"] == "twexename"]
    by_exe = ("by-exe", "logged")
    assert named == [(str(real / "twexename"), *by_exe), (str(real / "twexename"), *by_exe),
                     (str(shm / "twexename"), *by_exe)]


@pytest.mark.parametrize("abi", ["x86_64", "m32"])
def test_mappings_replaced_with_no_call_monitor_sees_are_taken_from_the_kernel(
        build_program, parse_output, tmp_path: Path, abi: str) -> None:
    """io_destroy unmaps a clean R-X file page, and a brk after
    prctl(PR_SET_MM) cuts one, with no munmap; a MAP_GROWSDOWN region grows
    into the gap and its written page is made R-X (tests/test_attack.py runs
    them under run). The monitor sends prctl(PR_SET_MM) (opaque), and the
    mprotect's VMAs, private memory where the model still had the file page,
    replace it with unknown (written) history: the same events as run's,
    w-to-x on anonymous memory (not execmod of a file, not a stack or heap
    /proc would not name)."""
    suffix = " m32" if abi == "m32" else ""
    programs = [str(build_program(name)) for name in ("attack_aio_gap", "attack_prctl_brk")]
    for program in programs:
        native = parse_output(subprocess.run([program, *suffix.split()], capture_output=True, text=True,
                                             timeout=120).stdout)
        if native.ran != ["grown_call"]:
            pytest.skip(f"{program}: the kernel refuses a step here: {native.failed()}")
    records = _monitor_batch([f"{p}{suffix} > /dev/null" for p in programs], tmp_path)
    assert records[-1]["type"] == "summary" and records[-1]["lost"] == 0
    monitored = _by_exe([r for r in records if r["type"] == "event"])
    w_to_x = ("mprotect", ("w-to-x", "anon-exec"))
    assert monitored == {programs[0]: [w_to_x], programs[1]: [("prctl", ("opaque",)), w_to_x]}
    for program in programs:
        run_dir = tmp_path / Path(program).name
        run_dir.mkdir()
        traced = trace([program, *suffix.split()], run_dir)
        assert _by_exe(traced.events) == {program: monitored[program]}


@pytest.mark.parametrize("name", ["execheap", "execstack_mprotect"])
def test_an_exec_judged_late_is_judged_on_its_maps_at_the_exec(name, build_program, tmp_path: Path) -> None:
    """The monitor judges an exec after the program has gone on (here: it is
    stopped meanwhile): /proc then shows the heap grown by brk and a stack
    page made read+write+execute by mprotect, which the exec did not make.
    The exec is judged on the maps it made (the stack as the kernel recorded
    it at the exec; the heap, like anonymous memory, from its calls): the
    one event is the mprotect's, as under run, with no wx-map or execstack
    at the exec. The process is alive when its exec is judged."""
    program = str(build_program(name))
    json_path = tmp_path / "monitor.jsonl"
    monitor = subprocess.Popen([*TRAMPWATCH, "monitor", "--comm", name[:15], "--json", str(json_path),
                                "-o", str(tmp_path / "m.txt")], stderr=subprocess.PIPE, text=True, cwd=ROOT)
    child = None
    try:
        line = monitor.stderr.readline()
        if "monitoring" not in line:
            pytest.fail(f"monitor did not start: {line}{monitor.stderr.read()}")
        monitor.send_signal(signal.SIGSTOP)
        child = subprocess.Popen([program, "wait"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        ran = ""
        while not (out := child.stdout.readline()).startswith("RAN"):
            assert out, f"{name} ended before its code ran: {ran}"
            ran += out
        monitor.send_signal(signal.SIGCONT)
        # Until the monitor has judged the mprotect (so the exec before it),
        # the process still alive: a guard, not a timing.
        for _ in range(600):
            if json_path.exists() and '"mprotect"' in json_path.read_text():
                break
            time.sleep(0.1)
        assert child.poll() is None
    finally:
        monitor.send_signal(signal.SIGCONT)
        if child is not None:
            child.communicate("bye\n", timeout=60)
        monitor.send_signal(signal.SIGINT)
        status = monitor.wait(timeout=60)
    assert status == 0, monitor.stderr.read()
    records = [json.loads(r) for r in json_path.read_text().splitlines()]
    events = [r for r in records if r["type"] == "event" and r["exe"] == program]
    traced = trace([program], tmp_path)
    assert traced.returncode == 0, traced.stderr
    assert shape(events) == shape(traced.events)
    assert [e["syscall"] for e in events] == ["mprotect"]


@pytest.mark.parametrize("program_args", [["attach_copied"], ["attack_attach_shared", "file_ro"]],
                         ids=["private-copy", "shared-view"])
def test_a_process_first_seen_mid_life_keeps_what_it_wrote_before(program_args, build_program,
                                                                  tmp_path: Path) -> None:
    """A process that wrote code before the monitor started (a private copy
    of a file page, made read-only; a shared file view written and made
    read-only) is seeded at its first sent call with what the kernel shows
    while it lives: the copy (pagemap) and the view that may write again
    (smaps `mw`) have written history, so made R-X it is w-to-x, as under
    attach. The clean page beside the copy is no event."""
    name, *args = program_args
    if args:
        args.append(str(tmp_path / "shared"))
    process = subprocess.Popen([str(build_program(name)), *args, "wait"], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, text=True)
    json_path = tmp_path / "monitor.jsonl"
    monitor = None
    try:
        while not (line := process.stdout.readline()).startswith("READY"):
            assert line, f"{name} ended before it was ready"
        argv = [*TRAMPWATCH, "monitor", "--pid", str(process.pid), "--json", str(json_path), "-o",
                str(tmp_path / "m.txt")]
        monitor = subprocess.Popen(argv, stderr=subprocess.PIPE, text=True, cwd=ROOT)
        started = monitor.stderr.readline()
        assert "monitoring" in started, started + monitor.stderr.read()
        process.stdin.write("go\n")
        process.stdin.flush()
        # Alive until the monitor has judged its calls: a guard, not a timing.
        for _ in range(600):
            if json_path.exists() and '"type": "event"' in json_path.read_text():
                break
            time.sleep(0.1)
        process.communicate("bye\n", timeout=60)
        assert process.returncode == 0
    finally:
        process.kill()
        if monitor is not None:
            monitor.send_signal(signal.SIGINT)
            assert monitor.wait(timeout=60) == 0
    events = [json.loads(r) for r in json_path.read_text().splitlines()]
    events = [e for e in events if e["type"] == "event"]
    assert [e["syscall"] for e in events] == ["mprotect"], events
    assert "w-to-x" in events[0]["categories"]
