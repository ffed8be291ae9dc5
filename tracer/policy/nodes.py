"""A neutral, located document tree: what loader.py makes of the YAML and
schema.py validates, so that only loader.py knows about the YAML library.

Positions are 1-based line and column of where the node is written.
"""

from __future__ import annotations

from dataclasses import dataclass

# The kind of a node loader.py could not read and has already reported.
INVALID_KIND = "invalid"

# Scalar types, named as a user would read them in "expected X, got Y".
TYPE_NAMES = {
    "str": "a string",
    "int": "an integer",
    "float": "a number",
    "bool": "a boolean",
    "null": "null",
    "timestamp": "a date",
    "binary": "binary data",
    "merge": "a merge key ('<<')",
    "list": "a list",
    "mapping": "a mapping",
}


def type_name(kind: str) -> str:
    """Return how a node type reads in a message (unknown tags verbatim)."""
    if kind in TYPE_NAMES:
        return TYPE_NAMES[kind]
    return f"a value tagged '{kind.replace('tag:yaml.org,2002:', '!!')}'"


@dataclass(frozen=True, eq=False)
class Node:
    """Common part of every node: its type and where it is written.

    `kind` is a scalar type from TYPE_NAMES, 'list', 'mapping', or a YAML tag
    this tool does not know (always an error where it appears).
    """

    kind: str
    line: int
    column: int


@dataclass(frozen=True, eq=False)
class Scalar(Node):
    """A scalar: `text` as written; `value` the str, int or bool it denotes
    (None for other types)."""

    text: str
    value: str | int | bool | None


@dataclass(frozen=True, eq=False)
class Seq(Node):
    """A list of nodes."""

    items: tuple[Node, ...]


@dataclass(frozen=True, eq=False)
class Mapping(Node):
    """A mapping, as the (key, value) pairs in written order, duplicates kept
    so that they can be reported."""

    pairs: tuple[tuple[Node, Node], ...]
