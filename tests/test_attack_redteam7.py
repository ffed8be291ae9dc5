"""Attacks on enforce mode found by red team 7 (the waits that queue every
reported stop; the check that tree memory the tracer reads is private
anonymous), each a C program that natively runs code it produced and,
under strict enforce, must not (helpers of test_attack: the native run
first, then no RAN line and a truthful report). Attacks still open are
xfail(strict=True) with the hole named."""

from __future__ import annotations

import json
import os
import resource
import subprocess
from pathlib import Path

import pytest
from test_attack import _blocked, _native
from test_enforce import STRICT
from test_run_programs import ROOT, TRAMPWATCH, Traced, shape

from tracer.sources import fuse_abort


def _tree(root: int) -> set[int]:
    """root and every process below it (by /proc's parent links)."""
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as file:
                    parents[int(entry)] = int(file.read().rpartition(")")[2].split()[1])
            except (OSError, ValueError, IndexError):
                continue
    tree, grew = {root}, True
    while grew:
        below = {pid for pid, parent in parents.items() if parent in tree} - tree
        tree |= below
        grew = bool(below)
    return tree


def trace_watched(argv: list[str], tmp_path: Path, *options: str, timeout: int = 60,
                  open_files: int | None = None) -> Traced:
    """trace(), for a run that may hang the tracer in a FUSE request no
    signal ends (SIGKILL included): past the timeout the FUSE connections
    of the traced tree's own mounts are aborted (the tracer's wait ends),
    the run is killed and the test fails. `open_files`: trampwatch's limit
    of open descriptors (RLIMIT_NOFILE), when given."""

    def limit() -> None:
        if open_files is not None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (open_files, open_files))

    json_path = tmp_path / "events.jsonl"
    report = tmp_path / "report.txt"
    command = [*TRAMPWATCH, "run", "--json", str(json_path), "-o", str(report), *options, "--", *argv]
    run = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                           preexec_fn=limit)
    try:
        stdout, stderr = run.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        aborted = fuse_abort.abort(frozenset().union(*(fuse_abort.private_connections(pid)
                                                       for pid in _tree(run.pid))))
        run.kill()
        run.communicate()
        pytest.fail(f"trampwatch hung for {timeout} s (FUSE connections aborted: {aborted})")
    records = [json.loads(line) for line in json_path.read_text().splitlines()] if json_path.exists() else []
    events = [r for r in records if r["type"] == "event"]
    summary = next((r for r in records if r["type"] == "summary"), {})
    return Traced(run.returncode, stdout, stderr + report.read_text(), events, summary)


def test_a_fuse_file_with_inode_number_0_is_not_read_as_anonymous_memory(build_program, parse_output,
                                                                         tmp_path):
    """A FUSE server chooses the inode number its files report: a private
    mapping of a file whose number is 0 looked like anonymous memory to the
    check made before the tracer reads tree memory (PROCMAP_QUERY's inode,
    and the maps file's, is the server's number). The stack pointer in a
    page of it for a raw mprotect that makes written code R-X: the tracer
    sampled the stack to name the caller, faulted the page and waited for
    a server that never answers, for ever. A mapping with a device (every
    file has one, anonymous memory none) is no longer read."""
    native = _native(build_program, parse_output, "attack_stack_peek", "ino0")
    if "fuse_mount" in native.failed():
        pytest.skip(f"cannot mount FUSE here: {native.failed()['fuse_mount']}")
    assert native.ran == ["stack_peek_call"], native
    traced = trace_watched([str(build_program("attack_stack_peek")), "ino0"], tmp_path, *STRICT)
    _blocked(traced, parse_output)
    assert shape(traced.events) == [("mprotect", ("w-to-x", "anon-exec"))]
    assert traced.returncode == 0, traced.stderr
    assert parse_output(traced.stdout).failed() == {"peek_rx_mprotect": "EACCES"}


