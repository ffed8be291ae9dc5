"""Strict policy loading: every error collected and located, warnings apart,
the exact text a user reads. Inline YAML throughout."""

from __future__ import annotations

import ast
import errno
import json
import textwrap
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tracer
from tracer.categories import Category
from tracer.errors import PolicyError
from tracer.policy import (
    Action,
    Decision,
    Facts,
    Policy,
    decide,
    load_policy_file,
    load_policy_text,
    preset_names,
    resolve_policy,
)
from tracer.policy.lint import shadowing

ENVELOPE = """\
apiVersion: trampwatch.dev/v1
kind: WXPolicy
metadata:
  name: test
spec:
"""


def load(text: str) -> Policy:
    return load_policy_text(textwrap.dedent(text), "policy.yaml")


def errors_of(text: str) -> list[str]:
    with pytest.raises(PolicyError) as caught:
        load(text)
    return [str(issue) for issue in caught.value.issues]


def with_spec(spec: str) -> str:
    return ENVELOPE + textwrap.indent(textwrap.dedent(spec), "  ")


def test_the_style_guide_example_reads_exactly() -> None:
    text = """\
        apiVersion: trampwatch.dev/v1
        kind: WXPolicy
        metadata:
          name: example
        spec:
          defaultAction: allow
          rules:
          - {name: one, match: {category: wx-map}, action: log}
          - name: two
            match: {category: anon-exec}
            action: log
          - name: three
            match:
              category: wx_map
            action: deny
        """
    assert errors_of(text) == [
        "policy.yaml:14:7: spec.rules[2].match.category: unknown category 'wx_map' (did you mean 'wx-map'?)"
    ]


def test_all_errors_are_collected_in_one_go_in_document_order() -> None:
    text = """\
        apiVersion: trampwatch.dev/v2
        kind: WxPolicy
        metadata:
          name: ""
        spec:
          mode: enforcing
          defaultAction: deny
          errno: EPREM
          rules:
            - name: a
              match:
                category: [wx-map, execstak]
                syscall: mprotekt
                backing: annon
                prot: [write, exe]
                uid: root
                exe: "/usr/[bin/*"
                new_mapping: "yes"
              action: deny
              errno: 13
              priority: high
            - name: a
              matches: {}
              action: allow
              errno: EPERM
              tags: jit
        """
    assert errors_of(text) == [
        "policy.yaml:1:1: apiVersion: unsupported apiVersion 'trampwatch.dev/v2'"
        " (expected 'trampwatch.dev/v1')",
        "policy.yaml:2:1: kind: unsupported kind 'WxPolicy' (did you mean 'WXPolicy'?)",
        "policy.yaml:4:3: metadata.name: must not be empty",
        "policy.yaml:6:3: spec.mode: unknown mode 'enforcing' (did you mean 'enforce'?)",
        "policy.yaml:8:3: spec.errno: unknown errno 'EPREM' (did you mean 'EPERM'?)",
        "policy.yaml:12:28: spec.rules[0].match.category[1]: unknown category 'execstak'"
        " (did you mean 'execstack'?)",
        "policy.yaml:13:9: spec.rules[0].match.syscall: unknown syscall 'mprotekt'"
        " (did you mean 'mprotect'?)",
        "policy.yaml:14:9: spec.rules[0].match.backing: unknown backing 'annon' (did you mean 'anon'?)",
        "policy.yaml:15:23: spec.rules[0].match.prot[1]: unknown protection flag 'exe'"
        " (did you mean 'exec'?)",
        "policy.yaml:16:9: spec.rules[0].match.uid: expected an integer, got a string",
        "policy.yaml:17:9: spec.rules[0].match.exe: unbalanced '[' at offset 5 in pattern '/usr/[bin/*'"
        " (write '[[]' for a literal '[')",
        "policy.yaml:18:9: spec.rules[0].match.new_mapping: expected true or false, got a string",
        "policy.yaml:20:7: spec.rules[0].errno: expected an errno name such as EACCES or EPERM,"
        " got the number 13",
        "policy.yaml:21:7: spec.rules[0].priority: expected an integer, got a string",
        "policy.yaml:22:7: spec.rules[1]: missing required key 'match'",
        "policy.yaml:22:7: spec.rules[1].name: duplicate rule name 'a' (first used at line 10)",
        "policy.yaml:23:7: spec.rules[1].matches: unknown key 'matches' (did you mean 'match'?)",
        "policy.yaml:25:7: spec.rules[1].errno: errno is only allowed with action 'deny', not 'allow'",
        "policy.yaml:26:7: spec.rules[1].tags: expected a list of strings, got a string",
    ]


