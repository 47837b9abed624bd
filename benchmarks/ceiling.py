"""PostgreSQL ceilings: a ledger-style insert+update transaction, as fast as the server takes it
(the yardstick of one-event messages), and COPY of ledger-style rows (the yardstick of batches).

Two client processes with 8 asyncpg connections each (16 in all, like 2 workers × 8 threads),
so that the Python client side is not the limit.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import random
import time

import asyncpg

ACCOUNTS = 10_000
CLIENT_PROCESSES = 2
CONNECTIONS_PER_PROCESS = 8

SETUP = f"""
DROP TABLE IF EXISTS bench_ledger, bench_balance;
CREATE TABLE bench_balance (account int PRIMARY KEY, points bigint NOT NULL DEFAULT 0);
CREATE TABLE bench_ledger (entry_id bigserial PRIMARY KEY, account int NOT NULL, points int NOT NULL,
                           at timestamptz NOT NULL DEFAULT now());
INSERT INTO bench_balance (account) SELECT g FROM generate_series(0, {ACCOUNTS - 1}) g;
"""
TEARDOWN = "DROP TABLE IF EXISTS bench_ledger, bench_balance"


async def _client(dsn: str, seconds: float, seed: int) -> int:
    rng = random.Random(seed)
    conn = await asyncpg.connect(dsn)
    insert = await conn.prepare("INSERT INTO bench_ledger (account, points) VALUES ($1, $2)")
    update = await conn.prepare("UPDATE bench_balance SET points = points + $2 WHERE account = $1")
    done = 0
    deadline = time.perf_counter() + seconds
    try:
        while time.perf_counter() < deadline:
            account, points = rng.randrange(ACCOUNTS), rng.randint(1, 500)
            async with conn.transaction():
                await insert.fetch(account, points)
                await update.fetch(account, points)
            done += 1
    finally:
        await conn.close()
    return done


async def _clients(dsn: str, seconds: float, seed: int) -> int:
    counts = await asyncio.gather(*(_client(dsn, seconds, seed * 100 + i) for i in range(CONNECTIONS_PER_PROCESS)))
    return sum(counts)


def _process(args: tuple[str, float, int]) -> int:
    return asyncio.run(_clients(*args))


async def _exec(dsn: str, sql: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


# Rows per COPY, each COPY its own transaction: the size of one batch message.
COPY_ROWS = 1000


async def _copy_client(dsn: str, seconds: float, seed: int) -> int:
    rng = random.Random(seed)
    conn = await asyncpg.connect(dsn)
    rows = [(rng.randrange(ACCOUNTS), rng.randint(1, 500)) for _ in range(COPY_ROWS)]
    done = 0
    deadline = time.perf_counter() + seconds
    try:
        while time.perf_counter() < deadline:
            await conn.copy_records_to_table("bench_ledger", records=rows, columns=["account", "points"])
            done += len(rows)
    finally:
        await conn.close()
    return done


async def _copy_clients(dsn: str, seconds: float, seed: int) -> int:
    counts = await asyncio.gather(*(_copy_client(dsn, seconds, seed * 100 + i) for i in range(2)))
    return sum(counts)


def _copy_process(args: tuple[str, float, int]) -> int:
    return asyncio.run(_copy_clients(*args))


def measure_copy(dsn: str, seconds: float) -> float:
    """Rows per second that COPY (COPY_ROWS rows per statement, 2 connections in each of the
    2 client processes) writes into a ledger-style table with a primary key."""
    asyncio.run(_exec(dsn, SETUP))
    try:
        context = multiprocessing.get_context("spawn")
        with context.Pool(CLIENT_PROCESSES) as pool:
            counts = pool.map(_copy_process, [(dsn, seconds, i) for i in range(CLIENT_PROCESSES)])
    finally:
        asyncio.run(_exec(dsn, TEARDOWN))
    return sum(counts) / seconds


def measure(dsn: str, seconds: float) -> float:
    """Transactions per second over `seconds`."""
    asyncio.run(_exec(dsn, SETUP))
    try:
        context = multiprocessing.get_context("spawn")
        with context.Pool(CLIENT_PROCESSES) as pool:
            started = time.perf_counter()
            counts = pool.map(_process, [(dsn, seconds, i) for i in range(CLIENT_PROCESSES)])
            elapsed = time.perf_counter() - started
    finally:
        asyncio.run(_exec(dsn, TEARDOWN))
    # The pool start-up is outside the clients' own clocks; they each ran for `seconds`.
    return sum(counts) / seconds if elapsed > 0 else 0.0
