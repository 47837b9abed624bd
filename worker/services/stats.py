"""Operational state for `loyalty stats`, the dashboard and the metrics endpoint.

Queue depths come from the dramatiq Redis broker's keys; the rest from PostgreSQL with a
few indexed or bounded queries, cheap enough to run on every scrape.
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

# Throughput and lag look at this recent window of processed events.
RECENT_WINDOW_MINUTES = 15
# Last scheduler runs shown; the table belongs to the scheduler and may not exist.
SCHEDULER_RUNS_SHOWN = 10


def queue_depths(client: redis.Redis, namespace: str, queues: list[str]) -> dict[str, dict[str, int]]:
    """Per queue: ready (waiting), in_flight (fetched, not acked), delayed (retries, ETAs), dead."""
    out = {}
    for queue in queues:
        key = f"{namespace}:{queue}"
        pipe = client.pipeline(transaction=False)
        pipe.llen(key).hlen(f"{key}.msgs").hlen(f"{key}.DQ.msgs").zcard(f"{key}.XQ")
        ready, stored, delayed, dead = pipe.execute()
        out[queue] = {"ready": ready, "in_flight": max(0, stored - ready), "delayed": delayed, "dead": dead}
    return out


_WORKER_ID = re.compile(r"^worker:(?P<host>[^:]+):(?P<pid>[0-9]+):[0-9a-f]+$")


def worker_id(host: str, pid: int) -> str:
    """The broker id of a process that consumes messages: its host and pid, and a random part
    so that a restarted process with the same pid (pid 7 of a new container) is a new worker,
    never the heir of its predecessor's unacknowledged messages."""
    return f"worker:{host.replace(':', '-')}:{pid}:{uuid.uuid4().hex[:12]}"


def worker_heartbeats(client: redis.Redis, namespace: str, now_s: float) -> list[dict[str, Any]]:
    """Each live worker process's last heartbeat (dramatiq's `<ns>:__heartbeats__`), stalest first.

    Every broker call of a worker is a heartbeat; an idle one polls about every second, so an
    age of more than a few seconds means a stuck or dead process (it is dropped from the set
    once its heartbeat is older than the broker's heartbeat timeout). Every process that sends
    (the API, `publish`, the scheduler) is in the set too, under a bare random id: only the
    ids of `worker_id` are workers.
    """
    rows = client.zrange(f"{namespace}:__heartbeats__", 0, -1, withscores=True)
    out = []
    for member, score in rows:
        name = member.decode() if isinstance(member, bytes) else str(member)
        found = _WORKER_ID.match(name)
        if found is None:
            continue
        out.append(
            {
                "worker_id": name,
                "host": found["host"],
                "pid": int(found["pid"]),
                "last_heartbeat_at": datetime.fromtimestamp(score / 1000, UTC).isoformat(timespec="seconds"),
                "age_seconds": max(0.0, round(now_s - score / 1000, 1)),
            }
        )
    return sorted(out, key=lambda w: -w["age_seconds"])


_REJECTED_OPEN = text("SELECT count(*) FROM rejected_events WHERE status = 'open'")
_OUTBOX = text("SELECT status, count(*) FROM notifications GROUP BY status ORDER BY status")
_OUTBOX_OLDEST = text("SELECT extract(epoch FROM now() - min(created_at)) FROM notifications WHERE status = 'pending'")
_LAG = text(
    """
    SELECT count(*), extract(epoch FROM avg(processed_at - occurred_at)),
           extract(epoch FROM max(processed_at - occurred_at))
    FROM processed_events WHERE processed_at >= now() - make_interval(mins => :minutes)
    """
)
_THROUGHPUT = text(
    """
    SELECT date_trunc('minute', processed_at) AS minute, count(*) FROM processed_events
    WHERE processed_at >= date_trunc('minute', now()) - make_interval(mins => :minutes - 1)
    GROUP BY 1 ORDER BY 1
    """
)


async def database_stats(engine: AsyncEngine, *, minutes: int = RECENT_WINDOW_MINUTES) -> dict[str, Any]:
    async with engine.connect() as conn:
        rejected_open = (await conn.execute(_REJECTED_OPEN)).scalar_one()
        outbox = {status: n for status, n in (await conn.execute(_OUTBOX)).all()}
        oldest = (await conn.execute(_OUTBOX_OLDEST)).scalar_one()
        events, lag_avg, lag_max = (await conn.execute(_LAG, {"minutes": minutes})).one()
        per_minute = (await conn.execute(_THROUGHPUT, {"minutes": minutes})).all()
        now = (await conn.execute(text("SELECT date_trunc('minute', now())"))).scalar_one()
        runs = await _scheduler_runs(conn)
    counts = {minute: n for minute, n in per_minute}
    throughput = [
        {"minute": (now - timedelta(minutes=i)).isoformat(), "events": counts.get(now - timedelta(minutes=i), 0)}
        for i in reversed(range(minutes))
    ]
    return {
        "rejected_open": rejected_open,
        "outbox": outbox,
        "outbox_oldest_pending_seconds": float(oldest) if oldest is not None else None,
        "lag": {
            "window_minutes": minutes,
            "events": events,
            "avg_seconds": float(lag_avg) if lag_avg is not None else None,
            "max_seconds": float(lag_max) if lag_max is not None else None,
        },
        "throughput": throughput,
        "scheduler_runs": runs,
    }


# Newest first by the first of these columns the scheduler's table has.
_SCHEDULER_ORDER = ("planned_at", "scheduled_for")


async def _scheduler_runs(conn) -> list[dict[str, Any]] | None:
    """The scheduler's recent firings, or None when this deployment has no scheduler table."""
    columns = (
        (
            await conn.execute(
                text(
                    "SELECT column_name FROM information_schema.columns "
                    "WHERE table_schema = current_schema() AND table_name = 'scheduler_firings' ORDER BY ordinal_position"
                )
            )
        )
        .scalars()
        .all()
    )
    if not columns:
        return None
    order = next((c for c in _SCHEDULER_ORDER if c in columns), columns[0])
    rows = (
        (
            await conn.execute(
                text(f'SELECT * FROM scheduler_firings ORDER BY "{order}" DESC LIMIT {SCHEDULER_RUNS_SHOWN}')
            )
        )
        .mappings()
        .all()
    )
    return [{k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in row.items()} for row in rows]


async def collect(engine: AsyncEngine, client: redis.Redis, namespace: str, queues: list[str]) -> dict[str, Any]:
    import time

    return {
        "queues": queue_depths(client, namespace, queues),
        "workers": worker_heartbeats(client, namespace, time.time()),
        **await database_stats(engine),
    }
