"""kill -9 of a worker mid-run: every event is applied exactly once after a new one starts."""

from __future__ import annotations

import json
import time

import pytest
from sqlalchemy import text

from tests.conftest import NOW
from tests.fault.servers import WorkerProcess, loyalty
from tests.fault.workload import snapshot, workload
from worker.broker import build_broker
from worker.config import Settings
from worker.domain.program import DEFAULT_PROGRAM
from worker.drain import _sizes
from worker.services import intake
from worker.services.audit import audit_all

pytestmark = pytest.mark.fault

# Bounds on each phase; a healthy run takes a fraction of them.
FIRST_WORK_S = 90
RECOVERY_S = 120


async def _count(db, sql):
    async with db.connect() as conn:
        return (await conn.execute(text(sql))).scalar_one()


async def test_kill_9_mid_run_then_a_new_worker_applies_every_event_exactly_once(db, reference, fault_env, tmp_path):
    events = workload(500, seed=5, hot_purchases=400)
    referrals = sum(1 for e in events if e["type"] == "referral")
    expected_processed = len(events) + referrals
    published = loyalty(["publish", "-"], fault_env, stdin="\n".join(json.dumps(e) for e in events))
    assert published.returncode == 0, published.stderr
    assert published.stdout.strip() == f"published {len(events)} events in {len(events)} messages; 0 invalid lines"

    # 2 processes x 4 threads: 8 workers, all of them hammering member HOT among the others.
    first = WorkerProcess(fault_env, tmp_path / "first.log", processes=2, threads=4)
    first.start()
    try:
        loop_deadline = time.monotonic() + FIRST_WORK_S
        while await _count(db, "SELECT count(*) FROM processed_events") < len(events) // 4:
            assert time.monotonic() < loop_deadline, first.output()[-3000:]
            time.sleep(0.05)
    finally:
        first.kill9()
    at_kill = await _count(db, "SELECT count(*) FROM processed_events")
    assert at_kill < expected_processed, "the run ended before the kill: nothing was interrupted"

    killed_at = time.monotonic()
    second = WorkerProcess(fault_env, tmp_path / "second.log", processes=1, threads=8)
    second.start()
    broker = build_broker(Settings(redis_url=fault_env["LOYALTY_REDIS_URL"], namespace=fault_env["LOYALTY_NAMESPACE"]))
    try:
        loop_deadline = time.monotonic() + RECOVERY_S
        while not (
            await _count(db, "SELECT count(*) FROM processed_events") == expected_processed
            and not any(_sizes(broker).values())
        ):
            assert time.monotonic() < loop_deadline, f"{_sizes(broker)}\n{second.output()[-3000:]}"
            time.sleep(0.1)
        recovery_s = time.monotonic() - killed_at
    finally:
        second.stop()
        broker.close()
    assert recovery_s < RECOVERY_S
    print(f"processed at kill: {at_kill}/{expected_processed}; all done {recovery_s:.1f}s after the kill")

    for start in range(0, len(events), intake.BATCH_EVENTS_MAX):
        await intake.process_batch(reference, DEFAULT_PROGRAM, events[start : start + intake.BATCH_EVENTS_MAX], now=NOW)
    actual, expected = await snapshot(db), await snapshot(reference)
    assert actual["processed"] == expected["processed"] == expected_processed
    assert actual == expected
    hot = [row for row in actual["members"] if row[0] == "HOT"][0]
    assert hot[3] == 400 + 100  # 1 point per purchase plus the first-purchase bonus, once
    # One earning entry per earning event: none doubled by the redelivery (the corrections a
    # late event's re-evaluation books are entries of that event too, and are not counted).
    assert (
        await _count(
            db,
            "SELECT count(*) FROM (SELECT 1 FROM ledger_entries WHERE kind = 'earn' "
            "AND NOT rules @> '[{\"corrects\": {}}]' "
            "GROUP BY member_id, source, event_id HAVING count(*) > 1) d",
        )
        == 0
    )
    audit = loyalty(["audit", "--json"], fault_env)
    assert audit.returncode == 0, audit.stdout
    assert json.loads(audit.stdout)["clean"] is True
    assert (await audit_all(db)).clean
