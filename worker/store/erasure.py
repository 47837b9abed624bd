"""Erasure's writes to the ledger's tables: the profile, stored event payloads, message texts.

The ledger rows themselves (entries, lots, balances) keep their amounts; of an entry only the
free text an operator wrote about the member (an adjustment's reason) in its rule provenance is
replaced. worker/services/erasure.py decides what to erase and erases the rest (identities,
rejected events, API answers).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, text
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.types import Text

_ERASE = text(
    """
    UPDATE members SET birthday = NULL, locale = NULL, erased_at = coalesce(erased_at, :now), updated_at = :now
    WHERE member_id = :member_id OR merged_into = :member_id
    RETURNING member_id, erased_at, erased_at = :now AS newly
    """
)

# `texts`: the free-text fields by event type ({"adjustment": ["reason"]}), each given the
# `erased` text in place of its own; `fields` go altogether.
_SCRUB_EVENTS = text(
    """
    UPDATE processed_events SET payload = CASE
        WHEN jsonb_typeof(payload -> 'payload') = 'object'
        THEN jsonb_set(payload - 'member', '{payload}', ((payload -> 'payload') - :fields) || coalesce(
            (SELECT jsonb_object_agg(t.f, to_jsonb(CAST(:erased AS text)))
             FROM jsonb_array_elements_text(:texts -> event_type) AS t(f) WHERE payload -> 'payload' ? t.f),
            '{}'))
        ELSE payload - 'member' END
    WHERE member_id = ANY(:ids) AND (
        payload ? 'member' OR payload -> 'payload' ?| :fields
        OR EXISTS (SELECT 1 FROM jsonb_array_elements_text(:texts -> event_type) AS t(f)
                   WHERE payload -> 'payload' ->> t.f <> :erased))
    """
).bindparams(
    bindparam("ids", type_=ARRAY(Text)), bindparam("fields", type_=ARRAY(Text)), bindparam("texts", type_=JSONB)
)
# The same free text in the rule provenance of the entries the events booked: an entry's rule
# is named as the event type that made it (the `adjustment` rule of an `adjust` entry).
_SCRUB_ENTRY_TEXTS = text(
    """
    UPDATE ledger_entries SET rules = (
        SELECT jsonb_agg(x.r || coalesce(
            (SELECT jsonb_object_agg(t.f, to_jsonb(CAST(:erased AS text)))
             FROM jsonb_array_elements_text(:texts -> (x.r ->> 'rule')) AS t(f) WHERE x.r ? t.f),
            '{}') ORDER BY x.n)
        FROM jsonb_array_elements(rules) WITH ORDINALITY AS x(r, n))
    WHERE member_id = ANY(:ids) AND EXISTS (
        SELECT 1 FROM jsonb_array_elements(rules) AS x(r), jsonb_array_elements_text(:texts -> (x.r ->> 'rule')) AS t(f)
        WHERE x.r ->> t.f <> :erased)
    """
).bindparams(bindparam("ids", type_=ARRAY(Text)), bindparam("texts", type_=JSONB))

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


async def scrub_events(
    conn: AsyncConnection, member_ids: list[str], fields: list[str], texts: dict[str, tuple[str, ...]], erased: str
) -> int:
    """The personal fields and the identity sent out of the members' stored events, and their
    free-text fields (`texts`, by event type) replaced by `erased`; how many events."""
    params = {"ids": member_ids, "fields": fields, "texts": texts, "erased": erased}
    return (await conn.execute(_SCRUB_EVENTS, params)).rowcount


async def scrub_entry_texts(
    conn: AsyncConnection, member_ids: list[str], texts: dict[str, tuple[str, ...]], erased: str
) -> int:
    """The free-text fields (`texts`, by rule name) of the members' entries' rule provenance
    replaced by `erased`; the points stay. How many entries."""
    return (await conn.execute(_SCRUB_ENTRY_TEXTS, {"ids": member_ids, "texts": texts, "erased": erased})).rowcount


async def scrub_notifications(conn: AsyncConnection, member_ids: list[str]) -> int:
    """The rendered texts and locales of the members' notifications; how many."""
    return (await conn.execute(_SCRUB_NOTIFICATIONS, {"ids": member_ids})).rowcount
