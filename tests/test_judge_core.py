"""The judging core from plain event lists, no tracee: one Subject per judged
thing, classify the only source of categories, facts_of the one builder of
the policy's facts, the Judge's stages counting what they dropped (and the
run summary and JSON stats showing it), the emulators' outcomes, the
ptrace replies, and the one ptrace wrapper's error translation (the real
kernel answers)."""

from __future__ import annotations

import errno
import gc
import io
import json
import os
import signal
import subprocess
import weakref

import pytest

from tracer.abi import PROT_EXEC, PROT_READ, PROT_WRITE, PTRACE_INTERRUPT, PTRACE_SEIZE
from tracer.actions.outcomes import (
    AUDIT,
    KILL_REPLY,
    Evidence,
    Plan,
    Proof,
    PtraceEnforcer,
    Settler,
    ptrace_reply,
)
from tracer.actions.seccomp_deny import CLONE3, WX_MMAP, seccomp_enforcement
from tracer.categories import Category as C
from tracer.classify import classify
from tracer.collector import cycle_collector_paused
from tracer.errors import AccessDenied, NoSuchProcess
from tracer.events import (
    EXEC_UNRESOLVED,
    AttachEvent,
    CallsRepeated,
    ClosureEvent,
    ExecEvent,
    ExitEvent,
    ForkEvent,
    MapEntry,
    MemCall,
    MemReturn,
    ProcessInfo,
    TrampfdEvent,
    Unresolved,
)
from tracer.judgement import Judgement, Outcome
from tracer.outputs.jsonl import JsonLinesOutput
from tracer.outputs.summary import Summary
from tracer.pipeline import (
    MAPS_UNREADABLE,
    OUTPUT_FAILED,
    REPEATS_UNSEEN,
    UNKNOWN_PROCESS_CALL,
    Judge,
    PtraceSink,
    Stage,
)
from tracer.policy.facts import facts_of
from tracer.policy.loader import load_policy_text, resolve_policy
from tracer.policy.model import Facts
from tracer.shadow import ANON_BACKING, Change, ShadowModel, backing_from_entry
from tracer.sources.procfs import read_maps
from tracer.sources.ptrace_source import ALLOW_WITH_RESULT, CallReply, _fast_ptrace
from tracer.sources.seccomp_filter import CLONE3_RULE
from tracer.subject import (
    HOLDS_TRAMPFD,
    TRAMPFD_OBJECT,
    Kind,
    call_subject,
    closure_subject,
    exec_subject,
    file_subject,
    region_subject,
    trampfd_subject,
)

R, W, X = PROT_READ, PROT_WRITE, PROT_EXEC
PID = 7
INFO = ProcessInfo("/usr/bin/prog", "prog", 1000)
EXE = MapEntry(0x400000, 0x401000, R | X, False, 0, 8, 11, "/usr/bin/prog")
ANON = MapEntry(0x7F0000000000, 0x7F0000001000, R | W, False, 0, 0, 0, "")
STACK = MapEntry(0x7FFF0000, 0x7FFF8000, R | W, False, 0, 0, 0, "[stack]")

POLICY = """\
apiVersion: trampwatch.dev/v1
kind: WXPolicy
metadata: {name: core}
spec:
  defaultAction: log
  rules:
    - {name: deny-trampfd, match: {category: trampfd}, action: deny, errno: EPERM}
"""


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


def judge(*outputs, source: str = "ptrace", mode: str = "audit") -> Judge:
    policy = load_policy_text(POLICY, "core.yaml")
    found = Judge(policy, mode, list(outputs), source=source)
    found.event(AttachEvent(0.0, PID, INFO, (EXE, ANON, STACK), 0))
    return found


def mprotect(prot: int, addr: int = ANON.start, pid: int = PID) -> MemCall:
    return MemCall(1.0, pid, pid, "mprotect", "x86_64", (addr, 0x1000, prot))


def feed(j: Judge, *calls: MemCall) -> None:
    for call in calls:
        j.event(MemReturn(call, 0, j.call(call, None)))


