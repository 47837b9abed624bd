"""What `loyalty program explain` reads: a member as the ledger evaluates them, and whether an
event was processed already. Reads only; nothing is claimed, locked or written."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from worker.domain import engine
from worker.domain.earning import member_snapshot
from worker.store.accounts import IMPORTED, account_from_row

# The member row with the purchases before any new one, counted as the ledger counts them
# for `nth_purchase` (orders with an amount; an imported member's import counts as one, in
# member_snapshot).
_MEMBER = text(
    f"""
    SELECT m.*, {IMPORTED},
        (SELECT count(*) FROM orders o WHERE o.member_id = m.member_id AND o.amount IS NOT NULL) AS purchase_count
    FROM members m WHERE m.member_id = :member_id
    """
)
_PROCESSED = text("SELECT status FROM processed_events WHERE source = :source AND event_id = :event_id")


@dataclass(frozen=True)
class Stored:
    member: engine.Member | None  # None: not enrolled
    processed: str | None  # the outcome status when the event's key was processed already


async def stored_state(db: AsyncEngine, member_id: str, source: str, event_id: str) -> Stored:
    """The member's snapshot as the ledger's `evaluate_for` builds it, from one read."""
    async with db.connect() as conn:
        row = (await conn.execute(_MEMBER, {"member_id": member_id})).mappings().first()
        processed = (await conn.execute(_PROCESSED, {"source": source, "event_id": event_id})).scalar()
    if row is None:
        return Stored(None, processed)
    return Stored(member_snapshot(account_from_row(member_id, row), row["purchase_count"]), processed)
