"""The calendar jobs' set-based passes over one chunk of members: what they write.

Each pass is one statement over the chunk's members (locked first, in id order, as the ledger
locks them): release of pending points, expiry of lots, expiry warnings, member-day messages.
The jobs (worker/jobs/) decide when and for whom; these statements write.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import bindparam, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.types import Text

# The member-range condition every job query uses, with :after and :upto bound from a Range.
IN_RANGE = "member_id > :after AND (CAST(:upto AS text) IS NULL OR member_id <= CAST(:upto AS text))"


@dataclass(frozen=True)
class Range:
    """Members with after < member_id <= upto (upto None: no upper end)."""

    after: str
    upto: str | None

    def params(self) -> dict:
        return {"after": self.after, "upto": self.upto}


@dataclass(frozen=True)
class ChunkResult:
    members: int = 0
    points: int = 0


async def _lock_then_apply(conn, lock, apply, span: Range, now, key: str) -> ChunkResult:
    """Lock the range's members that have work (in id order, as the ledger does), then do the
    work for them in one set-based statement returning `members` and `points`."""
    member_ids = (await conn.execute(lock, {**span.params(), "now": now})).scalars().all()
    if not member_ids:
        return ChunkResult()
    row = (await conn.execute(apply, {"member_ids": list(member_ids), "now": now, "key": key})).one()
    return ChunkResult(members=row.members, points=int(row.points))


# ---------------------------------------------------------------- release-pending

_PENDING_DUE = "l.pending_until IS NOT NULL AND l.pending_until <= :now"

_PENDING_LOCK = text(
    f"""
    SELECT member_id FROM members m
    WHERE {IN_RANGE} AND EXISTS (SELECT 1 FROM lots l WHERE l.member_id = m.member_id AND {_PENDING_DUE})
    ORDER BY member_id
    FOR UPDATE
    """
)

_PENDING_RELEASE = text(
    f"""
    WITH due AS (
        SELECT l.lot_id, l.member_id, l.remaining FROM lots l
        WHERE l.member_id = ANY(:member_ids) AND {_PENDING_DUE}
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


async def release_pending(conn: AsyncConnection, span: Range, now: datetime, key: str) -> ChunkResult:
    """Pending lots whose return window closed become available: one `release` entry per member."""
    return await _lock_then_apply(conn, _PENDING_LOCK, _PENDING_RELEASE, span, now, key)


# ---------------------------------------------------------------- expire-points

_EXPIRY_DUE = "l.remaining > 0 AND l.pending_until IS NULL AND l.expires_at <= :now"

_EXPIRY_LOCK = text(
    f"""
    SELECT member_id FROM members m
    WHERE {IN_RANGE}
      AND EXISTS (SELECT 1 FROM lots l WHERE l.member_id = m.member_id AND {_EXPIRY_DUE})
    ORDER BY member_id
    FOR UPDATE
    """
)

_EXPIRY_EXPIRE = text(
    f"""
    WITH due AS (
        SELECT l.lot_id, l.member_id, l.remaining, l.expires_at FROM lots l
        WHERE l.member_id = ANY(:member_ids) AND {_EXPIRY_DUE}
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
        RETURNING member_id
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


async def expire(conn: AsyncConnection, span: Range, now: datetime, key: str) -> ChunkResult:
    """Lots past their expiry lose what remains: one `expire` entry per member (no lot takes:
    see worker/jobs/expiry.py), the balance and a `points_expired` notification."""
    return await _lock_then_apply(conn, _EXPIRY_LOCK, _EXPIRY_EXPIRE, span, now, key)


# ---------------------------------------------------------------- warn_expiring

_WARNINGS = text(
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


# ---------------------------------------------------------------- notify_member_day

_MEMBER_DAY = text(
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


async def warn_expiring(conn: AsyncConnection, span: Range, now: datetime, until: datetime, tz: str, key: str):
    """Per member of the span, one `points_expiring` notification for the lots expiring on the
    earliest local date before `until` that no warning named yet; those lots are marked warned.
    Returns the row of counts (members, points, lots, notified)."""
    params = {**span.params(), "now": now, "until": until, "tz": tz, "key": key}
    return (await conn.execute(_WARNINGS, params)).one()


async def notify_member_day(
    conn: AsyncConnection, span: Range, *, multiplier: str, day: str, key: str, active_since: datetime
) -> int:
    """A `member_day` message to each member of the span active since `active_since`, once a
    day (the dedupe key names the day); returns how many were queued."""
    params = {**span.params(), "multiplier": multiplier, "day": day, "key": key, "active_since": active_since}
    return (await conn.execute(_MEMBER_DAY, params)).scalar_one()
