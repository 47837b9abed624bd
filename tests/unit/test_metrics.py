"""Metric helpers other modules call: scheduler job runs, deliveries, lag."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from prometheus_client import REGISTRY

from worker import metrics


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_scheduler_job_counts_ok_and_error_runs_and_times_them():
    before_ok = sample("loyalty_scheduler_job_runs_total", job="unit-expiry", outcome="ok")

    with metrics.scheduler_job("unit-expiry"):
        pass
    with pytest.raises(RuntimeError):
        with metrics.scheduler_job("unit-expiry"):
            raise RuntimeError("database gone")

    assert sample("loyalty_scheduler_job_runs_total", job="unit-expiry", outcome="ok") == before_ok + 1
    assert sample("loyalty_scheduler_job_runs_total", job="unit-expiry", outcome="error") == 1
    assert sample("loyalty_scheduler_job_duration_seconds_count", job="unit-expiry") == 2


def test_lag_is_observed_in_seconds_and_never_negative():
    metrics.observe_lag(
        "unit-type", datetime(2026, 11, 24, 12, 0, tzinfo=UTC), datetime(2026, 11, 24, 12, 0, 3, tzinfo=UTC)
    )
    metrics.observe_lag(
        "unit-type", datetime(2026, 11, 24, 12, 0, 5, tzinfo=UTC), datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
    )

    assert sample("loyalty_event_lag_seconds_sum", type="unit-type") == 3.0
    assert sample("loyalty_event_lag_seconds_bucket", type="unit-type", le="0.05") == 1


def test_ledger_points_count_magnitudes_by_kind():
    metrics.count_ledger([("unit-redeem", -600, 1), ("unit-earn", 450, 2)])

    assert sample("loyalty_ledger_points_total", kind="unit-redeem") == 600
    assert sample("loyalty_ledger_entries_total", kind="unit-earn") == 2
