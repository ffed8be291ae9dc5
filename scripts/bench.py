"""trampwatch benchmarks: every figure is a ratio against a baseline measured
in the same run, workloads interleaved, medians of several repetitions.

Run through scripts/bench. Prints markdown tables.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROGRAMS = ROOT / "tests" / "programs"
BENCH_PROGRAMS = ROOT / "scripts" / "bench_programs"
TRAMPWATCH = [str(ROOT / ".venv" / "bin" / "trampwatch")]
STRACE_SET = "trace=mmap,mprotect,munmap,mremap,pkey_mprotect"


def build(out: Path, source: Path, *flags: str) -> Path:
    """Compile one C program; return its path."""
    target = out / source.stem
    subprocess.run(["gcc", "-O2", "-I", str(PROGRAMS), "-o", str(target), str(source), *flags], check=True)
    return target


@dataclass
class Case:
    """One command line to time."""

    name: str
    argv: list[str]


def time_once(argv: list[str]) -> float:
    """Run argv with output discarded; return wall seconds. Fails loudly."""
    start = time.perf_counter()
    done = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"bench: {' '.join(argv)} exited {done.returncode}")
    return elapsed


def measure(cases: list[Case], reps: int) -> dict[str, float]:
    """Run every case `reps` times, interleaved; return median seconds."""
    samples: dict[str, list[float]] = {case.name: [] for case in cases}
    for case in cases:  # warm-up: page cache, bcc-free imports
        time_once(case.argv)
    for _ in range(reps):
        for case in cases:
            samples[case.name].append(time_once(case.argv))
    return {name: statistics.median(values) for name, values in samples.items()}


def pinned(cpu_tracer: int, cpu_tracee: int | None, argv: list[str], prog: list[str]) -> list[str]:
    """Pin the tracer to one CPU, and the traced program to another (or the same)."""
    inner = prog if cpu_tracee is None else ["taskset", "-c", str(cpu_tracee), *prog]
    return ["taskset", "-c", str(cpu_tracer), *argv, *inner]


def table(title: str, header: list[str], rows: list[list[str]]) -> None:
    """Print a markdown table."""
    print(f"\n### {title}\n")
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join(" --- " for _ in header) + "|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    sys.stdout.flush()


def bench_cheap(bins: dict[str, Path], reps: int, n: int) -> None:
    """Unrelated cheap syscalls must not stop in the tracer."""
    prog = [str(bins["cheap_syscalls"]), str(n)]
    tw = [*TRAMPWATCH, "run", "--no-summary", "-o", "/dev/null", "--"]
    cases = [
        Case("native", ["taskset", "-c", "0", *prog]),
        Case("one-rule seccomp filter", ["taskset", "-c", "0", str(bins["seccomp_allow_exec"]), *prog]),
        Case("trampwatch run", pinned(0, None, tw, prog)),
    ]
    med = measure(cases, reps)
    floor = med["one-rule seccomp filter"]
    rows = [[name, f"{sec * 1000:.1f}", f"{sec / med['native']:.3f}", f"{sec / floor:.3f}"]
            for name, sec in med.items()]
    table(f"{n:,} cheap unrelated syscalls (getppid), same CPU (target: trampwatch within 1.05x of the filter)",
          ["workload", "ms (median)", "x native", "x one-rule filter"], rows)


def bench_mprotect(bins: dict[str, Path], reps: int, n: int) -> None:
    """Per-event cost of a traced mprotect, both CPU placements."""
    prog = [str(bins["mprotect_flood"]), str(n)]
    tw = [*TRAMPWATCH, "run", "--no-summary", "-o", "/dev/null", "--"]
    strace_seccomp = ["strace", "-f", "--seccomp-bpf", "-e", STRACE_SET, "-o", "/dev/null"]
    strace_plain = ["strace", "-f", "-e", STRACE_SET, "-o", "/dev/null"]
    cases = [Case("native", ["taskset", "-c", "0", *prog])]
    for label, cpu in (("same CPU", None), ("across CPUs", 1)):
        cases += [
            Case(f"strace --seccomp-bpf, {label}", pinned(0, cpu, strace_seccomp, prog)),
            Case(f"strace, {label}", pinned(0, cpu, strace_plain, prog)),
            Case(f"trampwatch run, {label}", pinned(0, cpu, tw, prog)),
        ]
    med = measure(cases, reps)
    native = med["native"]

    def per_event(name: str) -> float:
        return (med[name] - native) / n * 1e6

    rows = []
    for name, sec in med.items():
        placement = "same CPU" if "same CPU" in name else "across CPUs"
        ref = f"strace --seccomp-bpf, {placement}"
        vs = "" if name == "native" else f"{per_event(name) / per_event(ref):.2f}"
        rows.append([name, f"{sec * 1000:.0f}", "" if name == "native" else f"{per_event(name):.1f}", vs])
    table(f"{n:,} mprotect calls (target: trampwatch per event <= 2x strace --seccomp-bpf, same placement)",
          ["workload", "ms (median)", "µs per call over native", "x strace --seccomp-bpf"], rows)


def bench_startup(reps: int) -> None:
    """trampwatch run -- true against true."""
    true = shutil.which("true") or "/bin/true"
    cases = [
        Case("true", [true]),
        Case("trampwatch run -- true", [*TRAMPWATCH, "run", "--no-summary", "-o", "/dev/null", "--", true]),
        Case("trampwatch --help (python start-up)", [*TRAMPWATCH, "--help"]),
    ]
    med = measure(cases, reps)
    rows = [[name, f"{sec * 1000:.1f}", f"{(sec - med['true']) * 1000:.1f}"] for name, sec in med.items()]
    table("start-up (target: trampwatch run -- true under 300 ms over native)",
          ["command", "ms (median)", "ms over native"], rows)


BENCHES: dict[str, Callable[..., None]] = {
    "cheap": bench_cheap,
    "mprotect": bench_mprotect,
    "startup": bench_startup,
}


def main() -> None:
    """Build the programs, run the selected benchmarks, print tables."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="smaller workloads, 3 repetitions")
    parser.add_argument("--only", choices=sorted(BENCHES), action="append")
    args = parser.parse_args()
    reps = 3 if args.quick else args.reps
    scale = 10 if args.quick else 1
    if os.cpu_count() and os.cpu_count() < 2:
        print("note: one CPU only: 'across CPUs' rows measure the same placement")
    with tempfile.TemporaryDirectory(prefix="tw-bench-") as tmp:
        out = Path(tmp)
        bins = {
            "cheap_syscalls": build(out, PROGRAMS / "cheap_syscalls.c"),
            "mprotect_flood": build(out, PROGRAMS / "mprotect_flood.c"),
            "seccomp_allow_exec": build(out, BENCH_PROGRAMS / "seccomp_allow_exec.c"),
        }
        print(f"# trampwatch benchmarks ({time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} CPUs, "
              f"{reps} interleaved repetitions, medians)")
        selected = args.only or list(BENCHES)
        if "cheap" in selected:
            bench_cheap(bins, reps, 2_000_000 // scale)
        if "mprotect" in selected:
            bench_mprotect(bins, reps, 100_000 // scale)
        if "startup" in selected:
            bench_startup(reps)


if __name__ == "__main__":
    main()
