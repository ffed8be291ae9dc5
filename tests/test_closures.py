"""run --closures (docs/closures.md): the trampoline patterns from real bytes,
the granted ranges, and real closure users under --policy strict --mode
enforce: GCC nested functions, libffi closures from C (64 and 32 bit),
python3 ctypes (Debian's and the one on PATH), cffi, PyGObject, Ruby FFI.
Each traced run's output must equal the native run's, with no W^X event."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import ProgramBuilder
from test_trampfd_support import ROOT, TRAMPWATCH, build

from tracer.closures.patterns import match
from tracer.closures.regions import Ranges

PROGRAMS = ROOT / "tests" / "programs" / "closures"
STRICT = ("--policy", "strict", "--mode", "enforce")


# --- patterns, from the bytes real programs write ---------------------------------------------------


@pytest.fixture
def program(build_program: ProgramBuilder) -> Callable[[str], str]:
    """``program(name)``: the path of tests/programs/closures' program built
    as conftest's BUILDS entry ``closures_<name>``."""
    return lambda name: str(build_program(f"closures_{name}"))


def _dump(program: Callable[[str], str], name: str) -> list[list[str]]:
    done = subprocess.run([program(name)], capture_output=True, text=True, check=True, timeout=30)
    assert "failed" not in done.stdout
    return [line.split() for line in done.stdout.splitlines()]


def _no_memory(addr: int, size: int) -> bytes:
    raise AssertionError("the pattern should not need more memory")


@pytest.mark.parametrize("build", ["tramp_bytes", "tramp_bytes_nocet", "tramp_bytes_cet"])
def test_gcc_nested_trampoline_x86_64(program: Callable[[str], str], build: str) -> None:
    lines = _dump(program, build)
    _, addr, raw = next(line for line in lines if line[0] == "NESTED")
    pc, code = int(addr, 16), bytes.fromhex(raw)
    found = match("x86_64", pc, code, {"eflags": 0x246, "rsp": 0}, _no_memory)
    assert found is not None and found.pattern.startswith("gcc nested function")
    assert ("endbr64" in found.pattern) == code.startswith(b"\xf3\x0f\x1e\xfa")
    # The target is the nested function in the program's text; the chain a stack address above it.
    assert found.registers["r11"] == found.target and found.registers["r10"] == found.data
    assert abs(found.data - pc) < 4096
    assert set(found.registers) == {"r10", "r11", "rip"}


@pytest.mark.parametrize("build", ["tramp_bytes32", "tramp_bytes32_cet"])
def test_gcc_nested_and_libffi_trampolines_i386(program: Callable[[str], str], build: str) -> None:
    lines = _dump(program, build)
    _, addr, raw = next(line for line in lines if line[0] == "NESTED")
    pc = int(addr, 16)
    found = match("i386", pc, bytes.fromhex(raw), {"eflags": 0, "rsp": 0xFFFF0000}, _no_memory)
    assert found is not None and "mov $ecx" in found.pattern
    assert abs(found.data - pc) < 4096  # the frame holding the chain
    for _, abi, closure, code, raw in (line for line in lines if line[0] == "FFI"):
        pc = int(code, 16)
        found = match("i386", pc, bytes.fromhex(raw), {"eflags": 0, "rsp": 0xFFFF0000}, _no_memory)
        assert found is not None, abi
        assert found.data == int(closure, 16), abi  # libffi hands over the closure
        assert found.target != pc and found.target < 1 << 32  # libffi's i386 handler
        if abi == "register":
            assert found.push == (0xFFFF0000 - 4, found.data.to_bytes(4, "little"))
            assert found.registers["rsp"] == 0xFFFF0000 - 4
        else:
            assert found.registers["rax"] == found.data and found.push is None


