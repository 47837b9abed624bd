"""Event actors: decode, hand to the intake service, log the outcome. Nothing else."""

from __future__ import annotations

from typing import Any

import structlog

from worker import runtime
from worker.actors import ActorSpec
from worker.services import intake

log = structlog.get_logger(__name__)

QUEUE = "events"

# Invalid input never raises (it is recorded as rejected), so retries only ever cover
# infrastructure faults: a PostgreSQL restart or failover is ridden out with backoff.
RETRIES = {"max_retries": 20, "min_backoff": 500, "max_backoff": 60_000}


async def _wrong_shape(rt, args: tuple, kwargs: dict, expected: str) -> bool:
    """A hand-made message with the wrong arguments: recorded like any bad input, never retried."""
    if len(args) == 1 and not kwargs:
        return False
    reason = f"message: {expected}, got {len(args)} and {len(kwargs)} keyword"
    await intake.record_rejected(rt.engine, {"args": list(args), "kwargs": kwargs}, reason)
    log.warning("message_rejected", reason=reason)
    return True


async def process_event(*args: Any, **kwargs: Any) -> None:
    rt = runtime.current()
    if await _wrong_shape(rt, args, kwargs, "process_event takes exactly one event argument"):
        return
    event = args[0]
    outcome = await intake.process(rt.engine, rt.program, event, now=rt.clock(), strict=rt.settings.strict_checks)
    log.info("event_processed", status=outcome.status, type=outcome.event_type, points=outcome.points,
             reason=outcome.reason, note=outcome.note)


async def process_batch(*args: Any, **kwargs: Any) -> None:
    rt = runtime.current()
    if await _wrong_shape(rt, args, kwargs, "process_batch takes exactly one list of events"):
        return
    events = args[0]
    reason = intake.batch_problem(events)
    if reason is not None:
        await intake.record_rejected(rt.engine, events, reason)
        log.warning("batch_rejected", reason=reason)
        return
    outcomes = await intake.process_batch(rt.engine, rt.program, events, now=rt.clock(), strict=rt.settings.strict_checks)
    counts: dict[str, int] = {}
    for outcome in outcomes:
        counts[outcome.status] = counts.get(outcome.status, 0) + 1
    log.info("batch_processed", events=len(events), **counts)


ACTORS = (
    ActorSpec(process_event, QUEUE, {**RETRIES, "time_limit": 60_000}),
    ActorSpec(process_batch, QUEUE, {**RETRIES, "time_limit": 300_000}),
)
