"""The seccomp filter as an enforcer: which of a policy's denials it makes in
the kernel (SECCOMP_RET_ERRNO), and how clone3 is handled.

Only one shape is exact from the arguments alone: an mmap asking for write and
exec together. It is refused in the kernel when the policy refuses *every*
such call with the same errno, whoever makes it: the first rule that can match
one must match them all, have no condition on the process, the caller or the
object, and deny. clone3, whose flags live in memory, is refused outright when
the policy denies it for everyone.

A call the filter refuses never reaches the tracer: no stop, no judgement, no
line. Its outcome is nonetheless known, `denied` (the kernel returns the
errno; nothing else can happen), and `seccomp_enforcement` states it once, at
setup, as the rules the kernel enforces (SeccompEnforcement.notes): the
ptrace enforcer says it as the kernel kill rules' enforcer says its gaps.
"""

from __future__ import annotations

import errno as errnos
from typing import NamedTuple

from ..categories import Category
from ..events import ProcessInfo
from ..judgement import Outcome
from ..policy.engine import decide, matches
from ..policy.facts import facts_of
from ..policy.model import Action, Decision, Match, Policy
from ..shadow import SPECIAL, Backing
from ..sources.seccomp_filter import CLONE3_RULE, TrapRule
from ..subject import Kind, Subject

# The categories a W+X mmap can fall in (wx-map always, the others by backing).
_WX_MMAP_CATEGORIES = frozenset({Category.WX_MAP, Category.ANON_EXEC, Category.EXEC_UNLINKED,
                                 Category.DUAL_MAP, Category.READ_IMPLIES_EXEC})
_MMAPS = frozenset({"mmap", "mmap2"})
_WX = frozenset({"write", "exec"})


def _can_match(match: Match) -> bool:
    """True when the rule could match some W+X mmap."""
    if match.category is not None and match.category.isdisjoint(_WX_MMAP_CATEGORIES):
        return False
    if match.syscall is not None and match.syscall.isdisjoint(_MMAPS):
        return False
    return match.new_mapping is not False


def _matches_all(match: Match) -> bool:
    """True when the rule matches every W+X mmap, whatever else is true of it."""
    unconditional = all(getattr(match, key) is None
                        for key in ("exe", "comm", "uid", "backing", "object_path", "caller"))
    return (
        unconditional
        and (match.category is None or Category.WX_MAP in match.category)
        and (match.syscall is None or match.syscall >= _MMAPS)
        and (match.prot is None or match.prot <= _WX)
        and (match.gains is None or match.gains <= _WX)
    )


def wx_mmap_refusal(policy: Policy) -> tuple[int, str] | None:
    """Return (errno, rule name or 'default') when the policy denies every
    mmap asking for write+exec, else None."""
    for rule in policy.rules:
        if not _can_match(rule.match):
            continue
        if rule.action is Action.DENY and _matches_all(rule.match) and rule.errno is not None:
            return rule.errno, rule.name
        return None
    if policy.default_action is Action.DENY and policy.default_errno is not None:
        return policy.default_errno, "default"
    return None


# Every clone3 the tracer stops, as the shadow model judges it (opaque,
# facility clone3), made by nobody in particular: its flags live in memory,
# so no stop can judge it safely.
_ANYONE = ProcessInfo("", "", -1)
_CLONE3 = Subject(Kind.CALL, -1, "clone3", _ANYONE, Backing(SPECIAL, "[clone3]"), 0, 0, False)
_CLONE3_FACTS = facts_of(_CLONE3, (Category.OPAQUE,))
# A clone3 whose child the kernel did not let the tracer follow
# (CLONE_UNTRACED), as its exit stop finds it.
_CLONE3_UNTRACED_FACTS = facts_of(_CLONE3._replace(backing=Backing(SPECIAL, "[CLONE_UNTRACED]")),
                                  (Category.OPAQUE,))
_PROCESS_KEYS = ("exe", "comm", "uid", "caller")


