"""Strict validation of a policy document tree into a Policy.

Every error is collected (never the first only), each located where the
thing its key path names is written: a key's line and column for a problem
with the key or its scalar value, a list item's for a problem with the item.
Warnings are collected apart and returned with the policy.
"""

from __future__ import annotations

import errno as errno_module
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tracer.categories import BY_NAME
from tracer.errors import PolicyError, PolicyIssue
from tracer.policy.globs import compile_glob, glob_problem
from tracer.policy.lint import shadowing
from tracer.policy.model import (
    API_VERSION,
    BACKING_KINDS,
    CLOSURE_MODES,
    KIND,
    MATCH_SYSCALLS,
    MODES,
    PROT_FLAGS,
    Action,
    Match,
    Policy,
    Rule,
)
from tracer.policy.nodes import INVALID_KIND, Mapping, Node, Scalar, Seq, type_name

ERRNO_NAMES: frozenset[str] = frozenset(
    name
    for name in dir(errno_module)
    if name.startswith("E") and isinstance(getattr(errno_module, name), int)
)
DEFAULT_ERRNO = errno_module.EACCES

# Plain scalars YAML reads as something other than text, like `no` or `1.0`.
_UNQUOTED_TEXT = ("int", "float", "bool", "timestamp")
_ACTIONS = tuple(a.value for a in Action)
_LIST_CHOICES_UP_TO = 20  # longer vocabularies are not spelled out in messages


class _Invalid:
    """Marks a value already reported as an error."""


INVALID: Any = _Invalid()


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def closest(word: str, choices: list[str] | tuple[str, ...] | frozenset[str]) -> str | None:
    """Return the choice closest to word (ignoring case), or None if none is close."""
    lowered = {c.lower(): c for c in choices}
    # Imported here: only an error needs it, and a policy from the cache is validated too.
    import difflib

    close = difflib.get_close_matches(word.lower(), list(lowered), n=1, cutoff=0.6)
    return lowered[close[0]] if close else None


def suggestion(word: str, choices: list[str] | tuple[str, ...] | frozenset[str]) -> str:
    """Return ' (did you mean 'X'?)' for the closest choice, or a list of the
    choices when the vocabulary is short and nothing is close, or ''."""
    close = closest(word, choices)
    if close:
        return f" (did you mean '{close}'?)"
    if len(choices) <= _LIST_CHOICES_UP_TO:
        return f" (expected one of: {', '.join(choices)})"
    return ""


