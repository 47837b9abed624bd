"""`python -m benchmarks [--quick]`: throughput, latency, ceilings, memory, then a correctness check.

Creates its own database (loyalty_bench_<id>) and Redis namespace, drives real `loyalty worker`
processes, prints a table and writes benchmarks/results/latest.json. Everything it creates is
removed at the end (pass --keep to keep the database for inspection).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import platform
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import redis
from sqlalchemy.engine import make_url

from benchmarks import ceiling, long_history
from benchmarks.workload import HOT_MEMBERS, HOT_SHARE, Workload
from db import migrate
from db.engine import async_url

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"
ADMIN_URL = os.environ.get("LOYALTY_BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("LOYALTY_BENCH_REDIS_URL", "redis://127.0.0.1:6379/15")
SEED = 20261124
PROCESSES, THREADS = 2, 32
BATCH_SIZE = 1000
# Messages per Redis pipeline while loading: large enough to be quick, small enough to keep
# each round trip short for other clients of a shared Redis.
PIPELINE_MESSAGES = 2000
# A phase that has not drained after this long is reported as failed rather than waited on.
DRAIN_TIMEOUT_S = 240


@dataclass(frozen=True)
class Sizes:
    members: int
    one_event: int
    hot_events: int
    batch_events: int
    noop: int
    latency_s: float
    latency_rate: int
    pg_ceiling_s: float


FULL = Sizes(
    members=50_000,
    one_event=20_000,
    hot_events=10_000,
    batch_events=40_000,
    noop=30_000,
    latency_s=15,
    latency_rate=1000,
    pg_ceiling_s=8,
)
QUICK = Sizes(
    members=5_000,
    one_event=5_000,
    hot_events=5_000,
    batch_events=20_000,
    noop=10_000,
    latency_s=5,
    latency_rate=1000,
    pg_ceiling_s=3,
)


def log(message: str) -> None:
    print(f"[{datetime.now(UTC):%H:%M:%S}] {message}", file=sys.stderr, flush=True)


# --- Redis: the broker's wire format (docs/wire-format.md) ----------------------------------


class Queue:
    """`also`: queues the workers move this queue's messages to (a batch message sent on the
    events queue is applied from the batches queue); drained counts them too."""

    def __init__(self, client: redis.Redis, namespace: str, queue: str, also: tuple[str, ...] = ()):
        self.client, self.namespace, self.queue, self.also = client, namespace, queue, also
        self.list_key = f"{namespace}:{queue}"
        self.msgs_key = f"{namespace}:{queue}.msgs"
        self.staging_key = f"{namespace}:{queue}.bench-staging"

    def _message(self, actor: str, args: list) -> tuple[str, bytes]:
        rid = str(uuid.uuid4())
        body = {
            "queue_name": self.queue,
            "actor_name": actor,
            "args": args,
            "kwargs": {},
            "options": {"redis_message_id": rid},
            "message_id": rid,
            "message_timestamp": int(time.time() * 1000),
        }
        return rid, json.dumps(body, separators=(",", ":")).encode()

    def push(self, actor: str, arg_lists: list[list], *, staged: bool) -> None:
        """Write messages; staged ones stay invisible to workers until release()."""
        target = self.staging_key if staged else self.list_key
        for start in range(0, len(arg_lists), PIPELINE_MESSAGES):
            pipe = self.client.pipeline(transaction=not staged)
            ids = []
            for args in arg_lists[start : start + PIPELINE_MESSAGES]:
                rid, body = self._message(actor, args)
                pipe.hset(self.msgs_key, rid, body)
                ids.append(rid)
            pipe.rpush(target, *ids)
            pipe.execute()

    def release(self) -> None:
        """Make every staged message visible at once (the queue is empty before)."""
        self.client.rename(self.staging_key, self.list_key)

    def outstanding(self) -> int:
        """Messages written and not yet acknowledged (acks delete them from the hash),
        including retries waiting on the delay queue."""
        pipe = self.client.pipeline(transaction=False)
        for queue in (self.queue, *self.also):
            pipe.hlen(f"{self.namespace}:{queue}.msgs")
            pipe.hlen(f"{self.namespace}:{queue}.DQ.msgs")
        return sum(pipe.execute())

    def wait_drained(self, timeout_s: float = DRAIN_TIMEOUT_S, poll_s: float = 0.02) -> float:
        deadline = time.perf_counter() + timeout_s
        while self.outstanding():
            if time.perf_counter() > deadline:
                raise TimeoutError(f"{self.queue}: {self.outstanding()} messages left after {timeout_s:g}s")
            time.sleep(poll_s)
        return time.perf_counter()


# --- worker processes -------------------------------------------------------------------------


class Workers:
    def __init__(self, argv: list[str], env: dict[str, str], name: str):
        self.name = name
        self.log_path = RESULTS / f"{name}.log"
        self.log_file = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            argv, env=env, cwd=ROOT, stdout=self.log_file, stderr=subprocess.STDOUT, start_new_session=True
        )

    def descendants(self) -> list[int]:
        found, todo = [], [self.proc.pid]
        while todo:
            pid = todo.pop()
            try:
                children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
            except OSError:
                continue
            found.extend(int(c) for c in children)
            todo.extend(int(c) for c in children)
        return found

    def peak_rss_mb(self) -> list[float]:
        """VmHWM (peak resident set) of every worker child process, in MB."""
        peaks = []
        for pid in self.descendants():
            try:
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmHWM:"):
                        peaks.append(int(line.split()[1]) / 1024)
            except OSError:
                continue
        return peaks

    def cpu_s(self) -> float:
        """CPU time (user + system) used so far by the worker processes under this one."""
        ticks = os.sysconf("SC_CLK_TCK")
        total = 0.0
        for pid in self.descendants():
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            total += (int(fields[11]) + int(fields[12])) / ticks  # utime, stime
        return total

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.log_file.close()

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            raise RuntimeError(f"{self.name} exited with {self.proc.returncode}; see {self.log_path}")


def worker_env(database_url: str, namespace: str) -> dict[str, str]:
    return {
        **os.environ,
        "LOYALTY_DATABASE_URL": database_url,
        "LOYALTY_REDIS_URL": REDIS_URL,
        "LOYALTY_NAMESPACE": namespace,
        "LOYALTY_LOG_LEVEL": "WARNING",
        "LOYALTY_LOG_FORMAT": "json",
        "LOYALTY_STRICT_CHECKS": "0",
        # No /metrics process: its fixed port may be taken by another worker on the machine.
        "LOYALTY_METRICS_PORT": "0",
        "PYTHONPATH": str(ROOT),
    }


def loyalty_command() -> list[str]:
    return [str(Path(sys.executable).parent / "loyalty")]


# --- PostgreSQL helpers -------------------------------------------------------------------------


def pg_dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


async def _admin(sql: str) -> None:
    conn = await asyncpg.connect(pg_dsn(ADMIN_URL))
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def _fetch(url: str, sql: str, *args) -> list:
    conn = await asyncpg.connect(pg_dsn(url))
    try:
        return await conn.fetch(sql, *args)
    finally:
        await conn.close()


def fetch(url: str, sql: str, *args) -> list:
    return asyncio.run(_fetch(url, sql, *args))


def counted(url: str) -> int:
    rows = fetch(
        url,
        """SELECT (SELECT count(*) FROM processed_events WHERE source NOT LIKE '%:%')
                              + (SELECT count(*) FROM rejected_events) AS n""",
    )
    return rows[0]["n"]


# --- phases -------------------------------------------------------------------------------------


def drain_phase(queue: Queue, workers: Workers, actor: str, arg_lists: list[list], events: int) -> dict:
    queue.push(actor, arg_lists, staged=True)
    cpu = workers.cpu_s()
    started = time.perf_counter()
    queue.release()
    finished = queue.wait_drained()
    cpu = workers.cpu_s() - cpu
    workers.check_alive()
    elapsed = finished - started
    return {
        "events": events,
        "messages": len(arg_lists),
        "seconds": round(elapsed, 3),
        "events_per_s": round(events / elapsed, 1),
        # The worker processes' CPU (all cores) per event: what the Python side costs.
        "worker_cpu_ms_per_event": round(cpu * 1000 / events, 3),
    }


def noop_ceiling(namespace: str, messages: int) -> dict:
    client = redis.Redis.from_url(REDIS_URL)
    queue = Queue(client, namespace, "noop")
    env = worker_env("", namespace)
    workers = Workers(
        [sys.executable, "-m", "dramatiq", "benchmarks.noop", "--processes", str(PROCESSES), "--threads", str(THREADS)],
        env,
        "noop-workers",
    )
    try:
        queue.push("noop", [[]] * 200, staged=False)  # warm-up: both processes up and consuming
        queue.wait_drained(timeout_s=60)
        result = drain_phase(queue, workers, "noop", [[]] * messages, messages)
    finally:
        workers.stop()
    return result


def latency_phase(queue: Queue, workload: Workload, url: str, rate: int, seconds: float) -> dict:
    """Offer `rate` events/s for `seconds`, one message each; latency = enqueue → processed_at."""
    tick_s = 0.01
    per_tick = max(1, round(rate * tick_s))
    enqueued: dict[str, float] = {}
    started = time.perf_counter()
    ticks = int(seconds / tick_s)
    for tick in range(ticks):
        target = started + tick * tick_s
        delay = target - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        events = workload.take(per_tick)
        now = time.time()
        queue.push("process_event", [[e] for e in events], staged=False)
        for e in events:
            enqueued[e["event_id"]] = now
    offered_s = time.perf_counter() - started
    queue.wait_drained()
    rows = fetch(
        url,
        "SELECT event_id, extract(epoch FROM processed_at)::float8 AS at FROM processed_events "
        "WHERE event_id = ANY($1::text[])",
        list(enqueued),
    )
    latencies = sorted((r["at"] - enqueued[r["event_id"]]) * 1000 for r in rows)

    def pct(p: float) -> float:
        return (
            round(latencies[min(len(latencies) - 1, int(p / 100 * len(latencies)))], 1) if latencies else float("nan")
        )

    return {
        "offered_per_s": round(len(enqueued) / offered_s, 1),
        "events": len(enqueued),
        "measured": len(latencies),
        "p50_ms": pct(50),
        "p95_ms": pct(95),
        "p99_ms": pct(99),
        "max_ms": round(latencies[-1], 1) if latencies else None,
        "ids": list(enqueued),
    }


def run_expiry(database_url: str) -> dict | None:
    try:
        from benchmarks import expiry  # written separately; optional
    except ImportError:
        return None
    return expiry.run(database_url)


def correctness(url: str, env: dict[str, str], generated: set[str]) -> dict:
    audit = subprocess.run([*loyalty_command(), "audit", "--json"], env=env, cwd=ROOT, capture_output=True, text=True)
    report = json.loads(audit.stdout) if audit.stdout.strip().startswith("{") else {}
    processed = [r["event_id"] for r in fetch(url, "SELECT event_id FROM processed_events WHERE source NOT LIKE '%:%'")]
    rejected = [r["event_id"] for r in fetch(url, "SELECT event_id FROM rejected_events")]
    seen = processed + rejected
    # Corrections booked by a re-evaluation are entries of the late event too: not counted here.
    doubled = fetch(
        url,
        """SELECT count(*) AS n FROM (SELECT 1 FROM ledger_entries WHERE kind = 'earn'
                           AND NOT rules @> '[{"corrects": {}}]'
                           GROUP BY member_id, source, event_id HAVING count(*) > 1) d""",
    )[0]["n"]
    return {
        "audit_clean": audit.returncode == 0 and bool(report.get("clean")),
        "members_checked": report.get("members_checked"),
        "generated": len(generated),
        "processed": len(processed),
        "rejected": len(rejected),
        "missing": len(generated - set(seen)),
        "counted_twice": len(seen) - len(set(seen)),
        "earned_twice": doubled,
        "ok": audit.returncode == 0 and set(seen) == generated and len(seen) == len(set(seen)) and doubled == 0,
    }


# --- report -------------------------------------------------------------------------------------


def machine() -> dict:
    info = {"cores": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()}
    try:
        kb = int(
            next(
                line for line in Path("/proc/meminfo").read_text().splitlines() if line.startswith("MemTotal")
            ).split()[1]
        )
        info["ram_gb"] = round(kb / 1024 / 1024, 1)
    except (OSError, StopIteration):
        pass
    try:
        info["cpu"] = next(
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        )
    except (OSError, StopIteration):
        pass
    info["postgresql"] = fetch(ADMIN_URL, "SHOW server_version")[0][0]
    info["redis"] = redis.Redis.from_url(REDIS_URL).info("server")["redis_version"]
    return info


TARGETS = {
    "one_event": 2500,
    "one_event_vs_noop": 0.6,
    "batch": 20_000,
    "p99_ms": 100,
    "rss_mb": 200,
    "expiry_s": 30,
    "late_vs_in_order": 0.8,
}
# Share of events dated before events already sent, in the late-events phase.
LATE_SHARE = 0.05


def table(r: dict) -> str:
    rows = [("figure", "result", "target")]
    noop = r["ceilings"]["noop_messages_per_s"]
    pg = r["ceilings"]["pg_insert_update_tx_per_s"]
    one, batch = r["one_event"]["events_per_s"], r["batch"]["events_per_s"]
    rows += [
        ("one-event messages (events/s)", f"{one:,.0f}", f">= {TARGETS['one_event']:,}"),
        ("  / no-op ceiling", f"{r['ratios']['one_event_vs_noop']:.2f}", f">= {TARGETS['one_event_vs_noop']}"),
        ("  / PostgreSQL ceiling", f"{r['ratios']['one_event_vs_pg']:.2f}", ""),
        ("  worker CPU per event (ms)", f"{r['one_event'].get('worker_cpu_ms_per_event', float('nan')):.2f}", ""),
        (f"one-event messages, {LATE_SHARE:.0%} late (events/s)", f"{r['late']['events_per_s']:,.0f}", ""),
        (
            "  / in-order one-event messages",
            f"{r['ratios']['late_vs_in_order']:.2f}",
            f">= {TARGETS['late_vs_in_order']}",
        ),
        ("  extra time per late event (ms)", f"{r['late']['extra_ms_per_late_event']:.1f}", ""),
        (
            f"one-event purchases, {HOT_MEMBERS} members get {HOT_SHARE:.0%} (events/s)",
            f"{r['hot_members']['events_per_s']:,.0f}",
            "",
        ),
        ("  / no-op ceiling", f"{r['ratios']['hot_members_vs_noop']:.2f}", f">= {TARGETS['one_event_vs_noop']}"),
        ("  worker CPU per event (ms)", f"{r['hot_members']['worker_cpu_ms_per_event']:.2f}", ""),
        ("batch messages (events/s)", f"{batch:,.0f}", f">= {TARGETS['batch']:,}"),
        ("  / PostgreSQL ceiling", f"{r['ratios']['batch_vs_pg']:.2f}", ""),
        ("  worker CPU per event (ms)", f"{r['batch'].get('worker_cpu_ms_per_event', float('nan')):.2f}", ""),
        ("  / COPY ceiling (rows/s)", f"{r['ratios']['batch_vs_copy']:.4f}", ""),
        (
            f"latency at {r['latency']['offered_per_s']:,.0f} ev/s p50/p95/p99 (ms)",
            f"{r['latency']['p50_ms']:.0f} / {r['latency']['p95_ms']:.0f} / {r['latency']['p99_ms']:.0f}",
            f"p99 <= {TARGETS['p99_ms']}",
        ),
        *(
            (
                f"latency at {lat['offered_per_s']:,.0f} ev/s p50/p95/p99 (ms)",
                f"{lat['p50_ms']:.0f} / {lat['p95_ms']:.0f} / {lat['p99_ms']:.0f}",
                f"p99 <= {TARGETS['p99_ms']}",
            )
            for lat in r.get("latency_by_rate", [])[1:]
        ),
        *(
            (
                f"a {name} late after {r['long_history']['history_events']:,} events of one member: extra (ms)",
                f"{r['long_history'][f'extra_{name}_ms']:.1f} ({r['long_history'][f'extra_{name}_vs_target']:.2f})",
                f"<= {long_history.TARGET_MS:g} (1)",
            )
            for name in long_history.LATE_BY
            if "long_history" in r
        ),
        ("peak RSS per worker process (MB)", " / ".join(f"{m:.0f}" for m in r["rss_mb"]), f"<= {TARGETS['rss_mb']}"),
        ("ceiling: dramatiq no-op (messages/s)", f"{noop:,.0f}", ""),
        ("ceiling: PostgreSQL insert+update (tx/s)", f"{pg:,.0f}", ""),
        ("ceiling: PostgreSQL COPY (rows/s)", f"{r['ceilings']['pg_copy_rows_per_s']:,.0f}", ""),
    ]
    if r.get("expiry"):
        rows.append(
            (
                "expiry of 1,000,000 lots (s)",
                f"{r['expiry'].get('seconds', float('nan')):.1f}",
                f"<= {TARGETS['expiry_s']}",
            )
        )
    for key, label in (
        ("one_event_purchase_grouped", "one-event purchase, grouped"),
        ("one_event_purchase_alone", "one-event purchase, alone"),
        ("batch_event", "batch event (mix)"),
    ):
        if key in r.get("statements", {}):
            m = r["statements"][key]
            rows.append(
                (
                    f"{label}: rows / statements (queries)",
                    f"{m['rows_per_event']:.2f} / {m['statements_per_event']:.2f} ({m['queries_per_event']:.2f})",
                    "",
                )
            )
    c = r["correctness"]
    rows.append(("correctness: audit clean, each event once", "yes" if c["ok"] else f"NO {c}", "yes"))
    width = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = [" | ".join(cell.ljust(width[i]) for i, cell in enumerate(row)) for row in rows]
    lines.insert(1, "-+-".join("-" * w for w in width))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="Smaller sizes: a smoke run of about two minutes.")
    parser.add_argument("--keep", action="store_true", help="Keep the benchmark database afterwards.")
    parser.add_argument(
        "--only",
        choices=["one_event", "late", "hot_members", "batch", "latency", "long_history"],
        help=(
            "Run one phase (no ceilings, but `hot_members` measures the no-op ceiling it is compared with; "
            "`late` runs the in-order one-event phase first to compare)."
        ),
    )
    parser.add_argument("--threads", type=int, default=THREADS, help="Worker threads per process.")
    parser.add_argument(
        "--batch-events", type=int, default=0, help="Events of the batch phase (default: 40,000; --quick 20,000)."
    )
    parser.add_argument("--skip-expiry", action="store_true", help="Leave out the expiry of 1,000,000 lots.")
    parser.add_argument(
        "--statements", action="store_true", help="With --only: also count rows and statements per event."
    )
    parser.add_argument(
        "--latency-rates",
        default="1000",
        help="Offered events/s of the latency phases (comma-separated; the first is in the table's main row).",
    )
    parser.add_argument(
        "--api",
        action="store_true",
        help="Only the HTTP API phase: GET /v1/members/{id} through 2 `loyalty api` processes.",
    )
    parser.add_argument(
        "--api-rate", default="100,500", help="Requests per second of the API's fixed-rate phases (comma-separated)."
    )
    parser.add_argument("--api-seconds", type=float, default=10, help="Length of each API measurement.")
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    if args.batch_events:
        sizes = dataclasses.replace(sizes, batch_events=args.batch_events)
    RESULTS.mkdir(parents=True, exist_ok=True)

    run_id = uuid.uuid4().hex[:8]
    url = make_url(async_url(ADMIN_URL)).set(database=f"loyalty_bench_{run_id}").render_as_string(hide_password=False)
    namespace = f"loyalty-bench-{run_id}"
    client = redis.Redis.from_url(REDIS_URL)
    env = worker_env(url, namespace)
    result: dict = {
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "quick": args.quick,
        "sizes": sizes.__dict__,
        "processes": PROCESSES,
        "threads": args.threads,
        "machine": machine(),
    }
    workers = None
    log(f"database loyalty_bench_{run_id}, namespace {namespace}")
    asyncio.run(migrate.upgrade(url))
    if args.api:
        from benchmarks import api

        try:
            result["api"] = api.run(
                url,
                env,
                loyalty_command(),
                RESULTS,
                rates=[int(r) for r in args.api_rate.split(",")],
                seconds=args.api_seconds,
            )
        finally:
            for key in client.scan_iter(f"{namespace}:*", count=1000):
                client.delete(key)
            if not args.keep:
                asyncio.run(_admin(f'DROP DATABASE IF EXISTS "loyalty_bench_{run_id}" WITH (FORCE)'))
        result["finished_at"] = datetime.now(UTC).isoformat(timespec="seconds")
        (RESULTS / "api-latest.json").write_text(json.dumps(result, indent=2) + "\n")
        print(json.dumps(result["api"], indent=2))
        print(f"\nsaved {RESULTS / 'api-latest.json'}", file=sys.stderr)
        return
    try:
        if args.only == "hot_members":
            log("dramatiq no-op ceiling")
            noop = noop_ceiling(namespace, sizes.noop)
            log(f"  {noop['events_per_s']:,.0f} messages/s")
            result["ceilings"] = {"noop_messages_per_s": noop["events_per_s"], "noop": noop}
        if args.only is None:
            log("PostgreSQL insert+update ceiling")
            pg = ceiling.measure(pg_dsn(url), sizes.pg_ceiling_s)
            log(f"  {pg:,.0f} tx/s")
            log("PostgreSQL COPY ceiling")
            copy_rows = ceiling.measure_copy(pg_dsn(url), sizes.pg_ceiling_s)
            log(f"  {copy_rows:,.0f} rows/s")
            log("dramatiq no-op ceiling")
            noop = noop_ceiling(namespace, sizes.noop)
            log(f"  {noop['events_per_s']:,.0f} messages/s")
            result["ceilings"] = {
                "noop_messages_per_s": noop["events_per_s"],
                "noop": noop,
                "pg_insert_update_tx_per_s": round(pg, 1),
                "pg_copy_rows_per_s": round(copy_rows, 1),
            }

        workload = Workload(sizes.members, SEED, datetime.now(UTC), run_id[:4])
        generated: set[str] = set()
        queue = Queue(client, namespace, "events", also=("batches",))
        workers = Workers(
            [*loyalty_command(), "worker", "--processes", str(PROCESSES), "--threads", str(args.threads)],
            env,
            "loyalty-workers",
        )
        warm = workload.take(200)
        generated.update(e["event_id"] for e in warm)
        queue.push("process_event", [[e] for e in warm], staged=False)
        queue.wait_drained(timeout_s=120)
        workers.check_alive()

        if args.only in (None, "one_event"):
            log(f"one-event messages: {sizes.one_event:,} events")
            events = workload.take(sizes.one_event)
            generated.update(e["event_id"] for e in events)
            result["one_event"] = drain_phase(queue, workers, "process_event", [[e] for e in events], len(events))
            log(
                f"  {result['one_event']['events_per_s']:,.0f} events/s, "
                f"{result['one_event']['worker_cpu_ms_per_event']} ms worker CPU per event"
            )
        if args.only in (None, "late"):
            if "one_event" not in result:
                events = workload.take(sizes.one_event)
                generated.update(e["event_id"] for e in events)
                result["one_event"] = drain_phase(queue, workers, "process_event", [[e] for e in events], len(events))
            log(f"one-event messages, {LATE_SHARE:.0%} late: {sizes.one_event:,} events")
            workload.late = LATE_SHARE
            events = workload.take(sizes.one_event)
            workload.late = 0.0
            generated.update(e["event_id"] for e in events)
            late = drain_phase(queue, workers, "process_event", [[e] for e in events], len(events))
            late_events = fetch(
                url,
                "SELECT count(*) AS n FROM processed_events WHERE result ? 're_evaluated' "
                "AND event_id = ANY($1::text[])",
                [e["event_id"] for e in events],
            )[0]["n"]
            in_order_s = late["events"] / result["one_event"]["events_per_s"]
            late["late_events"] = late_events
            late["extra_ms_per_late_event"] = round((late["seconds"] - in_order_s) * 1000 / max(late_events, 1), 2)
            result["late"] = late
            log(
                f"  {late['events_per_s']:,.0f} events/s; {late_events} re-evaluated, "
                f"{late['extra_ms_per_late_event']} ms extra each"
            )
        if args.only in (None, "hot_members"):
            log(
                f"hot members: {sizes.hot_events:,} one-event purchases, {HOT_SHARE:.0%} of them by "
                f"{HOT_MEMBERS} members among {sizes.members:,}"
            )
            events = workload.take_purchases(sizes.hot_events)
            generated.update(e["event_id"] for e in events)
            hot = drain_phase(queue, workers, "process_event", [[e] for e in events], len(events))
            ids = [e["event_id"] for e in events]
            hot["hot_member_events"] = sum(e["member_id"].startswith("H") for e in events)
            # Events of one member processed out of their order by concurrent threads are late.
            hot["re_evaluated"] = fetch(
                url,
                "SELECT count(*) AS n FROM processed_events WHERE result ? 're_evaluated' "
                "AND event_id = ANY($1::text[])",
                ids,
            )[0]["n"]
            hot["vs_noop"] = round(hot["events_per_s"] / result["ceilings"]["noop_messages_per_s"], 3)
            result["hot_members"] = hot
            log(
                f"  {hot['events_per_s']:,.0f} events/s, {hot['vs_noop']:.2f} of the no-op ceiling, "
                f"{hot['worker_cpu_ms_per_event']} ms worker CPU per event; {hot['re_evaluated']} re-evaluated"
            )
        if args.only in (None, "batch"):
            log(f"batch messages: {sizes.batch_events:,} events in messages of {BATCH_SIZE:,}")
            events = workload.take(sizes.batch_events)
            generated.update(e["event_id"] for e in events)
            batches = [[events[i : i + BATCH_SIZE]] for i in range(0, len(events), BATCH_SIZE)]
            result["batch"] = drain_phase(queue, workers, "process_batch", batches, len(events))
            log(
                f"  {result['batch']['events_per_s']:,.0f} events/s, "
                f"{result['batch']['worker_cpu_ms_per_event']} ms worker CPU per event"
            )
        if args.only in (None, "latency"):
            result["latency_by_rate"] = []
            for rate in [int(r) for r in args.latency_rates.split(",")]:
                log(f"latency at {rate:,} events/s for {sizes.latency_s:g}s")
                latency = latency_phase(queue, workload, url, rate, sizes.latency_s)
                generated.update(latency.pop("ids"))
                result["latency_by_rate"].append(latency)
                log(f"  p50 {latency['p50_ms']} ms, p95 {latency['p95_ms']} ms, p99 {latency['p99_ms']} ms")
            result["latency"] = result["latency_by_rate"][0]
        result["rss_mb"] = [round(m, 1) for m in sorted(workers.peak_rss_mb())]
        workers.stop()
        workers = None

        # Not in a quick run: loading 10,000 events of one member takes minutes.
        if args.only == "long_history" or (args.only is None and not args.quick):
            log(f"long history: {long_history.HISTORY_EVENTS:,} events of one member, then late events")
            history = long_history.run(url, run_id)
            generated.update(history.pop("ids"))
            result["long_history"] = history
            for name in long_history.LATE_BY:
                log(
                    f"  a {name} late: {history[f'late_{name}_ms']} ms, in order {history['in_order_ms']} ms: "
                    f"{history[f'extra_{name}_ms']} ms extra, {history[f'extra_{name}_vs_target']:.2f} of the "
                    f"{long_history.TARGET_MS:g} ms target"
                )

        expiry = run_expiry(url) if args.only is None and not args.skip_expiry else None
        if expiry is not None:
            result["expiry"] = expiry

        log("correctness check")
        result["correctness"] = correctness(url, env, generated)
        if args.only is None or args.statements:
            from benchmarks import statements

            log("rows and statements per event")
            result["statements"] = statements.measure(url, workload, BATCH_SIZE)
        if args.only is None:
            c = result["ceilings"]
            result["ratios"] = {
                "one_event_vs_noop": round(result["one_event"]["events_per_s"] / c["noop_messages_per_s"], 3),
                "one_event_vs_pg": round(result["one_event"]["events_per_s"] / c["pg_insert_update_tx_per_s"], 3),
                "batch_vs_pg": round(result["batch"]["events_per_s"] / c["pg_insert_update_tx_per_s"], 3),
                "batch_vs_copy": round(result["batch"]["events_per_s"] / c["pg_copy_rows_per_s"], 3),
                "late_vs_in_order": round(result["late"]["events_per_s"] / result["one_event"]["events_per_s"], 3),
                "hot_members_vs_noop": result["hot_members"]["vs_noop"],
            }
    finally:
        if workers is not None:
            workers.stop()
        for key in client.scan_iter(f"{namespace}:*", count=1000):
            client.delete(key)
        if not args.keep:
            asyncio.run(_admin(f'DROP DATABASE IF EXISTS "loyalty_bench_{run_id}" WITH (FORCE)'))
    result["finished_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    (RESULTS / "latest.json").write_text(json.dumps(result, indent=2) + "\n")
    if args.only is None:
        print(table(result))
    else:
        print(json.dumps({k: v for k, v in result.items() if k not in ("machine", "sizes")}, indent=2))
    print(f"\nsaved {RESULTS / 'latest.json'}", file=sys.stderr)
    if not result["correctness"]["ok"]:
        sys.exit(1)
