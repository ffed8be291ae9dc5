"""ctypes callbacks (libffi closures): qsort with a Python comparator, then
one callback called 100,000 times. With an argument, prints READY and its
pid and waits for a line on stdin before exiting (for inspect)."""

import ctypes
import os
import sys

libc = ctypes.CDLL(None)
CMP = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_int), ctypes.POINTER(ctypes.c_int))
values = (ctypes.c_int * 12)(5, -3, 12, 7, 7, 0, 99, -40, 3, 8, 1, 2)
libc.qsort(values, len(values), ctypes.sizeof(ctypes.c_int), CMP(lambda a, b: a[0] - b[0]))
print("VAL qsort", *values)

ADD = ctypes.CFUNCTYPE(ctypes.c_long, ctypes.c_long, ctypes.c_double)
add = ADD(lambda n, x: n + int(x * 2))
total = 0
for i in range(int(os.environ.get("CALLBACKS", "100000"))):
    total += add(i, 0.5)
print("VAL loop", total)
if len(sys.argv) > 1:
    print("READY", os.getpid(), flush=True)
    sys.stdin.readline()
print("DONE")
