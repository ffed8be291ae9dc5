"""The policy model: what a loaded policy is, what the engine judges (Facts)
and what it answers (Decision). Plain frozen data; loading lives in loader.py,
judging in engine.py.

Named tuples, not frozen dataclasses: every run loads a policy, and six
dataclasses cost a few ms of its start-up to create (a named tuple a tenth
of that); a judged call's Facts and Decision are cheaper to make too. A
copy with changes is `_replace`. Annotations are evaluated, not postponed:
a named tuple compiles each string annotation into a ForwardRef.
"""

import enum
import re
from typing import NamedTuple

from tracer.abi import KNOWN_SYSCALLS
from tracer.categories import Category
from tracer.errors import PolicyIssue
from tracer.subject import EXEC_PSEUDO_SYSCALL, TRAMPFD_PSEUDO_SYSCALL

API_VERSION = "trampwatch.dev/v1"
KIND = "WXPolicy"


MODES: tuple[str, ...] = ("audit", "enforce")
# spec.closures: how `run` serves closures (docs/closures.md); off by default.
CLOSURE_MODES: tuple[str, ...] = ("off", "auto", "trampfd", "emulate")
MATCH_SYSCALLS: frozenset[str] = KNOWN_SYSCALLS | {EXEC_PSEUDO_SYSCALL, TRAMPFD_PSEUDO_SYSCALL}
BACKING_KINDS: tuple[str, ...] = (
    "anon",
    "file",
    "memfd",
    "shm",
    "shared-anon",
    "stack",
    "heap",
    "special",
    "unknown",
    "none",
)
PROT_FLAGS: tuple[str, ...] = ("read", "write", "exec")


class Action(enum.StrEnum):
    """What to do with a judged event; the value is the name users write."""

    ALLOW = "allow"
    LOG = "log"
    DENY = "deny"
    KILL = "kill"


class Facts(NamedTuple):
    """Everything the engine judges about one subject; tracer/policy/facts.py
    builds it.

    `prot` is the effective protection after the call (READ_IMPLIES_EXEC
    already applied), `gained` the flags the call adds to some part of the
    range, `caller_object` the full path of the object that made the call.
    """

    categories: tuple[Category, ...]
    syscall: str
    exe: str
    comm: str
    uid: int
    backing_kind: str
    object_path: str | None
    caller_object: str | None
    prot: frozenset[str]
    gained: frozenset[str]
    new_mapping: bool


class Decision(NamedTuple):
    """The verdict on one event: `rule` is None when the default action applied,
    `errno` is set only for deny."""

    action: Action
    rule: str | None
    errno: int | None
    tags: tuple[str, ...]


class Glob(NamedTuple):
    """Shell-style patterns (any-of), compiled once into one regular expression."""

    patterns: tuple[str, ...]
    regex: re.Pattern[str]

    def matches(self, text: str) -> bool:
        """Return True when text matches any of the patterns."""
        return self.regex.match(text) is not None


class Match(NamedTuple):
    """A rule's conditions, ANDed; None means the key was not written.

    Sets are any-of, except `prot` and `gains`, whose flags must all hold.
    """

    category: frozenset[Category] | None = None
    exe: Glob | None = None
    comm: Glob | None = None
    uid: frozenset[int] | None = None
    syscall: frozenset[str] | None = None
    backing: frozenset[str] | None = None
    object_path: Glob | None = None
    caller: Glob | None = None
    prot: frozenset[str] | None = None
    gains: frozenset[str] | None = None
    new_mapping: bool | None = None

    @property
    def judges_uncategorised(self) -> bool:
        """True for a protection rule's match: it names protection bits
        (`prot` or `gains`) and no category, so it also judges calls in no W^X
        category (which no other rule sees)."""
        return self.category is None and (self.prot is not None or self.gains is not None)


class Rule(NamedTuple):
    """One rule; `errno` is a number, set only when `action` is deny."""

    name: str
    description: str
    match: Match
    action: Action
    errno: int | None
    priority: int
    tags: tuple[str, ...]


class Policy(NamedTuple):
    """A loaded policy: `rules` are already in evaluation order (priority
    descending, then file order); `warnings` never stopped the load."""

    name: str
    description: str
    source: str
    mode: str | None
    default_action: Action
    default_errno: int | None
    rules: tuple[Rule, ...]
    warnings: tuple[PolicyIssue, ...]
    closures: str | None = None
