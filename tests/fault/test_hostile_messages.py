"""Hostile messages put straight into Redis: each one ends as a rejected_events row with its
reason (a message for an unknown actor too); the worker keeps running and the valid events
around them are applied."""

from __future__ import annotations

import time

import dramatiq
import pytest
import redis
from sqlalchemy import text

from tests.fault.servers import WorkerProcess
from tests.hostile import CASES, valid
from worker.broker import build_broker
from worker.config import Settings
from worker.services.intake import BATCH_EVENTS_MAX, RAW_STORED_MAX

pytestmark = pytest.mark.fault

DONE_S = 90


def _message(actor_name: str, *args, **kwargs) -> dramatiq.Message:
    return dramatiq.Message(queue_name="events", actor_name=actor_name, args=args, kwargs=kwargs, options={})


async def test_hostile_messages_are_rejected_with_reasons_and_the_worker_survives(db, fault_env, tmp_path):
    settings = Settings(redis_url=fault_env["LOYALTY_REDIS_URL"], namespace=fault_env["LOYALTY_NAMESPACE"])
    broker = build_broker(settings)
    over_size = [valid(100 + i) for i in range(BATCH_EVENTS_MAX + 1)]
    messages = [_message("process_event", valid(1))]
    expected: list[str] = []
    for raw, reason in CASES:
        messages.append(_message("process_event", raw))  # the raw JSON text, as a producer might send it
        expected.append(reason)
    messages += [
        _message("process_event", 42),
        _message("process_event", valid(2), valid(3)),
        _message("process_event", event=valid(4)),  # the argument by name: fits, and is applied
        _message("process_batch", over_size),
        _message("process_batch", {"not": "a list"}),
        _message("no_such_actor", valid(5)),
        _message("process_event", valid(6)),
    ]
    expected += [
        "event: must be a JSON object, got int",
        "message.args: process_event(event) cannot take 2 positional and 0 keyword arguments",
        f"batch: {BATCH_EVENTS_MAX + 1} events is over the limit of {BATCH_EVENTS_MAX}",
        "batch: must be a JSON array of events",
        "message.actor_name: 'no_such_actor' is not an actor of this worker",
    ]
    for message in messages:
        broker.enqueue(message)

    worker = WorkerProcess(fault_env, tmp_path / "worker.log", processes=1, threads=4)
    worker.start()
    try:
        deadline = time.monotonic() + DONE_S
        while True:
            async with db.connect() as conn:
                rejected = (await conn.execute(text("SELECT count(*) FROM rejected_events"))).scalar_one()
                applied = (await conn.execute(text("SELECT count(*) FROM processed_events"))).scalar_one()
            if rejected >= len(expected) and applied >= 3:
                break
            assert time.monotonic() < deadline, worker.output()[-4000:]
            time.sleep(0.1)
        # Still alive and still working after all of it: one more valid event goes through.
        broker.enqueue(_message("process_event", valid(7)))
        deadline = time.monotonic() + DONE_S
        while True:
            async with db.connect() as conn:
                applied = (await conn.execute(text("SELECT count(*) FROM processed_events"))).scalar_one()
            if applied == 4:
                break
            assert time.monotonic() < deadline and worker.process.poll() is None, worker.output()[-4000:]
            time.sleep(0.1)
        assert worker.process.poll() is None
    finally:
        worker.stop()
        broker.close()

    async with db.connect() as conn:
        reasons = sorted((await conn.execute(text("SELECT reason FROM rejected_events"))).scalars().all())
        longest = (await conn.execute(text("SELECT max(length(raw)) FROM rejected_events"))).scalar_one()
        points = (await conn.execute(text("SELECT available_points FROM members WHERE member_id = 'H1'"))).scalar_one()
        tables = (await conn.execute(text("SELECT to_regclass('members') IS NOT NULL"))).scalar_one()
    assert reasons == sorted(expected)
    # The 1 MB event and the 1001-event batch are kept only up to the limit, with a note.
    assert RAW_STORED_MAX < longest < RAW_STORED_MAX + 64
    # valid(1), valid(4), valid(6), valid(7): 10 points each plus the first-purchase bonus once.
    assert points == 4 * 10 + 100 and tables
    dead = redis.Redis.from_url(settings.redis_url).zcard(f"{settings.namespace}:events.XQ")
    assert dead == 0  # nothing is left for an operator to dig out of the dead-letter set
