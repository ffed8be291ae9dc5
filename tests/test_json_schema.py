"""docs/events.md lists every field of every JSON record trampwatch writes.

Real programs run under `run`, `monitor`, `inspect` and `scan` (chosen so
that together they make every optional key appear: each `detail` key, a
`lost` record, ctypes callbacks, dual-map aliases, a READ_IMPLIES_EXEC
persona, scan errors); every key path their records carry must be listed in
the document, and every listed one must be emitted by some case.
"""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from test_cli import FLOOD_C
from test_inspect import CALLBACKS, inspect_program, running  # noqa: F401 (inspect_program: a fixture)
from test_run_programs import PYTHON, ROOT, TRAMPWATCH
from test_trampfd_support import build, program

from tracer.outputs.envelope import EVENTS_SCHEMA, INSPECT_SCHEMA, SCAN_SCHEMA

DOC = ROOT / "docs" / "events.md"
CLOSURE_PROGRAMS = ROOT / "tests" / "programs" / "closures"
STRICT = ("--policy", "strict")

KeyPath = tuple[str, ...]
Records = list[dict]

# A jump into granted memory that holds code but no trampoline: `run
# --closures=emulate` refuses it (a `closure-refused` event).
JUMP_C = r"""
#include <sys/mman.h>
int main(void)
{
	unsigned char *p = mmap(0, 4096, PROT_READ | PROT_WRITE | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return 2;
	p[0] = 0xc3;
	((void (*)(void))p)();
	return 0;
}
"""


# --- the document -----------------------------------------------------------------------------

_SCHEMA_HEADING = re.compile(r"^## `(trampwatch\.\w+/v\d+)`$")
_TYPE_HEADING = re.compile(r'^### `type: "(\w+)"`$')
_OBJECT_HEADING = re.compile(r"^### `([A-Z]+)`$")
_ROW = re.compile(r"^\| ([^|]+) \| ([^|]+) \|")
_CODE = re.compile(r"`([^`]+)`")


def split_path(text: str) -> KeyPath:
    """'regions[].aliases[].start' -> ('regions', '[]', 'aliases', '[]', 'start')."""
    parts: list[str] = []
    for name in text.split("."):
        arrays = 0
        while name.endswith("[]"):
            name, arrays = name[:-2], arrays + 1
        parts += [name, *["[]"] * arrays]
    return tuple(parts)


def documented(text: str) -> dict[tuple[str, str], set[KeyPath]]:
    """Every documented key path, by (schema, type): the tables under
    "## `SCHEMA`" / "### `type: "T"`" headings, with the envelope's fields
    ("## The envelope") in every type, and a row whose type is a
    shared object (`JUDGED`, `SYMBOL`: "### `NAME`" tables) expanded into it."""
    rows: dict[tuple[str, str], list[tuple[KeyPath, list[str]]]] = {}
    schema = kind = ""
    envelope = False
    for line in text.splitlines():
        if line.startswith("## "):
            envelope, kind = line == "## The envelope", ""
            schema = m[1] if (m := _SCHEMA_HEADING.match(line)) else ""
        elif m := _TYPE_HEADING.match(line):
            kind = m[1]
        elif m := _OBJECT_HEADING.match(line):
            schema, kind = "", m[1]
        elif (m := _ROW.match(line)) and m[1].startswith("`") and (kind or envelope):
            refs = [name for name in _CODE.findall(m[2]) if name.isupper()]
            for name in _CODE.findall(m[1]):
                rows.setdefault((schema, kind), []).append((split_path(name), refs))

    def expand(key: tuple[str, str]) -> set[KeyPath]:
        paths = set()
        for path, refs in rows.get(key, []):
            paths.add(path)
            for ref in refs:
                paths |= {path + sub for sub in expand(("", ref))}
        return paths

    common = expand(("", ""))
    return {key: expand(key) | common for key in rows if key[0]}


DOCUMENTED = documented(DOC.read_text())


def key_paths(value: object, prefix: KeyPath = ()) -> set[KeyPath]:
    """Every key path of a JSON value: nested keys joined, '[]' for the
    elements of a list of objects."""
    paths: set[KeyPath] = set()
    if isinstance(value, dict):
        for key, item in value.items():
            paths.add((*prefix, key))
            paths |= key_paths(item, (*prefix, key))
    elif isinstance(value, list):
        for item in value:
            if isinstance(item, dict):
                paths |= key_paths(item, (*prefix, "[]"))
    return paths


def _matches(path: KeyPath, pattern: KeyPath) -> bool:
    """A key path against a documented one ('*' stands for any key of a map)."""
    return len(path) == len(pattern) and all(
        p == q or (q == "*" and p != "[]") for p, q in zip(path, pattern, strict=True))


def emitted(records: Records) -> dict[tuple[str, str], set[KeyPath]]:
    """Every key path the records carry, by (schema, type)."""
    found: dict[tuple[str, str], set[KeyPath]] = {}
    for record in records:
        found.setdefault((record.get("schema"), record.get("type")), set()).update(key_paths(record))
    return found


