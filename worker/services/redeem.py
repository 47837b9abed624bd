"""A redemption made at once (a till, the HTTP API, `loyalty redeem`), not queued.

It is validated as a queued event is and applied through the same ledger path, in one
transaction, so it sits above intake and the ledger, as the queue's consumer does; the mall
below holds the catalog and the ledger's redemption handlers.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from worker.domain.errors import UnknownMember
from worker.domain.messages import catalog
from worker.domain.program import Program
from worker.domain.program_timeline import ProgramTimeline, timeline_of
from worker.services import audit
from worker.services.intake import validate
from worker.services.ledger import apply_event

# The source recorded for redemptions made through `redeem_now` without one of their own.
SYNC_SOURCE = "api"

_MEMBER_LOCALE = text("SELECT locale FROM members WHERE member_id = :member_id")
_FIRST_ATTEMPT_AT = text("SELECT occurred_at FROM processed_events WHERE source = :source AND event_id = :event_id")
_REDEMPTION_OUTCOME = text(
    """
    SELECT r.*, w.name AS reward_name FROM redemptions r LEFT JOIN rewards w USING (reward_id)
    WHERE r.source = :source AND r.event_id = :event_id
    """
)
# The codes a coupon redemption issued, one per unit (none for an item).
_COUPONS_OF = text("SELECT code, expires_on FROM coupons WHERE source = :source AND event_id = :event_id ORDER BY seq")


async def redeem_now(
    engine: AsyncEngine,
    program: Program | ProgramTimeline,
    member_id: str,
    reward_id: str,
    quantity: int = 1,
    *,
    now: datetime,
    event_id: str | None = None,
    source: str = SYNC_SOURCE,
) -> dict[str, Any]:
    """Redeem at once, through the same ledger path as a queued event, in one transaction.

    `event_id` is the idempotency key (a fresh one when not given): calling again with the
    same id and request returns the first outcome; the same id with another request is a
    conflict. Raises UnknownMember for a member who is not enrolled (a queued redemption
    would enrol them; a person at a counter has mistyped the id) and InvalidEvent when the
    request breaks the contract. With a timeline, the redemption is decided by the version in
    force at its time: the first attempt's, for a retry.
    """
    async with engine.begin() as conn:
        locale = (await conn.execute(_MEMBER_LOCALE, {"member_id": member_id})).first()
        if locale is None:
            raise UnknownMember(member_id)
        # A retry is the same request made later: it carries the first attempt's time, so
        # its payload hashes the same and the ledger returns the stored outcome.
        first_at = None
        if event_id is not None:
            first_at = (await conn.execute(_FIRST_ATTEMPT_AT, {"source": source, "event_id": event_id})).scalar()
        raw = {
            "event_id": event_id or f"redeem-{uuid.uuid4().hex}",
            "type": "redemption",
            "source": source,
            "member_id": member_id,
            "occurred_at": (first_at or now).isoformat(),
            "payload": {"reward_id": reward_id, "quantity": quantity},
        }
        event = validate(raw, program, now)
        result = await apply_event(conn, program, event)
        if result.status == "applied":
            await audit.assert_member_consistent(conn, member_id)
        row = (
            (await conn.execute(_REDEMPTION_OUTCOME, {"source": source, "event_id": event.event_id})).mappings().first()
        )
        balance = (
            await conn.execute(text("SELECT available_points FROM members WHERE member_id = :m"), {"m": member_id})
        ).scalar()
        issued = (await conn.execute(_COUPONS_OF, {"source": source, "event_id": event.event_id})).all()
    if result.status == "conflict" or row is None:
        return {
            "status": "conflict",
            "event_id": event.event_id,
            "member_id": member_id,
            "reason": f"event_id: {event.event_id!r} from source {source!r} was already used with a different payload",
        }
    return {
        "status": row["status"],
        "duplicate": result.status == "duplicate",
        "event_id": row["event_id"],
        "source": row["source"],
        "member_id": row["member_id"],
        "reward_id": row["reward_id"],
        "reward_name": row["reward_name"],
        "quantity": row["quantity"],
        "points": row["points"],
        "reason": row["reason"],
        "reason_text": catalog().reason_text(
            row["reason"], locale[0], timeline_of(program).at(event.occurred_at).default_locale
        )
        if row["reason"]
        else None,
        "available_points": balance,
        "coupons": [{"code": c.code, "expires_on": c.expires_on.isoformat()} for c in issued],
    }
