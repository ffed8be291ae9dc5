"""Wiring: events from a source go through the shadow model, the classifier
and the policy, and the judgements go to the outputs.

`Judge` is source-agnostic: a source hands it calls at entry (so a decision
can be enforced before the call runs) and everything else as events. Its
enforcer (tracer/actions/outcomes.py) plans what is done with each decision;
a judgement is emitted once what was seen afterwards (the call's result, the
process's death, the kernel's kill record) settles its outcome.
`PtraceSink` adapts it to the ptrace source's stop-and-reply protocol.
"""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol

from .abi import (
    MAP_ANONYMOUS,
    MAP_FIXED,
    MAP_FIXED_NOREPLACE,
    MAP_PRIVATE,
    MAP_TYPE,
    MREMAP_FIXED,
    PROT_EXEC,
    PROT_GROWSDOWN,
    PROT_WRITE,
    prot_names,
)
from .actions.outcomes import AUDIT, Enforcer, Evidence, Plan, Proof, PtraceEnforcer, settle
from .attribution import Attributor, Caller
from .categories import Category
from .classify import classify, classify_exec
from .errors import TraceError
from .events import (
    UNKNOWN_PROCESS,
    AttachEvent,
    CallsRepeated,
    ClosureEvent,
    Event,
    ExecEvent,
    ExitEvent,
    ForkEvent,
    KernelKill,
    MemCall,
    MemReturn,
    RecordsLost,
    TrampfdEvent,
    WritableObjects,
)
from .judgement import UNENFORCED, Judgement, Outcome
from .policy.engine import decide
from .policy.model import EXEC_PSEUDO_SYSCALL, TRAMPFD_PSEUDO_SYSCALL, Action, Decision, Facts, Policy
from .shadow import ANON_BACKING, SPECIAL, UNKNOWN_BACKING, Backing, Change, ShadowModel, page_up
from .sources.ebpf_source import EbpfSource
from .sources.procfs import read_maps
from .sources.ptrace_source import (
    ALLOW_WITH_RESULT,
    STACK_SAMPLE,
    CallReply,
    PtraceSource,
    SyscallHandler,
    TraceSink,
)

Peek = Callable[[int, int], bytes]
TRAMPFD_BACKING = Backing(SPECIAL, "[trampfd]")
_NOTHING = Evidence()
CLOSURE_BACKING = Backing(SPECIAL, "[closure]")


class Output(Protocol):
    """Where judgements go (text, JSON lines, summary)."""

    def emit(self, judgement: Judgement) -> None:
        """Write one judgement."""

    def lost(self, event: RecordsLost) -> None:
        """Report records the source could not deliver (the eBPF ring buffer)."""

    def close(self, stats: RunStats) -> None:
        """Write anything final and release the stream."""


@dataclass
class RunStats:
    """Counts over a whole run, for the summary."""

    calls: int = 0
    calls_by_syscall: Counter[str] = field(default_factory=Counter)
    judged: int = 0
    exit_status: int | None = None
    lost: int = 0
    stops: int = 0
    closures: Counter[str] = field(default_factory=Counter)


@dataclass(slots=True)
class _Pending:
    call: MemCall
    change: Change | None
    judgement: Judgement | None
    plan: Plan | None
    kernel_kill: str | None = None