def undocumented(records: Records) -> list[str]:
    """Key paths (and record kinds) the records carry that the document does not list."""
    missing = []
    for key, paths in emitted(records).items():
        if key not in DOCUMENTED:
            missing.append(f"a record of schema {key[0]!r}, type {key[1]!r}")
            continue
        patterns = DOCUMENTED[key]
        for path in sorted(paths):
            if not any(len(q) >= len(path) and _matches(path, q[:len(path)]) for q in patterns):
                missing.append(f"{key[0]} {key[1]}: {'.'.join(path).replace('.[]', '[]')}")
    return missing


def never_emitted(schema: str, records: Records) -> list[str]:
    """Key paths the document lists for `schema` that no record carries."""
    found = emitted(records)
    return [f"{key[1]}: {'.'.join(pattern).replace('.[]', '[]')}"
            for key, patterns in sorted(DOCUMENTED.items()) if key[0] == schema
            for pattern in sorted(patterns)
            if not any(_matches(path, pattern) for path in found.get(key, ()))]


# --- the cases --------------------------------------------------------------------------------


def _lines(text: str) -> Records:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def _run(tmp: Path, argv: list[str], *options: str) -> Records:
    """`trampwatch run --json` (the exit status is the program's: not checked here)."""
    out = tmp / "events.jsonl"
    subprocess.run([*TRAMPWATCH, "run", "--json", str(out), "-o", str(tmp / "report.txt"), *options, "--",
                    *argv], capture_output=True, text=True, timeout=300, cwd=ROOT, check=False)
    return _lines(out.read_text())


def _code_file(tmp: Path) -> Path:
    """A file of code for opaque_routes (page 0 `mov eax,7; ret`, page 1 `mov eax,42; ret`)."""
    path = tmp / "code.bin"
    path.write_bytes(bytes.fromhex("b807000000c3").ljust(4096, b"\xcc")
                     + bytes.fromhex("b82a000000c3").ljust(4096, b"\xcc"))
    return path


@pytest.fixture(scope="module")
def run_records(build_program, tmp_path_factory: pytest.TempPathFactory) -> Records:
    """Records of `run` over programs that, together, carry every optional key."""
    tmp = tmp_path_factory.mktemp("json-run")
    (tmp / "jump.c").write_text(JUMP_C)
    jump = build(tmp / "jump.c", name="json_schema_jump")
    nested = build(CLOSURE_PROGRAMS / "nested.c", name="closures_nested")
    cases: list[tuple[list[str], tuple[str, ...]]] = [
        ([str(build_program("wx_map"))], ()),
        ([str(build_program("execstack"))], STRICT),                         # detail.hint
        ([str(build_program("dual_map_memfd"))], ()),                        # detail.fd
        ([str(build_program("procmem_routes")), "creat"], ()),               # detail.target (foreign-write)
        ([str(build_program("opaque_routes")), str(_code_file(tmp))], ()),   # detail.facility
        ([str(nested)], (*STRICT, "--closures=emulate", "--trace-trampolines")),  # closure detail
        ([str(jump)], (*STRICT, "--closures=emulate")),                      # detail.why
        ([str(program("tf_invoke")), "second"], ("--emulate-trampfd", "--trace-trampolines")),  # registers
    ]
    records: Records = []
    for index, (argv, options) in enumerate(cases):
        case = tmp / str(index)
        case.mkdir()
        got = _run(case, argv, *options)
        assert got and got[-1]["type"] == "summary", (argv, options)
        records += got
    return records