@dataclass
class _Checker:
    source: str
    errors: list[PolicyIssue] = field(default_factory=list)
    warnings: list[PolicyIssue] = field(default_factory=list)

    def error(self, at: Node, path: str, message: str) -> Any:
        """Record an error; return INVALID so callers can `return ck.error(...)`."""
        self.errors.append(PolicyIssue(self.source, at.line, at.column, path, message))
        return INVALID

    def warn(self, at: Node, path: str, message: str) -> None:
        self.warnings.append(PolicyIssue(self.source, at.line, at.column, path, message))

    # --- shapes -----------------------------------------------------------------

    def wrong_type(self, at: Node, path: str, value: Node, expected: str) -> Any:
        if value.kind == INVALID_KIND:
            return INVALID
        got = type_name(value.kind)
        if isinstance(value, Scalar) and value.kind not in ("null", "str"):
            got += f" {value.text!r}"
            if expected == "a string" and value.kind in _UNQUOTED_TEXT:
                got += " (quote it to make it text)"
        return self.error(at, path, f"expected {expected}, got {got}")

    def fields(
        self, at: Node, path: str, node: Node, required: tuple[str, ...], optional: tuple[str, ...]
    ) -> dict[str, tuple[Node, Node]] | None:
        """Return {key: (key node, value node)} of a mapping, reporting
        non-string, duplicate, unknown and missing keys; None if not a mapping."""
        if not (isinstance(node, Mapping) and node.kind == "mapping"):
            self.wrong_type(at, path, node, "a mapping")
            return None
        allowed = required + optional
        found: dict[str, tuple[Node, Node]] = {}
        for key, value in node.pairs:
            if key.kind == "merge":
                self.error(key, path, "merge keys ('<<') are not supported: write the keys out")
                continue
            if not (isinstance(key, Scalar) and key.kind == "str"):
                self.wrong_type(key, path, key, "a string key")
                continue
            name = str(key.value)
            key_path = _join(path, name)
            if name in found:
                first = found[name][0]
                self.error(key, key_path, f"duplicate key '{name}' (first written at line {first.line})")
            elif name not in allowed:
                self.error(key, key_path, f"unknown key '{name}'{suggestion(name, allowed)}")
            else:
                found[name] = (key, value)
        for name in required:
            if name not in found:
                self.error(node, path, f"missing required key '{name}'")
        return found

    # --- scalars ----------------------------------------------------------------

    def string(self, at: Node, path: str, node: Node) -> Any:
        if not (isinstance(node, Scalar) and node.kind == "str"):
            return self.wrong_type(at, path, node, "a string")
        return str(node.value)

    def name(self, at: Node, path: str, node: Node) -> Any:
        value = self.string(at, path, node)
        if value is not INVALID and not value.strip():
            return self.error(at, path, "must not be empty")
        return value

    def integer(self, at: Node, path: str, node: Node) -> Any:
        if not (isinstance(node, Scalar) and node.kind == "int"):
            return self.wrong_type(at, path, node, "an integer")
        return node.value

    def boolean(self, at: Node, path: str, node: Node) -> Any:
        if not (isinstance(node, Scalar) and node.kind == "bool"):
            return self.wrong_type(at, path, node, "true or false")
        return node.value

    def choice(
        self, at: Node, path: str, node: Node, what: str, choices: tuple[str, ...] | frozenset[str]
    ) -> Any:
        value = self.string(at, path, node)
        if value is INVALID or value in choices:
            return value
        return self.error(at, path, f"unknown {what} '{value}'{suggestion(value, sorted(choices))}")

    def errno(self, at: Node, path: str, node: Node) -> Any:
        if isinstance(node, Scalar) and node.kind == "int":
            return self.error(
                at, path, f"expected an errno name such as EACCES or EPERM, got the number {node.text}"
            )
        value = self.string(at, path, node)
        if value is INVALID:
            return INVALID
        if value not in ERRNO_NAMES:
            return self.error(at, path, f"unknown errno '{value}'{suggestion(value, ERRNO_NAMES)}")
        return getattr(errno_module, value)

    def any_of(
        self, at: Node, path: str, node: Node, item: Callable[[Node, str, Node], Any], empty_note: str
    ) -> Any:
        """Return the list of parsed items of a scalar-or-list value, INVALID
        if any item was wrong; warn about an empty list."""
        if isinstance(node, Seq) and node.kind == "list":
            if not node.items:
                self.warn(at, path, f"empty list: {empty_note}")
            values = [item(sub, f"{path}[{i}]", sub) for i, sub in enumerate(node.items)]
        else:
            values = [item(at, path, node)]
        return INVALID if any(v is INVALID for v in values) else values


# --- the document -----------------------------------------------------------------

_MATCH_KEYS = (
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
)
_NEVER = "this rule can never match"
_NO_EFFECT = "this condition has no effect"


def _glob_item(ck: _Checker) -> Callable[[Node, str, Node], Any]:
    def item(at: Node, path: str, node: Node) -> Any:
        pattern = ck.string(at, path, node)
        if pattern is INVALID:
            return INVALID
        problem = glob_problem(pattern)
        return ck.error(at, path, problem) if problem else pattern

    return item


def _uid_item(ck: _Checker) -> Callable[[Node, str, Node], Any]:
    def item(at: Node, path: str, node: Node) -> Any:
        uid = ck.integer(at, path, node)
        if uid is not INVALID and uid < 0:
            return ck.error(at, path, f"a uid is never negative, got {uid}")
        return uid

    return item


def _choice_item(ck: _Checker, what: str, choices: tuple[str, ...] | frozenset[str]) -> Callable[..., Any]:
    def item(at: Node, path: str, node: Node) -> Any:
        return ck.choice(at, path, node, what, choices)

    return item


