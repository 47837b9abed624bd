"""Claims of events and locks of members: the processed_events rows and the member rows taken
at the start of a ledger transaction.

One event claims its key and locks (enrolling if new) its member in one round trip
(`claim_and_lock`); a group claims all its keys in one statement (`claim_many`) and locks its
members in member-id order in another (`lock_many`); a group applied event by event reserves
its keys first (`claim_many`, then `release_claims`) and locks its members (`lock_members`).
An identity link claims its key on its own (`claim_event`), as it locks two members.

Event keys are taken before member rows, each in sorted order (docs/architecture.md, "Lock
order"): no transaction waits for an event key while it holds a member row.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import bindparam, text
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.types import DateTime, Text

from worker.store.accounts import IMPORTED
from worker.store.staged import Staged

# The claim and the member lock in one round trip: the member row is locked (and enrolled if
# new) only when the claim wins, so a duplicate returns no row and locks nothing.
_CLAIM_AND_LOCK = text(
    f"""
    WITH claim AS (
        INSERT INTO processed_events
            (source, event_id, payload_hash, member_id, event_type, status, occurred_at, payload, program_version)
        VALUES (:source, :event_id, :payload_hash, :member_id, :event_type, 'applied', :occurred_at, :payload,
                :program_version)
        ON CONFLICT (source, event_id) DO NOTHING
        RETURNING 1
    )
    INSERT INTO members AS m (member_id, tier)
    SELECT :member_id, :tier WHERE EXISTS (SELECT 1 FROM claim)
    ON CONFLICT (member_id) DO UPDATE SET updated_at = now()
    RETURNING m.*, {IMPORTED}
    """
).bindparams(bindparam("payload", type_=JSONB))

_STORE_SCRUBBED = text(
    "UPDATE processed_events SET payload = :payload WHERE source = :source AND event_id = :event_id"
).bindparams(bindparam("payload", type_=JSONB))

# The first statement of the transaction goes through SQLAlchemy, which sends BEGIN with it;
# the rest go to asyncpg directly (staged.py).
_CLAIM = text(
    """
    INSERT INTO processed_events
        (source, event_id, payload_hash, member_id, event_type, status, occurred_at, payload, program_version)
    SELECT s, e, h, m, t, 'applied', o, CAST(p AS jsonb), v
    FROM unnest(:sources, :event_ids, :hashes, :member_ids, :types, :occurred, :payloads, :versions)
         AS c(s, e, h, m, t, o, p, v)
    ORDER BY s, e
    ON CONFLICT (source, event_id) DO NOTHING
    RETURNING source, event_id
    """
).bindparams(
    *(
        bindparam(name, type_=ARRAY(Text))
        for name in ("sources", "event_ids", "hashes", "member_ids", "types", "payloads", "versions")
    ),
    bindparam("occurred", type_=ARRAY(DateTime(timezone=True))),
)

_LOCK = f"""
    INSERT INTO members AS m (member_id, tier)
    SELECT id, tier FROM unnest($1::text[], $2::text[]) AS u(id, tier) ORDER BY id
    ON CONFLICT (member_id) DO UPDATE SET updated_at = now()
    RETURNING m.*, {IMPORTED}
