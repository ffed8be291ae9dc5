"""inspect on real, paused processes: the test's own C programs (a libffi
closure natively and under MDWE, a GCC nested function paused inside the
nested call, a libffi-style static trampoline table, trampfd v2 tables built
by hand and made by `trampwatch run --emulate-trampfd`),
CPython with live ctypes callbacks, and node. Every program prints the
addresses it made; inspect must find exactly those.

Programs live in tests/inspect_programs/ and are built here into a session
temporary directory; they print `ADDR <label> 0x...` lines, then `READY`, and
wait on stdin.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import struct
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tracer import trampolines as tr
from tracer.categories import Category
from tracer.errors import NoSuchProcess
from tracer.inspect import (
    ProcessReport,
    RegionReport,
    forbidden,
    inspect_all,
    inspect_process,
)
from tracer.outputs.envelope import INSPECT_SCHEMA
from tracer.outputs.inspect_report import render_text, report_json
from tracer.policy import Action, resolve_policy
from tracer.policy.loader import load_policy_text

SOURCES = Path(__file__).resolve().parent / "inspect_programs"
SHARED_HEADER_DIR = Path(__file__).resolve().parent / "programs"
FLAGS = {
    "ffi_closure": ("-lffi",),
    "static_tramp": ("-lffi",),
    # GCC marks the object as needing an executable stack for the trampoline.
    "nested": ("-Wl,--no-warn-execstack",),
    "many_maps32": ("-m32",),
}
# Programs built from another program's source.
SOURCE_OF = {"many_maps32": "many_maps"}
SYSTEM_PYTHON = "/usr/bin/python3"


@pytest.fixture(scope="session")
def inspect_program(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """Return ``inspect_program(name) -> Path``: tests/inspect_programs/NAME.c, built once."""
    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.fail("gcc is not on PATH; the inspect test programs need it (run scripts/setup)")
    out = tmp_path_factory.mktemp("inspect-bin")
    built: dict[str, Path] = {}

    def build(name: str) -> Path:
        if name not in built:
            binary = out / name
            source = SOURCES / f"{SOURCE_OF.get(name, name)}.c"
            cmd = [gcc, "-O1", "-g", "-Wall", "-Wextra", f"-I{SHARED_HEADER_DIR}", "-o", str(binary),
                   str(source), *FLAGS.get(name, ())]
            result = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if result.returncode != 0:
                if "-m32" in cmd:
                    pytest.skip(f"gcc -m32 cannot build i386 programs (gcc-multilib?): {result.stderr}")
                pytest.fail(f"building {name} failed ({' '.join(cmd)}):\n{result.stderr}")
            built[name] = binary
        return built[name]

    return build


@dataclass
class Running:
    """A paused test process and what it printed about itself."""

    proc: subprocess.Popen
    addrs: dict[str, int] = field(default_factory=dict)
    lines: list[str] = field(default_factory=list)

    @property
    def pid(self) -> int:
        return self.proc.pid


_ADDR = re.compile(r"ADDR (\S+) (0x[0-9a-f]+)")


@contextmanager
def running(cmd: list[str], stderr: int | None = None) -> Iterator[Running]:
    """Start `cmd`, wait for READY, yield it paused; then let it finish."""
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr, text=True)
    run = Running(proc)
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            line = line.strip()
            run.lines.append(line)
            if m := _ADDR.fullmatch(line):
                run.addrs[m[1]] = int(m[2], 16)
            if line == "READY":
                break
        else:
            pytest.fail(f"{cmd} ended before READY (exit {proc.wait()}): {run.lines}")
        yield run
    finally:
        try:
            proc.communicate(input="x", timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def region_at(report: ProcessReport, addr: int) -> RegionReport:
    """The listed region holding `addr` (fails the test when none is)."""
    found = [r for r in report.regions if r.start <= addr < r.end]
    assert len(found) == 1, f"{addr:#x} is in no listed region:\n{render_text(report)}"
    return found[0]


def basename(path: str | None) -> str:
    return os.path.basename(path or "")


# --- libffi closures --------------------------------------------------------------------


def check_closure(report: ProcessReport, run: Running) -> None:
    """The one trampoline is the program's closure, fully decoded."""
    (tramp,) = report.trampolines
    assert tramp.kind == tr.LIBFFI_CLOSURE
    assert tramp.addr == run.addrs["closure_exec"]
    assert tramp.data == run.addrs["closure_exec"]
    assert tramp.target is not None and tramp.target.symbol == "ffi_closure_unix64"
    assert basename(tramp.target.object).startswith("libffi.so")
    closure = tramp.closure
    assert closure is not None
    assert closure.cif == run.addrs["cif"]
    assert closure.user_data == run.addrs["user_data"]
    assert closure.fun.addr == run.addrs["handler"] and closure.fun.symbol == "tw_closure_handler"
    assert closure.nargs == 1
    assert closure.callback is None and closure.callback_note == "not a CPython process"


