"""`./dev bench --api`: GET /v1/members/{id} through 2 real `loyalty api` processes.

Seeds members (each with a lot, a ledger entry and a hold-free balance, so every read runs
the same queries as in production), starts API_PROCESSES servers on free ports, then:

- a fixed-rate phase: requests *scheduled* at `rate` per second, round-robin over the
  processes (the client stands in for the load balancer); latency is measured from the
  scheduled time, so a server that falls behind shows it (no coordinated omission);
- a saturation phase: CONCURRENCY requests in flight for a few seconds, for the ceiling.
"""

from __future__ import annotations

import asyncio
import json
import random
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import asyncpg
import httpx

API_PROCESSES = 2
CONCURRENCY = 32
# Senders of the fixed-rate phase: enough to keep the rate while a few requests are slow.
SENDERS = 32
MEMBERS = 10_000
START_DEADLINE_S = 60

_SEED = """
INSERT INTO members (member_id, tier, available_points, qualifying_points, lifetime_points)
SELECT 'B' || i, 'Regular', 500, 500, 500 FROM generate_series(1, $1) i;
"""
_SEED_ENTRIES = """
WITH e AS (
    INSERT INTO ledger_entries (member_id, kind, points, qualifying_points, source, event_id, event_type, occurred_at)
    SELECT 'B' || i, 'earn', 500, 500, 'bench', 'seed-' || i, 'purchase', now() FROM generate_series(1, $1) i
    RETURNING entry_id, member_id
)
INSERT INTO lots (member_id, entry_id, points, remaining, earned_at, expires_at)
SELECT member_id, entry_id, 500, 500, now(), now() + interval '20 days' FROM e
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def _seed(dsn: str, members: int) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(_SEED.replace("$1", str(members)))
        await conn.execute(_SEED_ENTRIES, members)
    finally:
        await conn.close()


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 2)


def _summary(latencies_ms: list[float], errors: int, elapsed_s: float) -> dict:
    return {
        "requests": len(latencies_ms) + errors,
        "errors": errors,
        "requests_per_s": round(len(latencies_ms) / elapsed_s, 1),
        "p50_ms": _percentile(latencies_ms, 0.50),
        "p99_ms": _percentile(latencies_ms, 0.99),
        "max_ms": round(max(latencies_ms), 2) if latencies_ms else None,
        "mean_ms": round(statistics.fmean(latencies_ms), 2) if latencies_ms else None,
    }


async def _fixed_rate(urls: list[str], headers: dict, rate: int, seconds: float, members: int) -> dict:
    """SENDERS coroutines take the next scheduled slot, wait for its time and send; a sender
    that is late sends at once, and its latency counts from the slot's time."""
    rng = random.Random(7)
    total = int(rate * seconds)
    latencies: list[float] = []
    errors = 0
    next_slot = 0
    async with httpx.AsyncClient(headers=headers, limits=httpx.Limits(max_connections=SENDERS), timeout=30) as client:
        start = time.perf_counter() + 0.2

        async def sender() -> None:
            nonlocal errors, next_slot
            while next_slot < total:
                i = next_slot
                next_slot += 1
                scheduled = start + i / rate
                delay = scheduled - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                try:
                    response = await client.get(f"{urls[i % len(urls)]}/v1/members/B{rng.randrange(1, members + 1)}")
                    ok = response.status_code == 200
                except httpx.HTTPError:
                    ok = False
                if ok:
                    latencies.append((time.perf_counter() - scheduled) * 1000)
                else:
                    errors += 1

        await asyncio.gather(*(sender() for _ in range(SENDERS)))
        elapsed = time.perf_counter() - start
    return {"target_rate_per_s": rate, "seconds": seconds, **_summary(latencies, errors, elapsed)}


async def _saturation(urls: list[str], headers: dict, seconds: float, members: int) -> dict:
    rng = random.Random(11)
    latencies: list[float] = []
    errors = 0
    async with httpx.AsyncClient(headers=headers, timeout=30) as client:
        start = time.perf_counter()
        deadline = start + seconds

        async def loop(n: int) -> None:
            nonlocal errors
            i = n
            while time.perf_counter() < deadline:
                began = time.perf_counter()
                response = await client.get(f"{urls[i % len(urls)]}/v1/members/B{rng.randrange(1, members + 1)}")
                i += 1
                if response.status_code == 200:
                    latencies.append((time.perf_counter() - began) * 1000)
                else:
                    errors += 1

        await asyncio.gather(*(loop(n) for n in range(CONCURRENCY)))
        elapsed = time.perf_counter() - start
    return {"concurrency": CONCURRENCY, "seconds": seconds, **_summary(latencies, errors, elapsed)}


def run(
    database_url: str, env: dict[str, str], loyalty: list[str], results: Path, *, rates: list[int], seconds: float
) -> dict:
    from benchmarks.run import log, pg_dsn

    log(f"API: seeding {MEMBERS:,} members")
    asyncio.run(_seed(pg_dsn(database_url), MEMBERS))
    created = subprocess.run(
        [*loyalty, "api-key", "create", "--name", "bench", "--scopes", "members:read", "--json"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    headers = {"Authorization": f"Bearer {json.loads(created.stdout)['key']}"}
    # No rate limit in the way of the measurement; the access log at WARNING is off.
    api_env = {**env, "LOYALTY_API_RATE_PER_KEY": "1000000", "LOYALTY_API_SWEEP_S": "0"}
    procs, urls = [], []
    for n in range(API_PROCESSES):
        port = _free_port()
        out = (results / f"loyalty-api-{n}.log").open("wb")
        procs.append(
            subprocess.Popen(
                [*loyalty, "api", "--port", str(port)],
                env=api_env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        )
        urls.append(f"http://127.0.0.1:{port}")
    try:
        deadline = time.monotonic() + START_DEADLINE_S
        for url, proc in zip(urls, procs, strict=True):
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"loyalty api exited with {proc.returncode}")
                try:
                    if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError("loyalty api did not become ready")
                time.sleep(0.1)
        log("API: warm-up")
        asyncio.run(_fixed_rate(urls, headers, 100, 1, MEMBERS))
        fixed = []
        for rate in rates:
            log(f"API: GET /v1/members/{{id}} at {rate} requests/s for {seconds:g}s over {API_PROCESSES} processes")
            fixed.append(asyncio.run(_fixed_rate(urls, headers, rate, seconds, MEMBERS)))
            log(
                f"  {fixed[-1]['requests_per_s']:,.0f} requests/s, p50 {fixed[-1]['p50_ms']} ms, "
                f"p99 {fixed[-1]['p99_ms']} ms, {fixed[-1]['errors']} errors"
            )
        log(f"API: saturation, {CONCURRENCY} in flight for {seconds:g}s")
        saturated = asyncio.run(_saturation(urls, headers, seconds, MEMBERS))
        log(
            f"  {saturated['requests_per_s']:,.0f} requests/s, p50 {saturated['p50_ms']} ms, p99 {saturated['p99_ms']} ms"
        )
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
    return {
        "processes": API_PROCESSES,
        "members": MEMBERS,
        "fixed_rate": fixed,
        "saturation": saturated,
        "python": sys.version.split()[0],
    }
