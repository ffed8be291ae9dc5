"""Loading BPF programs with bcc: the one module that imports `bcc`.

Host checks (tracefs, kernel headers), compiling, loading and attaching a
C file of tracer/bpf/ with its cflags, the kernel's refusal turned into a
CapabilityMissing with the fix, and the small probe programs `doctor` loads
to find out what the kernel allows.
"""

from __future__ import annotations

import contextlib
import os
import platform
import re
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tracer.errors import CapabilityMissing
from tracer.resources import package_path

BPF_DIR = package_path("bpf")
RECORD_HEADER = BPF_DIR / "wx_record.h"
MONITOR_PROGRAM = BPF_DIR / "wx_monitor.bpf.c"
TRACEFS_CANDIDATES = (Path("/sys/kernel/tracing"), Path("/sys/kernel/debug/tracing"))


def _bcc() -> Any:
    """Import bcc. Raises CapabilityMissing with the fix when it is missing."""
    try:
        import bcc
    except ImportError as err:
        raise CapabilityMissing(
            "bcc",
            f"the Python module bcc does not import ({err}); {sys.executable} cannot see it",
            "apt-get install python3-bpfcc and make the venv with --system-site-packages "
            "(scripts/setup does both)",
        ) from err
    return bcc


def bcc_location() -> str:
    """Return where the bcc module is imported from. Raises CapabilityMissing."""
    return str(Path(_bcc().__file__).parent)


def tracefs_root() -> Path | None:
    """Return the mounted tracefs directory (the one with events/), or None."""
    return next((p for p in TRACEFS_CANDIDATES if (p / "events").is_dir()), None)


def headers_dir() -> Path:
    """Return /lib/modules/$(uname -r)/build, where bcc looks for kernel headers."""
    return Path("/lib/modules") / platform.release() / "build"


def required_tracepoints() -> list[str]:
    """Return the tracepoints the monitor program attaches to, as paths
    under tracefs's events/ ('sched/sched_process_exec'; a raw tracepoint,
    which names no category, as '*/sys_enter'), read from its source."""
    names: list[str] = []
    for line in MONITOR_PROGRAM.read_text().splitlines():
        if found := re.match(r"TRACEPOINT_PROBE\((\w+), (\w+)\)", line):
            names.append(f"{found[1]}/{found[2]}")
        elif found := re.match(r"RAW_TRACEPOINT_PROBE\((\w+)\)", line):
            names.append(f"*/{found[1]}")
    return names


def check_host() -> None:
    """Raise CapabilityMissing, with the fix, when tracefs or headers are missing."""
    if tracefs_root() is None:
        raise CapabilityMissing(
            "tracefs",
            "tracefs is not mounted: the tracepoints cannot be found",
            "mount -t tracefs tracefs /sys/kernel/tracing",
        )
    if not headers_dir().is_dir():
        raise CapabilityMissing(
            "kernel headers",
            f"{headers_dir()} does not exist: bcc compiles against the kernel headers",
            "scripts/setup (links it to Debian's linux-headers-amd64), or "
            "apt-get install linux-headers-$(uname -r)",
        )


@contextlib.contextmanager
def _stderr_into(lines: list[str]) -> Iterator[None]:
    """Collect what C code (clang, libbpf) writes to fd 2 into `lines`.

    bcc reports a refused program only as 'Failed to load' on stderr; the
    kernel's reason is there. Other threads' stderr is captured meanwhile too.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            lines.extend(sink.read().decode(errors="replace").splitlines())


def load_program(path: Path, cflags: list[str], what: str) -> Any:
    """Compile, load and attach the BPF C file at `path` with bcc; return the
    bcc.BPF object (call .cleanup() to detach).

    Raises CapabilityMissing naming `what`, with bcc's and the kernel's
    messages, when compiling or loading fails.
    """
    bcc = _bcc()
    messages: list[str] = []
    try:
        with _stderr_into(messages):
            return bcc.BPF(src_file=str(path).encode(), cflags=[f"-I{BPF_DIR}", *cflags])
    except Exception as err:  # bcc raises bare Exception for every failure
        raise CapabilityMissing(what, _load_failure(err, messages), _load_fix(messages)) from err


def _load_failure(err: Exception, messages: list[str]) -> str:
    kernel = [m for m in messages if "error" in m.lower() or "failed" in m.lower() or "bpf:" in m]
    # The verifier's verdict is the line before its "processed N insns" summary.
    verdict = [messages[i - 1] for i, m in enumerate(messages) if m.startswith("processed ") and i]
    detail = "; ".join(dict.fromkeys([*verdict, *kernel[-4:]])) or str(err)
    if any("Operation not permitted" in m for m in messages):
        return f"the kernel refused it: Operation not permitted (EPERM) -- {detail}"
    return detail


def _load_fix(messages: list[str]) -> str:
    if any("Operation not permitted" in m for m in messages):
        return "run as root (CAP_BPF and CAP_PERFMON, or CAP_SYS_ADMIN); see `trampwatch doctor`"
    return "see `trampwatch doctor`"


def try_program(name: str, cflags: tuple[str, ...] = ()) -> tuple[bool, str]:
    """Load and attach tracer/bpf/probe_<name>.bpf.c, then detach it.

    Returns (True, detail) when the kernel accepted it, (False, reason)
    otherwise -- the reason carries the kernel's error (EPERM, ...).
    """
    try:
        bpf = load_program(BPF_DIR / f"probe_{name}.bpf.c", list(cflags), f"probe {name}")
    except CapabilityMissing as err:
        return False, err.reason
    bpf.cleanup()
    return True, "loaded and attached"


# getpgid() of this pid is the probe child's signal to the probe program.
_PROBE_PID = 0x7EADBEEF


def try_send_signal() -> tuple[bool, str]:
    """Check that bpf_send_signal(SIGKILL) from a syscall tracepoint kills a
    process before the syscall returns to user mode: a forked child calls
    getpgid() and would exit 0 if it survived.

    Returns (ok, detail).
    """
    try:
        bpf = load_program(
            BPF_DIR / "probe_send_signal.bpf.c", [f"-DWX_PROBE_PID={_PROBE_PID}"], "bpf_send_signal probe"
        )
    except CapabilityMissing as err:
        return False, err.reason
    try:
        ready_r, ready_w = os.pipe()
        child = os.fork()
        if child == 0:
            os.close(ready_w)
            os.read(ready_r, 1)
            with contextlib.suppress(OSError):
                os.getpgid(_PROBE_PID)
            os._exit(0)
        os.close(ready_r)
        target = bpf[b"target"]
        target[target.Key(0)] = target.Leaf(child)
        os.write(ready_w, b"x")
        os.close(ready_w)
        _, status = os.waitpid(child, 0)
    finally:
        bpf.cleanup()
    if os.WIFSIGNALED(status) and os.WTERMSIG(status) == 9:
        return True, "SIGKILL sent from sys_enter killed the caller before the syscall returned"
    return False, f"the child was not killed (wait status {status:#x})"


def exit_has_group_dead() -> bool:
    """True when this kernel's sched_process_exit tracepoint has `group_dead`."""
    root = tracefs_root()
    fmt = root / "events/sched/sched_process_exit/format" if root else None
    try:
        return fmt is not None and "group_dead" in fmt.read_text()
    except OSError:
        return False
