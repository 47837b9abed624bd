"""Operational state read from PostgreSQL and the broker's Redis keys."""

from __future__ import annotations

import redis
from sqlalchemy import text

from tests.conftest import NOW, REDIS_URL
from tests.factories import purchase
from worker.domain.program import DEFAULT_PROGRAM
from worker.services import intake, stats


async def test_database_stats_count_rejected_outbox_throughput_and_lag(db):
    for raw in (purchase("S1", "100.00"), purchase("S2", "2000.00"), purchase("S3", "1.005")):
        await intake.process(db, DEFAULT_PROGRAM, raw, now=NOW)

    data = await stats.database_stats(db, minutes=5)

    assert data["rejected_open"] == 1
    assert data["outbox"] == {"pending": 3}  # two points_earned, one tier_upgraded (S2 to Silver)
    assert [row["events"] for row in data["throughput"]][-1] == 2 and len(data["throughput"]) == 5
    assert data["lag"]["events"] == 2 and data["lag"]["max_seconds"] > 0
    assert data["scheduler_runs"] == []  # the table exists, no firing yet


async def test_scheduler_runs_are_shown_newest_first(db):
    async with db.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO scheduler_firings (job, scheduled_for, planned_at) VALUES"
                " ('birthday', '2026-11-24T00:00Z', '2026-11-24T00:00:01Z'),"
                " ('expire-points', '2026-11-24T01:00Z', '2026-11-24T01:00:01Z')"
            )
        )

    data = await stats.database_stats(db)

    assert [(r["job"], r["planned_at"]) for r in data["scheduler_runs"]] == [
        ("expire-points", "2026-11-24T01:00:01+00:00"),
        ("birthday", "2026-11-24T00:00:01+00:00"),
    ]


def test_queue_depths_read_the_broker_keys(redis_namespace):
    client = redis.Redis.from_url(REDIS_URL)
    ns = f"{redis_namespace}-depths"
    client.rpush(f"{ns}:events", "a", "b")
    client.hset(f"{ns}:events.msgs", mapping={"a": "1", "b": "2", "c": "3"})
    client.hset(f"{ns}:events.DQ.msgs", mapping={"d": "4"})
    client.zadd(f"{ns}:events.XQ", {"e": 1, "f": 2})
    try:
        depths = stats.queue_depths(client, ns, ["events"])
    finally:
        client.delete(f"{ns}:events", f"{ns}:events.msgs", f"{ns}:events.DQ.msgs", f"{ns}:events.XQ")

    assert depths == {"events": {"ready": 2, "in_flight": 1, "delayed": 1, "dead": 2}}


def test_worker_heartbeats_list_each_worker_stalest_first(redis_namespace):
    client = redis.Redis.from_url(REDIS_URL)
    ns = f"{redis_namespace}-beats"
    now_s = 1_764_000_000.0
    fresh, stuck = stats.worker_id("host-a", 7), stats.worker_id("host-b", 4242)
    # An API process or `loyalty publish` sends messages too, under dramatiq's bare random id.
    sender = "6f1c2e64-1d7b-4c57-9d0c-2f1f0b7e8a11"
    client.zadd(
        f"{ns}:__heartbeats__", {fresh: now_s * 1000 - 500, stuck: now_s * 1000 - 90_000, sender: now_s * 1000 - 100}
    )
    try:
        beats = stats.worker_heartbeats(client, ns, now_s)
    finally:
        client.delete(f"{ns}:__heartbeats__")

    assert beats == [
        {
            "worker_id": stuck,
            "host": "host-b",
            "pid": 4242,
            "last_heartbeat_at": "2025-11-24T15:58:30+00:00",
            "age_seconds": 90.0,
        },
        {
            "worker_id": fresh,
            "host": "host-a",
            "pid": 7,
            "last_heartbeat_at": "2025-11-24T15:59:59+00:00",
            "age_seconds": 0.5,
        },
    ]


def test_worker_ids_differ_for_the_same_host_and_pid():
    """A restarted container's worker has the pid of the one before: it must not take over the
    dead one's unacknowledged messages, which dramatiq keeps under the broker id."""
    first, second = stats.worker_id("host-a", 7), stats.worker_id("host-a", 7)

    assert first != second
    assert first.startswith("worker:host-a:7:") and second.startswith("worker:host-a:7:")
