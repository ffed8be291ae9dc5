"""Enforce mode against a program that attacks the memory model itself
(issue 10, routes 4, 5, 6, 8, 9, 10): pages no call made, races between
threads of one address space, exec seen before the fork, threads made
through another ABI, System V segment history, W+X segments at exec, and
threads vanishing at any stop. Each program natively runs code it wrote;
under strict enforce that code never runs and the report says so."""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import os
import signal
import subprocess
import time

import pytest
from test_enforce import STRICT, STRICT_TRACED
from test_run_programs import ROOT, TRAMPWATCH, Traced, shape, trace

from tracer.errors import TraceError
from tracer.pipeline import Judge, PtraceSink
from tracer.policy import resolve_policy
from tracer.sources.ptrace_source import PtraceSource


def _native(build_program, parse_output, name: str, *args: str):
    done = subprocess.run([str(build_program(name)), *args], capture_output=True, text=True, timeout=120)
    return parse_output(done.stdout)


def _denied_before_running(traced, parse_output) -> None:
    assert parse_output(traced.stdout).ran == [], traced.stdout
    for event in traced.events:
        assert event["verdict"] in ("denied", "killed"), event
        if event["verdict"] == "denied":
            assert event["result"] == -errno.EACCES


# --- route 4: unknown is unsafe --------------------------------------------------------


def test_pages_the_kernel_grew_count_as_written(build_program, parse_output, tmp_path):
    native = _native(build_program, parse_output, "unseen_pages")
    assert sorted(native.ran) == ["growsdown_grown_call", "stack_grown_call"]
    traced = trace([str(build_program("unseen_pages"))], tmp_path, *STRICT_TRACED)
    assert shape(traced.events) == [("mprotect", ("w-to-x", "execstack")),
                                    ("mprotect", ("w-to-x", "anon-exec"))]
    _denied_before_running(traced, parse_output)
    out = parse_output(traced.stdout)
    assert out.failed() == {"stack_grown_mprotect": "EACCES", "growsdown_grown_mprotect": "EACCES"}


# --- route 8: System V shm history belongs to the segment -----------------------------------


def test_shm_write_history_survives_detach_and_read_only_reattach(build_program, parse_output, tmp_path):
    assert _native(build_program, parse_output, "shm_reattach").ran == ["shm_reattached_call"]
    traced = trace([str(build_program("shm_reattach"))], tmp_path, *STRICT_TRACED)
    assert shape(traced.events) == [("mprotect", ("w-to-x",))]
    assert traced.events[0]["backing"]["kind"] == "shm"
    _denied_before_running(traced, parse_output)


# --- route 9: W+X at exec with no syscall ---------------------------------------------------


@pytest.mark.parametrize("name", ["wx_segment_static", "wx_segment_dynamic", "wx_segment_interp"])
def test_rwx_segment_at_exec_is_killed_before_the_first_instruction(name, build_program, parse_output,
                                                                     tmp_path):
    assert _native(build_program, parse_output, name).ran == ["wx_segment_call"]
    traced = trace([str(build_program(name))], tmp_path, *STRICT)
    assert shape(traced.events) == [("exec", ("wx-map",))]
    assert traced.events[0]["verdict"] == "killed" and traced.events[0]["prot"] == "rwx"
    expected = "ld-rwx.so.2" if name.endswith("interp") else name
    assert traced.events[0]["backing"]["path"].endswith(expected)
    assert traced.returncode == 128 + signal.SIGKILL
    assert traced.stdout == ""


def test_rwx_segment_at_exec_is_reported_in_audit(build_program, parse_output, tmp_path):
    traced = trace([str(build_program("wx_segment_dynamic"))], tmp_path)
    assert traced.returncode == 0
    assert shape(traced.events) == [("exec", ("wx-map",))]
    assert parse_output(traced.stdout).ran == ["wx_segment_call"]


# --- route 5: no decision on a stale model ------------------------------------------------


@pytest.mark.parametrize("how", ["mremap", "memfd"])
def test_memory_calls_of_one_address_space_are_judged_one_at_a_time(how, build_program, parse_output,
                                                                     tmp_path):
    program = str(build_program("mem_race"))
    assert _native(build_program, parse_output, "mem_race", how, "300").ran == ["race_call"]
    # Without serialisation the code ran in 3 of 4 such runs on this machine.
    for attempt in range(3):
        where = tmp_path / str(attempt)
        where.mkdir()
        traced = trace([program, how, "300"], where, *STRICT_TRACED, timeout=300)
        assert traced.returncode == 0, traced.stderr
        _denied_before_running(traced, parse_output)
        assert parse_output(traced.stdout).done == 1


