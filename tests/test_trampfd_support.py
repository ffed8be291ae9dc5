"""Helpers of the trampfd tests (no tests here): build the C programs of
tests/trampfd_programs and examples/trampfd against tracer/include/trampfd.h,
run them under `trampwatch run --emulate-trampfd` as a user would, and parse
what they print.

The programs print common.h's STEP lines plus:
  VAL <label> <text>                      a value read back
  SEGV <label> code=<n> addr=<d> rip=<d>  a SIGSEGV caught (offsets from a base)
  CHILD <label> exit=<n> | signal=<SIG>   how a child ended
  DONE                                    the end was reached
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PROGRAMS = ROOT / "tests" / "trampfd_programs"
EXAMPLES = ROOT / "examples" / "trampfd"
INCLUDE = ROOT / "tracer" / "include"
HEADERS = (INCLUDE / "trampfd.h", ROOT / "tests" / "programs" / "common.h")
BIN = Path(tempfile.gettempdir()) / f"trampwatch-trampfd-tests-{os.getuid()}"
TRAMPWATCH = [sys.executable, "-m", "tracer"]
CFLAGS = ("-O1", "-g", "-Wall", "-Wextra", "-Werror")


def build(source: Path, *flags: str, name: str | None = None) -> Path:
    """Compile `source` (with the trampfd header on the include path) into
    the tests' cache directory unless the binary is newer than every input;
    return the binary. Fails the test on a compile error or without gcc."""
    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.fail("gcc is not on PATH; the trampfd test programs need it (run scripts/setup)")
    BIN.mkdir(exist_ok=True)
    binary = BIN / (name or source.stem)
    inputs = (source, *HEADERS, Path(__file__))
    if binary.exists() and binary.stat().st_mtime > max(p.stat().st_mtime for p in inputs):
        return binary
    fd, tmp = tempfile.mkstemp(dir=BIN, prefix=f".{binary.name}.")
    os.close(fd)
    cmd = [gcc, *CFLAGS, f"-I{INCLUDE}", "-o", tmp, str(source), "-pthread", *flags]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        Path(tmp).unlink(missing_ok=True)
        pytest.fail(f"building {source.name} failed ({' '.join(cmd)}):\n{done.stderr}", pytrace=False)
    os.chmod(tmp, 0o755)
    os.replace(tmp, binary)
    return binary


def program(name: str, *flags: str) -> Path:
    """Build tests/trampfd_programs/NAME.c; return the binary."""
    return build(PROGRAMS / f"{name}.c", *flags)


@dataclass
class Output:
    """What a program printed, by line kind and label."""

    steps: dict[str, tuple[int, str]] = field(default_factory=dict)
    values: dict[str, str] = field(default_factory=dict)
    segv: dict[str, dict[str, int]] = field(default_factory=dict)
    children: dict[str, str] = field(default_factory=dict)
    done: bool = False
    text: str = ""

    def errno(self, label: str) -> str:
        """Return the errno name of step `label` ('0' on success)."""
        return self.steps[label][1]

    def ints(self, label: str) -> list[int]:
        """Return the numbers of VAL `label` (key=value pairs give their values)."""
        return [int(word.split("=")[-1], 0) for word in self.values[label].split()]

    def pairs(self, label: str) -> dict[str, int]:
        """Return VAL `label`'s key=value words as a dict of numbers."""
        return {k: int(v, 0) for k, v in (word.split("=") for word in self.values[label].split())}


_STEP = re.compile(r"STEP (\S+) \S+ rc=(-?\d+|0x[0-9a-f]+) errno=(\S+)")
_SEGV = re.compile(r"SEGV (\S+) (code=\S+ addr=\S+ rip=\S+)")


def parse(text: str) -> Output:
    """Parse a program's stdout; raise ValueError on a line outside the protocol."""
    out = Output(text=text)
    for line in text.splitlines():
        kind, _, rest = line.partition(" ")
        label, _, value = rest.partition(" ")
        if m := _STEP.fullmatch(line):
            out.steps[m[1]] = (int(m[2], 0), m[3])
        elif kind == "VAL":
            out.values[label] = value
        elif m := _SEGV.fullmatch(line):
            out.segv[m[1]] = {k: int(v) for k, v in (w.split("=") for w in m[2].split())}
        elif kind == "CHILD":
            out.children[label] = value
        elif line == "DONE":
            out.done = True
        else:
            raise ValueError(f"line outside the protocol: {line!r}")
    return out


@dataclass
class Run:
    """One run of a program: exit code, stdout, stderr, JSON records."""

    returncode: int
    stdout: str
    stderr: str
    events: list[dict]
    summary: dict

    @property
    def out(self) -> Output:
        """stdout parsed as the test programs' protocol."""
        return parse(self.stdout)


def trace(argv: list[str], tmp_path: Path, *options: str, emulate: bool = True, timeout: int = 300,
          env: dict[str, str] | None = None) -> Run:
    """Run argv under `trampwatch run [--emulate-trampfd] OPTIONS`."""
    json_path = tmp_path / "events.jsonl"
    json_path.unlink(missing_ok=True)
    cmd = [*TRAMPWATCH, "run", "--json", str(json_path), "--no-summary",
           *(["--emulate-trampfd"] if emulate else []), *options, "--", *argv]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT,
                          env={**os.environ, **(env or {})})
    records = [json.loads(line) for line in json_path.read_text().splitlines()] if json_path.exists() else []
    return Run(done.returncode, done.stdout, done.stderr,
               [r for r in records if r["type"] == "event"],
               next((r for r in records if r["type"] == "summary"), {}))


def native(argv: list[str], timeout: int = 60) -> tuple[int, Output]:
    """Run argv without the tracer; return its exit code and parsed output."""
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    return done.returncode, parse(done.stdout)
