"""Prometheus metrics. Labels are low-cardinality by design: never a member id."""

from __future__ import annotations

from prometheus_client import Counter

EVENTS_PROCESSED = Counter(
    "loyalty_events_processed_total",
    "Events that reached a final outcome, by type, source and outcome.",
    ["type", "source", "outcome"],
)


def count_outcome(event_type: str | None, source: str | None, outcome: str) -> None:
    EVENTS_PROCESSED.labels(event_type or "unknown", source or "unknown", outcome).inc()


def outcome_totals() -> dict[str, int]:
    totals: dict[str, int] = {}
    for metric in EVENTS_PROCESSED.collect():
        for sample in metric.samples:
            if sample.name.endswith("_total"):
                key = sample.labels["outcome"]
                totals[key] = totals.get(key, 0) + int(sample.value)
    return totals
