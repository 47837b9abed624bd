"""tier-review: with downgrade "review", each member's tier is recalculated from the qualifying
value of the rolling window (points or money, as the program's tiers say); it may drop several
tiers, never below an operator's floor in force, and not within the grace period that follows
the occurrence of the event behind their last upgrade.

A downgrade moves the member's qualifying baseline so that upgrades afterwards count only the
window's value and what is earned from then on, not the whole history again. The decision is
`engine.review_member`; the writes are `accounts.review_tiers`.
"""

from __future__ import annotations

from datetime import datetime, time, timedelta

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from worker.domain import engine
from worker.domain.engine import EngineProgram, ReviewCandidate, TierFloor
from worker.domain.firings import firing_key
from worker.domain.program import Program
from worker.jobs.common import IN_RANGE, ChunkResult, Range
from worker.store import accounts

# The window's qualifying value of one member (m): points of the entries that occurred in
# it, or money of the purchases in it less the refunds in it. A refund counts only the part
# of its order not refunded before it (in occurrence order), as orders.refunded_amount does.
_WINDOW_POINTS = """
    coalesce((SELECT sum(e.qualifying_points) FROM ledger_entries e
              WHERE e.member_id = m.member_id AND e.occurred_at >= :since AND e.occurred_at < :until), 0)
"""
_WINDOW_AMOUNT = """
    coalesce((SELECT sum(o.amount) FROM orders o
              WHERE o.member_id = m.member_id AND o.amount IS NOT NULL
                AND o.purchased_at >= :since AND o.purchased_at < :until), 0)
    - coalesce((SELECT sum(r.counted) FROM (
          SELECT r.occurred_at,
                 least(r.amount, greatest(o.amount - coalesce(sum(r.amount) OVER (
                     PARTITION BY r.order_id ORDER BY r.occurred_at, r.refund_id
                     ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0), 0)) AS counted
          FROM refunds r JOIN orders o ON o.member_id = r.member_id AND o.order_id = r.order_id
          WHERE r.member_id = m.member_id AND r.status = 'applied' AND o.amount IS NOT NULL
      ) r WHERE r.occurred_at >= :since AND r.occurred_at < :until), 0)
"""
# Grace counts from the event behind the last upgrade to the member's tier: tier_changes
# keep that event's occurred_at. Changes by reviews or floors are not upgrades.
_CANDIDATES = """
    SELECT m.member_id, m.tier, m.tier_floor, m.tier_floor_ends_on,
           m.qualifying_points, m.qualifying_amount, ({window}) AS window_value,
           (SELECT max(t.occurred_at) FROM tier_changes t
            WHERE t.member_id = m.member_id AND t.to_tier = m.tier AND t.reason = 'upgrade') AS upgraded_at
    FROM members m
    WHERE {in_range} AND m.tier <> :first_tier AND m.erased_at IS NULL
    ORDER BY m.member_id
    FOR UPDATE OF m
"""
_CANDIDATES_BY_BASIS = {
    "points": text(_CANDIDATES.format(window=_WINDOW_POINTS, in_range=IN_RANGE)),
    "amount": text(_CANDIDATES.format(window=_WINDOW_AMOUNT, in_range=IN_RANGE)),
}


def window_bounds(rules: EngineProgram, now: datetime) -> tuple[datetime, datetime]:
    """The review window as instants: from the start of its first local day to the end of its last."""
    first, last = engine.review_window(rules, now.astimezone(rules.zone).date())
    return (
        datetime.combine(first, time(0), tzinfo=rules.zone),
        datetime.combine(last + timedelta(days=1), time(0), tzinfo=rules.zone),
    )


def skip_reason(program: Program) -> str | None:
    """Why a firing does nothing: tiers only go down at a review with downgrade "review"."""
    downgrade = engine.rules_of(program).tiers.downgrade
    return None if downgrade == "review" else f"tier downgrade is {downgrade!r}, not 'review'"


async def run(conn: AsyncConnection, program: Program, now: datetime, span: Range) -> ChunkResult:
    rules = engine.rules_of(program)
    if skip_reason(program) is not None:
        return ChunkResult()
    since, until = window_bounds(rules, now)
    rows = (
        (
            await conn.execute(
                _CANDIDATES_BY_BASIS[rules.tiers.basis],
                {**span.params(), "since": since, "until": until, "first_tier": rules.tiers.levels[0].name},
            )
        )
        .mappings()
        .all()
    )
    candidates = (
        ReviewCandidate(
            member_id=row["member_id"],
            tier=row["tier"],
            floor=TierFloor(tier=row["tier_floor"], ends_on=row["tier_floor_ends_on"]) if row["tier_floor"] else None,
            qualifying_points=row["qualifying_points"],
            qualifying_amount=row["qualifying_amount"],
            window_value=row["window_value"],
            upgraded_at=row["upgraded_at"],
        )
        for row in rows
    )
    reviewed = [d for d in (engine.review_member(rules, c, now=now) for c in candidates) if d is not None]
    origin = accounts.Origin("scheduler", firing_key("tier-review", now), "tier-review", now)
    await accounts.review_tiers(conn, reviewed, origin)
    return ChunkResult(members=len(reviewed))
