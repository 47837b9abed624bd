"""Real dramatiq workers on the real Redis broker, writing to the real PostgreSQL."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import redis
from sqlalchemy import text

from tests.conftest import REDIS_URL
from tests.factories import purchase, signup
from tests.ledger_views import earned_by_event
from worker.domain.program import DEFAULT_PROGRAM
from worker.drain import drain
from worker.services import members
from worker.services.audit import audit_all

START = datetime(2026, 11, 2, 2, 0, tzinfo=UTC)


async def scalar(db, sql: str):
    async with db.connect() as conn:
        return (await conn.execute(text(sql))).scalar_one()


def at(second: int) -> str:
    return (START + timedelta(seconds=second)).isoformat()


async def test_eight_worker_threads_on_one_member_apply_each_event_once(broker, db):
    events = [purchase("HOT", "10.00", event_id=f"pos-{i}", occurred_at=at(i)) for i in range(300)]
    send = broker.get_actor("process_event").send
    for event in events:
        send(event)
    for event in events[:100]:  # the queue delivers at least once: a resend must change nothing
        send(event)
    send(purchase("HOT", "-3.00", event_id="bad-1"))

    drain(broker, timeout_s=120, threads=8)

    view = await members.member_view(db, DEFAULT_PROGRAM, "HOT")
    # In occurrence order: 110 (with the first-purchase bonus), 89 x 10 at Regular up to
    # Silver's 1000, then 210 x floor(10 x 1.2), whatever order the threads took them in.
    assert (view["tier"], view["available_points"], view["qualifying_points"]) == ("Silver", 3520, 3520)
    earned = await earned_by_event(db, "HOT")
    assert [earned[f"pos-{i}"] for i in range(300)] == [110] + [10] * 89 + [12] * 210
    assert await scalar(db, "SELECT count(*) FROM processed_events") == 300
    assert await scalar(db, "SELECT reason FROM rejected_events") == "payload.amount: must be greater than 0"
    assert (await audit_all(db)).clean


async def test_tier_multiplier_under_concurrency_follows_the_occurrence_order(broker, db):
    # Each purchase earns at the tier the purchases that occurred before it reach, whichever
    # order eight threads apply them in: a late one is re-evaluated with the ones after it.
    send = broker.get_actor("process_event").send
    for i in range(120):
        send(purchase("M", "10.00", event_id=f"p-{i}", occurred_at=at(i)))

    drain(broker, timeout_s=120, threads=8)

    earned = await earned_by_event(db, "M")
    # First purchase 10 + 100 bonus = 110; Silver (1000) is reached after 90 more purchases (110 + 89x10 = 1000);
    # from then on each earns floor(10 x 1.2) = 12.
    assert [earned[f"p-{i}"] for i in range(120)] == [110] + [10] * 89 + [12] * 30
    view = await members.member_view(db, DEFAULT_PROGRAM, "M")
    assert (view["tier"], view["available_points"]) == ("Silver", 110 + 89 * 10 + 30 * 12)
    assert (await audit_all(db)).clean


async def test_a_producer_without_python_can_enqueue_in_the_documented_wire_format(broker, settings, db):
    # docs/wire-format.md: HSET <ns>:events.msgs <id> <message json>; RPUSH <ns>:events <id>.
    client = redis.Redis.from_url(REDIS_URL)
    single = signup("W1", event_id="app-1", source="app")
    batch = [
        purchase("W1", "20.00", event_id="app-2", source="app"),
        purchase("W2", "30.00", event_id="app-3", source="app"),
    ]
    for actor, args in (("process_event", [single]), ("process_batch", [batch])):
        redis_id = str(uuid.uuid4())
        message = {
            "queue_name": "events",
            "actor_name": actor,
            "args": args,
            "kwargs": {},
            "options": {"redis_message_id": redis_id},
            "message_id": str(uuid.uuid4()),
            "message_timestamp": 1_790_000_000_000,
        }
        client.hset(f"{settings.namespace}:events.msgs", redis_id, json.dumps(message))
        client.rpush(f"{settings.namespace}:events", redis_id)

    drain(broker, timeout_s=60, threads=2)

    w1 = await members.member_view(db, DEFAULT_PROGRAM, "W1")
    w2 = await members.member_view(db, DEFAULT_PROGRAM, "W2")
    assert (w1["available_points"], w2["available_points"]) == (50 + 20 + 100, 30 + 100)
    assert await scalar(db, "SELECT count(*) FROM processed_events WHERE source = 'app'") == 3
