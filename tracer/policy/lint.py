"""Shadowed-rule detection: a rule is shadowed when a rule evaluated before it
matches every event it matches, so it can never fire.

The check is conservative: it reports only what it can prove key by key
(equal or wider sets, '*' globs, literal patterns another glob matches), so a
warning is always true, while some exotic overlaps go unreported.
"""

from __future__ import annotations

from collections.abc import Sequence

from tracer.categories import Category
from tracer.policy.globs import glob_covers
from tracer.policy.model import BACKING_KINDS, Glob, Match

_ALL_CATEGORIES = frozenset(Category)
_ALL_BACKINGS = frozenset(BACKING_KINDS)


def _set_covers(general: frozenset | None, specific: frozenset | None, universe: frozenset | None) -> bool:
    if general is None:
        return True
    if specific is None:
        return universe is not None and general >= universe
    return specific <= general


def _glob_covers(
    general: Glob | None, specific: Glob | None, *, always_set: bool, basename_too: bool = False
) -> bool:
    if general is None:
        return True
    if specific is None:
        # Only a key that every event has (exe, comm) can be matched by '*'
        # alone; object and caller are absent for some events.
        return always_set and any(p.strip("*") == "" for p in general.patterns)
    return all(any(glob_covers(g, s, basename_too) for g in general.patterns) for s in specific.patterns)


def covers(general: Match, specific: Match) -> bool:
    """Return True when every event matching `specific` also matches `general`."""
    specific_prot = (specific.prot or frozenset()) | (specific.gains or frozenset())
    return (
        _set_covers(general.category, specific.category, _ALL_CATEGORIES)
        and _set_covers(general.syscall, specific.syscall, None)
        and _set_covers(general.uid, specific.uid, None)
        and _set_covers(general.backing, specific.backing, _ALL_BACKINGS)
        and _glob_covers(general.exe, specific.exe, always_set=True)
        and _glob_covers(general.comm, specific.comm, always_set=True)
        and _glob_covers(general.object_path, specific.object_path, always_set=False)
        and _glob_covers(general.caller, specific.caller, always_set=False, basename_too=True)
        # A gained flag is in the new protection too, so `gains` implies `prot`.
        and (general.prot is None or general.prot <= specific_prot)
        and (general.gains is None or general.gains <= (specific.gains or frozenset()))
        and (general.new_mapping is None or general.new_mapping == specific.new_mapping)
    )


def never_matches(match: Match) -> bool:
    """Return True when an empty any-of list makes match unsatisfiable."""
    sets = (match.category, match.syscall, match.uid, match.backing)
    globs = (match.exe, match.comm, match.object_path, match.caller)
    return any(s is not None and not s for s in sets) or any(g is not None and not g.patterns for g in globs)


def shadowing(matches: Sequence[Match]) -> list[tuple[int, int]]:
    """Return (shadowed, by) index pairs over matches given in evaluation order.

    Each shadowed rule is reported once, against the first rule that covers
    it; rules that can never match anyway are left to their own warning.
    """
    found = []
    for later, match in enumerate(matches):
        if never_matches(match):
            continue
        for earlier in range(later):
            # A protection rule also judges calls in no category, which only
            # protection rules see: only another protection rule covers it.
            if match.judges_uncategorised and not matches[earlier].judges_uncategorised:
                continue
            if covers(matches[earlier], match):
                found.append((later, earlier))
                break
    return found