class Judge:
    """The model, classifier and policy for one run; `enforcer` plans what is
    done with each decision (default: audit, or ptrace enforcement in enforce
    mode)."""

    def __init__(self, policy: Policy, mode: str, outputs: Sequence[Output], source: str,
                 report_all: bool = False, enforcer: Enforcer | None = None):
        self.set_policy(policy)
        self.report_all = report_all
        self.mode = mode
        self.enforcer = enforcer or (PtraceEnforcer() if mode == "enforce" else AUDIT)
        self.outputs = list(outputs)
        self.source = source
        self.model = ShadowModel()
        self.attributor = Attributor()
        self.stats = RunStats()
        self._pending: dict[int, _Pending] = {}
        self._refusals: Counter[tuple] = Counter()
        # Calls a source counts instead of delivering, by (pid, repeat key):
        # the first such call and what the model made of it.
        self._repeatable: dict[tuple[int, int], tuple[MemCall, Change, tuple[Category, ...]]] = {}
        # Judgements whose plan waits for their process's death, by pid.
        self._awaiting: dict[int, list[tuple[Judgement, Plan]]] = {}
        self.finished = False
        # Report every closure served (run --closures --trace-trampolines).
        self.trace_trampolines = False

    def set_policy(self, policy: Policy) -> None:
        """Judge every call from now on by `policy` (the model is kept)."""
        self.policy = policy
        # Only rules without a category condition can judge uncategorised calls.
        self.judges_uncategorised = any(rule.match.judges_uncategorised for rule in policy.rules)
        self.matches_caller = any(rule.match.caller is not None for rule in policy.rules)

    # --- calls ---------------------------------------------------------------------

    def call(self, call: MemCall, peek: Peek | None) -> Plan | None:
        """Judge a call at entry; return the enforcer's plan when the policy
        judged it (a W^X event, or a call a category-free rule matched), else None."""
        self.stats.calls += 1
        self.stats.calls_by_syscall[call.syscall] += 1
        if peek is not None and call.syscall in _PROTECTS:
            self._learn_unseen(call)
        return self._plan_call(call, peek)

    def _plan_call(self, call: MemCall, peek: Peek | None) -> Plan | None:
        change = self.model.plan(call)
        judgement = plan = None
        if change is not None:
            categories = classify(change, self.model, call.pid)
            if categories or self.report_all or self.judges_uncategorised:
                judgement = self._judge_call(call, change, categories, peek)
                if judgement is not None:
                    plan = self.enforcer.plan(judgement)
        self._pending[call.tid] = _Pending(call, change, judgement, plan)
        return plan

    def footprint(self, call: MemCall) -> tuple[tuple[int, int], ...] | None:
        """The address ranges `call` may change and is judged on, for a source
        that judges overlapping calls one at a time; None when that is not a
        known range: a mapping the kernel places, any view of an object with
        other views (dual-map and object history look beyond the range),
        a growing stack, brk, System V attaches."""
        args = call.args
        if call.syscall in _PROTECTS:
            if args[2] & PROT_GROWSDOWN:
                return None
            start, end = args[0], args[0] + page_up(args[1])
            process = self.model.process(call.pid)
            if process is None or any(r.shared or r.backing.identity
                                      for r in process.space.overlapping(start, end)):
                return None
            return ((start, end),)
        if call.syscall == "munmap":
            return ((args[0], args[0] + page_up(args[1])),)
        if call.syscall in ("mmap", "mmap2"):
            flags = args[3]
            private_anon = flags & MAP_ANONYMOUS and flags & MAP_TYPE == MAP_PRIVATE
            if private_anon and flags & (MAP_FIXED | MAP_FIXED_NOREPLACE):
                return ((args[0], args[0] + page_up(args[1])),)
        return None

    def rejudge(self, call: MemCall, peek: Peek | None) -> Plan | None:
        """Judge a call again at its exit, with what the kernel really did
        (`call` carries it, e.g. the object an mmap mapped); the entry's
        judgement is replaced. Returns the plan like call()."""
        self._pending.pop(call.tid, None)
        return self._plan_call(call, peek)

    def call_returned(self, ret: MemReturn) -> None:
        """Apply a call's real result to the model and report its judgement
        (once its outcome is known)."""
        pending = self._pending.pop(ret.call.tid, None)
        if pending is None or pending.call is not ret.call:
            pending = _Pending(ret.call, self.model.plan(ret.call), None, None)
        change, judgement = pending.change, pending.judgement
        self.model.apply(ret.call, ret.result, change)
        refused = pending.plan is not None and pending.plan.proof is Proof.RESULT
        if ret.failed and self.source == "ptrace" and not refused:
            # The kernel ran the call and the thread is stopped at its exit:
            # the maps are current. (A call the tracer refused never ran.)
            self._learn_partial(ret.call)
        if ret.call.repeat_key is not None and change is not None:
            categories = judgement.categories if judgement is not None else ()
            self._repeatable[(ret.call.pid, ret.call.repeat_key)] = (ret.call, change, categories)
        if judgement is not None and pending.plan is not None:
            addr = judgement.addr
            if change is not None and change.kind == "map" and not ret.failed:
                addr = ret.result
            plan = pending.plan
            # Most plans need no proof: no Evidence to make (this is every judged call's path).
            seen = _NOTHING if plan.proof is Proof.NONE else Evidence(ret.result, pending.kernel_kill)
            self._settle(judgement, plan, seen, result=ret.result, addr=addr)

    def calls_repeated(self, event: CallsRepeated) -> None:
        """Count `event.count` more calls equal to a repeat key's first one
        and report them as one judgement with that count, judged by the
        policy in force now. The model is left as it is: the source's next
        delivered call on the range brings the kernel's view of it."""
        first = self._repeatable.get((event.pid, event.key))
        if first is None:
            return
        call, change, categories = first
        self.stats.calls += event.count
        self.stats.calls_by_syscall[call.syscall] += event.count
        if not (categories or self.report_all or self.judges_uncategorised):
            return
        judgement = self._judge_call(call, change, categories, None)
        if judgement is not None:
            judgement = _evolve(judgement, ts=event.ts, tid=event.tid, result=0, count=event.count)
            # Every one succeeded and none was killed (a kill is never counted).
            self._settle(judgement, self.enforcer.plan(judgement), Evidence(result=0))

    def call_killed(self, call: MemCall) -> None:
        """A call whose process is being killed at entry: it never returns;
        its judgement waits for the process's death."""
        pending = self._pending.pop(call.tid, None)
        if pending is not None and pending.judgement is not None and pending.plan is not None \
                and pending.call is call:
            self._settle(pending.judgement, pending.plan, Evidence())

    def _kernel_kill(self, kill: KernelKill) -> None:
        """The kernel side killed the process at the entry of `kill.call`
        (its record comes before the call's return): the call is reported,
        whatever the policy said of it, and its outcome is `killed`."""
        pending = self._pending.get(kill.tid)
        if pending is None or pending.call is not kill.call:
            pending = self._pending[kill.tid] = _Pending(kill.call, self.model.plan(kill.call), None, None)
        if pending.judgement is None:
            change = pending.change
            if change is None:
                judgement = self._unmodelled(kill.call)
            else:
                categories = classify(change, self.model, kill.pid)
                judgement = self._judge_call(kill.call, change, categories, None, force=True)
            pending.judgement, pending.plan = judgement, self.enforcer.plan(judgement)
        pending.kernel_kill = kill.rule

    def _unmodelled(self, call: MemCall) -> Judgement:
        """A judgement of a call the model could not plan: the policy's
        decision on its syscall alone, nothing known of its range."""
        info = UNKNOWN_PROCESS
        facts = Facts(categories=(), syscall=call.syscall, exe=info.exe, comm=info.comm, uid=info.uid,
                      backing_kind=UNKNOWN_BACKING.kind, object_path=None, caller_object=None,
                      prot=frozenset(), gained=frozenset(), new_mapping=False)
        decision = decide(self.policy, facts)
        return Judgement(
            ts=call.ts, source=self.source, pid=call.pid, tid=call.tid, exe=info.exe, comm=info.comm,
            uid=info.uid, syscall=call.syscall, arch=call.arch, args=call.args, result=None, addr=0,
            length=0, prot=0, prev_prot=None, backing=UNKNOWN_BACKING, categories=(), decision=decision,
            outcome=UNENFORCED[decision.action], caller=None,
        )

    def _learn_unseen(self, call: MemCall) -> None:
        """Before judging an mprotect of a live process (stopped at entry),
        add the pages of its range the model never saw, as the kernel's maps
        show them now, with unknown (possibly written) history."""
        start, end = call.args[0], call.args[0] + page_up(call.args[1])
        grows = bool(call.args[2] & PROT_GROWSDOWN)
        if not grows and self.model.covers(call.pid, start, end):
            return
        try:
            maps = read_maps(call.pid)
        except TraceError:
            return
        if grows:
            # The kernel extends the range down to the start of the mapping.
            start = next((m.start for m in maps if m.start <= start < m.end), start)
        self.model.fill_unknown(call.pid, start, end, maps)

    def _learn_partial(self, call: MemCall) -> None:
        """A failed call may still have changed part of its range: an
        mprotect changes the mappings before the one it fails on (a hole:
        ENOMEM; write asked of a shared read-only file view: EACCES); a
        MAP_FIXED mmap whose file refuses the mapping (its mmap handler
        fails) leaves a gap where the old mapping was; a failed mremap may
        have unmapped its target. Take those ranges from the kernel's maps,
        read while the thread is stopped at the call's exit: pages gone are
        forgotten, pages the model does not know are unknown (possibly
        written), and changed protections carry the history they imply."""
        ranges = _touched_ranges(call)
        if not ranges:
            return
        try:
            maps = read_maps(call.pid)
        except TraceError:
            return
        for start, end in ranges:
            self.model.reconcile(call.pid, start, end, maps)

    def _learn_fork(self, pid: int) -> None:
        """A forked child's address space is not a copy of its parent's
        (MADV_DONTFORK leaves gaps a growing region can fill unseen): take
        it from the child's maps, read while it has run no instruction."""
        try:
            maps = read_maps(pid)
        except TraceError:
            return
        self.model.reconcile(pid, 0, 1 << 64, maps)

    def _judge_call(self, call: MemCall, change: Change, categories: tuple[Category, ...],
                    peek: Peek | None, force: bool = False) -> Judgement | None:
        """Return the judgement of a call, or None when it is neither a W^X
        event nor matched by a rule (and --all-calls is off), unless `force`."""
        process = self.model.process(call.pid)
        info = process.info if process else UNKNOWN_PROCESS
        # Attribution reads the tracee's stack: only pay for it when a rule
        # needs the caller or the event will be reported.
        caller = self._caller(call, peek) if self.matches_caller else None
        facts = Facts(
            categories=categories,
            syscall=call.syscall,
            exe=info.exe,
            comm=info.comm,
            uid=info.uid,
            backing_kind=change.backing.kind,
            object_path=change.backing.path,
            caller_object=caller.object if caller else None,
            prot=prot_names(change.prot),
            gained=prot_names(change.gained),
            new_mapping=change.new_mapping,
        )
        decision = decide(self.policy, facts)
        if not (categories or self.report_all or decision.rule is not None or force):
            return None
        if caller is None:
            caller = self._caller(call, peek)
        hint = closure_hint(caller.object if caller else None, decision.action)
        return Judgement(
            ts=call.ts, source=self.source, pid=call.pid, tid=call.tid,
            exe=facts.exe, comm=facts.comm, uid=facts.uid, syscall=call.syscall, arch=call.arch,
            args=call.args, result=None, addr=change.start, length=change.end - change.start,
            prot=change.prot, prev_prot=change.prev_prot if change.parts else None,
            backing=change.backing, categories=categories, decision=decision,
            outcome=UNENFORCED[decision.action], caller=caller,
            detail=(*_call_detail(call, change), *((("hint", hint),) if hint else ())),
        )

    def refused_again(self, call: MemCall) -> bool:
        """Count a refusal of closure memory (a judgement with a closure
        hint); True when its process has had the same refusal (same syscall,
        categories and calling library) RETRY_LIMIT times: it is retrying in
        a loop (libffi walks temporary directories when every executable
        mapping is refused, and a program may retry the allocation) and is
        to be killed, which its pending judgement now plans and says."""
        pending = self._pending.get(call.tid)
        if pending is None or pending.judgement is None or pending.call is not call:
            return False
        judgement = pending.judgement
        if not any(key == "hint" for key, _ in judgement.detail):
            return False  # only closure libraries' refusals: a program may refuse-loop on purpose
        caller = judgement.caller.object if judgement.caller else None
        key = (call.pid, call.syscall, judgement.categories, caller)
        self._refusals[key] += 1
        if self._refusals[key] < RETRY_LIMIT:
            return False
        why = (f"the same call was refused {RETRY_LIMIT} times: the program retries it in a loop and would "
               "never finish, so it was stopped")
        pending.judgement = replace(judgement, detail=(*judgement.detail, ("why", why)))
        pending.plan = Plan(Proof.DEATH, Outcome.KILLED, why)
        return True

    def _caller(self, call: MemCall, peek: Peek | None) -> Caller | None:
        process = self.model.process(call.pid)
        if process is None:
            return None
        stack = call.stack
        if not stack and peek is not None and call.sp:
            stack = peek(call.sp, STACK_SAMPLE)
        if not call.ip and not stack:
            # No registers (the eBPF source): nothing to attribute, and no
            # need to index a space that changes at every call.
            return _NO_CALLER
        return self.attributor.caller(call.ip, stack, call.sp, process.space.snapshot())

    # --- everything else ---------------------------------------------------------------

    def event(self, event: Event) -> Plan | None:
        """Feed a non-call event to the model (and report exec-time findings);
        return the enforcer's plan for a new program the policy judged, None otherwise."""
        if isinstance(event, MemReturn):
            self.call_returned(event)
        elif isinstance(event, ExecEvent):
            return self._exec(event)
        elif isinstance(event, ForkEvent):
            self.model.fork(event.parent_pid, event.child_pid, event.shares_vm)
            if self.source == "ptrace" and not event.shares_vm:
                self._learn_fork(event.child_pid)
        elif isinstance(event, CallsRepeated):
            self.calls_repeated(event)
        elif isinstance(event, ExitEvent):
            # A thread that dies inside a call never returns from it.
            pending = self._pending.pop(event.tid, None)
            if pending is not None and pending.judgement is not None and pending.plan is not None:
                self._settle(pending.judgement, pending.plan, Evidence(gone=True))
            if event.status is not None:
                self.model.exit(event.pid)
                self._forget_repeatable(event.pid)
                for judgement, plan in self._awaiting.pop(event.pid, ()):
                    self._settle(judgement, plan, Evidence(status=event.status))
        elif isinstance(event, KernelKill):
            self._kernel_kill(event)
        elif isinstance(event, AttachEvent):
            self.model.seed(event.pid, event.process, event.maps, event.personality)
        elif isinstance(event, TrampfdEvent):
            self._trampfd(event)
        elif isinstance(event, WritableObjects):
            self.model.add_written(event.objects)
        elif isinstance(event, ClosureEvent):
            self._closure(event)
        elif isinstance(event, RecordsLost):
            self.stats.lost = event.total
            for output in self.outputs:
                output.lost(event)
        return None

    def _trampfd(self, event: TrampfdEvent) -> None:
        """Judge a trampfd create/map/invoke like any W^X event."""
        process = self.model.process(event.pid)
        info = process.info if process else UNKNOWN_PROCESS
        categories = (Category.TRAMPFD,)
        facts = Facts(
            categories=categories, syscall=TRAMPFD_PSEUDO_SYSCALL, exe=info.exe,
            comm=info.comm, uid=info.uid, backing_kind="special",
            object_path="[trampfd]", caller_object=None, prot=frozenset(), gained=frozenset(),
            new_mapping=event.op == "map",
        )
        decision = decide(self.policy, facts)
        caller = target = None
        if process is not None:
            regions = process.space.snapshot()
            # An address's object and symbol (no stack: the address itself).
            caller = self.attributor.caller(event.caller, b"", 0, regions) if event.caller else None
            target = self.attributor.caller(event.target, b"", 0, regions) if event.target else None
        detail = [("target", _describe_address(event.target, target))] if event.target else []
        if event.registers:
            detail.append(("registers", ",".join(f"{name}={value:#x}" for name, value in event.registers)))
        judgement = Judgement(
            ts=event.ts, source=self.source, pid=event.pid, tid=event.tid, exe=facts.exe,
            comm=facts.comm, uid=facts.uid, syscall=f"trampfd-{event.op}", arch="x86_64",
            args=tuple(value for _, value in event.registers), result=event.target, addr=event.addr,
            length=event.length, prot=0, prev_prot=None, backing=TRAMPFD_BACKING, categories=categories,
            decision=decision, outcome=UNENFORCED[decision.action], caller=caller,
            detail=tuple(detail),
        )
        self._settle(judgement, self.enforcer.plan(judgement), Evidence())

    def _closure(self, event: ClosureEvent) -> None:
        """Count a served closure (reported with --trace-trampolines) or
        report a jump into granted memory that was no known trampoline."""
        self.stats.closures[event.op] += 1
        if event.op != "refused" and not self.trace_trampolines:
            return
        process = self.model.process(event.pid)
        info = process.info if process else UNKNOWN_PROCESS
        regions = process.space.snapshot() if process is not None else ()
        caller = self.attributor.caller(event.caller, b"", 0, regions) if event.caller and regions else None
        if event.op == "refused":
            categories = (Category.W_TO_X,)
            decision = Decision(Action.DENY, None, None, ())
            outcome = Outcome.DENIED
            reason = "the jump was not run: the program got the SIGSEGV the kernel delivers"
            detail = [("why", "execution of written memory that holds no known trampoline")]
        else:
            categories = (Category.TRAMPFD,)
            decision = decide(self.policy, Facts(
                categories=categories, syscall=TRAMPFD_PSEUDO_SYSCALL, exe=info.exe, comm=info.comm,
                uid=info.uid, backing_kind="special", object_path="[closure]", caller_object=None,
                prot=frozenset(), gained=frozenset(), new_mapping=event.op == "alloc"))
            outcome, reason = UNENFORCED[decision.action], None
            if decision.action in (Action.DENY, Action.KILL):
                outcome = Outcome.NOT_ENFORCED
                reason = "closures are served by --closures, then judged: reported, not refused"
            target = self.attributor.caller(event.target, b"", 0, regions) if regions else None
            detail = [("target", _describe_address(event.target, target)), ("data", f"{event.data:#x}"),
                      ("pattern", event.pattern)]
        self._emit(Judgement(
            ts=event.ts, source=self.source, pid=event.pid, tid=event.tid, exe=info.exe, comm=info.comm,
            uid=info.uid, syscall=f"closure-{event.op}", arch=event.arch, args=(event.data,),
            result=event.target or None, addr=event.addr, length=0, prot=0, prev_prot=None,
            backing=CLOSURE_BACKING, categories=categories, decision=decision, outcome=outcome, caller=caller,
            detail=(("mode", event.mode), *detail), reason=reason,
        ))

    def _forget_repeatable(self, pid: int) -> None:
        for key in [key for key in self._repeatable if key[0] == pid]:
            del self._repeatable[key]

    def _exec(self, event: ExecEvent) -> Plan | None:
        self._forget_repeatable(event.pid)
        process = self.model.exec(event)
        categories = classify_exec(event, self.model.written)
        if not categories:
            return None
        facts = Facts(
            categories=categories, syscall=EXEC_PSEUDO_SYSCALL, exe=event.process.exe,
            comm=event.process.comm, uid=event.process.uid, backing_kind="stack",
            object_path=event.process.exe, caller_object=event.process.exe,
            prot=frozenset(), gained=frozenset(), new_mapping=True,
        )
        decision = decide(self.policy, facts)
        stack = next((r for r in process.space if r.backing.kind == "stack"), None)
        if Category.EXECSTACK not in categories and Category.WX_MAP in categories:
            # Name the W+X segment rather than the (harmless) stack.
            stack = next((r for r in process.space if r.prot & PROT_WRITE and r.prot & PROT_EXEC), stack)
        judgement = Judgement(
            ts=event.ts, source=self.source, pid=event.pid, tid=event.tid, exe=event.process.exe,
            comm=event.process.comm, uid=event.process.uid, syscall=EXEC_PSEUDO_SYSCALL, arch="",
            args=(), result=0, addr=stack.start if stack else 0,
            length=(stack.end - stack.start) if stack else 0, prot=stack.prot if stack else 0,
            prev_prot=None, backing=stack.backing if stack else ANON_BACKING,
            categories=categories, decision=decision, outcome=UNENFORCED[decision.action],
            caller=Caller(0, event.process.exe, None, 0),
            detail=(("hint", "an executable stack is what GCC nested functions need for their trampolines; "
                             "`trampwatch run --closures` serves them without one (docs/closures.md)"),)
            if Category.EXECSTACK in categories and decision.action in (Action.DENY, Action.KILL) else (),
        )
        plan = self.enforcer.plan(judgement)
        self._settle(judgement, plan, Evidence())
        return plan

    def _settle(self, judgement: Judgement, plan: Plan, seen: Evidence, **learnt: int) -> None:
        """Emit `judgement` (with the fields `learnt` since it was made) and
        its outcome once `seen` settles `plan`; else keep it until its process
        dies (or the run ends)."""
        if plan.proof is Proof.NONE:
            outcome, reason = plan.outcome, plan.reason
        else:
            settled = settle(plan, judgement, seen)
            if settled is None:
                held = _evolve(judgement, **learnt) if learnt else judgement
                self._awaiting.setdefault(judgement.pid, []).append((held, plan))
                return
            outcome, reason = settled
        changes: dict[str, object] = learnt
        if outcome is not judgement.outcome or reason is not None:
            changes = {**learnt, "outcome": outcome, "reason": reason}
        self._emit(_evolve(judgement, **changes) if changes else judgement)

    def _emit(self, judgement: Judgement) -> None:
        self.stats.judged += judgement.count
        for output in self.outputs:
            output.emit(judgement)

    def finish(self, exit_status: int | None) -> RunStats:
        """Close every output with the run's statistics (once); return them."""
        if self.finished:
            return self.stats
        self.finished = True
        # What never settled is reported with what is known now.
        pending, self._pending = self._pending, {}
        for entry in pending.values():
            if entry.judgement is not None and entry.plan is not None:
                self._settle(entry.judgement, entry.plan, Evidence(ended=True))
        awaiting, self._awaiting = self._awaiting, {}
        for judged in awaiting.values():
            for judgement, plan in judged:
                self._settle(judgement, plan, Evidence(ended=True))
        self.stats.exit_status = exit_status
        for output in self.outputs:
            output.close(self.stats)
        return self.stats


