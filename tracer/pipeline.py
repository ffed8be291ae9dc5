"""Wiring: events from a source go through named stages, in order (Stage):

    SOURCE -> MODEL -> CLASSIFY -> DECIDE -> ENFORCE -> EMIT
    (events)  (ShadowModel,  (classify)  (Decider)  (Settler + the   (Emitter:
               ProcfsGaps)                           enforcer)        outputs)

`Judge` wires them, in one place, and is source-agnostic: a source hands it
calls at entry (so a decision can be enforced before the call runs) and
everything else as events. What the judge made of a call at entry (an
InFlight) is held by the source with the call and handed back with its
return: a call's entry and return are paired once, by the source. The
enforcer (tracer/actions/outcomes.py) plans what is done with each
decision; a judgement is emitted once what was seen afterwards (the
call's result, the process's death, the kernel's kill record) settles its
outcome. Each stage counts what it dropped, and why, in RunStats.dropped.
`PtraceSink` adapts the Judge to the ptrace source's stop-and-reply protocol.
"""

from __future__ import annotations

import enum
import os
import signal
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from .abi import (
    MAP_ANONYMOUS,
    MAP_FIXED,
    MAP_FIXED_NOREPLACE,
    MAP_PRIVATE,
    MAP_TYPE,
    MREMAP_FIXED,
    PAGE_SIZE,
    PROT_GROWSDOWN,
    PROT_READ,
    PROT_WRITE,
    READ_IMPLIES_EXEC,
)
from .actions.outcomes import (
    AUDIT,
    EMULATOR_REFUSAL,
    KILL_REPLY,
    Enforcer,
    Evidence,
    Plan,
    Proof,
    PtraceEnforcer,
    Settler,
    ptrace_reply,
)
from .categories import Category
from .classify import classify
from .collector import cycle_collector_paused
from .errors import TraceError
from .events import (
    EXEC_UNRESOLVED,
    UNKNOWN_PROCESS,
    AttachEvent,
    CallAgain,
    CallsRepeated,
    CallStalled,
    ClosureEvent,
    Event,
    ExecEvent,
    ExitEvent,
    ForkEvent,
    MapEntry,
    MemCall,
    MemReturn,
    ProcessInfo,
    RecordsLost,
    TrampfdEvent,
    Unresolved,
    WritableObjects,
)
from .judgement import Judgement, Outcome
from .judging import Decider
from .policy.model import Policy
from .replay import Replays, Transition
from .shadow import Change, Process, ShadowModel, page_up
from .sources.procfs import read_maps
from .sources.ptrace_source import (
    ALLOW_WITH_RESULT,
    CallReply,
    PtraceSource,
    SyscallHandler,
    TraceSink,
)
from .subject import call_subject, closure_subject, exec_subject, trampfd_subject

if TYPE_CHECKING:
    # Only `monitor` needs the eBPF source, only `run --closures` loads the
    # fast path (cli.py): `run` starts without either's imports.
    from .sources.ebpf_source import EbpfSource
    from .sources.fast_faults import FastFaults

Peek = Callable[[int, int], bytes]
_NOTHING = Evidence()


class Output(Protocol):
    """Where judgements go (text, JSON lines, summary)."""

    def emit(self, judgement: Judgement) -> None:
        """Write one judgement."""

    def lost(self, event: RecordsLost) -> None:
        """Report records the source could not deliver (the eBPF ring buffer)."""

    def close(self, stats: RunStats) -> None:
        """Write anything final and release the stream."""


class Stage(enum.StrEnum):
    """The named steps of the flow every event goes through, in order; what
    each one dropped is counted in RunStats.dropped under its name.

    CLASSIFY and ENFORCE drop nothing, so they count nothing: classify is a
    pure function of its subject that always answers (no category is an
    answer), and an enforcement that could not be applied is not dropped
    but reported, with the outcome `not-enforced` and its reason."""

    SOURCE = "source"        # what a source saw but could not deliver whole (Unresolved events)
    MODEL = "model"          # the shadow model: events applied, gaps filled from /proc
    CLASSIFY = "classify"    # a subject's categories (tracer/classify.py): drops nothing
    DECIDE = "decide"        # the policy's facts and decision, the judgement (tracer/policy)
    ENFORCE = "enforce"      # the enforcer's plan, settled by what was seen (tracer/actions): drops nothing
    EMIT = "emit"            # the outputs


