"""The judged event: what happened, which categories it falls in, what the
policy said and what was done (the outcome, as the enforcing code saw it
happen). Outputs render these; nothing changes them.
"""

from __future__ import annotations

import enum
from typing import NamedTuple

from .attribution import Caller
from .categories import Category
from .policy.model import Action, Decision
from .shadow import Backing


class Outcome(enum.StrEnum):
    """What was done about an event: reported by the code that acted (or
    found it could not), never derived from the mode alone."""

    ALLOWED = "allowed"
    LOGGED = "logged"
    WOULD_DENY = "would-deny"
    WOULD_KILL = "would-kill"
    DENIED = "denied"
    KILLED = "killed"
    NOT_ENFORCED = "not-enforced"


# The outcome of a decision nothing enforces (audit mode, or allow/log anywhere).
UNENFORCED = {
    Action.ALLOW: Outcome.ALLOWED,
    Action.LOG: Outcome.LOGGED,
    Action.DENY: Outcome.WOULD_DENY,
    Action.KILL: Outcome.WOULD_KILL,
}


class Judgement(NamedTuple):
    """One W^X event with its categories, the policy's decision and the outcome
    (`reason` says why an outcome is not what the decision asked for);
    `detail` holds extra key/value pairs some events carry (a trampoline's
    target and the registers it set). `count` > 1 stands for that many equal
    calls a source counted instead of delivering one by one, or the judge
    replayed (tracer/replay.py) instead of reporting one by one (`ts` and
    `tid` are the last one's). A named tuple (a copy with changes is
    `_replace`): a judged call makes one and evolves it twice, and the class
    is created at every run's start."""

    ts: float
    source: str
    pid: int
    tid: int
    exe: str
    comm: str
    uid: int
    syscall: str
    arch: str
    args: tuple[int, ...]
    result: int | None
    addr: int
    length: int
    prot: int
    prev_prot: int | None
    backing: Backing
    categories: tuple[Category, ...]
    decision: Decision
    outcome: Outcome
    caller: Caller | None
    detail: tuple[tuple[str, str], ...] = ()
    reason: str | None = None
    count: int = 1

    @property
    def rule(self) -> str | None:
        """The name of the rule that decided, None for the default action."""
        return self.decision.rule

    @property
    def action(self) -> Action:
        """The policy's action."""
        return self.decision.action
