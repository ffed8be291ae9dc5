"""Verdicts are outcomes: `denied` only when the call returned the errno,
`killed` only when the process died by SIGKILL (or, under monitor, when the
kernel's kill record arrived), `not-enforced` with a reason when enforcement
was asked for and could not be given. Each outcome on the real kernel, with
compiled C programs, under `run` and `monitor`; the settling rules alone
from plain values."""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from test_run_programs import ROOT, TRAMPWATCH, trace

from tracer.abi import MAP_ANONYMOUS, MAP_PRIVATE
from tracer.actions.kernel_enforce import compile_kill_rules
from tracer.actions.outcomes import AUDIT, Evidence, KernelKillEnforcer, Plan, Proof, PtraceEnforcer, settle
from tracer.events import AttachEvent, ExitEvent, KernelKill, MapEntry, MemCall, MemReturn, ProcessInfo
from tracer.judgement import Judgement, Outcome
from tracer.pipeline import Judge, feed_ebpf
from tracer.policy.loader import load_policy_text
from tracer.policy.model import Action, Decision
from tracer.shadow import ANON_BACKING

# One policy, four programs: each rule asks for a different enforcement.
POLICY = """\
apiVersion: trampwatch.dev/v1
kind: WXPolicy
metadata: {name: outcomes}
spec:
  defaultAction: allow
  rules:
    - {name: kill-wx-map, match: {category: wx-map}, action: kill}
    - {name: deny-wx-protect, match: {category: wx-protect}, action: deny, errno: EACCES}
    - {name: kill-execmod-by-exe, match: {category: execmod, exe: '*/twexecmod'}, action: kill}
    - {name: kill-execstack, match: {category: execstack}, action: kill}
"""
# program: the name it runs as (comm), so monitor can select it.
PROGRAMS = {"wx_map": "twwxmap", "wx_protect": "twwxprot", "execmod": "twexecmod", "execstack": "twexecstk"}


@pytest.fixture
def programs(build_program, tmp_path) -> dict[str, Path]:
    """The four programs, copied under names of their own."""
    copies = {}
    for name, comm in PROGRAMS.items():
        copies[name] = tmp_path / comm
        shutil.copy(build_program(name), copies[name])
    return copies


@pytest.fixture
def policy(tmp_path) -> Path:
    path = tmp_path / "outcomes.yaml"
    path.write_text(POLICY)
    return path


def outcomes(events: list[dict]) -> list[tuple[str, str, str | None]]:
    return [(e["syscall"], e["verdict"], e["rule"]) for e in events]


# --- run (ptrace) ---------------------------------------------------------------------


def test_run_enforce_reports_what_was_done(programs, policy, parse_output, tmp_path):
    results = {}
    for name, path in programs.items():
        results[name] = trace([str(path)], tmp_path, "--policy", str(policy), "--mode", "enforce",
                              "--no-kernel-deny")
    killed = results["wx_map"]
    assert killed.returncode == 128 + signal.SIGKILL and parse_output(killed.stdout).ran == []
    assert outcomes(killed.events) == [("mmap", "killed", "kill-wx-map")]
    assert killed.events[0]["reason"] is None
    denied = results["wx_protect"]
    assert parse_output(denied.stdout).failed() == {"rwx_mprotect": "EACCES"}
    assert outcomes(denied.events) == [("mprotect", "denied", "deny-wx-protect")]
    assert denied.events[0]["result"] == -errno.EACCES
    # ptrace sees the process: a rule narrowed by exe is enforced.
    by_exe = results["execmod"]
    assert by_exe.returncode == 128 + signal.SIGKILL
    assert outcomes(by_exe.events) == [("mprotect", "killed", "kill-execmod-by-exe")]
    at_exec = results["execstack"]
    assert at_exec.returncode == 128 + signal.SIGKILL and at_exec.stdout == ""
    assert outcomes(at_exec.events) == [("exec", "killed", "kill-execstack")]
    assert "W^X killed: twexecstk" in at_exec.stderr


def test_run_audit_reports_would_deny_and_would_kill(programs, policy, parse_output, tmp_path):
    killed = trace([str(programs["wx_map"])], tmp_path, "--policy", str(policy))
    assert killed.returncode == 0 and parse_output(killed.stdout).ran == ["wx_call"]
    assert outcomes(killed.events) == [("mmap", "would-kill", "kill-wx-map")]
    denied = trace([str(programs["wx_protect"])], tmp_path, "--policy", str(policy))
    assert outcomes(denied.events) == [("mprotect", "would-deny", "deny-wx-protect")]
    assert denied.events[0]["result"] == 0
    assert "W^X would-deny:" in denied.stderr