def test_an_interpreter_served_from_fuse_with_inode_number_0_is_exec_written(build_program, parse_output,
                                                                             tmp_path):
    """A clean program (built before the run) whose PT_INTERP names a file
    of a FUSE filesystem the tree mounts and serves, its inode number 0 as
    the server tells it: the kernel maps it as the interpreter and starts
    there. The exec stop judges every executable file mapping, and took
    those with inode number 0 for no file: the interpreter was not judged
    and the code the tree served ran, with no event. A file mapping is told
    by its device now: the exec is exec-written and killed."""
    payload, victim = build_program("interp0_payload"), build_program("interp0_victim")
    argv = [str(build_program("attack_fuse_exec")), str(payload), str(victim)]
    native = _native(build_program, parse_output, "attack_fuse_exec", str(payload), str(victim))
    if "fuse_mount" in native.failed():
        pytest.skip(f"cannot mount FUSE here: {native.failed()['fuse_mount']}")
    assert native.ran == ["interp0_call"], native
    traced = trace_watched(argv, tmp_path, *STRICT)
    assert parse_output(traced.stdout).ran == [], traced.stdout
    assert shape(traced.events) == [("exec", ("exec-written",))], traced.events
    assert traced.events[0]["verdict"] == "killed", traced.events[0]
    assert "CHILD victim signal=SIGKILL" in traced.stdout, traced.stdout


def test_a_child_whose_creator_an_exec_killed_is_not_held_for_ever(build_program, parse_output, tmp_path):
    """A thread forks in a loop while the main thread execs a program that
    waits for every child. A child seen before its creator's fork event is
    kept stopped until that event comes; the exec kills the creator before
    it reports it, so the event never comes: the child stayed stopped, the
    new program waited for it, and trampwatch for both, for ever. A child
    made before its process's exec (numbered no higher than the last task
    number at the exec) is now learnt from its maps, as if attached."""
    native = _native(build_program, parse_output, "attack_fork_exec_orphan", "20")
    assert native.count == 20, native
    traced = trace_watched([str(build_program("attack_fork_exec_orphan")), "20"], tmp_path, *STRICT)
    assert traced.returncode == 0, traced.stderr
    assert parse_output(traced.stdout).count == 20, traced.stdout
    assert traced.events == []


def test_an_exec_by_a_thread_leaves_no_tracer_descriptor_behind(build_program, parse_output, tmp_path):
    """A chain of execs, each by a second thread after a refused W^X event
    of its own (the tracer samples its stack, keeping descriptors of its
    /proc files by task number until the task's exit or exec). An exec by a
    thread that is not the leader gives it the leader's number: its own is
    gone with no exit to report, and its descriptors stayed open, two per
    exec; with 256 descriptors trampwatch stopped after 125 execs (`cannot
    read /proc/PID/fd/3: Too many open files`), the program's end lost."""
    native = _native(build_program, parse_output, "attack_exec_fd_leak", "300")
    assert native.done, native
    traced = trace_watched([str(build_program("attack_exec_fd_leak")), "300"], tmp_path, *STRICT,
                           timeout=120, open_files=256)
    assert traced.returncode == 0, traced.stderr[-2000:]
    assert parse_output(traced.stdout).done, traced.stdout
    assert shape(traced.events) == [("mprotect", ("w-to-x", "anon-exec"))] * 300
    assert {event["verdict"] for event in traced.events} == {"denied"}


def test_an_exec_ended_while_the_tracer_takes_reported_stops_is_judged_first(build_program, parse_output,
                                                                            tmp_path):
    """300 threads of the main process stop at every call (madvise
    MADV_DONTFORK); made first, the kernel lists them last. Each try forks
    a process whose leader stops likewise while its other thread execs a
    static program the run wrote (it prints RAN with no trapped call).
    When the tracer had taken the leader's stop and was still taking the old
    threads' as the exec ended, the exec stop (under the leader's number)
    was queued behind it; taken, it lets the tracer act on that number, and
    the stale stop, served as a syscall stop with no syscall, resumed the
    new program before its exec was judged: the written code ran, with no
    event (3-5 of 40 tries). Stops taken before an exec stop under the same
    number in one round are dropped."""
    tries = 80
    payload = str(build_program("interp0_payload"))
    native = _native(build_program, parse_output, "attack_exec_drain", payload, str(tries))
    assert native.ran == [f"drain{i}_call" for i in range(tries)], native
    traced = trace_watched([str(build_program("attack_exec_drain")), payload, str(tries)], tmp_path, *STRICT,
                           timeout=120)
    assert traced.returncode == 0, traced.stderr[-2000:]
    assert parse_output(traced.stdout).ran == [], traced.stdout
    assert shape(traced.events) == [("exec", ("exec-written",))] * tries
    assert {event["verdict"] for event in traced.events} == {"killed"}