def _match(ck: _Checker, at: Node, path: str, node: Node) -> Any:
    found = ck.fields(at, path, node, (), _MATCH_KEYS)
    if found is None:
        return INVALID
    if isinstance(node, Mapping) and not node.pairs:
        ck.warn(at, path, "empty match: this rule matches every W^X event")
    parsed: dict[str, Any] = {}
    for key, (key_node, value) in found.items():
        key_path = _join(path, key)
        if key == "category":
            parsed[key] = ck.any_of(
                key_node, key_path, value, _choice_item(ck, "category", tuple(BY_NAME)), _NEVER
            )
        elif key in ("exe", "comm", "object", "caller"):
            parsed[key] = ck.any_of(key_node, key_path, value, _glob_item(ck), _NEVER)
        elif key == "uid":
            parsed[key] = ck.any_of(key_node, key_path, value, _uid_item(ck), _NEVER)
        elif key == "syscall":
            parsed[key] = ck.any_of(
                key_node, key_path, value, _choice_item(ck, "syscall", MATCH_SYSCALLS), _NEVER
            )
        elif key == "backing":
            parsed[key] = ck.any_of(
                key_node, key_path, value, _choice_item(ck, "backing", BACKING_KINDS), _NEVER
            )
        elif key in ("prot", "gains"):
            parsed[key] = ck.any_of(
                key_node, key_path, value, _choice_item(ck, "protection flag", PROT_FLAGS), _NO_EFFECT
            )
        else:
            parsed[key] = ck.boolean(key_node, key_path, value)
    if any(v is INVALID for v in parsed.values()):
        return INVALID

    def globbed(key: str) -> Any:
        return compile_glob(tuple(parsed[key])) if key in parsed else None

    def as_set(key: str) -> Any:
        return frozenset(parsed[key]) if key in parsed else None

    return Match(
        category=frozenset(BY_NAME[c] for c in parsed["category"]) if "category" in parsed else None,
        exe=globbed("exe"),
        comm=globbed("comm"),
        uid=as_set("uid"),
        syscall=as_set("syscall"),
        backing=as_set("backing"),
        object_path=globbed("object"),
        caller=globbed("caller"),
        prot=as_set("prot"),
        gains=as_set("gains"),
        new_mapping=parsed.get("new_mapping"),
    )


def _tags(ck: _Checker, at: Node, path: str, node: Node) -> Any:
    if not (isinstance(node, Seq) and node.kind == "list"):
        return ck.wrong_type(at, path, node, "a list of strings")
    if not node.items:
        ck.warn(at, path, "empty list: leave the key out instead")
    tags = [ck.name(sub, f"{path}[{i}]", sub) for i, sub in enumerate(node.items)]
    return INVALID if any(t is INVALID for t in tags) else tuple(tags)


def _errno_for(ck: _Checker, found: dict[str, tuple[Node, Node]], path: str, action: Any) -> Any:
    """Return the errno number of a deny (EACCES unless written), None for other
    actions, reporting an errno written with anything but deny."""
    if "errno" not in found:
        return DEFAULT_ERRNO if action == Action.DENY else None
    key_node, value = found["errno"]
    number = ck.errno(key_node, _join(path, "errno"), value)
    if action is not INVALID and action != Action.DENY:
        return ck.error(
            key_node, _join(path, "errno"), f"errno is only allowed with action 'deny', not '{action}'"
        )
    return number


def _rule(ck: _Checker, node: Node, path: str, names: dict[str, Node]) -> Any:
    found = ck.fields(
        node, path, node, ("name", "match", "action"), ("description", "errno", "priority", "tags")
    )
    if found is None:
        return INVALID
    name: Any = INVALID
    if "name" in found:
        key_node, value = found["name"]
        name = ck.name(key_node, _join(path, "name"), value)
        if name is not INVALID:
            if name in names:
                name = ck.error(
                    key_node,
                    _join(path, "name"),
                    f"duplicate rule name '{name}' (first used at line {names[name].line})",
                )
            else:
                names[name] = key_node
    description = ""
    if "description" in found:
        key_node, value = found["description"]
        description = ck.string(key_node, _join(path, "description"), value)
    match = (
        _match(ck, found["match"][0], _join(path, "match"), found["match"][1])
        if "match" in found
        else INVALID
    )
    action: Any = INVALID
    if "action" in found:
        key_node, value = found["action"]
        action = ck.choice(key_node, _join(path, "action"), value, "action", _ACTIONS)
        action = INVALID if action is INVALID else Action(action)
    errno = _errno_for(ck, found, path, action)
    priority = 0
    if "priority" in found:
        key_node, value = found["priority"]
        priority = ck.integer(key_node, _join(path, "priority"), value)
    tags: Any = ()
    if "tags" in found:
        key_node, value = found["tags"]
        tags = _tags(ck, key_node, _join(path, "tags"), value)
    parts = (name, description, match, action, errno, priority, tags)
    if any(p is INVALID for p in parts):
        return INVALID
    return Rule(*parts)


