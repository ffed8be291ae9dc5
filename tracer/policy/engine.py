"""The decision engine: a pure function from (policy, facts) to a decision.

It runs once per traced memory syscall, so everything costly (glob
compilation, set building, rule ordering) was done when the policy loaded.
"""

from __future__ import annotations

from tracer.policy.model import Action, Decision, Facts, Match, Policy

# A call in no category that no rule names is not a W^X event: it is allowed
# without judgement (the default action is for W^X events only).
UNJUDGED = Decision(Action.ALLOW, None, None, ())


def matches(match: Match, facts: Facts) -> bool:
    """Return True when facts satisfy every condition of match."""
    # Cheapest and most selective conditions first.
    if match.category is not None and match.category.isdisjoint(facts.categories):
        return False
    if match.syscall is not None and facts.syscall not in match.syscall:
        return False
    if match.new_mapping is not None and facts.new_mapping != match.new_mapping:
        return False
    if match.backing is not None and facts.backing_kind not in match.backing:
        return False
    if match.prot is not None and not match.prot <= facts.prot:
        return False
    if match.gains is not None and not match.gains <= facts.gained:
        return False
    if match.uid is not None and facts.uid not in match.uid:
        return False
    if match.exe is not None and not match.exe.matches(facts.exe):
        return False
    if match.comm is not None and not match.comm.matches(facts.comm):
        return False
    if match.object_path is not None and (
        facts.object_path is None or not match.object_path.matches(facts.object_path)
    ):
        return False
    if match.caller is not None:
        caller = facts.caller_object
        if caller is None:
            return False
        if not (match.caller.matches(caller) or match.caller.matches(caller.rpartition("/")[2])):
            return False
    return True


def decide(policy: Policy, facts: Facts) -> Decision:
    """Return the decision of the first rule (in evaluation order) whose match
    holds, else the policy's default.

    A call in no category is judged only by protection rules (whose match
    `judges_uncategorised`); when none matches it is allowed unjudged
    (rule None), never given the default action. Never raises for
    well-formed facts."""
    if not facts.categories:
        for rule in policy.rules:
            if rule.match.judges_uncategorised and matches(rule.match, facts):
                return Decision(rule.action, rule.name, rule.errno, rule.tags)
        return UNJUDGED
    for rule in policy.rules:
        if matches(rule.match, facts):
            return Decision(rule.action, rule.name, rule.errno, rule.tags)
    return Decision(policy.default_action, None, policy.default_errno, ())