def gone_pid() -> int:
    """The pid of a process that has exited and been reaped."""
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


# --- one subject, one classify, one facts builder --------------------------------------------


def test_every_kind_of_subject_is_classified_by_classify():
    model = ShadowModel()
    model.seed(PID, INFO, (EXE, ANON, STACK), 0)
    change = model.plan(mprotect(R | X))
    assert classify(call_subject(PID, "mprotect", change, INFO), model) == (C.W_TO_X, C.ANON_EXEC)
    # A call the model could not plan has no categories.
    assert classify(call_subject(PID, "mprotect", None, INFO), model) == ()
    stack = MapEntry(STACK.start, STACK.end, R | W | X, False, 0, 0, 0, "[stack]")
    assert classify(exec_subject(ExecEvent(0.0, PID, PID, INFO, (EXE, stack), True, 0)), model) == (
        C.EXECSTACK,)
    create = TrampfdEvent(0.0, PID, PID, "create", 1)
    assert classify(trampfd_subject(create, INFO)) == (C.TRAMPFD,)
    refused = ClosureEvent(0.0, PID, PID, "refused", "emulate", 0x1000)
    served = ClosureEvent(0.0, PID, PID, "invoke", "emulate", 0x1000)
    assert classify(closure_subject(refused, INFO)) == (C.W_TO_X,)
    assert classify(closure_subject(served, INFO)) == (C.TRAMPFD,)
    assert classify(file_subject("/lib/x.so", ("textrel", "execstack", "closure-api"))) == (
        C.EXECMOD, C.EXECSTACK)
    assert classify(file_subject("/lib/y.so", ("memory-api", "no-gnu-stack"))) == ()


def test_a_regions_traits_are_classified_not_edited_afterwards():
    model = ShadowModel()
    model.seed(PID, INFO, (EXE,), 0)
    memfd = MapEntry(0x10000, 0x11000, R | X, False, 0, 1, 5, "/memfd:[trampfd] (deleted)")
    backing = backing_from_entry(memfd)
    change = Change(syscall="mmap", kind="map", start=memfd.start, end=memfd.end, prot=memfd.prot,
                    backing=backing, shared=False, new_mapping=True)
    plain = region_subject(PID, INFO, change, "mmap", backing, memfd.prot)
    assert classify(plain, model) == (C.EXEC_UNLINKED,)
    # Being unlinked is what a trampfd object is: not a hazard.
    assert classify(plain._replace(traits=(TRAMPFD_OBJECT,)), model) == (C.TRAMPFD,)
    assert classify(plain._replace(traits=(HOLDS_TRAMPFD,)), model) == (C.EXEC_UNLINKED, C.TRAMPFD)


def test_facts_of_builds_what_the_policy_matches_for_each_kind():
    model = ShadowModel()
    model.seed(PID, INFO, (EXE, ANON, STACK), 0)
    change = model.plan(mprotect(R | W | X))
    subject = call_subject(PID, "mprotect", change, INFO)
    assert subject.kind is Kind.CALL
    assert facts_of(subject, (C.WX_PROTECT,), "/lib/libffi.so.8") == Facts(
        (C.WX_PROTECT,), "mprotect", "/usr/bin/prog", "prog", 1000, "anon", None, "/lib/libffi.so.8",
        frozenset({"read", "write", "exec"}), frozenset({"exec"}), False)
    event = ExecEvent(0.0, PID, PID, INFO, (EXE,), True, 0)
    assert facts_of(exec_subject(event), (C.EXECSTACK,)) == Facts(
        (C.EXECSTACK,), "exec", "/usr/bin/prog", "prog", 1000, "stack", "/usr/bin/prog", "/usr/bin/prog",
        frozenset(), frozenset(), True)
    mapped = trampfd_subject(TrampfdEvent(0.0, PID, PID, "map", 1, addr=0x1000, length=0x1000), INFO)
    assert facts_of(mapped, (C.TRAMPFD,)) == Facts(
        (C.TRAMPFD,), "trampfd", "/usr/bin/prog", "prog", 1000, "special", "[trampfd]", None,
        frozenset(), frozenset(), True)
    assert facts_of(file_subject("/bin/x", ("execstack",)), (C.EXECSTACK,)) == Facts(
        (C.EXECSTACK,), "exec", "/bin/x", "", -1, "file", "/bin/x", "/bin/x", frozenset(), frozenset(), True)