def _call_detail(call: MemCall, change: Change) -> tuple[tuple[str, str], ...]:
    """Extra report pairs: the facility an opaque call uses, the process a
    write through /proc/PID/mem reaches, the descriptor a call produced."""
    detail = []
    if change.facility:
        detail.append(("facility", change.facility))
    if call.fd_object is not None and call.fd_object.fd >= 0:
        detail.append(("fd", str(call.fd_object.fd)))
    if call.target is not None and change.kind == "foreign-write":
        detail.append(("target", str(call.target) if call.target >= 0 else "unknown (another procfs)"))
    return tuple(detail)


# Identical refusals after which a process is taken to retry forever.
RETRY_LIMIT = 200
# Libraries that ask for closure memory, by file name prefix (what they are).
CLOSURE_LIBRARIES = {
    "libffi.so": "libffi (closures)",
    "libffi_pic": "libffi (closures)",
    "ffi_c.so": "Ruby FFI (closures)",
    "_cffi_backend": "cffi (closures)",
    "_ctypes": "ctypes (closures)",
}


def closure_hint(caller_object: str | None, action: Action) -> str | None:
    """The hint a refused closure page gets: which library wanted it and
    that `run --closures` serves it; None for any other call."""
    if action not in (Action.DENY, Action.KILL) or not caller_object:
        return None
    name = os.path.basename(caller_object)
    what = next((what for prefix, what in CLOSURE_LIBRARIES.items() if name.startswith(prefix)), None)
    if what is None:
        return None
    return (f"{name} ({what}) wanted this memory for closures; `trampwatch run --closures` serves them "
            "without W+X memory (docs/closures.md)")