def test_mmap_is_judged_by_the_object_the_kernel_mapped(build_program, parse_output, tmp_path):
    program = str(build_program("fd_swap"))
    assert "swap_call" in _native(build_program, parse_output, "fd_swap", "2000").ran
    # With a stat and a readlink of the descriptor (two looks) and an exit check
    # of dev/inode only, the code ran in 3 of 3 such runs on this machine.
    for attempt in range(2):
        where = tmp_path / str(attempt)
        where.mkdir()
        traced = trace([program, "2000"], where, *STRICT_TRACED, timeout=300)
        assert traced.returncode == 0, traced.stderr
        _denied_before_running(traced, parse_output)
        assert traced.events and all("exec-unlinked" in e["categories"] for e in traced.events)


def test_exec_seen_before_the_fork_event_keeps_the_childs_model(build_program, parse_output, tmp_path):
    program = build_program("bss_code")
    assert _native(build_program, parse_output, "bss_code").ran == ["bss_call"]
    rounds = 40
    script = f"for i in $(seq {rounds}); do {program} || echo; done | tee"
    traced = trace(["sh", "-c", script], tmp_path, *STRICT_TRACED, timeout=300)
    assert traced.returncode == 0, traced.stderr
    assert "RAN" not in traced.stdout
    assert len(traced.events) == rounds
    assert all(e["syscall"] == "mprotect" and "w-to-x" in e["categories"] for e in traced.events)
    assert all(e["verdict"] == "denied" and e["result"] == -errno.EACCES for e in traced.events)
    assert traced.stdout.count("STEP bss_rx_mprotect mprotect rc=-1 errno=EACCES") == rounds


# --- route 6: threads made through another ABI ------------------------------------------


@pytest.mark.parametrize("name", ["int80_clone", "m32_threads"])
def test_threads_made_by_i386_clone_share_the_address_space(name, build_program, parse_output, tmp_path):
    native = _native(build_program, parse_output, name)
    assert native.ran
    traced = trace([str(build_program(name))], tmp_path, *STRICT_TRACED)
    assert traced.returncode == 0, traced.stderr
    out = parse_output(traced.stdout)
    assert out.ran == [] and out.done == 1
    assert traced.events and all(e["categories"] == ["w-to-x", "anon-exec"] for e in traced.events)
    # One process: every event, from either thread, carries its process id.
    assert {e["pid"] for e in traced.events} == {out.ready}
    assert len({e["tid"] for e in traced.events}) == 2
    _denied_before_running(traced, parse_output)


# --- route 10: never crash ----------------------------------------------------------------


def test_threads_vanishing_at_stops_are_ordinary_events(build_program, parse_output, tmp_path):
    rounds = 300
    traced = trace([str(build_program("exit_race")), str(rounds)], tmp_path, *STRICT_TRACED, timeout=600)
    assert traced.returncode == 0, traced.stderr
    assert "internal error" not in traced.stderr and "Traceback" not in traced.stderr
    assert parse_output(traced.stdout).count == rounds
    assert traced.summary["exit_status"] == 0
    assert traced.summary["calls"] >= sum(1 for e in traced.events)
    # A refused call whose thread exit_group took before it returned cannot
    # show its refusal: the report says so instead of claiming `denied`.
    vanished = [e for e in traced.events if e["verdict"] != "denied"]
    assert all(e["verdict"] == "not-enforced" and "gone" in e["reason"] for e in vanished)
    assert len(vanished) < len(traced.events)