def test_missing_required_keys_are_each_reported_at_their_mapping() -> None:
    text = """\
        kind: WXPolicy
        metadata: {description: no name}
        spec:
          rules:
            - description: nothing else
        """
    assert errors_of(text) == [
        "policy.yaml:1:1: missing required key 'apiVersion'",
        "policy.yaml:2:11: metadata: missing required key 'name'",
        "policy.yaml:4:3: spec: missing required key 'defaultAction'",
        "policy.yaml:5:7: spec.rules[0]: missing required key 'name'",
        "policy.yaml:5:7: spec.rules[0]: missing required key 'match'",
        "policy.yaml:5:7: spec.rules[0]: missing required key 'action'",
    ]


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("defaultAction: allow\nmdoe: audit", "2:3: spec.mdoe: unknown key 'mdoe' (did you mean 'mode'?)"),
        ("defaultAction: allow\nrule: []", "2:3: spec.rule: unknown key 'rule' (did you mean 'rules'?)"),
        (
            "defaultAction: allow\nrules: [{name: r, match: {categories: wx-map}, action: log}]",
            "2:29: spec.rules[0].match.categories: unknown key 'categories' (did you mean 'category'?)",
        ),
        (
            "defaultAction: allow\nrules: [{name: r, match: {flavour: x}, action: log}]",
            "2:29: spec.rules[0].match.flavour: unknown key 'flavour' (expected one of: category, exe, comm,"
            " uid, syscall, backing, object, caller, prot, gains, new_mapping)",
        ),
        ("defaultAction: Deny", "1:3: spec.defaultAction: unknown action 'Deny' (did you mean 'deny'?)"),
        (
            "defaultAction: block",
            "1:3: spec.defaultAction: unknown action 'block' (expected one of: allow, deny, kill, log)",
        ),
    ],
)
def test_unknown_names_get_a_did_you_mean(spec: str, expected: str) -> None:
    lines_before = ENVELOPE.count("\n")
    line, rest = expected.split(":", 1)
    assert errors_of(with_spec(spec)) == [f"policy.yaml:{int(line) + lines_before}:{rest}"]


@pytest.mark.parametrize(
    ("match", "message"),
    [
        ("comm: no", "expected a string, got a boolean 'no' (quote it to make it text)"),
        ("exe: 1.5", "expected a string, got a number '1.5' (quote it to make it text)"),
        ("exe: 2024-01-01", "expected a string, got a date '2024-01-01' (quote it to make it text)"),
        ("exe:", "expected a string, got null"),
        ("exe: {a: b}", "expected a string, got a mapping"),
        ("uid: -1", "a uid is never negative, got -1"),
        ("uid: true", "expected an integer, got a boolean 'true'"),
        ("new_mapping: [true]", "expected true or false, got a list"),
        ("exe: ''", "empty pattern: it matches nothing"),
        ("exe: '/bin/[z-a]*'", "range 'z-a' in pattern '/bin/[z-a]*' is reversed and matches nothing"),
    ],
)
def test_wrong_types_and_values_in_match(match: str, message: str) -> None:
    spec = f"defaultAction: allow\nrules:\n- name: r\n  action: log\n  match:\n    {match}\n"
    [issue] = errors_of(with_spec(spec))
    key = match.split(":")[0]
    assert issue == f"policy.yaml:11:7: spec.rules[0].match.{key}: {message}"


