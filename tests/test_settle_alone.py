"""The one-stop path of a call of a task alone in its address space
(Judge.settle_alone) against the usual two (Judge.call, the sink's reply,
then the call's return): for every call it takes, the model, the run's
counts and the reports must come out the same, and the usual path must
have settled it at entry with nothing to report. And the source's count of
the tasks in each address space, which says when a task is alone, against
a look at every task. Pure: twin judges fed the same calls, no tracee."""

from __future__ import annotations

import random

import pytest

from tracer.abi import (
    PAGE_SIZE,
    PROT_EXEC,
    PROT_GROWSDOWN,
    PROT_READ,
    PROT_WRITE,
    READ_IMPLIES_EXEC,
)
from tracer.events import AttachEvent, ForkEvent, MapEntry, MemCall, MemReturn, ProcessInfo
from tracer.pipeline import Judge, PtraceSink
from tracer.policy.loader import load_policy_text, resolve_policy
from tracer.sources.ptrace_source import _Task, _Tasks

R, W, X = PROT_READ, PROT_WRITE, PROT_EXEC
PID, RIE_TID = 7, 8
INFO = ProcessInfo("/usr/bin/prog", "prog", 1000)
BASE = 0x7F0000000000
P = PAGE_SIZE
# Private anonymous pages (some that merge, some that do not), a private
# file view, a shared memfd view, a shared file view, a stack: every kind
# of region the one-stop path must take or leave.
MAPS = (
    MapEntry(0x400000, 0x402000, R | X, False, 0, 8, 11, "/usr/bin/prog"),
    MapEntry(0x402000, 0x403000, R | W, False, 0x2000, 8, 11, "/usr/bin/prog"),
    MapEntry(BASE, BASE + 4 * P, R | W, False, 0, 0, 0, ""),
    MapEntry(BASE + 4 * P, BASE + 6 * P, R, False, 0, 0, 0, ""),
    MapEntry(BASE + 8 * P, BASE + 10 * P, R | W, True, 0, 1, 77, "/memfd:jit (deleted)"),
    MapEntry(BASE + 10 * P, BASE + 12 * P, R, True, 0, 8, 12, "/data/shared"),
    MapEntry(BASE + 12 * P, BASE + 16 * P, R | W, False, 0, 0, 0, ""),
    MapEntry(0x7FFF0000, 0x7FFF8000, R | W, False, 0, 0, 0, "[stack]"),
)
CATEGORY_FREE = """\
apiVersion: trampwatch.dev/v1
kind: WXPolicy
metadata: {name: writes}
spec:
  defaultAction: allow
  rules:
    - {name: writes, match: {prot: [write]}, action: log}
"""


def twins(policy_name: str, report_all: bool) -> tuple[Judge, Judge]:
    """Two judges in the same state (a gone pid: /proc has nothing of it)."""
    policy = load_policy_text(CATEGORY_FREE, "writes.yaml") if policy_name == "writes" \
        else resolve_policy(policy_name)
    judges = []
    for _ in range(2):
        judge = Judge(policy, "audit", [Kept()], source="ptrace", report_all=report_all)
        judge.event(AttachEvent(0.0, PID, INFO, MAPS, 0))
        judge.event(ForkEvent(0.0, PID, PID, PID, True, True, child_tid=RIE_TID,
                              personality=READ_IMPLIES_EXEC))
        judges.append(judge)
    return judges[0], judges[1]


class Kept:
    """An output that keeps what it is given."""

    def __init__(self) -> None:
        self.judged: list = []

    def emit(self, judgement) -> None:
        self.judged.append(judgement)

    def lost(self, event) -> None:
        pass

    def close(self, stats) -> None:
        pass


def peek(addr: int, size: int) -> bytes:
    return b""


def two_stops(judge: Judge, call: MemCall) -> bool:
    """The usual path, as the ptrace source takes it for a task alone (the
    call succeeds); returns whether the reply settled it at entry."""
    sink = PtraceSink(judge)
    reply, entry = sink.on_call(call, peek)
    sink.on_event(MemReturn(call, 0, entry))
    return reply.settled


def state(judge: Judge) -> tuple:
    space = judge.model.processes[PID].space
    regions = tuple((r.start, r.end, r.prot, r.shared, r.offset, r.backing, r.ever_writable, r.ever_exec)
                    for r in space)
    stats = judge.stats
    judged = tuple(out.judged for out in judge.emitter.outputs)
    return (regions, space.brk_start, space.brk_end, space.holds_uncopied, stats.calls,
            dict(stats.calls_by_syscall), dict(stats.dropped), judge.model.written_objects, judged,
            len(judge._open))