# Why a stage dropped something (docs/events.md says each in words).
MAPS_UNREADABLE = "maps-unreadable"        # a process whose maps could not be read
UNKNOWN_PROCESS_CALL = "process-unseen"    # a call of a process the model never saw
REPEATS_UNSEEN = "first-call-unseen"       # repeated calls whose first call was never delivered
OUTPUT_FAILED = "output-failed"            # judgements an output could not take (a closed pipe, a full disk)
# Every (stage, reason) a run can count: the summary record always carries
# each, so its shape does not depend on what happened.
DROP_REASONS: tuple[tuple[str, str], ...] = (
    (Stage.SOURCE.value, EXEC_UNRESOLVED),
    (Stage.MODEL.value, MAPS_UNREADABLE),
    (Stage.MODEL.value, UNKNOWN_PROCESS_CALL),
    (Stage.DECIDE.value, REPEATS_UNSEEN),
    (Stage.EMIT.value, OUTPUT_FAILED),
)


@dataclass
class RunStats:
    """Counts over a whole run, for the summary. `dropped` counts what each
    stage could not use, by (stage, reason), every known reason from 0."""

    calls: int = 0
    calls_by_syscall: Counter[str] = field(default_factory=Counter)
    judged: int = 0
    exit_status: int | None = None
    lost: int = 0
    stops: int = 0
    closures: Counter[str] = field(default_factory=Counter)
    # Memory calls other calls of their address space were judged past.
    stalled: int = 0
    dropped: Counter[tuple[str, str]] = field(default_factory=lambda: Counter(dict.fromkeys(DROP_REASONS, 0)))

    def drop(self, stage: Stage, reason: str, count: int = 1) -> None:
        """Count `count` things `stage` dropped for `reason`."""
        self.dropped[(stage.value, reason)] += count


class ProcfsGaps:
    """The MODEL stage's reads of a stopped process's maps, for a source
    that stops the process (ptrace): what the model never saw, what a
    failed call changed anyway, a fork child's real address space. A
    process whose maps cannot be read is counted as dropped."""

    def __init__(self, model: ShadowModel, stats: RunStats):
        self.model = model
        self.stats = stats

    def _maps(self, pid: int) -> tuple[MapEntry, ...] | None:
        try:
            return read_maps(pid)
        except TraceError:
            self.stats.drop(Stage.MODEL, MAPS_UNREADABLE)
            return None

    def unseen(self, call: MemCall) -> None:
        """Before judging an mprotect of a live process (stopped at entry),
        add the pages of its range the model never saw, as the kernel's maps
        show them now, with unknown (possibly written) history."""
        start, end = call.args[0], call.args[0] + page_up(call.args[1])
        grows = bool(call.args[2] & PROT_GROWSDOWN)
        if not grows and self.model.covers(call.pid, start, end):
            return
        maps = self._maps(call.pid)
        if maps is None:
            return
        if grows:
            # The kernel extends the range down to the start of the mapping.
            start = next((m.start for m in maps if m.start <= start < m.end), start)
        self.model.fill_unknown(call.pid, start, end, maps)

    def partial(self, call: MemCall) -> None:
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
        maps = self._maps(call.pid)
        if maps is None:
            return
        for start, end in ranges:
            self.model.reconcile(call.pid, start, end, maps)

    def stalled(self, event: CallStalled) -> None:
        """A call still in the kernel (or just back from it after others were
        judged past it) may have changed its ranges unseen: take them from
        the kernel's maps with unknown (possibly written) history."""
        maps = self._maps(event.pid)
        if maps is None:
            return
        for start, end in event.ranges if event.ranges is not None else ((0, 1 << 64),):
            self.model.distrust(event.pid, start, end, maps)

    def fork(self, pid: int, crowded: bool) -> None:
        """A forked child's address space that may not be a copy of its
        parent's model (MADV_DONTFORK, a device mapping the kernel keeps out
        of children: gaps a growing region can fill unseen): take it from
        the child's maps, read while it has run no instruction. When another
        task shared the parent's space at the fork (`crowded`), its calls
        may have run before the copy and be applied to the model after it,
        or the other way round, where the maps show no difference (written
        code moved over a clean page of the same protection: forkmid in
        attack_late_exec): the whole space is then taken with unknown
        (possibly written) history."""
        if not crowded:
            self.whole(pid)
            return
        maps = self._maps(pid)
        if maps is not None:
            self.model.distrust(pid, 0, 1 << 64, maps)

    def whole(self, pid: int) -> None:
        """Make the model of `pid` (stopped) what its maps show: pages gone
        are forgotten, pages never seen are unknown (possibly written)."""
        maps = self._maps(pid)
        if maps is not None:
            self.model.reconcile(pid, 0, 1 << 64, maps)


