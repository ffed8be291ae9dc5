"""trampwatch's caches against the program it traces (tracer/caches.py):
a traced program runs as the user and may write them, so whatever it
changed there is gone when the run ends. A forged compiled policy (the
default preset's, audit, under the strict preset's name and bytes) written
by a traced program must not make the next `run --policy strict` audit."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ProgramBuilder
from test_trampfd_support import ROOT, TRAMPWATCH

POISON = ROOT / "tests" / "programs" / "poison_policy_cache.py"


def _run(env: dict[str, str], *argv: str) -> subprocess.CompletedProcess:
    """`run --policy strict -- argv`, finished."""
    return subprocess.run([*TRAMPWATCH, "run", "--no-summary", "--policy", "strict", "--", *argv],
                          capture_output=True, text=True, timeout=300, env=env, cwd=ROOT)


def test_a_policy_forged_by_the_traced_program_is_not_loaded(build_program: ProgramBuilder,
                                                              tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "XDG_CACHE_HOME": str(tmp_path)}
    wx = str(build_program("wx_map"))
    first = _run(env, wx)
    assert "STEP wx_mmap mmap rc=-1 errno=EACCES" in first.stdout, first.stderr
    # The program forges the entry (natively it can: same user, same code).
    poison = _run(env, sys.executable, str(POISON))
    assert poison.stdout.startswith("POISONED"), poison.stderr
    entry = poison.stdout.split()[1]
    assert "removed 1 file(s) of trampwatch's caches" in poison.stderr and entry in poison.stderr
    assert not Path(entry).exists()
    again = _run(env, wx)
    assert "STEP wx_mmap mmap rc=-1 errno=EACCES" in again.stdout, again.stderr
    assert "RAN wx_call" not in again.stdout


def test_every_cache_file_the_traced_program_changes_is_removed(build_program: ProgramBuilder,
                                                                 tmp_path: Path) -> None:
    """The closure libraries and the fast path's (loaded into the tracer)
    too: overwritten, replaced by a symlink, or new, each goes; what the
    program left alone stays, and the next run builds what went."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "XDG_CACHE_HOME": str(tmp_path)}
    nested = str(build_program("closures_nested"))
    first = subprocess.run([*TRAMPWATCH, "run", "--no-summary", "--policy", "strict", "--closures=emulate",
                            "--", nested], capture_output=True, text=True, timeout=300, env=env, cwd=ROOT)
    assert first.returncode == 0, first.stderr
    library = next(tmp_path.rglob("libtrampwatch-fast-faults.so"))
    policy = next(tmp_path.rglob("*.json"))
    script = (f"printf junk > {library}; ln -sf /etc/passwd {policy}; "
              f"mkdir -p {tmp_path}/trampwatch/closures/new; : > {tmp_path}/trampwatch/closures/new/f")
    tamper = _run(env, "/bin/sh", "-c", script)
    assert tamper.returncode == 0 and "removed 3 file(s)" in tamper.stderr, tamper.stderr
    assert not library.exists() and not policy.is_symlink() and not policy.exists()
    again = subprocess.run([*TRAMPWATCH, "run", "--no-summary", "--policy", "strict", "--closures=emulate",
                            "--", nested], capture_output=True, text=True, timeout=300, env=env, cwd=ROOT)
    assert (again.returncode, again.stdout) == (0, first.stdout), again.stderr
    assert library.exists() and policy.exists() and "removed" not in again.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="making files of another user needs root (chown)")
