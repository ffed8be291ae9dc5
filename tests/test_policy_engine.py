"""The decision engine: ordering, the default, every match key, errno and tags."""

from __future__ import annotations

import errno
import textwrap

import pytest

from tracer.categories import Category
from tracer.policy import Action, Decision, Facts, Policy, decide, load_policy_text

LIBFFI = "/usr/lib/x86_64-linux-gnu/libffi.so.8.1.4"

# An anonymous RWX mmap from libffi in a python3 process: wx-map + anon-exec.
BASE = Facts(
    categories=(Category.WX_MAP, Category.ANON_EXEC),
    syscall="mmap",
    exe="/usr/bin/python3.13",
    comm="python3",
    uid=1000,
    backing_kind="anon",
    object_path=None,
    caller_object=LIBFFI,
    prot=frozenset({"read", "write", "exec"}),
    gained=frozenset({"read", "write", "exec"}),
    new_mapping=True,
)


def policy(rules: str, default: str = "allow") -> Policy:
    text = (
        "apiVersion: trampwatch.dev/v1\nkind: WXPolicy\nmetadata: {name: t}\n"
        f"spec:\n  defaultAction: {default}\n  rules:\n" + textwrap.indent(textwrap.dedent(rules), "    ")
    )
    return load_policy_text(text, "engine.yaml")


def test_events_in_no_category_are_judged_only_by_protection_rules() -> None:
    deny_all = policy("- {name: everything, match: {}, action: kill}", default="deny")
    assert decide(deny_all, BASE._replace(categories=())) == Decision(Action.ALLOW, None, None, ())
    assert decide(deny_all, BASE).action == Action.KILL
    gains = policy("- {name: exec-gain, match: {gains: [exec]}, action: deny}", default="kill")
    uncategorised = BASE._replace(categories=(), gained=frozenset({"exec"}))
    assert decide(gains, uncategorised) == Decision(Action.DENY, "exec-gain", errno.EACCES, ())
    assert decide(gains, uncategorised._replace(gained=frozenset())) == Decision(Action.ALLOW, None, None, ())


def test_first_matching_rule_in_file_order_wins() -> None:
    p = policy(
        """\
        - {name: first, match: {category: anon-exec}, action: log}
        - {name: second, match: {category: wx-map}, action: deny}
        """
    )
    assert decide(p, BASE) == Decision(Action.LOG, "first", None, ())
    assert decide(p, BASE._replace(categories=(Category.WX_MAP,))).rule == "second"


def test_higher_priority_is_evaluated_first() -> None:
    p = policy(
        """\
        - {name: first, match: {category: anon-exec}, action: log}
        - {name: urgent, match: {category: wx-map}, action: kill, priority: 5}
        - {name: never-first, match: {category: wx-map}, action: allow, priority: -1}
        """
    )
    assert [r.name for r in p.rules] == ["urgent", "first", "never-first"]
    assert decide(p, BASE).rule == "urgent"


def test_the_default_action_applies_when_no_rule_matches() -> None:
    p = policy("- {name: stack, match: {category: execstack}, action: kill}", default="deny")
    assert decide(p, BASE) == Decision(Action.DENY, None, errno.EACCES, ())
    logging = policy("- {name: stack, match: {category: execstack}, action: kill}", default="log")
    assert decide(logging, BASE) == Decision(Action.LOG, None, None, ())


def test_deny_carries_its_errno_and_tags() -> None:
    p = policy(
        """\
        - {name: plain, match: {syscall: mprotect}, action: deny, tags: [a, b]}
        - {name: named, match: {syscall: mmap}, action: deny, errno: EPERM}
        """
    )
    assert decide(p, BASE._replace(syscall="mprotect")) == Decision(
        Action.DENY, "plain", errno.EACCES, ("a", "b")
    )
    assert decide(p, BASE) == Decision(Action.DENY, "named", errno.EPERM, ())


