"""release-pending: purchase points held for the return window become available when it closes.

A refund inside the window has already taken its points from the order's own pending lot
(see accounts.reverse), so only what is left is released.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import bindparam, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.types import Text

from worker.domain.calendar import firing_key
from worker.domain.program import Program
from worker.services.jobs.common import IN_RANGE, ChunkResult, Range, lock_then_apply

_DUE = "l.pending_until IS NOT NULL AND l.pending_until <= :now"

_LOCK = text(
    f"""
    SELECT member_id FROM members m
    WHERE {IN_RANGE} AND EXISTS (SELECT 1 FROM lots l WHERE l.member_id = m.member_id AND {_DUE})
    ORDER BY member_id
    FOR UPDATE
    """
)

_RELEASE = text(
    f"""
    WITH due AS (
        SELECT l.lot_id, l.member_id, l.remaining FROM lots l
        WHERE l.member_id = ANY(:member_ids) AND {_DUE}
    ),
    released AS (
        UPDATE lots SET pending_until = NULL FROM due WHERE lots.lot_id = due.lot_id RETURNING lots.lot_id
    ),
    per_member AS (
        SELECT member_id, sum(remaining) AS points, count(*) AS lots FROM due GROUP BY member_id
    ),
    entries AS (
        INSERT INTO ledger_entries (member_id, kind, points, pending_points, source, event_id, event_type, rules, occurred_at)
        SELECT member_id, 'release', points, -points, 'scheduler', :key, 'release-pending',
               jsonb_build_array(jsonb_build_object('rule', 'return_window_closed', 'points', points, 'lots', lots)),
               :now
        FROM per_member WHERE points > 0
        RETURNING member_id
    ),
    balances AS (
        UPDATE members SET available_points = available_points + p.points,
                           pending_points = pending_points - p.points, updated_at = now()
        FROM per_member p WHERE members.member_id = p.member_id
        RETURNING members.member_id
    )
    SELECT (SELECT count(*) FROM entries) AS members, (SELECT coalesce(sum(points), 0) FROM per_member) AS points,
           (SELECT count(*) FROM released) AS lots, (SELECT count(*) FROM balances) AS balances
    """
).bindparams(bindparam("member_ids", type_=ARRAY(Text)))


async def run(conn: AsyncConnection, program: Program, now: datetime, span: Range) -> ChunkResult:
    return await lock_then_apply(conn, _LOCK, _RELEASE, span, now, firing_key("release-pending", now))
