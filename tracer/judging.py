"""The DECIDE stage: a classified subject becomes the policy's decision and
the report of it (a Judgement), the one place both are made.

`Decider` holds the policy (and what it needs: caller attribution, whether
uncategorised calls are judged); it asks facts_of for the policy's facts,
decide() for the decision, and builds every Judgement through one builder.
It never enforces and never writes: the ENFORCE stage (tracer/actions)
settles the outcome, the outputs write it.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from .abi import PROT_EXEC, PROT_WRITE
from .attribution import Attributor, Caller
from .categories import Category
from .events import ClosureEvent, ExecEvent, MemCall, TrampfdEvent
from .judgement import UNENFORCED, Judgement
from .policy.engine import decide
from .policy.facts import facts_of
from .policy.model import Action, Decision, Policy
from .shadow import ANON_BACKING, Change, Process, ShadowModel
from .sources.ptrace_source import STACK_SAMPLE
from .subject import EXEC_PSEUDO_SYSCALL, Subject

Peek = Callable[[int, int], bytes]

# Libraries that ask for closure memory, by file name prefix (what they are).
CLOSURE_LIBRARIES = {
    "libffi.so": "libffi (closures)",
    "libffi_pic": "libffi (closures)",
    "ffi_c.so": "Ruby FFI (closures)",
    "_cffi_backend": "cffi (closures)",
    "_ctypes": "ctypes (closures)",
}
_FORBIDDING = (Action.DENY, Action.KILL)
# The caller of a call whose source gives no registers: what attribution says of address 0.
_NO_CALLER = Caller(0, None, None, 0)
_EXECSTACK_HINT = (("hint", "an executable stack is what GCC nested functions need for their trampolines; "
                            "`trampwatch run --closures` serves them without one (docs/closures.md)"),)


class Decider:
    """Decides and reports each subject of one run by `policy`, against the
    run's shadow `model` (read for attribution only); `source` names the
    source in reports, `report_all` reports calls in no category too."""

    def __init__(self, policy: Policy, model: ShadowModel, source: str, report_all: bool = False):
        self.model = model
        self.source = source
        self.report_all = report_all
        self.attributor = Attributor(unreadable_devices=model.unreadable_devices)
        self.set_policy(policy)

    def set_policy(self, policy: Policy) -> None:
        """Decide by `policy` from now on."""
        self.policy = policy
        # Only rules without a category condition can judge uncategorised calls.
        self.judges_uncategorised = any(rule.match.judges_uncategorised for rule in policy.rules)
        self.matches_caller = any(rule.match.caller is not None for rule in policy.rules)

    def wants(self, categories: tuple[Category, ...]) -> bool:
        """True when a call in `categories` may be judged at all (a W^X
        event, --all-calls, or a policy that judges uncategorised calls)."""
        return bool(categories) or self.report_all or self.judges_uncategorised

    def call(self, call: MemCall, subject: Subject, categories: tuple[Category, ...], peek: Peek | None,
             force: bool = False) -> Judgement | None:
        """Return the judgement of a call, or None when it is neither a W^X
        event nor matched by a rule (and --all-calls is off), unless `force`."""
        change = subject.change
        # Attribution reads the tracee's stack: only pay for it when a rule
        # needs the caller or the event will be reported.
        caller = self._caller(call, peek) if self.matches_caller and change is not None else None
        decision = decide(self.policy, facts_of(subject, categories, caller.object if caller else None))
        if not (categories or self.report_all or decision.rule is not None or force):
            return None
        if change is None:
            # Unmodelled: nothing known of its range, no caller to name.
            return self.judgement(subject, categories, decision, call.ts, call.tid, call.syscall, call.arch,
                                  call.args, None, None)
        if caller is None:
            caller = self._caller(call, peek)
        hint = closure_hint(caller.object if caller else None, decision.action)
        return self.judgement(subject, categories, decision, call.ts, call.tid, call.syscall, call.arch,
                              call.args, None, caller,
                              (*_call_detail(call, change), *((("hint", hint),) if hint else ())))

    def trampfd(self, event: TrampfdEvent, subject: Subject, categories: tuple[Category, ...],
                process: Process | None) -> Judgement:
        """Judge a trampfd create/map/invoke like any W^X event."""
        decision = decide(self.policy, facts_of(subject, categories))
        caller = target = None
        if process is not None:
            regions = process.space.snapshot()
            # An address's object and symbol (no stack: the address itself).
            caller = self.attributor.caller(event.caller, b"", 0, regions) if event.caller else None
            target = self.attributor.caller(event.target, b"", 0, regions) if event.target else None
        detail = [("target", _describe_address(event.target, target))] if event.target else []
        if event.registers:
            detail.append(("registers", ",".join(f"{name}={value:#x}" for name, value in event.registers)))
        return self.judgement(subject, categories, decision, event.ts, event.tid, f"trampfd-{event.op}",
                              "x86_64", tuple(value for _, value in event.registers), event.target, caller,
                              tuple(detail))

    def closure(self, event: ClosureEvent, subject: Subject, categories: tuple[Category, ...],
                process: Process | None, refusal: Decision) -> Judgement:
        """Judge a served closure, or report a jump the emulator refused
        (its decision is `refusal`: the emulator acted, the policy is not asked)."""
        regions = process.space.snapshot() if process is not None else ()
        caller = self.attributor.caller(event.caller, b"", 0, regions) if event.caller and regions else None
        if event.op == "refused":
            decision = refusal
            detail = [("why", "execution of written memory that holds no known trampoline")]
        else:
            decision = decide(self.policy, facts_of(subject, categories))
            target = self.attributor.caller(event.target, b"", 0, regions) if regions else None
            detail = [("target", _describe_address(event.target, target)), ("data", f"{event.data:#x}"),
                      ("pattern", event.pattern)]
        return self.judgement(subject, categories, decision, event.ts, event.tid, f"closure-{event.op}",
                              event.arch, (event.data,), event.target or None, caller,
                              (("mode", event.mode), *detail))

    def exec(self, event: ExecEvent, subject: Subject, categories: tuple[Category, ...],
             process: Process) -> Judgement:
        """Judge a new program's address space (`process`, as the model now
        holds it); the report names the region at fault: the stack, or a
        W+X segment when the stack is not executable."""
        decision = decide(self.policy, facts_of(subject, categories))
        region = next((r for r in process.space if r.backing.kind == "stack"), None)
        if Category.EXECSTACK not in categories and Category.WX_MAP in categories:
            region = next((r for r in process.space if r.prot & PROT_WRITE and r.prot & PROT_EXEC), region)
        hint = _EXECSTACK_HINT if Category.EXECSTACK in categories and decision.action in _FORBIDDING else ()
        judgement = self.judgement(subject, categories, decision, event.ts, event.tid, EXEC_PSEUDO_SYSCALL,
                                   "", (), 0, Caller(0, event.process.exe, None, 0), hint)
        return judgement._replace(addr=region.start if region else 0,
                                  length=(region.end - region.start) if region else 0,
                                  prot=region.prot if region else 0,
                                  backing=region.backing if region else ANON_BACKING)

    def judgement(self, subject: Subject, categories: tuple[Category, ...], decision: Decision, ts: float,
                  tid: int, syscall: str, arch: str, args: tuple[int, ...], result: int | None,
                  caller: Caller | None, detail: tuple[tuple[str, str], ...] = ()) -> Judgement:
        """The one builder of a report: `subject` judged, in `categories`,
        by `decision`; `syscall` is the name the report gives it, the rest
        what the source saw. Its outcome is the unenforced one until the
        enforcer's plan settles it."""
        process = subject.process
        change = subject.change
        return Judgement(
            ts=ts, source=self.source, pid=subject.pid, tid=tid, exe=process.exe, comm=process.comm,
            uid=process.uid, syscall=syscall, arch=arch, args=args, result=result, addr=subject.start,
            length=subject.end - subject.start, prot=subject.prot,
            prev_prot=change.prev_prot if change is not None and change.parts else None,
            backing=subject.backing, categories=categories, decision=decision,
            outcome=UNENFORCED[decision.action], caller=caller, detail=detail,
        )

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


def closure_hint(caller_object: str | None, action: Action) -> str | None:
    """The hint a refused closure page gets: which library wanted it and
    that `run --closures` serves it; None for any other call."""
    if action not in _FORBIDDING or not caller_object:
        return None
    name = os.path.basename(caller_object)
    what = next((what for prefix, what in CLOSURE_LIBRARIES.items() if name.startswith(prefix)), None)
    if what is None:
        return None
    return (f"{name} ({what}) wanted this memory for closures; `trampwatch run --closures` serves them "
            "without W+X memory (docs/closures.md)")


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


def _describe_address(addr: int, where: Caller | None) -> str:
    """'0x... (object:symbol+0x..)' for reports."""
    if where is None or not where.object:
        return f"{addr:#x}"
    name = where.object.rsplit("/", 1)[-1]
    if where.symbol:
        name += f":{where.symbol}" + (f"+{where.offset:#x}" if where.offset else "")
    return f"{addr:#x} ({name})"
