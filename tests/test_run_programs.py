"""Integration: real compiled C programs and real W^X users run under the real
tracer (`trampwatch run`, as a user types it), with exact categories and
attribution asserted, and the mdwe preset checked against the kernel's own
PR_SET_MDWE on the same programs."""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TRAMPWATCH = [sys.executable, "-m", "tracer"]
PYTHON = "/usr/bin/python3"


def _needs(program: str, package: str) -> Callable[[Callable], Callable]:
    """Mark a test that runs a JIT: skipped when `program` is missing, and slow."""
    skip = pytest.mark.skipif(shutil.which(program) is None,
                              reason=f"{program} is not installed (scripts/setup installs {package})")
    return lambda test: pytest.mark.slow(skip(test))


NEEDS_NODE = _needs("node", "nodejs")
NEEDS_JAVA = _needs("java", "a JRE")


@dataclass
class Traced:
    """What one traced run produced."""

    returncode: int
    stdout: str
    stderr: str
    events: list[dict]
    summary: dict


def trace(argv: list[str], tmp_path: Path, *options: str, timeout: int = 120) -> Traced:
    """Run argv under `trampwatch run OPTIONS`; collect its JSON lines."""
    json_path = tmp_path / "events.jsonl"
    report = tmp_path / "report.txt"
    done = subprocess.run(
        [*TRAMPWATCH, "run", "--json", str(json_path), "-o", str(report), *options, "--", *argv],
        capture_output=True, text=True, timeout=timeout, cwd=ROOT,
    )
    records = [json.loads(line) for line in json_path.read_text().splitlines()] if json_path.exists() else []
    events = [r for r in records if r["type"] == "event"]
    summary = next((r for r in records if r["type"] == "summary"), {})
    return Traced(done.returncode, done.stdout, done.stderr + report.read_text(), events, summary)


def shape(events: list[dict]) -> list[tuple[str, tuple[str, ...]]]:
    """(syscall, categories) of each event, in order."""
    return [(e["syscall"], tuple(e["categories"])) for e in events]