def _envelope(ck: _Checker, root: Node) -> tuple[Any, Any, Any]:
    """Check apiVersion and kind; return (name, description, spec node pair)."""
    if not (isinstance(root, Mapping) and root.kind == "mapping"):
        ck.wrong_type(root, "", root, "a mapping with apiVersion, kind, metadata and spec")
        return INVALID, INVALID, None
    found = ck.fields(root, "", root, ("apiVersion", "kind", "metadata", "spec"), ()) or {}
    if "apiVersion" in found:
        key_node, value = found["apiVersion"]
        version = ck.string(key_node, "apiVersion", value)
        if version is not INVALID and version != API_VERSION:
            ck.error(key_node, "apiVersion", f"unsupported apiVersion '{version}' (expected '{API_VERSION}')")
    if "kind" in found:
        key_node, value = found["kind"]
        kind = ck.string(key_node, "kind", value)
        if kind is not INVALID and kind != KIND:
            ck.error(key_node, "kind", f"unsupported kind '{kind}'{suggestion(kind, (KIND,))}")
    name: Any = INVALID
    description: Any = ""
    if "metadata" in found:
        key_node, value = found["metadata"]
        meta = ck.fields(key_node, "metadata", value, ("name",), ("description",))
        if meta and "name" in meta:
            name = ck.name(meta["name"][0], "metadata.name", meta["name"][1])
        if meta and "description" in meta:
            description = ck.string(meta["description"][0], "metadata.description", meta["description"][1])
    return name, description, found.get("spec")


def build_policy(root: Node | None, source: str, earlier: list[PolicyIssue]) -> Policy:
    """Return the Policy a document tree describes.

    `earlier` holds errors already found while reading the document; they
    are reported with the rest. Raises PolicyError listing every error.
    """
    ck = _Checker(source, errors=list(earlier))
    if root is None:
        raise PolicyError([*ck.errors, PolicyIssue(source, 1, 1, "", "the policy is empty")])
    name, description, spec_pair = _envelope(ck, root)
    mode: Any = None
    closures: Any = None
    default_action: Any = INVALID
    default_errno: Any = None
    rules: list[tuple[Rule, Node, str]] = []
    spec = (
        ck.fields(spec_pair[0], "spec", spec_pair[1], ("defaultAction",),
                  ("mode", "errno", "rules", "closures"))
        if spec_pair
        else None
    )
    if spec is not None:
        if "mode" in spec:
            mode = ck.choice(spec["mode"][0], "spec.mode", spec["mode"][1], "mode", MODES)
        if "closures" in spec:
            closures = ck.choice(spec["closures"][0], "spec.closures", spec["closures"][1], "closures mode",
                                 CLOSURE_MODES)
        if "defaultAction" in spec:
            key_node, value = spec["defaultAction"]
            default_action = ck.choice(key_node, "spec.defaultAction", value, "action", _ACTIONS)
            default_action = INVALID if default_action is INVALID else Action(default_action)
        default_errno = _errno_for(ck, spec, "spec", default_action)
        if "rules" in spec:
            rules = _rules(ck, *spec["rules"])
    if ck.errors:
        raise PolicyError(sorted(ck.errors, key=lambda i: (i.line, i.column)))
    ordered = sorted(rules, key=lambda entry: -entry[0].priority)
    for later, earlier_index in shadowing([rule.match for rule, _, _ in ordered]):
        rule, node, path = ordered[later]
        ck.warn(
            node,
            path,
            f"rule '{rule.name}' can never fire: rule '{ordered[earlier_index][0].name}' "
            "is evaluated before it and matches every event it matches",
        )
    return Policy(
        name=name,
        description=description,
        source=source,
        mode=mode,
        closures=None if closures in (None, INVALID, "off") else closures,
        default_action=default_action,
        default_errno=default_errno,
        rules=tuple(rule for rule, _, _ in ordered),
        warnings=tuple(sorted(ck.warnings, key=lambda i: (i.line, i.column))),
    )


def _rules(ck: _Checker, key_node: Node, node: Node) -> list[tuple[Rule, Node, str]]:
    if not (isinstance(node, Seq) and node.kind == "list"):
        ck.wrong_type(key_node, "spec.rules", node, "a list of rules")
        return []
    names: dict[str, Node] = {}
    rules = []
    for i, item in enumerate(node.items):
        path = f"spec.rules[{i}]"
        rule = _rule(ck, item, path, names)
        if rule is not INVALID:
            rules.append((rule, item, path))
    return rules
