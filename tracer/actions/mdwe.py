"""The kernel's own W^X: PR_SET_MDWE, applied to the traced child before exec
(`run --kernel-mdwe`), as defense in depth behind the tracer's policy."""

from __future__ import annotations

import ctypes
import os

from ..abi import PR_GET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN, PR_SET_MDWE
from ..errors import CapabilityMissing

_libc = ctypes.CDLL(None, use_errno=True)
_libc.prctl.argtypes = (ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong)
_libc.prctl.restype = ctypes.c_int


def apply_kernel_mdwe() -> None:
    """Turn on PR_MDWE_REFUSE_EXEC_GAIN for the calling process (inherited by
    its children and across exec). Raises CapabilityMissing when the kernel
    has no MDWE (before Linux 6.3)."""
    if _libc.prctl(PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN, 0, 0, 0) != 0:
        err = ctypes.get_errno()
        raise CapabilityMissing("PR_SET_MDWE", os.strerror(err), "a kernel of version 6.3 or later")


def kernel_mdwe_flags() -> int:
    """Return the calling process's MDWE flags (0: off)."""
    flags = _libc.prctl(PR_GET_MDWE, 0, 0, 0, 0)
    return max(flags, 0)
