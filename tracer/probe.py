"""Host capability probes behind `trampwatch doctor`.

Each probe answers one question about this host by trying it where trying is
possible (load a BPF LSM program, fork a child that turns on MDWE) rather
than by trusting a listing: a kernel can name `bpf` among its LSMs and still
refuse every LSM program. A probe that fails says which command it stops and
the command that fixes it. Nothing is cached: every call probes afresh.

bcc-specific work is delegated to tracer.sources.ebpf_loader, the one module
that imports bcc (and only when a probe calls into it).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import mmap
import os
import platform
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tracer.abi import PR_GET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN, PR_SET_MDWE
from tracer.errors import CapabilityMissing
from tracer.sources import ebpf_btf, ebpf_loader, ebpf_procs, ebpf_source

# Capability numbers from linux/capability.h.
CAPABILITIES = {"CAP_SYS_PTRACE": 19, "CAP_SYS_ADMIN": 21, "CAP_PERFMON": 38, "CAP_BPF": 39}

YAMA_SCOPE = Path("/proc/sys/kernel/yama/ptrace_scope")
LSM_LIST = Path("/sys/kernel/security/lsm")


@dataclass(frozen=True)
class Probe:
    """One answer: `ok` is True/False, or None when the probe could not be
    tried because something it builds on is missing. `fix` is the command or
    step that makes a failing probe pass; `needed_by` names what needs it."""

    name: str
    ok: bool | None
    detail: str
    fix: str = ""
    needed_by: str = ""


def probe_all(ptrace_probe: Callable[[], Probe] | None = None) -> list[Probe]:
    """Run every probe in order and return their answers.

    `ptrace_probe` really tries ptrace (the ptrace source provides it: only
    it may import ptrace); without it the ptrace probe reads Yama's scope and
    the capability.
    """
    bcc = _bcc()
    bcc_ok = bcc.ok is True
    return [
        _privileges(),
        bcc,
        _kernel_headers(),
        _tracefs(),
        _tracepoints(),
        _btf(),
        _monitor_program(bcc_ok),
        _send_signal(bcc_ok),
        _bpf_lsm(bcc_ok),
        _fentry(bcc_ok),
        _kprobes(),
        ptrace_probe() if ptrace_probe else _ptrace_scope(),
        _seccomp(),
        _mdwe(),
        _cgroup2(),
    ]


def bpf_lsm_probe() -> Probe:
    """Really try to load a BPF LSM program; monitor says at start-up whether
    deny rules can return an errno or fall back to SIGKILL."""
    return _bpf_lsm(_bcc().ok is True)


def format_table(probes: list[Probe]) -> str:
    """Return the probes as aligned text lines, each failing one followed by
    its fix, for `trampwatch doctor`."""
    width = max((len(p.name) for p in probes), default=0)
    lines = []
    for probe in probes:
        status = {True: "ok", False: "FAIL", None: "n/a"}[probe.ok]
        line = f"{status:<4}  {probe.name:<{width}}  {probe.detail}"
        lines.append(line + (f" | needed by: {probe.needed_by}" if probe.needed_by else ""))
        if probe.ok is not True and probe.fix:
            lines.append(f"{'':<4}  {'':<{width}}  fix: {probe.fix}")
    return "\n".join(lines)


# --- privileges ---------------------------------------------------------------


def _effective_caps() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("CapEff:"):
            return int(line.split()[1], 16)
    return 0


def _privileges() -> Probe:
    caps = _effective_caps()
    have = [name for name, bit in CAPABILITIES.items() if caps >> bit & 1]
    missing = [name for name in CAPABILITIES if name not in have]
    bpf_ok = "CAP_SYS_ADMIN" in have or {"CAP_BPF", "CAP_PERFMON"} <= set(have)
    ok = bpf_ok and "CAP_SYS_PTRACE" in have
    detail = f"uid {os.geteuid()}; effective: {', '.join(have) or 'none'}"
    if missing:
        detail += f"; missing: {', '.join(missing)}"
    return Probe("privileges", ok, detail, "run trampwatch as root (sudo trampwatch ...)", "run, monitor")


# --- eBPF ---------------------------------------------------------------------------


def _bcc() -> Probe:
    try:
        where = ebpf_loader.bcc_location()
    except CapabilityMissing as err:
        return Probe("bcc", False, err.reason, err.fix, "monitor")
    return Probe("bcc", True, f"imports from {where}", needed_by="monitor")


def _kernel_headers() -> Probe:
    build = ebpf_loader.headers_dir()
    fix = (
        "scripts/setup (links it to Debian's linux-headers-amd64), or "
        "apt-get install linux-headers-$(uname -r)"
    )
    if not build.is_dir():
        return Probe("kernel-headers", False, f"{build} does not exist", fix, "monitor")
    target = build.resolve()
    release = _headers_release(target)
    running = platform.release()
    if release == running:
        verdict = "they match the running kernel"
    else:
        verdict = (
            f"built for {release or 'an unknown kernel'}, not the running {running}: enough for "
            "tracepoint programs (struct offsets come from the kernel's BTF)"
        )
    return Probe("kernel-headers", True, f"{build} -> {target}: {verdict}", fix, "monitor")


def _headers_release(tree: Path) -> str | None:
    """The UTS_RELEASE a kernel header tree was built for, or None."""
    with contextlib.suppress(OSError):
        text = (tree / "include/generated/utsrelease.h").read_text()
        found = re.search(r'UTS_RELEASE\s+"([^"]+)"', text)
        return found[1] if found else None
    return None


def _tracefs() -> Probe:
    root = ebpf_loader.tracefs_root()
    if root is None:
        return Probe(
            "tracefs",
            False,
            "not mounted (no events/ under /sys/kernel/tracing)",
            "mount -t tracefs tracefs /sys/kernel/tracing",
            "monitor",
        )
    return Probe("tracefs", True, f"mounted at {root}", needed_by="monitor")


def _tracepoints() -> Probe:
    root = ebpf_loader.tracefs_root()
    wanted = ebpf_loader.required_tracepoints()
    if root is None:
        return Probe("tracepoints", None, "not checked: tracefs is not mounted", needed_by="monitor")
    missing = [tp for tp in wanted if not any(root.glob(f"events/{tp}"))]
    if missing:
        return Probe(
            "tracepoints",
            False,
            f"missing: {', '.join(missing)}",
            "use a kernel with CONFIG_FTRACE_SYSCALLS=y (syscall tracepoints)",
            "monitor",
        )
    return Probe(
        "tracepoints", True, f"all {len(wanted)} present (raw_syscalls, sched)", needed_by="monitor"
    )


def _btf() -> Probe:
    try:
        offsets = ebpf_btf.kernel_offsets()
    except CapabilityMissing as err:
        return Probe("btf", False, err.reason, err.fix, "monitor")
    return Probe(
        "btf",
        True,
        f"{ebpf_btf.BTF_PATH}: {len(offsets)} structure offsets resolved "
        f"(task_struct.tgid at {offsets['WX_OFF_TASK_TGID']})",
        needed_by="monitor",
    )


def _monitor_program(bcc_ok: bool) -> Probe:
    if not bcc_ok:
        return Probe("monitor-program", None, "not tried: bcc does not import", needed_by="monitor")
    try:
        source = ebpf_source.EbpfSource(ebpf_source.EbpfConfig(pids=(os.getpid(),)))
    except CapabilityMissing as err:
        return Probe("monitor-program", False, f"{err.capability}: {err.reason}", err.fix, "monitor")
    source.close()
    return Probe(
        "monitor-program",
        True,
        f"compiled, loaded and attached in {source.load_seconds:.2f} s",
        needed_by="monitor",
    )


def _send_signal(bcc_ok: bool) -> Probe:
    needed = "monitor --mode enforce (kill rules)"
    if not bcc_ok:
        return Probe("bpf-send-signal", None, "not tried: bcc does not import", needed_by=needed)
    ok, detail = ebpf_loader.try_send_signal()
    return Probe("bpf-send-signal", ok, detail, "a kernel >= 5.3 with CONFIG_BPF_EVENTS=y", needed)


def _bpf_lsm(bcc_ok: bool) -> Probe:
    needed = "nothing (deny rules use bpf_send_signal from tracepoints instead)"
    listed = _lsm_listing()
    if not bcc_ok:
        return Probe("bpf-lsm", None, f"not tried: bcc does not import; {listed}", needed_by=needed)
    ok, detail = ebpf_loader.try_program("lsm")
    return Probe(
        "bpf-lsm",
        ok,
        f"{detail}; {listed}",
        "CONFIG_BPF_LSM=y and `bpf` in the lsm= boot parameter; a kernel that still refuses "
        "(EPERM) locks BPF LSM down on purpose",
        needed,
    )


def _lsm_listing() -> str:
    try:
        names = LSM_LIST.read_text().strip().split(",")
    except OSError:
        return f"{LSM_LIST} unreadable (securityfs not mounted?)"
    return f"{LSM_LIST} {'lists' if 'bpf' in names else 'does not list'} bpf"


def _fentry(bcc_ok: bool) -> Probe:
    needed = "nothing (trampwatch uses tracepoints)"
    if not bcc_ok:
        return Probe("fentry", None, "not tried: bcc does not import", needed_by=needed)
    ok, detail = ebpf_loader.try_program("fentry")
    return Probe(
        "fentry",
        ok,
        detail,
        "a kernel with BPF trampolines (CONFIG_DEBUG_INFO_BTF=y, x86-64) that allows tracing programs",
        needed,
    )


def _kprobes() -> Probe:
    needed = "nothing (trampwatch uses tracepoints)"
    root = ebpf_loader.tracefs_root()
    if root is None:
        return Probe("kprobes", None, "not checked: tracefs is not mounted", needed_by=needed)
    if (root / "kprobe_events").exists():
        return Probe("kprobes", True, f"{root / 'kprobe_events'} exists", needed_by=needed)
    return Probe(
        "kprobes",
        False,
        f"{root} has no kprobe_events: the kernel has no kprobe support",
        "a kernel with CONFIG_KPROBES=y and CONFIG_KPROBE_EVENTS=y",
        needed,
    )


# --- ptrace, seccomp, MDWE ------------------------------------------------------------


def _ptrace_scope() -> Probe:
    has_cap = bool(_effective_caps() >> CAPABILITIES["CAP_SYS_PTRACE"] & 1)
    try:
        scope = int(YAMA_SCOPE.read_text())
    except (OSError, ValueError):
        scope = None
    cap_text = "CAP_SYS_PTRACE held" if has_cap else "no CAP_SYS_PTRACE"
    if scope is None:
        return Probe("ptrace", True, f"Yama is not active; {cap_text}", needed_by="run, attach")
    ok = scope == 0 or (scope in (1, 2) and has_cap)
    return Probe(
        "ptrace",
        ok,
        f"Yama ptrace_scope={scope}; {cap_text}",
        "run as root, or: sysctl kernel.yama.ptrace_scope=1 (3 cannot be lowered until reboot)",
        "run, attach",
    )


def _in_child(work: Callable[[], str]) -> tuple[bool, str]:
    """Run `work` in a forked child (it may change process-wide state there);
    return (True, its text) when it returned, (False, text) when it raised."""
    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:
        os.close(read_end)
        try:
            text, code = work(), 0
        except BaseException as err:  # everything must reach the parent, then _exit
            text, code = f"{type(err).__name__}: {err}", 1
        os.write(write_end, text.encode(errors="replace")[:4000])
        os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        text = pipe.read().decode(errors="replace")
    _, status = os.waitpid(child, 0)
    if os.WIFSIGNALED(status):
        return False, f"the probe child died of signal {os.WTERMSIG(status)}"
    return os.WEXITSTATUS(status) == 0, text


def _seccomp() -> Probe:
    fields = dict(
        line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":" in line
    )
    mode = fields.get("Seccomp", "?").strip()
    already = {
        "0": "this process runs without seccomp",
        "1": "this process is in strict mode",
        "2": "this process already runs under a filter (ours will stack)",
    }.get(mode, "mode unknown")

    def install() -> str:
        from tracer.sources import seccomp_filter

        seccomp_filter.build_filter(("personality",)).load()
        return "a filter built by tracer.sources.seccomp_filter loads"

    ok, detail = _in_child(install)
    return Probe(
        "seccomp",
        ok,
        f"{detail}; {already}",
        "apt-get install python3-seccomp and a kernel with CONFIG_SECCOMP_FILTER=y",
        "run",
    )


def _mdwe() -> Probe:
    def refuse_exec_gain() -> str:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN, 0, 0, 0) != 0:
            code = ctypes.get_errno()
            raise OSError(code, f"prctl(PR_SET_MDWE): {os.strerror(code)}")
        if libc.prctl(PR_GET_MDWE, 0, 0, 0, 0) != PR_MDWE_REFUSE_EXEC_GAIN:
            raise OSError(errno.EINVAL, "PR_GET_MDWE does not report the flag just set")
        try:
            mmap.mmap(-1, mmap.PAGESIZE, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
        except PermissionError:
            return "PR_SET_MDWE(REFUSE_EXEC_GAIN) set in a child; it then refused a W+X mmap"
        raise OSError(errno.EINVAL, "MDWE set, yet a W+X mmap succeeded")

    ok, detail = _in_child(refuse_exec_gain)
    return Probe(
        "mdwe",
        ok,
        detail,
        "Linux >= 6.3 (PR_SET_MDWE); the MDWE ground-truth tests need it",
        "tests (MDWE oracle), policies claiming MDWE semantics",
    )


def _cgroup2() -> Probe:
    root = ebpf_procs.cgroup2_mount()
    if root is None:
        return Probe(
            "cgroup2",
            False,
            "no cgroup2 file system is mounted",
            "mount -t cgroup2 none /sys/fs/cgroup/unified",
            "monitor --cgroup",
        )
    return Probe("cgroup2", True, f"mounted at {root}", needed_by="monitor --cgroup")