def test_libffi_34_trampoline_x86_64(program: Callable[[str], str]) -> None:
    lines = _dump(program, "tramp_bytes")
    targets = {}
    for _, abi, closure, code, raw in (line for line in lines if line[0] == "FFI"):
        pc, data = int(code, 16), bytes.fromhex(raw)
        found = match("x86_64", pc, data, {"eflags": 0, "rsp": 0},
                      lambda addr, size, pc=pc, data=data: data[addr - pc:addr - pc + size])
        assert found is not None and found.pattern.startswith("libffi 3.3+ closure (endbr64")
        assert found.data == pc == int(closure, 16)  # r10: the trampoline, which is the closure
        targets[abi] = found.target
        assert found.target == int.from_bytes(data[24:32], "little")
    # unix64 and its SSE variant: two handlers next to each other in libffi.
    assert targets["default-int"] != targets["default-double"]
    assert abs(targets["default-int"] - targets["default-double"]) < 256


def test_libffi_32_and_33_layouts_from_their_source() -> None:
    """libffi 3.2's and 3.3's x86-64 trampolines, byte for byte as their
    ffi64.c writes them (those versions are not installed here)."""
    handler, closure = 0x7F0000001234, 0x7F00DEAD0000
    v32 = (b"\x49\xbb" + handler.to_bytes(8, "little") + b"\x49\xba" + closure.to_bytes(8, "little")
           + b"\xf9\x49\xff\xe3")
    found = match("x86_64", closure, v32, {"eflags": 0x202, "rsp": 0}, _no_memory)
    assert found is not None and "stc" in found.pattern
    assert dict(found.registers) == {"r11": handler, "r10": closure, "eflags": 0x203, "rip": handler}
    clc = match("x86_64", closure, v32[:20] + b"\xf8" + v32[21:], {"eflags": 0x203, "rsp": 0}, _no_memory)
    assert clc is not None and clc.registers["eflags"] == 0x202
    v33 = bytes.fromhex("4c8d15f9ffffffff25030000000f1f00") + handler.to_bytes(8, "little")
    found = match("x86_64", closure, v33, {"eflags": 0, "rsp": 0},
                  lambda addr, size: v33[addr - closure:addr - closure + size])
    assert found is not None and dict(found.registers) == {"r10": closure, "rip": handler}


@pytest.mark.parametrize("code", [
    b"",
    b"\x90" * 32,                                         # nops: not a trampoline
    b"\x49\xbb" + bytes(8) + b"\x49\xba" + bytes(8) + b"\xff\xe3",  # jmp without REX: not GCC's
    b"\x49\xbb" + bytes(8) + b"\xc3",                     # one load, then ret
    b"\x48\xb8" + bytes(8) + b"\x49\xbb" + bytes(8) + b"\x41\xff\xe3",  # rax is not a trampoline register
])
def test_unknown_bytes_are_not_emulated(code: bytes) -> None:
    assert match("x86_64", 0x1000, code, {"eflags": 0, "rsp": 0}, lambda a, s: b"") is None
    assert match("i386", 0x1000, code, {"eflags": 0, "rsp": 0}, lambda a, s: b"") is None


def test_ranges_merge_split_and_copy() -> None:
    ranges = Ranges()
    ranges.add(0x1000, 0x3000)
    ranges.add(0x3000, 0x4000)
    ranges.add(0x8000, 0x9000)
    assert list(ranges) == [(0x1000, 0x4000), (0x8000, 0x9000)]
    ranges.remove(0x2000, 0x2800)
    assert list(ranges) == [(0x1000, 0x2000), (0x2800, 0x4000), (0x8000, 0x9000)]
    assert ranges.contains(0x1FFF) and not ranges.contains(0x2000) and ranges.contains(0x2800)
    assert ranges.overlapping(0x1800, 0x3000) == [(0x1800, 0x2000), (0x2800, 0x3000)]
    copy = ranges.copy()
    ranges.remove(0, 1 << 48)
    assert not ranges and next(iter(copy)) == (0x1000, 0x2000)


# --- real programs ---------------------------------------------------------------------------------------


