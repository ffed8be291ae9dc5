"""Enforce mode against a program that attacks the memory model itself
(issue 10, routes 4, 5, 6, 8, 9, 10): pages no call made, races between
threads of one address space, exec seen before the fork, threads made
through another ABI, System V segment history, W+X segments at exec, and
threads vanishing at any stop. Each program natively runs code it wrote;
under strict enforce that code never runs and the report says so."""

from __future__ import annotations

import errno
import signal
import subprocess

import pytest
from test_enforce import STRICT, STRICT_TRACED
from test_run_programs import shape, trace


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
