"""Closures without writable code, from Python, on trampfd.

Run: trampwatch run --emulate-trampfd -- .venv/bin/python examples/trampfd/closure.py
(any Python that can import the trampwatch package: the venv, or PYTHONPATH=.).
The generic handler is itself a ctypes callback, so libffi makes one W+X page
for it (one wx-map in the report); every closure after that is a trampoline
with no writable code.

1. v1, partial application of a C function: a trampoline that loads 16 into
   rdx (strtol's base) and jumps to strtol is a hex parser.
2. v1, a Python closure: the trampoline passes its closure data in rdx, the
   third argument of a generic handler.
3. v2, a table of such closures; the program rebinds an entry by writing two
   ordinary words, and the calls run natively (no tracer stop).
"""

from __future__ import annotations

import ctypes

from tracer.trampfd_binding import Trampoline, TrampolineTable, address_of

libc = ctypes.CDLL(None)

with Trampoline() as hex_to_int:
    hex_to_int.set_registers(rdx=16, rip=address_of(libc.strtol))
    parse = hex_to_int.function(ctypes.c_long, ctypes.c_char_p, ctypes.c_void_p)
    print("strtol with base 16 bound:", parse(b"ff", None), parse(b"7fff", None))

HANDLER = ctypes.CFUNCTYPE(ctypes.c_long, ctypes.c_long, ctypes.c_long, ctypes.c_long)
scales = {}


@HANDLER
def scaled_sum(a: int, b: int, closure: int) -> int:
    """The generic handler: its closure data arrives in the third argument."""
    return (a + b) * scales[closure]


scales[1], scales[2] = 10, 1000
with Trampoline() as times_ten:
    times_ten.set_registers(rdx=1, rip=address_of(scaled_sum))
    print("closure 1 (x10):", times_ten.function(ctypes.c_long, ctypes.c_long, ctypes.c_long)(2, 3))

table = TrampolineTable(2, code_reg="r11", data_reg="rdx")
table.set(0, address_of(scaled_sum), 1)
table.set(1, address_of(scaled_sum), 2)
first = table.function(0, ctypes.c_long, ctypes.c_long, ctypes.c_long)
second = table.function(1, ctypes.c_long, ctypes.c_long, ctypes.c_long)
print("table entries:", first(1, 1), second(1, 1))
table.set(1, address_of(scaled_sum), 1)
print("entry 1 rebound to closure 1:", second(1, 1))
table.close()