WXMAP = ("wx-map", "anon-exec")
# Every W^X event each program must produce, in order: (syscall, categories).
EXPECTED: dict[str, list[tuple[str, tuple[str, ...]]]] = {
    "benign_rw": [],
    "benign_dlopen": [],
    "benign_relro": [],
    "benign_threads": [],
    "short_threads": [],
    "wx_map": [("mmap", WXMAP)],
    "wx_protect": [("mprotect", ("wx-protect", "w-to-x", "anon-exec"))],
    "w_to_x": [("mprotect", ("w-to-x", "anon-exec"))],
    "anon_exec": [("mmap", ("anon-exec",)), ("mprotect", ("anon-exec",))],
    "rx_to_rwx": [("mmap", ("anon-exec",)), ("mprotect", ("wx-protect",))],
    "pkey_wx": [("pkey_mprotect", ("w-to-x", "anon-exec"))],
    "mremap_written": [("mprotect", ("w-to-x", "anon-exec"))],
    "execstack": [("exec", ("execstack",))],
    "execstack_mprotect": [("mprotect", ("wx-protect", "w-to-x", "execstack"))],
    "execheap": [("mprotect", ("wx-protect", "w-to-x", "execheap"))],
    "execmod": [("mprotect", ("w-to-x", "execmod"))],
    "dual_map_memfd": [("mmap", ("dual-map", "exec-written", "exec-unlinked"))],
    "shared_anon_alias": [("mmap", ("anon-exec",)), ("mprotect", ("dual-map",))],
    "shm_exec": [("shmat", ("wx-map", "shm-exec")), ("shmat", ("shm-exec",)), ("shmat", ("dual-map",))],
    "int80_mprotect": [("mprotect", ("wx-protect", "w-to-x", "anon-exec"))],
    "thread_second": [("mmap", WXMAP)],
    "fork_tree": [("mmap", WXMAP)],
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_c_program_categories_and_attribution(name, build_program, parse_output, tmp_path):
    program = build_program(name)
    native = parse_output(subprocess.run([str(program)], capture_output=True, text=True, check=True).stdout)
    traced = trace([str(program)], tmp_path)
    assert traced.returncode == 0, traced.stderr
    assert shape(traced.events) == EXPECTED[name]
    # The program behaves exactly as it does natively (audit mode refuses nothing).
    out = parse_output(traced.stdout)
    assert sorted(out.ran) == sorted(native.ran)
    assert out.failed() == native.failed() == {}
    for event in traced.events:
        assert event["verdict"] == "logged" and event["rule"] is not None
        if event["syscall"] != "exec":
            # The first return address outside libc is the program's own code.
            assert event["caller"]["object"].endswith(("/" + name, "/wx_map")), event["caller"]
            assert event["caller"]["symbol"], event["caller"]


def test_dual_map_through_an_unlinked_temporary_file(build_program, tmp_path):
    traced = trace([str(build_program("dual_map_tmpfile"))], tmp_path)
    assert traced.returncode == 0, traced.stderr
    assert shape(traced.events) == [("mmap", ("dual-map", "exec-written", "exec-unlinked"))] * 2
    assert all(e["backing"]["kind"] == "file" for e in traced.events)


def test_exec_unlinked_write_then_map_and_fexecve(build_program, tmp_path):
    traced = trace([str(build_program("exec_unlinked"))], tmp_path)
    assert traced.returncode == 0, traced.stderr
    written = ("exec-written", "exec-unlinked")  # the tree wrote the memfd it maps and runs
    assert shape(traced.events) == [("mmap", written)] * 2 + [("exec", written)]
    assert traced.events[-1]["exe"].startswith("/memfd:")


def test_read_implies_exec_by_personality(build_program, tmp_path):
    traced = trace([str(build_program("read_implies_exec"))], tmp_path)
    assert traced.returncode == 0, traced.stderr
    got = shape(traced.events)
    assert got[0] == ("personality", ("read-implies-exec",))
    assert got[1] == ("mmap", ("wx-map", "read-implies-exec", "anon-exec"))
    assert all(cats == ("wx-map", "execheap", "read-implies-exec") for sc, cats in got[2:] if sc == "brk")


def test_i386_program_without_stack_header_gets_executable_heap(build_program, parse_output, tmp_path):
    program = build_program("i386_noheader")
    traced = trace([str(program)], tmp_path)
    assert traced.returncode == 0, traced.stderr
    got = shape(traced.events)
    # The kernel maps its writable PT_LOAD segment W+X (READ_IMPLIES_EXEC): wx-map at exec.
    assert got[0] == ("exec", ("wx-map", "execstack", "read-implies-exec"))
    heap = [e for e in traced.events if e["syscall"] == "brk"]
    assert heap and all(e["categories"] == ["wx-map", "execheap", "read-implies-exec"] for e in heap)
    assert all(e["arch"] == "i386" for e in traced.events[1:])
    assert parse_output(traced.stdout).maps["heap"].executable


def test_exit_status_and_signals_are_the_programs_own(build_program, tmp_path):
    assert trace([str(build_program("exit_code")), "7"], tmp_path).returncode == 7
    killed = trace([str(build_program("kill_self")), "TERM"], tmp_path)
    assert killed.returncode == 128 + 15
    assert killed.summary["exit_status"] is not None


def test_program_output_and_input_are_untouched(tmp_path):
    done = subprocess.run([*TRAMPWATCH, "run", "--no-summary", "--", "/bin/cat"],
                          input="through the tracer\n", capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout == "through the tracer\n"


def test_missing_and_unexecutable_commands_exit_like_a_shell(tmp_path):
    missing = subprocess.run([*TRAMPWATCH, "run", "--", "no-such-command-xyz"],
                             capture_output=True, text=True)
    assert missing.returncode == 127 and "command not found" in missing.stderr
    assert "Traceback" not in missing.stderr
    script = tmp_path / "noexec.sh"
    script.write_text("#!/bin/sh\necho hi\n")
    denied = subprocess.run([*TRAMPWATCH, "run", "--", str(script)], capture_output=True, text=True)
    assert denied.returncode == 126 and "not executable" in denied.stderr


def test_invalid_policy_runs_nothing(tmp_path):
    policy = tmp_path / "bad.yaml"
    policy.write_text("apiVersion: trampwatch.dev/v1\nkind: WXPolicy\nmetadata: {name: x}\n"
                      "spec:\n  defaultAction: allow\n  rules:\n  - name: r\n    match: {category: wx_map}\n"
                      "    action: log\n")
    marker = tmp_path / "ran"
    done = subprocess.run([*TRAMPWATCH, "run", "--policy", str(policy), "--", "touch", str(marker)],
                          capture_output=True, text=True)
    assert done.returncode == 2
    assert f"{policy}:8:13: spec.rules[0].match.category: unknown category 'wx_map'" in done.stderr
    assert not marker.exists()


# --- real W^X users -----------------------------------------------------------------


def test_python_ctypes_callback_is_attributed_to_libffi(tmp_path):
    traced = trace([PYTHON, str(ROOT / "examples" / "closure.py")], tmp_path)
    assert traced.returncode == 0, traced.stderr
    assert "callback returned 42" in traced.stdout
    closure = [e for e in traced.events if e["categories"] == ["wx-map", "anon-exec"]]
    assert closure and closure[0]["syscall"] == "mmap"
    assert os.path.basename(closure[0]["caller"]["object"]).startswith("libffi.so")


@NEEDS_NODE
def test_node_makes_its_code_space_writable_and_executable(tmp_path):
    traced = trace(["node", "-e", "console.log(6*7)"], tmp_path)
    assert traced.returncode == 0 and traced.stdout.strip() == "42", traced.stderr
    protect = [e for e in traced.events if e["syscall"] == "mprotect" and "wx-protect" in e["categories"]]
    assert protect, shape(traced.events)
    assert all(e["prot"] == "rwx" for e in protect)
    # The node executable, or Debian's libnode.so.N it links V8 from.
    assert os.path.basename(protect[0]["caller"]["object"]).startswith(("node", "libnode.so"))


@NEEDS_JAVA
def test_java_code_cache_is_mapped_writable_and_executable(tmp_path):
    traced = trace(["java", "-version"], tmp_path)
    assert traced.returncode == 0, traced.stderr
    maps = [e for e in traced.events if e["syscall"] == "mmap" and e["categories"] == list(WXMAP)]
    assert maps, shape(traced.events)
    assert {os.path.basename(e["caller"]["object"]) for e in maps} == {"libjvm.so"}


def test_gcc_nested_function_has_an_executable_stack(tmp_path):
    binary = tmp_path / "nested"
    subprocess.run(["gcc", "-o", str(binary), str(ROOT / "examples" / "nested.c")], check=True,
                   capture_output=True)
    traced = trace([str(binary)], tmp_path)
    assert traced.returncode == 0 and "returned 42" in traced.stdout
    assert shape(traced.events) == [("exec", ("execstack",))]


# --- the mdwe preset against the kernel's PR_SET_MDWE ----------------------------------

MDWE_C_PROGRAMS = sorted(set(EXPECTED) | {"dual_map_tmpfile", "exec_unlinked", "read_implies_exec"}
                         - {"fork_tree"})


def mdwe_parity(argv: list[str], build_program, tmp_path: Path) -> Traced:
    """Trace argv under the real PR_SET_MDWE with the mdwe preset (audit):
    every call the kernel refused must be exactly a 'would deny'."""
    traced = trace([str(build_program("mdwe_exec")), *argv], tmp_path,
                   "--policy", "mdwe", "--mode", "audit", "--all-calls")
    for event in traced.events:
        refused = event["result"] == -errno.EACCES and event["syscall"] != "exec"
        assert (event["verdict"] == "would-deny") == refused, event
    return traced


@pytest.mark.parametrize("name", MDWE_C_PROGRAMS)
def test_mdwe_preset_flags_exactly_what_the_kernel_refuses(name, build_program, parse_output, tmp_path):
    traced = mdwe_parity([str(build_program(name))], build_program, tmp_path)
    refused_steps = [s for s in parse_output(traced.stdout).steps.values() if s.errno == "EACCES"]
    would_deny = [e for e in traced.events if e["verdict"] == "would-deny"]
    assert len(would_deny) == len(refused_steps)


def test_mdwe_preset_matches_the_kernel_on_python_ctypes(build_program, tmp_path):
    traced = mdwe_parity([PYTHON, str(ROOT / "examples" / "closure.py")], build_program, tmp_path)
    assert "callback returned 42" in traced.stdout
    # Refused RWX page, then libffi's memfd fallback: a dual-map MDWE lets through.
    assert any(e["verdict"] == "would-deny" for e in traced.events)
    assert any("dual-map" in e["categories"] and e["verdict"] == "allowed" for e in traced.events)


@NEEDS_NODE
def test_mdwe_preset_matches_the_kernel_on_node(build_program, tmp_path):
    traced = mdwe_parity(["node", "-e", "console.log(1)"], build_program, tmp_path)
    assert traced.returncode != 0
    assert any(e["verdict"] == "would-deny" for e in traced.events)


@NEEDS_JAVA
def test_mdwe_preset_matches_the_kernel_on_java(build_program, tmp_path):
    traced = mdwe_parity(["java", "-version"], build_program, tmp_path)
    assert traced.returncode != 0
    assert any(e["verdict"] == "would-deny" for e in traced.events)
