"""Calendar actors: plan a scheduled firing into chunks, run one chunk. Thin: the work is in
worker.services.jobs; the scheduler process only sends `plan_job`."""

from __future__ import annotations

import asyncio
from datetime import datetime

import dramatiq
import structlog

from worker import metrics, runtime
from worker.actors import ActorSpec
from worker.services import jobs
from worker.services.jobs.common import Range

log = structlog.get_logger(__name__)

QUEUE = "calendar"
RETRIES = {"max_retries": 20, "min_backoff": 1_000, "max_backoff": 300_000}


async def plan_job(job: str, scheduled_for: str) -> None:
    rt = runtime.current()
    at = datetime.fromisoformat(scheduled_for)
    run_chunk = dramatiq.get_broker().get_actor("run_job_chunk")

    async def send(ranges: list[Range]) -> None:
        def enqueue() -> None:
            for span in ranges:
                run_chunk.send(job, scheduled_for, span.after, span.upto)

        await asyncio.to_thread(enqueue)  # Redis I/O off the event loop

    plan = await jobs.plan(rt.engine, rt.program, job, at, send)
    if not plan.claimed:
        log.info("job_firing_already_planned", job=job, scheduled_for=scheduled_for)
    else:
        log.info("job_firing_planned", job=job, scheduled_for=scheduled_for, chunks=len(plan.ranges), note=plan.note)


# The ledger entry kind each job writes, for the points metrics.
_ENTRY_KIND = {"expire-points": "expire", "release-pending": "release", "birthday": "earn"}


async def run_job_chunk(job: str, scheduled_for: str, after: str, upto: str | None) -> None:
    rt = runtime.current()
    with metrics.scheduler_job(job):
        result = await jobs.run_chunk(rt.engine, rt.program, job, datetime.fromisoformat(scheduled_for), after, upto)
    if result is not None and job in _ENTRY_KIND and result.points:
        metrics.count_ledger([(_ENTRY_KIND[job], result.points, result.members)])
    if result is None:
        log.info("job_chunk_already_done", job=job, scheduled_for=scheduled_for, after=after)
    else:
        log.info("job_chunk_done", job=job, scheduled_for=scheduled_for, after=after, members=result.members,
                 points=result.points)


ACTORS = (
    ActorSpec(plan_job, QUEUE, {**RETRIES, "time_limit": 300_000}),
    # A chunk is at most schedule.chunk_members members; ten minutes is far beyond its need.
    ActorSpec(run_job_chunk, QUEUE, {**RETRIES, "time_limit": 600_000}),
)