def test_classic_closure_in_rwx_page(inspect_program):
    with running([str(inspect_program("ffi_closure"))]) as run:
        report = inspect_process(run.pid, resolve_policy("strict"))
    region = region_at(report, run.addrs["closure_exec"])
    assert (region.perms, region.backing) == ("rwxp", "anon")
    assert region.categories == (Category.WX_MAP, Category.ANON_EXEC)
    assert run.addrs["closure_write"] == run.addrs["closure_exec"]
    check_closure(report, run)
    assert region.judged.syscall == "mmap" and region.judged.decision.action == Action.DENY
    assert forbidden(report)


def test_closure_dual_map_under_mdwe(inspect_program, build_program):
    mdwe = build_program("mdwe_exec")
    with running([str(mdwe), str(inspect_program("ffi_closure"))]) as run:
        report = inspect_process(run.pid, resolve_policy("mdwe"))
    write, code = run.addrs["closure_write"], run.addrs["closure_exec"]
    assert write != code
    runner, writer = region_at(report, code), region_at(report, write)
    assert (runner.perms, runner.backing) == ("r-xs", "memfd")
    assert (writer.perms, writer.backing) == ("rw-s", "memfd")
    assert runner.categories == (Category.DUAL_MAP, Category.EXEC_UNLINKED)
    assert writer.categories == (Category.DUAL_MAP,)
    assert runner.aliases == ((writer.start, writer.end, "rw-s"),)
    assert writer.aliases == ((runner.start, runner.end, "r-xs"),)
    assert not any(Category.WX_MAP in r.categories for r in report.regions)
    check_closure(report, run)
    # MDWE itself let this process run; the mdwe preset must agree.
    assert not forbidden(report)


def test_mdwe_preset_forbids_what_mdwe_refuses(inspect_program):
    with running([str(inspect_program("ffi_closure"))]) as run:
        report = inspect_process(run.pid, resolve_policy("mdwe"))
    assert forbidden(report)
    assert region_at(report, run.addrs["closure_exec"]).judged.decision.rule == "mdwe-new-wx-mapping"


def test_log_only_policy_forbids_nothing(inspect_program):
    with running([str(inspect_program("ffi_closure"))]) as run:
        report = inspect_process(run.pid, resolve_policy("default"))
    assert region_at(report, run.addrs["closure_exec"]).judged.decision.action == Action.LOG
    assert not forbidden(report)


# --- GCC nested functions -----------------------------------------------------------------


def test_gcc_nested_trampoline_on_the_stack(inspect_program):
    binary = inspect_program("nested")
    with running([str(binary)]) as run:
        # READY is printed just before the read(): wait until the thread
        # really blocks there, so its stack pointer can be read.
        for _ in range(200):
            if not Path(f"/proc/{run.pid}/syscall").read_text().startswith("running"):
                break
            time.sleep(0.01)
        report = inspect_process(run.pid, resolve_policy("strict"))
    stack = region_at(report, run.addrs["trampoline"])
    assert (stack.path, stack.perms) == ("[stack]", "rwxp")
    assert stack.categories == (Category.WX_MAP, Category.EXECSTACK)
    # PT_GNU_STACK asked for it: judged as found at exec, which strict kills.
    assert stack.judged.syscall == "exec" and stack.judged.decision.action == Action.KILL
    (tramp,) = stack.trampolines
    assert tramp.kind == tr.GCC_NESTED and tramp.addr == run.addrs["trampoline"]
    assert tramp.target is not None and tramp.target.symbol.startswith("tw_nested")
    assert tramp.target.object == str(binary) and tramp.target.offset == 0
    # The static chain points at main's frame block, which holds `bias`.
    assert tramp.data_kind == tr.STATIC_CHAIN
    assert tramp.data <= run.addrs["chain_var"] < tramp.data + 64
    assert tramp.live is True