class Emitter:
    """The EMIT stage: every settled judgement to every output, counted. An
    output that cannot be written (its reader closed the pipe, the disk is
    full) is written no more: the run goes on (enforcement does not depend
    on a report's reader), the other outputs still get everything, and each
    judgement that output missed is counted as dropped (OUTPUT_FAILED)."""

    def __init__(self, outputs: Sequence[Output], stats: RunStats):
        self.outputs = tuple(outputs)
        self.stats = stats
        # Outputs that failed: each misses every judgement from then on.
        self.failed = 0

    def emit(self, judgement: Judgement) -> None:
        """Write one judgement to every output that still can take it."""
        self.stats.judged += judgement.count
        for output in self.outputs:
            try:
                output.emit(judgement)
            except OSError:
                self._failed(output)
        if self.failed:
            self.stats.drop(Stage.EMIT, OUTPUT_FAILED, self.failed)

    def _failed(self, output: Output) -> None:
        self.outputs = tuple(kept for kept in self.outputs if kept is not output)
        self.failed += 1

    def lost(self, event: RecordsLost) -> None:
        """Report records the source lost."""
        self.stats.lost = event.total
        for output in self.outputs:
            try:
                output.lost(event)
            except OSError:
                self._failed(output)

    def close(self) -> None:
        """Close every output that still works with the run's statistics."""
        for output in self.outputs:
            try:
                output.close(self.stats)
            except OSError:
                self._failed(output)


@dataclass(slots=True, eq=False)
class InFlight:
    """What the judge made of one call at its entry: the model's planned
    change, and when it was judged its judgement and the enforcer's plan.
    The source holds it with the call and hands it back with the call's
    return (MemReturn.entry) or with the end of a thread that died inside
    the call (ExitEvent.in_call)."""

    call: MemCall
    change: Change | None
    judgement: Judgement | None
    plan: Plan | None


