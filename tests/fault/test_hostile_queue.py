"""A real worker reading hostile messages straight from Redis: calendar jobs sent by a
producer, messages that used to wedge a consumer or be retried forever, and a batch with a
poisoned member. Each ends as a rejected row with its reason; the valid events around them
are applied exactly; nothing is left ready, in flight or delayed; no birthday reaches the log."""

from __future__ import annotations

import json
import time
import uuid

import pytest
import redis
from sqlalchemy import text

from tests import factories as f
from tests.fault.servers import WorkerProcess
from worker.services.audit import audit_all

pytestmark = pytest.mark.fault

DONE_S = 90
BIRTHDAY = "1987-06-05"


def _body(queue: str, actor: str, args: list, redis_id: str) -> bytes:
    return json.dumps(
        {
            "queue_name": queue,
            "actor_name": actor,
            "args": args,
            "kwargs": {},
            "options": {"redis_message_id": redis_id},
            "message_id": str(uuid.uuid4()),
            "message_timestamp": 1_790_000_000_000,
        }
    ).encode()


def enqueue(
    client: redis.Redis,
    ns: str,
    queue: str,
    body: bytes | None = None,
    *,
    actor: str = "",
    args: list | None = None,
    claimed_queue: str | None = None,
) -> None:
    """HSET + RPUSH, as a producer in any language writes the wire format."""
    redis_id = str(uuid.uuid4())
    data = (
        body.replace(b"{id}", redis_id.encode())
        if body is not None
        else _body(claimed_queue or queue, actor, args or [], redis_id)
    )
    with client.pipeline(transaction=True) as pipe:
        pipe.hset(f"{ns}:{queue}.msgs", redis_id, data)
        pipe.rpush(f"{ns}:{queue}", redis_id)
        pipe.execute()


async def _count(db, sql: str) -> int:
    async with db.connect() as conn:
        return (await conn.execute(text(sql))).scalar_one()


