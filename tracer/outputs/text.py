"""Human lines: a sentence, then ` | key=value` pairs (Falco's convention)."""

from __future__ import annotations

import os
from typing import TextIO

from ..abi import prot_text
from ..events import RecordsLost
from ..judgement import Judgement

# Names in a line come from the program (a memfd's, a file's, its own): a
# newline in one would start a line no event made, a "|" a pair no event
# had. Those, other control characters and bytes that were no UTF-8
# (surrogate escapes) are written as \xNN.
_UNPRINTABLE = {
    **{code: f"\\x{code:02x}" for code in (*range(0x20), 0x7F, ord("|"))},
    **{0xDC80 + low: f"\\x{0x80 + low:02x}" for low in range(0x80)},
}


def printable(text: object) -> str:
    """Return `text` (as str) with control characters, "|" and undecodable
    bytes escaped (\\xNN), so that it is one field of one report line."""
    return str(text).translate(_UNPRINTABLE)


def format_caller(judgement: Judgement) -> str:
    """Return 'object:symbol+0xoff' (basename of the object) or '?'."""
    caller = judgement.caller
    if caller is None or not caller.object:
        return "?"
    text = os.path.basename(caller.object) or caller.object
    if caller.symbol:
        text += f":{caller.symbol}"
        if caller.offset:
            text += f"+{caller.offset:#x}"
    return text


def format_line(judgement: Judgement) -> str:
    """Return the one-line human report of a judgement."""
    cats = ",".join(c.value for c in judgement.categories)
    end = judgement.addr + judgement.length
    if judgement.prev_prot is not None:
        prev = prot_text(judgement.prev_prot)
    else:
        # A protection change of memory no source described (backing unknown).
        prev = "unknown" if judgement.syscall in ("mprotect", "pkey_mprotect") else "new"
    backing = judgement.backing.kind
    if judgement.backing.path:
        backing += f":{judgement.backing.path}"
    result = "" if judgement.result is None else (
        f"{judgement.result:#x}" if judgement.result >= 0 else str(judgement.result)
    )
    sentence = (
        f"W^X {judgement.outcome}: {printable(judgement.comm)} ({judgement.pid}) {judgement.syscall} "
        f"{cats} from {printable(format_caller(judgement))}"
    )
    pairs = [
        ("pid", judgement.pid), ("tid", judgement.tid), ("exe", judgement.exe),
        ("syscall", judgement.syscall), ("range", f"{judgement.addr:#x}-{end:#x}"),
        ("prev_prot", prev), ("prot", prot_text(judgement.prot)), ("backing", backing),
        ("categories", cats), ("rule", judgement.rule or "default"),
        ("verdict", judgement.outcome), ("result", result), ("caller", format_caller(judgement)),
        *judgement.detail,
        *((("count", judgement.count),) if judgement.count > 1 else ()),
    ]
    if judgement.reason:
        pairs.append(("reason", judgement.reason))
    return sentence + "".join(f" | {key}={printable(value)}" for key, value in pairs)


def format_lost(event: RecordsLost) -> str:
    """Return the human line of a lost-records report, with what helps."""
    reasons = ",".join(f"{reason}:{count}" for reason, count in event.by_reason if count)
    return (f"LOST {event.count:,} records (the kernel side could not deliver them; raise --buffer-pages "
            f"or narrow --pid/--comm/--cgroup) | count={event.count} | total={event.total} "
            f"| by_reason={reasons}")


class TextOutput:
    """Writes one human line per judgement as it happens."""

    def __init__(self, stream: TextIO):
        self.stream = stream

    def emit(self, judgement: Judgement) -> None:
        """Write the judgement's line."""
        self.stream.write(format_line(judgement) + "\n")
        self.stream.flush()

    def lost(self, event: RecordsLost) -> None:
        """Say that records were dropped, and what helps."""
        self.stream.write(format_lost(event) + "\n")
        self.stream.flush()

    def close(self, stats) -> None:
        """Nothing to finish for plain lines."""
