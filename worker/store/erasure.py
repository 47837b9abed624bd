"""Erasure's writes to the ledger's tables: the profile, stored event payloads, message texts.

The ledger rows themselves (entries, lots, balances) stay as they are: they hold no personal
data. worker/services/erasure.py decides what to erase and erases the rest (identities,
rejected events, API answers).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.types import Text

_ERASE = text(
    """
    UPDATE members SET birthday = NULL, locale = NULL, erased_at = coalesce(erased_at, :now), updated_at = :now
    WHERE member_id = :member_id OR merged_into = :member_id
    RETURNING member_id, erased_at, erased_at = :now AS newly
    """
)

_SCRUB_EVENTS = text(
    """
    UPDATE processed_events SET payload = CASE
        WHEN jsonb_typeof(payload -> 'payload') = 'object'
        THEN jsonb_set(payload - 'member', '{payload}', (payload -> 'payload') - :fields)
        ELSE payload - 'member' END
    WHERE member_id = ANY(:ids) AND (payload ? 'member' OR payload -> 'payload' ?| :fields)
    """
).bindparams(bindparam("ids", type_=ARRAY(Text)), bindparam("fields", type_=ARRAY(Text)))

_SCRUB_NOTIFICATIONS = text(
    """
    UPDATE notifications SET text = NULL, locale = NULL
    WHERE member_id = ANY(:ids) AND (text IS NOT NULL OR locale IS NOT NULL)
    """
).bindparams(bindparam("ids", type_=ARRAY(Text)))


async def erase_profile(conn: AsyncConnection, member_id: str, now: datetime) -> list[Any]:
    """Birthday and locale gone, `erased_at` set (kept when erased before), for the member and
    the members merged into it; their rows (member_id, erased_at, newly)."""
    return list(await conn.execute(_ERASE, {"member_id": member_id, "now": now}))


async def scrub_events(conn: AsyncConnection, member_ids: list[str], fields: list[str]) -> int:
    """The personal fields and the identity sent out of the members' stored events; how many."""
    return (await conn.execute(_SCRUB_EVENTS, {"ids": member_ids, "fields": fields})).rowcount


async def scrub_notifications(conn: AsyncConnection, member_ids: list[str]) -> int:
    """The rendered texts and locales of the members' notifications; how many."""
    return (await conn.execute(_SCRUB_NOTIFICATIONS, {"ids": member_ids})).rowcount