def test_duplicate_mapping_keys_are_errors() -> None:
    spec = """\
        defaultAction: allow
        defaultAction: deny
        rules:
          - name: r
            match: {category: wx-map, category: anon-exec}
            action: log
        """
    assert errors_of(with_spec(spec)) == [
        "policy.yaml:7:3: spec.defaultAction: duplicate key 'defaultAction' (first written at line 6)",
        "policy.yaml:10:33: spec.rules[0].match.category: duplicate key 'category'"
        " (first written at line 10)",
    ]


def test_yaml_syntax_error_is_one_issue_at_its_mark() -> None:
    text = ENVELOPE + "  defaultAction: allow\n  rules: [{name: r\n"
    assert errors_of(text) == [
        "policy.yaml:8:1: invalid YAML: expected ',' or '}', but got '<stream end>'"
        " (while parsing a flow mapping at line 7, column 11)"
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "policy.yaml:1:1: the policy is empty"),
        ("# just a comment\n", "policy.yaml:1:1: the policy is empty"),
        (
            "- a\n- b\n",
            "policy.yaml:1:1: expected a mapping with apiVersion, kind, metadata and spec, got a list",
        ),
        (
            "a: 1\n---\nb: 2\n",
            "policy.yaml:2:1: invalid YAML: expected a single document in the stream,"
            " but found another document",
        ),
        ("a: \x07\n", "policy.yaml:1:4: invalid YAML: character #x0007: special characters are not allowed"),
        ("[" * 3000, "policy.yaml:1:1: invalid YAML: nested too deeply"),
    ],
)
def test_documents_that_are_not_policies(text: str, expected: str) -> None:
    assert errors_of(text)[0] == expected


def test_merge_keys_tags_and_recursive_aliases_are_refused() -> None:
    spec = """\
        defaultAction: !!int allow
        rules:
          - &r {name: r, match: {category: wx-map}, action: log, tags: [*r]}
          - <<: {name: s}
            match: {exe: !glob "*"}
            action: log
        """
    assert errors_of(with_spec(spec)) == [
        "policy.yaml:6:18: 'allow' is tagged as an integer but is not one",
        "policy.yaml:8:7: an alias refers to a node that contains it",
        "policy.yaml:9:7: spec.rules[1]: merge keys ('<<') are not supported: write the keys out",
        "policy.yaml:9:7: spec.rules[1]: missing required key 'name'",
        "policy.yaml:10:15: spec.rules[1].match.exe: expected a string, got a value tagged '!glob' '*'",
    ]


def test_tagged_collections_are_refused() -> None:
    text = "apiVersion: trampwatch.dev/v1\nkind: WXPolicy\nmetadata: !!omap [name: x]\nspec: !!set {a}\n"
    assert errors_of(text) == [
        "policy.yaml:3:1: metadata: expected a mapping, got a value tagged '!!omap'",
        "policy.yaml:4:1: spec: expected a mapping, got a value tagged '!!set'",
    ]


def test_an_empty_integer_tag_is_a_located_error() -> None:
    # PyYAML's own int constructor fails on an empty `!!int` (IndexError).
    first = errors_of("!!int : apiVersion\n")[0]
    assert first == "policy.yaml:1:1: '' is tagged as an integer but is not one"


def test_aliases_to_valid_values_are_followed() -> None:
    spec = """\
        defaultAction: allow
        rules:
          - name: one
            match: {category: &jit [wx-map, wx-protect], exe: "*/node"}
            action: allow
          - name: two
            match: {category: *jit, exe: "*/java"}
            action: allow
        """
    policy = load(with_spec(spec))
    assert [r.match.category for r in policy.rules] == [frozenset({Category.WX_MAP, Category.WX_PROTECT})] * 2


def test_errno_defaults_to_eacces_and_takes_names() -> None:
    spec = """\
        defaultAction: deny
        errno: EPERM
        rules:
          - {name: plain, match: {category: wx-map}, action: deny}
          - {name: named, match: {category: anon-exec}, action: deny, errno: ENOMEM}
          - {name: logged, match: {category: execmod}, action: log}
        """
    policy = load(with_spec(spec))
    assert policy.default_errno == errno.EPERM
    assert [(r.name, r.errno) for r in policy.rules] == [
        ("plain", errno.EACCES),
        ("named", errno.ENOMEM),
        ("logged", None),
    ]
    assert load(with_spec("defaultAction: deny")).default_errno == errno.EACCES
    assert load(with_spec("defaultAction: log")).default_errno is None