# The caller of a call whose source gives no registers: what attribution says of address 0.
_NO_CALLER = Caller(0, None, None, 0)


def _evolve(judgement: Judgement, **changes: object) -> Judgement:
    """dataclasses.replace() without its per-call introspection of the
    fields (a judged call is evolved twice: its result, then its outcome)."""
    evolved = object.__new__(Judgement)
    evolved.__dict__.update(judgement.__dict__, **changes)
    return evolved


def _describe_address(addr: int, where: Caller | None) -> str:
    """'0x... (object:symbol+0x..)' for reports."""
    if where is None or not where.object:
        return f"{addr:#x}"
    name = where.object.rsplit("/", 1)[-1]
    if where.symbol:
        name += f":{where.symbol}" + (f"+{where.offset:#x}" if where.offset else "")
    return f"{addr:#x} ({name})"


class PtraceSink(TraceSink):
    """Adapts the Judge to the ptrace source: decisions become replies."""

    def __init__(self, judge: Judge):
        self.judge = judge

    def on_call(self, call: MemCall, peek: Peek) -> CallReply:
        """Judge at entry; carry out the enforcer's plan: a refusal (the exit
        stop then shows the result) or a kill."""
        return self._reply(call, self.judge.call(call, peek))

    def _reply(self, call: MemCall, plan: Plan | None) -> CallReply:
        if plan is None:
            return ALLOW_WITH_RESULT
        if plan.proof is Proof.DEATH:
            self.judge.call_killed(call)
            return CallReply(kill=True)
        if plan.proof is Proof.RESULT:
            if self.judge.refused_again(call):
                self.judge.call_killed(call)
                return CallReply(kill=True)
            return CallReply(deny_errno=plan.errno)
        return ALLOW_WITH_RESULT

    def footprint(self, call: MemCall) -> tuple[tuple[int, int], ...] | None:
        """The ranges the judge needs stable while it judges `call`."""
        return self.judge.footprint(call)

    def on_result(self, call: MemCall, peek: Peek) -> CallReply:
        """Judge a call again at exit; the enforcer's plan becomes a reply the
        source applies to the result (a refusal undoes it)."""
        return self._reply(call, self.judge.rejudge(call, peek))

    def on_event(self, event: Event) -> bool:
        """Pass every other event to the judge; True (kill now) when the
        enforcer plans the death of a new program (an exec cannot be refused)."""
        plan = self.judge.event(event)
        return plan is not None and plan.proof is Proof.DEATH