def _run(argv: list[str], *options: str, timeout: int = 600, env: dict[str, str] | None = None,
         cwd: Path = PROGRAMS) -> tuple[subprocess.CompletedProcess, list[dict], dict]:
    json_path = Path(tempfile.mkdtemp(prefix="closures-")) / "events.jsonl"
    cmd = [*TRAMPWATCH, "run", "--json", str(json_path), "--no-summary", *options, "--", *argv]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=cwd,
                          env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})})
    records = [json.loads(line) for line in json_path.read_text().splitlines()] if json_path.exists() else []
    json_path.unlink(missing_ok=True)
    return (done, [r for r in records if r["type"] == "event"],
            next((r for r in records if r["type"] == "summary"), {}))


def _native(argv: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, cwd=PROGRAMS,
                          env={**os.environ, **(env or {})})


def _assert_served(argv: list[str], mode: str, env: dict[str, str] | None = None) -> dict:
    """Run argv natively and under strict enforce --closures=MODE: same exit
    status and output, no event but trampfd's own (allowed), nothing refused."""
    native = _native(argv, env)
    assert native.returncode == 0 and native.stdout.endswith("DONE\n"), native.stderr
    traced, events, summary = _run(argv, *STRICT, f"--closures={mode}", env=env)
    assert (traced.returncode, traced.stdout) == (0, native.stdout), traced.stderr[-3000:]
    assert [e for e in events if e["categories"] != ["trampfd"] or e["verdict"] != "allowed"] == []
    assert "denied" not in traced.stderr and "killed" not in traced.stderr
    return summary


def _need(module: str, package: str) -> None:
    done = subprocess.run(["/usr/bin/python3", "-c", f"import {module}"], capture_output=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"/usr/bin/python3 cannot import {module}: Debian package {package} missing "
                    "(scripts/setup)")


@pytest.mark.parametrize("name,m32,mode,served", [
    ("nested", False, "emulate", "invoke"),
    ("nested", True, "emulate", "invoke"),
    ("nested", False, "auto", "invoke"),          # no libffi: emulate mode serves it
    ("ffi_closures", False, "emulate", "invoke"),
    ("ffi_closures", True, "emulate", "invoke"),
    ("ffi_closures", False, "trampfd", "alloc"),
    ("ffi_closures", False, "auto", "alloc"),
    ("ffi_closures", True, "auto", "invoke"),     # 32-bit: trampfd is x86-64 only
    # Its memory from i386's old mmap (arguments in memory), raced by a thread.
    ("old_mmap_closure", True, "emulate", "invoke"),
    ("old_mmap_closure", True, "auto", "invoke"),
])
def test_c_programs_under_strict(program: Callable[[str], str], name: str, m32: bool, mode: str,
                                 served: str) -> None:
    summary = _assert_served([program(name + ("32" if m32 else ""))], mode)
    closures = summary["closures"]
    if served == "alloc":
        # ffi_closures allocates 389 closures (9 signatures, 300 in a loop,
        # 80 in threads; the loop prepares each twice): each announced once.
        assert closures["alloc"] == 389
    else:
        assert closures["invoke"] > 600
    assert closures["refused"] == 0
    assert closures["invoke" if served == "alloc" else "alloc"] == 0


@pytest.mark.parametrize("mode,callbacks", [("auto", 100_000), ("trampfd", 100_000), ("emulate", 20_000)])
@pytest.mark.parametrize("python", ["/usr/bin/python3", "python3"], ids=["debian", "path"])
def test_ctypes_callbacks_under_strict(python: str, mode: str, callbacks: int) -> None:
    resolved = shutil.which(python)
    if resolved is None:
        pytest.skip(f"no {python}")
    summary = _assert_served([resolved, "ctypes_callbacks.py"], mode, {"CALLBACKS": str(callbacks)})
    if mode == "emulate":
        assert summary["closures"]["invoke"] > callbacks
    else:
        assert summary["closures"]["alloc"] == 2 and summary["closures"]["invoke"] == 0


