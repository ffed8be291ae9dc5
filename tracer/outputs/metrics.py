"""Prometheus metrics for `monitor --metrics HOST:PORT` (prometheus-client):
events, violations by category and rule, lost records, kills."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

from ..events import RecordsLost
from ..judgement import Judgement, Outcome


class MetricsOutput:
    """Counts judgements into Prometheus metrics served over HTTP."""

    def __init__(self, host: str, port: int):
        self.registry = CollectorRegistry()
        self.events = Counter("trampwatch_events", "W^X events judged", registry=self.registry)
        self.violations = Counter("trampwatch_violations", "W^X events by category and rule",
                                  ["category", "rule", "verdict"], registry=self.registry)
        self.kills = Counter("trampwatch_kills", "processes seen killed by enforcement",
                             registry=self.registry)
        self.lost_records = Gauge("trampwatch_lost_records", "records the kernel could not deliver",
                          registry=self.registry)
        self.server, self.thread = start_http_server(port, addr=host, registry=self.registry)

    def emit(self, judgement: Judgement) -> None:
        """Count one judgement."""
        self.events.inc(judgement.count)
        rule = judgement.rule or "default"
        for category in judgement.categories:
            self.violations.labels(category.value, rule, judgement.outcome.value).inc(judgement.count)
        if judgement.outcome is Outcome.KILLED:
            self.kills.inc()

    def lost(self, event: RecordsLost) -> None:
        """Publish the lost-record count."""
        self.lost_records.set(event.total)

    def close(self, stats) -> None:
        """Stop serving."""
        self.lost_records.set(stats.lost)
        self.server.shutdown()
