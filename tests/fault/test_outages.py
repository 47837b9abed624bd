"""PostgreSQL and Redis restarted under a running worker (private servers, never the shared ones)."""

from __future__ import annotations

import json
import time

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from db import migrate
from db.engine import create_engine
from tests.conftest import NOW
from tests.fault.servers import (
    PrivatePostgres,
    PrivateRedis,
    WorkerProcess,
    have_redis_server,
    loyalty,
    postgres_bin,
    wait_for,
)
from tests.fault.workload import snapshot, workload
from worker.domain.program import DEFAULT_PROGRAM
from worker.services import intake
from worker.services.audit import audit_all

pytestmark = pytest.mark.fault

RUN_S = 120
OUTAGE_SEEN_S = 60


async def _apply_reference(reference, events):
    for start in range(0, len(events), intake.BATCH_EVENTS_MAX):
        await intake.process_batch(reference, DEFAULT_PROGRAM, events[start : start + intake.BATCH_EVENTS_MAX], now=NOW)


def _publish(env, events):
    result = loyalty(["publish", "-"], env, stdin="\n".join(json.dumps(e) for e in events))
    assert result.returncode == 0, result.stderr
    return result


async def _processed(engine) -> int:
    async with engine.connect() as conn:
        return (await conn.execute(text("SELECT count(*) FROM processed_events"))).scalar_one()


async def _wait_processed(engine, expected, worker, timeout_s=RUN_S):
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if await _processed(engine) >= expected:
                return
        except OSError:
            pass
        assert time.monotonic() < deadline, worker.output()[-4000:]
        time.sleep(0.1)


@pytest.mark.skipif(postgres_bin() is None, reason="needs PostgreSQL server binaries")
async def test_postgres_restart_mid_run_loses_and_doubles_nothing(reference, fault_env, tmp_path):
    pg = PrivatePostgres()
    pg.init()
    pg.start()
    url = make_url(pg.url).set(database="loyalty").render_as_string(hide_password=False)
    await migrate.upgrade(url)
    engine = create_engine(url, pool_size=2, max_overflow=0)
    env = {**fault_env, "LOYALTY_DATABASE_URL": url}
    events = workload(300, seed=9, hot_purchases=100)
    expected = len(events) + sum(1 for e in events if e["type"] == "referral")
    worker = WorkerProcess(env, tmp_path / "worker.log", processes=1, threads=4)
    try:
        _publish(env, events)
        worker.start()
        await _wait_processed(engine, len(events) // 5, worker)
        await engine.dispose()
        pg.stop("immediate")  # a crash: no checkpoint, open transactions lost
        wait_for(
            lambda: "Retrying" in worker.output() or "retry" in worker.output().lower(),
            OUTAGE_SEEN_S,
            "the worker to hit the outage and schedule a retry",
        )
        pg.start()
        await _wait_processed(engine, expected, worker)
        actual = await snapshot(engine)
        audit = await audit_all(engine)
    finally:
        worker.stop()
        await engine.dispose()
        pg.remove()
    await _apply_reference(reference, events)
    assert actual["processed"] == expected
    assert actual == await snapshot(reference)
    assert audit.clean and audit.members_checked == len(actual["members"])


@pytest.mark.skipif(not have_redis_server(), reason="needs redis-server")
async def test_redis_killed_and_restarted_with_appendonly_keeps_queued_messages(db, reference, fault_env, tmp_path):
    redis_server = PrivateRedis(
        tmp_path / "redis", "--appendonly", "yes", "--appendfsync", "always", "--maxmemory-policy", "noeviction"
    )
    redis_server.start()
    env = {**fault_env, "LOYALTY_REDIS_URL": redis_server.url}
    events = workload(200, seed=13)
    half = len(events) // 2
    expected = len(events) + sum(1 for e in events if e["type"] == "referral")
    worker = WorkerProcess(env, tmp_path / "worker.log", processes=1, threads=4)
    try:
        _publish(env, events[:half])
        redis_server.kill()  # kill -9: only the append-only file keeps the queue
        redis_server.start()
        worker.start()
        await _wait_processed(db, half // 4, worker)
        redis_server.kill()  # again, this time under a running worker
        redis_server.start()
        _publish(env, events[half:])
        await _wait_processed(db, expected, worker)
        boot_log = worker.output()
    finally:
        worker.stop()
        redis_server.stop()
    await _apply_reference(reference, events)
    actual = await snapshot(db)
    assert actual["processed"] == expected
    assert actual == await snapshot(reference)
    assert (await audit_all(db)).clean
    assert "redis_not_durable" not in boot_log  # appendonly + noeviction: no start-up warning
