"""The monitor's selection file: what it accepts and how it refuses the rest."""

from __future__ import annotations

from pathlib import Path

import pytest

from tracer.errors import TrampwatchError
from tracer.sources.selection import Selection, read_selection


def test_selectors_comments_and_blank_lines(tmp_path: Path) -> None:
    path = tmp_path / "watch"
    path.write_text("# what to watch\n\npid 1\ncomm node   # the JIT\ncomm java\ncgroup /sys/fs/cgroup/x\n")
    assert read_selection(path) == Selection((1,), ("node", "java"), ("/sys/fs/cgroup/x",))


def test_every_bad_line_is_named_at_once(tmp_path: Path) -> None:
    path = tmp_path / "watch"
    path.write_text("pid one\nprocess node\ncomm\npid 0\ncomm fine\n")
    with pytest.raises(TrampwatchError) as caught:
        read_selection(path)
    lines = str(caught.value).splitlines()
    assert lines == [
        f"{path}:1: pid wants a positive number, not 'one'",
        f"{path}:2: unknown selector 'process' (one of: pid, comm, cgroup)",
        f"{path}:3: comm needs a value",
        f"{path}:4: pid wants a positive number, not '0'",
    ]


def test_an_unreadable_file_says_why(tmp_path: Path) -> None:
    with pytest.raises(TrampwatchError, match="No such file or directory"):
        read_selection(tmp_path / "missing")
    binary = tmp_path / "binary"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(TrampwatchError, match="not text"):
        read_selection(binary)


def test_union_keeps_each_entry_once_and_describes_itself() -> None:
    merged = Selection((1,), ("node",)) | Selection((1, 2), ("java", "node"), ("/c",))
    assert merged == Selection((1, 2), ("node", "java"), ("/c",))
    assert merged.describe() == "pid 1, 2; comm node, java; cgroup /c"
    assert Selection().describe() == "every process"