def trace_attached(judge: Judge, pid: int,
                   on_ready: Callable[[AttachEvent], None] | None = None) -> int | None:
    """Seize the running process pid and trace it until it exits (its wait
    status is unknown to a non-parent: None) or SIGINT/SIGTERM detaches.
    `on_ready` is called once every thread is seized: from then on, no
    call of the process escapes the tracer."""
    source = PtraceSource(PtraceSink(judge))

    def detach(signum: int, frame: object) -> None:
        source.detach_all()

    # Installed first: a Ctrl-C during the seize must detach, not kill us.
    previous = {sig: signal.signal(sig, detach) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        attached = source.attach(pid)
        if on_ready is not None:
            on_ready(attached)
        status = source.run()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    judge.stats.stops = source.stops
    return status


def trace_command(judge: Judge, argv: list[str], prepare_child: Callable[[], None],
                  handler: SyscallHandler | None = None) -> int | None:
    """Run argv under the ptrace source; return its wait status.

    The tree is started with PTRACE_O_EXITKILL: its seccomp filter makes every
    memory syscall fail with ENOSYS once no tracer is attached, so a program
    that outlived trampwatch would run broken; it dies with the tracer instead.
    """
    source = PtraceSource(PtraceSink(judge), exit_kill=True, handler=handler)

    def on_terminate(signum: int, frame: object) -> None:
        # enforce fails closed: the tree dies with us. audit cannot detach (the
        # filter would break the program), so it stops judging and reporting,
        # writes the summary now and only passes stops through until the end.
        if judge.mode == "enforce":
            source.kill_all()
        elif not judge.finished:
            source.sink = PASS_THROUGH
            judge.stats.stops = source.stops
            judge.finish(None)

    # SIGTERM waits until the child is seized, so it always finds it.
    signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGTERM])
    previous = signal.signal(signal.SIGTERM, on_terminate)
    try:
        source.spawn(argv, prepare_child)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, [signal.SIGTERM])
        status = source.run()
    finally:
        signal.signal(signal.SIGTERM, previous)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, [signal.SIGTERM])
    judge.stats.stops = source.stops
    return status