@pytest.mark.parametrize("owned", ["library", "directory"])
def test_a_library_another_user_could_have_put_in_the_cache_is_not_loaded(
        build_program: ProgramBuilder, tmp_path: Path, owned: str) -> None:
    """The fast path's library is loaded into the tracer, and the closure
    library preloaded into the program: one that another user owns, or in
    a directory another user owns (XDG_CACHE_HOME pointing into another
    user's home, `sudo -E`), is not loaded: the Python path serves."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "XDG_CACHE_HOME": str(tmp_path)}
    nested = str(build_program("closures_nested"))
    argv = [*TRAMPWATCH, "run", "--no-summary", "--json", "-", "--policy", "strict", "--closures=emulate",
            "--", nested]
    first = subprocess.run(argv, capture_output=True, text=True, timeout=300, env=env, cwd=ROOT)
    assert first.returncode == 0 and '"invoke-fast": 0' not in first.stdout, first.stderr
    library = next(tmp_path.rglob("libtrampwatch-fast-faults.so"))
    os.chown(library if owned == "library" else library.parent, 65534, 65534)
    again = subprocess.run(argv, capture_output=True, text=True, timeout=300, env=env, cwd=ROOT)
    assert again.returncode == 0, again.stderr
    assert f"not loading {library}" in again.stderr and "slower Python path" in again.stderr
    assert '"invoke-fast": 0' in again.stdout
    ffi = str(build_program("closures_ffi_closures"))
    trampfd = [*TRAMPWATCH, "run", "--no-summary", "--policy", "strict", "--closures=trampfd", "--", ffi]
    built = subprocess.run(trampfd, capture_output=True, text=True, timeout=300, env=env, cwd=ROOT)
    assert built.returncode == 0, built.stderr
    preloaded = next(tmp_path.rglob("x86_64-linux-gnu/libtrampwatch-closures.so"), None)
    assert preloaded is not None, [str(p) for p in tmp_path.rglob("*.so")]
    os.chown(preloaded if owned == "library" else preloaded.parent, 65534, 65534)
    refused = subprocess.run(trampfd, capture_output=True, text=True, timeout=300, env=env, cwd=ROOT)
    assert refused.returncode != 0 and "not preloading" in refused.stderr, refused.stderr


def test_a_policy_forged_by_an_attached_process_is_removed(tmp_path: Path) -> None:
    """attach alike: what the traced process wrote while attached goes."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "XDG_CACHE_HOME": str(tmp_path)}
    script = f"import sys, time; sys.stdin.readline(); time.sleep(0.5); exec(open({str(POISON)!r}).read())"
    poisoner = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                text=True, env=env, cwd=ROOT)
    argv = [*TRAMPWATCH, "attach", "--no-summary", "--policy", "strict", str(poisoner.pid)]
    attach = subprocess.Popen(argv, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    assert attach.stderr is not None and "attached to pid" in attach.stderr.readline()
    out, _ = poisoner.communicate("go\n", timeout=60)
    stderr = attach.stderr.read()
    assert attach.wait(timeout=60) == 0, stderr
    assert out.startswith("POISONED"), out
    entry = out.split()[1]
    assert "removed 1 file(s) of trampwatch's caches" in stderr and not Path(entry).exists()


def test_a_file_named_like_a_preset_made_by_the_traced_program_is_refused(build_program: ProgramBuilder,
                                                                           tmp_path: Path) -> None:
    """A traced program that leaves a file `strict` (the default policy's
    text) in the working directory: the next `--policy strict` there fails
    loudly instead of taking the file for the preset; ./strict is the file."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "XDG_CACHE_HOME": str(tmp_path / "cache")}
    wx = str(build_program("wx_map"))
    argv = [*TRAMPWATCH, "run", "--no-summary", "--policy", "strict", "--"]
    made = subprocess.run([*argv, "/bin/cp", str(ROOT / "policies" / "default.yaml"), "strict"],
                          capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert made.returncode == 0 and (tmp_path / "strict").exists(), made.stderr
    again = subprocess.run([*argv, wx], capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert again.returncode != 0 and "both a file here and a preset" in again.stderr, again.stderr
    assert "RAN wx_call" not in again.stdout and "STEP" not in again.stdout
    path = subprocess.run([*TRAMPWATCH, "run", "--no-summary", "--policy", "./strict", "--", wx],
                          capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert "RAN wx_call" in path.stdout, path.stderr


def test_a_policy_forged_during_a_run_is_not_loaded_by_a_concurrent_run(build_program: ProgramBuilder,
                                                                         tmp_path: Path) -> None:
    """Run A's tree forges strict's entry and stays alive; run B, started
    then with --policy strict, must still refuse wx_map's W+X mmap: no run
    reads the cache while another is live on it (tracer/runs.py)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "XDG_CACHE_HOME": str(tmp_path)}
    wx = str(build_program("wx_map"))
    first = _run(env, wx)  # the genuine entry, as a user's earlier run leaves it
    assert "STEP wx_mmap mmap rc=-1 errno=EACCES" in first.stdout, first.stderr
    flag = tmp_path / "go"
    script = f"{sys.executable} {POISON} && while [ ! -e {flag} ]; do sleep 0.1; done"
    argv = [*TRAMPWATCH, "run", "--no-summary", "--policy", "strict", "--", "/bin/sh", "-c", script]
    forger = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                              cwd=ROOT)
    try:
        assert forger.stdout is not None
        line = forger.stdout.readline()
        assert line.startswith("POISONED"), line
        concurrent = _run(env, wx)
    finally:
        flag.touch()
        forger.communicate(timeout=120)
    assert "RAN wx_call" not in concurrent.stdout, concurrent.stderr
    assert "STEP wx_mmap mmap rc=-1 errno=EACCES" in concurrent.stdout, concurrent.stderr


def _concurrent(env: dict[str, str], script: str, flag: Path) -> subprocess.Popen:
    """A run whose tree runs `script`, prints READY, and waits for `flag`."""
    argv = [*TRAMPWATCH, "run", "--no-summary", "--policy", "strict", "--", "/bin/sh", "-c",
            f"{script} && echo READY && while [ ! -e {flag} ]; do sleep 0.1; done"]
    live = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            cwd=ROOT)
    assert live.stdout is not None
    line = live.stdout.readline()
    assert line == "READY\n", (line, live.stderr.read() if live.poll() is not None and live.stderr else "")
    return live


