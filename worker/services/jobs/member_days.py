"""member-day: on member days, a "today is member day" message to active members, once a day."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from worker.domain.calendar import firing_key
from worker.domain.program import Program
from worker.domain.rules import is_member_day, local_date
from worker.services.jobs.common import IN_RANGE, ChunkResult, Range

_NOTIFY = text(
    f"""
    WITH notified AS (
        INSERT INTO notifications (member_id, kind, params, dedupe_key, source, event_id)
        SELECT member_id, 'member_day', jsonb_build_object('multiplier', CAST(:multiplier AS text)),
               'member_day:' || member_id || ':' || CAST(:day AS text), 'scheduler', :key
        FROM members
        WHERE {IN_RANGE} AND erased_at IS NULL AND updated_at >= :active_since
        ON CONFLICT (dedupe_key) DO NOTHING
        RETURNING 1
    )
    SELECT count(*) FROM notified
    """
)


def is_today(program: Program, now: datetime) -> bool:
    return is_member_day(program, local_date(program, now))


async def run(conn: AsyncConnection, program: Program, now: datetime, span: Range) -> ChunkResult:
    if not is_today(program, now):
        return ChunkResult()
    count = (
        await conn.execute(
            _NOTIFY,
            {
                **span.params(),
                "multiplier": format(program.member_day.multiplier.normalize(), "f"),
                "day": local_date(program, now).isoformat(),
                "key": firing_key("member-day", now),
                "active_since": now - timedelta(days=program.schedule.active_days),
            },
        )
    ).scalar_one()
    return ChunkResult(members=count)
