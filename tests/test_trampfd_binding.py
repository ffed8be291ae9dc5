"""What ships for programs, run as a user would: the C examples built against
tracer/include/trampfd.h and the Python binding, under the emulator."""

from __future__ import annotations

import subprocess
import sys

import pytest
from test_trampfd_support import EXAMPLES, ROOT, build, trace

PYTHON = "/usr/bin/python3"

EXAMPLE_OUTPUT = {
    "closure_v1": ["by_ten(1, 2) = 30", "by_thousand(1, 2) = 3000",
                   "by_thousand(1, 2) after the data changed = 21"],
    "closure_v2": ["by_ten(1, 2) = 30", "by_thousand(1, 2) = 3000", "a million native calls: 4999995000000",
                   "slot 1 reused: 0"],
    "nested_chain": ["sorted ascending with 14 comparisons: 1 2 3 5 7 8 9",
                     "sorted descending with 11 comparisons: 9 8 7 5 3 2 1"],
    "stack_arg": ["seven(1..6, 7 from the stack context) = 7654321", "again = 7123456"],
}


@pytest.mark.parametrize("example", sorted(EXAMPLE_OUTPUT))
@pytest.mark.parametrize("opt", ["-O0", "-O2"])
def test_c_example(tmp_path, example: str, opt: str) -> None:
    binary = build(EXAMPLES / f"{example}.c", opt, name=f"{example}{opt}")
    run = trace([str(binary)], tmp_path, "--policy", "strict")
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines() == EXAMPLE_OUTPUT[example]
    # no W^X event at all under the strictest preset: only trampfd, allowed
    assert run.events
    assert {(tuple(e["categories"]), e["verdict"]) for e in run.events} == {(("trampfd",), "allowed")}


def test_c_example_without_the_emulator_fails_cleanly() -> None:
    done = subprocess.run([str(build(EXAMPLES / "closure_v1.c", "-O2", name="closure_v1-O2"))],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 1
    assert "run under trampwatch run --emulate-trampfd" in done.stderr


def test_python_binding_example(tmp_path) -> None:
    run = trace([PYTHON, str(EXAMPLES / "closure.py")], tmp_path, env={"PYTHONPATH": str(ROOT)})
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines() == [
        "strtol with base 16 bound: 255 32767",
        "closure 1 (x10): 50",
        "table entries: 20 2000",
        "entry 1 rebound to closure 1: 20",
    ]
    ops = [e["syscall"] for e in run.events if e["categories"] == ["trampfd"]]
    assert ops == ["trampfd-create", "trampfd-map"] * 3


def test_python_binding_contexts(tmp_path) -> None:
    script = tmp_path / "contexts.py"
    script.write_text(
        "import errno, os\n"
        "from tracer.trampfd_binding import Trampoline\n"
        "t = Trampoline()\n"
        "print(t.fd >= 1000, t.registers())\n"
        "t.set_registers(('rdi', 1), ('rdi', 2), rip=0x1000)\n"
        "print(t.registers())\n"
        "t.set_allowed_pcs([0x2000])\n"
        "try:\n"
        "    t.set_registers(rip=0x1000)\n"
        "except OSError as err:\n"
        "    print(errno.errorcode[err.errno])\n"
        "t.set_stack(b'abc', offset=8, set_sp=True)\n"
        "address = t.map()\n"
        "print(address % 4096, address == t.address)\n"
        "t.close()\n"
    )
    run = trace([PYTHON, str(script)], tmp_path, env={"PYTHONPATH": str(ROOT)})
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines() == [
        "True []",
        "[('rdi', 1), ('rdi', 2), ('rip', 4096)]",
        "EINVAL",
        "0 True",
    ]


def test_python_binding_without_the_emulator_raises_oserror() -> None:
    done = subprocess.run(
        [sys.executable, "-c", "from tracer.trampfd_binding import Trampoline\n"
         "try:\n    Trampoline()\nexcept OSError as err:\n    print(type(err).__name__, err.errno != 0)"],
        capture_output=True, text=True, cwd=ROOT, check=True)
    assert done.stdout.strip() == "OSError True"
