"""The judge's memory of calls made again (CallAgain): what one such call
did to the shadow model and how it was judged, replayed while nothing it
depends on changed, so a JIT's flood of flips costs a dictionary hit and a
slice of the model per call instead of planning, classifying and deciding
each one; and the counts of the replayed calls, each judged one reported
once per batch with its count (as the kernel's repeat keys are).

A replay is exact: it is recorded only for a protection change of private
anonymous memory (no object, so nothing outside the process's regions is
read by the classifier) whose range lies inside one region the kernel's
view agreed with (the model took nothing from it), judged by a plan that
needs no proof or had its proof at return (never a kill), and it is replayed
only while the process has the same address space and identity, the calling
thread (`tid`) the same persona, and the regions the change can touch or was
judged on (that region, those the kernel's view of the range covers, and one
more on each side) are those it was recorded on.
"""

from __future__ import annotations

from dataclasses import dataclass

from .events import ProcessInfo
from .judgement import Judgement
from .shadow import AddressSpace, Process, Region


@dataclass(slots=True, eq=False)
class Transition:
    """One call's effect and judgement, recorded from its first judging.

    `before` are the regions of `space` a change can touch or was judged on
    (AddressSpace.window, for a range starting at `seen`) and `after` what
    the call left in their place; `judgement` is the judgement emitted for
    it, settled (None: the call was not judged). `count` calls replayed
    since the last report, the last at `ts`."""

    pid: int
    tid: int
    space: AddressSpace
    info: ProcessInfo
    personality: int
    syscall: str
    seen: int
    before: list[Region]
    after: list[Region]
    after_starts: list[int]
    judgement: Judgement | None
    count: int = 0
    ts: float = 0.0

    def replay(self, process: Process | None, ts: float) -> bool:
        """Apply the call again to `process` (made at `ts`) when everything it
        depends on is as recorded; False, and nothing changed, otherwise."""
        if (process is None or process.space is not self.space or process.info is not self.info
                or process.persona(self.tid) != self.personality):
            return False
        if not self.space.swap(self.seen, self.before, self.after, self.after_starts):
            return False
        self.count += 1
        self.ts = ts
        return True


class Replays:
    """The transitions of one run, by CallAgain key (a few each: the same
    call on its region as the neighbours were at different times), and
    those replayed since their last report."""

    # Transitions kept at once: a source's keys are bounded too (MAX_BODIES).
    LIMIT = 8192
    # Transitions kept per key, the latest first.
    VARIANTS = 4

    def __init__(self) -> None:
        self.memo: dict[int, list[Transition]] = {}
        self.pending: list[Transition] = []
        # The keys of each process's transitions, to forget them with it.
        self._keys: dict[int, set[int]] = {}

    def record(self, key: int, transition: Transition) -> None:
        """Remember `transition` as what the call `key` does from its `before`."""
        if len(self.memo) >= self.LIMIT and key not in self.memo:
            self.memo = {k: kept for k, kept in self.memo.items() if any(t.count for t in kept)}
            self._keys = {}
            for k, kept in self.memo.items():
                self._keys.setdefault(kept[0].pid, set()).add(k)
        self._keys.setdefault(transition.pid, set()).add(key)
        kept = self.memo.setdefault(key, [])
        kept.insert(0, transition)
        del kept[self.VARIANTS:]

    def replay(self, key: int, process: Process | None, ts: float) -> bool:
        """Replay the call `key` on `process` at `ts`; False when it must be judged afresh."""
        for transition in self.memo.get(key, ()):
            if transition.replay(process, ts):
                if transition.count == 1:
                    self.pending.append(transition)
                return True
        return False

    def take(self) -> list[tuple[Transition, int, float]]:
        """Each transition replayed since the last take, with how many times
        and the last one's time (its count starts again from 0)."""
        pending, self.pending = self.pending, []
        taken = []
        for transition in pending:
            taken.append((transition, transition.count, transition.ts))
            transition.count = 0
        return taken

    def forget(self, pid: int) -> None:
        """Forget the transitions of process `pid` (it exited or exec'd: its
        space is gone); those replayed meanwhile are still taken."""
        for key in self._keys.pop(pid, ()):
            self.memo.pop(key, None)

    def clear(self) -> None:
        """Forget every transition (the policy or the enforcer changed); take() first."""
        self.memo.clear()
        self._keys.clear()
