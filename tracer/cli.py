"""The command line: arguments become a pipeline, errors become messages and
exit codes. This is the only module that imports click."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

import click

from . import __version__
from .errors import EXIT_USAGE, CapabilityMissing, PolicyError, TrampwatchError
from .policy.loader import load_policy_file, preset_names, resolve_policy
from .policy.model import Policy

# What tracing needs is imported by the commands that trace: `scan`,
# `inspect` and `policy` start without the pipeline, the caches, the fast
# path's ctypes or the seccomp builder (half of a scan's start-up).
if TYPE_CHECKING:
    from .actions.seccomp_deny import SeccompEnforcement
    from .caches import Snapshot
    from .events import AttachEvent
    from .pipeline import Judge, Output
    from .sources.fast_faults import FastFaults
    from .sources.seccomp_filter import TrapRule


def _error_lines(err: TrampwatchError, outcome: str) -> str:
    """An error the way users read it; `outcome` says what it stopped."""
    if isinstance(err, PolicyError):
        return "\n".join([*(str(issue) for issue in err.issues),
                          f"trampwatch: policy has {len(err.issues)} error(s); {outcome}"])
    return f"trampwatch: {err}"


def _fail(err: TrampwatchError) -> None:
    """Print an error the way users read it and exit with its code."""
    click.echo(_error_lines(err, "nothing was run"), err=True)
    sys.exit(err.exit_code)


EXIT_INTERNAL = 70  # EX_SOFTWARE


def main() -> None:
    """The trampwatch command: a bug in trampwatch itself is one clear line
    and exit code 70, not a traceback (TRAMPWATCH_DEBUG=1 shows it)."""
    try:
        commands()
    except Exception as err:  # every deliberate error is a TrampwatchError, handled inside
        if os.environ.get("TRAMPWATCH_DEBUG"):
            raise
        click.echo(f"trampwatch: internal error: {type(err).__name__}: {err} "
                   "(TRAMPWATCH_DEBUG=1 shows where; please report it)", err=True)
        sys.exit(EXIT_INTERNAL)


def exit_code_of(status: int | None) -> int:
    """Return the shell-style exit code of a wait status (128+N for signal N)."""
    if status is None:
        return 1
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    if os.WIFEXITED(status):
        return os.WEXITSTATUS(status)
    return 1


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(version=__version__, prog_name="trampwatch")
def commands() -> None:
    """trampwatch: trace, judge and enforce W^X memory and trampolines."""


def _open_outputs(stack: ExitStack, output: str | None, json_path: str | None,
                  summary: bool) -> list[Output]:
    from .outputs.jsonl import JsonLinesOutput
    from .outputs.summary import Summary
    from .outputs.text import TextOutput

    text_stream: TextIO = sys.stderr
    if output:
        text_stream = stack.enter_context(_open_for_write(output))
    outputs: list[Output] = [TextOutput(text_stream)]
    if json_path == "-":
        outputs.append(JsonLinesOutput(sys.stdout))
    elif json_path:
        outputs.append(JsonLinesOutput(stack.enter_context(_open_for_write(json_path))))
    if summary:
        outputs.append(Summary(text_stream))
    return outputs


def _open_for_write(path: str) -> TextIO:
    try:
        return open(path, "w", encoding="utf-8")
    except OSError as err:
        raise click.BadParameter(f"cannot write {path}: {err.strerror}") from err


def _load_policy(name: str) -> Policy:
    policy = resolve_policy(name)
    for warning in policy.warnings:
        click.echo(f"warning: {warning}", err=True)
    return policy


def _judge(stack: ExitStack, policy_name: str, mode: str | None, output: str | None, json_path: str | None,
           summary: bool, all_calls: bool) -> Judge:
    """The policy, mode and outputs of a ptrace run, as one Judge."""
    policy = _load_policy(policy_name)
    return _ptrace_judge(policy, mode, _open_outputs(stack, output, json_path, summary), all_calls)


def _ptrace_judge(policy: Policy, mode: str | None, outputs: list[Output], all_calls: bool) -> Judge:
    """The Judge of a ptrace run with this policy, mode and outputs."""
    from .pipeline import Judge

    return Judge(policy, mode or policy.mode or "audit", outputs, source="ptrace", report_all=all_calls)


def _child_setup(kernel_mdwe: bool, extra: Sequence[TrapRule], seccomp: SeccompEnforcement,
                 preload: str | None = None) -> Callable[[], None]:
    from .actions.seccomp_deny import CLONE3, WX_MMAP
    from .sources.seccomp_filter import build_filter, build_syscall_refusal, build_wx_refusal, load_filter

    filters = [build_filter(extra=(*extra, *seccomp.traps))]
    refuse_wx, refuse_clone3 = seccomp.errno_of(WX_MMAP), seccomp.errno_of(CLONE3)
    if refuse_wx is not None:
        filters.extend(build_wx_refusal(refuse_wx))
    if refuse_clone3 is not None:
        filters.append(build_syscall_refusal("clone3", refuse_clone3))

    def prepare() -> None:
        if preload:
            # In the traced child only: the tree inherits it, trampwatch does not.
            previous = os.environ.get("LD_PRELOAD")
            os.environ["LD_PRELOAD"] = f"{preload}:{previous}" if previous else preload
        if kernel_mdwe:
            from .actions.mdwe import apply_kernel_mdwe

            apply_kernel_mdwe()
        for flt in filters:
            load_filter(flt)

    return prepare


def _seccomp_enforcement(judge: Judge, refuse_wx: bool) -> SeccompEnforcement:
    """What the traced command's seccomp filter does (`refuse_wx`: W+X mmap
    may be refused in the kernel). In enforce mode the ptrace enforcer
    carries it, and says now what the kernel refuses unseen."""
    from .actions.outcomes import PtraceEnforcer
    from .actions.seccomp_deny import seccomp_enforcement

    enforce = judge.mode == "enforce"
    seccomp = seccomp_enforcement(judge.policy, enforce, refuse_wx)
    if enforce:
        judge.enforcer = PtraceEnforcer(seccomp)
        for note in judge.enforcer.notes:
            click.echo(f"trampwatch: {note}", err=True)
    return seccomp


CLOSURE_CHOICES = ("auto", "trampfd", "emulate")


def _drop_changed(caches: Snapshot) -> None:
    """Remove the cache files written while a traced program ran, saying so."""
    dropped = caches.drop_changed()
    if dropped:
        click.echo(f"trampwatch: removed {len(dropped)} file(s) of trampwatch's caches written while the "
                   f"program ran (the next run compiles or builds them again): {', '.join(dropped)}",
                   err=True)


def _register(stack: ExitStack) -> None:
    """Make this run known on trampwatch's caches until `stack` closes,
    saying which it emptied of a killed run's leftovers."""
    from .caches import register

    for directory in register(stack).emptied:
        click.echo(f"trampwatch: emptied {directory}: a run that ended without its sweep (killed) had "
                   "left files there", err=True)


