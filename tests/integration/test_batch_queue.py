"""Batch messages on the real Redis broker: moved from the events queue to the batch queue,
and held one at a time per worker process."""

from __future__ import annotations

import dramatiq
from sqlalchemy import text

from tests.factories import purchase
from worker.actors.events import BATCH_QUEUE
from worker.drain import drain


async def scalar(db, sql: str):
    async with db.connect() as conn:
        return (await conn.execute(text(sql))).scalar_one()


async def test_a_batch_sent_on_the_events_queue_is_applied_from_the_batch_queue(broker, db):
    batch = [purchase(f"BQ{i}", "20.00", event_id=f"bq-{i}") for i in range(3)]
    broker.get_actor("process_batch").send(batch)

    # Given a worker of the events queue only: it moves the batch and applies nothing.
    worker = dramatiq.Worker(broker, queues={"events"}, worker_threads=2, worker_timeout=50)
    worker.start()
    try:
        worker.join()
    finally:
        worker.stop()
    assert (broker.do_qsize("events"), broker.do_qsize(BATCH_QUEUE)) == (0, 1)
    assert await scalar(db, "SELECT count(*) FROM processed_events") == 0

    # Then a worker of every queue applies it.
    drain(broker, timeout_s=60, threads=2)
    assert await scalar(db, "SELECT count(*) FROM processed_events WHERE event_id LIKE 'bq-%'") == 3
    assert broker.do_qsize(BATCH_QUEUE) == 0


def test_a_worker_process_holds_one_batch_message_at_a_time(broker):
    apply_batch = broker.get_actor("apply_batch")
    for i in range(3):
        apply_batch.send([purchase(f"BH{i}", "1.00", event_id=f"bh-{i}")])
    # dramatiq asks for 2 x threads; the batch queue's consumer holds one message at a time.
    batches = broker.consume(BATCH_QUEUE, prefetch=64, timeout=20)
    events = broker.consume("events", prefetch=64, timeout=20)
    try:
        assert (batches.prefetch, events.prefetch) == (1, 64)
        first = next(message for message in batches if message is not None)
        # While the first is unacknowledged, nothing more is fetched, whatever is queued.
        assert [next(batches) for _ in range(3)] == [None, None, None]
        batches.ack(first)
        second = next(message for message in batches if message is not None)
        assert second.message_id != first.message_id
        batches.ack(second)
    finally:
        batches.close()
        events.close()
