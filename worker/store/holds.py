"""Holds (points payments through the HTTP API): the rows the holds service writes.

The entries and lot takes of a hold, its capture and its release are written by
worker/store/accounts.py (`move_points`); these are the holds table's own rows.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

_INSERT_HOLD = text(
    """
    INSERT INTO holds (hold_id, member_id, order_id, points, status, key_name, hold_entry_id, created_at, expires_at)
    VALUES (:hold_id, :member_id, :order_id, :points, 'held', :key_name, :hold_entry_id, :now, :expires_at)
    ON CONFLICT (hold_id) DO NOTHING
    RETURNING *
    """
)
_SETTLE = text(
    """
    UPDATE holds SET status = :status, settle_entry_id = :entry_id, settled_at = :now
    WHERE hold_id = :hold_id AND status = 'held'
    RETURNING *
    """
)
_MARK_REFUNDED = text(
    "UPDATE holds SET refunded_amount = :refunded_amount, points_refunded = :points_refunded WHERE hold_id = :hold_id"
)


async def insert_hold(conn: AsyncConnection, values: dict[str, Any]) -> Any:
    """A new hold, status `held`; None when its id exists already."""
    return (await conn.execute(_INSERT_HOLD, values)).mappings().first()


async def settle(conn: AsyncConnection, hold_id: str, status: str, entry_id: int | None, now: datetime) -> Any:
    """A held hold (locked by the caller) captured, voided or expired with the entry that
    settled it; returns its row."""
    params = {"status": status, "entry_id": entry_id, "now": now, "hold_id": hold_id}
    return (await conn.execute(_SETTLE, params)).mappings().one()


async def mark_refunded(conn: AsyncConnection, hold_id: str, refunded_amount: Decimal, points_refunded: int) -> None:
    """How much of the hold's order is refunded, and the points given back for it so far."""
    params = {"refunded_amount": refunded_amount, "points_refunded": points_refunded, "hold_id": hold_id}
    await conn.execute(_MARK_REFUNDED, params)