def test_errno_must_be_an_upper_case_name_and_only_with_deny() -> None:
    spec = """\
        defaultAction: kill
        errno: EACCES
        rules:
          - {name: r, match: {category: wx-map}, action: deny, errno: eacces}
        """
    assert errors_of(with_spec(spec)) == [
        "policy.yaml:7:3: spec.errno: errno is only allowed with action 'deny', not 'kill'",
        "policy.yaml:9:58: spec.rules[0].errno: unknown errno 'eacces' (did you mean 'EACCES'?)",
    ]


def test_a_full_policy_loads_into_the_model() -> None:
    text = """\
        apiVersion: trampwatch.dev/v1
        kind: WXPolicy
        metadata:
          name: full
          description: every key once
        spec:
          mode: audit
          defaultAction: log
          rules:
            - name: low
              description: evaluated last
              match: {category: execstack}
              action: allow
              priority: -5
            - name: high
              match:
                category: [wx-map, anon-exec]
                exe: ["*/node", "*/java"]
                comm: "no[dj]e"
                uid: [0, 1000]
                syscall: [mmap, exec]
                backing: [anon, memfd]
                object: "/memfd:*"
                caller: "libffi.so*"
                prot: [write, exec]
                gains: exec
                new_mapping: true
              action: deny
              errno: EPERM
              priority: 7
              tags: [jit, ffi]
            - name: middle
              match: {syscall: brk}
              action: kill
        """
    policy = load(text)
    assert (policy.name, policy.description, policy.source, policy.mode) == (
        "full",
        "every key once",
        "policy.yaml",
        "audit",
    )
    assert (policy.default_action, policy.default_errno, policy.warnings) == (Action.LOG, None, ())
    assert [r.name for r in policy.rules] == ["high", "middle", "low"]
    high = policy.rules[0]
    assert (high.action, high.errno, high.priority, high.tags) == (
        Action.DENY,
        errno.EPERM,
        7,
        ("jit", "ffi"),
    )
    m = high.match
    assert m.category == {Category.WX_MAP, Category.ANON_EXEC}
    assert m.exe is not None and m.exe.patterns == ("*/node", "*/java")
    assert m.uid == {0, 1000}
    assert m.syscall == {"mmap", "exec"}
    assert m.backing == {"anon", "memfd"}
    assert m.object_path is not None and m.object_path.patterns == ("/memfd:*",)
    assert m.prot == {"write", "exec"} and m.gains == {"exec"}
    assert m.new_mapping is True
    assert policy.rules[2].description == "evaluated last"


def test_equal_priorities_keep_file_order() -> None:
    spec = """\
        defaultAction: allow
        rules:
          - {name: a, match: {category: wx-map}, action: log, priority: 1}
          - {name: b, match: {category: anon-exec}, action: log}
          - {name: c, match: {category: execmod}, action: log, priority: 1}
          - {name: d, match: {category: execheap}, action: log}
        """
    assert [r.name for r in load(with_spec(spec)).rules] == ["a", "c", "b", "d"]


def test_rules_may_be_left_out() -> None:
    policy = load(with_spec("defaultAction: log"))
    assert (policy.rules, policy.warnings, policy.mode) == ((), (), None)


# --- warnings ------------------------------------------------------------------


def warnings_of(spec: str) -> list[str]:
    return [str(w) for w in load(with_spec(spec)).warnings]


def test_empty_match_and_empty_lists_are_warnings_not_errors() -> None:
    spec = """\
        defaultAction: allow
        rules:
          - name: everything
            match: {}
            action: log
          - name: nothing
            match: {category: [], prot: []}
            action: deny
            tags: []
        """
    assert warnings_of(spec) == [
        "policy.yaml:9:7: spec.rules[0].match: empty match: this rule matches every W^X event",
        "policy.yaml:12:15: spec.rules[1].match.category: empty list: this rule can never match",
        "policy.yaml:12:29: spec.rules[1].match.prot: empty list: this condition has no effect",
        "policy.yaml:14:7: spec.rules[1].tags: empty list: leave the key out instead",
    ]


