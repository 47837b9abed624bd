"""Rows and statements per event: what a purchase costs the database on each path.

Runs in the benchmark's own process on its database, with the statement counter of the tests
(`tests/statements.py`: every statement SQLAlchemy or asyncpg sends, transaction control and
the pool's liveness checks included) and row counts of every table before and after:

- **one-event purchases**: new purchases through the worker's group commit, all in flight at
  once (so they commit in groups of up to `LOYALTY_GROUP_MAX`, as under load), and one alone;
- **batch events**: one batch message's worth of the benchmark's mix through the batch path.

Rows are rows added (claims, members, orders, entries, lots, notifications, ...); the balance
row's update is not counted.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from sqlalchemy import text

from db.engine import create_engine
from tests.statements import count_statements
from worker.config import DEFAULT_GROUP_MAX
from worker.domain.engine import load_program
from worker.services import intake
from worker.services.group_commit import GroupCommit

PURCHASES = 256


async def _rows(engine) -> dict[str, int]:
    async with engine.connect() as conn:
        names = (
            await conn.execute(
                text("SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'alembic_version'")
            )
        ).scalars()
        counts = {}
        for name in list(names):
            counts[name] = (await conn.execute(text(f'SELECT count(*) FROM "{name}"'))).scalar_one()
        return counts


async def _measure(engine, events: list[dict], run) -> dict:
    before = await _rows(engine)
    with count_statements(engine) as counted:
        await run(events)
    after = await _rows(engine)
    added = {name: after[name] - before.get(name, 0) for name in after if after[name] != before.get(name, 0)}
    n = len(events)
    return {
        "events": n,
        "statements_per_event": round(len(counted) / n, 2),
        "queries_per_event": round(len(counted.queries) / n, 2),
        "rows_per_event": round(sum(added.values()) / n, 2),
        "rows_by_table": {name: round(count / n, 2) for name, count in sorted(added.items())},
    }


async def _run(url: str, purchases: list[dict], alone: dict, batch: list[dict]) -> dict:
    engine = create_engine(url, pool_size=4, max_overflow=2, pre_ping=False)
    program = load_program(None)
    now = datetime.now(UTC)
    try:
        group = GroupCommit(engine, group_max=DEFAULT_GROUP_MAX, wait_ms=0, concurrency=2)

        async def grouped(events: list[dict]) -> None:
            await asyncio.gather(*(intake.process(engine, program, e, now=now, apply=group.apply) for e in events))

        async def one(events: list[dict]) -> None:
            for e in events:
                await intake.process(engine, program, e, now=now, apply=group.apply)

        async def batched(events: list[dict]) -> None:
            await intake.process_batch(engine, program, events, now=now)

        result = {
            "one_event_purchase_grouped": await _measure(engine, purchases, grouped),
            "one_event_purchase_alone": await _measure(engine, [alone], one),
            "batch_event": await _measure(engine, batch, batched),
        }
        await group.stop()
        return result
    finally:
        await engine.dispose()


def measure(url: str, workload, batch_size: int) -> dict:
    """`workload` (benchmarks.workload.Workload) supplies fresh events: PURCHASES + 1 new
    purchases and one batch of `batch_size` events of the mix."""
    purchases: list[dict] = []
    while len(purchases) < PURCHASES + 1:
        purchases += [e for e in workload.take(200) if e["type"] == "purchase"]
    return asyncio.run(_run(url, purchases[:PURCHASES], purchases[PURCHASES], workload.take(batch_size)))
