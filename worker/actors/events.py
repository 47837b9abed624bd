"""Event actors: decode, hand to the intake service, log the outcome. Nothing else."""

from __future__ import annotations

from typing import Any

import dramatiq
import structlog

from worker import runtime
from worker.actors import ActorSpec
from worker.services import intake

log = structlog.get_logger(__name__)

QUEUE = "events"
# Batch messages are applied from a queue of their own, which each worker process reads with
# a prefetch of BATCH_PREFETCH: a batch keeps one process's event loop busy for a while, and
# with the events queue's prefetch (2 × threads) one process took every batch while the
# others idled. Producers still send `process_batch` on the events queue (docs/wire-format.md);
# it moves the batch here. Only the workers write this queue.
BATCH_QUEUE = "batches"
BATCH_PREFETCH = 1

# Invalid input never raises (it is recorded as rejected, and a message whose arguments do
# not fit is rejected by the decoder), so retries only ever cover infrastructure faults: a
# PostgreSQL restart or failover is ridden out with backoff.
RETRIES = {"max_retries": 20, "min_backoff": 500, "max_backoff": 60_000}


async def process_event(event: Any) -> None:
    rt = runtime.current()
    apply = rt.group.apply if rt.group is not None else None
    outcome = await intake.process(
        rt.engine, rt.timeline, event, now=rt.clock(), strict=rt.settings.strict_checks, apply=apply
    )
    log.info(
        "event_processed",
        status=outcome.status,
        type=outcome.event_type,
        points=outcome.points,
        reason=outcome.reason,
        note=outcome.note,
    )


def process_batch(events: Any) -> None:
    """A producer's batch message: moved to the batch queue as it is (checked there), then
    acknowledged. A crash between the two sends the batch twice; its events' keys make the
    second a run of duplicates. Runs on the worker thread: no database, no event loop."""
    broker = runtime.current().broker or dramatiq.get_broker()
    broker.get_actor(apply_batch.__name__).send(events)


async def apply_batch(events: Any) -> None:
    rt = runtime.current()
    reason = intake.batch_problem(events)
    if reason is not None:
        await intake.record_rejected(rt.engine, events, reason)
        log.warning("batch_rejected", reason=reason)
        return
    outcomes = await intake.process_batch(
        rt.engine, rt.timeline, events, now=rt.clock(), strict=rt.settings.strict_checks
    )
    counts: dict[str, int] = {}
    for outcome in outcomes:
        counts[outcome.status] = counts.get(outcome.status, 0) + 1
    log.info("batch_processed", events=len(events), **counts)


# The producers' queue carries these actors (and reject_message, which the decoder itself
# addresses); every other actor lives on a queue producers do not write (worker.wire).
PRODUCER_ACTORS = ("process_event", "process_batch")

ACTORS = (
    ActorSpec(process_event, QUEUE, {**RETRIES, "time_limit": 60_000}),
    ActorSpec(process_batch, QUEUE, {**RETRIES, "time_limit": 60_000}),
    ActorSpec(apply_batch, BATCH_QUEUE, {**RETRIES, "time_limit": 300_000}),
)
