"""trampwatch benchmarks: every figure is a ratio against a baseline measured
in the same run, workloads interleaved, medians of several repetitions.

Run through scripts/bench. Prints markdown tables.
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

# Run as a script, so its own folder (scripts/) is on the import path.
from bench_closures import main as bench_closures_main
from bench_trampfd import main as bench_trampfd_main

ROOT = Path(__file__).resolve().parent.parent
PROGRAMS = ROOT / "tests" / "programs"
BENCH_PROGRAMS = ROOT / "scripts" / "bench_programs"
TRAMPWATCH = [str(ROOT / ".venv" / "bin" / "trampwatch")]
STRACE_SET = "trace=mmap,mprotect,munmap,mremap,pkey_mprotect"
# The memory calls trampwatch's filter stops on, for the whole-program comparison (issue 13).
STRACE_WORKLOAD = ["strace", "-f", "-qq", "--seccomp-bpf",
                   "-e", "trace=mmap,mprotect,munmap,mremap,brk,pkey_mprotect,shmat", "-o", "/dev/null"]
NODE_FUNCTIONS = ('let s = 0; for (let i = 0; i < 20000; i++) { '
                  'const f = new Function("x", "return x + " + i); s += f(i); } console.log(s)')
# JIT-heavy: 200 distinct hot functions, each compiled by the optimising tier (a few seconds native).
NODE_JIT = ('let t = 0; for (let i = 0; i < 200; i++) { const f = new Function("n", "let s = 0; '
            'for (let j = 0; j < n; j++) s = (s + j * " + i + ") % 1000003; return s"); '
            'for (let k = 0; k < 10; k++) t += f(100000); } console.log(t)')
# 250 x (true, echo, sh -c :, env true): 1,000 short processes of four programs, dynamic and static shells.
SHELL_1000 = ("for i in $(seq 250); do /bin/true; /bin/echo $i; /bin/sh -c :; /usr/bin/env true; done")
# Flips per burst in the monitor cost runs: 5,000 records, half the burst shown lossless.
MONITOR_BURST = 2_500


def build(out: Path, source: Path, *flags: str) -> Path:
    """Compile one C program; return its path."""
    target = out / source.stem
    subprocess.run(["gcc", "-O2", "-I", str(PROGRAMS), "-o", str(target), str(source), *flags], check=True)
    return target


@dataclass
class Case:
    """One command line to time; `ok_codes` are the exit codes that mean it worked."""

    name: str
    argv: list[str]
    ok_codes: tuple[int, ...] = (0,)
    env: dict[str, str] | None = None


def time_once(case: Case) -> float:
    """Run a case with output discarded; return wall seconds. Fails loudly."""
    start = time.perf_counter()
    done = subprocess.run(case.argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=case.env)
    elapsed = time.perf_counter() - start
    if done.returncode not in case.ok_codes:
        sys.exit(f"bench: {' '.join(case.argv)} exited {done.returncode}")
    return elapsed


def time_and_cpu_once(case: Case) -> tuple[float, float]:
    """Run a case like time_once; return (wall seconds, CPU seconds of it and
    all its descendants: the tracer's and the program's user + system time)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    wall = time_once(case)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)


def measure_wall_and_cpu(cases: list[Case], reps: int) -> tuple[dict[str, float], dict[str, float]]:
    """Like measure(); also the median CPU seconds of each case (steadier than
    wall time on a busy machine)."""
    walls: dict[str, list[float]] = {case.name: [] for case in cases}
    cpus: dict[str, list[float]] = {case.name: [] for case in cases}
    for case in cases:
        time_once(case)
    for _ in range(reps):
        for case in cases:
            wall, cpu = time_and_cpu_once(case)
            walls[case.name].append(wall)
            cpus[case.name].append(cpu)
    return ({name: statistics.median(v) for name, v in walls.items()},
            {name: statistics.median(v) for name, v in cpus.items()})


def measure(cases: list[Case], reps: int) -> dict[str, float]:
    """Run every case `reps` times, interleaved; return median seconds."""
    samples: dict[str, list[float]] = {case.name: [] for case in cases}
    for case in cases:  # warm-up: page cache, bcc-free imports
        time_once(case)
    for _ in range(reps):
        for case in cases:
            samples[case.name].append(time_once(case))
    return {name: statistics.median(values) for name, values in samples.items()}


def table(title: str, header: list[str], rows: list[list[str]]) -> None:
    """Print a markdown table."""
    print(f"\n### {title}\n")
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join(" --- " for _ in header) + "|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    sys.stdout.flush()


