"""Prometheus metrics. Labels are low-cardinality by design: never a member id."""

from __future__ import annotations

import re

from prometheus_client import Counter

EVENTS_PROCESSED = Counter(
    "loyalty_events_processed_total",
    "Events that reached a final outcome, by type, source and outcome.",
    ["type", "source", "outcome"],
)


# Label values from rejected input are whatever a producer sent: only contract-shaped ones
# become labels, anything else is counted as "invalid" so garbage cannot add time series.
_SOURCE_LABEL = re.compile(r"^[a-z0-9_-]{1,32}$")


def count_outcome(event_type: str | None, source: str | None, outcome: str) -> None:
    from worker.domain.events import EVENT_TYPES

    type_label = event_type if event_type in EVENT_TYPES else ("unknown" if event_type is None else "invalid")
    source_label = source if source and _SOURCE_LABEL.match(source) else ("unknown" if source is None else "invalid")
    EVENTS_PROCESSED.labels(type_label, source_label, outcome).inc()


def outcome_totals() -> dict[str, int]:
    totals: dict[str, int] = {}
    for metric in EVENTS_PROCESSED.collect():
        for sample in metric.samples:
            if sample.name.endswith("_total"):
                key = sample.labels["outcome"]
                totals[key] = totals.get(key, 0) + int(sample.value)
    return totals
