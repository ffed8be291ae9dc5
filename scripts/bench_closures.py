"""run --closures benchmarks (docs/closures.md), each a ratio against a
baseline measured in the same run (medians of interleaved repetitions):

  call      a libffi closure called in a loop: natively (Debian's libffi puts
            it on an RWX page) against --closures=trampfd (a trampfd v2 slot)
  alloc     ffi_closure_alloc + ffi_prep_closure_loc + ffi_closure_free per
            closure: natively against --closures=trampfd (printed per closure)
  ctypes    a python3 ctypes callback called in a loop: plain `run` (default
            policy, the RWX page allowed) against `run --closures` (auto)
  emulate   one closure invocation under --closures=emulate against the
            minimal C ptrace emulator of scripts/bench_trampfd.py (waitpid,
            GETREGS, SETREGS, CONT), tracer and program on one CPU and on two;
            also as CPU time per invocation (tracer and program, from the
            rusage of the whole run, less that of a run a tenth as long, so
            start-up drops out): unlike wall time, other work on a loaded
            machine does not count in it

Targets (issue 11): call within 1.5x, ctypes within 1.1x, emulate within
1.3x of its anchor in the same placement.

    .venv/bin/python scripts/bench_closures.py [--reps N] [--quick]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from bench_trampfd import build as build_trampfd

ROOT = Path(__file__).resolve().parent.parent
TRAMPWATCH = [sys.executable, "-m", "tracer", "run", "--no-summary", "-o", os.devnull]

# One program, one mode per run: it times its own loop and prints "NS <ns per iteration>".
BENCH_C = r"""
#include <ffi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e9 + ts.tv_nsec;
}

static void add(ffi_cif *cif, void *ret, void **args, void *data)
{
    (void)cif;
    *(ffi_arg *)ret = *(long *)args[0] + *(long *)data;
}

int main(int argc, char **argv)
{
    long n = atol(argv[2]), one = 1, sum = 0;
    ffi_cif cif;
    ffi_type *types[] = { &ffi_type_slong };
    void *code;
    double start;

    ffi_prep_cif(&cif, FFI_DEFAULT_ABI, 1, &ffi_type_slong, types);
    if (!strcmp(argv[1], "call")) {
        ffi_closure *closure = ffi_closure_alloc(sizeof(ffi_closure), &code);
        if (closure == NULL || ffi_prep_closure_loc(closure, &cif, add, &one, code) != FFI_OK)
            return 2;
        long (*volatile fp)(long) = (long (*)(long))code;
        start = now_ns();
        for (long i = 0; i < n; i++)
            sum += fp(i);
    } else if (!strcmp(argv[1], "alloc")) {
        start = now_ns();
        for (long i = 0; i < n; i++) {
            ffi_closure *closure = ffi_closure_alloc(sizeof(ffi_closure), &code);
            if (closure == NULL || ffi_prep_closure_loc(closure, &cif, add, &one, code) != FFI_OK)
                return 2;
            sum += ((long (*)(long))code)(i);
            ffi_closure_free(closure);
        }
    } else {
        return 2;
    }
    if (sum != n * (n - 1) / 2 + n)
        return 3;
    printf("NS %.3f\n", (now_ns() - start) / n);
    return 0;
}
"""

CTYPES_PY = r"""
import ctypes, sys, time
ADD = ctypes.CFUNCTYPE(ctypes.c_long, ctypes.c_long)
add = ADD(lambda n: n + 1)
n = int(sys.argv[1])
start = time.perf_counter_ns()
total = 0
for i in range(n):
    total += add(i)
assert total == n * (n - 1) // 2 + n
print("NS %.3f" % ((time.perf_counter_ns() - start) / n))
"""


@dataclass(frozen=True)
class Case:
    """One measured command: its name, placement and argv; `short`, for
    the CPU time per iteration, the same with a tenth of the `iterations`."""

    name: str
    placement: str
    argv: tuple[str, ...]
    iterations: int = 0
    short: tuple[str, ...] = ()


def _faults(name: str, placement: str, argv: tuple[str, ...], count: str) -> Case:
    """A fault-per-iteration case, `count` iterations, timed in CPU too."""
    tenth = str(int(count) // 10)
    return Case(name, placement, argv, int(count), tuple(tenth if arg == count else arg for arg in argv))


def build(directory: Path) -> tuple[Path, Path, Path]:
    """Compile the closure program, write the ctypes script and build
    bench_trampfd's program (for its C ptrace emulator); return the three."""
    source = directory / "bench_closures.c"
    source.write_text(BENCH_C)
    binary = directory / "bench_closures"
    subprocess.run(["gcc", "-O2", "-Wall", "-o", str(binary), str(source), "-lffi"], check=True)
    script = directory / "ctypes_loop.py"
    script.write_text(CTYPES_PY)
    return binary, script, build_trampfd(directory)


