"""`monitor`'s judge under a flood of calls made again: a call whose record
equals, but for its time, one decoded before comes as CallAgain, and the
judge replays what that call did to the model and how it was judged while
nothing it depends on changed (tracer/replay.py). Replaying must be exact:
every call judged as if it were judged afresh, the model left as it would
be, the counts the same; only the number of lines differs (equal verdicts
are reported once per batch, with their count).

The oracle is the same events with every CallAgain turned back into the
whole call it stands for, judged one by one. Real BPF, the real kernel for
the records.
"""

from __future__ import annotations

import os
import subprocess
from collections import Counter

import pytest
from test_ebpf_source import KeptJudgements, load_source
from test_run_programs import ROOT

from tracer.abi import AUDIT_ARCH_X86_64
from tracer.events import (
    AttachEvent,
    CallAgain,
    Event,
    ExitEvent,
    MapEntry,
    MemCall,
    MemReturn,
    ProcessInfo,
)
from tracer.pipeline import Judge, feed_ebpf
from tracer.policy.loader import load_policy_file
from tracer.sources.ebpf_records import RECORD_FORMAT, KillRule, Kind, RecordFlag
from tracer.sources.ebpf_source import EbpfConfig

ROUNDS = 3000
BATCH = 2500  # records decoded (and judged) at a time, as poll() hands them over


def _judge(batches: list[list[Event]], pid: int) -> tuple[Judge, KeptJudgements, list[tuple]]:
    """Judge `batches` with the default policy; return the judge, what it
    emitted and the model's regions of `pid` just before its exit."""
    out = KeptJudgements()
    judge = Judge(load_policy_file(ROOT / "policies" / "default.yaml"), "audit", [out], source="ebpf")
    regions: list[tuple] = []
    for batch in batches:
        for i, event in enumerate(batch):
            if isinstance(event, ExitEvent) and event.pid == pid and event.status is not None:
                feed_ebpf(judge, batch[:i])
                process = judge.model.process(pid)
                regions = [(r.start, r.end, r.prot, r.shared, r.offset, r.backing, r.ever_writable,
                            r.ever_exec) for r in process.space] if process is not None else []
                batch = batch[i:]
                break
        feed_ebpf(judge, batch)
    judge.finish(0)
    return judge, out, regions


def _whole(event: Event) -> Event:
    """The whole call a CallAgain stands for (every other event as it is)."""
    if isinstance(event, CallAgain):
        return MemReturn(event.first.call._replace(ts=event.ts), event.first.result)
    return event


def _verdicts(judgements: list) -> Counter:
    """Judgements as counts of what was said of which call."""
    counted: Counter = Counter()
    for j in judgements:
        said = (j.pid, j.tid, j.syscall, j.args, j.result, j.categories, j.outcome, j.reason, j.addr)
        counted[said] += j.count
    return counted


def _assert_replay_is_exact(batches: list[list[Event]], pid: int) -> tuple[KeptJudgements, KeptJudgements]:
    replayed, replayed_out, replayed_regions = _judge(batches, pid)
    fresh, fresh_out, fresh_regions = _judge([[_whole(e) for e in batch] for batch in batches], pid)
    assert replayed_regions == fresh_regions
    assert _verdicts(replayed_out.judgements) == _verdicts(fresh_out.judgements)
    for field in ("calls", "calls_by_syscall", "judged", "dropped"):
        assert getattr(replayed.stats, field) == getattr(fresh.stats, field), field
    # An aggregated report is never a kill or a refusal: those are never replayed.
    assert all(j.outcome.value not in ("killed", "denied") for j in replayed_out.judgements if j.count > 1)
    return replayed_out, fresh_out


