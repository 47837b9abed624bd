"""Calendar actors: plan a scheduled firing into chunks, run one chunk. Thin: the work is in
worker.jobs; the scheduler process only sends `plan_job`."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

import dramatiq
import structlog

from worker import jobs, metrics, runtime
from worker.actors import ActorSpec
from worker.domain.events import safe_text
from worker.jobs.common import Range
from worker.services import intake

log = structlog.get_logger(__name__)

QUEUE = "calendar"
RETRIES = {"max_retries": 20, "min_backoff": 1_000, "max_backoff": 300_000}
# A firing is planned for "now" give or take the scheduler's tick and clock skew between
# machines. One further ahead would expire points, or end grace, before their time: it runs
# only when the operator asks for it (`loyalty scheduler run --now T --force`).
FIRING_AHEAD_MAX = timedelta(minutes=5)


def firing_problem(job: str, scheduled_for: str, now: datetime, force: bool) -> str | None:
    """Why a firing message cannot run (never retried: it is recorded as rejected), or None."""
    if job not in jobs.JOB_KEYS:
        return f"job: {job!r} is not a calendar job (known: {', '.join(sorted(jobs.JOB_KEYS))})"
    try:
        at = datetime.fromisoformat(scheduled_for)
    except (TypeError, ValueError):
        return "scheduled_for: must be an ISO 8601 time with a UTC offset"
    if at.tzinfo is None:
        return "scheduled_for: must include a UTC offset"
    if not force and at - now > FIRING_AHEAD_MAX:
        return (
            f"scheduled_for: {at.isoformat()} is more than {int(FIRING_AHEAD_MAX.total_seconds() // 60)} "
            f"minutes ahead of the worker's clock ({now.isoformat(timespec='seconds')}); "
            "`loyalty scheduler run JOB --now T --force` runs a firing early"
        )
    return None


async def plan_job(job: str, scheduled_for: str, force: bool = False) -> None:
    rt = runtime.current()
    problem = firing_problem(job, scheduled_for, rt.clock(), force is True)
    if problem is not None:
        await intake.record_rejected(
            rt.engine, {"actor": "plan_job", "job": job, "scheduled_for": scheduled_for}, problem
        )
        log.warning("job_firing_refused", job=safe_text(str(job), 64), reason=problem)
        return
    at = datetime.fromisoformat(scheduled_for)
    run_chunk = dramatiq.get_broker().get_actor("run_job_chunk")

    async def send(ranges: list[Range]) -> None:
        def enqueue() -> None:
            for span in ranges:
                run_chunk.send(job, scheduled_for, span.after, span.upto)

        await asyncio.to_thread(enqueue)  # Redis I/O off the event loop

    plan = await jobs.plan(rt.engine, rt.timeline, job, at, send)
    if not plan.claimed:
        log.info("job_firing_already_planned", job=job, scheduled_for=scheduled_for)
    else:
        log.info("job_firing_planned", job=job, scheduled_for=scheduled_for, chunks=len(plan.ranges), note=plan.note)


# The ledger entry kind each job writes, for the points metrics.
_ENTRY_KIND = {"expire-points": "expire", "release-pending": "release", "birthday": "earn"}


async def run_job_chunk(job: str, scheduled_for: str, after: str, upto: str | None) -> None:
    rt = runtime.current()
    problem = firing_problem(job, scheduled_for, rt.clock(), force=True)
    if problem is None and not await jobs.is_planned(rt.engine, job, datetime.fromisoformat(scheduled_for)):
        problem = "scheduled_for: no such firing was planned (chunks come only from plan_job)"
    if problem is not None:
        await intake.record_rejected(
            rt.engine, {"actor": "run_job_chunk", "job": job, "scheduled_for": scheduled_for, "after": after}, problem
        )
        log.warning("job_chunk_refused", job=safe_text(str(job), 64), reason=problem)
        return
    with metrics.scheduler_job(job):
        result = await jobs.run_chunk(rt.engine, rt.timeline, job, datetime.fromisoformat(scheduled_for), after, upto)
    if result is not None and job in _ENTRY_KIND and result.points:
        metrics.count_ledger([(_ENTRY_KIND[job], result.points, result.members)])
    if result is None:
        log.info("job_chunk_already_done", job=job, scheduled_for=scheduled_for, after=after)
    else:
        log.info(
            "job_chunk_done",
            job=job,
            scheduled_for=scheduled_for,
            after=after,
            members=result.members,
            points=result.points,
        )


ACTORS = (
    ActorSpec(plan_job, QUEUE, {**RETRIES, "time_limit": 300_000}),
    # A chunk is at most schedule.chunk_members members; ten minutes is far beyond its need.
    ActorSpec(run_job_chunk, QUEUE, {**RETRIES, "time_limit": 600_000}),
)