def cases(binary: Path, script: Path, c_ptrace: Path, quick: bool) -> list[Case]:
    """Every case, sized for about 0.1-1 s each."""
    scale = 10 if quick else 1
    fast, alloc, slow, py = (str(10_000_000 // scale), str(2_000 // scale), str(20_000 // scale),
                             str(200_000 // scale))
    prog, same, apart = str(binary), ["taskset", "-c", "0"], ["taskset", "-c", "1"]

    def closures(mode: str) -> list[str]:
        return [*TRAMPWATCH, f"--closures={mode}", "--"]

    return [
        Case("call: native (RWX page)", "-", (prog, "call", fast)),
        Case("call: --closures=trampfd", "-", (*closures("trampfd"), prog, "call", fast)),
        Case("alloc: native", "-", (prog, "alloc", alloc)),
        Case("alloc: --closures=trampfd", "-", (*closures("trampfd"), prog, "alloc", alloc)),
        Case("ctypes: run", "-", (*TRAMPWATCH, "--", "/usr/bin/python3", str(script), py)),
        Case("ctypes: run --closures", "-", (*closures("auto"), "/usr/bin/python3", str(script), py)),
        _faults("c-ptrace", "one CPU", (str(c_ptrace), "c-ptrace", slow, "0", "0"), slow),
        _faults("emulate", "one CPU", (*same, *closures("emulate"), prog, "call", slow), slow),
        _faults("c-ptrace", "two CPUs", (str(c_ptrace), "c-ptrace", slow, "0", "1"), slow),
        _faults("emulate", "two CPUs", (*same, *closures("emulate"), *apart, prog, "call", slow), slow),
    ]


def _run(argv: tuple[str, ...]) -> tuple[float, float]:
    """Run argv; return the nanoseconds per iteration it printed and the
    CPU seconds (user and system) of its whole process tree."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(argv, capture_output=True, text=True, check=False, cwd=ROOT)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    lines = [line for line in done.stdout.splitlines() if line.startswith("NS ")]
    if done.returncode != 0 or not lines:
        sys.exit(f"bench_closures: {' '.join(argv)} failed ({done.returncode}): {done.stderr.strip()}")
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return float(lines[-1].split()[1]), cpu


def run_once(case: Case) -> tuple[float, float | None]:
    """Run a case; return the nanoseconds per iteration it printed and, for
    a fault case, the CPU nanoseconds per iteration (else None)."""
    ns, cpu = _run(case.argv)
    if not case.short:
        return ns, None
    _, cpu_short = _run(case.short)
    return ns, (cpu - cpu_short) * 1e9 / (case.iterations - case.iterations // 10)


def fmt(ns: float) -> str:
    return f"{ns / 1000:.2f} µs" if ns >= 1000 else f"{ns:.2f} ns"


ANCHORS = {"call: --closures=trampfd": "call: native (RWX page)",
           "alloc: --closures=trampfd": "alloc: native",
           "ctypes: run --closures": "ctypes: run", "emulate": "c-ptrace"}


def report(medians: dict[Case, float], heading: str = "per iteration") -> str:
    """The markdown table: each measured case against its anchor."""
    by_key = {(case.name, case.placement): value for case, value in medians.items()}
    lines = [f"| case | placement | {heading} | ratio |", "| --- | --- | ---: | --- |"]
    for case, value in medians.items():
        anchor = ANCHORS.get(case.name)
        ratio = f"{value / by_key[(anchor, case.placement)]:.2f}x {anchor}" if anchor else ""
        lines.append(f"| {case.name} | {case.placement} | {fmt(value)} | {ratio} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Build, measure every case `--reps` times interleaved, print the table."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="tw-bench-closures-") as tmp:
        binary, script, c_ptrace = build(Path(tmp))
        all_cases = cases(binary, script, c_ptrace, args.quick)
        samples: dict[Case, list[float]] = {case: [] for case in all_cases}
        cpu: dict[Case, list[float]] = {case: [] for case in all_cases if case.short}
        for _ in range(args.reps):
            for case in all_cases:
                ns, cpu_ns = run_once(case)
                samples[case].append(ns)
                if cpu_ns is not None:
                    cpu[case].append(cpu_ns)
        medians = {case: statistics.median(values) for case, values in samples.items()}
    print(f"## run --closures ({args.reps} interleaved repetitions, medians; "
          f"load average {os.getloadavg()[0]:.1f})\n")
    print(report(medians))
    print("\nCPU time per invocation (tracer and program):\n")
    print(report({case: statistics.median(values) for case, values in cpu.items()}, "CPU per iteration"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
