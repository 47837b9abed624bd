"""Erasing a member's personal data on request, keeping the ledger's amounts for accounting.

Personal data here is the birthday, the locale and the identities (phone, card, e-mail,
WeChat openid). What goes, for the member and every member merged into it (the same person):
- the members row's birthday and locale; `erased_at` is set;
- the identity rows;
- the birthday and locale inside the stored events a re-evaluation reads
  (`processed_events.payload`, deferred events included);
- the raw text of rejected events naming the member by member_id, or by one of its identities;
- the free text an operator wrote about the member, an adjustment's `reason`, in its stored
  event and in its entry's rule provenance: replaced by "(erased)", the points and the
  operator (`by`, who made the adjustment) stay;
- the rendered text and locale of its notifications;
- stored answers of API requests (Idempotency-Key) that name the member or an identity.
What stays: member id, balances, ledger entries with their rule provenance, lots, orders,
refunds, reviews, holds, redemptions, tier changes, the stored events without those fields:
the amounts the retailer must keep for its books, and the audit that checks them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import bindparam, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.types import Text

from worker.domain.events import ERASED_TEXT, PERSONAL_PAYLOAD_FIELDS, PERSONAL_TEXT_FIELDS
from worker.domain.identities import names_identity
from worker.store import erasure as store_erasure

# Tables keyed by member_id that hold nothing but personal data (logins, phone numbers,
# external account links). Erased when they exist in the schema; other features add them.
IDENTITY_TABLES = ("member_identities",)
# What replaces the raw text of an erased member's rejected events.
ERASED_RAW = '{"erased": true}'
# Rejected events read per statement when looking for those that named the member by an
# identity only: the search pages through the table by id, never holding it all.
REJECTED_PAGE_SIZE = 1000

_IDENTITIES = text("SELECT kind, value FROM member_identities WHERE member_id = ANY(:ids)").bindparams(
    bindparam("ids", type_=ARRAY(Text))
)
# The stored form of a contract event keeps its payload as an object; the engine's own
# effects (a referee bonus, a birthday gift) have no payload and no personal field.
_REDACT_REJECTED = text(
    "UPDATE rejected_events SET raw = :erased WHERE member_id = ANY(:ids) AND raw <> :erased"
).bindparams(bindparam("ids", type_=ARRAY(Text)))
# Candidates for naming an identity: its normal form in the text, or an identity object in
# it (any `"value"`), which names_identity normalises and compares.
_REJECTED_CANDIDATES = text(
    """
    SELECT rejected_id, raw FROM rejected_events
    WHERE rejected_id > :after AND raw <> :erased
      AND (raw LIKE '%"value"%' OR EXISTS (SELECT 1 FROM unnest(:values) AS v(value) WHERE strpos(lower(raw), v.value) > 0))
    ORDER BY rejected_id LIMIT :limit
    """
).bindparams(bindparam("values", type_=ARRAY(Text)))
# An imported member's row digest covers their personal data: it goes with the birthday and
# locale imported, and the member's file row is a conflict from then on.
_FORGET_IMPORT = text(
    "UPDATE import_members SET row_hash = 'erased', birthday = NULL, locale = NULL WHERE member_id = ANY(:ids)"
).bindparams(bindparam("ids", type_=ARRAY(Text)))
_REDACT_REJECTED_IDS = text("UPDATE rejected_events SET raw = :erased WHERE rejected_id = ANY(:ids)")
# A retry of such a request is still answered with its first outcome: the ledger keeps the
# redemption under the request's own event id (worker/services/redeem.py).
_DROP_ANSWERS = text(
    """
    DELETE FROM api_idempotency
    WHERE EXISTS (
        SELECT 1 FROM unnest(:names) AS n(name)
        WHERE jsonb_path_exists(response, '$.** ? (@ == $name)', jsonb_build_object('name', n.name))
    )
    """
).bindparams(bindparam("names", type_=ARRAY(Text)))


@dataclass(frozen=True)
class Erasure:
    member_id: str
    erased_at: datetime
    already_erased: bool
    identities_removed: int
    rejected_redacted: int
    events_redacted: int
    notifications_redacted: int
    api_answers_removed: int


async def erase_member(engine: AsyncEngine, member_id: str, now: datetime) -> Erasure | None:
    """Erase in one transaction; None when there is no such member. Safe to run twice."""
    async with engine.begin() as conn:
        rows = {r.member_id: r for r in await store_erasure.erase_profile(conn, member_id, now)}
        if member_id not in rows:
            return None
        ids = sorted(rows)
        identities = [(r.kind, r.value) for r in await conn.execute(_IDENTITIES, {"ids": ids})]
        removed = 0
        for table in IDENTITY_TABLES:
            exists = (await conn.execute(text("SELECT to_regclass(:t) IS NOT NULL"), {"t": table})).scalar_one()
            if exists:
                # The table name comes from the constant above, never from input.
                result = await conn.execute(text(f"DELETE FROM {table} WHERE member_id = ANY(:ids)"), {"ids": ids})
                removed += result.rowcount
        await conn.execute(_FORGET_IMPORT, {"ids": ids})
        events = await store_erasure.scrub_events(
            conn, ids, list(PERSONAL_PAYLOAD_FIELDS), PERSONAL_TEXT_FIELDS, ERASED_TEXT
        )
        await store_erasure.scrub_entry_texts(conn, ids, PERSONAL_TEXT_FIELDS, ERASED_TEXT)
        rejected = (await conn.execute(_REDACT_REJECTED, {"ids": ids, "erased": ERASED_RAW})).rowcount
        rejected += await _redact_named_by_identity(conn, identities)
        notices = await store_erasure.scrub_notifications(conn, ids)
        answers = await conn.execute(_DROP_ANSWERS, {"names": [*ids, *(value for _, value in identities)]})
    own = rows[member_id]
    return Erasure(
        member_id,
        own.erased_at,
        not own.newly,
        removed,
        rejected,
        events,
        notices,
        answers.rowcount,
    )


async def _redact_named_by_identity(conn: AsyncConnection, identities: list[tuple[str, str]]) -> int:
    """Redact rejected events that named the member by one of its identities (they carry no
    member_id: an event refused before its identity was resolved)."""
    if not identities:
        return 0
    lowered = [value.lower() for _, value in identities]
    redacted, after = 0, 0
    while True:
        page = (
            await conn.execute(
                _REJECTED_CANDIDATES,
                {"after": after, "erased": ERASED_RAW, "values": lowered, "limit": REJECTED_PAGE_SIZE},
            )
        ).all()
        named = [row.rejected_id for row in page if names_identity(row.raw, identities)]
        if named:
            await conn.execute(_REDACT_REJECTED_IDS, {"ids": named, "erased": ERASED_RAW})
            redacted += len(named)
        if len(page) < REJECTED_PAGE_SIZE:
            return redacted
        after = page[-1].rejected_id