class Judge:
    """One run's stages, wired: MODEL (the shadow model, and ProcfsGaps for a
    source that stops processes), CLASSIFY (classify), DECIDE (Decider),
    ENFORCE (Settler, with the enforcer: audit, or ptrace enforcement in
    enforce mode) and EMIT (Emitter). `event()` routes each kind of event to
    its stage through one table; calls come through `call()` (or
    `rejudge()`) at entry, which returns the InFlight their MemReturn
    brings back. Each judged thing is a Subject (tracer/subject.py)."""

    def __init__(self, policy: Policy, mode: str, outputs: Sequence[Output], source: str,
                 report_all: bool = False, enforcer: Enforcer | None = None):
        self.mode = mode
        self.source = source
        self.stats = RunStats()
        self.model = ShadowModel()
        # The MODEL stage's reads of /proc: only a source that stops the process may make them.
        self.gaps = ProcfsGaps(self.model, self.stats) if source == "ptrace" else None
        self.decider = Decider(policy, self.model, source, report_all)
        self.emitter = Emitter(outputs, self.stats)
        self.settler = Settler(enforcer or (PtraceEnforcer() if mode == "enforce" else AUDIT),
                               self.emitter.emit)
        # Judged calls not yet returned: reported as they are when the run
        # ends (their sources hold them; this only keeps them from being lost).
        self._open: set[InFlight] = set()
        self._refusals: Counter[tuple] = Counter()
        # Calls a source counts instead of delivering, by (pid, repeat key):
        # the first such call and what the model made of it.
        self._repeatable: dict[tuple[int, int], tuple[MemCall, Change, tuple[Category, ...]]] = {}
        # Calls a source delivers as made again (CallAgain): what each did, replayed.
        self._replays = Replays()
        self.finished = False
        # Report every closure served (run --closures --trace-trampolines).
        self.trace_trampolines = False
        # The wiring: each kind of event and the stage method that takes it.
        self._routes: dict[type, Callable[[Any], Plan | None]] = {
            MemReturn: self.call_returned,
            ExecEvent: self._exec,
            ForkEvent: self._fork,
            CallsRepeated: self.calls_repeated,
            CallAgain: self.call_again,
            ExitEvent: self._exit,
            AttachEvent: self._attach,
            TrampfdEvent: self._trampfd,
            WritableObjects: self._writable,
            ClosureEvent: self._closure,
            RecordsLost: self.emitter.lost,
            Unresolved: self._unresolved,
            CallStalled: self._stalled,
        }

    @property
    def policy(self) -> Policy:
        """The policy every call is judged by."""
        return self.decider.policy

    def set_policy(self, policy: Policy) -> None:
        """Judge every call from now on by `policy` (the model is kept)."""
        self.report_replayed()
        self._replays.clear()
        self.decider.set_policy(policy)

    @property
    def enforcer(self) -> Enforcer:
        """What plans the enforcement of each decision."""
        return self.settler.enforcer

    @enforcer.setter
    def enforcer(self, enforcer: Enforcer) -> None:
        self.report_replayed()
        self._replays.clear()
        self.settler.enforcer = enforcer

    # --- calls ---------------------------------------------------------------------

    def call(self, call: MemCall, peek: Peek | None) -> InFlight:
        """Judge a call at entry; return what was made of it, for the source
        to hand back with its return (its `plan` is the enforcer's plan when
        the policy judged it: a W^X event, or a call a category-free rule
        matched; else None)."""
        self.stats.calls += 1
        self.stats.calls_by_syscall[call.syscall] += 1
        if peek is not None and self.gaps is not None and call.syscall in _PROTECTS:
            self.gaps.unseen(call)
        return self._plan_call(call, peek)

    def _plan_call(self, call: MemCall, peek: Peek | None) -> InFlight:
        change = self.model.plan(call)
        judgement = plan = None
        if change is not None:
            subject = call_subject(call.pid, call.syscall, change, self.model.processes[call.pid].info)
            categories = classify(subject, self.model)
            decider = self.decider
            if categories or decider.report_all or decider.judges_uncategorised:
                judgement = decider.call(call, subject, categories, peek)
                if judgement is not None:
                    plan = self.settler.plan(judgement)
        elif call.pid not in self.model.processes:
            self.stats.drop(Stage.MODEL, UNKNOWN_PROCESS_CALL)
        entry = InFlight(call, change, judgement, plan)
        if judgement is not None:
            self._open.add(entry)
        return entry

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

    def returns_unread(self, call: MemCall, failed: bool, entry: object | None) -> bool:
        """Whether applying the return of `call` (as on_event(MemReturn)
        would, `entry` what its entry made of it) reads nothing of the
        stopped thread and reports nothing: a call its entry judged nothing
        of, that succeeded (a failure is taken from the kernel's maps at the
        stop) and maps or unmaps only what its arguments name. The source
        may then resume the thread first: the thread's next trapped call
        still waits for the tracer, which applies this one before it."""
        return (not failed and isinstance(entry, InFlight) and entry.judgement is None
                and not self.model.changes_unseen(call))

    def settles_at_entry(self, call: MemCall) -> bool:
        """Whether `call`, judged with nothing to report, may be taken as
        done at its entry (CallReply.settled): an munmap, or an mprotect to
        read/write/none, of a page-aligned range the model holds whole and
        private. Such a call fails only where the model cannot see it
        (mseal, a security module): the model then thinks the range
        writable or unmapped when it is not, and a later call there finds
        write history or unknown history, never less than the truth."""
        syscall, args = call.syscall, call.args
        if syscall == "mprotect":
            if args[2] & ~(PROT_READ | PROT_WRITE):
                return False
        elif syscall != "munmap":
            return False
        return self._held_private(call.pid, args[0], args[1]) is not None

    def _held_private(self, pid: int, start: int, length: int) -> Process | None:
        """The process `pid` when the model holds the page-aligned range at
        `start` of `length` bytes whole, in regions none of which is shared
        (None otherwise)."""
        if start & (PAGE_SIZE - 1) or not length:
            return None
        process = self.model.processes.get(pid)
        if process is None:
            return None
        end = start + page_up(length)
        space = process.space
        region = space.find(start)
        if region is not None and region.end >= end:
            return None if region.shared else process  # the usual case: inside one region
        at = start
        for region in space.overlapping(start, end):
            if region.shared or region.start != at:
                return None
            at = region.end
        return process if at == end else None

    def settle_alone(self, call: MemCall) -> bool:
        """Judge and apply at once a call no other call can interleave with
        (its task is alone in its address space) when judging it reports
        nothing and it settles at its entry (settles_at_entry): an munmap
        (never judged: the model plans no change for it), or an mprotect to
        read/write/none by a thread without READ_IMPLIES_EXEC while no rule
        judges calls in no category and --all-calls is off. Such an
        mprotect is in no category: nothing becomes executable, and no part
        of the range is shared (no dual-map). So this does what call()
        followed by call_returned() of its success does (counted, applied to
        the model), without the change, subject and judgement they build
        only to find nothing to report. False, and nothing done, for any
        other call: it goes the usual way."""
        syscall, args = call.syscall, call.args
        if syscall == "mprotect":
            prot = args[2]
            decider = self.decider
            if prot & ~(PROT_READ | PROT_WRITE) or decider.report_all or decider.judges_uncategorised:
                return False
        elif syscall != "munmap":
            return False
        process = self._held_private(call.pid, args[0], args[1])
        if process is None:
            return False
        start = args[0]
        end = start + page_up(args[1])
        if syscall == "munmap":
            process.space.remove(start, end)
        elif process.persona(call.tid) & READ_IMPLIES_EXEC:
            return False  # the kernel adds PROT_EXEC: judged the usual way
        else:
            process.space.protect(start, end, prot)
        stats = self.stats
        stats.calls += 1
        stats.calls_by_syscall[syscall] += 1
        return True

    def rejudge(self, entry: InFlight | None, call: MemCall, peek: Peek | None) -> InFlight:
        """Judge a call again at its exit, with what the kernel really did
        (`call` carries it, e.g. the object an mmap mapped); what its entry
        made of it (`entry`, None if nothing) is replaced by what is returned."""
        if entry is not None:
            self._open.discard(entry)
        return self._plan_call(call, peek)

    def call_returned(self, ret: MemReturn) -> None:
        """Apply a call's real result to the model and report its judgement
        (once its outcome is known). A call no entry judged (the eBPF
        source's, delivered whole) is judged first, from what it asked,
        after the model takes what the source knew of its range before it;
        the kernel's kill record it carries makes it reported whatever the
        policy said of it, `killed`."""
        pending = ret.entry
        if pending is None:
            self._seen_before(ret.call)
            pending = self.call(ret.call, None)
        self._returned(ret, pending)

    def _returned(self, ret: MemReturn, pending: InFlight) -> Judgement | None:
        """call_returned's part once the call is judged (`pending`); return
        the judgement emitted for it now, None when none was (or it waits
        for its proof)."""
        if pending.judgement is not None:
            self._open.discard(pending)
        if ret.kernel_kill is not None and pending.judgement is None:
            self._judge_killed(pending)
        change, judgement = pending.change, pending.judgement
        unseen = self.model.changes_unseen(ret.call)
        self.model.apply(ret.call, ret.result, change)
        if unseen and not ret.failed and self.gaps is not None:
            self.gaps.whole(ret.call.pid)
        refused = pending.plan is not None and pending.plan.proof is Proof.RESULT
        if ret.failed and self.gaps is not None and not refused:
            # The kernel ran the call and the thread is stopped at its exit:
            # the maps are current. (A call the tracer refused never ran.)
            self.gaps.partial(ret.call)
        if ret.call.repeat_key is not None and change is not None:
            categories = judgement.categories if judgement is not None else ()
            self._repeatable[(ret.call.pid, ret.call.repeat_key)] = (ret.call, change, categories)
        if judgement is None or pending.plan is None:
            return None
        addr = judgement.addr
        if change is not None and change.kind == "map" and not ret.failed:
            addr = ret.result
        plan = pending.plan
        # Most plans need no proof: no Evidence to make (this is every judged call's path).
        kill = ret.kernel_kill
        seen = _NOTHING if plan.proof is Proof.NONE else Evidence(ret.result, kill.rule if kill else None)
        return self.settler.settle(judgement, plan, seen, result=ret.result, addr=addr)

    def call_again(self, event: CallAgain) -> None:
        """A call made again (its source's CallAgain): replayed on the model,
        and counted for report_replayed(), when what it did the last time
        still holds; else judged as a call delivered whole, and what it did
        remembered for the next time when that is exact (tracer/replay.py)."""
        first = event.first
        if self._replays.replay(event.key, self.model.processes.get(first.call.pid), event.ts):
            return
        call = first.call._replace(ts=event.ts)
        ret = MemReturn(call, first.result)
        process = self.model.processes.get(call.pid)
        args = call.args
        if (process is None or call.syscall not in _PROTECTS or call.vmas is None
                or args[2] & PROT_GROWSDOWN):
            self.call_returned(ret)
            return
        space = process.space
        version = space.version
        self._seen_before(call)
        start, end = args[0], args[0] + page_up(args[1])
        # What observe() read (the kernel's view) and what the change touches.
        seen = (min(start, *(m.start for m in call.vmas)), max(end, *(m.end for m in call.vmas)))
        window = space.window(start, end, seen) if space.version == version else None
        count = len(space)
        pending = self.call(call, None)
        emitted = self._returned(ret, pending)
        change = pending.change
        exact = (window is not None and change is not None and process is self.model.processes.get(call.pid)
                 and process.space is space and (pending.judgement is None or emitted is not None)
                 and (pending.plan is None or pending.plan.proof in _PROOF_AT_RETURN)
                 and all(part.backing.identity is None and not part.shared for part in change.parts))
        if exact:
            lo, before = window
            after = space.regions(lo, lo + len(before) + len(space) - count)
            self._replays.record(event.key, Transition(
                call.pid, call.tid, space, process.info, process.persona(call.tid), call.syscall, seen[0],
                before, after, [region.start for region in after], emitted))

    def report_replayed(self) -> None:
        """Report the calls replayed since the last report: counted in the
        run's statistics, and each judged one as its first judgement was,
        once, with their count (`ts` the last one's)."""
        stats = self.stats
        for transition, count, ts in self._replays.take():
            stats.calls += count
            stats.calls_by_syscall[transition.syscall] += count
            if transition.judgement is not None:
                self.emitter.emit(transition.judgement._replace(ts=ts, count=count))

    def _seen_before(self, call: MemCall) -> None:
        """The MODEL stage's part of a call delivered whole: what its source
        knew of its range before it ran, the kernel's own view (the truth),
        or what /proc still showed (for the parts the model never saw; every
        range the eBPF source does not report was never writable, so no
        history is invented), and the persona its thread had then."""
        if call.personality is not None:
            self.model.set_personality(call.pid, call.tid, call.personality)
        if call.vmas is not None:
            self.model.observe(call.pid, call.vmas)
        elif call.unseen:
            # The source clipped them to the call's range.
            self.model.fill_unknown(call.pid, 0, 1 << 64, call.unseen, written=False)

    def calls_repeated(self, event: CallsRepeated) -> None:
        """Count `event.count` more calls equal to a repeat key's first one
        and report them as one judgement with that count, judged by the
        policy in force now. The model is left as it is: the source's next
        delivered call on the range brings the kernel's view of it."""
        first = self._repeatable.get((event.pid, event.key))
        if first is None:
            self.stats.drop(Stage.DECIDE, REPEATS_UNSEEN, event.count)
            return
        call, change, categories = first
        self.stats.calls += event.count
        self.stats.calls_by_syscall[call.syscall] += event.count
        if not self.decider.wants(categories):
            return
        subject = call_subject(call.pid, call.syscall, change, self._info(call.pid))
        judgement = self.decider.call(call, subject, categories, None)
        if judgement is not None:
            judgement = judgement._replace(ts=event.ts, tid=event.tid, result=0, count=event.count)
            # Every one succeeded and none was killed (a kill is never counted).
            self.settler.settle(judgement, self.settler.plan(judgement), Evidence(result=0))

    def call_killed(self, entry: InFlight) -> None:
        """A call whose process is being killed at entry (`entry`: what was
        made of it): it never returns; its judgement waits for the process's death."""
        self._open.discard(entry)
        if entry.judgement is not None and entry.plan is not None:
            self.settler.settle(entry.judgement, entry.plan, Evidence())

    def refused_again(self, entry: InFlight) -> bool:
        """Count a refusal of closure memory (a judgement with a closure
        hint); True when its process has had the same refusal (same syscall,
        categories and calling library) RETRY_LIMIT times: it is retrying in
        a loop (libffi walks temporary directories when every executable
        mapping is refused, and a program may retry the allocation) and is
        to be killed, which its pending judgement now plans and says."""
        judgement = entry.judgement
        if judgement is None:
            return False
        call = entry.call
        if not any(key == "hint" for key, _ in judgement.detail):
            return False  # only closure libraries' refusals: a program may refuse-loop on purpose
        caller = judgement.caller.object if judgement.caller else None
        key = (call.pid, call.syscall, judgement.categories, caller)
        self._refusals[key] += 1
        if self._refusals[key] < RETRY_LIMIT:
            return False
        why = (f"the same call was refused {RETRY_LIMIT} times: the program retries it in a loop and would "
               "never finish, so it was stopped")
        entry.judgement = judgement._replace(detail=(*judgement.detail, ("why", why)))
        entry.plan = Plan(Proof.DEATH, Outcome.KILLED, why)
        return True

    def _judge_killed(self, entry: InFlight) -> None:
        """Judge a call the kernel side killed at its entry that the policy
        did not judge (a call the model could not plan: on its syscall alone)."""
        call = entry.call
        subject = call_subject(call.pid, call.syscall, entry.change, self._info(call.pid))
        judgement = self.decider.call(call, subject, classify(subject, self.model), None, force=True)
        if judgement is not None:
            entry.judgement, entry.plan = judgement, self.settler.plan(judgement)

    def _info(self, pid: int) -> ProcessInfo:
        process = self.model.process(pid)
        return process.info if process is not None else UNKNOWN_PROCESS

    # --- everything else ---------------------------------------------------------------

    def event(self, event: Event) -> Plan | None:
        """Feed a non-call event to its stage (the model, the judging of
        exec-time findings, trampfd and closures, the outputs); return the
        enforcer's plan for a new program the policy judged, None otherwise."""
        route = self._routes.get(type(event))
        return route(event) if route is not None else None

    def _fork(self, event: ForkEvent) -> None:
        child = self.model.fork(event)
        if event.thread:
            return
        copied = event.copied and child is not None and not child.space.holds_uncopied
        if self.gaps is not None and not event.shares_vm and not copied:
            self.gaps.fork(event.child_pid, event.crowded)

    def _exit(self, event: ExitEvent) -> None:
        # A thread that dies inside a call never returns from it.
        pending = event.in_call
        if isinstance(pending, InFlight):
            self._open.discard(pending)
            if pending.judgement is not None and pending.plan is not None:
                self.settler.settle(pending.judgement, pending.plan, Evidence(gone=True))
        if event.status is None:
            self.model.thread_exit(event.pid, event.tid)
        else:
            self.model.exit(event.pid)
            self._forget_repeatable(event.pid)
            self.settler.died(event.pid, event.status)

    def _attach(self, event: AttachEvent) -> None:
        self.model.seed(event.pid, event.process, event.maps, event.personality, event.personas,
                        event.written_before)
        if event.history_unknown:
            self.model.distrust(event.pid, 0, 1 << 64, event.maps)

    def _writable(self, event: WritableObjects) -> None:
        self.model.add_written(event.objects)
        self.model.unreadable_devices.update(event.new_filesystems)

    def _unresolved(self, event: Unresolved) -> None:
        self.stats.drop(Stage.SOURCE, event.what)

    def _stalled(self, event: CallStalled) -> None:
        if not event.returned:
            self.stats.stalled += 1
        if self.gaps is not None:
            self.gaps.stalled(event)

    def _trampfd(self, event: TrampfdEvent) -> None:
        """Judge a trampfd create/map/invoke like any W^X event."""
        process = self.model.process(event.pid)
        subject = trampfd_subject(event, process.info if process else UNKNOWN_PROCESS)
        judgement = self.decider.trampfd(event, subject, classify(subject), process)
        self.settler.settle(judgement, self.settler.plan(judgement), _NOTHING)

    def _closure(self, event: ClosureEvent) -> None:
        """Count a served closure (reported with --trace-trampolines) or
        report a jump into granted memory that was no known trampoline."""
        self.stats.closures[event.op] += 1
        if event.op != "refused" and not self.trace_trampolines:
            return
        process = self.model.process(event.pid)
        subject = closure_subject(event, process.info if process else UNKNOWN_PROCESS)
        judgement = self.decider.closure(event, subject, classify(subject), process, EMULATOR_REFUSAL)
        self.settler.settle(judgement, self.settler.plan(judgement), _NOTHING)

    def _forget_repeatable(self, pid: int) -> None:
        for key in [key for key in self._repeatable if key[0] == pid]:
            del self._repeatable[key]
        self._replays.forget(pid)

    def _exec(self, event: ExecEvent) -> Plan | None:
        self._forget_repeatable(event.pid)
        process = self.model.exec(event)
        subject = exec_subject(event)
        categories = classify(subject, self.model)
        if not categories:
            return None
        judgement = self.decider.exec(event, subject, categories, process)
        plan = self.settler.plan(judgement)
        self.settler.settle(judgement, plan, _NOTHING)
        return plan

    def finish(self, exit_status: int | None) -> RunStats:
        """Close every output with the run's statistics (once); return them."""
        if self.finished:
            return self.stats
        self.finished = True
        self.report_replayed()
        # What never settled is reported with what is known now.
        unreturned, self._open = self._open, set()
        for entry in sorted(unreturned, key=lambda entry: entry.call.ts):
            if entry.judgement is not None and entry.plan is not None:
                self.settler.settle(entry.judgement, entry.plan, Evidence(ended=True))
        self.settler.flush()
        self.stats.exit_status = exit_status
        self.emitter.close()
        return self.stats


