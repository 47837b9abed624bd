"""Read models for the command line and the synchronous API: members, history, outbox."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from db.tables import ledger_entries, members, notifications
from worker.domain import engine as rules_engine
from worker.domain.engine import TierFloor
from worker.domain.messages import RenderError, render
from worker.domain.program import Program

# Listings are paged: nobody reads more than this at once, and it bounds the query.
LIST_LIMIT_MAX = 1000


def _iso(value) -> str | None:
    return value.isoformat() if value is not None else None


def entry_view(r) -> dict[str, Any]:
    """One ledger entry as `member history --json` and the API show it."""
    return {
        "entry_id": r["entry_id"],
        "kind": r["kind"],
        "points": r["points"],
        "pending_points": r["pending_points"],
        "qualifying_points": r["qualifying_points"],
        "event": {"source": r["source"], "event_id": r["event_id"], "type": r["event_type"]},
        "rules": r["rules"],
        "occurred_at": _iso(r["occurred_at"]),
        "created_at": _iso(r["created_at"]),
    }


# The record behind the member's floor in force (who set it, why, when), joined to a members
# row `m` as floor_reason, floor_set_by, floor_set_at; nothing is read for members without one.
FLOOR_RECORD_JOIN = """
    LEFT JOIN LATERAL (
        SELECT f.reason AS floor_reason, f.set_by AS floor_set_by, f.set_at AS floor_set_at FROM tier_floors f
        WHERE f.member_id = m.member_id AND m.tier_floor IS NOT NULL
        ORDER BY f.floor_id DESC LIMIT 1
    ) floor_record ON true