def monitor_host(judge: Judge, source: EbpfSource, duration: float | None,
                 on_reload: Callable[[], None] | None = None,
                 on_ready: Callable[[], None] | None = None) -> None:
    """Feed the eBPF source's events through the judge until SIGINT/SIGTERM
    or `duration` seconds; lost records are reported as they are counted.
    SIGHUP calls `on_reload` (when given) once what the kernel sent before
    it is judged. `on_ready` is called once the signals are handled (a
    readiness line printed earlier would let a quick SIGINT abort the run)."""
    stopping = False
    reloading = False

    def stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    def reload(signum: int, frame: object) -> None:
        nonlocal reloading
        reloading = True

    # Judging is throughput work: as SCHED_BATCH its wake-ups never preempt
    # the programs it watches (on 2 vCPUs a monitored mprotect cost ~0.15 µs
    # less, and the outliers went away).
    os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))
    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    if on_reload is not None:
        previous[signal.SIGHUP] = signal.signal(signal.SIGHUP, reload)
    deadline = None if duration is None else time.monotonic() + duration
    if on_ready is not None:
        on_ready()
    # Processes first seen through a call: /proc was read after that call, so
    # the model shows its range as the call left it.
    seeded_by: dict[int, AttachEvent] = {}
    try:
        while not stopping and (deadline is None or time.monotonic() < deadline):
            _feed(judge, source.poll(200), seeded_by)
            if reloading and on_reload is not None:
                reloading = False
                # Calls made before the signal are judged as they were made.
                while batch := source.poll(0):
                    _feed(judge, batch, seeded_by)
                on_reload()
        # Drain what the kernel already sent before the stop.
        while batch := source.poll(0):
            _feed(judge, batch, seeded_by)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


