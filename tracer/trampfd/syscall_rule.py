"""Telling trampfd v1, v2 and a real process_madvise apart.

On current kernels the RFC's number 440 is process_madvise(pidfd, iovec,
vlen, advice, flags). The rule, in order:

1. the first argument is a pidfd open in the caller: a real process_madvise,
   passed to the kernel untouched (only checked when the trampfd number is
   process_madvise's);
2. the first argument is below 65536 (the lowest address user memory can
   have, vm.mmap_min_addr's default) or not a user-space address: v1,
   trampfd_create(type, data, flags);
3. otherwise it is a pointer: v2, trampfd(&info).

A call that fails rule 1 is one a kernel would refuse with EBADF, so no
working process_madvise is ever served as trampfd. Only the arguments each
version defines are read: glibc's syscall() passes whatever its caller's
registers held in the others.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

POINTER_FLOOR = 1 << 16
USER_SPACE_END = 1 << 47
_FD_LIMIT = 1 << 31

PROCESS_MADVISE = "process_madvise"
V1 = "v1"
V2 = "v2"


def tell_apart(args: Sequence[int], shares_process_madvise: bool, is_pidfd: Callable[[int], bool]) -> str:
    """Return PROCESS_MADVISE, V1 or V2 for a call with these raw arguments;
    `is_pidfd(fd)` says whether descriptor fd of the caller is a pidfd."""
    first = args[0]
    if shares_process_madvise and first < _FD_LIMIT and is_pidfd(first):
        return PROCESS_MADVISE
    if first < POINTER_FLOOR or first >= USER_SPACE_END:
        return V1
    return V2