def random_call(rng: random.Random, ts: float) -> MemCall:
    syscall = rng.choice(("mprotect",) * 8 + ("munmap", "pkey_mprotect"))
    start = BASE + rng.randrange(-2, 18) * P + rng.choice((0, 0, 0, 0, 8))
    length = rng.choice((0, 1, P, P, 2 * P, 3 * P, 5 * P, P + 1))
    tid = rng.choice((PID, PID, PID, RIE_TID))
    if syscall == "munmap":
        return MemCall(ts, PID, tid, syscall, "x86_64", (start, length))
    prot = rng.choice((R, R | W, 0, W, R | X, R | W | X, R | PROT_GROWSDOWN, R | 0x10, R | (1 << 40)))
    return MemCall(ts, PID, tid, syscall, "x86_64", (start, length, prot))


@pytest.mark.parametrize(("policy_name", "report_all"), [("default", False), ("strict", False),
                                                         ("writes", False), ("default", True)])
def test_the_one_stop_path_ends_where_the_two_stops_end(policy_name: str, report_all: bool):
    fast, slow = twins(policy_name, report_all)
    rng = random.Random(f"{policy_name}-{report_all}")
    taken: dict[str, int] = {"mprotect": 0, "munmap": 0}
    for n in range(3000):
        if n % 100 == 0:
            # Start over now and then: a space unmapped away takes nothing.
            fast, slow = twins(policy_name, report_all)
        call = random_call(rng, float(n))
        if fast.settle_alone(call):
            taken[call.syscall] += 1
            assert two_stops(slow, call), call  # the usual path settles it at entry too
        else:
            two_stops(fast, call)
            two_stops(slow, call)
        assert state(fast) == state(slow), call
    # The one-stop path was exercised, not just declined (an mprotect is
    # always judged by a category-free rule or --all-calls).
    assert taken["munmap"] > 20
    assert (taken["mprotect"] > 50) == (policy_name != "writes" and not report_all), taken


def test_a_read_write_flip_of_private_memory_takes_one_stop_and_nothing_else_does():
    fast, _ = twins("default", False)
    flip = MemCall(0.0, PID, PID, "mprotect", "x86_64", (BASE, P, R))
    assert fast.settle_alone(flip)
    assert fast.settle_alone(flip._replace(args=(BASE, P, R | W)))
    assert fast.settle_alone(MemCall(0.0, PID, PID, "munmap", "x86_64", (BASE + 12 * P, P)))
    declined = [
        flip._replace(args=(BASE, P, R | X)),                  # becomes executable
        flip._replace(tid=RIE_TID),                            # READ_IMPLIES_EXEC adds exec
        flip._replace(args=(BASE + 8 * P, P, R)),              # a shared view (dual-map)
        flip._replace(args=(BASE + 6 * P, P, R)),              # pages the model never saw
        flip._replace(args=(BASE + 8, P, R)),                  # unaligned: the kernel refuses it
        flip._replace(args=(BASE, P, R | PROT_GROWSDOWN)),     # reaches below the range
        flip._replace(syscall="pkey_mprotect"),
        flip._replace(pid=PID + 1),                            # a process the model does not know
    ]
    for call in declined:
        assert not fast.settle_alone(call), call
    logged, _ = twins("writes", False)
    assert not logged.settle_alone(flip)  # a category-free rule judges it
    reported, _ = twins("default", True)
    assert not reported.settle_alone(flip)  # --all-calls reports it


def test_the_tasks_count_of_each_address_space_is_what_a_look_at_every_task_finds():
    tasks = _Tasks()
    rng = random.Random("tasks")
    made: list[_Task] = []
    for _ in range(5000):
        step = rng.randrange(4)
        if step == 0 or not made:
            tid = rng.randrange(1, 40)
            task = _Task(tid, tid, vm=rng.choice((0, 0, 1, 2)))
            made.append(task)
            tasks[tid] = task
        elif step == 1:
            tasks.pop(rng.randrange(1, 40), None)
        elif step == 2:
            tasks.move(rng.choice(made), rng.randrange(1, 4))
        else:
            del made[rng.randrange(len(made))]
        for task in made:
            alone = not any(other.vm == task.vm and other is not task for other in tasks.values())
            assert tasks.alone(task) == alone