_PROTECTS = frozenset({"mprotect", "pkey_mprotect"})


def _touched_ranges(call: MemCall) -> tuple[tuple[int, int], ...]:
    """The ranges a failed call may nevertheless have changed."""
    args = call.args
    if call.syscall in _PROTECTS or (call.syscall in ("mmap", "mmap2") and args[3] & MAP_FIXED):
        return ((args[0], args[0] + page_up(args[1])),)
    if call.syscall == "mremap":
        ranges = [(args[0], args[0] + page_up(args[1]))]
        if args[3] & MREMAP_FIXED and len(args) > 4:
            ranges.append((args[4], args[4] + page_up(args[2])))
        return tuple(ranges)
    return ()


def _feed(judge: Judge, events: list[Event], seeded_by: dict[int, AttachEvent]) -> None:
    """Judge a batch of eBPF events in order."""
    for event in events:
        if isinstance(event, MemCall):
            _fill_unseen(judge, event, seeded_by.pop(event.pid, None))
            judge.call(event, None)
        elif isinstance(event, AttachEvent):
            seeded_by[event.pid] = event
            judge.event(event)
        elif isinstance(event, ExecEvent):
            judge.event(_as_at_exec(event))
        else:
            judge.event(event)


def _as_at_exec(event: ExecEvent) -> ExecEvent:
    """An exec the eBPF source reports with maps read some time after it:
    keep what exists at exec (the program, the loader, stack, heap, vDSO) and
    drop later anonymous mappings, which the model learns from their calls."""
    kept = tuple(m for m in event.maps if m.path and not m.path.startswith("[anon"))
    return replace(event, maps=kept)


