"""Benchmark: the expire-points job on a large number of due lots.

    python -m benchmarks.expiry [--lots 1000000] [--lots-per-member 20] [--concurrency 4]

Creates a throwaway database (from LOYALTY_BENCH_DATABASE_URL, default the local server),
bulk-loads members, earn entries and lots that are all due, then runs the real job: one plan
and every chunk through `worker.jobs`, `--concurrency` chunks at a time as that many
workers would. Prints the figures and JSON; ends with the audit of every balance.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
import uuid
from datetime import UTC, datetime

import asyncpg
from sqlalchemy.engine import make_url

from db import migrate
from db.engine import async_url, create_engine
from worker import jobs
from worker.domain.program import DEFAULT_PROGRAM
from worker.services.audit import audit_all

ADMIN_URL = os.environ.get("LOYALTY_BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
# Every lot is earned at this time, so all are due when the job runs a year and a day later.
EARNED_AT = datetime(2025, 1, 1, 2, 0, tzinfo=UTC)
RUN_AT = datetime(2026, 1, 2, 16, 5, tzinfo=UTC)

_LOAD = [
    """
    INSERT INTO members (member_id, tier, available_points, qualifying_points, lifetime_points)
    SELECT 'B' || lpad(i::text, 8, '0'), 'Regular', $2 * 50, $2 * 50, $2 * 50 FROM generate_series(1, $1) i
    """,
    """
    INSERT INTO ledger_entries (member_id, kind, points, qualifying_points, source, event_id, event_type, occurred_at)
    SELECT 'B' || lpad(i::text, 8, '0'), 'earn', 50, 50, 'bench', i || '-' || j, 'purchase', $3
    FROM generate_series(1, $1) i, generate_series(1, $2) j
    """,
    """
    INSERT INTO lots (member_id, entry_id, points, remaining, earned_at, expires_at)
    SELECT member_id, entry_id, 50, 50, occurred_at, occurred_at + interval '365 days' FROM ledger_entries
    """,
    "ANALYZE",
]


async def _admin(url: str) -> asyncpg.Connection:
    parsed = make_url(url)
    return await asyncpg.connect(
        host=parsed.host, port=parsed.port, user=parsed.username, password=parsed.password, database="postgres"
    )


async def bench(lots: int, per_member: int, concurrency: int) -> dict:
    url = (
        make_url(async_url(ADMIN_URL))
        .set(database=f"loyalty_bench_{uuid.uuid4().hex[:8]}")
        .render_as_string(hide_password=False)
    )
    await migrate.upgrade(url)
    members = lots // per_member
    engine = create_engine(url, pool_size=concurrency, max_overflow=0)
    try:
        parsed = make_url(url)
        conn = await asyncpg.connect(
            host=parsed.host, port=parsed.port, user=parsed.username, password=parsed.password, database=parsed.database
        )
        started = time.perf_counter()
        values = (members, per_member, EARNED_AT)
        for statement in _LOAD:
            used = sum(f"${n}" in statement for n in (1, 2, 3))
            await conn.execute(statement, *values[:used])
        load_s = time.perf_counter() - started
        await conn.close()

        ranges = []

        async def collect(spans):
            ranges.extend(spans)

        started = time.perf_counter()
        await jobs.plan(engine, DEFAULT_PROGRAM, "expire-points", RUN_AT, collect)
        gate = asyncio.Semaphore(concurrency)

        async def chunk(span):
            async with gate:
                return await jobs.run_chunk(engine, DEFAULT_PROGRAM, "expire-points", RUN_AT, span.after, span.upto)

        results = await asyncio.gather(*(chunk(span) for span in ranges))
        expire_s = time.perf_counter() - started
        expired = sum(r.points for r in results) // 50
        audit = await audit_all(engine)
        return {
            "lots": members * per_member,
            "members": members,
            "chunks": len(ranges),
            "concurrency": concurrency,
            "load_s": round(load_s, 1),
            "expire_s": round(expire_s, 2),
            "lots_per_s": round(expired / expire_s),
            "lots_expired": expired,
            "audit_clean": audit.clean,
        }
    finally:
        await engine.dispose()
        admin = await _admin(ADMIN_URL)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{make_url(url).database}" WITH (FORCE)')
        finally:
            await admin.close()


def run(database_url: str | None = None, lots: int = 1_000_000) -> dict:
    """The step `python -m benchmarks` runs: always in a database of its own, so the main
    benchmark's data and its correctness check are untouched."""
    result = asyncio.run(bench(lots, 20, 4))
    return {**result, "seconds": result["expire_s"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lots", type=int, default=1_000_000)
    parser.add_argument("--lots-per-member", type=int, default=20)
    parser.add_argument("--concurrency", type=int, default=4, help="chunks run at once (workers)")
    args = parser.parse_args()
    result = asyncio.run(bench(args.lots, args.lots_per_member, args.concurrency))
    print(
        f"expired {result['lots_expired']:,} lots of {result['members']:,} members in {result['expire_s']} s "
        f"({result['lots_per_s']:,} lots/s, {result['chunks']} chunks, {result['concurrency']} at a time); "
        f"target <= 30 s; audit {'clean' if result['audit_clean'] else 'NOT CLEAN'}"
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