@pytest.mark.parametrize("mode", ["emulate", "auto"])
@pytest.mark.parametrize("script,module,package", [
    ("cffi_callbacks.py", "cffi", "python3-cffi"),
    ("gi_timeout.py", "gi", "python3-gi"),
])
def test_python_closure_libraries_under_strict(script: str, module: str, package: str, mode: str) -> None:
    _need(module, package)
    _assert_served(["/usr/bin/python3", script], mode)


@pytest.mark.parametrize("mode", ["emulate", "auto"])
def test_ruby_ffi_callbacks_under_strict(mode: str) -> None:
    if shutil.which("ruby") is None or subprocess.run(["ruby", "-e", "require 'ffi'"], check=False,
                                                      capture_output=True).returncode != 0:
        pytest.skip("ruby with the ffi gem is missing: Debian package ruby-ffi (scripts/setup)")
    _assert_served(["ruby", "ruby_ffi.rb"], mode)


def test_trace_trampolines_reports_each_invocation(program: Callable[[str], str]) -> None:
    traced, events, _ = _run([program("nested")], *STRICT, "--closures=emulate", "--trace-trampolines")
    assert traced.returncode == 0
    invokes = [e for e in events if e["syscall"] == "closure-invoke"]
    assert len(invokes) == 2201  # 1000 + 201 recursive + 1000 in the thread
    first = invokes[0]
    assert first["verdict"] == "allowed" and first["categories"] == ["trampfd"]
    assert first["detail"]["pattern"].startswith("gcc nested function")
    assert ":add" in first["detail"]["target"]
    assert "apply" in first["caller"]["symbol"]


def test_the_fast_path_serves_repeated_invocations(program: Callable[[str], str]) -> None:
    """After the emulator decided a trampoline, the C fast path serves the
    next faults there; the first at each PC, and each thread's first, go
    through Python. --trace-trampolines sends every one through Python."""
    argv = [program("nested")]
    _, _, summary = _run(argv, *STRICT, "--closures=emulate")
    closures = summary["closures"]
    assert closures["invoke"] == 2201 and closures["refused"] == 0
    # 1000 in main and 1000 in the thread (each PC's first in Python), and
    # 201 recursive trampolines at 201 PCs, each run once (all in Python).
    assert 1900 <= closures["invoke-fast"] <= 2201 - 201 - 2
    _, _, traced = _run(argv, *STRICT, "--closures=emulate", "--trace-trampolines")
    assert traced["closures"]["invoke"] == 2201 and traced["closures"]["invoke-fast"] == 0


def test_the_fast_path_never_serves_stale_state(program: Callable[[str], str]) -> None:
    """A trampoline rewritten between calls, its page made non-executable
    (mprotect RW), unmapped and mapped again RW with the same bytes (by the
    process, then by another sharing its address space), and the same bytes
    at the same address after exec: the fast path's result is the native
    one and the Python path's (--trace-trampolines)."""
    argv = [program("stale_tramp")]
    native = _native(argv)
    assert native.returncode == 0 and native.stdout.endswith("DONE\n"), native.stderr
    for label in ("not-exec", "remapped-rw", "remapped-by-vm-sharer", "after-exec"):
        assert f"{label} SEGV" in native.stdout
    fast, events, summary = _run(argv, *STRICT, "--closures=emulate")
    python, _, python_summary = _run(argv, *STRICT, "--closures=emulate", "--trace-trampolines")
    assert (fast.returncode, fast.stdout) == (0, native.stdout), fast.stderr[-3000:]
    assert (python.returncode, python.stdout) == (0, native.stdout), python.stderr[-3000:]
    assert events == []
    # one, rewritten, exec-again, remapped-rwx: 1000 each; the first of each in Python.
    assert summary["closures"]["invoke"] == python_summary["closures"]["invoke"] == 4000
    assert 3900 <= summary["closures"]["invoke-fast"] <= 3996


