"""Event actors: decode, hand to the intake service, log the outcome. Nothing else."""

from __future__ import annotations

from typing import Any

import structlog

from worker import runtime
from worker.actors import ActorSpec
from worker.services import intake

log = structlog.get_logger(__name__)

QUEUE = "events"

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


async def process_batch(events: Any) -> None:
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
    ActorSpec(process_batch, QUEUE, {**RETRIES, "time_limit": 300_000}),
)