def marginal(configs: dict[str, list[str]], prog: Path, n: int, reps: int) -> dict[str, tuple[float, float]]:
    """Time each config running prog with n iterations and with 0, interleaved;
    return {config: (median seconds for n, median seconds for n minus 0)}.
    The difference is the loop's own cost: start-up (Python, exec) cancels out."""
    cases = []
    for name, wrapper in configs.items():
        cases.append(Case(f"{name}|n", [*wrapper, str(prog), str(n)]))
        cases.append(Case(f"{name}|0", [*wrapper, str(prog), "0"]))
    med = measure(cases, reps)
    return {name: (med[f"{name}|n"], med[f"{name}|n"] - med[f"{name}|0"]) for name in configs}


def bench_cheap(bins: dict[str, Path], reps: int, n: int) -> None:
    """Unrelated cheap syscalls must not stop in the tracer."""
    tw = [*TRAMPWATCH, "run", "--no-summary", "-o", "/dev/null", "--"]
    configs = {
        "native": ["taskset", "-c", "0"],
        "one-rule seccomp filter": ["taskset", "-c", "0", str(bins["seccomp_allow_exec"])],
        "trampwatch run": ["taskset", "-c", "0", *tw],
    }
    got = marginal(configs, bins["cheap_syscalls"], n, reps)
    native, floor = got["native"][1], got["one-rule seccomp filter"][1]
    rows = [[name, f"{total * 1000:.1f}", f"{loop * 1000:.1f}", f"{loop / native:.3f}", f"{loop / floor:.3f}"]
            for name, (total, loop) in got.items()]
    table(f"{n:,} cheap unrelated syscalls (getppid), same CPU "
          "(target: trampwatch's loop within 1.05x of the filter's)",
          ["workload", "ms total (median)", "ms loop (N minus 0 iterations)", "loop x native",
           "loop x one-rule filter"], rows)


def bench_mprotect(bins: dict[str, Path], reps: int, n: int, baseline: str | None = None) -> None:
    """Per-event cost of a traced mprotect, both CPU placements. `baseline`:
    another checkout's tree, timed as one more configuration."""
    tw = [*TRAMPWATCH, "run", "--no-summary", "-o", "/dev/null", "--"]
    tw_base = ["env", f"PYTHONPATH={baseline}", *tw] if baseline else None
    strace_seccomp = ["strace", "-f", "--seccomp-bpf", "-e", STRACE_SET, "-o", "/dev/null"]
    strace_plain = ["strace", "-f", "-e", STRACE_SET, "-o", "/dev/null"]
    configs = {"native": ["taskset", "-c", "0"]}
    for label, cpu in (("same CPU", None), ("across CPUs", 1)):
        tail = [] if cpu is None else ["taskset", "-c", str(cpu)]
        configs[f"strace --seccomp-bpf, {label}"] = ["taskset", "-c", "0", *strace_seccomp, *tail]
        configs[f"strace, {label}"] = ["taskset", "-c", "0", *strace_plain, *tail]
        configs[f"trampwatch run, {label}"] = ["taskset", "-c", "0", *tw, *tail]
        if tw_base:
            configs[f"trampwatch run (baseline tree), {label}"] = ["taskset", "-c", "0", *tw_base, *tail]
    got = marginal(configs, bins["mprotect_flood"], n, reps)
    native = got["native"][1]

    def per_event(name: str) -> float:
        return (got[name][1] - native) / n * 1e6

    rows = []
    for name, (total, _) in got.items():
        placement = "same CPU" if "same CPU" in name else "across CPUs"
        ref = f"strace --seccomp-bpf, {placement}"
        if name == "native":
            rows.append([name, f"{total * 1000:.0f}", "", ""])
            continue
        rows.append([name, f"{total * 1000:.0f}", f"{per_event(name):.1f}",
                     f"{per_event(name) / per_event(ref):.2f}"])
    table(f"{n:,} mprotect calls (target, issue 13: trampwatch per event <= 1.2x strace --seccomp-bpf on "
          "the same CPU, <= 1.0x across CPUs)",
          ["workload", "ms total (median)", "µs per call over native (loop only)", "x strace --seccomp-bpf"],
          rows)


