"""Listing rejected events."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from db.tables import rejected_events
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