def test_run_allowed_and_logged(build_program, tmp_path):
    logged = trace([str(build_program("wx_map"))], tmp_path, "--mode", "enforce")
    assert outcomes(logged.events) == [("mmap", "logged", "log-wx")]
    allowed = trace([str(build_program("benign_rw"))], tmp_path, "--all-calls", "--mode", "enforce")
    assert allowed.events and {e["verdict"] for e in allowed.events} == {"allowed"}


TRAMPFD_DENY = """\
apiVersion: trampwatch.dev/v1
kind: WXPolicy
metadata: {name: no-trampfd}
spec:
  mode: enforce
  defaultAction: allow
  rules:
    - {name: deny-trampfd, match: {category: trampfd}, action: deny, errno: EPERM}
"""


def test_run_says_not_enforced_for_trampfd_the_emulator_already_served(tmp_path):
    from test_trampfd_process import invoke

    policy = tmp_path / "p.yaml"
    policy.write_text(TRAMPFD_DENY)
    run = invoke(tmp_path, "closure", "trampfd", options=("--policy", str(policy)))
    assert run.returncode == 0, run.stderr
    assert run.out.ints("closure") == [4002]  # the trampoline was served: nothing was refused
    assert run.events and {e["verdict"] for e in run.events} == {"not-enforced"}
    assert all("served by the emulator" in e["reason"] for e in run.events)


# --- monitor (eBPF) ------------------------------------------------------------------------


def _monitor(tmp_path: Path, *args: str) -> tuple[subprocess.Popen, Path]:
    json_path = tmp_path / "monitor.jsonl"
    proc = subprocess.Popen([*TRAMPWATCH, "monitor", "--json", str(json_path), "-o", str(tmp_path / "m.txt"),
                             *args], stderr=subprocess.PIPE, text=True, cwd=ROOT)
    before = []
    # Readiness: "monitoring" is printed once the programs are attached (notes come first).
    while "monitoring" not in (line := proc.stderr.readline()):
        before.append(line)
        if not line:
            proc.kill()
            pytest.fail("".join(before))
    proc.notes = "".join(before)
    return proc, json_path


def _stop(proc: subprocess.Popen, json_path: Path) -> tuple[list[dict], str]:
    proc.send_signal(signal.SIGINT)  # the monitor drains what the kernel sent before it stops
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    return [json.loads(line) for line in json_path.read_text().splitlines()], proc.notes + stderr


@pytest.mark.ebpf
def test_monitor_enforce_reports_what_the_kernel_did(programs, policy, parse_output, tmp_path):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    comms = [arg for comm in PROGRAMS.values() for arg in ("--comm", comm)]
    proc, json_path = _monitor(tmp_path, "--policy", str(policy), "--mode", "enforce", *comms,
                               "--metrics", f"127.0.0.1:{port}")
    try:
        done = {name: subprocess.run([str(path)], capture_output=True, text=True)
                for name, path in programs.items()}
        metrics = ""
        for _ in range(100):  # until the judge has read every record (a guard, not a timing)
            metrics = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
            if "trampwatch_events_total 4.0" in metrics:
                break
            time.sleep(0.1)
    finally:
        seen, stderr = _stop(proc, json_path)
    events = {e["comm"]: e for e in seen if e["type"] == "event"}
    assert set(events) == set(PROGRAMS.values()), seen

    # A kill rule the kernel enforces: its record arrived, the process died before its code ran.
    assert done["wx_map"].returncode == -signal.SIGKILL and parse_output(done["wx_map"].stdout).ran == []
    killed = events["twwxmap"]
    assert (killed["verdict"], killed["rule"], killed["reason"]) == ("killed", "kill-wx-map", None)
    # A deny rule: eBPF cannot refuse here, the kernel killed instead, and says so.
    assert done["wx_protect"].returncode == -signal.SIGKILL
    fallback = events["twwxprot"]
    assert (fallback["verdict"], fallback["rule"]) == ("killed", "deny-wx-protect")
    assert "eBPF cannot refuse" in fallback["reason"]
    # A kill rule narrowed by exe: not compiled for the kernel, the program ran on.
    assert done["execmod"].returncode == 0 and parse_output(done["execmod"].stdout).ran
    narrowed = events["twexecmod"]
    assert (narrowed["verdict"], narrowed["rule"]) == ("not-enforced", "kill-execmod-by-exe")
    assert "matches on the process" in narrowed["reason"]
    # An exec: monitor kills only at memory syscalls.
    assert done["execstack"].returncode == 0
    at_exec = events["twexecstk"]
    assert (at_exec["syscall"], at_exec["verdict"]) == ("exec", "not-enforced")
    assert "not at exec" in at_exec["reason"]

    assert "trampwatch_kills_total 2.0" in metrics
    assert 'category="wx-map",rule="kill-wx-map",verdict="killed"} 1.0' in metrics
    assert 'category="execmod",rule="kill-execmod-by-exe",verdict="not-enforced"} 1.0' in metrics
    text = (tmp_path / "m.txt").read_text()
    assert "W^X not-enforced: twexecmod" in text and "| reason=matches on the process" in text
    assert "not enforced because" in text  # the summary counts the reasons
    assert "rule kill-execmod-by-exe: matches on the process" in stderr