@pytest.mark.parametrize("name,labels", [
    # A page never asked executable (read-only, then read-write) moved by
    # mremap(MREMAP_FIXED) onto a granted trampoline with the same bytes, by
    # the process and by another sharing its address space.
    ("remap_into_grant", ("moved-read-only", "moved-read-write", "moved-by-vm-sharer")),
    # A read-only shared memory segment with those bytes attached over it
    # (shmat SHM_REMAP); a granted heap page given back by brk and taken again.
    ("replace_grant", ("shm-over-grant", "heap-again")),
])
def test_memory_that_replaced_a_grant_is_not_served(program: Callable[[str], str], name: str,
                                                     labels: tuple[str, ...]) -> None:
    """Memory that replaced granted memory by a call other than munmap and
    mmap, holding the same trampoline: natively a call there faults; the
    fast path and the Python path must not run it."""
    argv = [program(name)]
    native = _native(argv)
    assert native.returncode == 0 and native.stdout.endswith("DONE\n"), native.stderr
    for label in labels:
        assert f"{label} SEGV" in native.stdout
    fast, events, summary = _run(argv, *STRICT, "--closures=emulate")
    python, _, _ = _run(argv, *STRICT, "--closures=emulate", "--trace-trampolines")
    assert (fast.returncode, fast.stdout) == (0, native.stdout), fast.stderr[-3000:]
    assert (python.returncode, python.stdout) == (0, native.stdout), python.stderr[-3000:]
    assert events == []
    assert summary["closures"]["invoke-fast"] > 0


def test_without_gcc_the_python_path_serves_alone(program: Callable[[str], str], tmp_path: Path) -> None:
    """No compiler for the fast path: one line says so, every invocation is
    served by the Python path."""
    argv = [program("nested")]
    native = _native(argv)
    empty = tmp_path / "bin"
    empty.mkdir()
    traced, _, summary = _run(argv, *STRICT, "--closures=emulate",
                              env={"PATH": str(empty), "XDG_CACHE_HOME": str(tmp_path / "cache")})
    assert (traced.returncode, traced.stdout) == (0, native.stdout), traced.stderr[-3000:]
    notes = [line for line in traced.stderr.splitlines() if "fast path" in line]
    assert len(notes) == 1 and "gcc" in notes[0] and "slower Python path" in notes[0]
    assert summary["closures"]["invoke"] == 2201 and summary["closures"]["invoke-fast"] == 0


@pytest.mark.parametrize("mode", ["emulate", "auto"])
def test_inspect_during_the_run_shows_no_wx_and_no_writable_alias(mode: str) -> None:
    cmd = [*TRAMPWATCH, "run", *STRICT, f"--closures={mode}", "--no-summary", "--",
           "/usr/bin/python3", "ctypes_callbacks.py", "wait"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "CALLBACKS": "50"}
    proc = subprocess.Popen(cmd, cwd=PROGRAMS, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                            stderr=subprocess.PIPE, env=env)
    try:
        line = ""
        while not line.startswith("READY"):
            line = proc.stdout.readline()
            assert line, proc.stderr.read()
        pid = line.split()[1]
        inspected = subprocess.run([*TRAMPWATCH, "inspect", "--json", pid], capture_output=True, text=True,
                                   check=False, cwd=ROOT, env=env, timeout=120)
        report = json.loads(inspected.stdout)
        assert not [r for r in report["regions"] if "w" in r["perms"] and "x" in r["perms"]]
        executable = [r for r in report["regions"] if "x" in r["perms"]]
        assert not [r for r in executable if any("w" in a["perms"] for a in r["aliases"])]
        assert not [f for f in report["findings"] if f["category"] in ("wx-map", "dual-map", "execstack")]
        proc.stdin.write("\n")
        proc.stdin.flush()
        assert proc.wait(timeout=120) == 0
    finally:
        proc.kill()
        proc.wait()


# --- without --closures -------------------------------------------------------------------------------------


