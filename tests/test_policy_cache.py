"""Compiled policies on disk (tracer/policy/cache.py): a file loaded before
comes from the cache without the YAML parser; changed text, changed code,
an entry someone else could write, or one for other bytes is never used.
Entries are JSON validated again by the schema (nothing in them is run),
and no process reads or writes the cache while a trampwatch run other
than its own is live on it, or a killed run's leftovers wait there
(tracer/runs.py)."""

from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tracer.errors import PolicyError
from tracer.policy import cache
from tracer.policy.loader import _load, load_policy_file, resolve_policy

POLICY = """\
apiVersion: trampwatch.dev/v1
kind: WXPolicy
metadata: {{name: {name}}}
spec:
  defaultAction: allow
  rules:
    - {{name: no-w-to-x, match: {{category: w-to-x}}, action: {action}}}
"""


@pytest.fixture
def cache_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache" / "trampwatch" / "policies"


def write_policy(path: Path, name: str = "one", action: str = "deny") -> Path:
    path.write_text(POLICY.format(name=name, action=action))
    return path


def entries(directory: Path) -> list[Path]:
    return sorted(p for p in directory.iterdir() if p.suffix == ".json") if directory.is_dir() else []


def test_a_loaded_file_is_kept_and_the_copy_equals_the_parse(tmp_path: Path, cache_home: Path) -> None:
    path = write_policy(tmp_path / "p.yaml")
    first = load_policy_file(path)
    assert len(entries(cache_home)) == 1
    assert cache.lookup(str(path), path.read_bytes()) == first
    assert load_policy_file(path) == first
    assert oct(cache_home.stat().st_mode & 0o777) == "0o700"


def test_changed_text_is_parsed_again(tmp_path: Path, cache_home: Path) -> None:
    path = write_policy(tmp_path / "p.yaml", action="deny")
    assert load_policy_file(path).rules[0].action == "deny"
    write_policy(path, action="log")
    assert load_policy_file(path).rules[0].action == "log"
    assert cache.lookup(str(path), path.read_bytes()).rules[0].action == "log"


def test_an_entry_for_other_bytes_is_not_used(tmp_path: Path, cache_home: Path) -> None:
    path = write_policy(tmp_path / "p.yaml")
    load_policy_file(path)
    assert cache.lookup(str(path), path.read_bytes() + b"\n# changed\n") is None
    assert cache.lookup(str(tmp_path / "other.yaml"), path.read_bytes()) is None


def test_an_entry_of_other_code_is_not_used(tmp_path: Path, cache_home: Path) -> None:
    path = write_policy(tmp_path / "p.yaml")
    policy = load_policy_file(path)
    (entry,) = entries(cache_home)
    kept = json.loads(entry.read_text())
    entry.write_text(json.dumps({**kept, "stamp": [["model.py", 1, 2]]}))
    assert cache.lookup(str(path), path.read_bytes()) is None
    assert load_policy_file(path) == policy  # parsed again, and kept again
    assert cache.lookup(str(path), path.read_bytes()) == policy


def test_an_entry_others_could_write_is_not_used(tmp_path: Path, cache_home: Path) -> None:
    """A forged entry (a policy that allows everything, for the text of one
    that denies) is used only if it is ours alone: group-writable, it is not."""
    path = write_policy(tmp_path / "p.yaml", action="deny")
    load_policy_file(path)
    (entry,) = entries(cache_home)
    _, allowing = _load(POLICY.format(name="one", action="log"), str(path))
    entry.write_text(json.dumps({**json.loads(entry.read_text()), "tree": cache._encode(allowing)}))
    os.chmod(entry, 0o664)
    assert cache.lookup(str(path), path.read_bytes()) is None
    os.chmod(entry, 0o600)
    os.chmod(cache_home, 0o777)
    assert cache.lookup(str(path), path.read_bytes()) is None
    os.chmod(cache_home, 0o700)
    # Ours alone, the entry is trusted: this is what the checks above refused.
    assert cache.lookup(str(path), path.read_bytes()).rules[0].action == "log"


def test_a_damaged_entry_is_a_miss(tmp_path: Path, cache_home: Path) -> None:
    path = write_policy(tmp_path / "p.yaml")
    policy = load_policy_file(path)
    (entry,) = entries(cache_home)
    entry.write_bytes(b"not a pickle")
    assert load_policy_file(path) == policy


def test_a_policy_with_errors_is_never_kept(tmp_path: Path, cache_home: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(POLICY.format(name="bad", action="explode"))
    for _ in range(2):
        with pytest.raises(PolicyError):
            load_policy_file(path)
    assert entries(cache_home) == []


def test_an_unwritable_cache_is_no_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))
    assert resolve_policy("strict").name


