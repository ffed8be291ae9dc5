"""Enforcement under the real tracer: every way around W^X the issue names is
seen, judged and stopped (the forbidden code never runs), benign programs run
untouched, mdwe in enforce mode ends programs the way the kernel's own MDWE
does, and the tracer fails closed."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from test_run_programs import NEEDS_JAVA, NEEDS_NODE, PYTHON, ROOT, TRAMPWATCH, shape, trace

STRICT = ("--policy", "strict", "--mode", "enforce")
# Every call judged by the tracer (W+X mmaps too), so each shows in the report.
STRICT_TRACED = (*STRICT, "--no-kernel-deny")

# program: the W^X events strict must stop, in order, as (syscall, verdict).
BYPASSES: dict[str, list[tuple[str, str]]] = {
    "wx_map": [("mmap", "denied")],
    "wx_protect": [("mprotect", "denied")],
    "w_to_x": [("mprotect", "denied")],
    "rx_to_rwx": [("mmap", "denied")],
    "anon_exec": [("mmap", "denied"), ("mprotect", "denied")],
    "pkey_wx": [("pkey_mprotect", "denied")],
    "mremap_written": [("mprotect", "denied")],
    "execstack": [("exec", "killed")],
    "execstack_mprotect": [("mprotect", "denied")],
    "execheap": [("mprotect", "denied")],
    "execmod": [("mprotect", "denied")],
    "dual_map_memfd": [("mmap", "denied")],
    "dual_map_tmpfile": [("mmap", "denied"), ("mmap", "denied")],
    "shm_exec": [("shmat", "denied"), ("shmat", "denied")],
    "shared_anon_alias": [("mmap", "denied")],
    "shared_fork_alias": [("mmap", "denied")],
    "exec_unlinked": [("mmap", "denied"), ("mmap", "denied"), ("exec", "killed")],
    "read_implies_exec": [("personality", "denied")],
    "rie_reexec": [("personality", "denied")],
    "foreign_write_procmem": [("openat", "denied")],
    "procmem_child": [("openat", "denied")],
    "poke_attempt": [("ptrace", "denied")],
    "int80_mprotect": [("mprotect", "denied")],
    "i386_noheader": [("exec", "killed")],
    "thread_second": [("mmap", "denied")],
    "fork_tree": [("mmap", "denied")],
    "own_seccomp": [("mmap", "denied")],
}
KILLED_AT_EXEC = {"execstack", "i386_noheader"}


@pytest.mark.parametrize("name", sorted(BYPASSES))
def test_strict_stops_every_bypass_before_its_code_runs(name, build_program, parse_output, tmp_path):
    native = parse_output(subprocess.run([str(build_program(name))], capture_output=True, text=True).stdout)
    assert native.ran or name in {"poke_attempt", "anon_exec"}, "the program must run its code natively"
    traced = trace([str(build_program(name))], tmp_path, *STRICT_TRACED)
    assert [(e["syscall"], e["verdict"]) for e in traced.events] == BYPASSES[name], shape(traced.events)
    for event in traced.events:
        if event["verdict"] == "denied":
            assert event["result"] == -errno.EACCES
    if name in KILLED_AT_EXEC:
        assert traced.returncode == 128 + signal.SIGKILL
        assert traced.stdout == ""
    else:
        assert parse_output(traced.stdout).ran == []


@pytest.mark.parametrize("name", ["wx_map", "thread_second", "fork_tree", "own_seccomp"])
def test_strict_refuses_wx_mmap_in_the_seccomp_filter(name, build_program, parse_output, tmp_path):
    traced = trace([str(build_program(name))], tmp_path, *STRICT)
    assert "refused in the kernel by the seccomp filter (rule deny-wx, EACCES)" in traced.stderr
    out = parse_output(traced.stdout)
    assert out.steps["wx_mmap"].errno == "EACCES" and out.ran == []
    # The kernel refused it: the tracer never stopped for it.
    assert not [e for e in traced.events if e["syscall"] == "mmap"]
    assert traced.returncode == 0


def test_a_policy_that_spares_someone_keeps_wx_mmap_in_the_tracer(build_program, parse_output, tmp_path):
    policy = tmp_path / "p.yaml"
    policy.write_text(
        "apiVersion: trampwatch.dev/v1\nkind: WXPolicy\nmetadata: {name: t}\nspec:\n"
        "  mode: enforce\n  defaultAction: deny\n  rules:\n"
        "  - {name: jit, match: {category: wx-map, exe: '*/node'}, action: allow}\n")
    traced = trace([str(build_program("wx_map"))], tmp_path, "--policy", str(policy))
    assert "seccomp filter" not in traced.stderr
    assert [(e["syscall"], e["verdict"], e["rule"]) for e in traced.events] == [("mmap", "denied", None)]
    assert parse_output(traced.stdout).failed() == {"wx_mmap": "EACCES"}


@pytest.mark.parametrize("name", ["benign_rw", "benign_dlopen", "benign_relro", "benign_threads"])
def test_strict_leaves_benign_programs_untouched(name, build_program, parse_output, tmp_path):
    native = subprocess.run([str(build_program(name))], capture_output=True, text=True)
    traced = trace([str(build_program(name))], tmp_path, *STRICT)
    assert traced.returncode == native.returncode == 0
    assert traced.events == []
    out, ref = parse_output(traced.stdout), parse_output(native.stdout)
    assert out.failed() == {} and set(out.steps) == set(ref.steps) and out.done == ref.done


def test_deny_uses_the_rules_errno_and_kill_kills_before_the_code_runs(build_program, parse_output,
                                                                       tmp_path):
    policy = tmp_path / "p.yaml"
    policy.write_text(
        "apiVersion: trampwatch.dev/v1\nkind: WXPolicy\nmetadata: {name: t}\nspec:\n"
        "  mode: enforce\n  defaultAction: allow\n  rules:\n"
        "  - {name: no-wx-map, match: {category: wx-map}, action: deny, errno: ENOMEM}\n"
        "  - {name: no-w-to-x, match: {category: w-to-x}, action: kill}\n")
    denied = trace([str(build_program("wx_map"))], tmp_path, "--policy", str(policy), "--no-kernel-deny")
    assert parse_output(denied.stdout).failed() == {"wx_mmap": "ENOMEM"}
    assert denied.events[0]["rule"] == "no-wx-map" and denied.events[0]["result"] == -errno.ENOMEM
    killed = trace([str(build_program("w_to_x"))], tmp_path, "--policy", str(policy))
    assert killed.returncode == 128 + signal.SIGKILL
    assert killed.events[0]["verdict"] == "killed" and killed.events[0]["rule"] == "no-w-to-x"
    assert parse_output(killed.stdout).ran == []


# --- mdwe in enforce mode against the kernel's own PR_SET_MDWE ---------------------

MDWE_PROGRAMS = sorted(set(BYPASSES) - KILLED_AT_EXEC - {"rie_reexec"}
                       | {"benign_rw", "benign_dlopen", "benign_threads"})


def _outcome(out) -> tuple[dict[str, str], list[str], int]:
    return out.failed(), sorted(out.ran), out.done


@pytest.mark.parametrize("name", MDWE_PROGRAMS)
def test_mdwe_enforce_ends_programs_like_the_kernel(name, build_program, parse_output, tmp_path):
    program = str(build_program(name))
    kernel = subprocess.run([str(build_program("mdwe_exec")), program], capture_output=True, text=True)
    traced = trace([program], tmp_path, "--policy", "mdwe", "--mode", "enforce")
    assert traced.returncode == shell_status(kernel.returncode)
    assert _outcome(parse_output(traced.stdout)) == _outcome(parse_output(kernel.stdout))


def shell_status(returncode: int) -> int:
    """A subprocess return code as a shell reports it (128+N for signal N)."""
    return 128 - returncode if returncode < 0 else returncode


def _kernel_and_tracer(argv: list[str], build_program, tmp_path: Path):
    kernel = subprocess.run([str(build_program("mdwe_exec")), *argv], capture_output=True, text=True,
                            timeout=120)
    traced = trace(argv, tmp_path, "--policy", "mdwe", "--mode", "enforce")
    return kernel, traced


def test_mdwe_enforce_matches_the_kernel_on_python_ctypes(build_program, tmp_path):
    kernel, traced = _kernel_and_tracer([PYTHON, str(ROOT / "examples" / "closure.py")], build_program,
                                        tmp_path)
    assert traced.returncode == kernel.returncode == 0
    assert traced.stdout == kernel.stdout == "callback returned 42\n"
    # libffi fell back to its memfd dual map, which MDWE allows.
    assert any("dual-map" in e["categories"] and e["verdict"] == "allowed" for e in traced.events)


@NEEDS_NODE
def test_mdwe_enforce_matches_the_kernel_on_node(build_program, tmp_path):
    kernel, traced = _kernel_and_tracer(["node", "-e", "console.log(1)"], build_program, tmp_path)
    assert kernel.returncode != 0
    assert traced.returncode == shell_status(kernel.returncode)
    assert any(e["verdict"] == "denied" for e in traced.events)


@NEEDS_JAVA
def test_mdwe_enforce_matches_the_kernel_on_java(build_program, tmp_path):
    kernel, traced = _kernel_and_tracer(["java", "-version"], build_program, tmp_path)
    assert kernel.returncode != 0
    assert traced.returncode == shell_status(kernel.returncode)
    assert "Failed to mark memory page as executable" in kernel.stderr + kernel.stdout
    assert "Failed to mark memory page as executable" in traced.stderr + traced.stdout


def test_kernel_mdwe_flag_applies_the_real_prctl(build_program, parse_output, tmp_path):
    traced = trace([str(build_program("wx_map"))], tmp_path, "--kernel-mdwe")
    assert parse_output(traced.stdout).failed() == {"wx_mmap": "EACCES"}
    assert traced.events[0]["verdict"] == "logged" and traced.events[0]["result"] == -errno.EACCES


# --- failing closed and signals ----------------------------------------------------


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(x) for x in path.read_text().split()] if path.exists() else []


def _wait_for_child(pid: int) -> int:
    """The child `pid` traces, once it is seized (other children, like a
    library's ldconfig run at import time, are not it)."""
    for _ in range(500):
        for kid in _children(pid):
            try:
                status = Path(f"/proc/{kid}/status").read_text()
            except OSError:
                continue
            if f"TracerPid:\t{pid}\n" in status:
                return kid
        time.sleep(0.02)
    raise AssertionError("the traced child never appeared")


def test_enforce_tree_dies_with_a_killed_tracer(tmp_path):
    tracer = subprocess.Popen([*TRAMPWATCH, "run", *STRICT, "--", "sleep", "60"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    child = _wait_for_child(tracer.pid)
    tracer.kill()
    tracer.wait()
    for _ in range(200):
        if not Path(f"/proc/{child}").exists() or "Z" in Path(f"/proc/{child}/stat").read_text().split()[2]:
            break
        time.sleep(0.02)
    else:
        raise AssertionError("the traced program outlived its tracer")


def test_sigterm_in_enforce_kills_the_tree_and_in_audit_lets_it_finish(tmp_path):
    enforce = subprocess.Popen([*TRAMPWATCH, "run", *STRICT, "--", "sleep", "60"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _wait_for_child(enforce.pid)
    enforce.send_signal(signal.SIGTERM)
    assert enforce.wait(timeout=30) == 128 + signal.SIGKILL
    audit = subprocess.Popen([*TRAMPWATCH, "run", "--", "sh", "-c", "sleep 1; echo finished; exit 3"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for_child(audit.pid)
    audit.send_signal(signal.SIGTERM)
    out, err = audit.communicate(timeout=30)
    assert audit.returncode == 3 and out == "finished\n"
    assert "trampwatch summary" in err


def test_ctrl_c_reaches_the_program(tmp_path):
    # os.write in the handler: SIGINT may land while print('ready') is still
    # inside the buffered writer, and print() is not reentrant.
    script = ("import os, signal, time\n"
              "signal.signal(signal.SIGINT, lambda *a: (os.write(1, b'got SIGINT\\n'), os._exit(5)))\n"
              "print('ready', flush=True)\ntime.sleep(30)\n")
    proc = subprocess.Popen([*TRAMPWATCH, "run", "--", PYTHON, "-c", script], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    assert proc.stdout.readline() == "ready\n"
    os.killpg(proc.pid, signal.SIGINT)  # what the terminal does on Ctrl-C
    out, err = proc.communicate(timeout=30)
    assert (out, proc.returncode) == ("got SIGINT\n", 5), err


def test_group_stops_blocked_signals_and_sigchld(build_program, parse_output, tmp_path):
    program = str(build_program("signals"))
    native = subprocess.run([program], capture_output=True, text=True, timeout=60)
    traced = trace([program], tmp_path, *STRICT)
    assert traced.returncode == native.returncode == 0
    assert _outcome(parse_output(traced.stdout)) == _outcome(parse_output(native.stdout))


def test_program_killed_mid_syscall_is_reported(tmp_path):
    proc = subprocess.Popen([*TRAMPWATCH, "run", "--json", str(tmp_path / "j"), "--", "sleep", "60"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    child = _wait_for_child(proc.pid)
    os.kill(child, signal.SIGKILL)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 128 + signal.SIGKILL
    assert "killed by SIGKILL" in err


def test_setuid_program_is_refused_for_an_unprivileged_tracer():
    with tempfile.TemporaryDirectory(dir="/var/tmp") as where:
        os.chmod(where, 0o755)
        target = Path(where) / "suid_true"
        target.write_bytes(Path("/bin/true").read_bytes())
        target.chmod(0o4755)
        done = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                               sys.executable, "-m", "tracer", "run", "--", str(target)],
                              capture_output=True, text=True, cwd=ROOT, timeout=60)
        assert done.returncode == 126, done.stderr
        assert "set-user/group-ID" in done.stderr and "Traceback" not in done.stderr


# --- load --------------------------------------------------------------------------


@pytest.mark.slow
def test_500_threads_flipping_protections_lose_no_event(build_program, parse_output, tmp_path):
    program = str(build_program("threads_flood"))
    traced = trace([program, "500", "2000"], tmp_path, timeout=900)
    assert traced.returncode == 0, traced.stderr
    made = parse_output(traced.stdout).count
    assert made == 500 * 2000
    # Every mprotect the program (and its libc) made was seen once: strace
    # counts the same run's calls independently.
    counted = subprocess.run(["strace", "-f", "-c", "-e", "trace=mprotect", "-o", str(tmp_path / "c"),
                              program, "500", "2000"], capture_output=True, text=True, timeout=900)
    assert counted.returncode == 0
    strace_calls = next(int(line.split()[3]) for line in (tmp_path / "c").read_text().splitlines()
                        if line.rstrip().endswith("mprotect"))
    assert traced.summary["calls_by_syscall"]["mprotect"] == strace_calls
    assert strace_calls >= made