# --- the stages and what they dropped --------------------------------------------------------


def test_each_stage_counts_what_it_dropped_and_why():
    out = Collected()
    j = judge(out)
    # A call of a process no event introduced: the model cannot judge it.
    feed(j, mprotect(R | X, pid=4242))
    # Repeats of a call the judge never saw.
    j.event(CallsRepeated(2.0, PID, PID, key=9, count=5))
    # An exec the source could not resolve.
    j.event(Unresolved(3.0, PID, EXEC_UNRESOLVED))
    # A fork child whose maps are gone before they could be read (the real /proc says so).
    j.event(ForkEvent(4.0, PID, PID, gone_pid(), False, False))
    assert +j.stats.dropped == {
        (Stage.MODEL.value, UNKNOWN_PROCESS_CALL): 1,
        (Stage.DECIDE.value, REPEATS_UNSEEN): 5,
        (Stage.SOURCE.value, EXEC_UNRESOLVED): 1,
        (Stage.MODEL.value, MAPS_UNREADABLE): 1,
    }
    # What was judged is unaffected, and a call it could judge still is.
    feed(j, mprotect(R | X))
    assert [(jd.syscall, jd.categories) for jd in out.judged] == [("mprotect", (C.W_TO_X, C.ANON_EXEC))]


def test_an_ebpf_fed_judge_never_reads_proc_for_gaps():
    j = judge(source="ebpf")
    assert j.gaps is None
    j.event(ForkEvent(1.0, PID, PID, gone_pid(), False, False))
    assert not +j.stats.dropped


def test_the_summary_and_the_json_stats_show_what_was_dropped():
    text, lines = io.StringIO(), io.StringIO()
    j = judge(Summary(text), JsonLinesOutput(lines))
    j.event(Unresolved(1.0, PID, EXEC_UNRESOLVED))
    j.event(ForkEvent(2.0, PID, PID, gone_pid(), False, False))
    j.finish(0)
    assert f"dropped: 1 by model ({MAPS_UNREADABLE}), 1 by source ({EXEC_UNRESOLVED})" in text.getvalue()
    summary = json.loads(lines.getvalue().splitlines()[-1])
    assert summary["type"] == "summary"
    # Every reason, 0 or not: the record's shape does not depend on what happened.
    assert summary["dropped"] == {"source": {EXEC_UNRESOLVED: 1},
                                  "model": {MAPS_UNREADABLE: 1, UNKNOWN_PROCESS_CALL: 0},
                                  "decide": {REPEATS_UNSEEN: 0},
                                  "emit": {OUTPUT_FAILED: 0}}


def test_an_output_whose_reader_is_gone_is_counted_and_the_others_go_on():
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader went away (`trampwatch run --json - ... | head -1`)
    closed = os.fdopen(write_end, "w")
    out, text = Collected(), io.StringIO()
    j = judge(JsonLinesOutput(closed), out, Summary(text))
    feed(j, mprotect(R | X), mprotect(R | W | X))  # the kernel refuses the write: EPIPE
    assert len(out.judged) == 2 and j.stats.judged == 2
    assert j.stats.dropped[(Stage.EMIT.value, OUTPUT_FAILED)] == 2
    j.finish(0)
    assert f"dropped: 2 by emit ({OUTPUT_FAILED})" in text.getvalue()
    with pytest.raises(OSError):
        closed.close()  # what it still buffers cannot be written either


def test_nothing_dropped_shows_no_drop_line():
    text = io.StringIO()
    j = judge(Summary(text))
    feed(j, mprotect(R | X))
    j.finish(0)
    assert "dropped" not in text.getvalue()