def _fill_unseen(judge: Judge, call: MemCall, seed: AttachEvent | None) -> None:
    """Before judging an mprotect (or mremap) the eBPF source delivered,
    make the model's view of its range what it was before the call: the
    kernel's own view when the source has it; otherwise add the regions the
    model never saw (created by calls the kernel side did not forward) from
    the process's maps, and when the model was seeded by this very call, its
    range is one the model never saw before the call."""
    if call.vmas is not None:
        judge.model.observe(call.pid, call.vmas)
        return
    if call.syscall not in _PROTECTS:
        return
    process = judge.model.process(call.pid)
    if process is None:
        return
    start, end = call.args[0], call.args[0] + page_up(call.args[1])
    if seed is not None:
        process.space.remove(start, end)
        judge.model.fill_gaps(call.pid, start, end, seed.maps, call.args[2])
        return
    covered = sum(r.end - r.start for r in process.space.overlapping(start, end))
    if covered == end - start:
        return
    try:
        maps = read_maps(call.pid)
    except TraceError:
        return
    judge.model.fill_gaps(call.pid, start, end, maps, call.args[2])


class _PassThrough(TraceSink):
    """A sink that judges nothing: every call goes on, no exit stop asked."""

    def on_call(self, call: MemCall, peek: Peek) -> CallReply:
        """Let the call run unobserved."""
        return CallReply(want_exit=False)

    def footprint(self, call: MemCall) -> tuple[tuple[int, int], ...] | None:
        """Nothing is judged: any footprint will do."""
        return None

    def on_result(self, call: MemCall, peek: Peek) -> CallReply:
        """Keep the result."""
        return ALLOW_WITH_RESULT

    def on_event(self, event: Event) -> bool:
        """Ignore the event."""
        return False


PASS_THROUGH = _PassThrough()
