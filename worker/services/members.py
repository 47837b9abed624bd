"""Read models for the command line and the synchronous API: members, history, outbox."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from db.tables import ledger_entries, members, notifications
from worker.domain import tiers
from worker.domain.messages import RenderError, render
from worker.domain.program import Program

# Listings are paged: nobody reads more than this at once, and it bounds the query.
LIST_LIMIT_MAX = 1000


def _iso(value) -> str | None:
    return value.isoformat() if value is not None else None


async def member_view(engine: AsyncEngine, program: Program, member_id: str) -> dict[str, Any] | None:
    async with engine.connect() as conn:
        row = (await conn.execute(select(members).where(members.c.member_id == member_id))).mappings().first()
    if row is None:
        return None
    return view_from_row(program, row)


def view_from_row(program: Program, row) -> dict[str, Any]:
    """`member show` of a members row (a mapping of its columns)."""
    upcoming, away = tiers.points_to_next(program, row["tier"], row["qualifying_points"] - row["qualifying_baseline"])
    return {
        "member_id": row["member_id"],
        "tier": row["tier"],
        "available_points": row["available_points"],
        "pending_points": row["pending_points"],
        "qualifying_points": row["qualifying_points"],
        "lifetime_points": row["lifetime_points"],
        "next_tier": upcoming.name if upcoming else None,
        "points_to_next_tier": away,
        "birthday": _iso(row["birthday"]),
        "locale": row["locale"],
        "enrolled_at": _iso(row["enrolled_at"]),
    }


async def history(engine: AsyncEngine, member_id: str, limit: int = 100) -> list[dict[str, Any]]:
    limit = min(limit, LIST_LIMIT_MAX)
    query = (
        select(ledger_entries)
        .where(ledger_entries.c.member_id == member_id)
        .order_by(ledger_entries.c.entry_id.desc())
        .limit(limit)
    )
    async with engine.connect() as conn:
        rows = (await conn.execute(query)).mappings().all()
    return [
        {
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
        for r in reversed(rows)
    ]


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
