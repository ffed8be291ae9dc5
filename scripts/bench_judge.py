"""The Judge's own CPU per call, from a plain event list (no tracee, no
kernel): a call nothing judges (an mprotect between R and RW) and a call
every time judged (mprotect to RWX, wx-protect), under the default
policy in audit. With --baseline TREE the same loop runs from another
checkout, interleaved, so before and after share the machine's noise.

    .venv/bin/python scripts/bench_judge.py --baseline ../main-checkout
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Run in a child with PYTHONPATH set to the tree measured; prints µs per call.
_LOOP = r"""
import sys, time
from tracer.events import AttachEvent, MapEntry, MemCall, MemReturn, ProcessInfo
from tracer.pipeline import Judge
from tracer.policy.loader import resolve_policy

class Null:
    def emit(self, judgement): pass
    def lost(self, event): pass
    def close(self, stats): pass

n, prots = int(sys.argv[1]), tuple(int(p) for p in sys.argv[2].split(","))
judge = Judge(resolve_policy("default"), "audit", [Null()], source="ptrace")
base = 0x7f0000000000
maps = (MapEntry(0x400000, 0x401000, 5, False, 0, 8, 11, "/usr/bin/prog"),
        MapEntry(base, base + 0x1000, 3, False, 0, 0, 0, ""))
judge.event(AttachEvent(0.0, 7, ProcessInfo("/usr/bin/prog", "prog", 0), maps, 0))
calls = [MemCall(1.0, 7, 7, "mprotect", "x86_64", (base, 0x1000, prot)) for prot in prots]
# A source hands back what the judge made of each call at entry (MemReturn.entry);
# a tree from before that pairs them itself.
handed_back = "entry" in MemReturn.__dataclass_fields__
start = time.process_time()
if handed_back:
    for i in range(n):
        call = calls[i % len(calls)]
        judge.event(MemReturn(call, 0, judge.call(call, None)))
else:
    for i in range(n):
        call = calls[i % len(calls)]
        judge.call(call, None)
        judge.event(MemReturn(call, 0))
print((time.process_time() - start) / n * 1e6)
"""

CASES = {"not judged (R <-> RW)": "1,3", "judged (RWX: wx-protect)": "7"}


def _once(tree: Path, n: int, prots: str) -> float:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    done = subprocess.run([sys.executable, "-c", _LOOP, str(n), prots], env=env, check=True,
                          capture_output=True, text=True)
    return float(done.stdout)


def main() -> None:
    """Time each case in each tree, interleaved; print a markdown table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--baseline", metavar="TREE", help="also time the Judge of another checkout")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("-n", type=int, default=50_000)
    args = parser.parse_args()
    trees = {"this tree": ROOT, **({"baseline": Path(args.baseline)} if args.baseline else {})}
    got: dict[tuple[str, str], list[float]] = {}
    for _ in range(args.reps):
        for case, prots in CASES.items():
            for label, tree in trees.items():
                got.setdefault((case, label), []).append(_once(tree, args.n, prots))
    print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print("| case | tree | µs per call (median) |")
    print("| --- | --- | --- |")
    for (case, label), values in got.items():
        print(f"| {case} | {label} | {statistics.median(values):.2f} |")
    if args.baseline:
        for case in CASES:
            ratio = statistics.median(got[(case, "this tree")]) / statistics.median(got[(case, "baseline")])
            print(f"{case}: this tree / baseline = {ratio:.3f}")


if __name__ == "__main__":
    main()
