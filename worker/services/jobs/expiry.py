"""expire-points: lots past their expiry lose what remains, as one `expire` entry per member.

Set-based per chunk: one statement locks the chunk's members that have due lots, one
statement expires every due lot of theirs, writes the entries with their lot takes (as every
other entry that moves lots has), the balances and the notifications. Qualifying points are not touched: expiry never lowers a tier.
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

_DUE = "l.remaining > 0 AND l.pending_until IS NULL AND l.expires_at <= :now"

_LOCK = text(
    f"""
    SELECT member_id FROM members m
    WHERE {IN_RANGE}
      AND EXISTS (SELECT 1 FROM lots l WHERE l.member_id = m.member_id AND {_DUE})
    ORDER BY member_id
    FOR UPDATE
    """
)

_EXPIRE = text(
    f"""
    WITH due AS (
        SELECT l.lot_id, l.member_id, l.remaining, l.expires_at FROM lots l
        WHERE l.member_id = ANY(:member_ids) AND {_DUE}
    ),
    cleared AS (
        UPDATE lots SET remaining = 0 FROM due WHERE lots.lot_id = due.lot_id RETURNING lots.lot_id
    ),
    per_member AS (
        SELECT member_id, sum(remaining) AS points, count(*) AS lots, min(expires_at) AS earliest
        FROM due GROUP BY member_id
    ),
    entries AS (
        INSERT INTO ledger_entries (member_id, kind, points, source, event_id, event_type, rules, occurred_at)
        SELECT member_id, 'expire', -points, 'scheduler', :key, 'expire-points',
               jsonb_build_array(jsonb_build_object(
                   'rule', 'expiry', 'points', points, 'lots', lots, 'earliest_expires_at', earliest)),
               :now
        FROM per_member
        RETURNING entry_id, member_id
    ),
    takes AS (
        INSERT INTO lot_takes (entry_id, lot_id, points)
        SELECT e.entry_id, d.lot_id, d.remaining FROM due d JOIN entries e ON e.member_id = d.member_id
    ),
    balances AS (
        UPDATE members SET available_points = available_points - p.points, updated_at = now()
        FROM per_member p WHERE members.member_id = p.member_id
        RETURNING members.member_id
    ),
    notified AS (
        INSERT INTO notifications (member_id, kind, params, dedupe_key, source, event_id)
        SELECT member_id, 'points_expired', jsonb_build_object('points', points),
               'points_expired:' || member_id || ':' || :key, 'scheduler', :key
        FROM per_member
        ON CONFLICT (dedupe_key) DO NOTHING
        RETURNING 1
    )
    SELECT (SELECT count(*) FROM entries) AS members,
           (SELECT coalesce(sum(points), 0) FROM per_member) AS points,
           (SELECT count(*) FROM cleared) AS lots,
           (SELECT count(*) FROM balances) AS balances
    """
).bindparams(bindparam("member_ids", type_=ARRAY(Text)))


async def run(conn: AsyncConnection, program: Program, now: datetime, span: Range) -> ChunkResult:
    return await lock_then_apply(conn, _LOCK, _EXPIRE, span, now, firing_key("expire-points", now))