def test_identical_and_strictly_more_general_earlier_rules_shadow() -> None:
    spec = """\
        defaultAction: allow
        rules:
          - {name: wide, match: {category: [wx-map, anon-exec], exe: "*"}, action: log}
          - {name: same, match: {category: [wx-map, anon-exec], exe: "*"}, action: deny}
          - {name: narrower, match: {category: wx-map, exe: /usr/bin/node, uid: 0}, action: deny}
          - {name: other, match: {category: execstack}, action: deny}
        """
    assert warnings_of(spec) == [
        "policy.yaml:9:7: spec.rules[1]: rule 'same' can never fire: rule 'wide' is evaluated before it"
        " and matches every event it matches",
        "policy.yaml:10:7: spec.rules[2]: rule 'narrower' can never fire: rule 'wide' is evaluated before it"
        " and matches every event it matches",
    ]


def test_shadowing_follows_evaluation_order_not_file_order() -> None:
    spec = """\
        defaultAction: allow
        rules:
          - {name: specific, match: {category: wx-map, syscall: mmap}, action: deny}
          - {name: general, match: {category: wx-map}, action: log, priority: 1}
        """
    assert warnings_of(spec) == [
        "policy.yaml:8:7: spec.rules[0]: rule 'specific' can never fire: rule 'general'"
        " is evaluated before it and matches every event it matches",
    ]


@pytest.mark.parametrize(
    ("earlier", "later", "shadowed"),
    [
        ("{category: wx-map}", "{category: wx-map, backing: anon}", True),
        ("{category: wx-map, backing: anon}", "{category: wx-map}", False),
        ("{prot: [exec]}", "{gains: [exec], syscall: mprotect}", True),
        ("{gains: [exec]}", "{prot: [exec]}", False),
        ("{prot: [write, exec]}", "{prot: [read, write, exec]}", True),
        ("{caller: 'libffi.so*'}", "{caller: /usr/lib/libffi.so.8}", True),
        ("{caller: /usr/lib/libffi.so.8}", "{caller: 'libffi.so*'}", False),
        ("{exe: '*/node'}", "{exe: '/usr/bin/node'}", True),
        ("{exe: '*'}", "{comm: node}", True),
        ("{object: '*'}", "{comm: node}", False),
        ("{new_mapping: true}", "{new_mapping: false}", False),
        ("{uid: [0, 1]}", "{uid: 0, exe: '/x'}", True),
    ],
)
def test_shadowing_is_decided_key_by_key(earlier: str, later: str, shadowed: bool) -> None:
    spec = (
        "defaultAction: allow\nrules:\n"
        f"- {{name: first, match: {earlier}, action: log}}\n"
        f"- {{name: second, match: {later}, action: deny}}\n"
    )
    assert bool(warnings_of(spec)) is shadowed


# --- files and presets -----------------------------------------------------------


def test_load_policy_file_names_the_path(tmp_path: Path) -> None:
    path = tmp_path / "mine.yaml"
    path.write_text(with_spec("defaultAction: sometimes"))
    with pytest.raises(PolicyError) as caught:
        load_policy_file(path)
    assert str(caught.value) == f"{path}:6:3: spec.defaultAction: unknown action 'sometimes'" + (
        " (expected one of: allow, deny, kill, log)"
    )
    path.write_text(with_spec("defaultAction: log"))
    assert load_policy_file(str(path)).source == str(path)


def test_unreadable_files_are_policy_errors(tmp_path: Path) -> None:
    missing = tmp_path / "missing.yaml"
    with pytest.raises(PolicyError) as caught:
        load_policy_file(missing)
    assert str(caught.value) == f"{missing}:1:1: cannot read policy file: No such file or directory"
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"apiVersion: x\nkind: \xff\n")
    with pytest.raises(PolicyError) as caught:
        load_policy_file(binary)
    assert str(caught.value) == f"{binary}:2:7: not UTF-8 text: a policy file must be UTF-8"
    with pytest.raises(PolicyError) as caught:
        load_policy_file(tmp_path)
    assert str(caught.value) == f"{tmp_path}:1:1: cannot read policy file: Is a directory"


