"""The eBPF source fills its own gaps; the monitor's feed hands the model
what each call carries. From plain values: the source's pure helpers on
maps lines, and a Judge fed event lists as `monitor_host` feeds it."""

from __future__ import annotations

from test_outcomes import Collected

from tracer.abi import MAP_ANONYMOUS, MAP_PRIVATE
from tracer.events import AttachEvent, MapEntry, MemCall, MemReturn, ProcessInfo
from tracer.pipeline import Judge, feed_ebpf
from tracer.policy.loader import load_policy_text
from tracer.sources.ebpf_source import _before_call, _outside

R, W, X = 1, 2, 4
PID = 9
LOG_ALL = """\
apiVersion: trampwatch.dev/v1
kind: WXPolicy
metadata: {name: log-all}
spec:
  defaultAction: log
"""


def entry(start: int, end: int, prot: int, path: str = "", offset: int = 0) -> MapEntry:
    return MapEntry(start, end, prot, False, offset, 0, 0, path)


def mprotect(addr: int, length: int, prot: int, **fields: object) -> MemCall:
    return MemCall(1.0, PID, PID, "mprotect", "x86_64", (addr, length, prot, 0, 0, 0), **fields)


def test_the_range_before_a_call_is_what_proc_shows_without_what_it_asked_for():
    after = (entry(0x0, 0x2000, R | X), entry(0x2000, 0x4000, R | W | X, "/lib/x.so", 0x1000))
    call = mprotect(0x1000, 0x2000, R | W | X)
    assert _before_call(after, call.args) == (entry(0x1000, 0x2000, R, offset=0x1000),
                                              entry(0x2000, 0x3000, R, "/lib/x.so", 0x1000))
    # The rest of a seeded process's maps is kept as it was read, cut at the range.
    assert _outside(after, 0x1000, 0x3000) == [entry(0x0, 0x1000, R | X),
                                               entry(0x3000, 0x4000, R | W | X, "/lib/x.so", 0x2000)]


def judge_fed(*events: object) -> list[tuple[str, tuple[str, ...]]]:
    out = Collected()
    judge = Judge(load_policy_text(LOG_ALL, "p.yaml"), "audit", [out], source="ebpf")
    exe = entry(0x400000, 0x401000, R | X, "/bin/prog")
    judge.event(AttachEvent(0.0, PID, ProcessInfo("/bin/prog", "prog", 0), (exe,), 0))
    feed_ebpf(judge, list(events))
    return [(j.syscall, tuple(str(c) for c in j.categories)) for j in out.judged]


def test_a_call_without_the_kernels_view_is_judged_on_what_the_source_found():
    # Never sent, so never writable: made executable, it is anon-exec, not w-to-x.
    call = mprotect(0x10000, 0x1000, R | X, unseen=(entry(0x10000, 0x11000, R),))
    assert judge_fed(MemReturn(call, 0)) == [("mprotect", ("anon-exec",))]


def test_what_the_source_found_does_not_override_what_the_model_knows():
    mapped = MemCall(1.0, PID, PID, "mmap", "x86_64", (0, 0x1000, R | W, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0))
    call = mprotect(0x10000, 0x1000, R | X, unseen=(entry(0x10000, 0x11000, R),))
    assert judge_fed(MemReturn(mapped, 0x10000), MemReturn(call, 0)) == [
        ("mprotect", ("w-to-x", "anon-exec"))]


def test_the_kernels_view_of_a_range_is_the_truth_before_the_call():
    call = mprotect(0x10000, 0x1000, R | X, vmas=(entry(0x10000, 0x11000, R | W),))
    assert judge_fed(MemReturn(call, 0)) == [("mprotect", ("w-to-x", "anon-exec"))]