def clone3_decision(policy: Policy, untraced: bool = False) -> Decision | None:
    """Return the policy's decision on clone3 (`untraced`: on one whose
    child is not followed, CLONE_UNTRACED) when it is the same for every
    process, None when it depends on who calls (then every clone3 stops)."""
    facts = _CLONE3_UNTRACED_FACTS if untraced else _CLONE3_FACTS
    for rule in policy.rules:
        general = rule.match._replace(**dict.fromkeys(_PROCESS_KEYS))
        if not matches(general, facts):
            continue
        if any(getattr(rule.match, key) is not None for key in _PROCESS_KEYS):
            return None
        return Decision(rule.action, rule.name, rule.errno, rule.tags)
    return decide(policy, facts)


class KernelRefusal(NamedTuple):
    """Calls the seccomp filter refuses in the kernel for policy rule `rule`
    (`what` says which: every `syscall`, or only its W+X requests): they
    fail with `errno` and never reach the tracer. `outcome` is what happens
    to each (the kernel returns the errno: `denied`); `note` says so once."""

    what: str
    syscall: str
    errno: int
    rule: str
    note: str
    outcome: Outcome = Outcome.DENIED


class SeccompEnforcement(NamedTuple):
    """What the seccomp filter of a `run` does beyond stopping memory calls
    for the tracer: `refusals` made in the kernel, the clone3 stops it asks
    (`traps`) and whether a stopped clone3 is judged at its exit only."""

    refusals: tuple[KernelRefusal, ...] = ()
    traps: tuple[TrapRule, ...] = ()
    clone3_exit_only: bool = False

    @property
    def notes(self) -> tuple[str, ...]:
        """What the user is told at setup: each refusal and its outcome."""
        return tuple(refusal.note for refusal in self.refusals)

    def errno_of(self, what: str) -> int | None:
        """The errno of the refusal of `what` ("W+X mmap", "clone3"), None when none."""
        return next((refusal.errno for refusal in self.refusals if refusal.what == what), None)


WX_MMAP = "W+X mmap"
CLONE3 = "clone3"
_UNSEEN = ("such calls are counted by no stop and reported by no line: the kernel makes each fail with "
           "that errno")


def seccomp_enforcement(policy: Policy, enforce: bool, refuse_wx: bool) -> SeccompEnforcement:
    """Return what the seccomp filter does for `policy` (`enforce`: in
    enforce mode; `refuse_wx`: W+X mmap may be refused in the kernel, i.e.
    --kernel-deny and no closure emulation, which grants such requests).

    clone3's flags live in memory the program can change after any check,
    so the tracer cannot judge it: a policy that denies it for everyone has
    the filter refuse it with ENOSYS (libc then falls back to clone, whose
    flags are a register); one that allows it for everyone lets it run
    unstopped, unless a clone3 whose child the tracer cannot follow
    (CLONE_UNTRACED, found at the exit) is not allowed too: then every
    clone3 stops and only its exit is judged. Any other decision stops
    every clone3 and judges it as `opaque`."""
    refusals = []
    wx = wx_mmap_refusal(policy) if enforce and refuse_wx else None
    if wx is not None:
        value, rule = wx
        refusals.append(KernelRefusal(
            WX_MMAP, "mmap", value, rule,
            f"W+X mmap is refused in the kernel by the seccomp filter (rule {rule}, {_name(value)}): "
            f"{_UNSEEN} (--no-kernel-deny reports them)"))
    decision = clone3_decision(policy)
    traps: tuple[TrapRule, ...] = (CLONE3_RULE,)
    exit_only = False
    if decision is not None and decision.action is Action.ALLOW:
        untraced = clone3_decision(policy, untraced=True)
        if untraced is not None and untraced.action is Action.ALLOW:
            traps = ()
        else:
            exit_only = True
    elif decision is not None and decision.action is Action.DENY and enforce:
        # Whatever errno the rule names: only ENOSYS makes libc fall back to
        # clone; any other one would make every pthread_create fail.
        asked = "" if decision.errno == errnos.ENOSYS else (
            f"; the rule asks {_name(decision.errno)}, but only ENOSYS lets libc fall back")
        rule = decision.rule or "default"
        refusals.append(KernelRefusal(
            CLONE3, "clone3", errnos.ENOSYS, rule,
            f"clone3 is refused in the kernel by the seccomp filter (rule {rule}, ENOSYS{asked}): its "
            f"arguments cannot be judged; libc falls back to clone; {_UNSEEN}"))
        traps = ()
    return SeccompEnforcement(tuple(refusals), traps, exit_only)


def _name(value: int | None) -> str:
    return str(errnos.errorcode.get(value, value))
