"""Shell-style globs for policy match keys: a syntax check stricter than
fnmatch's (which silently takes a lone '[' literally), and compilation of a
list of patterns into one regular expression.
"""

from __future__ import annotations

import fnmatch
import re

from tracer.policy.model import Glob

_NEVER = re.compile(r"(?!)")


def glob_problem(pattern: str) -> str | None:
    """Return why pattern is not a usable glob, or None when it is."""
    if not pattern:
        return "empty pattern: it matches nothing"
    i = 0
    while i < len(pattern):
        if pattern[i] != "[":
            i += 1
            continue
        # Same class grammar as fnmatch: an optional '!', then a ']' right
        # at the start is a literal member, then members up to the next ']'.
        j = i + 1
        if j < len(pattern) and pattern[j] == "!":
            j += 1
        start = j
        if j < len(pattern) and pattern[j] == "]":
            j += 1
        while j < len(pattern) and pattern[j] != "]":
            j += 1
        if j >= len(pattern):
            return f"unbalanced '[' at offset {i} in pattern {pattern!r} (write '[[]' for a literal '[')"
        reversed_range = _reversed_range(pattern[start:j])
        if reversed_range:
            return f"range {reversed_range!r} in pattern {pattern!r} is reversed and matches nothing"
        i = j + 1
    return None


def _reversed_range(members: str) -> str | None:
    """Return the first 'z-a' style range in a class body, or None."""
    k = 0
    while k < len(members):
        if k + 2 < len(members) and members[k + 1] == "-":
            if members[k] > members[k + 2]:
                return members[k : k + 3]
            k += 3
        else:
            k += 1
    return None


def compile_glob(patterns: tuple[str, ...]) -> Glob:
    """Return a Glob matching any of patterns (none: matches nothing).

    Patterns must already have passed glob_problem(); matching is
    case-sensitive and '*' crosses '/' as in fnmatch.
    """
    if not patterns:
        return Glob(patterns, _NEVER)
    regex = re.compile("|".join(f"(?:{fnmatch.translate(p)})" for p in patterns))
    return Glob(patterns, regex)


def glob_covers(general: str, specific: str, basename_too: bool = False) -> bool:
    """Return True when every string specific matches is also matched by general.

    Decided only where it is cheap and certain: equal patterns, a general '*'
    pattern, or a specific pattern with no wildcards that general matches.
    With basename_too, strings are matched by full path or by basename, as
    the `caller` key does.
    """
    if general == specific or general.strip("*") == "":
        return True
    if any(ch in specific for ch in "*?["):
        return False
    targets = [specific]
    if basename_too:
        targets.append(specific.rpartition("/")[2])
    return any(fnmatch.fnmatchcase(t, general) for t in targets)
