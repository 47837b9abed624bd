"""Listing rejected events."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from db.tables import rejected_events
from worker.services.erasure import ERASED_RAW
from worker.services.members import LIST_LIMIT_MAX


async def list_rejected(engine: AsyncEngine, *, status: str | None = "open", limit: int = 100) -> list[dict[str, Any]]:
    query = select(rejected_events).order_by(rejected_events.c.rejected_id).limit(min(limit, LIST_LIMIT_MAX))
    if status is not None:
        query = query.where(rejected_events.c.status == status)
    async with engine.connect() as conn:
        rows = (await conn.execute(query)).mappings().all()
    return [
        {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in row.items() if k != "raw_hash"}
        for row in rows
    ]


_MARK_REPLAYED = text("UPDATE rejected_events SET status = 'replayed', last_seen_at = now() WHERE rejected_id = :id")


class NotReplayable(Exception):
    pass


async def replay_rejected(engine: AsyncEngine, program, rejected_id: int, *, now) -> dict[str, Any]:
    """Validate the stored raw text again and process it, decided by the version in force at
    its occurred_at (`program`: a timeline, or one program).

    Applied (or duplicate, deferred): the row is marked replayed. Rejected again: the row
    stays open with the new reason and one more attempt.
    """
    from worker.services import intake

    async with engine.connect() as conn:
        row = (
            await conn.execute(
                select(rejected_events.c.raw, rejected_events.c.status).where(
                    rejected_events.c.rejected_id == rejected_id
                )
            )
        ).one_or_none()
    if row is None:
        raise NotReplayable(f"no rejected event #{rejected_id}")
    if row.status != "open":
        raise NotReplayable(f"rejected event #{rejected_id} was already replayed")
    if row.raw == ERASED_RAW:
        raise NotReplayable(f"rejected event #{rejected_id} was erased with its member's personal data")
    outcome = await intake.process(engine, program, row.raw, now=now)
    if outcome.status != "rejected":
        async with engine.begin() as conn:
            await conn.execute(_MARK_REPLAYED, {"id": rejected_id})
    return {"rejected_id": rejected_id, "status": outcome.status, "points": outcome.points, "reason": outcome.reason}
