"""JSON lines: one object per judgement (and per report of lost records),
then one summary object.

The schema (trampwatch.events) is documented in docs/events.md; every
record carries its versioned name in `schema`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TextIO

from ..abi import prot_text
from ..events import RecordsLost
from ..judgement import Judgement
from .envelope import EVENTS_SCHEMA, address, record


def dropped_by_stage(dropped: Mapping[tuple[str, str], int]) -> dict[str, dict[str, int]]:
    """What each stage of the run dropped, by reason: {stage: {reason: count}}."""
    stages: dict[str, dict[str, int]] = {}
    for (stage, reason), count in dropped.items():
        stages.setdefault(stage, {})[reason] = count
    return stages


def judgement_record(judgement: Judgement) -> dict:
    """Return the JSON-ready record of one judgement."""
    caller = judgement.caller
    backing = judgement.backing
    return record(
        EVENTS_SCHEMA, "event",
        ts=round(judgement.ts, 6),
        source=judgement.source,
        pid=judgement.pid,
        tid=judgement.tid,
        exe=judgement.exe,
        comm=judgement.comm,
        uid=judgement.uid,
        syscall=judgement.syscall,
        arch=judgement.arch,
        args=list(judgement.args),
        result=judgement.result,
        addr=address(judgement.addr),
        len=judgement.length,
        prot=prot_text(judgement.prot),
        prev_prot=prot_text(judgement.prev_prot) if judgement.prev_prot is not None else None,
        backing={"kind": backing.kind, "path": backing.path, "inode": backing.inode or None},
        categories=[c.value for c in judgement.categories],
        rule=judgement.rule,
        action=judgement.action.value,
        errno=judgement.decision.errno,
        verdict=judgement.outcome.value,
        reason=judgement.reason,
        caller={
            "addr": address(caller.addr) if caller else None,
            "object": caller.object if caller else None,
            "symbol": caller.symbol if caller else None,
        },
        detail=dict(judgement.detail),
        count=judgement.count,
    )


class JsonLinesOutput:
    """Writes one JSON object per line."""

    def __init__(self, stream: TextIO, close_stream: bool = False):
        self.stream = stream
        self.close_stream = close_stream

    def emit(self, judgement: Judgement) -> None:
        """Write one event record."""
        self.stream.write(json.dumps(judgement_record(judgement)) + "\n")
        self.stream.flush()

    def lost(self, event: RecordsLost) -> None:
        """Write a record saying how many records the kernel side dropped."""
        line = record(EVENTS_SCHEMA, "lost", ts=round(event.ts, 6), count=event.count, total=event.total,
                      by_reason=dict(event.by_reason))
        self.stream.write(json.dumps(line) + "\n")
        self.stream.flush()

    def close(self, stats) -> None:
        """Write the summary record (with what each stage dropped, by
        reason) and close the stream if we opened it."""
        line = record(
            EVENTS_SCHEMA, "summary",
            calls=stats.calls,
            calls_by_syscall=dict(stats.calls_by_syscall),
            events=stats.judged,
            stops=stats.stops,
            stalled=stats.stalled,
            lost=stats.lost,
            exit_status=stats.exit_status,
            closures={op: stats.closures[op] for op in ("alloc", "invoke", "refused", "invoke-fast")},
            dropped=dropped_by_stage(stats.dropped),
        )
        self.stream.write(json.dumps(line) + "\n")
        self.stream.flush()
        if self.close_stream:
            self.stream.close()
