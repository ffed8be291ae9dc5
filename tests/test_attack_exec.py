"""Attacks on execs seen only at their PTRACE_EVENT_EXEC stop (execve and
execveat no longer stop at entry) and on a forked child's model copied from
a parent whose other tasks are mid-call (attack_late_exec). Each runs its
code natively first (the kernel as oracle); under strict enforce no RAN
line appears and every event is denied or killed."""

from __future__ import annotations

import pytest
from test_attack import _blocked, _native
from test_enforce import STRICT
from test_run_programs import shape, trace

WRITTEN = ("exec", ("exec-written",))
# route (in the program's order) -> what strict reports for it: the exec of the written copy killed at
# its exec stop; the loader's mmap of it refused; the CLONE_VM child's code.
EXEC_ROUTES = {
    "procfd": [WRITTEN],
    "opathfd": [WRITTEN],
    "script": [WRITTEN],
    "nested": [WRITTEN],
    "ldso": [("mmap", ("exec-written",))],
    "vfork": [WRITTEN],
    "thread": [WRITTEN],
    "clonevfork": [WRITTEN],
    "clonevm0": [WRITTEN],
    "cvmcode": [("mprotect", ("w-to-x", "anon-exec"))],
}


def test_written_program_exec_routes_are_killed_at_the_exec_event(build_program, parse_output, tmp_path):
    """The written copy exec'd through /proc/self/fd of a read-only and an
    O_PATH descriptor, as the interpreter of a script (and of a script's
    interpreter), from a vfork child, from a thread while another loops in
    mprotect, from clone(CLONE_VM|CLONE_VFORK) and clone(CLONE_VM) children
    (no exit signal), and through the dynamic loader; a CLONE_VM child's
    code made R-X: each ends killed or refused before it runs."""
    routes = list(EXEC_ROUTES)
    native = _native(build_program, parse_output, "attack_late_exec", *routes)
    assert sorted(native.ran) == sorted(f"{route}_call" for route in routes)
    traced = trace([str(build_program("attack_late_exec")), *routes], tmp_path, *STRICT)
    _blocked(traced, parse_output)
    assert shape(traced.events) == [found for route in routes for found in EXEC_ROUTES[route]]
    out = parse_output(traced.stdout)
    for route in ("vfork", "clonevfork", "clonevm0"):
        assert out.children[f"{route}_grandchild"] == "signal=SIGKILL"
    for route in ("procfd", "opathfd", "script", "nested", "thread"):
        assert out.children[f"{route}_child"] == "signal=SIGKILL"
    assert out.children["ldso_child"] == "exit=127"
    assert out.failed()["cvmcode_rx"] == "EACCES"


def test_exec_path_rewritten_by_a_thread_is_judged_by_the_image(build_program, parse_output, tmp_path):
    """A thread flips execve's path between /bin/true and the written copy:
    whatever the kernel read, the image at the exec stop is judged."""
    native = _native(build_program, parse_output, "attack_late_exec", "pathrace")
    assert any(label.startswith("pathrace") for label in native.ran)
    traced = trace([str(build_program("attack_late_exec")), "pathrace"], tmp_path, *STRICT, timeout=300)
    _blocked(traced, parse_output)
    assert set(shape(traced.events)) == {WRITTEN}


@pytest.mark.parametrize("mover", ["forkmid", "forkmidvm"])
def test_fork_beside_a_task_moving_code_takes_unknown_history(build_program, parse_output, tmp_path, mover):
    """A thread (or a CLONE_VM process) keeps moving written code over a
    clean read-only page of the program's file and mapping the clean page
    back, while the main thread forks. A child forked after the move's copy
    but before its exit was applied had the clean page in the model's copy,
    and the kernel's maps look the same (same range, same protection): its
    R-X was allowed and ran the code. A fork beside another task of its
    space now takes the child's whole space as unknown (written) history."""
    native = _native(build_program, parse_output, "attack_late_exec", mover)
    assert native.ran == [f"{mover}_call"]
    traced = trace([str(build_program("attack_late_exec")), mover], tmp_path, *STRICT, timeout=300)
    _blocked(traced, parse_output)
    assert set(shape(traced.events)) == {("mprotect", ("w-to-x", "anon-exec"))}
    assert parse_output(traced.stdout).count == 0