# Identical refusals after which a process is taken to retry forever.
RETRY_LIMIT = 200


_SETTLED = CallReply(settled=True)


class PtraceSink(TraceSink):
    """Adapts the Judge to the ptrace source: decisions become replies."""

    def __init__(self, judge: Judge):
        self.judge = judge

    def on_call(self, call: MemCall, peek: Peek) -> tuple[CallReply, InFlight]:
        """Judge at entry; carry out the enforcer's plan: a refusal (the exit
        stop then shows the result) or a kill. The InFlight comes back with
        the call's return."""
        entry = self.judge.call(call, peek)
        return self._reply(entry), entry

    def _reply(self, entry: InFlight) -> CallReply:
        plan = entry.plan
        if plan is None and self.judge.settles_at_entry(entry.call):
            return _SETTLED
        if plan is None or plan.proof is Proof.NONE:
            return ALLOW_WITH_RESULT
        if plan.proof is Proof.RESULT and self.judge.refused_again(entry):
            self.judge.call_killed(entry)
            return KILL_REPLY
        reply = ptrace_reply(plan)
        if reply.kill:
            # It never returns: its judgement waits for the process's death.
            self.judge.call_killed(entry)
        return reply

    def settle_alone(self, call: MemCall) -> bool:
        """Judge and apply at once a call of a task alone in its address
        space, when it settles at entry with nothing to report."""
        return self.judge.settle_alone(call)

    def footprint(self, call: MemCall) -> tuple[tuple[int, int], ...] | None:
        """The ranges the judge needs stable while it judges `call`."""
        return self.judge.footprint(call)

    def on_result(self, call: MemCall, peek: Peek, entry: object | None) -> tuple[CallReply, InFlight]:
        """Judge a call again at exit (`entry`: what its entry made of it);
        the enforcer's plan becomes a reply the source applies to the result
        (a refusal undoes it). The new InFlight comes back with the return."""
        new = self.judge.rejudge(entry if isinstance(entry, InFlight) else None, call, peek)
        return self._reply(new), new

    def returns_unread(self, call: MemCall, failed: bool, entry: object | None) -> bool:
        """Whether the return of `call` can be applied once its thread runs
        again (Judge.returns_unread)."""
        return self.judge.returns_unread(call, failed, entry)

    def acts(self) -> bool:
        """Whether a judgement may act on a process (the enforcer acts)."""
        return self.judge.enforcer.acts

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
                  handler: SyscallHandler | None = None, clone3_exit_only: bool = False,
                  fast: FastFaults | None = None, started_ns: int | None = None) -> int | None:
    """Run argv under the ptrace source; return its wait status
    (`clone3_exit_only`: stopped clone3 calls are judged only when their exit
    finds an untraced child; `fast`: the fast path of the handler's faults;
    `started_ns`: when the run started, as PtraceSource.spawn takes it).

    The tree is started with PTRACE_O_EXITKILL: its seccomp filter makes every
    memory syscall fail with ENOSYS once no tracer is attached, so a program
    that outlived trampwatch would run broken; it dies with the tracer instead.
    """
    source = PtraceSource(PtraceSink(judge), exit_kill=True, handler=handler, fast=fast)
    source.clone3_exit_only = clone3_exit_only

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
        source.spawn(argv, prepare_child, started_ns)
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
    try:
        while not stopping and (deadline is None or time.monotonic() < deadline):
            judge_batch(judge, source, 200)
            if reloading and on_reload is not None:
                reloading = False
                # Calls made before the signal are judged as they were made.
                while judge_batch(judge, source, 0):
                    pass
                on_reload()
        # Drain what the kernel already sent before the stop.
        while judge_batch(judge, source, 0):
            pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


