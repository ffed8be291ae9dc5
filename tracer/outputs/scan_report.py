"""Render `trampwatch scan` results: a line per ELF with findings (human) or
one JSON object per file, a summary, and the policy's verdict per file."""

from __future__ import annotations

import json
from typing import TextIO

from ..policy.engine import decide
from ..policy.model import EXEC_PSEUDO_SYSCALL, Action, Facts, Policy
from ..scan import ScanResult, ScanSummary
from .envelope import SCAN_SCHEMA, record

FORBIDDING = (Action.DENY, Action.KILL)


def file_facts(result: ScanResult) -> Facts:
    """A file's findings as the policy judges them: what would happen when
    the file is executed (syscall `exec`), backed by the file itself."""
    return Facts(
        categories=result.categories, syscall=EXEC_PSEUDO_SYSCALL, exe=result.path, comm="", uid=-1,
        backing_kind="file", object_path=result.path, caller_object=result.path,
        prot=frozenset(), gained=frozenset(), new_mapping=True,
    )


class ScanPrinter:
    """Writes scan results as they come and remembers whether the policy
    forbids anything (the exit status for CI gates)."""

    def __init__(self, policy: Policy, as_json: bool, show_all: bool, stream: TextIO):
        self.policy = policy
        self.as_json = as_json
        self.show_all = show_all
        self.stream = stream
        self.forbidden = False

    def result(self, result: ScanResult) -> None:
        """Judge and print one file."""
        decision = decide(self.policy, file_facts(result)) if result.categories else None
        if decision is not None and decision.action in FORBIDDING:
            self.forbidden = True
        if self.as_json:
            self.stream.write(json.dumps(self._record(result, decision)) + "\n")
        elif result.error:
            self.stream.write(f"skipped {result.path}: {result.message} | reason={result.error}\n")
        elif result.findings or self.show_all:
            self.stream.write(self._line(result, decision) + "\n")

    def _line(self, result: ScanResult, decision) -> str:
        kinds = ",".join(f.kind for f in result.findings) or "clean"
        cats = ",".join(c.value for c in result.categories) or "-"
        verdict = decision.action.value if decision else "-"
        rule = (decision.rule or "default") if decision else "-"
        return (f"{result.path}: {kinds} | categories={cats} | verdict={verdict} | rule={rule}"
                + "".join(f" | {f.kind}={f.detail}" for f in result.findings))

    def _record(self, result: ScanResult, decision) -> dict:
        return record(
            SCAN_SCHEMA, "file",
            path=result.path,
            error=result.error,
            message=result.message or None,
            findings=[{"kind": f.kind, "categories": [c.value for c in f.categories], "detail": f.detail}
                      for f in result.findings],
            categories=[c.value for c in result.categories],
            action=decision.action.value if decision else None,
            rule=decision.rule if decision else None,
        )

    def summary(self, summary: ScanSummary) -> None:
        """Print the counts and the speed."""
        counts = {
            "files": summary.files_seen, "elf": summary.elf, "not_elf": summary.not_elf,
            "with_findings": summary.elf_with_findings, "skipped": dict(summary.skipped),
            "errors": dict(summary.errors),
            "categories": {c.value: n for c, n in summary.categories.items()},
            "indicators": dict(summary.indicators),
            "seconds": round(summary.elapsed, 3), "files_per_second": round(summary.files_per_second, 1),
        }
        if self.as_json:
            self.stream.write(json.dumps(record(SCAN_SCHEMA, "summary", **counts)) + "\n")
            return
        self.stream.write(
            f"scanned {summary.files_seen} files ({summary.elf} ELF, {summary.not_elf} not ELF) in "
            f"{summary.elapsed:.2f}s, {summary.files_per_second:.0f} files/s; "
            f"{summary.elf_with_findings} with findings\n")
        for name, table in (("categories", counts["categories"]), ("indicators", counts["indicators"]),
                            ("skipped", counts["skipped"]), ("errors", counts["errors"])):
            if table:
                listed = ", ".join(f"{k} {v}" for k, v in sorted(table.items()))
                self.stream.write(f"  {name}: {listed}\n")