def test_cli_run_of_a_vanishing_tree_has_a_summary(build_program, tmp_path):
    done = subprocess.run([*TRAMPWATCH, "run", *STRICT, "--", str(build_program("exit_race")), "50"],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0 and "trampwatch summary" in done.stderr


# --- one persona per thread ---------------------------------------------------------------
#
# The kernel keeps READ_IMPLIES_EXEC in each thread's task->personality:
# personality(2) changes the caller's, a thread starts with its creator's.
# thread_persona gives it to one of two threads; each maps read+write memory.

READ_IMPLIES_EXEC = 0x0400000
# Allows the persona itself, refuses what it makes of read+write memory.
PERSONA_ALLOWED = (
    "apiVersion: trampwatch.dev/v1\nkind: WXPolicy\nmetadata: {name: t}\nspec:\n"
    "  mode: enforce\n  defaultAction: deny\n  rules:\n"
    "  - {name: persona, match: {category: read-implies-exec, syscall: personality}, action: allow}\n")


def _rw_mmaps(events: list[dict], pid: int, who: str) -> list[dict]:
    """The judged read+write mmaps of one page that thread `who` made."""
    return [e for e in events if e["syscall"] == "mmap" and e["args"][1] == 4096 and e["args"][2] == 3
            and (e["tid"] == pid) == (who == "main")]


def _judged_as_the_kernel_did(traced, out, pid: int) -> None:
    """Each thread's read+write mmap is judged W+X by READ_IMPLIES_EXEC
    exactly when the kernel's maps show it executable."""
    for who in ("main", "second"):
        executable = out.maps[f"{who}_region"].executable
        assert executable == bool(out.steps[f"{who}_persona"].rc & READ_IMPLIES_EXEC)
        judged = _rw_mmaps(traced.events, pid, who)
        assert bool(judged) == executable, (who, judged)
        for event in judged:
            assert event["prot"] == "rwx" and {"wx-map", "read-implies-exec"} <= set(event["categories"])
            assert int(event["addr"], 16) == out.steps[f"{who}_rw_mmap"].rc


@pytest.mark.parametrize("setter", ["main", "second"])
def test_each_threads_own_persona_is_judged(setter, build_program, parse_output, tmp_path):
    program = str(build_program("thread_persona"))
    native = _native(build_program, parse_output, "thread_persona", f"set-{setter}")
    assert native.ran == [f"{setter}_call"]
    traced = trace([program, f"set-{setter}"], tmp_path)
    assert traced.returncode == 0, traced.stderr
    out = parse_output(traced.stdout)
    assert out.ran == [f"{setter}_call"] and out.done == 1
    persona_set = [e for e in traced.events if e["syscall"] == "personality"]
    assert [e["categories"] for e in persona_set] == [["read-implies-exec"]]
    pid = persona_set[0]["pid"]
    assert (persona_set[0]["tid"] == pid) == (setter == "main")
    _judged_as_the_kernel_did(traced, out, pid)


def test_another_threads_persona_does_not_leak(build_program, parse_output, tmp_path):
    """The main thread keeps READ_IMPLIES_EXEC when the second clears its
    own: the main thread's read+write mmap is W+X (refused in enforce mode,
    its code never runs), the second's is not (left alone)."""
    program = str(build_program("thread_persona"))
    assert _native(build_program, parse_output, "thread_persona", "clear-second").ran == ["main_call"]
    audited = trace([program, "clear-second"], tmp_path)
    assert audited.returncode == 0, audited.stderr
    out = parse_output(audited.stdout)
    assert out.ran == ["main_call"]
    _judged_as_the_kernel_did(audited, out, audited.events[0]["pid"])
    policy = tmp_path / "persona.yaml"
    policy.write_text(PERSONA_ALLOWED)
    enforced = trace([program, "clear-second"], tmp_path, "--policy", str(policy))
    assert enforced.returncode == 0, enforced.stderr
    out = parse_output(enforced.stdout)
    assert out.ran == [] and out.done == 1
    assert out.failed() == {"main_rw_mmap": "EACCES"}
    assert not out.maps["second_region"].executable
    pid = enforced.events[0]["pid"]
    refused = _rw_mmaps(enforced.events, pid, "main")
    assert [(e["verdict"], e["result"]) for e in refused] == [("denied", -errno.EACCES)]
    assert _rw_mmaps(enforced.events, pid, "second") == []


@pytest.mark.parametrize("how", ["syscall", "int80"])
@pytest.mark.parametrize("setter", ["main", "second"])
@pytest.mark.parametrize("filtered", [True, False], ids=["kernel-deny", "traced"])
def test_strict_refuses_read_implies_exec_whichever_thread_asks(setter, how, filtered, build_program,
                                                                 parse_output, tmp_path):
    program = str(build_program("thread_persona"))
    args = [f"set-{setter}", *(["int80"] if how == "int80" else [])]
    assert _native(build_program, parse_output, "thread_persona", *args).ran == [f"{setter}_call"]
    traced = trace([program, *args], tmp_path, *(STRICT if filtered else STRICT_TRACED))
    assert traced.returncode == 0, traced.stderr
    out = parse_output(traced.stdout)
    assert out.ran == [] and out.done == 1
    assert out.failed() == {f"{setter}_persona_set": "EACCES"}
    for who in ("main", "second"):
        assert out.steps[f"{who}_persona"].rc & READ_IMPLIES_EXEC == 0
        assert not out.maps[f"{who}_region"].executable
    assert all(e["verdict"] == "denied" for e in traced.events)
    if not filtered:
        assert [(e["syscall"], e["result"]) for e in traced.events] == [("personality", -errno.EACCES)]


def _attached(program: list[str], options: tuple[str, ...], tmp_path, threads: int | None = 1,
              delay: float = 0.0):
    """Run `program` until it says READY, attach with `options` to the
    process READY names (its `threads` threads; None: any number) `delay`
    seconds later, let it go on; return its output (before and after the
    attach), its return code, the tracer's event records and the attached
    pid."""
    process = subprocess.Popen(program, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    before = ""
    while not (line := process.stdout.readline()).startswith("READY"):
        assert line, "the program ended before it was ready"
        before += line
    pid = int(line.split()[1])
    time.sleep(delay)
    json_path = tmp_path / "attach.jsonl"
    tracer = subprocess.Popen([*TRAMPWATCH, "attach", "--json", str(json_path), *options, str(pid)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    # Held descriptors are judged at the seize: their report lines come
    # before the tracer says it is attached.
    attached = f"trampwatch: attached to pid {pid} ({'' if threads is None else threads}"
    said = ""
    while not (ready := tracer.stderr.readline()).startswith(attached):
        assert ready, f"the tracer ended before it was attached (exit {tracer.wait()}): {said}"
        said += ready
    out_text, _ = process.communicate("go\n", timeout=120)
    _, errors = tracer.communicate(timeout=120)
    (tmp_path / "attach.stderr").write_text(said + ready + errors)  # for a failure's message
    assert process.returncode != 0 or tracer.returncode == 0, errors
    records = [json.loads(r) for r in json_path.read_text().splitlines()]
    events = [r for r in records if r["type"] == "event"]
    return before + line + out_text, process.returncode, events, pid


def _killed_at_the_seize(options: tuple[str, ...], returncode: int, out, event: dict, call: str) -> None:
    """Under strict (`options`) what the seize found killed the process before
    its code ran (`event` says so); under audit `call` ran and `event` says
    it was not killed."""
    if options:
        assert returncode == -signal.SIGKILL and out.ran == []
        assert event["verdict"] == "killed"
    else:
        assert returncode == 0 and out.ran == [call]
        assert event["verdict"] != "killed"


@pytest.mark.root
@pytest.mark.parametrize("options", [(), STRICT], ids=["audit", "strict"])
@pytest.mark.parametrize("holder", ["main", "second"])
def test_attach_reads_each_threads_persona(holder, options, build_program, parse_output, tmp_path):
    """A process seized with READ_IMPLIES_EXEC in one thread only (set before
    the tracer came, so nothing refused it): each thread is judged by its
    own persona, read from /proc/PID/task/TID/personality; under strict
    enforce the holder's read+write mmap is refused and no code runs."""
    out_text, returncode, events, pid = _attached([str(build_program("thread_persona")), f"attach-{holder}"],
                                                  options, tmp_path, threads=2)
    assert returncode == 0
    out = parse_output(out_text)
    assert out.steps[f"{holder}_persona"].rc & READ_IMPLIES_EXEC
    if not options:
        assert out.ran == [f"{holder}_call"]
        _judged_as_the_kernel_did(Traced(0, "", "", events, {}), out, pid)
        return
    assert out.ran == [] and out.done == 1
    assert out.failed() == {f"{holder}_rw_mmap": "EACCES"}
    other = "second" if holder == "main" else "main"
    assert not out.maps[f"{other}_region"].executable
    refused = _rw_mmaps(events, pid, holder)
    assert [(e["verdict"], e["result"]) for e in refused] == [("denied", -errno.EACCES)]
    assert _rw_mmaps(events, pid, other) == []


# --- attach: what the process wrote before the tracer came ----------------------------------


@pytest.mark.root
@pytest.mark.parametrize("options", [(), STRICT], ids=["audit", "strict"])
def test_attach_takes_written_history_from_the_kernels_pages(options, build_program, parse_output, tmp_path):
    """A private file page written and made read-only before the tracer
    attached looks, by its protection, like the clean page beside it; the
    kernel's pages (a private copy) say it was written. Made read+execute
    after the attach it is w-to-x (and execmod), refused under strict; the
    clean page, only read, is not an event."""
    out_text, returncode, events, _ = _attached([str(build_program("attach_copied"))], options, tmp_path)
    assert returncode == 0
    out = parse_output(out_text)
    base = out.steps["file_map"].rc
    assert [(e["syscall"], int(e["addr"], 16)) for e in events] == [("mprotect", base)]
    assert {"w-to-x", "execmod"} <= set(events[0]["categories"])
    assert out.steps["clean_rx"].rc == 0 and out.done == 1
    if options:
        assert out.failed() == {"copy_rx": "EACCES"} and out.ran == []
        assert events[0]["verdict"] == "denied" and events[0]["result"] == -errno.EACCES
    else:
        assert out.failed() == {} and out.ran == ["copy_call"]
        assert events[0]["verdict"] != "denied"


@pytest.mark.root
@pytest.mark.parametrize("options", [(), STRICT], ids=["audit", "strict"])
def test_attach_takes_a_file_changed_since_the_process_started_as_written(options, build_program,
                                                                          parse_output, tmp_path):
    """Code written into a file (write, then closed) before the tracer came,
    the file mapped read-only: made read+execute after the attach, or mapped
    read+execute anew, it is exec-written, refused under strict (the file
    changed after the process started: the process may have written it).
    A page of /bin/sh, mapped the same way, is no event."""
    code = tmp_path / "code.bin"
    program = [str(build_program("attach_file_written")), str(code)]
    out_text, returncode, events, _ = _attached(program, options, tmp_path)
    assert returncode == 0
    out = parse_output(out_text)
    assert [e["syscall"] for e in events] == ["mprotect", "mmap"]
    assert all("exec-written" in e["categories"] and e["backing"]["path"] == str(code) for e in events)
    assert out.steps["clean_rx"].rc == 0 and out.done == 1
    if options:
        assert out.failed() == {"written_rx": "EACCES", "written_map_rx": "EACCES"} and out.ran == []
        assert all(e["verdict"] == "denied" and e["result"] == -errno.EACCES for e in events)
    else:
        assert out.failed() == {} and out.ran == ["written_call", "fresh_call"]
        assert not [e for e in events if e["verdict"] == "denied"]


@pytest.mark.root
@pytest.mark.parametrize("options", [(), STRICT], ids=["audit", "strict"])
@pytest.mark.parametrize("mode", ["file", "mem"])
def test_attach_judges_the_descriptors_the_process_holds(mode, options, build_program, parse_output,
                                                          tmp_path):
    """Descriptors opened before the tracer attached are judged at the
    seize as an open's are at its exit. `file`: a file held open for
    writing, its clean page mapped private read-only; after the attach the
    code is pwritten into the file and the page made R-X: the file is
    written (exec-written, refused under strict; before, no event and the
    code ran). `mem`: its own mem file held open for writing; after the
    attach the code is pwritten over a private R-X page of its program and
    called, no memory call at all (foreign-write: no call made the
    descriptor, so strict kills the process at the seize; before, no event
    and the code ran)."""
    native = _native(build_program, parse_output, "attack_attach_held_fd", mode, str(tmp_path / "native"))
    assert native.ran == {"file": ["rx_call"], "mem": ["mem_call"]}[mode]
    out_text, returncode, events, _ = _attached(
        [str(build_program("attack_attach_held_fd")), mode, str(tmp_path / "held")], options, tmp_path)
    out = parse_output(out_text)
    if mode == "file":
        assert returncode == 0
        assert [(e["syscall"], e["categories"]) for e in events] == [("mprotect", ["exec-written"])]
        if options:
            assert out.failed() == {"make_rx": "EACCES"} and out.ran == []
            assert events[0]["verdict"] == "denied" and events[0]["result"] == -errno.EACCES
        else:
            assert out.ran == ["rx_call"] and events[0]["verdict"] != "denied"
        return
    assert [(e["syscall"], e["categories"], e["detail"]["fd"]) for e in events] == \
        [("held", ["foreign-write"], str(out.steps["open_mem"].rc))]
    _killed_at_the_seize(options, returncode, out, events[0], "mem_call")


@pytest.mark.root
def test_attach_judges_the_descriptors_a_thread_holds_in_its_own_table(build_program, parse_output, tmp_path):
    """A second thread that unshared its descriptor table (CLONE_FILES)
    holds its own mem file open for writing there, not in the leader's
    /proc/PID/fd; after the attach it pwrites code over a private R-X page
    of its program and calls it, no memory call at all. Every seized
    thread's table (kcmp: another than the leader's) is judged at the seize:
    foreign-write, in that thread, kills the process under strict (before,
    only the leader's table was read: no event and the code ran)."""
    assert _native(build_program, parse_output, "attack_attach_thread_table").ran == ["mem_call"]
    out_text, returncode, events, _ = _attached([str(build_program("attack_attach_thread_table"))], STRICT,
                                                tmp_path, threads=2)
    out = parse_output(out_text)
    assert returncode == -signal.SIGKILL and out.ran == []
    assert [(e["syscall"], e["categories"], e["verdict"], e["detail"]["fd"]) for e in events] == \
        [("held", ["foreign-write"], "killed", str(out.steps["open_mem"].rc))]
    assert events[0]["tid"] != events[0]["pid"]


@pytest.mark.root
def test_attach_seizes_a_thread_made_by_a_clone_the_seize_interrupted(build_program, parse_output, tmp_path):
    """A thread seized in the middle of a clone makes the new thread
    untraced (the kernel decided when the clone began) and lists it only
    when the clone ends: here 0.3 s later (its pidfd is stored into a page
    a userfaultfd served by a helper process holds back). The new thread
    (its clone began while the spawner was untraced) waits for the line sent
    after the attach and makes a written anonymous page R-X; it reports
    itself whether or not the tracer seized it before it ran (before, it
    asked /proc whether it was traced, and a tracer quicker than that made
    the test fail: 1 run in 4 under load). The threads are listed again once every seized one
    has stopped: the new one is seized before anything is read, and its
    mprotect is seen (before, the listing ended before the clone did: the
    thread ran untraced, no event, and the code ran). Audit: strict kills
    the process at the seize for the range its helper's userfaultfd
    serves (the held pseudo call, reported here)."""
    assert _native(build_program, parse_output, "attack_attach_clone_race").done == 1
    out_text, returncode, events, _ = _attached([str(build_program("attack_attach_clone_race"))], (),
                                                tmp_path, threads=None)
    out = parse_output(out_text)
    assert returncode == 0 and out.done == 1 and out.ran == ["untraced_call"]
    untraced = out.steps["untraced"].rc
    held = [e for e in events if e["syscall"] == "held"]
    assert [(e["categories"], e["detail"]["facility"]) for e in held] == [(["opaque"], "userfaultfd")]
    mprotects = [e for e in events if e["syscall"] == "mprotect"]
    assert [(e["tid"], e["verdict"]) for e in mprotects] == [(untraced, "logged")]
    assert "anon-exec" in mprotects[0]["categories"]


# Moments of attack_attach_exec's exec storm the tracer attaches at.
_EXEC_STORM_DELAYS = tuple(i * 0.037 % 0.4 for i in range(16))


@pytest.mark.root
def test_attach_holds_a_process_whose_threads_exec_during_the_seize(build_program, parse_output, tmp_path):
    """attack_attach_exec: a thread execs the program again every 0-2 ms
    (the exec kills the other threads and gives the exec'ing thread the
    main thread's number; meanwhile the main thread is a zombie and a
    seize of the process waits for the exec, which waits for the threads
    it killed to be reaped), attached under strict at 16 moments of the
    storm, which ends (the last image makes its written page R-X) once the
    tracer is attached. Each attach holds the process: no error, and the
    R-X page is refused. Before, 5 in 30 attaches failed (the main thread
    taken for one that ended; 'could not seize any thread'; /proc read
    while an exec was under way), and one in 12 lost the process (the new
    image untraced: its code ran, trampwatch exited 0 with no event)."""
    program = [str(build_program("attack_attach_exec"))]
    assert _native(build_program, parse_output, "attack_attach_exec").ran == ["exec_storm_call"]
    for delay in _EXEC_STORM_DELAYS:
        out_text, returncode, events, _ = _attached(program, STRICT, tmp_path, threads=None, delay=delay)
        out = parse_output(out_text)
        said = (tmp_path / "attach.stderr").read_text()
        assert returncode == 0 and out.done == 1 and out.ran == [], (delay, out_text, said)
        refused = [e for e in events if e["syscall"] == "mprotect"]
        assert [(e["verdict"], e["result"]) for e in refused] == [("denied", -errno.EACCES)], (delay, refused)


@pytest.mark.root
@pytest.mark.parametrize("threads", [(), ("threads",)], ids=["alone", "threads"])
def test_attach_serves_a_seized_threads_stop_by_its_wait_status(threads, build_program, parse_output,
                                                                 tmp_path):
    """attack_attach_siginfo: a page written before the attach (its own copy
    of a /bin/sh page, made read-only), while the process queues SIGTRAP to
    itself in a loop with si_code PTRACE_EVENT_EXEC's (a process may forge
    any si_code for itself), attached under strict at 6 moments. The seize
    mostly finds it in that signal's delivery stop; each attach must serve
    it as a signal: the page made R-X after the attach is w-to-x, refused.
    Before, the stop was read from the signal information: served as an
    exec, the model took the process for a new program (every page clean,
    the other threads' tasks dropped), and the code ran with no event in 4
    attaches of 6."""
    program = [str(build_program("attack_attach_siginfo")), *threads]
    assert _native(build_program, parse_output, "attack_attach_siginfo").ran == ["copy_call"]
    for delay in (0.0, 0.05, 0.1, 0.15, 0.2, 0.25):
        out_text, returncode, events, _ = _attached(program, STRICT, tmp_path, threads=None, delay=delay)
        out = parse_output(out_text)
        assert returncode == 0 and out.done == 1 and out.ran == [], (delay, out_text)
        assert out.steps["forged"].rc == 0  # the forged signals reached its handler
        refused = [e for e in events if e["syscall"] == "mprotect"]
        assert [(e["verdict"], e["categories"]) for e in refused] == [("denied", ["w-to-x", "execmod"])], \
            (delay, refused)


@pytest.mark.root
def test_attach_through_group_stops(build_program, parse_output, tmp_path):
    """attack_attach_stop stop: a child stops and continues the process
    (SIGSTOP, SIGCONT) every 0-2 ms while the tracer seizes it (a group
    stop before the seize, or begun during it), attached under strict at 4
    moments: each attach ends, the process goes on, and the page written
    before the attach made R-X after it is refused."""
    program = [str(build_program("attack_attach_stop")), "stop"]
    assert _native(build_program, parse_output, "attack_attach_stop", "stop").ran == ["main_call"]
    for delay in (0.0, 0.05, 0.1, 0.2):
        out_text, returncode, events, _ = _attached(program, STRICT, tmp_path, delay=delay)
        out = parse_output(out_text)
        assert returncode == 0 and out.done == 1 and out.ran == [], (delay, out_text)
        assert out.failed() == {"make_rx": "EACCES"}
        assert [e["verdict"] for e in events if e["syscall"] == "mprotect"] == ["denied"]


@pytest.mark.root
@pytest.mark.parametrize("options", [(), STRICT], ids=["audit", "strict"])
@pytest.mark.parametrize("mode", ["missing", "minor"])
def test_attach_judges_a_range_registered_with_a_userfaultfd_as_held(mode, options, build_program,
                                                                     parse_output, tmp_path):
    """A page mapped R-X and registered with a userfaultfd before the attach,
    the descriptor closed: only a helper process outside the tree holds it,
    and fills the page with code (UFFDIO_COPY; minor: through its own view
    of the memfd, UFFDIO_CONTINUE) when the program calls it, with no call
    of the program's. The registration (smaps VmFlags um/ui) is judged as a
    held userfaultfd: opaque, strict kills at the seize, audit reports it
    (before, no event and the code ran)."""
    assert _native(build_program, parse_output, "attack_attach_uffd", mode).ran == ["uffd_call"]
    out_text, returncode, events, _ = _attached([str(build_program("attack_attach_uffd")), mode], options,
                                                tmp_path)
    out = parse_output(out_text)
    assert [(e["syscall"], e["categories"], e["detail"]["facility"]) for e in events] == \
        [("held", ["opaque"], "userfaultfd")]
    _killed_at_the_seize(options, returncode, out, events[0], "uffd_call")


@pytest.mark.root
@pytest.mark.parametrize("mode", ["file_ro", "shm_ro"])
def test_attach_takes_a_read_only_shared_view_that_may_write_for_written(mode, build_program, parse_output,
                                                                         tmp_path):
    """Code written through a shared read-write view (a file's, a System V
    segment's) before the tracer attached, the view made read-only: its
    protection says never written, but the kernel keeps it one that may be
    writable again (smaps VmFlags `mw`): its history is written, and made
    R-X after the attach it is w-to-x, refused under strict (before, no
    event and the code ran); the object, made after the process started,
    is exec-written too."""
    native = _native(build_program, parse_output, "attack_attach_shared", mode, str(tmp_path / "native"))
    assert native.ran == ["rx_call"]
    out_text, returncode, events, _ = _attached(
        [str(build_program("attack_attach_shared")), mode, str(tmp_path / "shared")], STRICT, tmp_path)
    out = parse_output(out_text)
    assert returncode == 0 and out.ran == [] and out.failed() == {"make_rx": "EACCES"}
    assert [(e["syscall"], e["categories"], e["verdict"]) for e in events] == \
        [("mprotect", ["w-to-x", "exec-written"], "denied")]


@pytest.mark.root
@pytest.mark.parametrize(("mode", "categories"), [("shm_reattach", ["w-to-x", "exec-written"]),
                                                  ("shm_older", ["w-to-x", "exec-written"]),
                                                  ("shm_detached", ["w-to-x"])])
def test_attach_takes_a_segment_attached_since_the_process_started_for_written(mode, categories,
                                                                               build_program, parse_output,
                                                                               tmp_path):
    """Code written into a System V segment through a read-write attach
    gone before the tracer attached (detached; then attached SHM_RDONLY
    before the attach, or after it): no view says it was written, but the
    kernel's records say the segment was attached since the process
    started (shm_atime, shm_dtime): its history is written, and made R-X
    after the attach it is w-to-x, refused under strict. `shm_older`'s
    segment is older than the process (no change time of its own is
    fresh); `shm_detached` maps it only after the attach (before, no event
    and the code ran). Mapped at the seize, the segment is exec-written too
    (the internal mount it lives on is none the process started with)."""
    native = _native(build_program, parse_output, "attack_attach_shared", mode)
    assert native.ran == ["rx_call"]
    out_text, returncode, events, _ = _attached([str(build_program("attack_attach_shared")), mode], STRICT,
                                                tmp_path)
    out = parse_output(out_text)
    assert returncode == 0 and out.ran == [] and out.failed() == {"make_rx": "EACCES"}
    assert [(e["syscall"], e["categories"], e["verdict"]) for e in events] == \
        [("mprotect", categories, "denied")]


@pytest.mark.root
@pytest.mark.parametrize("options", [(), STRICT], ids=["audit", "strict"])
def test_attach_judges_a_thread_that_does_not_stop_as_blocked(options, build_program, parse_output, tmp_path):
    """The tracer reads the process once its threads have stopped. A thread
    inside vfork does not stop while its child (made before the attach,
    sharing its address space, traced by nobody) lives: the child waits
    for the line the test sends once the tracer is attached, then makes a
    written page R-X, and the parent calls it with no call of its own.
    After BLOCKED_PATIENCE the thread is judged as the `blocked` pseudo call
    (opaque: strict kills the process, before the child's change; before,
    the maps were read at once and the code ran with no event); audit
    reports it and takes every page's history as unknown."""
    assert _native(build_program, parse_output, "attack_attach_vfork").ran == ["vfork_call"]
    program = [str(build_program("attack_attach_vfork"))]
    out_text, returncode, events, _ = _attached(program, options, tmp_path)
    out = parse_output(out_text)
    assert [(e["syscall"], e["categories"], e["detail"]["facility"]) for e in events] == \
        [("blocked", ["opaque"], "blocked-unstopped")]
    _killed_at_the_seize(options, returncode, out, events[0], "vfork_call")


@pytest.mark.root
@pytest.mark.parametrize("mode", ["sqpoll", "registered", "nommap", "enter"])
def test_attach_finds_an_io_uring_with_no_descriptor_left(mode, build_program, parse_output, tmp_path):
    """An io_uring made before the attach, its descriptor closed, with the
    program's own mem file registered as its fixed file: after the attach
    one submission writes code over the program's text, with no call at all
    when a kernel thread polls the ring (`sqpoll`, `nommap`), or through an
    io_uring_enter by the ring's registered index (`registered`). What shows
    it at the seize: the ring's mapping (`sqpoll`, `registered`), or only its
    polling thread, iou-sqp (`nommap`: the rings are the program's own
    anonymous pages). io_uring is opaque: strict kills the process at the
    seize (before, the code ran with no event). `enter`: the same rings, not
    polled, entered by the ring's registered index: nothing shows the ring at
    the seize, and that io_uring_enter is refused (EPERM, opaque)."""
    release = tuple(int(part) for part in os.uname().release.split(".")[:2])
    if mode in ("nommap", "enter") and release < (6, 5):
        pytest.skip(f"IORING_SETUP_NO_MMAP needs Linux 6.5; this kernel is {os.uname().release}")
    assert _native(build_program, parse_output, "attack_attach_uring", mode).ran == ["uring_call"]
    program = [str(build_program("attack_attach_uring")), mode]
    threads = 2 if mode in ("sqpoll", "nommap") else 1  # a polled ring's thread is one of the process's
    out_text, returncode, events, _ = _attached(program, STRICT, tmp_path, threads=threads)
    out = parse_output(out_text)
    if mode == "enter":
        assert returncode == 0 and out.ran == [] and out.failed() == {"enter": "EPERM"}
        assert [(e["syscall"], e["categories"], e["detail"]["facility"], e["verdict"]) for e in events] == \
            [("io_uring_enter", ["opaque"], "io_uring", "denied")]
        return
    assert returncode == -signal.SIGKILL and out.ran == []
    assert [(e["syscall"], e["categories"], e["detail"]["facility"], e["verdict"]) for e in events] == \
        [("held", ["opaque"], "io_uring", "killed")]


_PTRACE_DETACH = 17


def _running(pid: int) -> bool:
    """Whether process `pid` exists and is no zombie (its reaper may be slow)."""
    try:
        with open(f"/proc/{pid}/stat") as stat_file:
            return stat_file.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.root
@pytest.mark.parametrize("mode", ["audit", "enforce"])
def test_a_process_the_tracer_loses_is_reported_and_killed_under_enforce(mode):
    """The loop's last guard: the kernel says no task is traced while the
    tracer still follows one that lives (here its seized thread detached
    behind the loop's back, as a seize under a number an exec then gave
    another thread would leave it). The loss is raised (exit 1 from the
    CLI), never taken for the process's end; enforce kills the process
    through its pidfd (audit leaves it running)."""
    started = subprocess.run(["sh", "-c", "sleep 60 >/dev/null 2>&1 & echo $!"], capture_output=True,
                             text=True, check=True)
    pid = int(started.stdout)  # not the test's child: only the trace can wait for it
    try:
        judge = Judge(resolve_policy("strict"), mode, [], "ptrace")
        source = PtraceSource(PtraceSink(judge))
        source.attach(pid)
        # Stopped at the seize: let go by the tracing thread (this one), not by the loop.
        assert ctypes.CDLL(None, use_errno=True).ptrace(_PTRACE_DETACH, pid, None, None) == 0
        outcome = f"pid {pid} killed" if mode == "enforce" else "nothing killed"
        with pytest.raises(TraceError) as lost:
            source.run()
        assert str(lost.value).endswith(f"lost track of pid(s) {pid}: they run untraced ({outcome})")
        time.sleep(0.2)
        assert _running(pid) == (mode == "audit")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


@pytest.mark.root
@pytest.mark.parametrize("options", [(), STRICT], ids=["audit", "strict"])
@pytest.mark.parametrize("mode", ["segment", "map"])
def test_attach_judges_writable_executable_memory_held_at_the_seize(mode, options, build_program,
                                                                    parse_output, tmp_path):
    """attack_attach_wx: memory writable and executable at the seize (an
    RWX PT_LOAD segment the loader mapped at an exec no tracer saw; an RWX
    anonymous page mapped before the attach) lets the process write code
    and run it after the attach with no call at all. Judged at the seize
    as held (wx-map): strict kills the process there, audit reports it
    (before, no event and the code ran under strict)."""
    call = {"segment": "wx_segment_call", "map": "wx_map_call"}[mode]
    assert _native(build_program, parse_output, "attack_attach_wx", mode).ran == [call]
    program = [str(build_program("attack_attach_wx")), mode]
    out_text, returncode, events, _ = _attached(program, options, tmp_path)
    out = parse_output(out_text)
    held = [e for e in events if e["syscall"] == "held"]
    assert held and all("wx-map" in e["categories"] for e in held), events
    _killed_at_the_seize(options, returncode, out, held[0], call)