def bench_startup(reps: int, baseline: str | None = None) -> None:
    """trampwatch run -- true against true. `baseline`: also trampwatch from
    that tree (its PYTHONPATH), interleaved with the rest."""
    true = shutil.which("true") or "/bin/true"
    run_true = [*TRAMPWATCH, "run", "--no-summary", "-o", "/dev/null", "--", true]
    cases = [
        Case("true", [true]),
        Case("trampwatch run -- true", run_true),
        Case("trampwatch --help (python start-up)", [*TRAMPWATCH, "--help"]),
    ]
    if baseline:
        cases.append(Case("trampwatch run -- true (baseline tree)", run_true,
                          env={**os.environ, "PYTHONPATH": baseline}))
    med = measure(cases, reps)
    rows = [[name, f"{sec * 1000:.1f}", f"{(sec - med['true']) * 1000:.1f}"] for name, sec in med.items()]
    table("start-up (target: trampwatch run -- true under 300 ms over native)",
          ["command", "ms (median)", "ms over native"], rows)


DENY_W_TO_X = """apiVersion: trampwatch.dev/v1
kind: WXPolicy
metadata: {name: bench}
spec:
  defaultAction: allow
  rules:
    - {name: no-w-to-x, match: {category: w-to-x}, action: deny}
"""


def bench_enforce(bins: dict[str, Path], reps: int, n: int, out: Path) -> None:
    """The same judged events in audit and in enforce mode (deny = skip the
    call and set its result: two more ptrace requests)."""
    policy = out / "deny-w-to-x.yaml"
    policy.write_text(DENY_W_TO_X)
    tw = [*TRAMPWATCH, "run", "--no-summary", "-o", "/dev/null", "--policy", str(policy)]
    configs = {
        "native": ["taskset", "-c", "0"],
        "trampwatch audit": ["taskset", "-c", "0", *tw, "--mode", "audit", "--"],
        "trampwatch enforce": ["taskset", "-c", "0", *tw, "--mode", "enforce", "--"],
    }
    cases = []
    for name, wrapper in configs.items():
        cases.append(Case(f"{name}|n", [*wrapper, str(bins["flip_flood"]), "wx", str(n)]))
        cases.append(Case(f"{name}|0", [*wrapper, str(bins["flip_flood"]), "wx", "0"]))
    med = measure(cases, reps)
    native = med["native|n"] - med["native|0"]
    per = {name: ((med[f"{name}|n"] - med[f"{name}|0"]) - native) / (2 * n) * 1e6 for name in configs}
    rows = [[name, f"{per[name]:.1f}", f"{per[name] / per['trampwatch audit']:.2f}"]
            for name in configs if name != "native"]
    table(f"{n:,} RW->RX->RW flips, every RX a w-to-x event denied by the policy, same CPU "
          "(target: enforce <= 1.10x audit per event)",
          ["mode", "µs per mprotect over native", "x audit"], rows)


def bench_opens(bins: dict[str, Path], reps: int, n: int, baseline: str | None = None) -> None:
    """Opens of an ordinary file: read-only ones never stop (the filter reads
    the flags register); opens for writing stop at entry and at exit, where
    the new descriptor is judged (fstat, statfs, fdinfo). Against native and
    strace --seccomp-bpf, which stops at every openat, both on CPU 0.
    `baseline`: also trampwatch from that tree (its PYTHONPATH), in the
    same interleaved rounds."""
    tw = ["taskset", "-c", "0", *TRAMPWATCH, "run", "--no-summary", "-o", "/dev/null", "--"]
    configs = {
        "native": ["taskset", "-c", "0"],
        "strace --seccomp-bpf -e trace=openat": ["taskset", "-c", "0", "strace", "-f", "--seccomp-bpf", "-e",
                                                 "trace=openat", "-o", "/dev/null"],
        "trampwatch run": tw,
    }
    if baseline:
        configs["trampwatch run (baseline tree)"] = ["taskset", "-c", "0", "env", f"PYTHONPATH={baseline}",
                                                     *tw[3:]]
    cases = []
    for mode in ("r", "w"):
        for name, wrapper in configs.items():
            cases.append(Case(f"{name}|{mode}|n", [*wrapper, str(bins["open_loop"]), mode, str(n)]))
            cases.append(Case(f"{name}|{mode}|0", [*wrapper, str(bins["open_loop"]), mode, "0"]))
    med = measure(cases, reps)
    rows = []
    for mode, label in (("r", "O_RDONLY"), ("w", "O_WRONLY")):
        per = {name: (med[f"{name}|{mode}|n"] - med[f"{name}|{mode}|0"]) / n * 1e6 for name in configs}
        strace = per["strace --seccomp-bpf -e trace=openat"]
        rows.extend([label, name, f"{us:.2f}", f"{us / per['native']:.1f}", f"{us / strace:.2f}"]
                    for name, us in per.items())
    table(f"{n:,} open+close of an ordinary file, same CPU (target: O_RDONLY at native cost; O_WRONLY "
          "within 2x strace's per-open cost)",
          ["flags", "workload", "µs per open+close", "x native", "x strace --seccomp-bpf"], rows)