"""
_MEMBER = text("SELECT m.*, floor_record.* FROM members m" + FLOOR_RECORD_JOIN + "WHERE m.member_id = :member_id")


async def member_view(
    engine: AsyncEngine, program: Program, member_id: str, *, now: datetime | None = None
) -> dict[str, Any] | None:
    """`member show` of one member (None: no such member); `now` says whether a floor is still
    in force (default: the clock)."""
    async with engine.connect() as conn:
        row = (await conn.execute(_MEMBER, {"member_id": member_id})).mappings().first()
    if row is None:
        return None
    view = view_from_row(program, row, now=now or datetime.now(UTC))
    if row["merged_into"] is not None:  # events for this id land on that member now
        view["merged_into"] = row["merged_into"]
    return view


def view_from_row(program: Program, row, *, now: datetime) -> dict[str, Any]:
    """`member show` of a members row (a mapping of its columns, with FLOOR_RECORD_JOIN's).

    The distance to the next tier is in the program's qualifying basis: points, or money
    (`amount_to_next_tier`, a decimal string); the other one is None.
    """
    rules = rules_engine.rules_of(program)
    on_amount = rules.tiers.basis == "amount"
    value = (
        row["qualifying_amount"] - row["qualifying_amount_baseline"]
        if on_amount
        else row["qualifying_points"] - row["qualifying_baseline"]
    )
    upcoming, missing = rules_engine.to_next(rules, row["tier"], value)
    return {
        "member_id": row["member_id"],
        "tier": row["tier"],
        "tier_floor": floor_view(program, row, now),
        "available_points": row["available_points"],
        "pending_points": row["pending_points"],
        "qualifying_points": row["qualifying_points"],
        "qualifying_amount": str(row["qualifying_amount"]),
        "lifetime_points": row["lifetime_points"],
        "next_tier": upcoming.name if upcoming else None,
        "points_to_next_tier": None if on_amount else missing,
        "amount_to_next_tier": str(missing) if on_amount and missing is not None else None,
        "birthday": _iso(row["birthday"]),
        "locale": row["locale"],
        "labels": sorted(row["labels"]),
        "enrolled_at": _iso(row["enrolled_at"]),
        "missions": rules_engine.open_missions(rules, row["rule_state"], now),
    }


def floor_view(program: Program, row, now: datetime) -> dict[str, Any] | None:
    """The member's operator floor: tier, last day (None: without end), whether it is still in
    force on `now`'s local date, and who set it, why and when."""
    if row["tier_floor"] is None:
        return None
    rules = rules_engine.rules_of(program)
    floor = TierFloor(tier=row["tier_floor"], ends_on=row["tier_floor_ends_on"])
    return {
        "tier": floor.tier,
        "ends_on": _iso(floor.ends_on),
        "in_force": rules_engine.floor_in_force(floor, now.astimezone(rules.zone).date()) is not None,
        "reason": row.get("floor_reason"),
        "set_by": row.get("floor_set_by"),
        "set_at": _iso(row.get("floor_set_at")),
    }


_TIER_CHANGES = text(
    """
    SELECT change_id, from_tier, to_tier, reason, source, event_id, occurred_at, changed_at FROM tier_changes
    WHERE member_id = :member_id ORDER BY changed_at DESC, change_id DESC LIMIT :limit
    """
)
_FLOORS = text(
    """
    SELECT floor_id, tier, ends_on, reason, set_by, set_at FROM tier_floors
    WHERE member_id = :member_id ORDER BY set_at DESC, floor_id DESC LIMIT :limit
    """
)


async def tier_history(engine: AsyncEngine, member_id: str, limit: int = 100) -> list[dict[str, Any]] | None:
    """The member's latest `limit` tier changes (with their reason and the event behind them)
    and operator floors set or removed, oldest first (None: no such member)."""
    limit = min(limit, LIST_LIMIT_MAX)
    async with engine.connect() as conn:
        known = (await conn.execute(select(members.c.member_id).where(members.c.member_id == member_id))).first()
        if known is None:
            return None
        changes = (await conn.execute(_TIER_CHANGES, {"member_id": member_id, "limit": limit})).mappings().all()
        floors = (await conn.execute(_FLOORS, {"member_id": member_id, "limit": limit})).mappings().all()
    rows = [
        {
            "kind": "change",
            "at": _iso(r["changed_at"]),
            "from_tier": r["from_tier"],
            "to_tier": r["to_tier"],
            "reason": r["reason"],
            "event": {"source": r["source"], "event_id": r["event_id"]},
            "occurred_at": _iso(r["occurred_at"]),
            "_at": (r["changed_at"], 1, r["change_id"]),
        }
        for r in changes
    ]
    # A floor comes before the tier change it made (same transaction, recorded just before).
    rows += [
        {
            "kind": "floor",
            "at": _iso(r["set_at"]),
            "tier": r["tier"],
            "ends_on": _iso(r["ends_on"]),
            "reason": r["reason"],
            "set_by": r["set_by"],
            "floor_id": r["floor_id"],
            "_at": (r["set_at"], 0, r["floor_id"]),
        }
        for r in floors
    ]
    rows.sort(key=lambda r: r["_at"])
    for r in rows:
        del r["_at"]
    return rows[-limit:]


# Outcomes of the member's events that wrote no ledger entry (a check-in earlier than the last
# one, a refused redemption, a refund waiting for its purchase): their reason is in the result.
_ZERO_POINT_OUTCOMES = text(
    """
    SELECT p.source, p.event_id, p.event_type, p.status, p.result, p.occurred_at, p.processed_at
    FROM processed_events p
    WHERE p.member_id = :member_id AND p.result ? 'note'
      AND NOT EXISTS (SELECT 1 FROM ledger_entries e
                      WHERE e.member_id = p.member_id AND e.source = p.source AND e.event_id = p.event_id)
    ORDER BY p.occurred_at DESC, p.event_id DESC
    LIMIT :limit
    """
)


async def history(
    engine: AsyncEngine, member_id: str, limit: int = 100, *, zero_point: bool = False
) -> list[dict[str, Any]] | None:
    """The member's latest `limit` ledger entries in the order they occurred (None: no such member).

    `zero_point` adds the outcomes that moved no points, with their reason (`note`), as rows
    of kind "none".
    """
    limit = min(limit, LIST_LIMIT_MAX)
    query = (
        select(ledger_entries)
        .where(ledger_entries.c.member_id == member_id)
        .order_by(ledger_entries.c.occurred_at.desc(), ledger_entries.c.entry_id.desc())
        .limit(limit)
    )
    async with engine.connect() as conn:
        known = (await conn.execute(select(members.c.member_id).where(members.c.member_id == member_id))).first()
        if known is None:
            return None
        rows = (await conn.execute(query)).mappings().all()
        outcomes = (
            (await conn.execute(_ZERO_POINT_OUTCOMES, {"member_id": member_id, "limit": limit})).mappings().all()
            if zero_point
            else []
        )
    entries = [{**entry_view(r), "_at": (r["occurred_at"], 0, r["entry_id"])} for r in rows]
    entries += [
        {
            "entry_id": None,
            "kind": "none",
            "points": 0,
            "status": r["status"],
            "note": r["result"].get("note"),
            "event": {"source": r["source"], "event_id": r["event_id"], "type": r["event_type"]},
            "rules": [],
            "occurred_at": _iso(r["occurred_at"]),
            "created_at": _iso(r["processed_at"]),
            "_at": (r["occurred_at"], 1, 0),
        }
        for r in outcomes
    ]
    entries.sort(key=lambda e: e["_at"])
    for e in entries:
        del e["_at"]
    return entries[-limit:]


def _preview(program: Program, row) -> str:
    try:
        return render(row["kind"], row["params"], row["member_locale"], program.default_locale)
    except RenderError as error:
        return f"(cannot render: {error})"


async def notification_list(
    engine: AsyncEngine, program: Program, member_id: str | None = None, status: str | None = None, limit: int = 100
) -> list[dict[str, Any]]:
    limit = min(limit, LIST_LIMIT_MAX)
    query = (
        select(notifications, members.c.locale.label("member_locale"))
        .outerjoin(members, members.c.member_id == notifications.c.member_id)
        .order_by(notifications.c.notification_id)
        .limit(limit)
    )
    if member_id is not None:
        query = query.where(notifications.c.member_id == member_id)
    if status is not None:
        query = query.where(notifications.c.status == status)
    async with engine.connect() as conn:
        rows = (await conn.execute(query)).mappings().all()
    return [
        {
            "notification_id": r["notification_id"],
            "member_id": r["member_id"],
            "kind": r["kind"],
            "status": r["status"],
            # The text as delivered, or as it would be rendered now for rows not yet sent.
            "text": r["text"] or _preview(program, r),
            "locale": r["locale"],
            "params": r["params"],
            "event": {"source": r["source"], "event_id": r["event_id"]},
            "created_at": _iso(r["created_at"]),
            "delivery_id": r["delivery_id"],
            "channel": r["channel"],
            "attempts": r["attempts"],
            "last_error": r["last_error"],
            "next_attempt_at": _iso(r["next_attempt_at"]),
            "sent_at": _iso(r["sent_at"]),
        }
        for r in rows
    ]