def test_a_cached_preset_loads_without_the_yaml_parser(tmp_path: Path) -> None:
    """The point of the cache: a run with a policy it has seen imports no
    YAML parser (the schema still validates what the entry holds)."""
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path)}
    probe = ("import sys; from tracer.policy.loader import resolve_policy; p = resolve_policy('default'); "
             "names = ('yaml', 'tracer.policy.schema', 'tracer.policy.nodes'); "
             "print(p.source, *(name in sys.modules for name in names))")
    first = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True)
    assert first.stdout.split() == ["default", "True", "True", "True"]
    again = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True)
    # The schema validates the kept tree again: only the parser is spared.
    assert again.stdout.split() == ["default", "False", "True", "True"]


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a policy file to another user needs root (chown)")
def test_a_policy_file_of_another_user_is_never_cached(tmp_path: Path, cache_home: Path) -> None:
    """A file the user cannot write (a root-owned preset, for one) must not
    become one the user can: its compiled form is not kept, nor read."""
    path = write_policy(tmp_path / "p.yaml")
    os.chown(path, 65534, 65534)
    load_policy_file(path)
    assert entries(cache_home) == []
    _, forged = _load(POLICY.format(name="forged", action="deny"), str(path))
    cache.remember(str(path), path.read_bytes(), forged)
    assert len(entries(cache_home)) == 1
    assert load_policy_file(path).name == "one"


def test_an_entry_the_schema_refuses_is_a_miss(tmp_path: Path, cache_home: Path) -> None:
    """A kept tree is validated again: one naming an unknown category (as
    no text that loaded could) is not used; the text is parsed again."""
    path = write_policy(tmp_path / "p.yaml")
    policy = load_policy_file(path)
    (entry,) = entries(cache_home)
    text = entry.read_text()
    assert '"w-to-x"' in text
    entry.write_text(text.replace('"w-to-x"', '"wx_map"'))
    assert cache.lookup(str(path), path.read_bytes()) is None
    assert load_policy_file(path) == policy


def test_an_entry_that_is_a_pickle_runs_nothing(tmp_path: Path, cache_home: Path) -> None:
    """What an old (pickle) entry, or a forged one, would run on loading is
    never run: the entry is a miss."""
    path = write_policy(tmp_path / "p.yaml")
    policy = load_policy_file(path)
    (entry,) = entries(cache_home)
    ran = tmp_path / "ran"

    class Payload:
        def __reduce__(self) -> tuple:
            return (os.system, (f"touch {ran}",))

    entry.write_bytes(pickle.dumps(Payload()))
    assert cache.lookup(str(path), path.read_bytes()) is None
    assert load_policy_file(path) == policy
    assert not ran.exists()


REGISTERED = ("import sys; from pathlib import Path; from tracer import runs; "
              "r = runs.register((Path(sys.argv[1]),)); print('live', flush=True); sys.stdin.readline(); "
              "r.close()")


def _live_run(directory: Path) -> subprocess.Popen:
    """Another process registered as a run on `directory` until its stdin closes."""
    proc = subprocess.Popen([sys.executable, "-c", REGISTERED, str(directory)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline() == "live\n"
    return proc


def test_no_entry_is_read_or_written_while_another_run_is_live(tmp_path: Path, cache_home: Path) -> None:
    """Its traced program may be writing the cache: while its name is bound,
    every lookup is a miss and nothing is kept; once it ended, the cache
    serves again."""
    path = write_policy(tmp_path / "p.yaml")
    policy = load_policy_file(path)
    other = write_policy(tmp_path / "other.yaml", name="other")
    live = _live_run(cache_home)
    try:
        assert cache.lookup(str(path), path.read_bytes()) is None
        assert load_policy_file(other).name == "other"
        assert [e.name for e in entries(cache_home)] == [cache._entry_path(str(path)).name]
    finally:
        live.communicate("")
    assert cache.lookup(str(path), path.read_bytes()) == policy
    load_policy_file(other)
    assert len(entries(cache_home)) == 2


def test_a_killed_runs_leftovers_are_emptied_by_the_next_run(tmp_path: Path, cache_home: Path) -> None:
    """A run killed before its sweep leaves its marker: the cache is not
    read while it is there, and the next run alone on the directory empties
    it (entries, scratch files, directories)."""
    from tracer import runs

    path = write_policy(tmp_path / "p.yaml")
    load_policy_file(path)
    live = _live_run(cache_home)
    (marker,) = (cache_home / runs.MARKERS).iterdir()
    os.kill(live.pid, signal.SIGKILL)
    live.wait()
    (cache_home / "leftover.json.123").write_text("{}")
    assert marker.exists() and cache.lookup(str(path), path.read_bytes()) is None
    registry = runs.register((cache_home,))
    try:
        assert registry.emptied == [cache_home]
        assert sorted(p.name for p in cache_home.iterdir()) == [runs.MARKERS]
        assert [p.name for p in (cache_home / runs.MARKERS).iterdir()] == [registry.token]
        load_policy_file(path)
        assert cache.lookup(str(path), path.read_bytes()) is not None
    finally:
        registry.close()
    assert list((cache_home / runs.MARKERS).iterdir()) == []