def bench_threads(bins: dict[str, Path], reps: int, threads: int, flips: int) -> None:
    """The many-threads load program against native and strace."""
    prog = [str(bins["threads_flood"]), str(threads), str(flips)]
    cases = [
        Case("native", prog),
        Case("strace -f --seccomp-bpf -e trace=mprotect",
             ["strace", "-f", "--seccomp-bpf", "-e", "trace=mprotect", "-o", "/dev/null", *prog]),
        Case("trampwatch run", [*TRAMPWATCH, "run", "--no-summary", "-o", "/dev/null", "--", *prog]),
    ]
    med = measure(cases, reps)
    rows = [[name, f"{sec:.2f}", f"{sec / med['native']:.1f}",
             f"{sec / med['strace -f --seccomp-bpf -e trace=mprotect']:.2f}"] for name, sec in med.items()]
    table(f"{threads} threads x {flips} mprotect flips ({threads * flips:,} calls), no CPU pinning",
          ["workload", "s (median)", "x native", "x strace --seccomp-bpf"], rows)


def bench_serialise(bins: dict[str, Path], reps: int, n: int, threads: int, flips: int, loops: int) -> None:
    """What judging one address space's memory calls one at a time costs
    (issue 10, route 5): per-event cost with one thread and with many
    threads flipping at once under strict enforce, and a fork/exec-heavy
    shell loop under run against native and strace. With
    TRAMPWATCH_BASELINE_TREE=DIR (a checkout of an earlier commit), that
    tree's trampwatch runs in the same interleaved rounds ("before")."""
    tw = [*TRAMPWATCH, "run", "--no-summary", "-o", "/dev/null", "--policy", "strict", "--mode", "enforce",
          "--"]
    tracers = {"trampwatch strict enforce": tw}
    baseline = os.environ.get("TRAMPWATCH_BASELINE_TREE")
    if baseline:
        tracers["trampwatch strict enforce (baseline tree)"] = ["env", f"PYTHONPATH={baseline}", *tw]
    strace = ["strace", "-f", "--seccomp-bpf", "-e", "trace=mmap,mprotect", "-o", "/dev/null"]
    configs = {"native": ["taskset", "-c", "0"], "strace --seccomp-bpf": ["taskset", "-c", "0", *strace]}
    configs.update({name: ["taskset", "-c", "0", *argv] for name, argv in tracers.items()})
    got = marginal(configs, bins["mprotect_flood"], n, reps)
    native = got["native"][1]
    rows = [[name, f"{(loop - native) / n * 1e6:.1f}"] for name, (_, loop) in got.items() if name != "native"]
    table(f"{n:,} mprotect calls, one thread, same CPU", ["workload", "µs per call over native"], rows)
    prog = [str(bins["threads_flood"]), str(threads), str(flips)]
    med = measure([Case("native", prog), Case("strace --seccomp-bpf", [*strace, *prog]),
                   *(Case(name, [*argv, *prog]) for name, argv in tracers.items())], reps)
    calls = threads * flips
    rows = [[name, f"{sec:.2f}", f"{(sec - med['native']) / calls * 1e6:.1f}", f"{sec / med['native']:.1f}"]
            for name, sec in med.items()]
    table(f"{threads} threads x {flips} mprotect flips at once ({calls:,} calls), no CPU pinning",
          ["workload", "s (median)", "µs per call over native", "x native"], rows)
    true = shutil.which("true") or "/bin/true"
    loop = ["bash", "-c", f"for i in $(seq {loops}); do {true}; done"]
    reference = "strace -f --seccomp-bpf -e trace=mmap,mprotect"
    med = measure([Case("native", loop), Case(reference, [*strace, *loop]),
                   *(Case(name, [*argv, *loop]) for name, argv in tracers.items())], reps)
    rows = [[name, f"{sec * 1000:.0f}", f"{sec / med['native']:.2f}", f"{sec / med[reference]:.2f}"]
            for name, sec in med.items()]
    table(f"{loops} /bin/true from a bash loop (fork/exec heavy), no CPU pinning",
          ["workload", "ms (median)", "x native", "x strace --seccomp-bpf"], rows)


