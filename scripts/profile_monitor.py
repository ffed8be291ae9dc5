"""Where the monitor's user-space CPU goes, per record: decoding and judging
measured apart, on records captured from the real kernel.

    .venv/bin/python scripts/profile_monitor.py [--mode hist|wx] [--flips N] [--reps R] [--profile]

Runs flip_flood (scripts/bench_programs/flip_flood.c, built here) under an EbpfSource that
sends every call (no kernel repeats) with a ring buffer big enough to lose
nothing, keeps the raw records, then decodes them (EbpfSource.decode) and
judges the events (pipeline.feed_ebpf, default policy, text + JSON + summary
outputs to /dev/null) R times, printing the CPU time of each per record.
`--profile` adds cProfile's top functions of one more pass. Needs root.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tracer.collector import cycle_collector_paused  # noqa: E402
from tracer.outputs.jsonl import JsonLinesOutput  # noqa: E402
from tracer.outputs.summary import Summary  # noqa: E402
from tracer.outputs.text import TextOutput  # noqa: E402
from tracer.pipeline import Judge, feed_ebpf  # noqa: E402
from tracer.policy.loader import resolve_policy  # noqa: E402
from tracer.sources.ebpf_source import EbpfConfig, EbpfSource  # noqa: E402


def capture(source: EbpfSource, flood: Path, mode: str, flips: int) -> list[bytes]:
    """Run `flood MODE flips` and return every record it caused."""
    records: list[bytes] = []
    proc = subprocess.Popen([str(flood), mode, str(flips)], stdout=subprocess.DEVNULL)
    while proc.poll() is None:
        source.wait(50)
        records += source.take()
    time.sleep(0.3)  # the exit record's wake-up
    return records + source.take()


def judge_all(events: list) -> Judge:
    """Judge `events` as `monitor` does, writing every output to /dev/null."""
    with open(os.devnull, "w", encoding="utf-8") as sink:
        outputs = [TextOutput(sink), JsonLinesOutput(sink), Summary(sink)]
        judge = Judge(resolve_policy("default"), "audit", outputs, source="ebpf")
        feed_ebpf(judge, events)
        judge.finish(None)
    return judge


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=("hist", "wx"), default="hist")
    parser.add_argument("--flips", type=int, default=20_000)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        flood = Path(tmp) / "flip_flood"
        subprocess.run(["gcc", "-O2", "-o", str(flood), str(ROOT / "scripts/bench_programs/flip_flood.c")],
                       check=True)
        with EbpfSource(EbpfConfig(comms=("flip_flood",), repeats=False, buffer_pages=32768)) as source:
            records = capture(source, flood, args.mode, args.flips)
            print(f"{len(records):,} records of flip_flood {args.mode} {args.flips:,}, {source.lost()} lost; "
                  f"load average {os.getloadavg()[0]:.2f}")
            for _ in range(args.reps):
                with cycle_collector_paused():  # as monitor judges a batch
                    started = time.process_time()
                    events = source.decode(records)
                    decoded = time.process_time()
                    judge = judge_all(events)
                    judged = time.process_time()
                per = 1e6 / len(records)
                print(f"decode {(decoded - started) * per:.2f} µs/record, "
                      f"judge {(judged - decoded) * per:.2f}, total {(judged - started) * per:.2f} "
                      f"({judge.stats.judged:,} judgements)")
            if args.profile:
                profile = cProfile.Profile()
                profile.enable()
                judge_all(source.decode(records))
                profile.disable()
                out = io.StringIO()
                pstats.Stats(profile, stream=out).sort_stats("tottime").print_stats(25)
                print(out.getvalue())


if __name__ == "__main__":
    main()