def test_a_jit_that_needs_the_model_is_judged_alike_replayed(build_program) -> None:
    program = build_program("flip_mix")
    with load_source(EbpfConfig(comms=("flip_mix",), repeats=False, buffer_pages=8192)) as source:
        proc = subprocess.Popen([str(program), str(ROUNDS)], stdout=subprocess.PIPE, text=True)
        records: list[bytes] = []
        while proc.poll() is None:
            source.wait(50)
            records += source.take()
        # The exit record is in the buffer before the parent can see the exit.
        records += source.take()
        out = proc.stdout.read() if proc.stdout else ""
        assert source.lost() == 0
        batches = [source.decode(records[i:i + BATCH]) for i in range(0, len(records), BATCH)]
    assert f"COUNT {ROUNDS}" in out and "flip_mprotect" not in out
    events = [e for batch in batches for e in batch]
    assert any(isinstance(e, ExitEvent) and e.pid == proc.pid and e.status is not None for e in events)
    again = [e for e in events if isinstance(e, CallAgain)]
    whole = [e for e in events if isinstance(e, MemReturn) and e.call.pid == proc.pid]
    # The program's pages: its last private anonymous read+write mapping of four pages.
    mapped = [r.result for r in whole
              if r.call.syscall == "mmap" and r.call.args[1:4] == (16384, 3, 0x22)][-1]
    calls = [r.call for r in whole] + [e.first.call for e in again]
    assert sum(c.syscall == "mprotect" and mapped <= c.args[0] < mapped + 16384 for c in calls) == \
        2 + 4 * ROUNDS + 2 * ((ROUNDS + 4) // 5)
    flips = mapped + 4096
    assert len(again) > 0.9 * len(events)
    replayed, fresh = _assert_replay_is_exact(batches, proc.pid)
    # R -> RX of the written page, every round: a W^X event only the model's history shows.
    w_to_x = [j for j in fresh.judgements if j.args[0] == flips and j.args[2] == 5]
    assert len(w_to_x) == ROUNDS
    assert len(replayed.judgements) < len(fresh.judgements) // 10


def test_a_replay_stops_where_the_model_changed() -> None:
    """A flip replayed, then its neighbour's history changes under it, then
    its page is unmapped and mapped again read-only: each change sends the
    next flip to be judged afresh, and the verdicts follow the model."""
    pid, page = 42, 0x10000
    rw = MapEntry(page, page + 4096, 3, False, 0, 0, 0, "")
    rx = MapEntry(page, page + 4096, 5, False, 0, 0, 0, "")
    r_only = MapEntry(page, page + 4096, 1, False, 0, 0, 0, "")
    to_rx = MemReturn(MemCall(0.1, pid, pid, "mprotect", "x86_64", (page, 4096, 5), vmas=(r_only,)), 0)
    to_r = MemReturn(MemCall(0.2, pid, pid, "mprotect", "x86_64", (page, 4096, 1), vmas=(rx,)), 0)

    events: list[Event] = [
        AttachEvent(0.0, pid, ProcessInfo("/bin/jit", "jit", 0), (rw,), 0),
        MemReturn(MemCall(0.05, pid, pid, "mprotect", "x86_64", (page, 4096, 1), vmas=(rw,)), 0),
        to_rx, to_r,
    ]
    ts = 1.0
    for _ in range(3):
        events += [CallAgain(ts, to_rx, 1), CallAgain(ts + 0.1, to_r, 2)]
        ts += 1
    # The next page appears (mapped read+write, then read-only): the window's neighbour changed.
    nxt = page + 4096
    events.append(MemReturn(MemCall(ts, pid, pid, "mmap", "x86_64", (nxt, 4096, 3, 0x32, -1, 0)), nxt))
    events.append(MemReturn(MemCall(ts + 0.1, pid, pid, "mprotect", "x86_64", (nxt, 4096, 1),
                                    vmas=(MapEntry(nxt, nxt + 4096, 3, False, 0, 0, 0, ""),)), 0))
    for _ in range(3):
        ts += 1
        events += [CallAgain(ts, to_rx, 1), CallAgain(ts + 0.1, to_r, 2)]
    # The page is unmapped and mapped again read-only: no history, so R -> RX is no w-to-x now.
    events.append(MemReturn(MemCall(ts + 0.2, pid, pid, "munmap", "x86_64", (page, 4096)), 0))
    remap = MemCall(ts + 0.3, pid, pid, "mmap", "x86_64", (page, 4096, 1, 0x32, -1, 0))
    events.append(MemReturn(remap, page))
    for _ in range(3):
        ts += 1
        events += [CallAgain(ts, to_rx, 1), CallAgain(ts + 0.1, to_r, 2)]
    events.append(ExitEvent(ts + 1, pid, pid, 0))
    replayed, fresh = _assert_replay_is_exact([events], pid)
    categories = Counter()
    for j in fresh.judgements:
        categories[j.categories] += j.count
    assert categories[("w-to-x", "anon-exec")] == 1 + 3 + 3
    assert categories[("anon-exec",)] == 3
    assert len(replayed.judgements) < len(fresh.judgements)


@pytest.mark.parametrize("change", ["policy", "persona"])
def test_a_replay_is_forgotten_when_the_policy_or_persona_changes(change: str) -> None:
    """Replays were recorded under one policy and persona: a reload (or a
    personality change) judges the next flip afresh, reporting first what
    was replayed before it."""
    pid, page = 7, 0x20000
    rw = MapEntry(page, page + 4096, 3, False, 0, 0, 0, "")
    rx = MapEntry(page, page + 4096, 5, False, 0, 0, 0, "")
    to_rx = MemReturn(MemCall(0.1, pid, pid, "mprotect", "x86_64", (page, 4096, 5), vmas=(rw,)), 0)
    to_rw = MemReturn(MemCall(0.2, pid, pid, "mprotect", "x86_64", (page, 4096, 3), vmas=(rx,)), 0)
    out = KeptJudgements()
    judge = Judge(load_policy_file(ROOT / "policies" / "default.yaml"), "audit", [out], source="ebpf")
    judge.event(AttachEvent(0.0, pid, ProcessInfo("/bin/jit", "jit", 0), (rw,), 0))
    feed_ebpf(judge, [to_rx, to_rw, CallAgain(1.0, to_rx, 1), CallAgain(1.1, to_rw, 2)])
    judge.event(CallAgain(2.0, to_rx, 1))
    judge.event(CallAgain(2.1, to_rw, 2))
    if change == "policy":
        judge.set_policy(load_policy_file(ROOT / "policies" / "strict.yaml"))
    else:
        judge.model.set_personality(pid, to_rx.call.tid, 0x0400000)  # READ_IMPLIES_EXEC
    judge.event(CallAgain(3.0, to_rx, 1))
    judge.finish(0)
    # Each flip to RX once: the replayed one reported before the change or at the end, with its count.
    assert sorted((j.ts, j.count) for j in out.judgements) == [(0.1, 1), (1.0, 1), (2.0, 1), (3.0, 1)]
    assert judge.stats.calls == 7


def _record(pid: int, flags: int, ts: int) -> bytes:
    """A syscall record as the kernel side writes it: an anonymous mmap of
    process `pid` that returned 0x10000, with `flags`, entered at `ts` ms."""
    args = (0, 4096, 7, 0x22, (1 << 64) - 1, 0)
    return RECORD_FORMAT.pack(ts * 1_000_000, *args, 0x10000, Kind.SYSCALL, pid, pid, AUDIT_ARCH_X86_64, 9,
                              flags, 0, 0)


def test_a_killed_call_is_never_told_as_made_again() -> None:
    """The same record twice comes the second time as CallAgain; a record of
    a call a kill rule fired at never does (each carries its kill), so a
    replayed report can never say a call was not killed."""
    pid = os.getpid()
    rule = KillRule("no-rwx", "mmap", prot_all=7)
    with load_source(EbpfConfig(pids=(pid,), kill_rules=(rule,), enforce=False)) as source:
        plain = source.decode([_record(pid, 0, 1), _record(pid, 0, 2), _record(pid, 0, 3)])
        killed = source.decode([_record(pid, RecordFlag.KILLED, 4), _record(pid, RecordFlag.KILLED, 5)])
    # The call that made the process known (with its attach) is not remembered; the next one is.
    assert [type(e).__name__ for e in plain] == ["AttachEvent", "MemReturn", "MemReturn", "CallAgain"]
    assert plain[3].first is plain[2] and plain[2].call.ts < plain[3].ts
    assert [type(e).__name__ for e in killed] == ["MemReturn", "MemReturn"]
    assert [e.kernel_kill.rule for e in killed] == ["no-rwx", "no-rwx"]


def test_flips_between_writes_moves_forks_and_personas_are_judged_alike_replayed(build_program) -> None:
    """flip_disturb: between a JIT's repeated flips, writes through
    /proc/self/mem and process_vm_writev, a fork whose child flips too, a
    page moved onto a flipped page's neighbour by mremap(MREMAP_FIXED), and
    a flip under READ_IMPLIES_EXEC: replaying remembered judgements must
    say and model exactly what judging every call afresh does."""
    rounds = 400
    program = build_program("flip_disturb")
    with load_source(EbpfConfig(comms=("flip_disturb",), repeats=False, buffer_pages=8192)) as source:
        proc = subprocess.Popen([str(program), str(rounds)], stdout=subprocess.PIPE, text=True)
        records: list[bytes] = []
        while proc.poll() is None:
            source.wait(50)
            records += source.take()
        records += source.take()
        out = proc.stdout.read() if proc.stdout else ""
        assert source.lost() == 0
        batches = [source.decode(records[i:i + BATCH]) for i in range(0, len(records), BATCH)]
    assert f"COUNT {rounds}" in out and "disturb_mprotect" not in out, out
    events = [e for batch in batches for e in batch]
    assert sum(isinstance(e, CallAgain) for e in events) > 0.5 * len(events)
    replayed, fresh = _assert_replay_is_exact(batches, proc.pid)
    # The disturbances were seen: the forks' children, and the persona's exec-gaining flips.
    assert {j.pid for j in fresh.judgements} - {proc.pid}
    assert any("read-implies-exec" in [c.value for c in j.categories] for j in fresh.judgements)
    assert len(replayed.judgements) < len(fresh.judgements)