def _start_monitor(args: list[str], json_path: Path,
                   cpu: int | None = None) -> tuple[subprocess.Popen, float]:
    """Start `trampwatch monitor` (on CPU `cpu`, or any); return it once
    attached, and its BPF load time."""
    pin = [] if cpu is None else ["taskset", "-c", str(cpu)]
    argv = [*pin, *TRAMPWATCH, "monitor", "--json", str(json_path), "-o", "/dev/null", *args]
    proc = subprocess.Popen(argv, stderr=subprocess.PIPE, text=True)
    line = proc.stderr.readline()
    if "monitoring" not in line:
        sys.exit(f"bench: monitor did not start: {line}{proc.stderr.read()}")
    return proc, float(line.rsplit(" in ", 1)[1].rstrip("s\n"))


def _stop_monitor(proc: subprocess.Popen, json_path: Path) -> dict:
    """Stop the monitor; return its JSON summary record."""
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=120)
    return json.loads(json_path.read_text().splitlines()[-1])


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time process `pid` has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _burst_cost(flood: str, n: int, cpu: int | None) -> float:
    """µs per mprotect inside one `flip_flood burst` run on CPU `cpu` (or
    any): bursts a monitor drains between them, so every record is delivered."""
    pin = [] if cpu is None else ["taskset", "-c", str(cpu)]
    argv = [*pin, flood, "burst", str(n), str(MONITOR_BURST)]
    calls, seconds = subprocess.run(argv, check=True, capture_output=True, text=True).stdout.split()
    return float(seconds) / int(calls) * 1e6


def _cheap_cost(cheap: str, n: int) -> float:
    """µs per getppid on CPU 0: n calls minus none, so start-up cancels out."""
    pin = ["taskset", "-c", "0", cheap]
    med = measure([Case("n", [*pin, str(n)]), Case("0", [*pin, "0"])], 1)
    return (med["n"] - med["0"]) / n * 1e6


