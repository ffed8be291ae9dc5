"""The one value type for everything judged: a memory call's change, a new
program's address space, a trampfd operation, a served closure, a standing
region of a live process (inspect) or a hazard of an ELF file (scan).

A Subject holds what the policy matches (the syscall or pseudo-syscall, who
made it, what memory it is about, the protection) and what the classifier
reads (the model's change, the source's event, what was seen in bytes no
model holds). `classify` (tracer/classify.py) is the only thing that gives
a subject categories, and tracer/policy/facts.py the only thing that turns
one into the policy's Facts.
"""

from __future__ import annotations

import enum
from typing import NamedTuple

from .events import ClosureEvent, ExecEvent, ProcessInfo, TrampfdEvent
from .shadow import FILE, SPECIAL, STACK, UNKNOWN_BACKING, Backing, Change

# The pseudo-syscall of facts found at exec time (an executable stack from the
# ELF header, READ_IMPLIES_EXEC set by the kernel): nothing asked for them.
EXEC_PSEUDO_SYSCALL = "exec"

# The pseudo-syscall of trampfd events (create, map, invoke), real or emulated.
TRAMPFD_PSEUDO_SYSCALL = "trampfd"

TRAMPFD_BACKING = Backing(SPECIAL, "[trampfd]")
CLOSURE_BACKING = Backing(SPECIAL, "[closure]")
# What a process-wide finding (a persona) is about: no memory at all.
NO_BACKING = Backing("none")

# Traits of a standing region, seen in its name or its bytes (inspect):
# a trampfd object (being anonymous or unlinked is what it is, not a
# hazard), or a region that holds trampfd v2 trampolines among other code.
TRAMPFD_OBJECT = "trampfd-object"
HOLDS_TRAMPFD = "holds-trampfd"


class Kind(enum.Enum):
    """What a subject is."""

    CALL = "call"          # a memory syscall: `change` is what the model planned for it (None: unmodelled)
    EXEC = "exec"          # a new program: `event` is the ExecEvent
    TRAMPFD = "trampfd"    # a trampfd create/map/invoke: `event` is the TrampfdEvent
    CLOSURE = "closure"    # a closure served by run --closures: `event` is the ClosureEvent
    REGION = "region"      # a standing region (inspect), as the call that would create it now: `change`
    FILE = "file"          # hazards of an ELF file on disk (scan): `traits` names them


class Subject(NamedTuple):
    """One judged thing. `syscall`, `process`, `backing`, `prot`, `gained`
    (None: what `change` gains, worked out only when the policy asks),
    `new_mapping` and `caller_object` are what the policy matches;
    `start`..`end` the memory it is about (0..0: none known); `change`,
    `event` and `traits` what the classifier reads (see Kind)."""

    kind: Kind
    pid: int
    syscall: str
    process: ProcessInfo
    backing: Backing
    prot: int
    gained: int | None
    new_mapping: bool
    start: int = 0
    end: int = 0
    change: Change | None = None
    event: ExecEvent | TrampfdEvent | ClosureEvent | None = None
    traits: tuple[str, ...] = ()
    caller_object: str | None = None


def call_subject(pid: int, syscall: str, change: Change | None, process: ProcessInfo) -> Subject:
    """A memory call of process `pid` as the model planned it (`change`
    None: a call the model could not plan, nothing known of its range)."""
    if change is None:
        return Subject(Kind.CALL, pid, syscall, process, UNKNOWN_BACKING, 0, 0, False)
    return Subject(Kind.CALL, pid, syscall, process, change.backing, change.prot, None, change.new_mapping,
                   change.start, change.end, change)


def exec_subject(event: ExecEvent) -> Subject:
    """A new program's address space as the kernel built it: judged as an
    exec of the program, the stack its memory."""
    exe = event.process.exe
    return Subject(Kind.EXEC, event.pid, EXEC_PSEUDO_SYSCALL, event.process, Backing(STACK, exe), 0, 0, True,
                   event=event, caller_object=exe)


def trampfd_subject(event: TrampfdEvent, process: ProcessInfo) -> Subject:
    """A trampfd operation (a map makes a new mapping)."""
    return Subject(Kind.TRAMPFD, event.pid, TRAMPFD_PSEUDO_SYSCALL, process, TRAMPFD_BACKING, 0, 0,
                   event.op == "map", event.addr, event.addr + event.length, event=event)


def closure_subject(event: ClosureEvent, process: ProcessInfo) -> Subject:
    """A closure served (an alloc makes a new one) or a jump refused."""
    return Subject(Kind.CLOSURE, event.pid, TRAMPFD_PSEUDO_SYSCALL, process, CLOSURE_BACKING, 0, 0,
                   event.op == "alloc", event.addr, event.addr, event=event)


def region_subject(pid: int, process: ProcessInfo, change: Change, syscall: str, backing: Backing,
                   gained: int, traits: tuple[str, ...] = ()) -> Subject:
    """A standing region (or a process-wide state: a persona) judged as the
    call that would create it now: `change` says what that call does,
    `syscall`, `backing` and `gained` how the policy sees it."""
    return Subject(Kind.REGION, pid, syscall, process, backing, change.prot, gained, change.new_mapping,
                   change.start, change.end, change, traits=traits)


def file_subject(path: str, hazards: tuple[str, ...]) -> Subject:
    """An ELF file with the hazards scan found in it, judged as what would
    happen when it is executed: an exec backed by the file itself."""
    return Subject(Kind.FILE, -1, EXEC_PSEUDO_SYSCALL, ProcessInfo(path, "", -1), Backing(FILE, path), 0, 0,
                   True, traits=hazards, caller_object=path)

