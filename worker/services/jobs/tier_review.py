"""tier-review: on a rolling window, members whose recent qualifying points fall short of
their tier's threshold drop one tier (never below an operator's floor; not in the grace period).

A downgrade moves the member's qualifying baseline so that upgrades afterwards count only the
window's points and what is earned from then on, not the whole history again.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from worker.domain.calendar import firing_key, reviewed_tier
from worker.domain.program import Program
from worker.services.jobs.common import IN_RANGE, ChunkResult, Range

_CANDIDATES = text(
    f"""
    SELECT m.member_id, m.tier, m.tier_floor, m.qualifying_points,
           coalesce((SELECT sum(e.qualifying_points) FROM ledger_entries e
                     WHERE e.member_id = m.member_id AND e.occurred_at > :since AND e.occurred_at <= :now), 0)
               AS window_points,
           (SELECT max(t.changed_at) FROM tier_changes t WHERE t.member_id = m.member_id AND t.to_tier = m.tier)
               AS upgraded_at
    FROM members m
    WHERE {IN_RANGE} AND m.tier <> :first_tier AND m.erased_at IS NULL
    ORDER BY m.member_id
    FOR UPDATE OF m
    """
)
_DOWNGRADE = text(
    """
    UPDATE members SET tier = :to_tier, qualifying_baseline = :baseline, updated_at = now()
    WHERE member_id = :member_id
    """
)
_TIER_CHANGE = text(
    """
    INSERT INTO tier_changes (member_id, from_tier, to_tier, reason, source, event_id)
    VALUES (:member_id, :from_tier, :to_tier, 'review', 'scheduler', :key)
    """
)
_NOTIFY = text(
    """
    INSERT INTO notifications (member_id, kind, params, dedupe_key, source, event_id)
    VALUES (:member_id, 'tier_downgraded', jsonb_build_object('from_tier', CAST(:from_tier AS text), 'to_tier', CAST(:to_tier AS text)),
            'tier_downgraded:' || :member_id || ':' || :key, 'scheduler', :key)
    ON CONFLICT (dedupe_key) DO NOTHING
    """
)


async def run(conn: AsyncConnection, program: Program, now: datetime, span: Range) -> ChunkResult:
    rule = program.schedule.tier_review
    rows = (
        await conn.execute(
            _CANDIDATES,
            {**span.params(), "now": now, "since": now - timedelta(days=rule.window_days),
             "first_tier": program.tiers[0].name},
        )
    ).mappings().all()
    key = firing_key("tier-review", now)
    changes = []
    for row in rows:
        to_tier = reviewed_tier(
            program, row["tier"], int(row["window_points"]), floor=row["tier_floor"],
            upgraded_at=row["upgraded_at"], now=now,
        )
        if to_tier is not None:
            changes.append({
                "member_id": row["member_id"], "from_tier": row["tier"], "to_tier": to_tier, "key": key,
                "baseline": row["qualifying_points"] - int(row["window_points"]),
            })
    if changes:
        await conn.execute(_DOWNGRADE, changes)
        await conn.execute(_TIER_CHANGE, [{k: c[k] for k in ("member_id", "from_tier", "to_tier", "key")} for c in changes])
        await conn.execute(_NOTIFY, [{k: c[k] for k in ("member_id", "from_tier", "to_tier", "key")} for c in changes])
    return ChunkResult(members=len(changes))
