"""Turn a policy's deny/kill rules into the eBPF monitor's kernel kill rules,
and say, rule by rule, how exactly the kernel can enforce them.

The monitor can only kill at syscall entry (bpf_send_signal): BPF LSM and
fentry programs are refused on hosts like this one, so a deny rule falls back
to kill, and only categories a stateless check of the call's arguments can
recognise are enforced in the kernel at all.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..abi import MAP_ANONYMOUS, PROT_EXEC, PROT_READ, PROT_WRITE
from ..categories import Category
from ..policy.model import Action, Match, Policy
from ..sources.ebpf_records import KILL_SYSCALLS, KillRule

_WX = PROT_WRITE | PROT_EXEC
_X = PROT_EXEC


@dataclass(frozen=True)
class Coverage:
    """How far the kernel can enforce one category: the checks of a call's
    entry that stop it, each (syscall, prot_all, flags_all); whether they stop
    exactly the calls the classifier puts in the category (`exact`); and
    what differs (`note`)."""

    checks: tuple[tuple[str, int, int], ...]
    exact: bool
    note: str


# Every category a stateless check of one syscall's entry can recognise.
# The others (dual-map, execmod, exec-unlinked, execstack, foreign-write,
# trampfd) need state or events the entry of one syscall does not have.
COVERAGE: dict[Category, Coverage] = {
    Category.WX_MAP: Coverage(
        (("mmap", _WX, 0), ("shmat", _WX, 0)), False,
        "exact for mmap and shmat asking for write+exec (after READ_IMPLIES_EXEC); "
        "an mremap that moves an existing W+X region is not stopped"),
    Category.WX_PROTECT: Coverage(
        (("mprotect", _WX, 0), ("pkey_mprotect", _WX, 0)), True,
        "exact: mprotect/pkey_mprotect asking for write+exec"),
    Category.SHM_EXEC: Coverage((("shmat", _X, 0),), True, "exact: shmat with SHM_EXEC"),
    Category.READ_IMPLIES_EXEC: Coverage(
        (("personality", _X, 0),), False,
        "exact for personality() setting READ_IMPLIES_EXEC; the persona the kernel "
        "gives an old binary at exec involves no syscall and is not stopped"),
    Category.ANON_EXEC: Coverage(
        (("mmap", _X, MAP_ANONYMOUS),), False,
        "exact for anonymous mmap asking for exec; mprotect making an anonymous "
        "region executable is not stopped (the kernel side does not know regions)"),
    Category.W_TO_X: Coverage(
        (("mprotect", _X, 0), ("pkey_mprotect", _X, 0)), False,
        "over-approximation (systemd MemoryDenyWriteExecute's): every mprotect asking "
        "for exec is stopped, also of regions that were never writable"),
    Category.EXECHEAP: Coverage(
        (("brk", _X, 0),), False,
        "brk moving the break under READ_IMPLIES_EXEC (also when it shrinks the heap); "
        "mprotect of the heap is not stopped"),
    Category.OPAQUE: Coverage(
        (("prctl", 0, 0),), False,
        "prctl(PR_SET_MM) only (the kernel side sends no other call of this category: io_uring, "
        "userfaultfd, clone3 and the rest are not stopped)"),
}


def kill_rules_for(category: Category, rule: str) -> tuple[tuple[KillRule, ...], Coverage] | None:
    """Return the kernel kill rules for a deny/kill policy rule named `rule`
    that matches `category` (and nothing narrower), with how exact they are;
    None when no stateless syscall-entry check can express the category."""
    coverage = COVERAGE.get(category)
    if coverage is None:
        return None
    rules = tuple(KillRule(rule, syscall, prot, flags_all=flags) for syscall, prot, flags in coverage.checks)
    return rules, coverage


@dataclass(frozen=True)
class Enforcement:
    """The kernel kill rules of a policy and what they cannot do: `notes` for
    the user, `gaps` the same per policy rule (what an event that rule
    forbids, when no kill rule fired, reports as its reason)."""

    rules: tuple[KillRule, ...]
    notes: tuple[str, ...]
    exact: bool
    gaps: tuple[tuple[str, str], ...] = ()

    def why_not(self, rule: str | None) -> str:
        """Why a call policy rule `rule` (None: the default action) forbids
        was not killed by the kernel side."""
        if rule is None:
            return "the default action is not enforced in the kernel (only rules become kill rules)"
        gaps = [gap for name, gap in self.gaps if name == rule]
        if gaps:
            return "; ".join(gaps)
        return f"no kernel kill rule compiled from rule {rule} matched this call"


def compile_kill_rules(policy: Policy) -> Enforcement:
    """Return the kill rules for every deny/kill rule of `policy` that matches
    on categories only (other conditions, like exe globs, need the model in
    user space: those rules are reported, not enforced in the kernel)."""
    rules: list[KillRule] = []
    gaps: list[tuple[str, str]] = []
    exact = True
    for rule in policy.rules:
        if rule.action not in (Action.DENY, Action.KILL):
            continue
        match = rule.match
        if _needs_user_space(match):
            gaps.append((rule.name, "matches on the process or the region (exe, comm, uid, backing, object, "
                                    "caller): reported, not enforced in the kernel"))
            exact = False
            continue
        if match.category is None:
            found, precise = _protection_rule(rule.name, match)
            rules.extend(found)
            if not precise:
                gaps.append((rule.name, "'gains' is judged as 'asks for' in the kernel (it does not know "
                                        "regions)"))
                exact = False
            continue
        for category in sorted(match.category, key=str):
            found = kill_rules_for(category, rule.name)
            if found is None:
                gaps.append((rule.name, f"{category} cannot be recognised at syscall entry: reported only"))
                exact = False
                continue
            category_rules, coverage = found
            wanted = [r for r in category_rules if match.syscall is None or r.syscall in match.syscall]
            if not wanted:
                gaps.append((rule.name, f"{category} of these syscalls cannot be recognised at syscall "
                                        "entry: reported only"))
                exact = False
                continue
            rules.extend(wanted)
            if not coverage.exact:
                gaps.append((rule.name, f"{category}: {coverage.note}"))
                exact = False
    notes = tuple(f"rule {name}: {gap}" for name, gap in gaps)
    return Enforcement(tuple(dict.fromkeys(rules)), notes, exact, tuple(gaps))


def _needs_user_space(match: Match) -> bool:
    """True when a rule looks at who runs or what is mapped: the kernel side
    sees only the call's arguments."""
    keys = ("exe", "comm", "uid", "backing", "object_path", "caller")
    return any(getattr(match, key) is not None for key in keys)


_PROT_BITS = {"read": PROT_READ, "write": PROT_WRITE, "exec": PROT_EXEC}


def _protection_rule(name: str, match: Match) -> tuple[list[KillRule], bool]:
    """Kill rules for a rule on syscalls and protection bits (like mdwe's);
    returns them and whether they are exact."""
    prot = 0
    for flag in (match.prot or frozenset()) | (match.gains or frozenset()):
        prot |= _PROT_BITS[flag]
    if prot == 0:
        return [], False  # a rule on syscalls alone would kill every such call
    syscalls = match.syscall if match.syscall is not None else KILL_SYSCALLS
    # prctl asks for no protection: no protection rule can match it.
    found = [KillRule(name, syscall, prot) for syscall in sorted(syscalls)
             if syscall in KILL_SYSCALLS and syscall != "prctl"]
    return found, match.gains is None