def test_resolve_policy_takes_paths_then_preset_names(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(with_spec("defaultAction: kill"))
    assert resolve_policy(str(path)).default_action == Action.KILL
    assert "mdwe" in preset_names()
    preset = resolve_policy("mdwe")
    assert (preset.name, preset.source) == ("mdwe", "mdwe")


def test_resolve_policy_unknown_name_lists_presets() -> None:
    with pytest.raises(PolicyError) as caught:
        resolve_policy("mdwee")
    presets = ", ".join(preset_names())
    assert str(caught.value) == (
        f"mdwee:1:1: unknown policy 'mdwee' (did you mean 'mdwe'?): a policy path must exist, "
        f"or name a preset ({presets})"
    )
    with pytest.raises(PolicyError) as caught:
        resolve_policy("/no/such/policy.yaml")
    assert "a policy path must exist" in str(caught.value)


def test_only_the_loader_imports_yaml() -> None:
    package = Path(tracer.__file__).resolve().parent / "policy"
    importers = set()
    for source in package.glob("*.py"):
        for node in ast.walk(ast.parse(source.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            if any(name.split(".")[0] == "yaml" for name in names):
                importers.add(source.name)
    assert importers == {"loader.py"}


# --- fuzzing: only a Policy or a located PolicyError ever comes out -------------------

WORDS = [
    "apiVersion",
    "kind",
    "metadata",
    "spec",
    "name",
    "description",
    "mode",
    "defaultAction",
    "errno",
    "rules",
    "match",
    "action",
    "priority",
    "tags",
    "category",
    "exe",
    "comm",
    "uid",
    "syscall",
    "backing",
    "object",
    "caller",
    "prot",
    "gains",
    "new_mapping",
    "wx-map",
    "wx_map",
    "deny",
    "allow",
    "log",
    "kill",
    "EACCES",
    "mmap",
    "exec",
    "write",
    "anon",
    "*/node",
    "[",
    "<<",
    "",
]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(WORDS),
    st.text(max_size=12),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.one_of(st.sampled_from(WORDS), st.text(max_size=8)), inner, max_size=5),
    ),
    max_leaves=25,
)
rule_dicts = st.dictionaries(st.sampled_from(WORDS[4:25]), values, max_size=6)


def assert_only_policy_or_located_error(text: str) -> None:
    try:
        policy = load_policy_text(text, "fuzz.yaml")
    except PolicyError as err:
        assert err.issues
        for issue in err.issues:
            assert issue.line >= 1 and issue.column >= 1, issue
            assert issue.path == "fuzz.yaml" and issue.message
        return
    assert isinstance(policy, Policy)
    for warning in policy.warnings:
        assert warning.line >= 1 and warning.column >= 1


FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(st.text(max_size=200))
def test_fuzz_arbitrary_text(text: str) -> None:
    assert_only_policy_or_located_error(text)


@FUZZ
@given(
    st.lists(
        st.tuples(
            st.integers(0, 6),
            st.sampled_from(["- ", "", "? ", "&a ", "*a ", "!!int ", "!!str ", "!x ", "<<: "]),
            st.sampled_from(WORDS),
            st.sampled_from([": ", ":", ": [", ": {", " ", "\n", ", ", "]", "}", ": *a", ": &a "]),
            st.sampled_from(WORDS),
        ),
        max_size=14,
    )
)
def test_fuzz_yaml_shaped_lines(lines: list[tuple[int, str, str, str, str]]) -> None:
    text = "".join(" " * indent + a + b + c + d + "\n" for indent, a, b, c, d in lines)
    assert_only_policy_or_located_error(text)


