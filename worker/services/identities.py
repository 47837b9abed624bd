"""Identities: which member an event's identity names, and linking an identity to a member,
which merges two members when it already names another (docs/identities.md).

Resolution runs in intake before the ledger; a link is applied by the ledger like an event,
with its own claim, since it locks two members (always in member-id order). A merge keeps
the member whose first event occurred earliest (event time, whatever order the events were
processed in), moves the other's lots, events, orders and identities to it, and then
re-evaluates the kept member's whole history in occurrence order (worker/services/replay.py),
so that what counts once per member (the first-purchase bonus, the signup bonus, streaks,
caps, the tier) is counted once, and each event's recorded outcome is the ledger's. Identity
values are personal data: they are not logged and not written anywhere but member_identities.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.types import Text

from worker.domain import merges, reevaluation, referrals
from worker.domain.errors import InvalidEvent, LinkContended
from worker.domain.events import IdentityLinkEvent, named_member, payload_hash
from worker.domain.identities import identity_member_id, looks_like_identity, normalise, parse_identity, survivor_of
from worker.domain.program import Program
from worker.domain.program_timeline import ProgramTimeline, timeline_of
from worker.domain.result import Result
from worker.services import replay
from worker.store import accounts
from worker.store import events as store_events
from worker.store import merges as store_merges
from worker.store.accounts import OPERATOR_SOURCE, Account, Origin

# A link retries its locks when a concurrent merge moved the identity's owner meanwhile; each
# retry follows one more merge, and more merges than this at once are not seen in practice.
LINK_ATTEMPTS_MAX = 20

_OWNER = text(
    """
    SELECT coalesce(m.merged_into, i.member_id) FROM member_identities i
    LEFT JOIN members m ON m.member_id = i.member_id
    WHERE i.kind = :kind AND i.value = :value
    """
)
_OWNERS = text(
    """
    SELECT i.kind, i.value, coalesce(m.merged_into, i.member_id) AS member_id
    FROM member_identities i
    JOIN unnest(:kinds, :values) AS w(kind, value) ON w.kind = i.kind AND w.value = i.value
    LEFT JOIN members m ON m.member_id = i.member_id
    """
).bindparams(bindparam("kinds", type_=ARRAY(Text)), bindparam("values", type_=ARRAY(Text)))
_CLAIM_IDENTITY = text(
    """
    INSERT INTO member_identities (kind, value, member_id) VALUES (:kind, :value, :member_id)
    ON CONFLICT (kind, value) DO NOTHING
    RETURNING member_id
    """
)
# An identity first seen enrols the member it names, unless that member was erased: then the
# event reaches it (or the member it was merged into) without the identity being kept again.
_CLAIM_NEW_IDENTITY = text(
    """
    INSERT INTO member_identities (kind, value, member_id)
    SELECT :kind, :value, :member_id
    WHERE NOT EXISTS (SELECT 1 FROM members WHERE member_id = :member_id AND erased_at IS NOT NULL)
    ON CONFLICT (kind, value) DO NOTHING
    RETURNING member_id
    """
)
_ERASED_MEMBER = text(
    "SELECT coalesce(merged_into, member_id) FROM members WHERE member_id = :member_id AND erased_at IS NOT NULL"
)
_MERGED = text(
    "SELECT member_id, merged_into FROM members WHERE member_id = ANY(:member_ids) AND merged_into IS NOT NULL"
).bindparams(bindparam("member_ids", type_=ARRAY(Text)))
_CLAIMED_HASH = text("SELECT payload_hash FROM processed_events WHERE source = :source AND event_id = :event_id")
# When each of two members' first event of their own doing occurred (referrals.ENROLMENT_TYPES,
# as a referral judges a new member): what decides which of them a merge keeps. Events of members
# merged into either earlier were re-pointed to it, so they count. Both rows are locked: an
# event of either not committed yet waits for the lock, and then lands on the member kept.
_FIRST_EVENTS = text(
    """
    SELECT m.id AS member_id,
        (SELECT min(p.occurred_at) FROM processed_events p
         WHERE p.member_id = m.id AND p.event_type = ANY(CAST(:types AS text[]))) AS first_event_at
    FROM unnest(CAST(:member_ids AS text[])) AS m(id)
    """
)
_SHARED_ORDERS = text(
    """
    SELECT a.order_id FROM orders a JOIN orders b ON b.order_id = a.order_id
    WHERE a.member_id = :absorbed AND b.member_id = :survivor AND a.amount IS NOT NULL AND b.amount IS NOT NULL
    ORDER BY a.order_id LIMIT 1
    """
)
_BOOKED = text(
    """
    SELECT source, event_id, kind, qualifying_points, rules FROM ledger_entries
    WHERE member_id = :member_id AND kind IN ('earn', 'reverse', 'transfer')
    ORDER BY entry_id
    """
)
_EVENT_TYPES = text("SELECT source, event_id, event_type FROM processed_events WHERE member_id = :member_id")


async def find_member(conn: AsyncConnection, kind: str, value: str) -> str | None:
    """The member an identity names (the member kept, if its owner was merged), or None."""
    return (await conn.execute(_OWNER, {"kind": kind, "value": normalise(kind, value)})).scalar()


async def resolve_many(conn: AsyncConnection, programs: Program | ProgramTimeline, events: list[Any]) -> list[Any]:
    """Each event with `member_id` the member it lands on: its identity's owner (an unknown
    identity enrols the member `identity_member_id` names, at the lowest tier of the version
    deciding its earliest event, and is recorded for it), or the member its member was merged
    into. Set-based: one query for the known identities, one for merges."""
    timeline = timeline_of(programs)
    earliest: dict[tuple[str, str], datetime] = {}
    for e in events:
        if getattr(e, "member", None) is not None:
            named_by = (e.member.kind, e.member.value)
            earliest[named_by] = min(earliest.get(named_by, e.occurred_at), e.occurred_at)
    named = sorted(earliest)
    owners: dict[tuple[str, str], str] = {}
    if named:
        rows = await conn.execute(_OWNERS, {"kinds": [k for k, _ in named], "values": [v for _, v in named]})
        owners = {(r.kind, r.value): r.member_id for r in rows}
        for kind, value in named:  # new identities in a sorted order: concurrent batches wait, never deadlock
            if (kind, value) in owners:
                continue
            generated = identity_member_id(kind, value)
            claimed = (
                await conn.execute(_CLAIM_NEW_IDENTITY, {"kind": kind, "value": value, "member_id": generated})
            ).scalar()
            if claimed is not None:
                await accounts.enrol(conn, timeline.at(earliest[(kind, value)]), generated)
                owners[(kind, value)] = generated
                continue
            # Another transaction recorded it first, or the member it names was erased.
            owner = (await conn.execute(_OWNER, {"kind": kind, "value": value})).scalar()
            if owner is None:
                owner = (await conn.execute(_ERASED_MEMBER, {"member_id": generated})).scalar_one()
            owners[(kind, value)] = owner
    by_id = [e.member_id for e in events if getattr(e, "member", None) is None]
    merged: dict[str, str] = {}
    if by_id:
        merged = {r.member_id: r.merged_into for r in await conn.execute(_MERGED, {"member_ids": sorted(set(by_id))})}
    out = []
    for event in events:
        if getattr(event, "member", None) is not None:
            out.append(named_member(event, owners[(event.member.kind, event.member.value)]))
        elif event.member_id in merged:
            out.append(land_on(event, merged[event.member_id]))
        else:
            out.append(event)
    return out


def landed(event: Any, member_id: str) -> Any:
    """The event as applied to `member_id`: its identity's owner, or the member it was merged into."""
    if getattr(event, "member", None) is not None:
        return named_member(event, member_id)
    return land_on(event, member_id)


