"""Benchmark: `loyalty import members` and `loyalty import balances` on large files.

    python -m benchmarks.imports [--members 100000] [--lots-per-member 2]

Creates a throwaway database (from LOYALTY_BENCH_DATABASE_URL, default the local server) and
two CSV files: members with a phone, card, e-mail, birthday, labels, tier and points totals,
and `--lots-per-member` lots each. Runs the real `loyalty` command on both, as an operator
would, then runs both again (every row unchanged). Prints rows/s, the CPU seconds and peak
resident set of each `loyalty` process (its VmHWM, from wait4) and, when PostgreSQL runs on
this machine, the CPU seconds of its backends for the process (read from /proc while it
runs), then JSON; ends with the audit of every balance.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import asyncpg
from sqlalchemy.engine import make_url

from db import migrate
from db.engine import async_url, create_engine
from worker.services.audit import audit_all

ADMIN_URL = os.environ.get("LOYALTY_BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
LOYALTY = str(Path(sys.executable).parent / "loyalty")
TIERS = ("Regular", "Silver", "Gold", "Diamond")
MEMBER_HEADER = (
    "member_id,phone,card,email,wechat_openid,birthday,locale,labels,tier,tier_floor_until,enrolled_at,"
    "lifetime_points,qualifying_points\n"
)


def write_files(folder: Path, members: int, per_member: int) -> tuple[Path, Path]:
    members_csv, balances_csv = folder / "members.csv", folder / "balances.csv"
    with members_csv.open("w") as out:
        out.write(MEMBER_HEADER)
        for i in range(members):
            tier = TIERS[i % 4]
            floor = "2027-12-31" if i % 10 == 0 and tier != "Regular" else ""
            out.write(
                f"X{i:08d},+86139{i:08d},C{i:08d},m{i}@example.com,,19{60 + i % 40}-0{1 + i % 9}-1{i % 10},"
                f"{'en' if i % 2 else 'zh-Hans'},{'vip|staff' if i % 7 == 0 else ''},{tier},{floor},"
                f"2020-01-01,{1000 + i % 5000},{i % 5000}\n"
            )
    with balances_csv.open("w") as out:
        out.write("member_id,lot_ref,points,earned_on,expires_on,note\n")
        for i in range(members):
            for j in range(per_member):
                out.write(f"X{i:08d},L{i}-{j},{10 + (i + j) % 500},2026-0{1 + j % 9}-15,2027-0{1 + j % 9}-28,\n")
    return members_csv, balances_csv


CLOCK_TICKS_PER_S = os.sysconf("SC_CLK_TCK")
# How often the backends' CPU time is read while a `loyalty` process runs: what a backend
# spends after its last reading (at most this long) is not counted.
BACKEND_POLL_S = 0.05


def _cpu_s(pid: int) -> float | None:
    """User and system CPU seconds of a local process so far; None when it cannot be read."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS_PER_S


async def backend_cpu_s(url: str, done: asyncio.Event) -> float | None:
    """The CPU seconds of the database's backends (but this one) until `done`; None when
    PostgreSQL's processes are not on this machine."""
    conn = await asyncpg.connect(make_url(url).set(drivername="postgresql").render_as_string(hide_password=False))
    try:
        last: dict[int, float] = {}
        seen = False
        while not done.is_set():
            pids = await conn.fetch(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
            for row in pids:
                seen = True
                used = _cpu_s(row["pid"])
                if used is not None:
                    last[row["pid"]] = used
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), BACKEND_POLL_S)
        return sum(last.values()) if seen and last else None
    finally:
        await conn.close()