@pytest.fixture(scope="module")
def monitor_records(build_program, tmp_path_factory: pytest.TempPathFactory) -> Records:
    """Records of `monitor`: a W^X program, then a flood through a one-page
    ring buffer (`lost` records)."""
    tmp = tmp_path_factory.mktemp("json-monitor")
    (tmp / "twflood.c").write_text(FLOOD_C)
    flood = tmp / "twflood"
    subprocess.run(["gcc", "-O1", "-o", str(flood), str(tmp / "twflood.c")], check=True)
    out = tmp / "monitor.jsonl"
    proc = subprocess.Popen([*TRAMPWATCH, "monitor", "--json", str(out), "-o", str(tmp / "m.txt"),
                             "--comm", "wx_map", "--comm", "twflood", "--buffer-pages", "1",
                             "--no-kernel-repeats"], stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        line = proc.stderr.readline()
        assert "monitoring" in line, line + proc.stderr.read()
        subprocess.run([str(build_program("wx_map"))], check=True, capture_output=True)
        subprocess.run([str(flood), "20000"], check=True)
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 0
    records = _lines(out.read_text())
    assert {r["type"] for r in records} == {"event", "lost", "summary"}, records[-1]
    return records


def _inspect(*args: str) -> Records:
    done = subprocess.run([*TRAMPWATCH, "inspect", "--json", *args], capture_output=True, text=True,
                          timeout=300, cwd=ROOT, check=False)
    assert done.returncode in (0, 1), done.stderr
    return _lines(done.stdout)


@pytest.fixture(scope="module")
def inspect_records(build_program, request: pytest.FixtureRequest) -> Records:
    """Records of `inspect`: ctypes callbacks, a libffi closure under MDWE
    (dual-map aliases), a GCC nested function, a READ_IMPLIES_EXEC persona,
    and `--all` (the summary)."""
    built: Callable[[str], Path] = request.getfixturevalue("inspect_program")
    setarch = shutil.which("setarch")
    if setarch is None:
        pytest.skip("setarch (util-linux) is not installed: no READ_IMPLIES_EXEC persona to inspect")
    commands = [
        [PYTHON, "-c", CALLBACKS],
        [str(build_program("mdwe_exec")), str(built("ffi_closure"))],
        [str(built("nested"))],
        [setarch, "i386", "-X", str(built("many_maps32")), "4"],
    ]
    records: Records = []
    for command in commands:
        with running(command) as run:
            records += _inspect("--disasm", "--policy", "strict", str(run.pid))
    with running([str(built("ffi_closure"))]):
        records += _inspect("--all")
    return records


@pytest.fixture(scope="module")
def scan_records(build_program, tmp_path_factory: pytest.TempPathFactory) -> Records:
    """Records of `scan --all`: hazards, clean files, a symlink loop, a
    non-ELF file and a truncated ELF."""
    tmp = tmp_path_factory.mktemp("json-scan")
    execstack = build_program("execstack")
    (tmp / "loop").symlink_to(tmp)
    (tmp / "notes.txt").write_text("not an ELF")
    (tmp / "truncated").write_bytes(execstack.read_bytes()[:200])
    done = subprocess.run([*TRAMPWATCH, "scan", "--json", "--all", "--policy", "strict", str(execstack),
                           str(build_program("benign_rw")), str(tmp)], capture_output=True, text=True,
                          timeout=300, cwd=ROOT, check=False)
    assert done.returncode == 1, done.stderr
    return _lines(done.stdout)


# --- the checks -------------------------------------------------------------------------------


def test_the_document_has_a_table_for_every_record_kind():
    assert set(DOCUMENTED) == {
        (EVENTS_SCHEMA, "event"), (EVENTS_SCHEMA, "lost"), (EVENTS_SCHEMA, "summary"),
        (INSPECT_SCHEMA, "process"), (INSPECT_SCHEMA, "summary"),
        (SCAN_SCHEMA, "file"), (SCAN_SCHEMA, "summary"),
    }
    # Shared objects are expanded where they are used.
    assert ("regions", "[]", "trampolines", "[]", "closure", "fun", "source") in DOCUMENTED[(INSPECT_SCHEMA,
                                                                                              "process")]


def test_the_check_catches_an_undocumented_key():
    record = {"schema": EVENTS_SCHEMA, "type": "event", "detail": {"hint": "x", "invented": "y"},
              "caller": {"addr": "0x1", "extra": [{"deep": 1}]}}
    assert undocumented([record]) == [
        f"{EVENTS_SCHEMA} event: caller.extra", f"{EVENTS_SCHEMA} event: caller.extra[].deep",
        f"{EVENTS_SCHEMA} event: detail.invented"]
    assert undocumented([{"schema": "trampwatch.other/v1", "type": "x"}]) == [
        "a record of schema 'trampwatch.other/v1', type 'x'"]


@pytest.mark.slow
def test_run_records_are_documented(run_records):
    assert {r["schema"] for r in run_records} == {EVENTS_SCHEMA}
    assert undocumented(run_records) == []


@pytest.mark.ebpf
@pytest.mark.slow
def test_monitor_records_are_documented(monitor_records):
    assert {r["schema"] for r in monitor_records} == {EVENTS_SCHEMA}
    assert undocumented(monitor_records) == []


@pytest.mark.slow
def test_inspect_records_are_documented(inspect_records):
    assert {r["schema"] for r in inspect_records} == {INSPECT_SCHEMA}
    assert undocumented(inspect_records) == []


def test_scan_records_are_documented(scan_records):
    assert {r["schema"] for r in scan_records} == {SCAN_SCHEMA}
    assert undocumented(scan_records) == []


@pytest.mark.ebpf
@pytest.mark.slow
def test_every_documented_event_field_is_emitted(run_records, monitor_records):
    assert never_emitted(EVENTS_SCHEMA, run_records + monitor_records) == []


@pytest.mark.slow
def test_every_documented_inspect_field_is_emitted(inspect_records):
    assert never_emitted(INSPECT_SCHEMA, inspect_records) == []


def test_every_documented_scan_field_is_emitted(scan_records):
    assert never_emitted(SCAN_SCHEMA, scan_records) == []
