"""Benchmark: `loyalty export` of a large ledger and member table, CSV and JSON Lines.

    python -m benchmarks.exports [--entries 1000000] [--members 200000]

Creates a throwaway database (from LOYALTY_BENCH_DATABASE_URL, default the local server),
bulk-loads members (with labels) and earn entries whose rules look like a purchase's, then
runs the real export service (`worker.services.exports.export`, the code `loyalty export`
runs) into a file, once per table and format. Prints rows/s per export and the process's
peak RSS after each (the export streams, so it stays flat as the tables grow); target
>= 50,000 rows/s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import tempfile
import time
import uuid
from datetime import UTC, datetime

import asyncpg
from sqlalchemy.engine import make_url

from db import migrate
from db.engine import async_url, create_engine
from worker.services import exports

ADMIN_URL = os.environ.get("LOYALTY_BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
TARGET_ROWS_PER_S = 50_000
OCCURRED_AT = datetime(2026, 6, 1, 2, 0, tzinfo=UTC)
# One purchase's rule provenance, as the ledger stores it.
RULES = json.dumps(
    [
        {
            "rule": "purchase",
            "points": 350,
            "amount": "350.00",
            "tier": "Regular",
            "tier_multiplier": "1.0",
            "rate": "1",
            "unit": "1",
            "rounding": "floor",
            "multipliers": {"tier_multiplier": "1.0"},
            "program_version": "v2026-06",
        },
        {"rule": "first_purchase", "points": 100, "program_version": "v2026-06"},
    ]
)

_LOAD = [
    """
    INSERT INTO members (member_id, tier, available_points, qualifying_points, lifetime_points, birthday, locale,
                         labels, enrolled_at)
    SELECT 'B' || lpad(i::text, 8, '0'), 'Regular', 450, 450, 450, date '1990-01-01' + (i % 10000), 'en',
           ARRAY['plus', 'app'], $2::timestamptz + (i % 180) * interval '1 day'
    FROM generate_series(1, $1) i
    """,
    """
    INSERT INTO ledger_entries (member_id, kind, points, qualifying_points, source, event_id, event_type, rules,
                                occurred_at)
    SELECT 'B' || lpad((i % $2 + 1)::text, 8, '0'), 'earn', 450, 450, 'pos', 'p-' || i, 'purchase', $3::jsonb,
           $4::timestamptz + (i % 180) * interval '1 day'
    FROM generate_series(1, $1) i
    """,
    "ANALYZE",
]


def _cpu_s(pid: int | None) -> float | None:
    """CPU seconds (user + system) of a local process so far: the export's database backend,
    read from /proc; None when it is not on this machine."""
    if pid is None:
        return None
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _peak_rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


async def bench(entries: int, members: int) -> dict:
    url = (
        make_url(async_url(ADMIN_URL))
        .set(database=f"loyalty_bench_{uuid.uuid4().hex[:8]}")
        .render_as_string(hide_password=False)
    )
    await migrate.upgrade(url)
    parsed = make_url(url)
    # One connection, so that every export runs on the backend whose CPU time is read.
    engine = create_engine(url, pool_size=1, max_overflow=0)
    results = []
    try:
        conn = await asyncpg.connect(
            host=parsed.host, port=parsed.port, user=parsed.username, password=parsed.password, database=parsed.database
        )
        started = time.perf_counter()
        await conn.execute(_LOAD[0], members, OCCURRED_AT)
        await conn.execute(_LOAD[1], entries, members, RULES, OCCURRED_AT)
        await conn.execute(_LOAD[2])
        load_s = time.perf_counter() - started
        await conn.close()
        window = exports.bounds("Asia/Shanghai", None, None)
        async with engine.connect() as probe:
            backend = (await probe.exec_driver_sql("SELECT pg_backend_pid()")).scalar_one()
        if _cpu_s(backend) is None:
            backend = None
        with tempfile.TemporaryDirectory() as directory:
            for kind in ("ledger", "members"):
                for fmt in ("csv", "jsonl"):
                    path = os.path.join(directory, f"{kind}.{fmt}")
                    server_cpu, client_cpu = _cpu_s(backend), time.process_time()
                    started = time.perf_counter()
                    # As `loyalty export --out` writes: a local file, opened once.
                    with open(path, "w", encoding="utf-8", newline="") as out:  # noqa: ASYNC230
                        rows = await exports.export(engine, kind, fmt, out, window)  # type: ignore[arg-type]
                    seconds = time.perf_counter() - started
                    client_cpu = time.process_time() - client_cpu
                    server_end = _cpu_s(backend)
                    server_cpu = server_end - server_cpu if server_end is not None and server_cpu is not None else None
                    # The client and its backend work at once (one fetch is formatted while the
                    # next is produced): on two idle cores the busier of them sets the pace.
                    busiest = max(client_cpu, server_cpu or 0.0)
                    results.append(
                        {
                            "export": f"{kind} {fmt}",
                            "rows": rows,
                            "seconds": round(seconds, 2),
                            "rows_per_s": round(rows / seconds),
                            "mb": round(os.path.getsize(path) / 1e6, 1),  # noqa: ASYNC240
                            "peak_rss_mb": _peak_rss_mb(),
                            "client_cpu_s": round(client_cpu, 2),
                            "server_cpu_s": round(server_cpu, 2) if server_cpu is not None else None,
                            "rows_per_cpu_s": round(rows / busiest) if busiest else None,
                        }
                    )
        return {"entries": entries, "members": members, "load_s": round(load_s, 1), "exports": results}
    finally:
        await engine.dispose()
        admin = await asyncpg.connect(
            host=parsed.host, port=parsed.port, user=parsed.username, password=parsed.password, database="postgres"
        )
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{parsed.database}" WITH (FORCE)')
        finally:
            await admin.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--members", type=int, default=200_000)
    args = parser.parse_args()
    result = asyncio.run(bench(args.entries, args.members))
    print(f"loaded {args.entries:,} entries and {args.members:,} members in {result['load_s']} s")
    print(
        f"{'export':<14} {'rows':>10} {'s':>7} {'rows/s':>9} {'MB':>7} {'peak RSS MB':>12} "
        f"{'client CPU s':>13} {'server CPU s':>13} {'rows/busiest CPU s':>19}"
    )
    for r in result["exports"]:
        print(
            f"{r['export']:<14} {r['rows']:>10,} {r['seconds']:>7} {r['rows_per_s']:>9,} {r['mb']:>7} "
            f"{r['peak_rss_mb']:>12} {r['client_cpu_s']:>13} {str(r['server_cpu_s']):>13} "
            f"{r['rows_per_cpu_s'] or '-':>19,}"
        )
    print(f"target >= {TARGET_ROWS_PER_S:,} rows/s")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
