"""Erasing a member's personal data on request, keeping the ledger's amounts for accounting.

What goes: birthday, locale, the raw text of the member's rejected events (it may carry the
same fields), and rows of any identity table. What stays: member id, balances, ledger entries,
lots, orders: the amounts the retailer must keep for its books.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

# Tables keyed by member_id that hold nothing but personal data (logins, phone numbers,
# external account links). Erased when they exist in the schema; other features add them.
IDENTITY_TABLES = ("member_identities",)
# What replaces the raw text of an erased member's rejected events.
ERASED_RAW = '{"erased": true}'

_ERASE = text(
    """
    UPDATE members SET birthday = NULL, locale = NULL, erased_at = coalesce(erased_at, :now), updated_at = :now
    WHERE member_id = :member_id
    RETURNING erased_at, erased_at = :now AS newly
    """
)


@dataclass(frozen=True)
class Erasure:
    member_id: str
    erased_at: datetime
    already_erased: bool
    identities_removed: int
    rejected_redacted: int


async def erase_member(engine: AsyncEngine, member_id: str, now: datetime) -> Erasure | None:
    """Erase in one transaction; None when there is no such member. Safe to run twice."""
    async with engine.begin() as conn:
        row = (await conn.execute(_ERASE, {"member_id": member_id, "now": now})).first()
        if row is None:
            return None
        identities = 0
        for table in IDENTITY_TABLES:
            exists = (await conn.execute(text("SELECT to_regclass(:t) IS NOT NULL"), {"t": table})).scalar_one()
            if exists:
                # The table name comes from the constant above, never from input.
                result = await conn.execute(text(f"DELETE FROM {table} WHERE member_id = :m"), {"m": member_id})
                identities += result.rowcount
        redacted = await conn.execute(
            text("UPDATE rejected_events SET raw = :erased WHERE member_id = :m AND raw <> :erased"),
            {"m": member_id, "erased": ERASED_RAW},
        )
    return Erasure(member_id, row.erased_at, not row.newly, identities, redacted.rowcount)