def test_the_model_stage_fills_what_it_never_saw_from_the_real_maps():
    # A real process, stopped: the kernel's maps are the oracle.
    child = subprocess.Popen(["sleep", "30"])
    try:
        os.kill(child.pid, signal.SIGSTOP)
        maps = read_maps(child.pid)
        stack = next(m for m in maps if m.path == "[stack]")
        out = Collected()
        j = Judge(load_policy_text(POLICY, "core.yaml"), "audit", [out], source="ptrace")
        # Seeded without its stack: the model never saw it.
        j.event(AttachEvent(0.0, child.pid, INFO, tuple(m for m in maps if m is not stack), 0))
        page = stack.end - 0x1000
        top = MemCall(1.0, child.pid, child.pid, "mprotect", "x86_64", (page, 0x1000, R | W | X))
        assert not j.model.covers(child.pid, page, stack.end)
        j.event(MemReturn(top, 0, j.call(top, lambda addr, size: b"")))
        assert j.model.covers(child.pid, page, stack.end)
        # Read at the stop, with unknown (possibly written) history: w-to-x, not just wx-protect.
        assert [jd.categories for jd in out.judged] == [(C.WX_PROTECT, C.W_TO_X, C.EXECSTACK)]
        assert out.judged[0].backing.kind == "stack" and not +j.stats.dropped
    finally:
        child.kill()
        child.wait()


# --- one pairing of a call's entry and return: the source's -----------------------------------


def test_a_return_is_settled_by_the_entry_the_source_hands_back():
    out = Collected()
    j = judge(out)
    # Two calls of one thread in flight at once cannot happen, so a pairing by
    # thread would mix them up: the entry the source held says which is which.
    first, second = mprotect(R | X), mprotect(R | W | X, addr=STACK.start)
    held = [j.call(first, None), j.call(second, None)]
    j.event(MemReturn(second, -errno.ENOMEM, held[1]))
    j.event(MemReturn(first, 0, held[0]))
    assert [(jd.addr, jd.result) for jd in out.judged] == [(STACK.start, -errno.ENOMEM), (ANON.start, 0)]


def test_a_thread_that_dies_inside_a_call_settles_it_by_its_exit():
    out = Collected()
    policy = load_policy_text(POLICY.replace("defaultAction: log", "defaultAction: deny\n  errno: EACCES"),
                              "core.yaml")
    j = Judge(policy, "enforce", [out], source="ptrace")
    j.event(AttachEvent(0.0, PID, INFO, (EXE, ANON, STACK), 0))
    refused = mprotect(R | X)
    entry = j.call(refused, None)
    assert entry.plan.proof is Proof.RESULT
    j.event(ExitEvent(2.0, PID, PID + 1, None))  # another thread: not this call's end
    assert out.judged == []
    j.event(ExitEvent(2.0, PID, PID, None, entry))
    assert [(jd.outcome, jd.reason) for jd in out.judged] == [
        (Outcome.NOT_ENFORCED, "the thread was gone before the refused call returned")]
    j.finish(0)
    assert len(out.judged) == 1


def test_a_call_still_in_flight_when_the_run_ends_is_reported():
    out = Collected()
    j = judge(out)
    j.call(mprotect(R | X), None)
    assert out.judged == []
    j.finish(None)
    assert [(jd.categories, jd.outcome, jd.result) for jd in out.judged] == [
        ((C.W_TO_X, C.ANON_EXEC), Outcome.LOGGED, None)]


# --- emulators' outcomes and ptrace replies --------------------------------------------------


def test_the_settler_holds_a_kill_until_the_process_is_seen_to_die():
    out = Collected()
    settler = Settler(PtraceEnforcer(), out.emit)
    j = judge(out, mode="enforce")
    feed(j, mprotect(R | X))
    kill = evolve_action(out.judged.pop(), "kill")
    plan = settler.plan(kill)
    assert plan.proof is Proof.DEATH
    settler.settle(kill, plan, Evidence())
    settler.died(PID + 1, 0)
    assert out.judged == []
    settler.died(PID, signal.SIGKILL)  # the wait status of a death by SIGKILL
    assert [(jd.outcome, jd.reason) for jd in out.judged] == [(Outcome.KILLED, None)]
    # What never settles is reported when the run ends, with why it was not enforced.
    settler.settle(kill, plan, Evidence())
    settler.flush()
    assert out.judged[-1].outcome is Outcome.NOT_ENFORCED
    assert out.judged[-1].reason == "trampwatch stopped before the process was seen to die"


