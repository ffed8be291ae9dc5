"""The built wheel works where it is installed: a fresh venv without the
system's site packages gets the wheel and its PyPI dependencies, and the
commands run from there, with the presets, BPF C and headers the wheel
carries. With PyPI packages alone, `--help`, `scan`, `inspect` and `policy`
work and `run`/`monitor` say in one line what is missing; with Debian's
libseccomp binding added (the one thing PyPI does not have), `run` works."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

import tracer

ROOT = Path(__file__).resolve().parent.parent
# Building and installing a wheel under load takes minutes: more than the default timeout.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]


def _run(argv: list[str], **kwargs) -> subprocess.CompletedProcess:
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "PYTHONHOME")}
    return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=600, **kwargs)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel, built from a copy of the tree (the build leaves files behind)."""
    tmp = tmp_path_factory.mktemp("wheel")
    tree = tmp / "tree"
    shutil.copytree(ROOT, tree, symlinks=True, ignore=shutil.ignore_patterns(
        ".venv", ".git", "bin", "__pycache__", "*.egg-info", "build", ".*_cache"))
    built = _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp),
                  str(tree)])
    assert built.returncode == 0, built.stdout + built.stderr
    (found,) = tmp.glob("trampwatch-*.whl")
    return found


@pytest.fixture(scope="module")
def venv(wheel, tmp_path_factory) -> Path:
    """A fresh venv, no system site packages, with the wheel installed and its
    dependencies from the package index."""
    where = tmp_path_factory.mktemp("venv") / "venv"
    made = _run([sys.executable, "-m", "venv", str(where)])
    assert made.returncode == 0, made.stderr
    installed = _run([str(where / "bin" / "pip"), "install", "--disable-pip-version-check", str(wheel)])
    assert installed.returncode == 0, installed.stdout + installed.stderr
    return where


def test_the_wheel_carries_presets_bpf_c_headers_and_closure_sources(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    presets = {Path(n).name for n in names if n.startswith("tracer/presets/")}
    assert presets == {p.name for p in (ROOT / "policies").glob("*.yaml")}
    assert {"tracer/bpf/wx_monitor.bpf.c", "tracer/bpf/wx_record.h", "tracer/include/trampfd.h",
            "tracer/closures/ffi_closures.c"} <= names
    metadata = next(n for n in names if n.endswith(".dist-info/METADATA"))
    text = zipfile.ZipFile(wheel).read(metadata).decode()
    assert f"Version: {tracer.__version__}" in text
    assert "License: Apache-2.0" in text and "Classifier: Operating System :: POSIX :: Linux" in text
    assert "Author: trampwatch developers" in text


def test_pypi_packages_alone_run_the_commands_that_need_no_debian_module(venv, build_program):
    tw = str(venv / "bin" / "trampwatch")
    python = str(venv / "bin" / "python")
    # The venv sees only what it installed: no Debian module can hide a missing dependency.
    probe = _run([python, "-c", "import importlib.util as u; print(u.find_spec('seccomp'), "
                   "u.find_spec('bcc'))"])
    assert probe.stdout.split() == ["None", "None"], probe
    lazy = _run([python, "-c", "import sys, tracer.cli; "
                 "print(sorted({'seccomp', 'bcc'} & set(sys.modules)))"])
    assert lazy.stdout.strip() == "[]", lazy.stderr

    assert _run([tw, "--help"]).returncode == 0
    version = _run([tw, "--version"])
    assert version.returncode == 0 and tracer.__version__ in version.stdout
    listed = _run([tw, "policy", "list"])
    assert listed.returncode == 0
    assert [line.split()[0] for line in listed.stdout.splitlines()] == sorted(
        p.stem for p in (ROOT / "policies").glob("*.yaml"))
    checked = _run([tw, "policy", "check", str(ROOT / "policies" / "strict.yaml")])
    assert checked.returncode == 0, checked.stderr
    scanned = _run([tw, "scan", str(build_program("execstack"))])
    assert scanned.returncode == 0 and "categories=execstack" in scanned.stdout, scanned
    inspected = _run([tw, "inspect", str(os.getpid())])
    assert inspected.returncode == 0 and f"pid {os.getpid()}" in inspected.stdout, inspected

    needs = ((["run", "--", "true"], "python3-seccomp"), (["monitor", "--duration", "1"], "bcc"))
    for argv, missing in needs:
        refused = _run([tw, *argv])
        assert refused.returncode == 1, refused
        lines = refused.stderr.splitlines()
        assert len(lines) == 1 and missing in lines[0] and "apt-get install" in lines[0], refused.stderr


def test_run_works_once_the_debian_seccomp_binding_is_added(venv, build_program, tmp_path):
    import seccomp

    python = str(venv / "bin" / "python")
    where = _run([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"])
    site = Path(where.stdout.strip())
    (site / Path(seccomp.__file__).name).symlink_to(seccomp.__file__)
    assert sysconfig.get_path("purelib") != str(site)
    tw = str(venv / "bin" / "trampwatch")
    done = _run([tw, "run", "--json", str(tmp_path / "e.jsonl"), "--", "true"])
    assert done.returncode == 0, done.stderr
    assert "trampwatch summary" in done.stderr
    logged = _run([tw, "run", "--no-summary", "--", str(build_program("wx_map"))])
    assert logged.returncode == 0 and "rule=log-wx" in logged.stderr, logged.stderr
