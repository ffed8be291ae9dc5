"""trampfd emulation benchmarks: the cost of one trampoline invocation, and
of the emulator for a program's unrelated I/O, against anchors measured in
the same run (medians of interleaved repetitions).

Anchors, all calling add(a, 1) with the 1 supplied by the "trampoline":
  direct      an indirect call to add (the trampoline's floor)
  rwx         a code trampoline written into an RWX page (what W^X forbids)
  sigsegv     a PROT_NONE page and an in-process SIGSEGV handler that patches
              the registers (user-space fault emulation without a tracer)
  c-ptrace    a minimal C ptrace emulator: waitpid, GETREGS, SETREGS, CONT
Measured:
  v1          trampfd v1 under `trampwatch run --emulate-trampfd`
  v2          a trampfd v2 table entry under the same
  io          pread/pwrite/read/write/lseek under `run` and `run --emulate-trampfd`,
              by a program without a trampfd and by one holding one (which
              pays a seccomp filter run per read/write: docs/trampfd.md)

Fault-based cases are run with tracer and tracee on one CPU and on two.
Targets (issue 5): v1 within 1.5x of c-ptrace in the same placement, v2
within 1.5x of rwx, io under --emulate-trampfd within 5% of plain run.

    .venv/bin/python scripts/bench_trampfd.py [--reps N] [--quick]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
INCLUDE = ROOT / "tracer" / "include"
TRAMPWATCH = [sys.executable, "-m", "tracer", "run", "--no-summary", "-o", os.devnull]

# One program, one mode per run: it times its own loop and prints "NS <ns per iteration>".
BENCH_C = r"""
#define _GNU_SOURCE
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/user.h>
#include <sys/wait.h>
#include <time.h>
#include <ucontext.h>
#include "trampfd.h"

typedef long (*fn_t)(long, long);
static long add(long a, long b) { return a + b; }
static char *fault_page;

static double now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e9 + t.tv_nsec;
}

/* Calls f(i, b) n times: b is 1 for a direct call, 0 where the trampoline supplies the 1. */
static void loop(fn_t f, long n, long b)
{
    fn_t volatile fp = f;
    long i, sum = 0;
    double start = now_ns();

    for (i = 0; i < n; i++)
        sum += fp(i, b);
    if (sum != n * (n - 1) / 2 + n) {
        fprintf(stderr, "wrong result %ld\n", sum);
        exit(3);
    }
    printf("NS %.3f\n", (now_ns() - start) / n);
}

static void on_segv(int sig, siginfo_t *si, void *ctx)
{
    ucontext_t *uc = ctx;
    (void)sig;
    if ((char *)uc->uc_mcontext.gregs[REG_RIP] != fault_page)
        abort();
    (void)si;
    uc->uc_mcontext.gregs[REG_RSI] = 1;
    uc->uc_mcontext.gregs[REG_RIP] = (greg_t)add;
}

static void pin(int cpu)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    sched_setaffinity(0, sizeof(set), &set);
}