async def test_hostile_messages_end_rejected_and_leave_nothing_on_the_queues(db, fault_env, tmp_path):
    ns = fault_env["LOYALTY_NAMESPACE"]
    client = redis.Redis.from_url(fault_env["LOYALTY_REDIS_URL"])
    async with db.begin() as conn:  # a real constraint standing in for data the database refuses
        await conn.execute(text("ALTER TABLE members ADD CONSTRAINT no_poison CHECK (member_id NOT LIKE 'POISON%')"))
    valid = [f.purchase(f"V{n}", "10.00", event_id=f"valid-{n}") for n in range(3)]
    year_one = f.purchase("V9", "10.00", event_id="year-one", occurred_at="0001-01-01T00:00:00+14:00")
    nul_key = f.purchase("V9", "10.00", event_id="nul-key")
    nul_key["payload"]["\x00x"] = 1
    batch = [f.purchase(f"B{n}", "10.00", event_id=f"batch-{n}") for n in range(8)]
    batch.insert(3, f.signup("POISON-1", birthday=BIRTHDAY, event_id="batch-poison"))
    expected = [
        "message.actor_name: the actor belongs to queue 'calendar', not 'events'",
        "message.queue_name: 'calendar' was read from queue 'events'",
        "message: nests arrays and objects deeper than 19 levels",
        "occurred_at: must be after 2000-01-01",
        "payload.\\u0000x: is not a known field",
        "message.args: reject_message(raw, reason) cannot take 0 positional and 0 keyword arguments",
        "message.args: run_job_chunk(job, scheduled_for, after, upto) cannot take 1 positional and 0 keyword arguments",
        "event: a value was refused by the database (SQLSTATE 23514, CheckViolationError)",
        "event: a value was refused by the database (SQLSTATE 23514, CheckViolationError)",
    ]
    # Two referrals the other way round: the one applied second is refused, whichever it is
    # (4 threads do not keep their order).
    mutual = {
        f"payload.referee_member_id: {a} is above {b} in the chain of referrals (1 step up); "
        "referrals cannot be mutual or circular"
        for a, b in (("V0", "V1"), ("V1", "V0"))
    }

    enqueue(client, ns, "events", actor="process_event", args=[valid[0]])
    enqueue(client, ns, "events", actor="plan_job", args=["expire-points", "2099-01-01T00:00:00+00:00"])
    enqueue(
        client,
        ns,
        "events",
        actor="plan_job",
        args=["expire-points", "2099-01-01T00:00:00+00:00"],
        claimed_queue="calendar",
    )
    enqueue(client, ns, "calendar", actor="plan_job", args=["expire-points", "2099-01-01T00:00:00+00:00"])
    deep = '{"options": {"redis_message_id": "{id}"}, "args": [' + "[" * 1000 + "]" * 1000 + "]}"
    enqueue(client, ns, "events", deep.encode())
    enqueue(client, ns, "events", actor="process_event", args=[year_one])
    enqueue(client, ns, "events", actor="process_event", args=[nul_key])
    enqueue(client, ns, "events", actor="reject_message", args=[])
    enqueue(client, ns, "calendar", actor="run_job_chunk", args=["expire-points"])
    enqueue(client, ns, "events", actor="process_event", args=[f.signup("POISON-2", birthday=BIRTHDAY)])
    enqueue(client, ns, "events", actor="process_batch", args=[batch])
    enqueue(client, ns, "events", actor="process_event", args=[f.referral("V0", "V1", event_id="ref-0-1")])
    enqueue(client, ns, "events", actor="process_event", args=[f.referral("V1", "V0", event_id="ref-1-0")])
    enqueue(client, ns, "events", actor="process_event", args=[valid[1]])
    enqueue(client, ns, "events", actor="process_event", args=[valid[2]])

    worker = WorkerProcess(fault_env, tmp_path / "worker.log", processes=1, threads=4)
    worker.start()
    try:
        deadline = time.monotonic() + DONE_S
        while (
            await _count(db, "SELECT count(*) FROM rejected_events") < len(expected) + 2
            or await _count(db, "SELECT count(*) FROM processed_events WHERE source = 'pos'") < 3 + 8 + 1
        ):
            assert time.monotonic() < deadline and worker.process.poll() is None, worker.output()[-4000:]
            time.sleep(0.1)
        deadline = time.monotonic() + DONE_S
        while (
            client.llen(f"{ns}:events")
            + client.llen(f"{ns}:calendar")
            + sum(client.scard(key) for key in client.scan_iter(f"{ns}:__acks__*"))
        ):
            assert time.monotonic() < deadline, "messages still ready or in flight"
            time.sleep(0.1)
        assert worker.process.poll() is None
    finally:
        worker.stop()
        async with db.begin() as conn:
            await conn.execute(text("ALTER TABLE members DROP CONSTRAINT no_poison"))

    async with db.connect() as conn:
        reasons = (await conn.execute(text("SELECT reason FROM rejected_events ORDER BY reason"))).scalars().all()
        balances = dict((await conn.execute(text("SELECT member_id, available_points FROM members"))).all())
        expired = (await conn.execute(text("SELECT count(*) FROM ledger_entries WHERE kind = 'expire'"))).scalar_one()
        firings = (await conn.execute(text("SELECT count(*) FROM scheduler_firings"))).scalar_one()
    future = [
        r for r in reasons if r.startswith("scheduled_for: 2099-01-01T00:00:00+00:00 is more than 5 minutes ahead")
    ]
    assert len(future) == 1
    refused = [r for r in reasons if r in mutual]
    assert len(refused) == 1
    assert sorted(r for r in reasons if r not in future and r not in mutual) == sorted(expected)
    # Each valid purchase: 10 + 100 first purchase; one referral paid (+200 referrer / +100 referee).
    # "A is above B": A's referral of B was paid, B's of A refused.
    referrer = refused[0].removeprefix("payload.referee_member_id: ").split(" ")[0]
    referee = "V1" if referrer == "V0" else "V0"
    assert {m: balances[m] for m in ("V0", "V1", "V2")} == {referrer: 310, referee: 210, "V2": 110}
    assert [balances[f"B{n}"] for n in range(8)] == [110] * 8
    assert not any(m.startswith("POISON") for m in balances)
    assert (expired, firings) == (0, 0)
    for queue in ("events", "calendar"):
        assert [
            client.llen(f"{ns}:{queue}"),
            client.hlen(f"{ns}:{queue}.msgs"),
            client.zcard(f"{ns}:{queue}.DQ"),
            client.hlen(f"{ns}:{queue}.DQ.msgs"),
            client.zcard(f"{ns}:{queue}.XQ"),
        ] == [0, 0, 0, 0, 0]
    assert (await audit_all(db)).clean
    assert BIRTHDAY not in worker.output()
