"""What enforcement did: for each judged event, the enforcer says what it will
do with the policy's decision (a Plan) and which later observation proves it
was done; `settle` turns that observation into the outcome reports show.

The one control protocol is `Enforcer`: `plan` for each judgement, and
`notes`, what it enforces outside any judgement, said once at setup. AUDIT
(nothing is enforced), PtraceEnforcer (`run`, `attach`: a call refused at
entry or a process killed, `ptrace_reply` turning its plan into the ptrace
source's reply; and the seccomp filter's refusals in the kernel, whose calls
never reach the tracer: tracer/actions/seccomp_deny.py) and
KernelKillEnforcer (`monitor`: eBPF kill rules at syscall entry, and what
they cannot enforce). What the emulators of `run --closures` and
`--emulate-trampfd` already did (served a closure, refused a jump) is an
outcome too, the same under every enforcer. The pipeline holds each
judgement until its plan settles, then emits it.
"""

from __future__ import annotations

import enum
import errno
import os
import signal
from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple, Protocol

from ..events import BLOCKED_PSEUDO_SYSCALL, HELD_PSEUDO_SYSCALL
from ..judgement import UNENFORCED, Judgement, Outcome
from ..policy.model import Action, Decision
from ..sources.ptrace_source import ALLOW_WITH_RESULT, CallReply
from ..subject import EXEC_PSEUDO_SYSCALL

if TYPE_CHECKING:
    from .kernel_enforce import Enforcement
    from .seccomp_deny import SeccompEnforcement


class Proof(enum.Enum):
    """The observation that settles a plan."""

    NONE = "none"                 # nothing is done: the outcome is known now
    RESULT = "result"             # the call is refused at entry: its exit shows -errno
    DEATH = "death"               # the process is killed: it dies by SIGKILL
    KERNEL_KILL = "kernel-kill"   # the kernel side may kill at entry: its kill record arrives


class Plan(NamedTuple):
    """What an enforcer does with one judgement. `outcome`/`reason` are the
    outcome when there is nothing to prove, or when the proof never comes
    (KERNEL_KILL); `errno` is what a refused call must return."""

    proof: Proof
    outcome: Outcome
    reason: str | None = None
    errno: int | None = None


class Evidence(NamedTuple):
    """What was seen after a decision: the call's return value, the kernel's
    kill record (its rule), the process's wait status, or that the thread
    (`gone`) or the whole trace (`ended`) finished without the rest."""

    result: int | None = None
    kernel_kill: str | None = None
    status: int | None = None
    gone: bool = False
    ended: bool = False


class Enforcer(Protocol):
    """Turns a judgement into what will be done about it. `notes` say, once
    at setup, what it enforces where no judgement is made (calls the kernel
    refuses before any tracer sees them) and what it cannot enforce."""

    notes: tuple[str, ...]
    # Whether a plan may act on a process (refuse a call, kill): False for
    # audit, whose plans only say what would have been done.
    acts: bool

    def plan(self, judgement: Judgement) -> Plan:
        """Return the plan for `judgement` (its decision is final)."""


_FORBIDDING = (Action.DENY, Action.KILL)
_KILLED = Outcome.KILLED


# One plan per action for decisions nothing enforces (made once: this is every event's path).
_UNENFORCED_PLANS = {action: Plan(Proof.NONE, outcome) for action, outcome in UNENFORCED.items()}
_KERNEL_KILL_PLANS = {action: Plan(Proof.KERNEL_KILL, outcome) for action, outcome in UNENFORCED.items()}


def _unenforced(decision: Decision) -> Plan:
    return _UNENFORCED_PLANS[decision.action]


# The decision on a jump the closure emulator refused: it acted before anything was judged.
EMULATOR_REFUSAL = Decision(Action.DENY, None, None, ())
_JUMP_REFUSED = Plan(Proof.NONE, Outcome.DENIED,
                     "the jump was not run: the program got the SIGSEGV the kernel delivers")
_CLOSURE_SERVED = Plan(Proof.NONE, Outcome.NOT_ENFORCED,
                       "closures are served by --closures, then judged: reported, not refused")


def _emulated(judgement: Judgement) -> Plan | None:
    """The outcome of what the closure emulator did, whatever the mode: a
    refused jump was denied (the program got its SIGSEGV); a closure served
    is reported, never refused. None for anything else."""
    syscall = judgement.syscall
    if not syscall.startswith("closure-"):
        return None
    if syscall == "closure-refused":
        return _JUMP_REFUSED
    return _CLOSURE_SERVED if judgement.decision.action in _FORBIDDING else None


