"""What the ledger says each event earned, corrections included (for tests' assertions)."""

from __future__ import annotations

from sqlalchemy import text

from worker.domain.reevaluation import points_by_event

_ENTRIES = text(
    "SELECT source, event_id, kind, qualifying_points, rules FROM ledger_entries WHERE member_id = :m ORDER BY entry_id"
)


async def earned_by_event(db, member_id: str) -> dict[str, int]:
    """Event id -> the qualifying points its entries and the corrections naming it add up to."""
    async with db.connect() as conn:
        entries = (await conn.execute(_ENTRIES, {"m": member_id})).mappings().all()
    return {event_id: sum(rules.values()) for (_, event_id), rules in points_by_event(entries).items()}
