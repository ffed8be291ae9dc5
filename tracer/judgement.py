"""The judged event: what happened, which categories it falls in, what the
policy said and what was done. Outputs render these; nothing changes them.
"""

from __future__ import annotations

from dataclasses import dataclass

from .attribution import Caller
from .categories import Category
from .policy.model import Action, Decision
from .shadow import Backing

SCHEMA_VERSION = 1

# What each action means in each mode, as reports spell it.
VERDICTS = {
    ("audit", Action.ALLOW): "allowed",
    ("audit", Action.LOG): "logged",
    ("audit", Action.DENY): "would deny",
    ("audit", Action.KILL): "would kill",
    ("enforce", Action.ALLOW): "allowed",
    ("enforce", Action.LOG): "logged",
    ("enforce", Action.DENY): "denied",
    ("enforce", Action.KILL): "killed",
}


@dataclass(frozen=True)
class Judgement:
    """One W^X event with its categories, the policy's decision and the outcome;
    `detail` holds extra key/value pairs some events carry (a trampoline's
    target and the registers it set). `count` > 1 stands for that many equal
    calls a source counted instead of delivering one by one (`ts` and `tid`
    are the last one's)."""

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
    verdict: str
    caller: Caller | None
    detail: tuple[tuple[str, str], ...] = ()
    count: int = 1

    @property
    def rule(self) -> str | None:
        """The name of the rule that decided, None for the default action."""
        return self.decision.rule

    @property
    def action(self) -> Action:
        """The policy's action."""
        return self.decision.action