"""

_LOCK_MEMBERS = text(
    """
    INSERT INTO members AS m (member_id, tier)
    SELECT id, tier FROM unnest(CAST(:member_ids AS text[]), CAST(:tiers AS text[])) AS u(id, tier) ORDER BY id
    ON CONFLICT (member_id) DO UPDATE SET updated_at = now()
    RETURNING m.*
    """
)

# Keys in the order `claim_many` takes them (the database's collation, which a sort in Python
# may not match), for a group that takes them one by one.
_KEYS_IN_ORDER = text(
    "SELECT s, e FROM unnest(CAST(:sources AS text[]), CAST(:event_ids AS text[])) AS k(s, e) ORDER BY s, e"
)

# Keys reserved rather than claimed (worker/services/group_each.py): the rows a group just
# claimed, deleted again in its own transaction. Until it ends, another transaction inserting
# one of those keys still waits for it (a row whose inserting transaction is in progress
# blocks an insert of the same key, deleted or not), while its own reads no longer see them
# and its events claim them again, one by one, without waiting.
_RELEASE_CLAIMS = text(
    """
    DELETE FROM processed_events p USING unnest(CAST(:sources AS text[]), CAST(:event_ids AS text[])) AS k(s, e)
    WHERE p.source = k.s AND p.event_id = k.e
    """
)
_LOCK_EXISTING = text(
    "SELECT member_id FROM members WHERE member_id = ANY(CAST(:member_ids AS text[])) ORDER BY member_id FOR UPDATE"
)

_CLAIM_EVENT = text(
    """
    INSERT INTO processed_events (source, event_id, payload_hash, member_id, event_type, status, occurred_at)
    VALUES (:source, :event_id, :payload_hash, :member_id, :event_type, 'applied', :occurred_at)
    ON CONFLICT (source, event_id) DO NOTHING
    RETURNING 1
    """
)


async def claim_and_lock(conn: AsyncConnection, row: dict[str, Any]) -> Any:
    """Claim one event's key and lock its member; the member row, or None when the key was
    taken (a duplicate or a conflict: nothing is locked then)."""
    return (await conn.execute(_CLAIM_AND_LOCK, row)).mappings().first()


async def store_scrubbed(conn: AsyncConnection, source: str, event_id: str, payload: dict[str, Any]) -> None:
    """An erased member's event kept without the personal data it carried."""
    await conn.execute(_STORE_SCRUBBED, {"source": source, "event_id": event_id, "payload": payload})


async def claim_many(conn: AsyncConnection, columns: dict[str, list[Any]]) -> set[tuple[str, str]]:
    """Claim a group's event keys (one array per column); the keys this transaction won."""
    return {(r.source, r.event_id) for r in await conn.execute(_CLAIM, columns)}


async def lock_many(staged: Staged, member_ids: list[str], tiers: list[str]) -> list[Any]:
    """Lock (and enrol at `tiers`) the members, in member-id order; their rows."""
    return list(await staged.fetch(_LOCK, member_ids, tiers))


async def lock_members(conn: AsyncConnection, member_ids: list[str], tiers: list[str]) -> dict[str, Any]:
    """`lock_many` on a SQLAlchemy connection: lock (and enrol at `tiers`) the members in
    member-id order; their rows by member id. Locking a row this transaction holds again
    waits for nothing."""
    rows = (await conn.execute(_LOCK_MEMBERS, {"member_ids": member_ids, "tiers": tiers})).mappings().all()
    return {row["member_id"]: row for row in rows}


async def keys_in_lock_order(conn: AsyncConnection, keys: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The event keys in the order `claim_many` claims them."""
    params = {"sources": [s for s, _ in keys], "event_ids": [e for _, e in keys]}
    return [(r.s, r.e) for r in await conn.execute(_KEYS_IN_ORDER, params)]


async def release_claims(conn: AsyncConnection, keys: list[tuple[str, str]]) -> None:
    """Delete the claims of `keys` this transaction just took: they stay reserved to it until
    it ends (see _RELEASE_CLAIMS)."""
    if keys:
        await conn.execute(_RELEASE_CLAIMS, {"sources": [s for s, _ in keys], "event_ids": [e for _, e in keys]})


async def lock_existing(conn: AsyncConnection, member_ids: list[str]) -> None:
    """Lock the rows of the members that exist among `member_ids`, in member-id order,
    enrolling none."""
    await conn.execute(_LOCK_EXISTING, {"member_ids": member_ids})


async def claim_event(conn: AsyncConnection, row: dict[str, Any]) -> bool:
    """Claim an event's key without a payload or a member lock (an identity link's)."""
    return (await conn.execute(_CLAIM_EVENT, row)).first() is not None
