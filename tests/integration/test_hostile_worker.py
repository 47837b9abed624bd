"""Hostile messages written straight into Redis in the documented wire format
(docs/wire-format.md): each ends as a rejected_events row with its reason, the worker keeps
running, and the valid events around them are applied."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import redis
from sqlalchemy import text

from tests.conftest import REDIS_URL
from tests.hostile_cases import CASES, good
from worker.domain.events import EVENT_BYTES_MAX
from worker.drain import drain
from worker.services.audit import audit_all
from worker.services.intake import BATCH_BYTES_MAX, BATCH_EVENTS_MAX, raw_text


def enqueue_raw(namespace: str, body: bytes) -> str:
    """HSET + RPUSH in one MULTI/EXEC, exactly as a non-Python producer does; {id} in the body
    is replaced by the Redis id."""
    client = redis.Redis.from_url(REDIS_URL)
    redis_id = str(uuid.uuid4())
    body = body.replace(b"{id}", redis_id.encode())
    with client.pipeline(transaction=True) as pipe:
        pipe.hset(f"{namespace}:events.msgs", redis_id, body)
        pipe.rpush(f"{namespace}:events", redis_id)
        pipe.execute()
    return redis_id


def message(actor: str, args: list[Any], redis_id: str | None = None) -> str:
    redis_id = redis_id or str(uuid.uuid4())
    return json.dumps(
        {
            "queue_name": "events",
            "actor_name": actor,
            "args": args,
            "kwargs": {},
            "options": {"redis_message_id": redis_id},
            "message_id": str(uuid.uuid4()),
            "message_timestamp": 1_790_000_000_000,
        }
    )


def send_raw(namespace: str, actor: str, args: list[Any]) -> None:
    client = redis.Redis.from_url(REDIS_URL)
    redis_id = str(uuid.uuid4())
    with client.pipeline(transaction=True) as pipe:
        pipe.hset(f"{namespace}:events.msgs", redis_id, message(actor, args, redis_id))
        pipe.rpush(f"{namespace}:events", redis_id)
        pipe.execute()


async def rows(db, sql: str) -> list:
    async with db.connect() as conn:
        return list((await conn.execute(text(sql))).all())


def as_event_arg(raw: str) -> Any:
    """What a producer puts in args: the event object, or the text when it is not JSON."""
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def expected_reason(raw: str, reason: str) -> str:
    # A parsed event is measured in its compact encoding, not the producer's line.
    if reason.startswith("event: ") and "bytes is over the limit" in reason:
        size = len(json.dumps(json.loads(raw), separators=(",", ":"), ensure_ascii=True))
        return f"event: {size} bytes is over the limit of {EVENT_BYTES_MAX} bytes"
    return reason


async def test_each_hostile_event_is_rejected_with_its_reason_and_the_valid_ones_around_it_apply(broker, settings, db):
    ns = settings.namespace
    send_raw(ns, "process_event", [good("ok-first", amount="100.00")])
    for _, raw, _ in CASES:
        send_raw(ns, "process_event", [as_event_arg(raw)])
        send_raw(ns, "process_event", [good(f"ok-{uuid.uuid4().hex[:8]}", amount="1.00")])
    send_raw(
        ns, "process_batch", [[good("ok-b1", amount="5.00"), json.loads(CASES[7][1]), good("ok-b2", amount="5.00")]]
    )

    drain(broker, timeout_s=90, threads=2)

    reasons = sorted(r.reason for r in await rows(db, "SELECT reason FROM rejected_events"))
    assert reasons == sorted(expected_reason(raw, reason) for _, raw, reason in CASES)
    applied = await rows(db, "SELECT count(DISTINCT event_id), sum(points) FROM ledger_entries WHERE member_id = 'H1'")
    # 1 + 20 + 2 applied events: 100 + 100 bonus, 20 x 1, 2 x 5; the batch's bad event is a
    # duplicate of an already-rejected one (same raw) and is counted once. (The bonus is the
    # first purchase's by occurrence: the lowest event id, all sharing one time.)
    assert applied == [(1 + len(CASES) + 2, 200 + len(CASES) + 10)]
    assert (await audit_all(db)).clean


async def test_sql_in_an_id_is_stored_as_text_and_harms_nothing(broker, settings, db):
    hostile = good("x'); DELETE FROM ledger_entries; --", member_id="M'; DROP TABLE members; --")
    send_raw(settings.namespace, "process_event", [good("ok-1")])
    send_raw(settings.namespace, "process_event", [hostile])

    drain(broker, timeout_s=60, threads=1)

    stored = await rows(db, "SELECT event_id, member_id, raw FROM rejected_events")
    # Bound parameters throughout: the text is stored as text and every table is intact.
    assert [(r.event_id, r.member_id, json.loads(r.raw)["member_id"]) for r in stored] == [
        ("x'); DELETE FROM ledger_entries; --", "M'; DROP TABLE members; --", "M'; DROP TABLE members; --")
    ]
    assert await rows(db, "SELECT count(*) FROM ledger_entries") == [(1,)]
    assert await rows(db, "SELECT count(*) FROM members") == [(1,)]


def big_event(event_id: str) -> dict:
    """A legitimate event near the size limit: 500 line items."""
    items = [
        {
            "sku": f"SKU-{i:06d}-" + "X" * 20,  # padding: the event is meant to be near the size limit
            "category": "grocery-and-household-goods",
            "amount": "0.02",
            "quantity": 1,
        }
        for i in range(500)
    ]
    return good(event_id, amount="10.00", p_items=items)


async def test_batches_that_are_not_lists_or_too_long_are_rejected_whole(broker, settings, db):
    ns = settings.namespace
    send_raw(ns, "process_batch", [good("ok-single")])  # an object where a list belongs
    send_raw(ns, "process_batch", [[good(f"big-{i}", amount="1.00") for i in range(BATCH_EVENTS_MAX + 1)]])
    heavy = [big_event(f"heavy-{i}") for i in range(110)]
    send_raw(ns, "process_batch", [heavy])
    send_raw(ns, "process_batch", [[good("ok-in-batch", amount="2.00")]])

    drain(broker, timeout_s=60, threads=1)

    size = len(json.dumps(heavy, separators=(",", ":")))
    assert size > BATCH_BYTES_MAX
    assert sorted(r.reason for r in await rows(db, "SELECT reason FROM rejected_events")) == [
        "batch: 1001 events is over the limit of 1000",
        f"batch: {size} bytes is over the limit of {BATCH_BYTES_MAX} bytes",
        "batch: must be a JSON array of events",
    ]
    assert await rows(db, "SELECT event_id, points FROM ledger_entries") == [("ok-in-batch", 102)]


def wait_for(condition, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        time.sleep(0.05)


async def test_unknown_actor_and_undecodable_messages_do_not_stop_the_worker(broker, settings, db):
    ns = settings.namespace
    client = redis.Redis.from_url(REDIS_URL)
    send_raw(ns, "process_event", [good("ok-before")])
    send_raw(ns, "drop_all_tables", [good("ok-unknown-actor")])
    enqueue_raw(ns, b'\xff\xfe not json "redis_message_id": "{id}"')
    enqueue_raw(ns, b'{"actor_name": "process_event", "options": {"redis_message_id": "{id}"}}')
    enqueue_raw(ns, b"garbage that names no id of its own")
    enqueue_raw(ns, b"[1, 2, 3]")
    enqueue_raw(
        ns,
        json.dumps(
            {
                "queue_name": "events",
                "actor_name": "process_event",
                "args": [good("no-id")],
                "kwargs": {},
                "options": {},
                "message_id": "m",
                "message_timestamp": 1,
            }
        ).encode(),
    )
    send_raw(ns, "process_event", [good("ok-after")])

    drain(broker, timeout_s=60, threads=1)

    applied = await rows(db, "SELECT DISTINCT event_id FROM ledger_entries ORDER BY event_id")
    assert [r.event_id for r in applied] == ["ok-after", "ok-before"]
    # Undecodable messages are acked and kept as rejected, so the queue drains.
    assert sorted(r.reason for r in await rows(db, "SELECT reason FROM rejected_events")) == [
        "message.actor_name: 'drop_all_tables' is not an actor of this worker",
        "message.options.redis_message_id: is required",
        "message.queue_name: is required",
        "message: must be a JSON object, got list",
        "message: not valid JSON (JSONDecodeError)",
        "message: not valid JSON (UnicodeDecodeError)",
    ]
    assert client.hlen(f"{ns}:events.msgs") == 0
    assert sum(client.scard(key) for key in client.scan_iter(f"{ns}:__acks__*")) == 0


def test_publish_splits_batches_by_size_as_well_as_count():
    from datetime import UTC, datetime

    from worker.domain.program import DEFAULT_PROGRAM
    from worker.services.publish import publish_lines

    lines = [json.dumps(big_event(f"heavy-{i}")) for i in range(110)]
    sent: list[list[dict]] = []
    report = publish_lines(
        lines, DEFAULT_PROGRAM, datetime(2026, 11, 24, tzinfo=UTC), lambda e: None, sent.append, 1000
    )

    assert (report.accepted, report.messages) == (110, len(sent))
    assert [len(b) for b in sent] == [len(sent[0])] * (len(sent) - 1) + [110 - len(sent[0]) * (len(sent) - 1)]
    assert len(sent) == 2
    assert all(len(raw_text(b)) <= BATCH_BYTES_MAX for b in sent)
