"""The one builder of the policy's Facts: a judged subject, its categories
and (when attribution ran) the object that made the call."""

from __future__ import annotations

from tracer.abi import prot_names
from tracer.categories import Category
from tracer.policy.model import Facts
from tracer.subject import Subject


def facts_of(subject: Subject, categories: tuple[Category, ...], caller_object: str | None = None) -> Facts:
    """Return what the policy engine judges of `subject`: its categories,
    who made it, what memory it is about, the protection it asks for and
    gains. `caller_object` (from attribution) overrides the subject's own
    (an exec's program, a scanned file)."""
    process = subject.process
    backing = subject.backing
    gained = subject.gained
    if gained is None:
        gained = subject.change.gained if subject.change is not None else 0
    return Facts(categories, subject.syscall, process.exe, process.comm, process.uid, backing.kind,
                 backing.path, caller_object if caller_object is not None else subject.caller_object,
                 prot_names(subject.prot), prot_names(gained), subject.new_mapping)
