"""birthday: the gift and a greeting for members whose birthday is today (program-local date).

Each gift is its own single-member ledger transaction keyed `birthday:<year>:<member>`, so a
member gets one per year however often the job runs.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from worker.domain.firings import birthdays_on
from worker.domain.local_days import local_date
from worker.domain.program_timeline import ProgramTimeline
from worker.jobs.common import IN_RANGE, ChunkResult, Range
from worker.services.ledger import BirthdayGift, apply_event

_CELEBRATING = text(
    f"""
    SELECT member_id FROM members
    WHERE {IN_RANGE} AND erased_at IS NULL AND birthday IS NOT NULL
      AND (extract(month FROM birthday), extract(day FROM birthday)) IN (SELECT * FROM unnest(CAST(:months AS int[]), CAST(:days AS int[])))
    ORDER BY member_id
    """
)


async def run(engine: AsyncEngine, programs: ProgramTimeline, now: datetime, span: Range) -> ChunkResult:
    """Each gift is decided by the version in force at the firing's time (`now`), and a
    re-evaluation it starts decides every event by its own version."""
    today = local_date(programs.at(now), now)
    days = birthdays_on(today)
    async with engine.connect() as conn:
        member_ids = (
            (
                await conn.execute(
                    _CELEBRATING, {**span.params(), "months": [m for m, _ in days], "days": [d for _, d in days]}
                )
            )
            .scalars()
            .all()
        )
    members = points = 0
    for member_id in member_ids:
        async with engine.begin() as conn:
            result = await apply_event(conn, programs, BirthdayGift(member_id, today.year, now))
        if result.status == "applied" and result.points:
            members += 1
            points += result.points
    return ChunkResult(members=members, points=points)
