"""Calendar jobs on the worker side: plan a firing into member-id chunks, run each chunk once.

A firing is (job, scheduled_for). `plan` claims it in scheduler_firings (a second claim,
from another scheduler or a redelivered message, finds the row and does nothing), splits the
members into ranges of `schedule.chunk_members` and hands the ranges to a sender, so every
worker can take a share. `run_chunk` claims (job, scheduled_for, after) in scheduler_chunks
and does the job's work for that range, each step idempotent on its own key too.

A firing is decided by the program version in force at its own time, `scheduled_for`, as an
event is by the one in force at its occurred_at: a firing run late, or again, runs as it
would have on time.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from worker.domain.firings import JOB_KEYS, chunk_ranges
from worker.domain.program import Program
from worker.domain.program_timeline import ProgramTimeline, timeline_of
from worker.jobs import birthdays, expiry, expiry_warnings, member_days, pending, tier_review
from worker.jobs.common import ChunkResult, Range

_CLAIM_FIRING = text(
    """
    INSERT INTO scheduler_firings (job, scheduled_for) VALUES (:job, :scheduled_for)
    ON CONFLICT DO NOTHING RETURNING 1
    """
)
_BOUNDARIES = text(
    """
    SELECT member_id FROM (
        SELECT member_id, row_number() OVER (ORDER BY member_id) AS n FROM members
    ) numbered WHERE n % :size = 0 ORDER BY member_id
    """
)
_PLANNED = text(
    "UPDATE scheduler_firings SET chunks_planned = :chunks, note = :note WHERE job = :job AND scheduled_for = :scheduled_for"
)
_CLAIM_CHUNK = text(
    """
    INSERT INTO scheduler_chunks (job, scheduled_for, after_member) VALUES (:job, :scheduled_for, :after)
    ON CONFLICT DO NOTHING RETURNING 1
    """
)
_CHUNK_DONE = text(
    """
    WITH chunk AS (
        UPDATE scheduler_chunks SET members = :members, points = :points, done_at = now()
        WHERE job = :job AND scheduled_for = :scheduled_for AND after_member = :after
    )
    UPDATE scheduler_firings SET
        chunks_done = chunks_done + 1, members = members + :members, points = points + :points,
        finished_at = CASE WHEN chunks_done + 1 >= chunks_planned THEN now() END
    WHERE job = :job AND scheduled_for = :scheduled_for
    """
)

# Jobs whose chunk is one set-based transaction; the others apply per member (own keys).
_SET_BASED = {
    "expire-points": expiry.run,
    "expiry-warnings": expiry_warnings.run,
    "release-pending": pending.run,
    "member-day": member_days.run,
    "tier-review": tier_review.run,
}
_PER_MEMBER = {"birthday": birthdays.run}


@dataclass(frozen=True)
class Plan:
    claimed: bool
    ranges: list[Range]
    note: str | None = None


def _skip_reason(program: Program, job: str, scheduled_for: datetime) -> str | None:
    if job == "member-day" and not member_days.is_today(program, scheduled_for):
        return "not a member day"
    if job == "tier-review":
        return tier_review.skip_reason(program)
    return None


async def plan(
    engine: AsyncEngine,
    programs: Program | ProgramTimeline,
    job: str,
    scheduled_for: datetime,
    send: Callable[[list[Range]], Awaitable[None]],
) -> Plan:
    """Claim the firing and send its chunks, in the claim's transaction: if sending fails the
    claim rolls back and the message is retried; chunks sent twice run once."""
    if job not in JOB_KEYS:
        raise KeyError(job)
    program = timeline_of(programs).at(scheduled_for)
    async with engine.begin() as conn:
        key = {"job": job, "scheduled_for": scheduled_for}
        if (await conn.execute(_CLAIM_FIRING, key)).first() is None:
            return Plan(False, [])
        note = _skip_reason(program, job, scheduled_for)
        ranges: list[Range] = []
        if note is None:
            size = program.schedule.chunk_members
            boundaries = (await conn.execute(_BOUNDARIES, {"size": size})).scalars().all()
            ranges = [Range(after, upto) for after, upto in chunk_ranges(list(boundaries))]
            await send(ranges)
        await conn.execute(_PLANNED, {**key, "chunks": len(ranges), "note": note})
        if not ranges:
            await conn.execute(
                text(
                    "UPDATE scheduler_firings SET finished_at = now() WHERE job = :job AND scheduled_for = :scheduled_for"
                ),
                key,
            )
        return Plan(True, ranges, note)


_PLANNED_FIRING = text("SELECT 1 FROM scheduler_firings WHERE job = :job AND scheduled_for = :scheduled_for")


async def is_planned(engine: AsyncEngine, job: str, scheduled_for: datetime) -> bool:
    async with engine.connect() as conn:
        return (await conn.execute(_PLANNED_FIRING, {"job": job, "scheduled_for": scheduled_for})).first() is not None


async def _record(conn: AsyncConnection, job: str, scheduled_for: datetime, after: str, result: ChunkResult) -> None:
    await conn.execute(
        _CHUNK_DONE,
        {
            "job": job,
            "scheduled_for": scheduled_for,
            "after": after,
            "members": result.members,
            "points": result.points,
        },
    )


async def run_chunk(
    engine: AsyncEngine,
    programs: Program | ProgramTimeline,
    job: str,
    scheduled_for: datetime,
    after: str,
    upto: str | None,
) -> ChunkResult | None:
    """Do one chunk of a firing; None when this chunk was already done."""
    timeline = timeline_of(programs)
    key = {"job": job, "scheduled_for": scheduled_for, "after": after}
    span = Range(after, upto)
    if job in _SET_BASED:
        async with engine.begin() as conn:
            if (await conn.execute(_CLAIM_CHUNK, key)).first() is None:
                return None
            result = await _SET_BASED[job](conn, timeline.at(scheduled_for), scheduled_for, span)
            await _record(conn, job, scheduled_for, after, result)
            return result
    async with engine.connect() as conn:
        done = (
            await conn.execute(
                text(
                    "SELECT 1 FROM scheduler_chunks WHERE job = :job AND scheduled_for = :scheduled_for AND after_member = :after"
                ),
                key,
            )
        ).first()
    if done is not None:
        return None
    result = await _PER_MEMBER[job](engine, timeline, scheduled_for, span)
    async with engine.begin() as conn:
        if (await conn.execute(_CLAIM_CHUNK, key)).first() is None:
            return None
        await _record(conn, job, scheduled_for, after, result)
    return result