@pytest.mark.ebpf
def test_monitor_audit_reports_would_kill(programs, policy, parse_output, tmp_path):
    proc, json_path = _monitor(tmp_path, "--policy", str(policy), "--comm", "twwxmap")
    try:
        done = subprocess.run([str(programs["wx_map"])], capture_output=True, text=True)
    finally:
        seen, _ = _stop(proc, json_path)
    assert done.returncode == 0 and parse_output(done.stdout).ran == ["wx_call"]
    assert outcomes([e for e in seen if e["type"] == "event"]) == [("mmap", "would-kill", "kill-wx-map")]


# --- the settling rules -------------------------------------------------------------------------


def judged(action: Action, syscall: str = "mmap", errno_value: int | None = None) -> Judgement:
    decision = Decision(action, "r", errno_value, ())
    return Judgement(ts=0.0, source="ptrace", pid=1, tid=1, exe="", comm="", uid=0, syscall=syscall,
                     arch="x86_64", args=(), result=None, addr=0, length=0, prot=0, prev_prot=None,
                     backing=ANON_BACKING, categories=(), decision=decision, outcome=Outcome.ALLOWED,
                     caller=None)


def killed_status(sig: int) -> int:
    """A wait status for death by signal `sig`, from a real child."""
    child = os.fork()
    if child == 0:
        os.kill(os.getpid(), sig)
        os._exit(0)
    return os.waitpid(child, 0)[1]


def test_a_refusal_is_denied_only_when_the_call_returned_its_errno():
    deny = judged(Action.DENY, errno_value=errno.EACCES)
    plan = PtraceEnforcer().plan(deny)
    assert plan == Plan(Proof.RESULT, Outcome.DENIED, errno=errno.EACCES)
    assert settle(plan, deny, Evidence()) is None
    assert settle(plan, deny, Evidence(result=-errno.EACCES)) == (Outcome.DENIED, None)
    assert settle(plan, deny, Evidence(result=0x7F0000)) == (
        Outcome.NOT_ENFORCED, "the call returned 0x7f0000, not -EACCES")
    assert settle(plan, deny, Evidence(gone=True))[0] is Outcome.NOT_ENFORCED


def test_a_kill_is_killed_only_when_the_process_died_by_sigkill():
    kill = judged(Action.KILL)
    plan = PtraceEnforcer().plan(kill)
    assert plan.proof is Proof.DEATH
    assert settle(plan, kill, Evidence(gone=True)) is None
    assert settle(plan, kill, Evidence(status=killed_status(signal.SIGKILL))) == (Outcome.KILLED, None)
    assert settle(plan, kill, Evidence(status=killed_status(signal.SIGTERM))) == (
        Outcome.NOT_ENFORCED, "the process ended otherwise (signal SIGTERM)")
    assert settle(plan, kill, Evidence(ended=True))[0] is Outcome.NOT_ENFORCED
    exec_deny = judged(Action.DENY, syscall="exec", errno_value=errno.EACCES)
    assert PtraceEnforcer().plan(exec_deny).proof is Proof.DEATH


def test_audit_never_enforces():
    for action, outcome in ((Action.ALLOW, Outcome.ALLOWED), (Action.LOG, Outcome.LOGGED),
                            (Action.DENY, Outcome.WOULD_DENY), (Action.KILL, Outcome.WOULD_KILL)):
        judgement = judged(action)
        assert settle(AUDIT.plan(judgement), judgement, Evidence()) == (outcome, None)


# --- the Judge, from plain event lists ----------------------------------------------------------


class Collected:
    """An output that keeps what it is given."""

    def __init__(self) -> None:
        self.judged: list[Judgement] = []

    def emit(self, judgement: Judgement) -> None:
        self.judged.append(judgement)

    def lost(self, event) -> None:
        pass

    def close(self, stats) -> None:
        pass


MONITOR_POLICY = POLICY.replace("metadata: {name: outcomes}", "metadata: {name: monitor}")
EXE = MapEntry(0x400000, 0x401000, 5, False, 0, 0, 11, "/usr/bin/prog")


