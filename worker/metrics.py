"""Prometheus metrics. Labels are low-cardinality by design: never a member id.

Worker processes started by `loyalty worker` write these into prometheus_client's
multiprocess directory (PROMETHEUS_MULTIPROC_DIR, set before this module is imported);
`worker.metrics_server` serves them together with dramatiq's queue metrics and gauges read
from PostgreSQL and Redis at scrape time. Other processes (the scheduler) may call
`serve_in_process(port)` instead.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

from prometheus_client import Counter, Histogram

EVENTS_PROCESSED = Counter(
    "loyalty_events_processed_total",
    "Events that reached a final outcome, by type, source and outcome.",
    ["type", "source", "outcome"],
)
LEDGER_POINTS = Counter(
    "loyalty_ledger_points_total",
    "Points moved by committed ledger entries, by entry kind (earn = issued, reverse, redeem, expire, ...).",
    ["kind"],
)
LEDGER_ENTRIES = Counter(
    "loyalty_ledger_entries_total",
    "Committed ledger entries, by kind.",
    ["kind"],
)
TIER_CHANGES = Counter(
    "loyalty_tier_changes_total",
    "Committed tier changes, by the tier left and the tier reached.",
    ["from_tier", "to_tier"],
)
NOTIFICATION_DELIVERIES = Counter(
    "loyalty_notification_deliveries_total",
    "Outbox delivery attempts, by notification kind and outcome (sent, failed).",
    ["kind", "outcome"],
)
SCHEDULER_JOB_RUNS = Counter(
    "loyalty_scheduler_job_runs_total",
    "Scheduler job runs, by job and outcome (ok, error).",
    ["job", "outcome"],
)
SCHEDULER_JOB_DURATION = Histogram(
    "loyalty_scheduler_job_duration_seconds",
    "Wall time of scheduler job runs.",
    ["job"],
    buckets=(0.01, 0.05, 0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600),
)
# From the event's occurred_at to the commit that applied it. Backfills and POS uploads at
# the end of the day land in the upper buckets; live events in the lower ones.
EVENT_LAG = Histogram(
    "loyalty_event_lag_seconds",
    "End-to-end lag of applied events: occurred_at to commit.",
    ["type"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 21600, 86400, 604800),
)


# Label values from rejected input are whatever a producer sent: only contract-shaped ones
# become labels, anything else is counted as "invalid" so garbage cannot add time series.
_SOURCE_LABEL = re.compile(r"^[a-z0-9_-]{1,32}$")


def count_outcome(event_type: str | None, source: str | None, outcome: str) -> None:
    from worker.domain.events import EVENT_TYPES

    type_label = event_type if event_type in EVENT_TYPES else ("unknown" if event_type is None else "invalid")
    source_label = source if source and _SOURCE_LABEL.match(source) else ("unknown" if source is None else "invalid")
    EVENTS_PROCESSED.labels(type_label, source_label, outcome).inc()


def count_ledger(movements: Iterable[tuple[str, int, int]]) -> None:
    """(kind, points, entries) rows of one committed transaction."""
    for kind, points, entries in movements:
        LEDGER_POINTS.labels(kind).inc(abs(points))
        LEDGER_ENTRIES.labels(kind).inc(entries)


def count_tier_changes(changes: Iterable[tuple[str, str]]) -> None:
    for from_tier, to_tier in changes:
        TIER_CHANGES.labels(from_tier, to_tier).inc()


def count_delivery(kind: str, outcome: str) -> None:
    NOTIFICATION_DELIVERIES.labels(kind, outcome).inc()


# The outcomes count_delivery is called with (the outbox statuses after an attempt).
DELIVERY_OUTCOMES = ("sent", "failed", "dead")


def export_zeros(notification_kinds: Iterable[str]) -> None:
    """Create the delivery series at 0, so a healthy system shows 0 rather than "No data"
    (and rate() over them works from the first failure on)."""
    for kind in notification_kinds:
        for outcome in DELIVERY_OUTCOMES:
            NOTIFICATION_DELIVERIES.labels(kind, outcome)


def observe_lag(event_type: str, occurred_at: datetime, committed_at: datetime | None = None) -> None:
    committed_at = committed_at or datetime.now(UTC)
    EVENT_LAG.labels(event_type).observe(max(0.0, (committed_at - occurred_at).total_seconds()))


@contextmanager
def scheduler_job(job: str) -> Iterator[None]:
    """Count and time one scheduler job run: `with metrics.scheduler_job("expiry"): ...`."""
    started = time.perf_counter()
    outcome = "error"
    try:
        yield
        outcome = "ok"
    finally:
        SCHEDULER_JOB_DURATION.labels(job).observe(time.perf_counter() - started)
        SCHEDULER_JOB_RUNS.labels(job, outcome).inc()


def serve_in_process(port: int, host: str = "0.0.0.0") -> None:
    """Expose this process's metrics (for processes outside the dramatiq worker)."""
    from prometheus_client import start_http_server

    start_http_server(port, addr=host)


def outcome_totals() -> dict[str, int]:
    totals: dict[str, int] = {}
    for metric in EVENTS_PROCESSED.collect():
        for sample in metric.samples:
            if sample.name.endswith("_total"):
                key = sample.labels["outcome"]
                totals[key] = totals.get(key, 0) + int(sample.value)
    return totals
