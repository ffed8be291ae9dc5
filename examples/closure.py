"""A ctypes callback: libffi builds a closure trampoline at run time.

Run it under trampwatch to see what that needs from the kernel:

    trampwatch run -- python3 examples/closure.py

libffi maps a page writable and executable (wx-map, anon-exec), or, when
the kernel refuses that (PR_SET_MDWE, SELinux execmem), a memfd mapped twice:
once writable, once executable (dual-map).
"""

import ctypes

CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int)


def triple(value: int) -> int:
    """The Python function the trampoline jumps to."""
    return value * 3


closure = CALLBACK(triple)
libc = ctypes.CDLL(None)
print("callback returned", closure(14))
