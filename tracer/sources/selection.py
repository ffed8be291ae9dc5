"""Which processes `trampwatch monitor` watches, as written in a selection
file: one selector per line, so an operator can change what a running
monitor watches (edit the file, send SIGHUP) without restarting it.

    # comments and blank lines are ignored
    pid 1234            a process and its descendants
    comm node           processes with this name
    cgroup /sys/fs/cgroup/system.slice/app.service
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from tracer.errors import TrampwatchError

SELECTORS = ("pid", "comm", "cgroup")


@dataclass(frozen=True)
class Selection:
    """Pids, comms and cgroup directories to watch; an empty kind selects
    every process as far as that kind goes."""

    pids: tuple[int, ...] = ()
    comms: tuple[str, ...] = ()
    cgroups: tuple[str, ...] = ()

    def __or__(self, other: Selection) -> Selection:
        """Both selections' entries, each once, in first-seen order."""
        return Selection(
            tuple(dict.fromkeys(self.pids + other.pids)),
            tuple(dict.fromkeys(self.comms + other.comms)),
            tuple(dict.fromkeys(self.cgroups + other.cgroups)),
        )

    def describe(self) -> str:
        """A short human description ('every process' when empty)."""
        parts = [f"{kind} {', '.join(map(str, values))}"
                 for kind, values in (("pid", self.pids), ("comm", self.comms), ("cgroup", self.cgroups))
                 if values]
        return "; ".join(parts) or "every process"


def read_selection(path: Path) -> Selection:
    """Parse a selection file. Raises TrampwatchError naming the file and
    line of every bad entry (all of them at once), or why it cannot be read."""
    try:
        text = path.read_text()
    except OSError as err:
        raise TrampwatchError(f"selection file {path}: {os.strerror(err.errno or 0)}") from err
    except UnicodeDecodeError as err:
        raise TrampwatchError(f"selection file {path}: not text ({err.reason})") from err
    pids: list[int] = []
    comms: list[str] = []
    cgroups: list[str] = []
    problems: list[str] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        kind, _, value = line.partition(" ")
        value = value.strip()
        where = f"{path}:{number}"
        if kind not in SELECTORS:
            problems.append(f"{where}: unknown selector {kind!r} (one of: {', '.join(SELECTORS)})")
        elif not value:
            problems.append(f"{where}: {kind} needs a value")
        elif kind == "pid":
            if value.isdigit() and int(value) > 0:
                pids.append(int(value))
            else:
                problems.append(f"{where}: pid wants a positive number, not {value!r}")
        elif kind == "comm":
            comms.append(value)
        else:
            cgroups.append(value)
    if problems:
        raise TrampwatchError("\n".join(problems))
    return Selection(tuple(pids), tuple(comms), tuple(cgroups))