class _Audit:
    """audit mode: nothing is enforced, forbidding decisions are would-deny/would-kill."""

    notes: tuple[str, ...] = ()
    acts = False

    def plan(self, judgement: Judgement) -> Plan:
        """Return the unenforced outcome of the decision (what an emulator did, for its events)."""
        decision = judgement.decision
        if decision.action in _FORBIDDING:
            return _emulated(judgement) or _unenforced(decision)
        return _unenforced(decision)


AUDIT: Enforcer = _Audit()


class PtraceEnforcer:
    """enforce mode under ptrace: a call denied at entry (skipped, made to
    return -errno), a process killed at a call's entry or at an exec (which
    cannot be refused); and, for a traced command, what its seccomp filter
    refuses in the kernel (`seccomp`: those calls are never judged)."""

    acts = True

    def __init__(self, seccomp: SeccompEnforcement | None = None):
        self.seccomp = seccomp
        self.notes: tuple[str, ...] = seccomp.notes if seccomp is not None else ()

    def plan(self, judgement: Judgement) -> Plan:
        """Return the plan: RESULT for a denied call, DEATH for a kill or a
        forbidden exec, NONE otherwise (trampfd operations are served by the
        emulator before they are judged: not enforced)."""
        decision = judgement.decision
        if decision.action not in _FORBIDDING:
            return _unenforced(decision)
        emulated = _emulated(judgement)
        if emulated is not None:
            return emulated
        if judgement.syscall.startswith("trampfd-"):
            return Plan(Proof.NONE, Outcome.NOT_ENFORCED,
                        "trampfd operations are served by the emulator, then judged: reported, not refused")
        if judgement.syscall == EXEC_PSEUDO_SYSCALL:
            reason = "an exec cannot be refused: killed instead" if decision.action is Action.DENY else None
            return Plan(Proof.DEATH, _KILLED, reason)
        if judgement.syscall == BLOCKED_PSEUDO_SYSCALL:
            reason = "a call blocked in the kernel cannot be refused: killed instead" \
                if decision.action is Action.DENY else None
            return Plan(Proof.DEATH, _KILLED, reason)
        if judgement.syscall == HELD_PSEUDO_SYSCALL:
            reason = "a descriptor or memory held before the attach cannot be refused: killed instead" \
                if decision.action is Action.DENY else None
            return Plan(Proof.DEATH, _KILLED, reason)
        if decision.action is Action.DENY:
            return Plan(Proof.RESULT, Outcome.DENIED, errno=decision.errno)
        return Plan(Proof.DEATH, _KILLED)


KILL_REPLY = CallReply(kill=True)


def ptrace_reply(plan: Plan | None) -> CallReply:
    """How the ptrace source carries out `plan` at a call's entry (or exit):
    kill the process, refuse the call with the plan's errno, or let it run
    and stop at its exit for the result (no plan, or nothing to enforce)."""
    if plan is None or plan.proof is Proof.NONE:
        return ALLOW_WITH_RESULT
    if plan.proof is Proof.DEATH:
        return KILL_REPLY
    if plan.proof is Proof.RESULT:
        return CallReply(deny_errno=plan.errno)
    return ALLOW_WITH_RESULT


class KernelKillEnforcer:
    """enforce mode under eBPF: the kernel side sends SIGKILL at the entry of
    calls its kill rules match (eBPF cannot refuse a call on this kernel);
    what it does not match is not enforced, with the compiler's reason."""

    acts = True

    def __init__(self, enforcement: Enforcement):
        self.enforcement = enforcement
        self.notes = enforcement.notes

    def plan(self, judgement: Judgement) -> Plan:
        """Return KERNEL_KILL for every call (a kill rule may fire whatever
        the user-space decision), with the outcome when none fires."""
        decision = judgement.decision
        if decision.action in _FORBIDDING and (emulated := _emulated(judgement)) is not None:
            return emulated
        if judgement.syscall == EXEC_PSEUDO_SYSCALL:
            if decision.action in _FORBIDDING:
                return Plan(Proof.NONE, Outcome.NOT_ENFORCED,
                            "monitor kills only at memory syscalls' entry, not at exec")
            return _unenforced(decision)
        if decision.action not in _FORBIDDING:
            return _KERNEL_KILL_PLANS[decision.action]
        return Plan(Proof.KERNEL_KILL, Outcome.NOT_ENFORCED, self.enforcement.why_not(decision.rule))


