"""cffi callbacks (Debian python3-cffi-backend): qsort with a comparator."""

from cffi import FFI

ffi = FFI()
ffi.cdef("void qsort(void *base, size_t n, size_t size, int (*cmp)(const void *, const void *));")
libc = ffi.dlopen(None)


@ffi.callback("int(const void *, const void *)")
def compare(a, b):
    return ffi.cast("int *", a)[0] - ffi.cast("int *", b)[0]


values = ffi.new("int[]", [5, -3, 12, 7, 7, 0, 99, -40, 3])
libc.qsort(values, len(values), ffi.sizeof("int"), compare)
print("VAL qsort", *values)
print("DONE")
