"""The outbox's delivery state: what the dispatcher writes on the notifications it claims.

Notifications are queued by the ledger's writes (worker/store/accounts.py, staged.py, jobs.py);
the dispatcher (worker/outbox/dispatch.py) claims due rows, renders and sends them, and
records here what happened to each.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import bindparam, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncConnection

_UPDATE_CLAIMED = text(
    """
    UPDATE notifications SET
        status = :status, params = :params, attempts = :attempts, lease_until = :lease_until,
        next_attempt_at = :next_attempt_at, released_at = :released_at, last_attempt_at = :last_attempt_at,
        channel = :channel, locale = :locale, text = :text, last_error = :last_error
    WHERE notification_id = :notification_id
    """
).bindparams(bindparam("params", type_=JSONB))

_RECORD = text(
    """
    UPDATE notifications SET
        status = :status, sent_at = :sent_at, last_error = :last_error,
        next_attempt_at = :next_attempt_at, lease_until = NULL
    WHERE notification_id = :notification_id AND status = 'sending' AND attempts = :attempts
    """
)

_RETRY_ONE = text(
    """
    UPDATE notifications SET status = 'pending', attempts = 0, next_attempt_at = NULL, lease_until = NULL
    WHERE notification_id = :notification_id AND status IN ('failed', 'dead')
    RETURNING notification_id
    """
)

_RETRY_FAILED = text(
    """
    UPDATE notifications SET status = 'pending', attempts = 0, next_attempt_at = NULL, lease_until = NULL
    WHERE status IN ('failed', 'dead')
    RETURNING notification_id
    """
)


async def update_claimed(conn: AsyncConnection, updates: list[dict[str, Any]]) -> None:
    """The claimed rows as the dispatcher left them: leased for sending, held back, or dropped."""
    await conn.execute(_UPDATE_CLAIMED, updates)


async def record_attempts(conn: AsyncConnection, updates: list[dict[str, Any]]) -> None:
    """Each delivery's outcome, on rows still leased by that attempt."""
    await conn.execute(_RECORD, updates)


async def retry(conn: AsyncConnection, notification_id: int | None = None) -> list[int]:
    """Failed or dead notifications pending again with a fresh attempt count: one, or all."""
    if notification_id is None:
        result = await conn.execute(_RETRY_FAILED)
    else:
        result = await conn.execute(_RETRY_ONE, {"notification_id": notification_id})
    return sorted(result.scalars().all())
