"""A merge's writes: what follows the absorbed member to the one kept, and the merge's record.

worker/services/identities.py decides which member is kept and moves the balance and lots
(worker/store/accounts.py `transfer`); here the absorbed member's rows are re-pointed.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import bindparam, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncConnection

from worker.domain.decisions import Origin

# An order one member bought and the other has only seen refunds or reviews of (a stub row
# without an amount): the stub goes, its waiting refunds and reviews follow to the survivor,
# and the re-evaluation applies them with the purchase.
_DROP_STUBS = [
    text(
        """
        DELETE FROM orders a WHERE a.member_id = :absorbed AND a.amount IS NULL
        AND EXISTS (SELECT 1 FROM orders b WHERE b.member_id = :survivor AND b.order_id = a.order_id)
        """
    ),
    text(
        """
        DELETE FROM orders b WHERE b.member_id = :survivor AND b.amount IS NULL
        AND EXISTS (SELECT 1 FROM orders a WHERE a.member_id = :absorbed AND a.order_id = b.order_id)
        """
    ),
]

# What follows the absorbed member to the one kept: its events (so the replay sees them), the
# rows the handlers read for them, its identities. A referral of both members as referees stays
# with the absorbed one, so the kept member's replay pays one referee bonus.
_REPOINT = [
    text("UPDATE processed_events SET member_id = :survivor WHERE member_id = :absorbed"),
    text("UPDATE orders SET member_id = :survivor WHERE member_id = :absorbed"),
    text("UPDATE refunds SET member_id = :survivor WHERE member_id = :absorbed"),
    text("UPDATE reviews SET member_id = :survivor WHERE member_id = :absorbed"),
    text("UPDATE redemptions SET member_id = :survivor WHERE member_id = :absorbed"),
    text("UPDATE referrals SET referrer_member_id = :survivor WHERE referrer_member_id = :absorbed"),
    text(
        """
        UPDATE referrals SET referee_member_id = :survivor WHERE referee_member_id = :absorbed
        AND NOT EXISTS (SELECT 1 FROM referrals WHERE referee_member_id = :survivor)
        """
    ),
    text("UPDATE member_identities SET member_id = :survivor WHERE member_id = :absorbed"),
    # Members merged into the absorbed one earlier now name the member kept: one hop always.
    text(
        """
        UPDATE members SET merged_into = :survivor, merged_at = coalesce(merged_at, now())
        WHERE member_id = :absorbed OR merged_into = :absorbed
        """
    ),
]

_RECORD_MERGE = text(
    """
    INSERT INTO member_merges (survivor_id, absorbed_id, identity_kind, source, event_id, detail)
    VALUES (:survivor, :absorbed, :kind, :source, :event_id, :detail)
    """
).bindparams(bindparam("detail", type_=JSONB))


async def repoint(conn: AsyncConnection, survivor: str, absorbed: str) -> None:
    """Stub orders one side bought go; the absorbed member's events, orders, refunds, reviews,
    redemptions, referrals and identities name the survivor; it is marked merged."""
    ids = {"survivor": survivor, "absorbed": absorbed}
    for statement in (*_DROP_STUBS, *_REPOINT):
        await conn.execute(statement, ids)


async def record_merge(
    conn: AsyncConnection, survivor: str, absorbed: str, kind: str, origin: Origin, detail: dict[str, Any]
) -> None:
    """The merge's member_merges row, naming the identity and the event that merged them."""
    params = {"survivor": survivor, "absorbed": absorbed, "kind": kind, "detail": detail}
    await conn.execute(_RECORD_MERGE, {**params, "source": origin.source, "event_id": origin.event_id})