def test_without_closures_strict_refuses_and_names_the_library() -> None:
    traced, events, _ = _run(["/usr/bin/python3", "ctypes_callbacks.py"], *STRICT, "--no-kernel-deny")
    assert traced.returncode != 0
    refused = [e for e in events if e["verdict"] == "denied"]
    assert refused and all("libffi" in e["caller"]["object"] for e in refused)
    assert all("--closures" in e["detail"]["hint"] and "libffi" in e["detail"]["hint"] for e in refused)
    assert "--closures" in traced.stderr


@pytest.mark.parametrize("argv,library", [
    (["/usr/bin/python3", "cffi_callbacks.py"], "_cffi_backend"),
    (["ruby", "ruby_ffi.rb"], "ffi_c.so"),
    (["/usr/bin/python3", "gi_timeout.py"], "libffi.so"),
    (["ffi_closures"], "libffi.so"),
])
def test_without_closures_each_closure_user_is_refused_with_the_hint(program: Callable[[str], str],
                                                                    argv: list[str], library: str) -> None:
    """Refused under strict: the report names the library and suggests
    --closures. PyGObject then waits forever in its main loop for a callback
    that was never installed (its own behaviour, not a loop of refusals):
    the run is ended once the report is seen."""
    if argv[0] == "ruby" and shutil.which("ruby") is None:
        pytest.skip("ruby is missing: Debian package ruby-ffi (scripts/setup)")
    if argv == ["ffi_closures"]:
        argv = [program("ffi_closures")]
    cmd = [*TRAMPWATCH, "run", *STRICT, "--no-kernel-deny", "--no-summary", "--", *argv]
    # errors="replace": ruby-ffi's error for a refused closure page prints
    # bytes of uninitialised memory ("in `attach': P\x9e..."), not UTF-8.
    proc = subprocess.Popen(cmd, cwd=PROGRAMS, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            errors="replace",  # a report line may quote bytes that are not UTF-8
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        hinted = None
        for line in proc.stderr:
            if "verdict=denied" in line and "hint=" in line:
                hinted = line
                break
        assert hinted is not None, "no refusal with a hint"
        assert library in hinted.split("| hint=")[1] and "--closures" in hinted
        assert library in hinted.split("| caller=")[1]
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def test_without_closures_a_nested_function_program_is_killed_at_exec_with_the_hint(
        program: Callable[[str], str]) -> None:
    traced, events, _ = _run([program("nested")], *STRICT)
    assert traced.returncode == 128 + 9
    (event,) = events
    assert event["syscall"] == "exec" and event["verdict"] == "killed"
    assert "--closures" in event["detail"]["hint"]


def test_a_program_retrying_a_refused_call_forever_is_stopped(program: Callable[[str], str]) -> None:
    traced, events, _ = _run([program("retry_loop")], *STRICT, "--no-kernel-deny", timeout=300)
    assert traced.returncode == 128 + 9
    last = events[-1]
    assert last["verdict"] == "killed" and "refused 200 times" in last["detail"]["why"]
    assert "libffi" in last["caller"]["object"] and "--closures" in last["detail"]["hint"]
    same = [e for e in events if (e["syscall"], e["categories"]) == (last["syscall"], last["categories"])]
    assert len(same) == 200 and all(e["verdict"] == "denied" for e in same[:-1])


def test_policy_key_turns_closures_on(program: Callable[[str], str], tmp_path: Path) -> None:
    policy = tmp_path / "closures.yaml"
    strict = (ROOT / "policies" / "strict.yaml").read_text()
    policy.write_text(strict.replace("spec:\n  mode: enforce\n",
                                     "spec:\n  mode: enforce\n  closures: emulate\n"))
    assert "closures: emulate" in policy.read_text()
    native = _native([program("nested")])
    traced, events, _ = _run([program("nested")], "--policy", str(policy))
    assert (traced.returncode, traced.stdout, events) == (0, native.stdout, [])


def test_trace_trampolines_reports_each_closure_served_by_trampfd() -> None:
    traced, events, _ = _run(["/usr/bin/python3", "ctypes_callbacks.py"], *STRICT, "--closures=trampfd",
                             "--trace-trampolines", env={"CALLBACKS": "10"})
    assert traced.returncode == 0
    allocs = [e for e in events if e["syscall"] == "closure-alloc"]
    assert len(allocs) == 2 and all(e["verdict"] == "allowed" for e in allocs)
    for event in allocs:
        assert "libffi.so" in event["detail"]["target"]  # the handler libffi chose
        assert event["caller"]["object"].endswith(".so") and "_ctypes" in event["caller"]["object"]
        assert event["detail"]["data"] != event["addr"]


def test_each_closure_is_announced_once(program: Callable[[str], str]) -> None:
    """libffi's prep functions call each other through its PLT, into the
    library again (ffi_prep_closure calls ffi_prep_closure_loc, the raw ones
    call it too), and a closure may be prepared twice: each closure is still
    announced once, by the program's own call."""
    argv = [program("prep_variants")]
    native = _native(argv)
    traced, events, summary = _run(argv, *STRICT, "--closures=trampfd", "--trace-trampolines")
    assert (traced.returncode, traced.stdout) == (0, native.stdout), traced.stderr[-3000:]
    allocs = [e for e in events if e["syscall"] == "closure-alloc"]
    assert len(allocs) == summary["closures"]["alloc"] == 7
    assert all(e["caller"]["object"].endswith("closures_prep_variants") for e in allocs)
    assert {e["caller"]["symbol"].split("+")[0] for e in allocs} == {"main"}


def test_without_closures_an_old_mmap_closure_is_refused(program: Callable[[str], str]) -> None:
    traced, events, _ = _run([program("old_mmap_closure32")], *STRICT, "--no-kernel-deny")
    assert traced.returncode == 1 and traced.stdout.startswith("VAL old_mmap failed -13")
    (event,) = [e for e in events if e["verdict"] == "denied"]
    assert (event["syscall"], event["arch"], event["categories"][0]) == ("mmap", "i386", "wx-map")


def test_old_mmap_raced_by_a_thread_never_maps_wx_under_emulate(build_program: ProgramBuilder,
                                                                 parse_output: Callable) -> None:
    """attack_old_mmap race: a thread flips the argument block between RW
    and RWX while the main thread calls old mmap. Under emulate each call
    runs as the mmap2 of the block as read, its arguments in registers: no
    mapping comes back W+X (nothing ran there) and nothing is a W^X event;
    without the rewrite the exit stop catches the kernel's RWX mappings
    (tests/test_attack.py)."""
    binary = str(build_program("attack_old_mmap"))
    traced, events, _ = _run([binary, "race", "2000"], *STRICT, "--closures=emulate", timeout=300)
    out = parse_output(traced.stdout)
    assert traced.returncode == 0 and out.count == 0 and out.done == 1, traced.stderr[-2000:]
    assert events == []


def test_the_library_leaves_a_program_alone_without_the_tracer(program: Callable[[str], str]) -> None:
    """Preloaded outside trampwatch (no trampfd served), libffi's own
    allocator runs: the program works as without it."""
    from tracer.closures.preload import preload_value

    native = _native([program("ffi_closures")])
    preloaded = _native([program("ffi_closures")], {"LD_PRELOAD": preload_value()})
    assert (preloaded.returncode, preloaded.stdout, preloaded.stderr) == (0, native.stdout, "")




def test_policy_closures_key_is_checked() -> None:
    from tracer.errors import PolicyError
    from tracer.policy.loader import load_policy_text

    text = ("apiVersion: trampwatch.dev/v1\nkind: WXPolicy\nmetadata:\n  name: p\n"
            "spec:\n  defaultAction: allow\n")
    assert load_policy_text(text + "  closures: auto\n", "p.yaml").closures == "auto"
    assert load_policy_text(text + '  closures: "off"\n', "p.yaml").closures is None
    assert load_policy_text(text, "p.yaml").closures is None
    with pytest.raises(PolicyError) as err:
        load_policy_text(text + "  closures: emulated\n", "p.yaml")
    message = str(err.value.issues[0])
    assert "p.yaml:7:3: spec.closures: unknown closures mode 'emulated' (did you mean 'emulate'?)" in message


@pytest.mark.parametrize("example", ["closure_v1", "stack_arg", "closure_v2"])
def test_emulate_mode_composes_with_emulate_trampfd(program: Callable[[str], str], example: str) -> None:
    """Both emulators on one source: trampfd's v1 faults and tables are
    served by one, GCC nested functions by the other, in the same process
    tree (the nested-function program runs under the same flags)."""
    binary = build(ROOT / "examples" / "trampfd" / f"{example}.c", "-O2", name=f"{example}-O2")
    alone, _, _ = _run([str(binary)], "--emulate-trampfd", cwd=ROOT)
    both, events, _ = _run([str(binary)], *STRICT, "--emulate-trampfd", "--closures=emulate", cwd=ROOT)
    assert alone.returncode == 0 and (both.returncode, both.stdout) == (0, alone.stdout)
    assert {e["categories"][0] for e in events} <= {"trampfd"}
    nested, events, summary = _run([program("nested")], *STRICT, "--emulate-trampfd", "--closures=emulate")
    assert (nested.returncode, nested.stdout) == (0, _native([program("nested")]).stdout)
    assert summary["closures"]["invoke"] == 2201 and events == []


def test_a_jit_under_emulate_is_told_why_it_failed(tmp_path: Path) -> None:
    """Java asks for its code cache W+X: emulate mode grants it without
    exec, and the first jump into generated code is no trampoline. The
    program gets its SIGSEGV (and fails), the jump is reported as refused
    with the JIT's library as caller, and trampwatch says why, last."""
    java = shutil.which("java")
    if java is None:
        pytest.skip("no java: Debian package default-jre-headless (scripts/setup)")
    traced, events, summary = _run([java, "-Xint", "-version"], "--closures=emulate", cwd=tmp_path)
    assert traced.returncode != 0
    refused = [e for e in events if e["syscall"] == "closure-refused"]
    assert refused and refused[0]["verdict"] == "denied" and refused[0]["categories"] == ["w-to-x"]
    assert "libjvm.so" in refused[0]["caller"]["object"]
    assert summary["closures"]["refused"] == len(refused)
    last = traced.stderr.strip().splitlines()[-1]
    assert last.startswith(f"trampwatch: {len(refused)} jump(s) into memory that --closures=emulate granted")
    assert "a JIT's" in last and "without --closures" in last


def test_a_jit_retrying_from_its_sigsegv_handler_falls_back_to_the_policy(
        program: Callable[[str], str]) -> None:
    """Once a jump into granted memory found no trampoline, the process's
    W+X requests are no longer rewritten: its handler's mprotect(RWX) is
    judged as asked. The default policy logs it and the JIT runs (without
    the fallback it would fault forever); strict would refuse it, as it does
    without --closures."""
    argv = [program("jit_retry")]
    native = _native(argv)
    traced, events, summary = _run(argv, "--closures=emulate")
    assert (traced.returncode, traced.stdout) == (0, native.stdout) == (0, "VAL jit 42\nDONE\n")
    assert [(e["syscall"], e["verdict"]) for e in events] == [("closure-refused", "denied"),
                                                              ("mprotect", "logged")]
    assert "wx-protect" in events[1]["categories"] and summary["closures"]["refused"] == 1


def test_closures_value_is_checked() -> None:
    done = subprocess.run([*TRAMPWATCH, "run", "--closures", "/bin/echo", "hi"], capture_output=True,
                          text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=60)
    assert done.returncode == 2
    assert "'/bin/echo' is not one of 'auto', 'trampfd', 'emulate'" in done.stderr