async def member_named(engine: AsyncEngine, name: str) -> str | None:
    """The member an operator's argument names: `KIND:VALUE` (when KIND is an identity kind) is
    looked up, anything else is a member id. IdentityError for an identity out of form."""
    if not looks_like_identity(name):
        return name
    kind, value = parse_identity(name)
    async with engine.connect() as conn:
        return await find_member(conn, kind, value)


def link_event(member_id: str, kind: str, value: str, now: datetime) -> dict:
    """The identity_link an operator's `member link` sends, at `now`. Its id is a digest (the
    identity is personal data, and event ids are kept after an erasure)."""
    digest = hashlib.sha256(f"{member_id}|{kind}:{value}|{now.isoformat()}".encode()).hexdigest()[:20]
    return {
        "event_id": f"link-{digest}",
        "type": "identity_link",
        "source": OPERATOR_SOURCE,
        "member_id": member_id,
        "occurred_at": now.isoformat(),
        "payload": {"kind": kind, "value": value},
    }


def land_on(event: Any, member_id: str) -> Any:
    """The event for the member `member_id` (a contract event or an engine's own effect)."""
    if dataclasses.is_dataclass(event):
        return dataclasses.replace(event, member_id=member_id)
    return named_member(event, member_id)


async def link(
    conn: AsyncConnection,
    programs: ProgramTimeline,
    event: IdentityLinkEvent,
    *,
    types: tuple[str, ...],
    stored_event: Callable[[str, dict], Any],
) -> Result:
    """Apply an identity_link exactly once: attach the identity to the event's member when it
    is free, merge the two members when another has it."""
    kind, value = event.payload.kind, event.payload.value
    digest = payload_hash(event)
    key = {"source": event.source, "event_id": event.event_id}
    claim = {
        **key,
        "payload_hash": digest,
        "member_id": event.member_id,
        "event_type": event.type,
        "occurred_at": event.occurred_at,
    }
    if not await store_events.claim_event(conn, claim):
        stored = (await conn.execute(_CLAIMED_HASH, key)).scalar_one()
        return Result("duplicate" if stored == digest else "conflict", event.member_id)
    origin = Origin.of(event)
    for _ in range(LINK_ATTEMPTS_MAX):
        savepoint = await conn.begin_nested()
        outcome = await _attempt(conn, programs, event, origin, kind, value, types, stored_event)
        if outcome is None:  # the owner moved while we locked: let go of the locks, look again
            await savepoint.rollback()
            continue
        await savepoint.commit()
        return outcome
    raise LinkContended(f"identity_link {event.event_id}: the identity's owner kept changing")


