"""Which of a policy's denials need no state: those the seccomp filter can
refuse in the kernel (SECCOMP_RET_ERRNO) exactly as the tracer would.

Only one shape is exact from the arguments alone: an mmap asking for write and
exec together. It is refused in the kernel when the policy refuses *every*
such call with the same errno, whoever makes it: the first rule that can match
one must match them all, have no condition on the process, the caller or the
object, and deny.
"""

from __future__ import annotations

from dataclasses import replace

from ..categories import Category
from ..policy.engine import decide, matches
from ..policy.model import Action, Decision, Facts, Match, Policy

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


# The facts of every clone3 the tracer stops (shadow model: opaque, facility
# clone3): its flags live in memory, so no stop can judge it safely.
_CLONE3_FACTS = Facts(
    categories=(Category.OPAQUE,), syscall="clone3", exe="", comm="", uid=-1, backing_kind="special",
    object_path="[clone3]", caller_object=None, prot=frozenset(), gained=frozenset(), new_mapping=False,
)
# A clone3 whose child the kernel did not let the tracer follow
# (CLONE_UNTRACED), as its exit stop finds it.
_CLONE3_UNTRACED_FACTS = replace(_CLONE3_FACTS, object_path="[CLONE_UNTRACED]")
_PROCESS_KEYS = ("exe", "comm", "uid", "caller")


def clone3_decision(policy: Policy, untraced: bool = False) -> Decision | None:
    """Return the policy's decision on clone3 (`untraced`: on one whose
    child is not followed, CLONE_UNTRACED) when it is the same for every
    process, None when it depends on who calls (then every clone3 stops)."""
    facts = _CLONE3_UNTRACED_FACTS if untraced else _CLONE3_FACTS
    for rule in policy.rules:
        general = replace(rule.match, **dict.fromkeys(_PROCESS_KEYS))
        if not matches(general, facts):
            continue
        if any(getattr(rule.match, key) is not None for key in _PROCESS_KEYS):
            return None
        return Decision(rule.action, rule.name, rule.errno, rule.tags)
    return decide(policy, facts)