# --- libffi static trampoline tables ------------------------------------------------------


def test_static_trampoline_table(inspect_program):
    binary = inspect_program("static_tramp")
    with running([str(binary)]) as run:
        report = inspect_process(run.pid, resolve_policy("strict"), disasm=True)
    table = region_at(report, run.addrs["table"])
    assert (table.start, table.end, table.perms, table.path) == (
        run.addrs["table"], run.addrs["params"], "r-xp", str(binary))
    assert table.categories == ()
    assert "mapped a second time" in table.note
    assert table.free_slots == 126
    assert not forbidden(report)
    assert [t.addr for t in table.trampolines] == [run.addrs["table"], run.addrs["table"] + 5 * 32]
    for tramp in table.trampolines:
        assert tramp.kind == tr.LIBFFI_STATIC
        assert tramp.target.symbol == "tw_static_target" and tramp.target.addr == run.addrs["target"]
        assert tramp.data == run.addrs["closure"]
        assert tramp.closure.fun.symbol == "tw_closure_handler"
        assert tramp.closure.user_data == run.addrs["user_data"]
        assert tramp.closure.cif == run.addrs["cif"]
        assert tramp.disasm[-1].endswith("jmp r10")


# --- trampfd --------------------------------------------------------------------------------


def test_trampfd_v2_table_and_v1_page(inspect_program):
    with running([str(inspect_program("trampfd_v2"))]) as run:
        report = inspect_process(run.pid, resolve_policy("strict"))
    v1 = region_at(report, run.addrs["v1_page"])
    assert (v1.perms, v1.categories, v1.judged.syscall) == ("---p", (Category.TRAMPFD,), "trampfd")
    assert v1.judged.decision.action == Action.ALLOW and "v1" in v1.note
    # A page of v2 trampolines and int3 only is a trampfd table, whoever wrote it.
    page = region_at(report, run.addrs["page"])
    assert (page.perms, page.categories, page.judged.syscall) == ("r-xp", (Category.TRAMPFD,), "trampfd")
    assert page.judged.decision.action == Action.ALLOW
    assert page.free_slots == 2
    assert [(t.kind, t.addr, t.data) for t in page.trampolines] == [
        (tr.TRAMPFD_V2, run.addrs["tramp0"], 0x1234),
        (tr.TRAMPFD_V2, run.addrs["tramp2"], 0x5678),
    ]
    assert all(t.target.addr == run.addrs["target"] and t.target.symbol == "tw_v2_target"
               for t in page.trampolines)
    # The same trampolines beside other code: anonymous executable memory still.
    mixed = region_at(report, run.addrs["mixed_page"])
    assert mixed.categories == (Category.ANON_EXEC, Category.TRAMPFD)
    assert mixed.judged.syscall == "mmap" and mixed.judged.decision.action == Action.DENY
    assert len(mixed.trampolines) == 2
    assert forbidden(report)


def _child_of(pid: int) -> int:
    with open(f"/proc/{pid}/task/{pid}/children", encoding="ascii") as f:
        (child,) = (int(word) for word in f.read().split())
    return child


def test_trampfd_program_under_the_emulator(inspect_program):
    program = inspect_program("trampfd_emulated")
    cmd = [sys.executable, "-m", "tracer", "run", "--emulate-trampfd", "--", str(program)]
    with running(cmd, stderr=subprocess.DEVNULL) as run:
        report = inspect_process(_child_of(run.pid), resolve_policy("strict"))
    table = region_at(report, run.addrs["table"])
    assert (table.start, table.perms, table.categories) == (run.addrs["table"], "r-xp", (Category.TRAMPFD,))
    (tramp,) = table.trampolines
    assert (tramp.kind, tramp.addr, tramp.data) == (tr.TRAMPFD_V2, run.addrs["tramp1"], 0x4242)
    assert tramp.target.addr == run.addrs["target"] and tramp.target.symbol == "tw_emulated_target"
    # The v1 page: a PROT_NONE view of the trampfd's memfd, found by its name.
    v1 = region_at(report, run.addrs["v1_page"])
    assert (v1.start, v1.perms, v1.categories) == (run.addrs["v1_page"], "---p", (Category.TRAMPFD,))
    # run --emulate-trampfd allows the table under strict; so does inspect.
    assert not forbidden(report)


