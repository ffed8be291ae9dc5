"""The envelope of every JSON record trampwatch writes (docs/events.md):
`schema`, the versioned name of the stream the record belongs to, then
`type`, the kind of record; addresses are lowercase `0x` hex strings.
"""

from __future__ import annotations

# A stream's version changes when the shape or meaning of a field changes.
# events v3: the envelope (`schema` is this name, not the number 2) and
# addresses (`addr`, `caller.addr`) as hex strings.
EVENTS_SCHEMA = "trampwatch.events/v3"
# inspect v2: `type` (`process`, and a `summary` record after --all).
INSPECT_SCHEMA = "trampwatch.inspect/v2"
# scan v1: the first versioned shape (records had `type` but no `schema`).
SCAN_SCHEMA = "trampwatch.scan/v1"


def record(schema: str, kind: str, **fields: object) -> dict:
    """Return a JSON-ready record: the envelope (`schema`, `type`), then `fields`."""
    return {"schema": schema, "type": kind, **fields}


def address(value: int | None) -> str | None:
    """Return an address the way every record writes one: '0x7f..' (None stays None)."""
    return None if value is None else f"{value:#x}"