# Each key: its match, facts it must match (changes to BASE), facts it must not.
KEY_CASES = [
    ("{category: [execstack, wx-map]}", {}, {"categories": (Category.EXECMOD, Category.ANON_EXEC)}),
    (
        "{category: [execstack, wx-map]}",
        {"categories": (Category.ANON_EXEC, Category.EXECSTACK)},
        {"categories": (Category.ANON_EXEC,)},
    ),
    ("{category: execmod}", {"categories": (Category.EXECMOD,)}, {}),
    ("{exe: '*/python3*'}", {}, {"exe": "/usr/bin/node"}),
    ("{exe: ['*/node', '/usr/bin/python3.1[0-9]']}", {}, {"exe": "/usr/bin/python3.9"}),
    ("{exe: /usr/bin/python3.13}", {}, {"exe": "/usr/local/bin/python3.13"}),
    ("{comm: 'py*'}", {}, {"comm": "Python3"}),
    ("{uid: 1000}", {}, {"uid": 0}),
    ("{uid: [0, 1000]}", {"uid": 0}, {"uid": 1001}),
    ("{syscall: [mmap, mmap2]}", {"syscall": "mmap2"}, {"syscall": "mremap"}),
    ("{syscall: exec}", {"syscall": "exec"}, {}),
    ("{backing: [memfd, shm]}", {"backing_kind": "shm"}, {}),
    ("{object: '/memfd:libffi*'}", {"object_path": "/memfd:libffi (deleted)"}, {"object_path": "/tmp/x"}),
    ("{object: '*'}", {"object_path": "/x"}, {}),
    ("{caller: 'libffi.so*'}", {}, {"caller_object": "/usr/lib/libc.so.6"}),
    ("{caller: '/usr/lib/*/libffi.so.8*'}", {}, {"caller_object": "libffi.so.8"}),
    ("{caller: '*'}", {}, {"caller_object": None}),
    ("{prot: [write, exec]}", {}, {"prot": frozenset({"read", "exec"})}),
    ("{prot: exec}", {"prot": frozenset({"exec"})}, {"prot": frozenset({"read", "write"})}),
    ("{gains: exec}", {"gained": frozenset({"exec"})}, {"gained": frozenset({"read", "write"})}),
    ("{gains: [write, exec]}", {}, {"gained": frozenset({"exec"})}),
    ("{new_mapping: true}", {}, {"new_mapping": False}),
    ("{new_mapping: false}", {"new_mapping": False}, {}),
    ("{prot: [read, exec], backing: anon, uid: 1000}", {}, {"uid": 7}),
]


@pytest.mark.parametrize(("match", "hit", "miss"), KEY_CASES)
def test_every_match_key(match: str, hit: dict, miss: dict) -> None:
    p = policy(f"- {{name: r, match: {match}, action: deny}}")
    assert decide(p, BASE._replace(**hit)).rule == "r"
    assert decide(p, BASE._replace(**miss)).rule is None


def test_conditions_are_anded() -> None:
    p = policy("- {name: r, match: {category: wx-map, exe: '*/node', uid: 0}, action: deny}")
    node_root = BASE._replace(exe="/usr/bin/node", uid=0)
    assert decide(p, node_root).rule == "r"
    for change in ({"exe": "/usr/bin/java"}, {"uid": 1}, {"categories": (Category.ANON_EXEC,)}):
        assert decide(p, node_root._replace(**change)).rule is None


def test_globs_are_case_sensitive_and_cross_slashes() -> None:
    p = policy("- {name: r, match: {exe: '/usr/*/node'}, action: deny}")
    assert decide(p, BASE._replace(exe="/usr/local/bin/node")).rule == "r"
    assert decide(p, BASE._replace(exe="/usr/local/bin/Node")).rule is None


def test_a_literal_bracket_is_written_as_a_class() -> None:
    p = policy("- {name: r, match: {object: '/tmp/[[]x]'}, action: deny}")
    assert decide(p, BASE._replace(object_path="/tmp/[x]")).rule == "r"
    assert decide(p, BASE._replace(object_path="/tmp/x")).rule is None


def test_empty_any_of_list_never_matches_and_empty_flags_always_do() -> None:
    never = policy("- {name: r, match: {category: []}, action: deny}")
    assert decide(never, BASE).rule is None
    always = policy("- {name: r, match: {prot: []}, action: deny}")
    assert decide(always, BASE._replace(prot=frozenset())).rule == "r"