def evolve_action(judgement: Judgement, action: str) -> Judgement:
    """The same judgement as if the policy had decided `action`."""
    decision = judgement.decision
    return judgement._replace(decision=decision._replace(action=type(decision.action)(action)))


def test_emulator_events_are_judged_with_what_the_emulator_did():
    out = Collected()
    j = judge(out, mode="enforce")
    j.trace_trampolines = True
    j.event(TrampfdEvent(1.0, PID, PID, "create", 1))
    j.event(ClosureEvent(2.0, PID, PID, "invoke", "emulate", 0x7F0000000000, 0x401000, 0x10))
    j.event(ClosureEvent(3.0, PID, PID, "refused", "emulate", 0x7F0000000000))
    got = [(jd.syscall, jd.categories, jd.action.value, jd.outcome) for jd in out.judged]
    assert got == [
        ("trampfd-create", (C.TRAMPFD,), "deny", Outcome.NOT_ENFORCED),
        ("closure-invoke", (C.TRAMPFD,), "deny", Outcome.NOT_ENFORCED),
        ("closure-refused", (C.W_TO_X,), "deny", Outcome.DENIED),
    ]
    assert out.judged[2].reason == "the jump was not run: the program got the SIGSEGV the kernel delivers"
    assert j.stats.closures == {"invoke": 1, "refused": 1}


def test_a_refused_jump_is_denied_even_in_audit():
    out = Collected()
    j = judge(out)
    j.event(ClosureEvent(1.0, PID, PID, "refused", "emulate", 0x7F0000000000))
    assert [jd.outcome for jd in out.judged] == [Outcome.DENIED]
    j.event(TrampfdEvent(2.0, PID, PID, "create", 1))
    assert out.judged[-1].outcome is Outcome.WOULD_DENY


def test_plans_become_ptrace_replies():
    assert ptrace_reply(None) is ALLOW_WITH_RESULT
    assert ptrace_reply(Plan(Proof.NONE, Outcome.LOGGED)) is ALLOW_WITH_RESULT
    assert ptrace_reply(Plan(Proof.DEATH, Outcome.KILLED)) == CallReply(kill=True) == KILL_REPLY
    assert ptrace_reply(Plan(Proof.RESULT, Outcome.DENIED, errno=errno.EACCES)) == CallReply(
        deny_errno=errno.EACCES)


def test_the_ptrace_sink_refuses_and_kills_by_the_enforcers_plan():
    policy = load_policy_text(POLICY.replace("defaultAction: log", "defaultAction: deny\n  errno: EACCES"),
                              "core.yaml")
    out = Collected()
    j = Judge(policy, "enforce", [out], source="ptrace", enforcer=PtraceEnforcer())
    j.event(AttachEvent(0.0, PID, INFO, (EXE, ANON, STACK), 0))
    sink = PtraceSink(j)
    refused = mprotect(R | X)
    reply, entry = sink.on_call(refused, lambda addr, size: b"")
    assert reply == CallReply(deny_errno=errno.EACCES)
    j.event(MemReturn(refused, -errno.EACCES, entry))
    allowed = mprotect(R)
    reply, entry = sink.on_call(allowed, lambda addr, size: b"")
    # Nothing to report, a private range held whole: may be taken as done at entry.
    assert reply == CallReply(settled=True) and entry.judgement is None
    allowed_exec = mprotect(R | X, addr=EXE.start)
    reply, entry = sink.on_call(allowed_exec, lambda addr, size: b"")
    assert reply is ALLOW_WITH_RESULT and entry.judgement is None
    assert [(jd.categories, jd.outcome) for jd in out.judged] == [((C.W_TO_X, C.ANON_EXEC), Outcome.DENIED)]
    assert AUDIT.plan(out.judged[0]).outcome is Outcome.WOULD_DENY


