"""Every event twice, refunds before purchases, referrals before signups, 8 at a time:
the same final ledger as one pass in order."""

from __future__ import annotations

import asyncio
import random

from tests.conftest import NOW, truncate_all
from tests.fault.workload import snapshot, workload
from worker.domain.program import DEFAULT_PROGRAM
from worker.services import intake
from worker.services.audit import audit_all

# Concurrent appliers, as many as a worker's threads.
LANES = 8


async def _apply_all(db, events, lanes=1):
    queue: asyncio.Queue = asyncio.Queue()
    for event in events:
        queue.put_nowait(event)
    statuses: dict[str, int] = {}

    async def lane():
        while not queue.empty():
            outcome = await intake.process(db, DEFAULT_PROGRAM, queue.get_nowait(), now=NOW, strict=True)
            statuses[outcome.status] = statuses.get(outcome.status, 0) + 1

    await asyncio.gather(*(lane() for _ in range(lanes)))
    return statuses


async def test_duplicated_and_shuffled_events_give_the_in_order_ledger(db):
    events = workload(60, seed=11, hot_purchases=40)
    in_order = await _apply_all(db, events)
    expected = await snapshot(db)
    assert in_order == {"applied": len(events)}

    await truncate_all(db)
    rng = random.Random(3)
    early = [e for e in events if e["type"] in ("refund", "referral", "review")]
    rest = [e for e in events if e["type"] not in ("refund", "referral", "review")]
    twice = early + early + rng.sample(rest + rest, 2 * len(rest))
    statuses = await _apply_all(db, [dict(e) for e in twice], lanes=LANES)
    actual = await snapshot(db)

    waiting = sum(1 for e in events if e["type"] in ("refund", "review"))
    assert statuses["duplicate"] == len(events)
    assert statuses["deferred"] == waiting  # each refund and review waited for its purchase once
    assert actual == expected
    referrals = sum(1 for e in events if e["type"] == "referral")
    # Each referral also claims one follow-up (the referee's bonus) in processed_events.
    assert (expected["processed"], expected["rejected"]) == (len(events) + referrals, 0)
    assert (await audit_all(db)).clean
