"""expiry-warnings: tell members what expires next, once per lot.

Per member, the lots expiring on the earliest program-local date within
`expiry.warning_days` that no warning has named yet: one `points_expiring` notification with
their points and that date; the lots are marked so later runs never repeat them.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from worker.domain.calendar import firing_key
from worker.domain.program import Program
from worker.services.jobs.common import IN_RANGE, ChunkResult, Range

_WARN = text(
    f"""
    WITH window_lots AS (
        SELECT lot_id, member_id, remaining, (expires_at AT TIME ZONE :tz)::date AS expires_on
        FROM lots
        WHERE {IN_RANGE} AND remaining > 0 AND pending_until IS NULL AND warned_at IS NULL
          AND expires_at > :now AND expires_at <= :until
    ),
    first_day AS (
        SELECT member_id, min(expires_on) AS expires_on FROM window_lots GROUP BY member_id
    ),
    named AS (
        SELECT w.lot_id, w.member_id, w.remaining, w.expires_on
        FROM window_lots w JOIN first_day f USING (member_id, expires_on)
    ),
    marked AS (
        UPDATE lots SET warned_at = :now FROM named WHERE lots.lot_id = named.lot_id RETURNING 1
    ),
    per_member AS (
        SELECT member_id, sum(remaining) AS points, min(expires_on) AS expires_on, min(lot_id) AS first_lot
        FROM named GROUP BY member_id
    ),
    notified AS (
        INSERT INTO notifications (member_id, kind, params, dedupe_key, source, event_id)
        SELECT member_id, 'points_expiring',
               jsonb_build_object('points', points, 'expires_on', to_char(expires_on, 'YYYY-MM-DD')),
               'points_expiring:' || member_id || ':' || first_lot, 'scheduler', :key
        FROM per_member
        ON CONFLICT (dedupe_key) DO NOTHING
        RETURNING 1
    )
    SELECT (SELECT count(*) FROM per_member) AS members, (SELECT coalesce(sum(points), 0) FROM per_member) AS points,
           (SELECT count(*) FROM marked) AS lots, (SELECT count(*) FROM notified) AS notified
    """
)


async def run(conn: AsyncConnection, program: Program, now: datetime, span: Range) -> ChunkResult:
    row = (
        await conn.execute(
            _WARN,
            {
                **span.params(),
                "now": now,
                "until": now + timedelta(days=program.expiry.warning_days),
                "tz": program.timezone,
                "key": firing_key("expiry-warnings", now),
            },
        )
    ).one()
    return ChunkResult(members=row.members, points=int(row.points))
