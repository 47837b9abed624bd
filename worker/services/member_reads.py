"""What the HTTP API shows a member app or a till: state, paged history, rewards as the member sees them."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from worker.domain import mall, reward_locks
from worker.domain.program import Program
from worker.services import holds
from worker.services.holds import DUE_SQL
from worker.services.mall import CODES_LEFT_SQL, _terms
from worker.services.members import FLOOR_RECORD_JOIN, entry_view, view_from_row

# Points the member app warns about: those expiring within this window.
EXPIRING_WINDOW = timedelta(days=30)
# History pages: a screenful by default, and a bound on one query.
HISTORY_PAGE_DEFAULT = 50
HISTORY_PAGE_MAX = 200

# The member row, the two extra figures and whether holds or refunds are due, in one round
# trip: this is the hottest read of the API.
_STATE = text(
    f"""
    SELECT m.*, floor_record.*,
        (SELECT coalesce(sum(remaining), 0) FROM lots
         WHERE member_id = :member_id AND remaining > 0 AND pending_until IS NULL
           AND expires_at > :now AND expires_at <= :until) AS expiring,
        (SELECT min(expires_at) FROM lots
         WHERE member_id = :member_id AND remaining > 0 AND pending_until IS NULL AND expires_at > :now) AS next_expiry,
        (SELECT coalesce(sum(points), 0) FROM holds WHERE member_id = :member_id AND status = 'held') AS held,
        ({DUE_SQL}) AS due
    FROM members m {FLOOR_RECORD_JOIN} WHERE m.member_id = :member_id
    """
)
_HISTORY = text(
    """
    SELECT entry_id, kind, points, pending_points, qualifying_points, source, event_id, event_type, rules,
           occurred_at, created_at
    FROM ledger_entries
    WHERE member_id = :member_id
      AND (CAST(:before AS bigint) IS NULL
           OR (occurred_at, entry_id) < (SELECT occurred_at, entry_id FROM ledger_entries
                                         WHERE entry_id = :before AND member_id = :member_id))
    ORDER BY occurred_at DESC, entry_id DESC
    LIMIT :n
    """
)
# An event's outcome as the ledger records it (after any re-evaluation or merge).
_PROCESSED = text(
    "SELECT status, result, processed_at FROM processed_events WHERE source = :source AND event_id = :event_id"
)
_HAS_ENTRY = text("SELECT 1 FROM ledger_entries WHERE entry_id = :before AND member_id = :member_id")
# A coupon whose pool is empty is locked: one code left is all the listing needs to know.
_REWARDS = text(f"SELECT w.*, {CODES_LEFT_SQL} FROM rewards w ORDER BY w.cost_points, w.reward_id")
_SPENDABLE = text(
    """
    SELECT coalesce(sum(remaining), 0) FROM lots
    WHERE member_id = :member_id AND remaining > 0 AND pending_until IS NULL AND expires_at > :now
    """
)
_IN_PERIODS = text(
    """
    SELECT reward_id, occurred_at, quantity FROM redemptions
    WHERE member_id = :member_id AND status = 'confirmed' AND reward_id = ANY(:ids)
    """
)


def _iso(value) -> str | None:
    return value.isoformat() if value is not None else None


async def member_state(
    engine: AsyncEngine, program: Program, member_id: str, *, now: datetime, read_engine: AsyncEngine | None = None
) -> dict | None:
    """`loyalty member show --json`, plus points on hold and points expiring within 30 days.

    Holds past their expiry and refunds of points-paid orders are settled first when due
    (on `engine`). `read_engine` may be an autocommit view of the same pool: the read is one
    statement, so it needs no BEGIN and ROLLBACK around it.
    """
    for _ in range(2):
        async with (read_engine or engine).connect() as conn:
            row = (
                (await conn.execute(_STATE, {"member_id": member_id, "now": now, "until": now + EXPIRING_WINDOW}))
                .mappings()
                .first()
            )
        if row is None:
            return None
        if not row["due"]:
            break
        await holds.settle_member(engine, program, member_id, now=now)
    return {
        **view_from_row(program, row, now=now),
        "held_points": int(row["held"]),
        "points_expiring_in_30_days": int(row["expiring"]),
        "next_expiry_at": _iso(row["next_expiry"]),
    }


async def recorded_outcome(conn: AsyncConnection, source: str, event_id: str) -> dict[str, Any] | None:
    """What `GET /v1/events/...` says of an applied or deferred event: its status, points (net
    of any corrections since) and reason (its note), and when it was processed; None when
    `(source, event_id)` was never claimed."""
    row = (await conn.execute(_PROCESSED, {"source": source, "event_id": event_id})).first()
    if row is None:
        return None
    result = row.result or {}
    return {
        "status": row.status,
        "points": int(result.get("points", 0)),
        "reason": result.get("note"),
        "processed_at": row.processed_at,
    }


async def history_page(engine: AsyncEngine, member_id: str, *, limit: int, before: int | None) -> dict[str, Any] | None:
    """The entries in the order they occurred, newest first, as `member history` lists them
    (oldest first); `next_before` continues the listing (None on the last page). None when
    `before` is not an entry of this member."""
    async with engine.connect() as conn:
        if (
            before is not None
            and (await conn.execute(_HAS_ENTRY, {"member_id": member_id, "before": before})).first() is None
        ):
            return None
        rows = (
            (await conn.execute(_HISTORY, {"member_id": member_id, "before": before, "n": limit + 1})).mappings().all()
        )
    more = len(rows) > limit
    rows = rows[:limit]
    entries = [entry_view(r) for r in rows]
    return {"entries": entries, "next_before": rows[-1]["entry_id"] if more and rows else None}


async def rewards_for_member(engine: AsyncEngine, program: Program, member: dict, *, now: datetime) -> list[dict]:
    """Every reward with `eligible`, or the lock's code and text in the member's language."""
    member_id = member["member_id"]
    async with engine.connect() as conn:
        rewards = (await conn.execute(_REWARDS, {"codes_counted_max": 1})).mappings().all()
        lots_spendable = (await conn.execute(_SPENDABLE, {"member_id": member_id, "now": now})).scalar_one()
        limited = [r["reward_id"] for r in rewards if r["limit_period"] is not None]
        held = (await conn.execute(_IN_PERIODS, {"member_id": member_id, "ids": limited})).all() if limited else []
    spendable = min(member["available_points"], int(lots_spendable))
    out = []
    for row in rewards:
        terms = _terms(row)
        already = 0
        if terms.limit_period is not None:
            start, end = mall.period_bounds(program.zone, terms.limit_period, now)
            already = sum(
                q
                for rid, at, q in held
                if rid == terms.reward_id and (start is None or at >= start) and (end is None or at < end)
            )
        reason = mall.check_redemption(
            program,
            terms,
            tier=member["tier"],
            spendable_points=spendable,
            quantity=1,
            at=now,
            already_in_period=already,
        )
        entry = {
            "reward_id": terms.reward_id,
            "name": terms.name,
            "cost_points": terms.cost_points,
            "min_tier": terms.min_tier,
            "stock_left": terms.stock_left,
            "kind": row["kind"],
            "eligible": reason is None,
            "locked": None,
        }
        if reason is not None:
            entry["locked"] = {
                "reason": reason,
                "text": reward_locks.lock_text(
                    reason,
                    member.get("locale"),
                    program.default_locale,
                    points_short=terms.cost_points - spendable,
                    min_tier=terms.min_tier,
                ),
            }
        out.append(entry)
    return out