_PROTECTS = frozenset({"mprotect", "pkey_mprotect"})
# Plans whose outcome a call's return settles (a replayed call is never killed).
_PROOF_AT_RETURN = frozenset({Proof.NONE, Proof.KERNEL_KILL})


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


def judge_batch(judge: Judge, source: EbpfSource, timeout_ms: int) -> bool:
    """Judge the events of one poll of `source` (waiting up to `timeout_ms`),
    the cycle collector paused meanwhile; return whether there were any."""
    with cycle_collector_paused():
        batch = source.poll(timeout_ms)
        feed_ebpf(judge, batch)
        judged = bool(batch)
        del batch  # freed before the collector runs again
    return judged


def feed_ebpf(judge: Judge, events: list[Event]) -> None:
    """Judge a batch of eBPF events in order (each call comes whole, as its
    MemReturn, with what the source knew of its range); the calls it
    replayed (CallAgain) are reported at the end of the batch."""
    for event in events:
        judge.event(event)
    judge.report_replayed()


class _PassThrough(TraceSink):
    """A sink that judges nothing: every call goes on, no exit stop asked."""

    def on_call(self, call: MemCall, peek: Peek) -> tuple[CallReply, None]:
        """Let the call run unobserved."""
        return _UNOBSERVED, None

    def settle_alone(self, call: MemCall) -> bool:
        """Nothing is judged: every call goes on unobserved through on_call."""
        return False

    def footprint(self, call: MemCall) -> tuple[tuple[int, int], ...] | None:
        """Nothing is judged: any footprint will do."""
        return None

    def on_result(self, call: MemCall, peek: Peek, entry: object | None) -> tuple[CallReply, None]:
        """Keep the result."""
        return ALLOW_WITH_RESULT, None

    def on_event(self, event: Event) -> bool:
        """Ignore the event."""
        return False


_UNOBSERVED = CallReply(want_exit=False)
PASS_THROUGH = _PassThrough()
