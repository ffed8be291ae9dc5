"""The end-of-run summary: counts per category and per caller object."""

from __future__ import annotations

import os
from collections import Counter
from typing import TextIO

from ..events import RecordsLost
from ..judgement import Judgement, Outcome
from .text import printable


class Summary:
    """Accumulates judgements and renders the end-of-run table."""

    def __init__(self, stream: TextIO):
        self.stream = stream
        self.by_category: Counter[str] = Counter()
        self.by_caller: Counter[str] = Counter()
        self.by_verdict: Counter[str] = Counter()
        self.not_enforced: Counter[str] = Counter()
        self.events = 0

    def emit(self, judgement: Judgement) -> None:
        """Count one W^X judgement (calls reported by --all-calls with no
        category are not W^X events)."""
        if not judgement.categories:
            return
        count = judgement.count
        self.events += count
        for category in judgement.categories:
            self.by_category[category.value] += count
        caller = judgement.caller.object if judgement.caller and judgement.caller.object else "?"
        self.by_caller[os.path.basename(caller) or caller] += count
        self.by_verdict[judgement.outcome.value] += count
        if judgement.outcome is Outcome.NOT_ENFORCED:
            self.not_enforced[judgement.reason or "?"] += count

    def lost(self, event: RecordsLost) -> None:
        """Nothing now: the table ends with the total lost."""

    def close(self, stats) -> None:
        """Write the summary table."""
        self.stream.write(self.render(stats))
        self.stream.flush()

    def render(self, stats) -> str:
        """Return the summary as text."""
        lines = ["", "trampwatch summary"]
        lines.append(
            f"  memory calls seen: {stats.calls}   W^X events: {self.events}   "
            f"tracer stops: {stats.stops}   lost: {stats.lost}"
        )
        if stats.calls_by_syscall:
            lines.append("  by syscall: " + ", ".join(
                f"{name} {count}" for name, count in sorted(stats.calls_by_syscall.items())))
        closures = getattr(stats, "closures", None)
        if closures:
            lines.append(f"  closures: {closures['alloc']} served by trampfd, {closures['invoke']} "
                         f"invocations emulated ({closures['invoke-fast']} by the fast path), "
                         f"{closures['refused']} jumps refused (SIGSEGV)")
        # Only what was dropped: every known reason is counted from 0.
        dropped = +getattr(stats, "dropped", Counter())
        if dropped:
            lines.append("  dropped: " + ", ".join(
                f"{count} by {stage} ({reason})" for (stage, reason), count in sorted(dropped.items())))
        if getattr(stats, "stalled", 0):
            lines.append(f"  memory calls stalled in the kernel: {stats.stalled} (their address space's "
                         "later calls were judged past them, with its history re-read as unknown)")
        if stats.exit_status is not None:
            lines.append(f"  program exit: {describe_status(stats.exit_status)}")
        if self.events:
            lines += _table("category", self.by_category)
            lines += _table("caller object", self.by_caller)
            lines += _table("verdict", self.by_verdict)
            if self.not_enforced:
                lines += _table("not enforced because", self.not_enforced)
        else:
            lines.append("  no W^X events")
        return "\n".join(lines) + "\n"


def _table(title: str, counts: Counter[str]) -> list[str]:
    shown = [(printable(key), count) for key, count in counts.most_common()]
    width = max(len(title), *(len(key) for key, _ in shown))
    rows = [f"  {title:<{width}}  count", f"  {'-' * width}  -----"]
    rows += [f"  {key:<{width}}  {count:>5}" for key, count in shown]
    return rows


def describe_status(status: int) -> str:
    """Return a wait status in words: 'exit 3' or 'killed by SIGKILL'."""
    import signal

    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = str(sig)
        return f"killed by {name}"
    if os.WIFEXITED(status):
        return f"exit {os.WEXITSTATUS(status)}"
    return f"status {status:#x}"