def bench_monitor(bins: dict[str, Path], reps: int, n: int, out: Path) -> None:
    """Added cost per mprotect with the eBPF monitor running, in each
    placement of the workload and the monitor's judge; its start-up, burst
    loss and throughput. Each sample is paired with a native one taken just
    before it (this VM's speed drifts by more than the effects measured)."""
    flood = str(bins["flip_flood"])
    flips = n // 20
    every = ["--comm", "flip_flood", "--no-kernel-repeats"]
    cases = (
        ("not selected, monitor on CPU 1", ["--comm", "no-such-comm"], 1, 0),
        ("selected (every call sent), monitor on CPU 1", every, 1, 0),
        ("selected (every call sent), monitor on CPU 0 too", every, 0, 0),
        ("selected (every call sent), no pinning", every, None, None),
        ("selected, repeats counted in the kernel (default), monitor on CPU 1",
         ["--comm", "flip_flood"], 1, 0),
    )
    native: list[float] = []
    added: dict[str, list[float]] = {label: [] for label, *_ in cases}
    cheap_added: list[float] = []
    cheap_native: list[float] = []
    loads: list[float] = []
    judge_cpu: list[float] = []
    records: dict[str, tuple[int, int]] = {}
    json_path = out / "monitor.jsonl"
    for _ in range(reps):
        for label, args, monitor_cpu, workload_cpu in cases:
            base = _burst_cost(flood, flips, workload_cpu)
            native.append(base)
            if label.startswith("not selected"):
                cheap_native.append(_cheap_cost(str(bins["cheap_syscalls"]), n))
            proc, load = _start_monitor(args, json_path, monitor_cpu)
            loads.append(load)
            cpu_before = _cpu_seconds(proc.pid)
            added[label].append(_burst_cost(flood, flips, workload_cpu) - base)
            if label.startswith("not selected"):
                # Any syscall tracepoint puts every syscall on the kernel's slow path.
                cheap_added.append(_cheap_cost(str(bins["cheap_syscalls"]), n) - cheap_native[-1])
            time.sleep(0.5)  # the last records' poll timeout
            cpu_used = _cpu_seconds(proc.pid) - cpu_before
            summary = _stop_monitor(proc, json_path)
            if summary["calls"] and "every call sent" in label:
                judge_cpu.append(cpu_used / summary["calls"] * 1e6)
            records[label] = (summary["calls"], summary["lost"])
    rows = [["native (no monitor), workload on CPU 0", f"{statistics.median(native):.2f}", "", ""]]
    for label, samples in added.items():
        calls, lost = records[label]
        rows.append([label, f"{statistics.median(samples):+.2f}",
                     f"{min(samples):+.2f} .. {max(samples):+.2f}", f"{calls:,} records, {lost} lost"])
    rows.append([f"getppid() of any process, monitor running (native {statistics.median(cheap_native):.2f})",
                 f"{statistics.median(cheap_added):+.2f}",
                 f"{min(cheap_added):+.2f} .. {max(cheap_added):+.2f}", ""])
    table(f"{flips:,} x 2 mprotect RW<->R after one exec mapping, in bursts of {MONITOR_BURST:,} flips "
          "100 ms apart, timed inside the bursts; each sample minus a native run just before it "
          "(target: under 1 µs added when monitored, noise when not)",
          ["workload", "added µs per call (median)", f"range over {reps} pairs", "user-space records (last)"],
          rows)
    print(f"\nnative run to run: {min(native):.2f} .. {max(native):.2f} µs per mprotect (the noise)")
    print(f"judge (user space) CPU per record, every call sent: {statistics.median(judge_cpu):.1f} µs "
          f"(range {min(judge_cpu):.1f} .. {max(judge_cpu):.1f}); when the judge shares the workload's CPU, "
          "the workload pays its share of that")
    print(f"monitor start-up (BPF compile + attach): {min(loads):.2f} s (target: under 3 s)")
    json_path = out / "burst.jsonl"
    proc, _ = _start_monitor(["--comm", "flip_flood"], json_path)
    burst = 10_000
    subprocess.run([flood, "hist", str(burst // 2)], check=True, stdout=subprocess.DEVNULL)
    summary = _stop_monitor(proc, json_path)
    print(f"a burst of {burst:,} monitored mprotects at the default buffer size: "
          f"{summary['calls']:,} records judged, {summary['lost']} lost")
    for mode, what, args in (
        ("hist", "RW<->R flips after an exec mapping, every call sent", ["--no-kernel-repeats"]),
        ("hist", "RW<->R flips after an exec mapping", []),
        ("wx", "JIT-style RW<->RX flips (each RX a W^X event), every call sent", ["--no-kernel-repeats"]),
        ("wx", "JIT-style RW<->RX flips (each RX a W^X event)", []),
    ):
        _flood(flood, mode, what, args, n, out / f"flood-{mode}-{len(args)}.jsonl")


def _flood(flood: str, mode: str, what: str, args: list[str], n: int, json_path: Path) -> None:
    """Run `flip_flood MODE n` (2n calls) under the monitor; print what was
    judged, what the kernel counted, what was lost, and the judge's CPU."""
    proc, _ = _start_monitor(["--comm", "flip_flood", *args], json_path)
    cpu_before = _cpu_seconds(proc.pid)
    started = time.perf_counter()
    subprocess.run([flood, mode, str(n)], check=True, stdout=subprocess.DEVNULL)
    elapsed = time.perf_counter() - started
    time.sleep(0.5)  # the last records' poll timeout
    cpu = _cpu_seconds(proc.pid) - cpu_before
    summary = _stop_monitor(proc, json_path)
    records = [json.loads(line) for line in json_path.read_text().splitlines()]
    lines = sum(1 for r in records if r["type"] == "event")
    verdicts = sum(r["count"] for r in records if r["type"] == "event")
    expected = n if mode == "wx" else 0
    print(f"a flood of {2 * n:,} {what} in {elapsed:.1f} s: {summary['calls']:,} calls judged, "
          f"{summary['lost']:,} records lost (counted); {verdicts:,} W^X verdicts of {expected:,} "
          f"in {lines:,} event lines; judge CPU {cpu:.2f} s ({cpu / (2 * n) * 1e6:.2f} µs per call)")


def bench_inspect(bins: dict[str, Path], reps: int, n: int, baseline: str | None = None) -> None:
    """inspect of a process with n mappings, against reading its maps and
    against Python start-up (trampwatch --help). `baseline`: also inspect
    from that tree (its PYTHONPATH), in the same interleaved rounds."""
    proc = subprocess.Popen([str(bins["many_maps"]), str(n)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True)
    while proc.stdout.readline().strip() != "READY":
        pass
    startup = "trampwatch --help (python start-up)"
    inspect = [*TRAMPWATCH, "inspect", str(proc.pid)]
    strict = [*inspect, "--policy", "strict"]
    try:
        cases = [
            Case("cat /proc/PID/maps", ["cat", f"/proc/{proc.pid}/maps"]),
            Case("trampwatch inspect PID", inspect),
            # strict forbids the process's anonymous code: exit code 1.
            Case("trampwatch inspect PID --policy strict", strict, ok_codes=(1,)),
            Case(startup, [*TRAMPWATCH, "--help"]),
            # The bare interpreter, for the stricter reading of "python start-up".
            Case("python3 -c pass (the bare interpreter)", [sys.executable, "-c", "pass"]),
        ]
        if baseline:
            env = {**os.environ, "PYTHONPATH": baseline}
            cases += [Case("trampwatch inspect PID (baseline tree)", inspect, env=env),
                      Case("trampwatch inspect PID --policy strict (baseline tree)", strict, (1,), env)]
        med = measure(cases, reps)
    finally:
        proc.communicate("\n", timeout=30)
    rows = [[name, f"{sec * 1000:.0f}", f"{sec / med[startup]:.2f}x"] for name, sec in med.items()]
    table(f"inspect of a process with {n:,} mappings (half of them executable anonymous pages) "
          "(target: inspect within 2x of python start-up)",
          ["command", "ms (median)", "x --help (python start-up)"], rows)


def workload_cases() -> list[tuple[str, list[str]]]:
    """The whole programs of issue 13's table, as (label, argv)."""
    python = "/usr/bin/python3"
    return [
        ("python3 -c 'import json, ctypes, decimal, asyncio, email.mime.text'",
         [python, "-c", "import json, ctypes, decimal, asyncio, email.mime.text"]),
        ("bash loop of 200 /bin/true", ["bash", "-c", "for i in $(seq 200); do /bin/true; done"]),
        ("node creating and calling 20,000 functions", ["node", "-e", NODE_FUNCTIONS]),
        ("java -version", ["java", "-version"]),
        ("node JIT-heavy (200 hot functions, optimised)", ["node", "-e", NODE_JIT]),
        ("bash loop of 1,000 short processes (true, echo, sh -c, env)", ["bash", "-c", SHELL_1000]),
    ]


def bench_workloads(reps: int, baseline: str | None = None) -> None:
    """Whole real programs: native, under strace --seccomp-bpf tracing the
    same memory calls, and under trampwatch run (audit, default policy,
    attribution on, output discarded). Each workload's configurations run
    interleaved. Wall time and CPU time (tracer + program) are both shown:
    on a shared machine CPU time is the steadier of the two. `baseline`:
    another checkout's tree, run as one more configuration
    (PYTHONPATH=baseline) so before and after share the same noise."""
    tw = [*TRAMPWATCH, "run", "--mode", "audit", "--no-summary", "-o", "/dev/null", "--"]
    base_env = {**os.environ, "PYTHONPATH": baseline} if baseline else None
    configs = ["native", "strace", *(["baseline"] if base_env else []), "trampwatch"]
    rows = []
    for label, argv in workload_cases():
        cases = [Case("native", argv), Case("strace", [*STRACE_WORKLOAD, *argv]),
                 Case("trampwatch", [*tw, *argv])]
        if base_env:
            cases.append(Case("baseline", [*tw, *argv], env=base_env))
        wall, cpu = measure_wall_and_cpu(cases, reps)
        row = [label]
        for measured in (wall, cpu):
            row += [f"{measured[name]:.2f}" for name in configs]
            row += [f"{measured[name] / measured['strace']:.2f}x" for name in configs[2:]]
        rows.append(row)
    header = ["workload"]
    for kind in ("wall", "CPU"):
        header += [f"{name} {kind} s" for name in configs]
        header += [f"{name} / strace ({kind})" for name in configs[2:]]
    table("whole programs, no CPU pinning (target: trampwatch within 1.2x strace -f --seccomp-bpf "
          "-e trace=mmap,mprotect,munmap,mremap,brk,pkey_mprotect,shmat)", header, rows)


def bench_scan(reps: int, root: str, baseline: str | None = None) -> None:
    """scan of a directory tree against pax-utils' scanelf -qRe -t over the
    same tree (both walk it, find the ELF files, and report stack, load
    segment and text relocation markings). `baseline`: as for workloads."""
    files = [p for p in Path(root).rglob("*") if p.is_file() and not p.is_symlink()]
    elves = 0
    for path in files:
        try:
            with open(path, "rb") as f:
                elves += f.read(4) == b"\x7fELF"
        except OSError:
            continue
    scanelf = shutil.which("scanelf")
    if scanelf is None:
        sys.exit("bench: scanelf is missing: apt-get install pax-utils (scripts/setup installs it)")
    cases = [
        Case("scanelf -qRe -t (pax-utils)", [scanelf, "-qRe", "-t", root]),
        Case("trampwatch scan", [*TRAMPWATCH, "scan", root]),
        # Whatever the load: the split with a helper process, and one process alone.
        Case("trampwatch scan --helper", [*TRAMPWATCH, "scan", "--helper", root]),
        Case("trampwatch scan --no-helper", [*TRAMPWATCH, "scan", "--no-helper", root]),
    ]
    if baseline:
        cases.append(Case("trampwatch scan (baseline tree)", [*TRAMPWATCH, "scan", root],
                          env={**os.environ, "PYTHONPATH": baseline}))
    load = os.getloadavg()[0]
    med = measure(cases, reps)
    base = med["scanelf -qRe -t (pax-utils)"]
    rows = [[name, f"{sec:.2f}", f"{len(files) / sec:,.0f}", f"{sec / base:.2f}x"]
            for name, sec in med.items()]
    table(f"scan of {root}: {len(files):,} files, {elves:,} ELF, load average {load:.2f} on "
          f"{len(os.sched_getaffinity(0))} CPUs (target: trampwatch scan faster than scanelf; "
          "it splits the tree with a helper process when a CPU is idle)",
          ["command", "s (median)", "files/s", "x scanelf"], rows)


BENCHES: dict[str, Callable[..., None]] = {
    "workloads": bench_workloads,
    "cheap": bench_cheap,
    "mprotect": bench_mprotect,
    "startup": bench_startup,
    "enforce": bench_enforce,
    "threads": bench_threads,
    "opens": bench_opens,
    "serialise": bench_serialise,
    "monitor": bench_monitor,
    "inspect": bench_inspect,
    "scan": bench_scan,
    "trampfd": bench_trampfd_main,
    "closures": bench_closures_main,
}


def main() -> None:
    """Build the programs, run the selected benchmarks, print tables."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="smaller workloads, 3 repetitions")
    parser.add_argument("--only", choices=sorted(BENCHES), action="append")
    parser.add_argument("--baseline", metavar="TREE",
                        help="workloads, mprotect, startup, opens, inspect, scan: also time trampwatch from "
                             "another checkout (its PYTHONPATH)")
    args = parser.parse_args()
    # Byte-code for every tree timed: with PYTHONDONTWRITEBYTECODE set (some
    # sandboxes do), each run would otherwise compile trampwatch's modules
    # from source, a cost no installed copy pays.
    for tree in (ROOT, *([Path(args.baseline)] if args.baseline else [])):
        compileall.compile_dir(tree / "tracer", quiet=1)
    reps = 3 if args.quick else args.reps
    scale = 10 if args.quick else 1
    if os.cpu_count() and os.cpu_count() < 2:
        print("note: one CPU only: 'across CPUs' rows measure the same placement")
    with tempfile.TemporaryDirectory(prefix="tw-bench-") as tmp:
        out = Path(tmp)
        bins = {
            "cheap_syscalls": build(out, PROGRAMS / "cheap_syscalls.c"),
            "mprotect_flood": build(out, PROGRAMS / "mprotect_flood.c"),
            "threads_flood": build(out, PROGRAMS / "threads_flood.c", "-pthread"),
            "seccomp_allow_exec": build(out, BENCH_PROGRAMS / "seccomp_allow_exec.c"),
            "flip_flood": build(out, BENCH_PROGRAMS / "flip_flood.c"),
            "many_maps": build(out, ROOT / "tests" / "inspect_programs" / "many_maps.c"),
            "open_loop": build(out, BENCH_PROGRAMS / "open_loop.c"),
        }
        print(f"# trampwatch benchmarks ({time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} CPUs, "
              f"{reps} interleaved repetitions, medians)")
        selected = args.only or list(BENCHES)
        if "workloads" in selected:
            bench_workloads(reps, args.baseline)
        if "cheap" in selected:
            bench_cheap(bins, reps, 2_000_000 // scale)
        if "mprotect" in selected:
            bench_mprotect(bins, reps, 100_000 // scale, args.baseline)
        if "startup" in selected:
            bench_startup(reps, args.baseline)
        if "enforce" in selected:
            bench_enforce(bins, reps, 50_000 // scale, out)
        if "threads" in selected:
            bench_threads(bins, reps, 500, 2000 // scale)
        if "opens" in selected:
            bench_opens(bins, reps, 20_000 // scale, args.baseline)
        if "serialise" in selected:
            bench_serialise(bins, reps, 20_000 // scale, 500, 200 // scale, 500)
        if "monitor" in selected:
            bench_monitor(bins, reps, 500_000 // scale, out)
        if "inspect" in selected:
            bench_inspect(bins, reps, 10_000, args.baseline)
        if "scan" in selected:
            bench_scan(reps, "/usr/lib", args.baseline)
        if "trampfd" in selected:
            print()
            sys.stdout.flush()
            bench_trampfd_main(["--reps", str(reps), *(["--quick"] if args.quick else [])])
        if "closures" in selected:
            print()
            sys.stdout.flush()
            bench_closures_main(["--reps", str(reps), *(["--quick"] if args.quick else [])])


if __name__ == "__main__":
    main()