# --- CPython ---------------------------------------------------------------------------------

CALLBACKS = textwrap.dedent("""
    import ctypes, sys

    class Handler:
        def method_cb(self, x):
            return x + 2

    def my_callback(x):
        return x + 1

    CB = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int)
    keep = {"cb": CB(my_callback), "method": CB(Handler().method_cb), "lambda": CB(lambda x: x)}
    assert keep["cb"](1) == 2
    for name, cb in keep.items():
        print("ADDR", name, hex(ctypes.cast(cb, ctypes.c_void_p).value), flush=True)
        print("ADDR", name + "_thunk", hex(id(cb._objects["0"])), flush=True)
    print("ADDR", "version", hex(sys.version_info[0] * 100 + sys.version_info[1]), flush=True)
    print("READY", flush=True)
    sys.stdin.read(1)
""")


def check_callbacks(report: ProcessReport, run: Running) -> None:
    version = run.addrs["version"]
    assert report.python == f"{version // 100}.{version % 100}"
    by_addr = {t.addr: t for t in report.trampolines}
    expected = {"cb": ("function", "my_callback"), "method": ("method", "Handler.method_cb"),
                "lambda": ("function", "<lambda>")}
    for name, (type_name, qualname) in expected.items():
        tramp = by_addr[run.addrs[name]]
        assert tramp.kind == tr.LIBFFI_CLOSURE
        assert tramp.target.symbol == "ffi_closure_unix64"
        callback = tramp.closure.callback
        assert callback is not None, tramp.closure.callback_note
        assert callback.thunk == run.addrs[f"{name}_thunk"] == tramp.closure.user_data
        assert (callback.type_name, callback.qualname, callback.module) == (type_name, qualname, "__main__")


@pytest.fixture
def system_python() -> str:
    if not os.access(SYSTEM_PYTHON, os.X_OK):
        pytest.skip(f"{SYSTEM_PYTHON} is not installed")
    return SYSTEM_PYTHON


def test_python_ctypes_callbacks(system_python):
    with running([system_python, "-c", CALLBACKS]) as run:
        report = inspect_process(run.pid, None)
    check_callbacks(report, run)
    region = region_at(report, run.addrs["cb"])
    assert region.perms == "rwxp" and Category.WX_MAP in region.categories
    assert region.judged.decision is None and not forbidden(report)
    text = render_text(report)
    assert "callback=__main__.my_callback" in text
    assert "callback=__main__.Handler.method_cb (bound method)" in text


def test_python_ctypes_callbacks_under_mdwe(system_python, build_program):
    with running([str(build_program("mdwe_exec")), system_python, "-c", CALLBACKS]) as run:
        report = inspect_process(run.pid, resolve_policy("mdwe"))
    check_callbacks(report, run)
    region = region_at(report, run.addrs["cb"])
    assert region.perms == "r-xs" and Category.DUAL_MAP in region.categories
    assert not forbidden(report)


# --- node --------------------------------------------------------------------------------------


@pytest.mark.slow
def test_node_rwx_code_space():
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed")
    script = "let s = 0; for (let i = 0; i < 1e6; i++) s += i; console.log('READY'); process.stdin.resume()"
    with running([node, "-e", script]) as run:
        report = inspect_process(run.pid, resolve_policy("mdwe"))
    # V8's code space: kept RWX by node 20, flipped to R-X between writes by
    # Debian 12's node 18 (so what mdwe forbids depends on the version).
    code = [r for r in report.regions if r.backing == "anon" and r.perms[2] == "x"]
    assert code, render_text(report)
    for region in code:
        expected = (Category.WX_MAP, Category.ANON_EXEC) if region.perms == "rwxp" else (Category.ANON_EXEC,)
        assert region.categories == expected
    assert forbidden(report) == any(r.perms == "rwxp" for r in code)


