"""member-day: on member days, a "today is member day" message to active members, once a day."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncConnection

from worker.domain.firings import firing_key
from worker.domain.local_days import is_member_day, local_date
from worker.domain.program import Program
from worker.jobs.common import ChunkResult, Range
from worker.store import jobs as store_jobs


def is_today(program: Program, now: datetime) -> bool:
    return is_member_day(program, local_date(program, now))


async def run(conn: AsyncConnection, program: Program, now: datetime, span: Range) -> ChunkResult:
    if not is_today(program, now):
        return ChunkResult()
    count = await store_jobs.notify_member_day(
        conn,
        span,
        multiplier=format(program.member_day.multiplier.normalize(), "f"),
        day=local_date(program, now).isoformat(),
        key=firing_key("member-day", now),
        active_since=now - timedelta(days=program.schedule.active_days),
    )
    return ChunkResult(members=count)
