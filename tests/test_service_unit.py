"""The systemd unit in scripts/ is one systemd accepts, wired to this checkout."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
UNIT = ROOT / "scripts" / "trampwatch-monitor.service"


def test_systemd_accepts_the_unit(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed: no systemd to check the unit against")
    text = UNIT.read_text()
    assert "ExecReload=/bin/kill -HUP $MAINPID" in text and "--select-file /etc/trampwatch/watch" in text
    unit = tmp_path / UNIT.name
    unit.write_text(text.replace("/usr/local/bin/trampwatch", str(ROOT / ".venv" / "bin" / "trampwatch")))
    done = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stderr == "", done.stderr
