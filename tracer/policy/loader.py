"""Reading policies: YAML text → located node tree → validated Policy, plus
the presets shipped with the package (tracer/presets: policies/ in the source
tree). The only module that imports yaml.

The YAML is composed (never constructed with yaml.load) so that every node
keeps its line and column; scalars are typed by the safe resolver's tags.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from tracer.errors import PolicyError, PolicyIssue
from tracer.policy import cache
from tracer.policy.model import Policy
from tracer.resources import package_path

if TYPE_CHECKING:
    import yaml

    from tracer.policy.nodes import Node

PRESET_DIR = package_path("presets")

_STANDARD = "tag:yaml.org,2002:"
_SCALAR_KINDS = {
    f"{_STANDARD}{name}": name
    for name in ("str", "int", "float", "bool", "null", "timestamp", "binary", "merge")
}
_TRUE = {"yes", "true", "on"}
_FALSE = {"no", "false", "off"}


class _Converter:
    """Turns composed YAML nodes into nodes.Node, reporting what cannot be
    typed (bad explicit tags, self-containing aliases) as issues."""

    def __init__(self, source: str):
        self.source = source
        self.issues: list[PolicyIssue] = []
        self._done: dict[int, Node] = {}
        self._open: set[int] = set()
        import yaml

        self._ints = yaml.constructor.SafeConstructor()

    def _invalid(self, node: yaml.Node, message: str) -> Node:
        from tracer.policy.nodes import INVALID_KIND, Scalar

        line, column = node.start_mark.line + 1, node.start_mark.column + 1
        self.issues.append(PolicyIssue(self.source, line, column, "", message))
        return Scalar(INVALID_KIND, line, column, "", None)

    def convert(self, node: yaml.Node) -> Node:
        """Return the neutral node for a composed node (aliases stay shared)."""
        key = id(node)
        if key in self._done:
            return self._done[key]
        if key in self._open:
            return self._invalid(node, "an alias refers to a node that contains it")
        self._open.add(key)
        result = self._convert(node)
        self._open.discard(key)
        self._done[key] = result
        return result

    def _convert(self, node: yaml.Node) -> Node:
        # Imported here, like the parser: a policy from the cache needs neither.
        import yaml

        from tracer.policy.nodes import Mapping, Scalar, Seq

        line, column = node.start_mark.line + 1, node.start_mark.column + 1
        if isinstance(node, yaml.SequenceNode):
            kind = "list" if node.tag == f"{_STANDARD}seq" else node.tag
            return Seq(kind, line, column, tuple(self.convert(item) for item in node.value))
        if isinstance(node, yaml.MappingNode):
            kind = "mapping" if node.tag == f"{_STANDARD}map" else node.tag
            pairs = tuple((self.convert(k), self.convert(v)) for k, v in node.value)
            return Mapping(kind, line, column, pairs)
        kind = _SCALAR_KINDS.get(node.tag, node.tag)
        text = str(node.value)
        value: str | int | bool | None = None
        if kind == "str":
            value = text
        elif kind == "int":
            try:
                value = self._ints.construct_yaml_int(node)
            except (ValueError, IndexError, yaml.YAMLError):  # IndexError: an empty `!!int`
                return self._invalid(node, f"{text!r} is tagged as an integer but is not one")
        elif kind == "bool":
            if text.lower() not in _TRUE | _FALSE:
                return self._invalid(node, f"{text!r} is tagged as a boolean but is not one")
            value = text.lower() in _TRUE
        return Scalar(kind, line, column, text, value)


def _syntax_issue(err: yaml.YAMLError, text: str, source: str) -> PolicyIssue:
    """Return one issue locating a YAML syntax error."""
    import yaml

    if isinstance(err, yaml.reader.ReaderError):
        before = text[: err.position]
        line = before.count("\n") + 1
        column = err.position - (before.rfind("\n") + 1) + 1
        char = err.character if isinstance(err.character, int) else ord(err.character)
        return PolicyIssue(source, line, column, "", f"invalid YAML: character #x{char:04x}: {err.reason}")
    if isinstance(err, yaml.MarkedYAMLError):
        mark = err.problem_mark or err.context_mark
        message = f"invalid YAML: {err.problem or err.context}"
        if err.problem and err.context and err.problem.startswith("but "):
            message = f"invalid YAML: {err.context}, {err.problem}"
        elif err.problem and err.context:
            where = err.context_mark
            started = f" at line {where.line + 1}, column {where.column + 1}" if where else ""
            message += f" ({err.context}{started})"
        line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        return PolicyIssue(source, line, column, "", message)
    return PolicyIssue(source, 1, 1, "", f"invalid YAML: {err}")


def load_policy_text(text: str, source: str) -> Policy:
    """Return the Policy that YAML text describes; `source` names it in issues.

    Raises PolicyError listing every error (syntax errors: the first only,
    since the parser cannot go on after one).
    """
    return _load(text, source)[0]


def _load(text: str, source: str) -> tuple[Policy, Node | None]:
    """The Policy of YAML text and the document tree it was validated from."""
    # Imported here: a run whose policy comes from the cache never needs the parser.
    import yaml

    from tracer.policy.schema import build_policy

    try:
        composed = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as err:
        raise PolicyError([_syntax_issue(err, text, source)]) from err
    except RecursionError as err:
        raise PolicyError([PolicyIssue(source, 1, 1, "", "invalid YAML: nested too deeply")]) from err
    converter = _Converter(source)
    try:
        root = None if composed is None else converter.convert(composed)
    except RecursionError as err:
        raise PolicyError([PolicyIssue(source, 1, 1, "", "invalid YAML: nested too deeply")]) from err
    return build_policy(root, source, converter.issues), root


def load_policy_file(path: str | Path) -> Policy:
    """Return the Policy in the file at path (source: the path as given).

    Raises PolicyError for an unreadable or non-UTF-8 file and for every
    error in its content. A file of the user's own loaded before,
    unchanged, comes compiled from the cache (tracer/policy/cache.py).
    """
    source = str(path)
    try:
        with open(path, "rb") as f:
            data = f.read()
            # A file the user cannot write would be no harder to change than
            # a cache entry the user can: such a policy is never cached.
            cached = os.fstat(f.fileno()).st_uid == os.geteuid()
    except OSError as err:
        reason = err.strerror or str(err)
        raise PolicyError([PolicyIssue(source, 1, 1, "", f"cannot read policy file: {reason}")]) from err
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        before = data[: err.start]
        line = before.count(b"\n") + 1
        column = len(before) - (before.rfind(b"\n") + 1) + 1
        issue = PolicyIssue(source, line, column, "", "not UTF-8 text: a policy file must be UTF-8")
        raise PolicyError([issue]) from err
    policy = cache.lookup(source, data) if cached else None
    if policy is None:
        policy, tree = _load(text, source)
        if cached and tree is not None:
            cache.remember(source, data, tree)
    return policy


def preset_names() -> list[str]:
    """Return the names of the shipped presets, sorted."""
    if not PRESET_DIR.is_dir():
        return []
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def resolve_policy(name_or_path: str) -> Policy:
    """Return the policy at an existing path, else the preset of that name
    (its source is then the preset name).

    Raises PolicyError when the path does not exist and no preset has that
    name (listing the presets), when a bare name (no "/") is both a file
    and a preset, or when the policy does not load.
    """
    if Path(name_or_path).exists():
        if "/" not in name_or_path and name_or_path in preset_names():
            # Any program run in this directory (a traced one too) could have
            # put the file there: never taken silently for the preset.
            message = (f"'{name_or_path}' is both a file here and a preset: write ./{name_or_path} "
                       f"for the file, or run elsewhere for the preset")
            raise PolicyError([PolicyIssue(name_or_path, 1, 1, "", message)])
        return load_policy_file(name_or_path)
    names = preset_names()
    if name_or_path in names:
        policy = load_policy_file(PRESET_DIR / f"{name_or_path}.yaml")
        return policy._replace(source=name_or_path)
    from tracer.policy.schema import closest

    close = closest(name_or_path, names)
    hint = f" (did you mean '{close}'?)" if close else ""
    presets = ", ".join(names) or "none installed"
    message = f"unknown policy '{name_or_path}'{hint}: a policy path must exist, or name a preset ({presets})"
    raise PolicyError([PolicyIssue(name_or_path, 1, 1, "", message)])