# --- a READ_IMPLIES_EXEC persona ------------------------------------------------------------


def test_read_implies_exec_persona(inspect_program):
    setarch = shutil.which("setarch")
    if setarch is None:
        pytest.skip("setarch (util-linux) is not installed")
    # x86-64 clears READ_IMPLIES_EXEC at the exec of a 64-bit program; an
    # i386 one keeps the persona setarch -X gives it.
    with running([setarch, "i386", "-X", str(inspect_program("many_maps32")), "4"]) as run:
        report = inspect_process(run.pid, resolve_policy("strict"))
    assert report.personality is not None and report.personality & 0x0400000
    ((category, judged),) = report.findings
    assert (category, judged.syscall, judged.decision.action) == (
        Category.READ_IMPLIES_EXEC, "personality", Action.DENY)
    # Its read+write pages were mapped read+write+execute.
    first = region_at(report, run.addrs["base"])
    assert (first.perms, first.categories) == ("rwxp", (Category.WX_MAP, Category.ANON_EXEC))
    assert "the whole process: read-implies-exec" in render_text(report)


# --- regions judged by kind ------------------------------------------------------------------

# Write+exec memory denied, other anonymous code only logged: neighbours
# differing in protection get different verdicts.
DENY_WX_LOG_ANON = """apiVersion: trampwatch.dev/v1
kind: WXPolicy
metadata: {name: deny-wx-log-anon}
spec:
  defaultAction: allow
  rules:
    - {name: no-wx, match: {category: wx-map}, action: deny}
    - {name: anon-code, match: {category: anon-exec}, action: log}
"""


def _maps_lines(pid: int, start: int, end: int) -> list[tuple[int, int, str]]:
    """(start, end, perms) of the kernel's regions of `pid` overlapping start..end."""
    lines = []
    with open(f"/proc/{pid}/maps", encoding="ascii") as f:
        for line in f:
            span, perms = line.split()[:2]
            lo, hi = (int(x, 16) for x in span.split("-"))
            if lo < end and start < hi:
                lines.append((lo, hi, perms))
    return lines


def test_neighbours_differing_in_protection_are_judged_apart(inspect_program):
    # inspect judges alike anonymous regions once; the kernel's own list
    # says what each region is, and each must be reported as just that.
    policy = load_policy_text(DENY_WX_LOG_ANON, "deny-wx-log-anon.yaml")
    with running([str(inspect_program("mixed_maps")), "36"]) as run:
        refused = [line for line in run.lines if line.startswith("REFUSED")]
        if refused:
            pytest.skip(f"the kernel refuses the protections mixed_maps needs: {refused[0]}")
        base, size = run.addrs["base"], 36 * os.sysconf("SC_PAGE_SIZE")
        report = inspect_process(run.pid, policy)
        kernel = _maps_lines(run.pid, base, base + size)
    listed = {(r.start, r.end): r for r in report.regions if r.start < base + size and base < r.end}
    assert sorted(listed) == [(lo, hi) for lo, hi, perms in kernel if "x" in perms]
    assert {perms for _, _, perms in kernel} == {"rw-p", "r-xp", "rwxp"}
    for lo, hi, perms in kernel:
        if "x" not in perms:
            continue
        region = listed[(lo, hi)]
        writable = "w" in perms
        assert region.perms == perms
        assert region.judged.prot == frozenset({"read", "exec", *(["write"] if writable else [])})
        assert region.categories == ((Category.WX_MAP, Category.ANON_EXEC) if writable
                                     else (Category.ANON_EXEC,))
        assert (region.judged.decision.action, region.judged.decision.rule) == (
            (Action.DENY, "no-wx") if writable else (Action.LOG, "anon-code"))


_LOADS_CAPSTONE = ("import sys; from tracer.inspect import inspect_process; "
                   "inspect_process(int(sys.argv[1])); print('capstone' in sys.modules)")