async def link_members(conn: AsyncConnection, programs: ProgramTimeline, event: IdentityLinkEvent) -> list[str]:
    """The members a link will lock, as they stand now: its member (or the one it was merged
    into) and the identity's owner, if any. A group takes their locks up front; should the
    owner change before the link runs, the link locks the new one itself."""
    target = (await resolve_many(conn, programs, [event]))[0].member_id
    owner = (await conn.execute(_OWNER, {"kind": event.payload.kind, "value": event.payload.value})).scalar()
    return [target, *([owner] if owner else [])]


async def _attempt(conn, programs, event, origin, kind, value, types, stored_event) -> Result | None:
    program = programs.at(event.occurred_at)
    target = (await resolve_many(conn, programs, [event]))[0].member_id
    owner = (await conn.execute(_OWNER, {"kind": kind, "value": value})).scalar()
    rows = await accounts.lock_members(conn, program, [target, *([owner] if owner else [])])
    if any(r["merged_into"] is not None for r in rows.values()):
        return None
    if (await conn.execute(_OWNER, {"kind": kind, "value": value})).scalar() != owner:
        return None
    for member_id, row in rows.items():
        if row["erased_at"] is not None:
            raise InvalidEvent(f"member_id: member {member_id} is erased; an erased member takes no identity")
    record_of = {"source": event.source, "event_id": event.event_id}
    if owner is None or owner == target:
        if owner is None:
            claimed = (
                await conn.execute(_CLAIM_IDENTITY, {"kind": kind, "value": value, "member_id": target})
            ).scalar()
            if claimed is None:
                return None
        account = accounts.account_from_row(target, rows[target])
        result = Result(
            "applied", target, detail={"linked": "attached" if owner is None else "already_linked", "identity": kind}
        )
        await accounts.close(
            conn, program, account, None, {**record_of, "status": "applied", "result": result.as_json()}
        )
        return result
    first = {
        r.member_id: r.first_event_at
        for r in await conn.execute(
            _FIRST_EVENTS, {"member_ids": [target, owner], "types": list(referrals.ENROLMENT_TYPES)}
        )
    }
    survivor_id = survivor_of((first[target], target), (first[owner], owner))
    absorbed_id = owner if survivor_id == target else target
    survivor = accounts.account_from_row(survivor_id, rows[survivor_id])
    absorbed = accounts.account_from_row(absorbed_id, rows[absorbed_id])
    return await _merge(conn, programs, survivor, absorbed, origin, kind, record_of, types, stored_event)


async def _merge(
    conn,
    programs,
    survivor: Account,
    absorbed: Account,
    origin: Origin,
    kind: str,
    record_of: dict,
    types,
    stored_event,
) -> Result:
    ids = {"survivor": survivor.member_id, "absorbed": absorbed.member_id}
    shared = (await conn.execute(_SHARED_ORDERS, ids)).scalar()
    if shared is not None:
        raise InvalidEvent(
            f"payload.value: members {absorbed.member_id} and {survivor.member_id} both have order {shared}; "
            "they cannot be merged automatically"
        )
    event_types = {
        (r.source, r.event_id): r.event_type
        for r in await conn.execute(_EVENT_TYPES, {"member_id": absorbed.member_id})
    }
    booked = reevaluation.points_by_event(
        [dict(r) for r in (await conn.execute(_BOOKED, {"member_id": absorbed.member_id})).mappings()]
    )
    moved = merges.moved_items(booked, event_types)
    await store_merges.repoint(conn, survivor.member_id, absorbed.member_id)
    balances = merges.Balances(
        absorbed.member_id, absorbed.available, absorbed.pending, absorbed.qualifying, absorbed.lifetime
    )
    lots = await accounts.open_lots_to_move(conn, absorbed.member_id)
    await accounts.transfer(
        conn, absorbed, survivor, origin, merges.transfer(survivor.member_id, balances, lots, moved)
    )
    await accounts.write_back(conn, absorbed)
    replayed = await replay.reevaluate(
        conn, programs, survivor, origin, types=types, erased=False, stored_event=stored_event
    )
    detail = {
        "linked": "merged",
        "identity": kind,
        "survivor": survivor.member_id,
        "absorbed": absorbed.member_id,
        "re_evaluated": replayed.as_json() if replayed is not None else None,
    }
    await store_merges.record_merge(conn, survivor.member_id, absorbed.member_id, kind, origin, detail)
    result = Result("applied", survivor.member_id, replayed.points if replayed else 0, detail=detail)
    await accounts.close(
        conn,
        programs.at(origin.occurred_at),
        survivor,
        origin,
        {**record_of, "status": "applied", "result": result.as_json()},
    )
    return dataclasses.replace(
        result, movements=(*survivor.movements, *absorbed.movements), tier_moves=tuple(survivor.tier_moves)
    )