def settle(plan: Plan, judgement: Judgement, seen: Evidence) -> tuple[Outcome, str | None] | None:
    """Return (outcome, reason) once `seen` settles `plan`, None while its
    proof may still come."""
    proof = plan.proof
    if proof is Proof.NONE:
        return plan.outcome, plan.reason
    finished = seen.gone or seen.ended
    if proof is Proof.KERNEL_KILL:
        if seen.kernel_kill is not None:
            return _KILLED, _kernel_kill_reason(judgement.decision, seen.kernel_kill)
        return (plan.outcome, plan.reason) if seen.result is not None or finished else None
    if proof is Proof.RESULT:
        if seen.result is not None:
            want = -(plan.errno or 0)
            if seen.result == want:
                return Outcome.DENIED, None
            return Outcome.NOT_ENFORCED, f"the call returned {_result(seen.result)}, not {_result(want)}"
        if finished:
            return Outcome.NOT_ENFORCED, "the thread was gone before the refused call returned"
        return None
    if seen.status is not None:
        if os.WIFSIGNALED(seen.status) and os.WTERMSIG(seen.status) == signal.SIGKILL:
            return _KILLED, plan.reason
        return Outcome.NOT_ENFORCED, f"the process ended otherwise ({_describe(seen.status)})"
    if seen.ended:
        return Outcome.NOT_ENFORCED, "trampwatch stopped before the process was seen to die"
    return None


class Settler:
    """The ENFORCE stage: the enforcer's plan for each judgement, held until
    what is seen afterwards settles its outcome; each settled judgement goes
    to `emit`, with its outcome."""

    def __init__(self, enforcer: Enforcer, emit: Callable[[Judgement], None]):
        self.enforcer = enforcer
        self.emit = emit
        # Judgements whose plan waits for their process's death, by pid.
        self._awaiting: dict[int, list[tuple[Judgement, Plan]]] = {}

    @property
    def enforcer(self) -> Enforcer:
        """What plans the enforcement of each decision (replaceable: a reload)."""
        return self._enforcer

    @enforcer.setter
    def enforcer(self, enforcer: Enforcer) -> None:
        self._enforcer = enforcer
        # `plan(judgement)`: the enforcer's plan, bound once (every judged call asks).
        self.plan = enforcer.plan

    def settle(self, judgement: Judgement, plan: Plan, seen: Evidence, **learnt: int) -> Judgement | None:
        """Emit `judgement` (with the fields `learnt` since it was made) and
        its outcome once `seen` settles `plan`, and return what was emitted;
        else keep it until its process dies (died) or the run ends (flush),
        and return None."""
        if plan.proof is Proof.NONE:
            outcome, reason = plan.outcome, plan.reason
        else:
            settled = settle(plan, judgement, seen)
            if settled is None:
                held = judgement._replace(**learnt) if learnt else judgement
                self._awaiting.setdefault(judgement.pid, []).append((held, plan))
                return None
            outcome, reason = settled
        changes: dict[str, object] = learnt
        if outcome is not judgement.outcome or reason is not None:
            changes = {**learnt, "outcome": outcome, "reason": reason}
        emitted = judgement._replace(**changes) if changes else judgement
        self.emit(emitted)
        return emitted

    def died(self, pid: int, status: int) -> None:
        """Process `pid` ended with wait status `status`: settle what waited for it."""
        for judgement, plan in self._awaiting.pop(pid, ()):
            self.settle(judgement, plan, Evidence(status=status))

    def flush(self) -> None:
        """The run ended: settle everything still waiting with what is known."""
        awaiting, self._awaiting = self._awaiting, {}
        for judged in awaiting.values():
            for judgement, plan in judged:
                self.settle(judgement, plan, Evidence(ended=True))


def _kernel_kill_reason(decision: Decision, rule: str) -> str | None:
    if decision.action is Action.DENY:
        return f"eBPF cannot refuse a call here: kernel kill rule {rule} killed the process instead"
    if decision.action is not Action.KILL or decision.rule != rule:
        return f"kernel kill rule {rule} fired (it judges from the arguments alone)"
    return None


def _result(value: int) -> str:
    name = errno.errorcode.get(-value) if -4096 < value < 0 else None
    return f"-{name}" if name else f"{value:#x}" if value >= 0 else str(value)


def _describe(status: int) -> str:
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        return f"signal {signal.Signals(sig).name if sig in signal.valid_signals() else sig}"
    return f"exit {os.WEXITSTATUS(status)}" if os.WIFEXITED(status) else f"status {status:#x}"