def _fast_faults(libraries: Path | None) -> FastFaults | None:
    """The fast path of emulated faults (built in `libraries` if needed), or
    None (said in one line) when it cannot be built: every invocation is
    then served by the Python path."""
    from .sources.fast_faults import FastFaults

    try:
        return FastFaults.load(libraries)
    except TrampwatchError as err:
        first = str(err).splitlines()[0]
        click.echo(f"trampwatch: {first}: emulated invocations take the slower Python path", err=True)
        return None


def _jit_note(refused: int, closures: str) -> str:
    """Why a program failed in memory emulate mode granted without exec."""
    return (f"trampwatch: {refused} jump(s) into memory that --closures={closures} granted without exec "
            "found no known trampoline there: code written at run time (a JIT's), which --closures "
            "cannot serve, since it takes exec from every W+X request; the program got SIGSEGV. Run such "
            "a program without --closures (docs/closures.md#limits)")


def _one_handler(handlers: list) -> object | None:
    """The source's one SyscallHandler: none, the only one, or a chain."""
    if len(handlers) <= 1:
        return handlers[0] if handlers else None
    from .actions.chain import HandlerChain

    return HandlerChain(handlers)


def judge_options(func: Callable) -> Callable:
    """The options every tracing command shares: policy, mode and outputs."""
    options = [
        click.option("--policy", "policy_name", default="default", show_default=True,
                     help="A preset name (see `trampwatch policy list`) or a policy file."),
        click.option("--mode", type=click.Choice(["audit", "enforce"]), default=None,
                     help="audit reports what the policy would do; enforce does it. "
                          "Default: the policy's mode, else audit."),
        click.option("--json", "json_path", metavar="PATH|-",
                     help="Write JSON lines (schema: docs/events.md); - is stdout."),
        click.option("-o", "--output", metavar="PATH", help="Write the human report here instead of stderr."),
        click.option("--summary/--no-summary", default=True, help="Print the summary table at the end."),
        click.option("--all-calls", is_flag=True,
                     help="Report every memory call that changes protections, not only W^X events."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


@commands.command(context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@judge_options
@click.option("--emulate-trampfd", is_flag=True,
              help="Serve the trampfd syscall (docs/trampfd.md) for COMMAND: trampolines without W+X memory.")
@click.option("--trampfd-nr", type=click.IntRange(0, 1023), default=440, show_default=True,
              help="The syscall number programs use for trampfd (440 is process_madvise: see the docs).")
@click.option("--kernel-mdwe", is_flag=True,
              help="Also apply the kernel's PR_SET_MDWE to COMMAND before exec (defense in depth).")
@click.option("--kernel-deny/--no-kernel-deny", default=True, show_default=True,
              help="In enforce mode, refuse W+X mmap in the seccomp filter when the policy denies them all.")
@click.option("--closures", type=click.Choice(CLOSURE_CHOICES), is_flag=False, flag_value="auto",
              help="Serve libffi closures and GCC nested-function trampolines without W+X memory "
                   "(docs/closures.md); no value means auto. Write `--closures -- COMMAND` or "
                   "`--closures=MODE`. Default: the policy's spec.closures, else off.")
@click.option("--trace-trampolines", is_flag=True,
              help="Report every trampoline invocation (--emulate-trampfd) and every closure served "
                   "(--closures).")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
def run(policy_name: str, mode: str | None, json_path: str | None, output: str | None, summary: bool,
        all_calls: bool, emulate_trampfd: bool, trampfd_nr: int, kernel_mdwe: bool, kernel_deny: bool,
        closures: str | None, trace_trampolines: bool, command: tuple[str, ...]) -> None:
    """Run COMMAND under the tracer and report every W^X event.

    trampwatch exits with COMMAND's status (128+N if a signal N killed it).
    """
    from .caches import Snapshot, library_dir

    try:
        with ExitStack() as stack:
            _register(stack)
            policy = _load_policy(policy_name)
            outputs = _open_outputs(stack, output, json_path, summary)
            closures = closures or policy.closures
            if trace_trampolines and not (emulate_trampfd or closures):
                raise click.UsageError("--trace-trampolines needs --emulate-trampfd or --closures")
            if closures in ("trampfd", "auto") and trampfd_nr != 440:
                raise click.UsageError("--closures=trampfd and auto use trampfd's number 440 "
                                       "(the library is built for it): drop --trampfd-nr")
            preload = fast = None
            # The cache when no other run is live on it, else a private directory.
            libraries = library_dir(stack) if closures else None
            if closures in ("trampfd", "auto"):
                from .closures.preload import preload_value

                preload = preload_value(libraries)
            # --trace-trampolines reports every invocation: all go through Python then.
            if closures in ("emulate", "auto") and not trace_trampolines:
                fast = _fast_faults(libraries)
            # The run starts here, after the last file trampwatch writes before
            # the program runs (the libraries above): the ptrace source waits for
            # the kernel's inode clock to pass this moment, and so overlaps that
            # wait (a tick or so) with the rest of the start-up (the pipeline's
            # import is most of it), which writes no file.
            started_ns = time.clock_gettime_ns(time.CLOCK_REALTIME)
            from .collector import freeze_alive
            from .pipeline import trace_command

            judge = _ptrace_judge(policy, mode, outputs, all_calls)
            judge.trace_trampolines = trace_trampolines
            handlers: list = []
            if emulate_trampfd or closures in ("trampfd", "auto"):
                from .actions.emulate import TrampfdEmulator

                handlers.append(TrampfdEmulator(trampfd_nr, trace_trampolines))
            if closures in ("trampfd", "auto"):
                from .actions.closures import ClosureAnnouncements
                from .closures.preload import ANNOUNCE_NR

                handlers.append(ClosureAnnouncements(ANNOUNCE_NR))
            emulator = None
            if closures in ("emulate", "auto"):
                from .actions.closures import ClosureEmulator

                emulator = ClosureEmulator(trace_trampolines)
                handlers.append(emulator)
            handler = _one_handler(handlers)
            # Emulate mode grants W+X requests as W: the kernel must not refuse them first.
            seccomp = _seccomp_enforcement(judge, kernel_deny and emulator is None)
            prepare = _child_setup(kernel_mdwe, handler.trap_rules() if handler else (), seccomp, preload)
            # The program owns the terminal's signals: Ctrl-C reaches it, not us.
            previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGQUIT)}
            # The program may write trampwatch's caches as the user may: what it changed goes.
            caches = Snapshot()
            freeze_alive()
            try:
                status = trace_command(judge, list(command), prepare, handler, seccomp.clone3_exit_only,
                                       fast, started_ns)
            finally:
                for sig, disposition in previous.items():
                    signal.signal(sig, disposition)
                _drop_changed(caches)
            if emulator is not None:
                # Those the fast path served count as emulated too (it repeats the emulator's decisions).
                judge.stats.closures["invoke-fast"] = fast.served if fast else 0
                judge.stats.closures["invoke"] = emulator.invocations + judge.stats.closures["invoke-fast"]
                if emulator.refused:
                    click.echo(_jit_note(emulator.refused, closures), err=True)
            judge.finish(status)
    except TrampwatchError as err:
        _fail(err)
    sys.exit(exit_code_of(status))


@commands.command()
@judge_options
@click.argument("pid", type=int)
def attach(policy_name: str, mode: str | None, json_path: str | None, output: str | None, summary: bool,
           all_calls: bool, pid: int) -> None:
    """Trace the running process PID (every thread) until it exits or Ctrl-C,
    which detaches and leaves it running as it was."""
    from .caches import Snapshot
    from .pipeline import trace_attached

    try:
        with ExitStack() as stack:
            _register(stack)
            judge = _judge(stack, policy_name, mode, output, json_path, summary, all_calls)

            def ready(attached: AttachEvent) -> None:
                click.echo(f"trampwatch: attached to pid {attached.pid} ({len(attached.threads)} thread(s)), "
                           f"tracing ({judge.mode})", err=True)

            caches = Snapshot()
            try:
                status = trace_attached(judge, pid, ready)
            finally:
                _drop_changed(caches)
            judge.finish(status)
    except TrampwatchError as err:
        _fail(err)
    sys.exit(exit_code_of(status) if status is not None else 0)


@commands.command()
@click.option("--policy", "policy_name", default="default", show_default=True,
              help="A preset name or a policy file.")
@click.option("--mode", type=click.Choice(["audit", "enforce"]), default=None,
              help="enforce kills in the kernel what deny/kill rules forbid (see docs/monitor.md).")
@click.option("--json", "json_path", metavar="PATH|-", help="Write JSON lines; - is stdout.")
@click.option("-o", "--output", metavar="PATH", help="Write the human report here instead of stderr.")
@click.option("--pid", "pids", type=int, multiple=True, help="Watch this process and its descendants.")
@click.option("--comm", "comms", multiple=True, help="Watch processes with this comm.")
@click.option("--cgroup", "cgroups", multiple=True, help="Watch processes in this cgroup v2 directory.")
@click.option("--select-file", type=click.Path(dir_okay=False, path_type=Path),
              help="Also watch what this file lists ('pid N', 'comm NAME', 'cgroup DIR' lines); "
                   "SIGHUP re-reads it and the policy.")
@click.option("--duration", type=click.FloatRange(min=0, min_open=True), help="Stop after SECONDS.")
@click.option("--buffer-pages", type=int, default=1024, show_default=True,
              help="Ring buffer size in pages (a power of two).")
@click.option("--require-deny", is_flag=True,
              help="Refuse to start unless every deny rule can be refused in the kernel with its errno.")
@click.option("--metrics", metavar="HOST:PORT", help="Serve Prometheus metrics here.")
@click.option("--all-calls", is_flag=True, help="Report every memory call the kernel side delivers.")
@click.option("--kernel-repeats/--no-kernel-repeats", default=True, show_default=True,
              help="Count equal repeated protection changes in the kernel and report them as one event "
                   "with a count (docs/monitor.md); --no-kernel-repeats sends every call.")
def monitor(policy_name: str, mode: str | None, json_path: str | None, output: str | None,
            pids: tuple[int, ...], comms: tuple[str, ...], cgroups: tuple[str, ...], select_file: Path | None,
            duration: float | None, buffer_pages: int, require_deny: bool, metrics: str | None,
            all_calls: bool, kernel_repeats: bool) -> None:
    """Watch W^X host-wide with eBPF until SIGINT/SIGTERM (or --duration).
    SIGHUP reloads the policy and the --select-file."""
    from .actions.kernel_enforce import compile_kill_rules
    from .actions.outcomes import AUDIT, KernelKillEnforcer
    from .pipeline import Judge, monitor_host
    from .probe import bpf_lsm_probe
    from .sources.ebpf_records import check_kill_rules
    from .sources.ebpf_source import EbpfConfig, EbpfSource
    from .sources.selection import Selection, read_selection

    given = Selection(pids, comms, cgroups)

    def selection() -> Selection:
        return given | read_selection(select_file) if select_file else given

    try:
        policy = _load_policy(policy_name)
        mode = mode or policy.mode or "audit"
        enforcement = compile_kill_rules(policy)
        enforcer = KernelKillEnforcer(enforcement) if mode == "enforce" else AUDIT
        if mode == "enforce":
            lsm = bpf_lsm_probe()
            if not lsm.ok:
                if require_deny:
                    raise CapabilityMissing("BPF LSM", f"{lsm.detail}: deny rules cannot return an errno",
                                            lsm.fix or "a kernel that allows BPF LSM programs")
                click.echo(f"trampwatch: BPF LSM unavailable ({lsm.detail}): deny rules fall back to "
                           "SIGKILL at syscall entry", err=True)
        for note in enforcer.notes:
            click.echo(f"trampwatch: {note}", err=True)
        watched = selection()
        config = EbpfConfig(pids=watched.pids, comms=watched.comms, cgroups=watched.cgroups,
                            buffer_pages=buffer_pages,
                            kill_rules=enforcement.rules if mode == "enforce" else (),
                            enforce=mode == "enforce", repeats=kernel_repeats)
        with ExitStack() as stack:
            outputs = _open_outputs(stack, output, json_path, summary=True)
            if metrics:
                from .outputs.metrics import MetricsOutput

                host, _, port = metrics.rpartition(":")
                if not port.isdigit():
                    raise click.BadParameter(f"--metrics wants HOST:PORT, not {metrics!r}")
                outputs.append(MetricsOutput(host or "0.0.0.0", int(port)))
            judge = Judge(policy, mode, outputs, source="ebpf", report_all=all_calls, enforcer=enforcer)
            source = stack.enter_context(EbpfSource(config))

            def ready() -> None:
                click.echo(f"trampwatch: monitoring ({mode}); BPF compiled and attached in "
                           f"{source.load_seconds:.2f}s", err=True)

            def reload() -> None:
                # Everything is read and checked before anything changes.
                try:
                    new_policy = _load_policy(policy_name)
                    rules = compile_kill_rules(new_policy)
                    check_kill_rules(rules.rules)
                    new_selection = selection()
                    source.set_filters(pids=new_selection.pids, comms=new_selection.comms,
                                       cgroups=new_selection.cgroups)
                except TrampwatchError as err:
                    click.echo(_error_lines(err, "not reloaded"), err=True)
                    click.echo("trampwatch: reload failed: still running the previous policy and selection",
                               err=True)
                    return
                if mode == "enforce":
                    source.set_kill_rules(rules.rules, enforce=True)
                    judge.enforcer = KernelKillEnforcer(rules)
                    for note in judge.enforcer.notes:
                        click.echo(f"trampwatch: {note}", err=True)
                judge.set_policy(new_policy)
                click.echo(f"trampwatch: reloaded: policy {new_policy.name} ({len(new_policy.rules)} rules), "
                           f"watching {new_selection.describe()}", err=True)

            monitor_host(judge, source, duration, reload, ready)
            judge.finish(None)
    except TrampwatchError as err:
        _fail(err)


@commands.command()
def doctor() -> None:
    """Show what works on this host, and how to fix what does not."""
    from .probe import Probe, format_table, probe_all
    from .sources.ptrace_source import ptrace_works

    def ptrace_probe() -> Probe:
        ok, detail = ptrace_works()
        return Probe("ptrace", ok, detail, "" if ok else "run as root or set kernel.yama.ptrace_scope=0",
                     "run, attach")

    probes = probe_all(ptrace_probe)
    click.echo(format_table(probes))
    sys.exit(0 if all(p.ok is not False for p in probes if p.name in ESSENTIAL_PROBES) else 1)


ESSENTIAL_PROBES = frozenset({"ptrace", "seccomp"})


@commands.command()
@click.argument("paths", nargs=-1, required=True)
@click.option("--policy", "policy_name", default="default", show_default=True,
              help="Judge each file's findings with this policy (exit 1 when it denies or kills).")
@click.option("--json", "as_json", is_flag=True,
              help="One JSON object per file, then a summary object "
                   "(schema trampwatch.scan/v1, docs/events.md).")
@click.option("--follow-symlinks", is_flag=True, help="Follow symlinks met inside directories.")
@click.option("--all", "show_all", is_flag=True, help="List clean ELF files too.")
@click.option("--helper/--no-helper", default=None,
              help="Split directory trees with a forked helper process (default: when a CPU is idle).")
def scan(paths: tuple[str, ...], policy_name: str, as_json: bool, follow_symlinks: bool,
         show_all: bool, helper: bool | None) -> None:
    """Scan ELF files and directories for W^X hazards and trampoline APIs."""
    from .outputs.scan_report import ScanPrinter
    from .scan import ScanSummary, scan_paths

    try:
        policy = _load_policy(policy_name)
        summary = ScanSummary()
        printer = ScanPrinter(policy, as_json, show_all, sys.stdout)
        for result in scan_paths(paths, follow_symlinks=follow_symlinks, summary=summary, helper=helper):
            printer.result(result)
        if summary.helper_failure:
            click.echo(f"trampwatch: {summary.helper_failure}", err=True)
        printer.summary(summary)
    except TrampwatchError as err:
        _fail(err)
    sys.exit(1 if printer.forbidden else 0)


@commands.command("inspect")
@click.argument("pid", type=int, required=False)
@click.option("--all", "every", is_flag=True, help="Inspect every process the caller may read.")
@click.option("--json", "as_json", is_flag=True,
              help="JSON lines (schema trampwatch.inspect/v2, docs/events.md).")
@click.option("--disasm", is_flag=True, help="Disassemble each trampoline.")
@click.option("--policy", "policy_name", default=None,
              help="Judge the hazards with this policy: exit 1 when it forbids one.")
def inspect_command(pid: int | None, every: bool, as_json: bool, disasm: bool,
                    policy_name: str | None) -> None:
    """List trampolines, closures and W^X hazards of process PID (or --all)."""
    from .inspect import forbidden, inspect_all, inspect_process
    from .outputs.inspect_report import render_summary, render_text, report_json, summary_json

    if (pid is None) == (not every):
        raise click.UsageError("give a PID or --all (not both)")
    try:
        policy = _load_policy(policy_name) if policy_name else None
        if every:
            result = inspect_all(policy, disasm)
            reports = result.reports
        else:
            reports = [inspect_process(pid, policy, disasm)]
        for report in reports:
            click.echo(json.dumps(report_json(report)) if as_json else render_text(report))
        if every:
            click.echo(json.dumps(summary_json(result)) if as_json else render_summary(result))
    except TrampwatchError as err:
        _fail(err)
    sys.exit(1 if any(forbidden(report) for report in reports) else 0)


@commands.command("include-path")
def include_path() -> None:
    """Print the directory of trampfd.h (gcc -I "$(trampwatch include-path)")."""
    from .trampfd import include_dir

    click.echo(str(include_dir()))


@commands.group()
def policy() -> None:
    """Check and list W^X policies."""


@policy.command("list")
def policy_list() -> None:
    """List the preset policies (usable as --policy NAME)."""
    for name in preset_names():
        preset = resolve_policy(name)
        click.echo(f"{name:<16} {preset.description}")


@policy.command("check")
@click.argument("files", nargs=-1, required=True)
def policy_check(files: tuple[str, ...]) -> None:
    """Validate policy FILES: every error as FILE:LINE:COL: key.path: message."""
    failed = False
    for path in files:
        try:
            loaded = load_policy_file(path)
        except PolicyError as err:
            failed = True
            for issue in err.issues:
                click.echo(str(issue), err=True)
            continue
        for warning in loaded.warnings:
            click.echo(f"warning: {warning}", err=True)
        click.echo(f"{path}: ok ({len(loaded.rules)} rules, default {loaded.default_action.value})")
    sys.exit(EXIT_USAGE if failed else 0)