def monitor_judge(out: Collected) -> Judge:
    policy = load_policy_text(MONITOR_POLICY, "p.yaml")
    enforcer = KernelKillEnforcer(compile_kill_rules(policy))
    judge = Judge(policy, "enforce", [out], source="ebpf", enforcer=enforcer)
    judge.event(AttachEvent(0.0, 7, ProcessInfo("/usr/bin/prog", "prog", 0), (EXE,), 0))
    return judge


def rwx_mmap(tid: int = 7) -> MemCall:
    return MemCall(1.0, 7, tid, "mmap", "x86_64", (0, 4096, 7, MAP_PRIVATE | MAP_ANONYMOUS, (1 << 64) - 1, 0))


def test_judge_reports_killed_only_with_the_kernels_kill_record():
    out = Collected()
    judge = monitor_judge(out)
    killed = rwx_mmap()
    feed_ebpf(judge, [MemReturn(killed, 0x7F0000000000, None, KernelKill(1.0, 7, 7, "kill-wx-map"))])
    spared = rwx_mmap()
    feed_ebpf(judge, [MemReturn(spared, 0x7F0000010000)])
    assert [(j.rule, j.outcome) for j in out.judged] == [
        ("kill-wx-map", Outcome.KILLED), ("kill-wx-map", Outcome.NOT_ENFORCED)]
    # Without the record, the reason is what the compiler said the kernel rules miss.
    assert out.judged[0].reason is None and out.judged[1].reason.startswith("wx-map: exact for mmap")


def test_judge_reports_a_kernel_kill_the_policy_did_not_ask_for():
    out = Collected()
    judge = monitor_judge(out)
    plain = MemCall(1.0, 7, 7, "mmap", "x86_64", (0, 4096, 3, MAP_PRIVATE | MAP_ANONYMOUS, (1 << 64) - 1, 0))
    feed_ebpf(judge, [MemReturn(plain, 0x7F0000000000, None, KernelKill(1.0, 7, 7, "other-rule"))])
    (judgement,) = out.judged
    assert (judgement.categories, judgement.outcome) == ((), Outcome.KILLED)
    assert judgement.reason == "kernel kill rule other-rule fired (it judges from the arguments alone)"


def test_judge_holds_a_kill_until_the_process_is_seen_to_die():
    out = Collected()
    policy = load_policy_text(MONITOR_POLICY, "p.yaml")
    judge = Judge(policy, "enforce", [out], source="ptrace")
    judge.event(AttachEvent(0.0, 7, ProcessInfo("/usr/bin/prog", "prog", 0), (EXE,), 0))
    call = rwx_mmap()
    entry = judge.call(call, None)
    assert entry.plan.proof is Proof.DEATH
    judge.call_killed(entry)
    judge.event(ExitEvent(2.0, 7, 7, None))
    assert out.judged == []
    judge.event(ExitEvent(2.0, 7, 7, killed_status(signal.SIGKILL)))
    assert [(j.outcome, j.result) for j in out.judged] == [(Outcome.KILLED, None)]


@pytest.mark.ebpf
def test_monitor_enforce_kills_prctl_set_mm_in_the_kernel(build_program, parse_output, tmp_path):
    """strict refuses what the tracer cannot see through (opaque); of those,
    the kernel side sends prctl(PR_SET_MM) (it moves the program break the
    model follows: tests/test_attack.py), so under monitor --mode enforce a
    kill rule stops it at entry, on either ABI, and the report says killed."""
    program = str(build_program("attack_prctl_brk"))
    native = parse_output(subprocess.run([program], capture_output=True, text=True, timeout=120).stdout)
    if "move_prctl" in native.failed():
        pytest.skip(f"prctl(PR_SET_MM_MAP) is refused here: {native.failed()['move_prctl']}")
    proc, json_path = _monitor(tmp_path, "--policy", "strict", "--mode", "enforce",
                               "--comm", Path(program).name[:15])
    try:
        done = [subprocess.run([program, *abi], capture_output=True, text=True, timeout=120)
                for abi in ([], ["m32"])]
    finally:
        seen, stderr = _stop(proc, json_path)
    for run in done:
        out = parse_output(run.stdout)
        assert run.returncode == -signal.SIGKILL, run.stdout
        assert out.ran == [] and "move_prctl" not in out.steps, run.stdout
    events = [e for e in seen if e["type"] == "event"]
    assert [(e["syscall"], e["categories"], e["verdict"], e["rule"]) for e in events] == [
        ("prctl", ["opaque"], "killed", "refuse-opaque")] * 2
    assert all("eBPF cannot refuse" in e["reason"] for e in events)
    assert "rule refuse-opaque: opaque: prctl(PR_SET_MM) only" in stderr