def test_capstone_is_imported_only_to_decode(inspect_program):
    # capstone takes longer to import than inspecting 10,000 mappings: a
    # process whose code holds no indirect jump needs no decoding, one
    # with trampfd v2 tables does (they are checked by decoding).
    with running([str(inspect_program("many_maps")), "8"]) as plain, \
            running([str(inspect_program("trampfd_v2"))]) as v2:
        loaded = [subprocess.run([sys.executable, "-c", _LOADS_CAPSTONE, str(run.pid)], capture_output=True,
                                 text=True, check=True).stdout.split() for run in (plain, v2)]
    assert loaded == [["False"], ["True"]]


# --- errors, JSON, --all ---------------------------------------------------------------------


def test_no_such_process():
    with open("/proc/sys/kernel/pid_max", encoding="ascii") as f:
        beyond = int(f.read()) + 1
    for pid in (beyond, 0, -1):
        with pytest.raises(NoSuchProcess) as info:
            inspect_process(pid)
        assert f"pid {pid}" in str(info.value)


def test_json_report(inspect_program):
    with running([str(inspect_program("ffi_closure"))]) as run:
        report = inspect_process(run.pid, resolve_policy("strict"), disasm=True)
    doc = json.loads(json.dumps(report_json(report)))
    assert (doc["schema"], doc["type"]) == (INSPECT_SCHEMA, "process")
    assert doc["pid"] == run.pid and doc["forbidden"] is True
    (region,) = [r for r in doc["regions"] if r["trampolines"]]
    assert region["categories"] == ["wx-map", "anon-exec"]
    assert region["judged"]["decision"] == {"action": "deny", "rule": "deny-wx"}
    (tramp,) = region["trampolines"]
    assert tramp["addr"] == hex(run.addrs["closure_exec"])
    assert tramp["target"]["symbol"] == "ffi_closure_unix64" and tramp["target"]["source"] == "derived"
    assert tramp["closure"]["fun"]["symbol"] == "tw_closure_handler"
    assert tramp["disasm"][0].endswith("endbr64")


def test_inspect_all_finds_the_closure(inspect_program):
    with running([str(inspect_program("ffi_closure"))]) as run:
        result = inspect_all(resolve_policy("strict"))
    assert result.skipped["self"] == 1
    (report,) = [r for r in result.reports if r.pid == run.pid]
    assert [t.addr for t in report.trampolines] == [run.addrs["closure_exec"]]
    assert all(r.pid != os.getpid() for r in result.reports)


# --- recognisers on bytes ----------------------------------------------------------------------


def test_recognisers_on_other_encodings():
    base = 0x10000
    # libffi < 3.3: movabs r11, target; movabs r10, closure (itself); jmp r11.
    legacy = (b"\x49\xbb" + struct.pack("<Q", 0x401000) + b"\x49\xba" + struct.pack("<Q", base)
              + b"\x49\xff\xe3")
    (shape,) = tr.find_trampolines(base, legacy)
    assert (shape.kind, shape.target, shape.data) == (tr.LIBFFI_CLOSURE, 0x401000, base)
    # GCC with a 32-bit target and endbr64: mov r11d, imm32.
    gcc = (b"\xf3\x0f\x1e\xfa\x41\xbb" + struct.pack("<I", 0x401000) + b"\x49\xba"
           + struct.pack("<Q", 0x7FFF0000) + b"\x49\xff\xe3\x90")
    (shape,) = tr.find_trampolines(base, gcc)
    assert (shape.kind, shape.addr, shape.target, shape.data) == (tr.GCC_NESTED, base, 0x401000, 0x7FFF0000)
    # libffi 3.4 static trampoline with endbr64 (40-byte slots): data at +4096.
    static = (b"\xf3\x0f\x1e\xfa\x48\x83\xec\x10\x4c\x89\x14\x24\x4c\x8b\x15" + struct.pack("<i", 4077)
              + b"\x4c\x89\x54\x24\x08\x4c\x8b\x15" + struct.pack("<i", 4073) + b"\x41\xff\xe2")
    (shape,) = tr.find_trampolines(base, static)
    assert (shape.kind, shape.data_slot, shape.target_slot) == (tr.LIBFFI_STATIC, base + 4096, base + 4104)
    # A lea r10 that does not point back at itself is not a closure.
    assert tr.find_trampolines(base, b"\x4c\x8d\x15\x00\x00\x00\x00\xff\x25\x07\x00\x00\x00") == []