def run_loyalty(env: dict, *args: str) -> tuple[float, float, float, str]:
    """Seconds, CPU seconds, peak RSS (MB) and the last line of output of one `loyalty`
    process. The CPU seconds are the command's own (parsing, hashing, sending), whatever else
    the machine runs; the wall seconds include PostgreSQL's work and any wait for a core."""
    started = time.perf_counter()
    process = subprocess.Popen([LOYALTY, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    out = process.stdout.read().decode() if process.stdout else ""
    err = process.stderr.read().decode() if process.stderr else ""
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise RuntimeError(f"loyalty {' '.join(args)} exited {process.returncode}: {err[-2000:]}")
    return seconds, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, out.strip().splitlines()[-1]


async def _admin(url: str) -> asyncpg.Connection:
    parsed = make_url(url)
    return await asyncpg.connect(
        host=parsed.host, port=parsed.port, user=parsed.username, password=parsed.password, database="postgres"
    )


async def bench(members: int, per_member: int) -> dict:
    url = (
        make_url(async_url(ADMIN_URL))
        .set(database=f"loyalty_bench_{uuid.uuid4().hex[:8]}")
        .render_as_string(hide_password=False)
    )
    await migrate.upgrade(url)
    env = {**os.environ, "LOYALTY_DATABASE_URL": url, "LOYALTY_LOG_FORMAT": "json"}
    env.pop("LOYALTY_PROGRAM_FILE", None)
    try:
        with tempfile.TemporaryDirectory() as folder:
            members_csv, balances_csv = write_files(Path(folder), members, per_member)
            lots = members * per_member
            figures = {}
            for label, what, path, rows in (
                ("members", "members", members_csv, members),
                ("balances", "balances", balances_csv, lots),
                ("members_again", "members", members_csv, members),
                ("balances_again", "balances", balances_csv, lots),
            ):
                done = asyncio.Event()
                backends = asyncio.create_task(backend_cpu_s(url, done))
                try:
                    seconds, cpu_s, rss_mb, summary = await asyncio.to_thread(
                        run_loyalty, env, "import", what, str(path)
                    )
                finally:
                    done.set()
                    backend_s = await backends
                figures[label] = {
                    "rows": rows,
                    "seconds": round(seconds, 2),
                    "cpu_s": round(cpu_s, 2),
                    "cpu_us_per_row": round(cpu_s / rows * 1e6, 1),
                    "backend_cpu_s": None if backend_s is None else round(backend_s, 2),
                    "backend_cpu_us_per_row": None if backend_s is None else round(backend_s / rows * 1e6, 1),
                    "rows_per_s": round(rows / seconds),
                    "peak_rss_mb": round(rss_mb, 1),
                    "summary": summary,
                }
        engine = create_engine(url, pool_size=1, max_overflow=0)
        try:
            audit = await audit_all(engine)
        finally:
            await engine.dispose()
        return {
            "members": members,
            "lots": lots,
            **figures,
            "audit_members": audit.members_checked,
            "audit_clean": audit.clean,
        }
    finally:
        admin = await _admin(ADMIN_URL)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{make_url(url).database}" WITH (FORCE)')
        finally:
            await admin.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=100_000)
    parser.add_argument("--lots-per-member", type=int, default=2)
    args = parser.parse_args()
    print(f"load average before: {' '.join(f'{x:.1f}' for x in os.getloadavg())}", flush=True)
    result = asyncio.run(bench(args.members, args.lots_per_member))
    for label in ("members", "balances", "members_again", "balances_again"):
        f = result[label]
        backend = "?" if f["backend_cpu_s"] is None else f"{f['backend_cpu_s']} ({f['backend_cpu_us_per_row']} µs/row)"
        print(
            f"import {label:<15} {f['rows']:>9,} rows in {f['seconds']:>6} s: {f['rows_per_s']:>7,} rows/s, "
            f"{f['cpu_s']} CPU s ({f['cpu_us_per_row']} µs/row), PostgreSQL CPU s {backend}, "
            f"peak RSS {f['peak_rss_mb']} MB  ({f['summary']})"
        )
    print(
        f"target >= 20,000 rows/s; audit of {result['audit_members']:,} members {'clean' if result['audit_clean'] else 'NOT CLEAN'}"
    )
    print(f"load average after: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
