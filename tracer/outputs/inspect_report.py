"""Render `trampwatch inspect` reports: a table per process and JSON
(schema trampwatch.inspect/v2, docs/events.md)."""

from __future__ import annotations

from .. import trampolines as tr
from ..inspect import InspectAll, Judged, ProcessReport, SymbolRef, TrampolineReport, forbidden
from .envelope import INSPECT_SCHEMA, address, record


def _verdict(judged: Judged) -> str:
    text = f" | judged-as={judged.syscall}"
    if judged.decision is not None:
        text += f" verdict={judged.decision.action.value}"
        if judged.decision.rule:
            text += f" rule={judged.decision.rule}"
    return text


def _trampoline_line(t: TrampolineReport) -> str:
    target = str(t.target) if t.target is not None else "an unreadable target"
    pairs = [f"kind={t.kind}", f"variant={t.variant!r}"]
    if t.data is not None:
        pairs.append(f"{t.data_kind}={t.data:#x}")
    if t.live is not None:
        pairs.append(f"live={'yes' if t.live else 'no'}")
    c = t.closure
    if c is not None:
        pairs += [f"cif={c.cif:#x}", f"fun={c.fun}", f"user_data={c.user_data:#x}"]
        if c.nargs is not None:
            pairs.append(f"nargs={c.nargs}")
        if c.callback is not None:
            cb = c.callback
            name = f"{cb.module}.{cb.qualname}" if cb.qualname and cb.module else (cb.qualname or "?")
            bound = " (bound method)" if cb.type_name == "method" else ""
            pairs.append(f"callback={name + bound if cb.qualname else cb.type_name}")
        elif c.callback_note:
            pairs.append(f"callback-unknown={c.callback_note!r}")
    what = {tr.LIBFFI_CLOSURE: "libffi closure", tr.LIBFFI_STATIC: "libffi static trampoline",
            tr.GCC_NESTED: "GCC nested-function trampoline", tr.TRAMPFD_V2: "trampfd v2 trampoline"}[t.kind]
    lines = [f"    {what} at {t.addr:#x} jumps to {target} | " + " ".join(pairs)]
    lines += [f"      {line}" for line in t.disasm]
    return "\n".join(lines)


def render_text(report: ProcessReport) -> str:
    """Return the human report of one process: a sentence per region and per
    trampoline, each followed by ` | key=value` pairs."""
    count = len(report.trampolines)
    head = (f"pid {report.pid} {report.comm} ({report.exe or 'no executable'}) uid={report.uid}: "
            f"{len(report.regions)} region(s) of interest, {count} trampoline(s)")
    pairs = []
    if report.python:
        pairs.append(f"python={report.python}")
    if report.policy is not None:
        pairs += [f"policy={report.policy}", f"forbidden={'yes' if forbidden(report) else 'no'}"]
    lines = [head + (" | " + " ".join(pairs) if pairs else "")]
    for category, judged in report.findings:
        lines.append(f"  the whole process: {category.value}{_verdict(judged)}")
    # Regions alike share their judgement (tracer/inspect.py): say each once.
    said: dict[tuple, str] = {}
    for r in report.regions:
        key = (r.perms, r.path, r.backing, r.categories, id(r.judged))
        what = said.get(key)
        if what is None:
            cats = ", ".join(c.value for c in r.categories) or "no W^X category"
            what = said[key] = f" {r.perms} {r.path or '[anon]'} ({r.backing}): {cats}{_verdict(r.judged)}"
        line = f"  {r.start:#x}-{r.end:#x}{what}"
        if r.aliases:
            line += " aliases=" + ",".join(f"{s:#x}-{e:#x}:{p}" for s, e, p in r.aliases)
        if r.free_slots:
            line += f" unused-slots={r.free_slots}"
        if r.truncated:
            line += f" scanned={r.scanned}"
        if r.note:
            line += f" note={r.note!r}"
        lines.append(line)
        lines += [_trampoline_line(t) for t in r.trampolines]
    lines += [f"  note: {note}" for note in report.notes]
    return "\n".join(lines)


def _hazards(result: InspectAll) -> int:
    return sum(1 for r in result.reports if any(region.categories for region in r.regions))


def render_summary(result: InspectAll) -> str:
    """Return the one-line summary of inspect_all(): inspected and skipped counts."""
    skipped = " ".join(f"{reason}={n}" for reason, n in sorted(result.skipped.items()))
    return (f"inspected {len(result.reports)} process(es), {_hazards(result)} with W^X hazards, "
            f"skipped {sum(result.skipped.values())}" + (f" | {skipped}" if skipped else ""))


def summary_json(result: InspectAll) -> dict:
    """Return the summary record of inspect_all() (what render_summary says)."""
    return record(INSPECT_SCHEMA, "summary", processes=len(result.reports), with_hazards=_hazards(result),
                  skipped=dict(result.skipped))



def _symbol_json(ref: SymbolRef | None) -> dict | None:
    if ref is None:
        return None
    return {"addr": address(ref.addr), "object": ref.object, "symbol": ref.symbol,
            "offset": address(ref.offset), "source": ref.source}


def _judged_json(judged: Judged) -> dict:
    decision = judged.decision
    return {
        "syscall": judged.syscall,
        "prot": sorted(judged.prot),
        "gained": sorted(judged.gained),
        "new_mapping": judged.new_mapping,
        "decision": None if decision is None else {"action": decision.action.value, "rule": decision.rule},
    }


def _trampoline_json(t: TrampolineReport) -> dict:
    closure = None
    if t.closure is not None:
        c = t.closure
        callback = None
        if c.callback is not None:
            cb = c.callback
            callback = {"thunk": address(cb.thunk), "callable": address(cb.callable), "type": cb.type_name,
                        "qualname": cb.qualname, "module": cb.module}
        closure = {"closure": address(c.closure), "cif": address(c.cif), "fun": _symbol_json(c.fun),
                   "user_data": address(c.user_data), "abi": c.abi, "nargs": c.nargs, "callback": callback,
                   "callback_note": c.callback_note or None}
    return {"kind": t.kind, "variant": t.variant, "addr": address(t.addr), "size": t.size,
            "target": _symbol_json(t.target), "data": address(t.data), "data_kind": t.data_kind,
            "closure": closure, "live": t.live, "disasm": list(t.disasm)}


def report_json(report: ProcessReport) -> dict:
    """Return the report as a JSON-ready `process` record (docs/events.md);
    addresses are hexadecimal strings."""
    return record(
        INSPECT_SCHEMA, "process",
        pid=report.pid,
        exe=report.exe,
        comm=report.comm,
        uid=report.uid,
        python=report.python,
        personality=None if report.personality is None else f"{report.personality:#x}",
        policy=report.policy,
        forbidden=forbidden(report) if report.policy is not None else None,
        findings=[{"category": c.value, "judged": _judged_json(j)} for c, j in report.findings],
        regions=[
            {
                "start": address(r.start), "end": address(r.end), "perms": r.perms, "path": r.path,
                "backing": r.backing, "categories": [c.value for c in r.categories],
                "judged": _judged_json(r.judged),
                "aliases": [{"start": address(s), "end": address(e), "perms": p} for s, e, p in r.aliases],
                "note": r.note or None, "scanned_bytes": r.scanned, "truncated": r.truncated,
                "unused_slots": r.free_slots,
                "trampolines": [_trampoline_json(t) for t in r.trampolines],
            }
            for r in report.regions
        ],
        notes=list(report.notes),
    )