def test_the_seccomp_filters_refusals_are_the_ptrace_enforcers_with_their_outcome():
    strict = resolve_policy("strict")
    seccomp = seccomp_enforcement(strict, enforce=True, refuse_wx=True)
    assert [(r.what, r.syscall, r.errno, r.rule, r.outcome) for r in seccomp.refusals] == [
        (WX_MMAP, "mmap", errno.EACCES, "deny-wx", Outcome.DENIED),
        (CLONE3, "clone3", errno.ENOSYS, "refuse-clone3", Outcome.DENIED)]
    # Refused clone3 never stops; what the user is told is what the enforcer says.
    assert seccomp.traps == () and seccomp.errno_of(CLONE3) == errno.ENOSYS
    enforcer = PtraceEnforcer(seccomp)
    assert enforcer.notes == seccomp.notes == tuple(r.note for r in seccomp.refusals)
    assert "the kernel makes each fail with that errno" in enforcer.notes[0]
    # audit refuses nothing in the kernel (every clone3 stops, judged `opaque`);
    # closure emulation grants W+X requests, so the kernel must not refuse them.
    audit = seccomp_enforcement(strict, enforce=False, refuse_wx=True)
    assert audit.refusals == () and audit.traps == (CLONE3_RULE,) and AUDIT.notes == ()
    assert [r.what for r in seccomp_enforcement(strict, True, refuse_wx=False).refusals] == [CLONE3]
    # A policy that allows clone3 but not an untraced child judges it at its exit only.
    default = seccomp_enforcement(resolve_policy("default"), enforce=True, refuse_wx=True)
    assert (default.refusals, default.traps, default.clone3_exit_only) == ((), (CLONE3_RULE,), True)


# --- the one ptrace wrapper ------------------------------------------------------------------


def test_ptrace_errors_are_translated():
    # ESRCH: no such thread, or not ours to trace: an ordinary event.
    with pytest.raises(NoSuchProcess):
        _fast_ptrace(PTRACE_INTERRUPT, gone_pid(), 0, 0)
    # EPERM: the kernel never lets a process trace its own thread group.
    with pytest.raises(AccessDenied):
        _fast_ptrace(PTRACE_SEIZE, os.getpid(), 0, 0)


def test_a_seized_child_is_interrupted_through_the_wrapper():
    child = os.fork()
    if child == 0:
        signal.pause()
        os._exit(0)
    try:
        assert _fast_ptrace(PTRACE_SEIZE, child, 0, 0) == 0
        assert _fast_ptrace(PTRACE_INTERRUPT, child, 0, 0) == 0
    finally:
        os.kill(child, signal.SIGKILL)
        os.waitpid(child, 0)


def test_anon_backing_is_what_an_unmodelled_call_is_not():
    # A call the model could not plan is about unknown memory, never guessed anonymous.
    subject = call_subject(PID, "mprotect", None, INFO)
    assert subject.backing.kind == "unknown" and subject.backing != ANON_BACKING


def test_a_batch_is_judged_with_the_cycle_collector_paused_and_its_cycles_collected_after():
    """monitor judges each batch with the collector paused (tracer/pipeline.py
    judge_batch): it is off inside, back on after, a cycle made inside is
    still collected, and a caller that had it off keeps it off."""
    class Node:
        pass

    assert gc.isenabled()
    with cycle_collector_paused():
        assert not gc.isenabled()
        node = Node()
        node.self = node
        cycle = weakref.ref(node)
        del node
        # Far past the collector's thresholds: nothing collects the cycle meanwhile.
        batch = [Node() for _ in range(50_000)]
        assert cycle() is not None
        del batch
    assert gc.isenabled()
    gc.collect()
    assert cycle() is None
    gc.disable()
    try:
        with cycle_collector_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()
    finally:
        gc.enable()
