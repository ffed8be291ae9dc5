"""Which processes the eBPF monitor selects, as its kernel maps key them:
cgroup v2 directories by id (their inode, what bpf_get_current_cgroup_id()
returns), and the running descendants of selected pids (their ancestry in
/proc; children forked later are added by the kernel side).
"""

from __future__ import annotations

import contextlib
import errno
import os
from pathlib import Path

from tracer.errors import CapabilityMissing, TrampwatchError
from tracer.sources import procfs


def cgroup2_mount() -> Path | None:
    """Return where the cgroup v2 hierarchy is mounted, or None."""
    with contextlib.suppress(OSError), open("/proc/self/mounts", encoding="utf-8") as mounts:
        for line in mounts:
            fields = line.split()
            if len(fields) > 2 and fields[2] == "cgroup2":
                return Path(fields[1])
    return None


def cgroup_id(spec: str) -> int:
    """Return the id of cgroup v2 directory `spec` (absolute, or relative to
    the cgroup2 mount) as bpf_get_current_cgroup_id() reports it: its inode.

    Raises CapabilityMissing without cgroup v2, TrampwatchError for a path
    that is not a cgroup v2 directory.
    """
    root = cgroup2_mount()
    if root is None:
        raise CapabilityMissing(
            "cgroup v2", "no cgroup2 file system is mounted", "mount -t cgroup2 none /sys/fs/cgroup"
        )
    path = Path(spec) if spec.startswith("/") else root / spec
    try:
        st, root_st = path.stat(), root.stat()
    except OSError as err:
        raise TrampwatchError(f"--cgroup {spec}: {path}: {os.strerror(err.errno or errno.EIO)}") from err
    if st.st_dev != root_st.st_dev or not path.is_dir():
        raise TrampwatchError(f"--cgroup {spec}: {path} is not a directory of the cgroup2 mount {root}")
    return st.st_ino


def descendants(pids: set[int]) -> set[int]:
    """Return the processes now running whose ancestry leads to one of `pids`."""
    parents: dict[int, int] = {}
    for pid in procfs.list_pids():
        with contextlib.suppress(OSError), open(f"/proc/{pid}/stat", "rb") as stat:
            # The comm field may hold spaces and parentheses: split after the last ')'.
            parents[pid] = int(stat.read().rsplit(b")", 1)[1].split()[1])
    found: set[int] = set()
    for pid in parents:
        seen, cur = [], pid
        while cur > 1 and cur not in pids and cur not in found and len(seen) < 4096:
            seen.append(cur)
            cur = parents.get(cur, 0)
        if cur in pids or cur in found:
            found.update(seen)
    return found