@pytest.mark.slow
@FUZZ
@given(values, values, st.lists(rule_dicts, max_size=4), st.dictionaries(st.sampled_from(WORDS), values))
def test_fuzz_values_in_the_envelope(default: object, metadata: object, rules: list, extra: dict) -> None:
    spec = {"defaultAction": default, "rules": rules, **extra}
    # JSON is a flow-style YAML document: it lays any value into the envelope.
    text = (
        "apiVersion: trampwatch.dev/v1\nkind: WXPolicy\n"
        f"metadata: {json.dumps(metadata)}\nspec: {json.dumps(spec, indent=1)}\n"
    )
    assert_only_policy_or_located_error(text)


def any_of(*choices: object) -> st.SearchStrategy:
    """A key's valid values, scalar or list (wrong ones come from the tests above)."""
    return st.one_of(st.sampled_from(choices), st.lists(st.sampled_from(choices), max_size=3))


categories = [c.value for c in Category]
globs = ["*", "*/node", "/usr/bin/python3*", "libffi.so*", "[ab]*", "?"]
match_dicts = st.fixed_dictionaries(
    {},
    optional={
        "category": any_of(*categories),
        "exe": any_of(*globs),
        "comm": any_of(*globs),
        "uid": any_of(0, 1000),
        "syscall": any_of("mmap", "mprotect", "exec", "brk"),
        "backing": any_of("anon", "memfd", "stack"),
        "object": any_of(*globs),
        "caller": any_of(*globs),
        "prot": any_of("read", "write", "exec"),
        "gains": any_of("read", "write", "exec"),
        "new_mapping": st.booleans(),
    },
)
real_rules = st.fixed_dictionaries(
    {"match": match_dicts, "action": st.sampled_from(["allow", "log", "deny", "deny", "kill"])},
    optional={
        "priority": st.integers(-3, 3),
        "tags": st.lists(st.sampled_from(["a", "b"]), max_size=2),
    },
).flatmap(
    lambda rule: (
        st.sampled_from(["EPERM", "EACCES", "ENOMEM"]).map(lambda name: {**rule, "errno": name})
        if rule["action"] == "deny"
        else st.just(rule)
    )
)


@st.composite
def facts_strategy(draw: st.DrawFn) -> Facts:
    prot = draw(st.frozensets(st.sampled_from(["read", "write", "exec"])))
    return Facts(
        categories=tuple(draw(st.lists(st.sampled_from(list(Category)), max_size=3))),
        syscall=draw(st.sampled_from(["mmap", "mprotect", "exec", "brk"])),
        exe=draw(st.sampled_from(["/usr/bin/node", "/usr/bin/python3.13", "/bin/true"])),
        comm=draw(st.sampled_from(["node", "a", "b"])),
        uid=draw(st.sampled_from([0, 1000, 1])),
        backing_kind=draw(st.sampled_from(["anon", "memfd", "stack"])),
        object_path=draw(st.sampled_from([None, "/memfd:libffi (deleted)", "a"])),
        caller_object=draw(st.sampled_from([None, "/usr/lib/x86_64-linux-gnu/libffi.so.8", "/b"])),
        prot=prot,
        # What a call gains is always part of the protection it leaves.
        gained=draw(st.frozensets(st.sampled_from(sorted(prot)))) if prot else frozenset(),
        new_mapping=draw(st.booleans()),
    )


@pytest.mark.slow
@FUZZ
@given(st.lists(real_rules, min_size=1, max_size=5), st.lists(facts_strategy(), max_size=12))
def test_fuzz_valid_rules_load_and_shadow_warnings_are_sound(rules: list, events: list[Facts]) -> None:
    for i, rule in enumerate(rules):
        rule["name"] = f"r{i}"
    text = ENVELOPE + "  defaultAction: allow\n  rules: " + json.dumps(rules, indent=2) + "\n"
    policy = load_policy_text(text, "fuzz.yaml")
    # A rule reported as shadowed must really never be the one that decides.
    shadowed = {policy.rules[later].name for later, _ in shadowing([r.match for r in policy.rules])}
    for facts in events:
        decision = decide(policy, facts)
        assert isinstance(decision, Decision)
        assert decision.rule not in shadowed