def test_libraries_written_during_a_run_are_not_loaded_by_a_concurrent_run(build_program: ProgramBuilder,
                                                                            tmp_path: Path) -> None:
    """Run A's tree replaces the cached fast path (loaded into the tracer)
    and the closure library (preloaded into the program) and stays alive:
    run B, started then, builds its own in a private directory and loads
    neither; A's sweep then removes both."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "XDG_CACHE_HOME": str(tmp_path)}
    nested = str(build_program("closures_nested"))
    ffi = str(build_program("closures_ffi_closures"))
    emulate = [*TRAMPWATCH, "run", "--no-summary", "--json", "-", "--policy", "strict", "--closures=emulate",
               "--", nested]
    trampfd = [*TRAMPWATCH, "run", "--no-summary", "--policy", "strict", "--closures=trampfd", "--", ffi]
    first = subprocess.run(emulate, capture_output=True, text=True, timeout=300, env=env, cwd=ROOT)
    assert first.returncode == 0 and '"invoke-fast": 0' not in first.stdout, first.stderr
    built = subprocess.run(trampfd, capture_output=True, text=True, timeout=300, env=env, cwd=ROOT)
    assert built.returncode == 0, built.stderr
    fast = next(tmp_path.rglob("libtrampwatch-fast-faults.so"))
    preload = next(tmp_path.rglob("x86_64-linux-gnu/libtrampwatch-closures.so"))
    flag = tmp_path / "go"
    live = _concurrent(env, f"printf junk > {fast} && printf junk > {preload}", flag)
    try:
        during = subprocess.run(emulate, capture_output=True, text=True, timeout=300, env=env, cwd=ROOT)
        during_trampfd = subprocess.run(trampfd, capture_output=True, text=True, timeout=300, env=env,
                                        cwd=ROOT)
    finally:
        flag.touch()
        _, stderr = live.communicate(timeout=120)
    assert during.returncode == 0 and "cannot load" not in during.stderr, during.stderr
    assert '"invoke-fast": 0' not in during.stdout, during.stderr
    assert (during_trampfd.returncode, during_trampfd.stdout) == (0, built.stdout), during_trampfd.stderr
    assert "cannot be preloaded" not in during_trampfd.stderr, during_trampfd.stderr
    assert "removed 2 file(s)" in stderr and not fast.exists() and not preload.exists(), stderr


def test_a_killed_tracers_leftovers_are_emptied_by_the_next_run(build_program: ProgramBuilder,
                                                                 tmp_path: Path) -> None:
    """A tree that forges strict's entry and then kills its tracer (no sweep:
    the tree dies with it, PTRACE_O_EXITKILL) leaves the run's marker: the
    next run empties the cache and refuses wx_map's W+X mmap."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "XDG_CACHE_HOME": str(tmp_path)}
    wx = str(build_program("wx_map"))
    first = _run(env, wx)
    assert "STEP wx_mmap mmap rc=-1 errno=EACCES" in first.stdout, first.stderr
    killed = _run(env, "/bin/sh", "-c", f"{sys.executable} {POISON} && kill -9 $PPID && sleep 60")
    assert killed.returncode == -9 and killed.stdout.startswith("POISONED"), killed.stderr
    entry = Path(killed.stdout.split()[1])
    assert entry.exists() and "removed" not in killed.stderr
    again = _run(env, wx)
    assert f"emptied {entry.parent}" in again.stderr, again.stderr
    assert "STEP wx_mmap mmap rc=-1 errno=EACCES" in again.stdout, again.stderr
    assert "RAN wx_call" not in again.stdout
    # A run that ends leaves no marker behind.
    assert [p for p in tmp_path.rglob(".runs/*")] == []


def test_the_fast_path_is_mapped_from_a_sealed_copy_not_the_cache(tmp_path: Path) -> None:
    """The tracer maps the fast path's library from a memfd: rewriting the
    cached file in place (as a traced program may) changes nothing the
    tracer runs, and the copy itself cannot be written (sealed)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "XDG_CACHE_HOME": str(tmp_path)}
    flag = tmp_path / "go"
    argv = [*TRAMPWATCH, "run", "--no-summary", "--policy", "strict", "--closures=emulate", "--", "/bin/sh",
            "-c", f"echo READY && while [ ! -e {flag} ]; do sleep 0.1; done"]
    live = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            cwd=ROOT)
    try:
        assert live.stdout is not None and live.stdout.readline() == "READY\n"
        maps = Path(f"/proc/{live.pid}/maps").read_text().splitlines()
        library = next(tmp_path.rglob("libtrampwatch-fast-faults.so"))
        assert not [line for line in maps if line.endswith(str(library))]
        mapped = [line for line in maps if "/memfd:libtrampwatch-fast-faults.so" in line]
        assert mapped, maps
        if os.geteuid() == 0:  # map_files needs CAP_SYS_ADMIN
            area = mapped[0].split()[0]
            fd = os.open(f"/proc/{live.pid}/map_files/{area}", os.O_WRONLY)
            try:
                with pytest.raises(PermissionError):
                    os.write(fd, b"junk")
            finally:
                os.close(fd)
    finally:
        flag.touch()
        live.communicate(timeout=120)
    assert live.returncode == 0