static fn_t rwx(void)
{
    int rwx_prot = PROT_READ | PROT_WRITE | PROT_EXEC;
    unsigned char *p = mmap(NULL, 4096, rwx_prot, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    uint64_t target = (uint64_t)add;

    p[0] = 0xbe, p[1] = 1, p[2] = 0, p[3] = 0, p[4] = 0; /* mov $1, %esi */
    p[5] = 0x48, p[6] = 0xb8;                           /* movabs $add, %rax */
    memcpy(p + 7, &target, 8);
    p[15] = 0xff, p[16] = 0xe0;                         /* jmp *%rax */
    return (fn_t)p;
}

static fn_t v1(void)
{
    struct trampfd_user user = {0, 0};
    struct trampfd_reg regs[] = {{TRAMPFD_REG_RSI, 0, 1}, {TRAMPFD_REG_RIP, 0, (uint64_t)add}};
    int fd = trampfd_create(TRAMPFD_USER, &user, 0);
    fn_t f;

    if (fd < 0 || trampfd_set_regs(fd, regs, 2) || !(f = (fn_t)trampfd_map(fd))) {
        perror("trampfd v1");
        exit(2);
    }
    return f;
}

static fn_t v2(void)
{
    static uint64_t code[1], data[1];
    struct trampfd_info info;
    struct trampfd_code c = {1, TRAMPFD_V2_REG_R11, (uint64_t)code};
    struct trampfd_data d = {TRAMPFD_V2_REG_RSI, 0, (uint64_t)data};
    int fd = trampfd_create_table(&info);
    void *table;

    if (fd < 0 || !(table = trampfd_map_table(fd, &info, &c, &d))) {
        perror("trampfd v2");
        exit(2);
    }
    code[0] = (uint64_t)add;
    data[0] = 1;
    return (fn_t)table;
}

/* The tracee forked by c_ptrace: a PROT_NONE page "trampoline". */
static void c_ptrace(long n, int tracer_cpu, int tracee_cpu)
{
    int status;
    pid_t child;

    fault_page = mmap(NULL, 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    pin(tracer_cpu);
    child = fork();
    if (child == 0) {
        pin(tracee_cpu);
        ptrace(PTRACE_TRACEME, 0, 0, 0);
        raise(SIGSTOP);
        loop((fn_t)fault_page, n, 0);
        fflush(stdout);
        _exit(0);
    }
    waitpid(child, &status, 0);
    ptrace(PTRACE_CONT, child, 0, 0);
    while (waitpid(child, &status, 0) == child && WIFSTOPPED(status)) {
        int sig = WSTOPSIG(status);
        struct user_regs_struct r;

        if (sig == SIGSEGV) {
            ptrace(PTRACE_GETREGS, child, 0, &r);
            if (r.rip == (unsigned long)fault_page) {
                r.rsi = 1;
                r.rip = (unsigned long)add;
                ptrace(PTRACE_SETREGS, child, 0, &r);
                sig = 0;
            }
        }
        ptrace(PTRACE_CONT, child, 0, sig);
    }
}

/* 64 KiB pwrite + pread per iteration: data-bound I/O. */
static void bulk(long n)
{
    static char buf[65536];
    char path[] = "/tmp/bench_trampfd_bulk_XXXXXX";
    int file = mkstemp(path);
    double start;
    long i;

    unlink(path);
    start = now_ns();
    for (i = 0; i < n; i++) {
        if (pwrite(file, buf, sizeof(buf), (i & 15) * sizeof(buf)) != sizeof(buf) ||
            pread(file, buf, sizeof(buf), (i & 15) * sizeof(buf)) != sizeof(buf)) {
            perror("bulk");
            exit(2);
        }
    }
    printf("NS %.3f\n", (now_ns() - start) / n);
}

static void io(long n)
{
    char path[] = "/tmp/bench_trampfd_io_XXXXXX", buf[256] = {0};
    int file = mkstemp(path), null = open("/dev/null", O_WRONLY);
    double start;
    long i;

    unlink(path);
    start = now_ns();
    for (i = 0; i < n; i++) {
        if (pwrite(file, buf, sizeof(buf), (i & 63) * 256) != sizeof(buf) ||
            pread(file, buf, sizeof(buf), (i & 63) * 256) != sizeof(buf) || lseek(file, 0, SEEK_SET) != 0 ||
            read(file, buf, 64) != 64 || write(null, buf, 64) != 64) {
            perror("io");
            exit(2);
        }
    }
    printf("NS %.3f\n", (now_ns() - start) / n);
}

int main(int argc, char **argv)
{
    const char *mode = argv[1];
    long n = atol(argv[2]);
    struct sigaction sa;

    setvbuf(stdout, NULL, _IONBF, 0);
    if (!strcmp(mode, "direct"))
        loop(add, n, 1);
    else if (!strcmp(mode, "rwx"))
        loop(rwx(), n, 0);
    else if (!strcmp(mode, "sigsegv")) {
        fault_page = mmap(NULL, 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        memset(&sa, 0, sizeof(sa));
        sa.sa_sigaction = on_segv;
        sa.sa_flags = SA_SIGINFO;
        sigaction(SIGSEGV, &sa, NULL);
        loop((fn_t)fault_page, n, 0);
    } else if (!strcmp(mode, "c-ptrace"))
        c_ptrace(n, atoi(argv[3]), atoi(argv[4]));
    else if (!strcmp(mode, "v1"))
        loop(v1(), n, 0);
    else if (!strcmp(mode, "v2"))
        loop(v2(), n, 0);
    else if (!strcmp(mode, "io"))
        io(n);
    else if (!strcmp(mode, "io-trampfd")) {
        v1();
        io(n);
    } else if (!strcmp(mode, "bulk"))
        bulk(n);
    else if (!strcmp(mode, "bulk-trampfd")) {
        v1();
        bulk(n);
    }
    else
        return 2;
    return 0;
}
"""


@dataclass(frozen=True)
class Case:
    """One measured command: its name, placement and argv."""

    name: str
    placement: str
    argv: tuple[str, ...]


def build(directory: Path) -> Path:
    """Compile the bench program; return its path."""
    source = directory / "bench_trampfd.c"
    source.write_text(BENCH_C)
    binary = directory / "bench_trampfd"
    subprocess.run(["gcc", "-O2", "-Wall", f"-I{INCLUDE}", "-o", str(binary), str(source)], check=True)
    return binary


def cases(binary: Path, quick: bool) -> list[Case]:
    """Every case, with iteration counts sized for about 0.1-0.5 s each."""
    scale = 10 if quick else 1
    fast, slow, io = str(10_000_000 // scale), str(20_000 // scale), str(200_000 // scale)
    bulk = str(20_000 // scale)
    prog = str(binary)
    emulate = [*TRAMPWATCH, "--emulate-trampfd", "--"]
    same, apart = ["taskset", "-c", "0"], ["taskset", "-c", "1"]
    return [
        Case("direct", "-", (prog, "direct", fast)),
        Case("rwx", "-", (prog, "rwx", fast)),
        Case("v2", "one CPU", (*same, *emulate, prog, "v2", fast)),
        Case("sigsegv", "-", (prog, "sigsegv", str(200_000 // scale))),
        Case("c-ptrace", "one CPU", (prog, "c-ptrace", slow, "0", "0")),
        Case("v1", "one CPU", (*same, *emulate, prog, "v1", slow)),
        Case("c-ptrace", "two CPUs", (prog, "c-ptrace", slow, "0", "1")),
        Case("v1", "two CPUs", (*same, *emulate, *apart, prog, "v1", slow)),
        Case("io: run", "-", (*TRAMPWATCH, "--", prog, "io", io)),
        Case("io: run --emulate-trampfd", "-", (*emulate, prog, "io", io)),
        Case("io: run --emulate-trampfd, holding a trampfd", "-", (*emulate, prog, "io-trampfd", io)),
        Case("bulk: run", "-", (*TRAMPWATCH, "--", prog, "bulk", bulk)),
        Case("bulk: run --emulate-trampfd, holding a trampfd", "-", (*emulate, prog, "bulk-trampfd", bulk)),
    ]


def run_once(case: Case) -> float:
    """Run a case; return the nanoseconds per iteration it printed."""
    done = subprocess.run(case.argv, capture_output=True, text=True, check=False, cwd=ROOT)
    lines = [line for line in done.stdout.splitlines() if line.startswith("NS ")]
    if done.returncode != 0 or not lines:
        sys.exit(f"bench_trampfd: {' '.join(case.argv)} failed ({done.returncode}): {done.stderr.strip()}")
    return float(lines[-1].split()[1])


def measure(all_cases: list[Case], reps: int) -> dict[Case, float]:
    """Run every case `reps` times, interleaved; return the medians."""
    samples: dict[Case, list[float]] = {case: [] for case in all_cases}
    for _ in range(reps):
        for case in all_cases:
            samples[case].append(run_once(case))
    return {case: statistics.median(values) for case, values in samples.items()}


def fmt(ns: float) -> str:
    return f"{ns / 1000:.2f} µs" if ns >= 1000 else f"{ns:.2f} ns"


def report(medians: dict[Case, float]) -> str:
    """Return the markdown tables: per-invocation costs with ratios, I/O overhead."""
    by = {(case.name, case.placement): value for case, value in medians.items()}
    anchors = {"v2": ("rwx", "-"), "v1": ("c-ptrace", None), "rwx": ("direct", "-"),
               "sigsegv": ("direct", "-"), "c-ptrace": ("sigsegv", "-")}
    lines = ["| invocation | placement | median per call | ratio | to |", "| --- | --- | ---: | ---: | --- |"]
    for case, value in medians.items():
        if case.name.startswith(("io", "bulk")):
            continue
        anchor = anchors.get(case.name)
        ratio, to = "", ""
        if anchor:
            key = (anchor[0], anchor[1] or case.placement)
            ratio, to = f"{value / by[key]:.2f}x", f"{key[0]} ({key[1]})" if key[1] != "-" else key[0]
        lines.append(f"| {case.name} | {case.placement} | {fmt(value)} | {ratio} | {to} |")
    titles = (("io", "small I/O: 5 calls of 64-256 bytes"), ("bulk", "bulk I/O: 64 KiB pwrite+pread"))
    for kind, title in titles:
        plain = by[(f"{kind}: run", "-")]
        lines += ["", f"| unrelated {title} | median per iteration | ratio |", "| --- | ---: | ---: |"]
        for case, value in medians.items():
            if case.name.startswith(f"{kind}:"):
                command = case.name.split(": ", 1)[1]
                lines.append(f"| trampwatch {command} | {fmt(value)} | {value / plain:.3f}x |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Build, measure, print the tables; return an exit code."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=5, help="repetitions per case (median)")
    parser.add_argument("--quick", action="store_true", help="a tenth of the iterations")
    args = parser.parse_args(argv)
    if os.cpu_count() is None or os.cpu_count() < 2:
        print("bench_trampfd: the two-CPU placements need 2 CPUs", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory() as tmp:
        binary = build(Path(tmp))
        sys.stdout.write(report(measure(cases(binary, args.quick), args.reps)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
