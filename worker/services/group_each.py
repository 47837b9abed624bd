"""A group of members' events applied event by event, with the group's locks taken up front.

A group with an identity link (which locks two members) goes event by event, and so does a
group the ledger refused an event of on the set-based path (each event then in a savepoint of
its own, so that only the refused one is rejected). Each event claims its key and locks its
member as it comes (ledger.apply_event), so that what an event reads of the stored history
(a late event's re-evaluation, a referral's referee, a merge) holds the events before it and
not the ones after. Taken only then, a claim would be taken while the member rows of the
events before it are held, and a concurrent group holding that key (a redelivered event in
two messages) and waiting for one of those rows would close a cycle. So, in the one order
every transaction takes (docs/architecture.md, "Lock order"), the group first

1. reserves every event's key: claims them all with one statement, keys in sorted order, and
   deletes those rows again (worker/store/events.py `release_claims`), which keeps the keys
   its own until it ends while its events claim them again one by one, waiting for nothing;
2. locks every member its events will lock, the links' identity owners among them, in
   member-id order (enrolling the new ones, except with a savepoint per event, where an
   event's enrolment goes with it);
3. takes the locks its events share with other members' events (`ledger.lock_shared`:
   referrals, rewards), each kind in a sorted order;

and then applies its events one by one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection

from worker.domain.errors import InvalidEvent
from worker.domain.events import IdentityLinkEvent
from worker.domain.program_timeline import ProgramTimeline
from worker.services import audit, group_apply, identities, ledger
from worker.services.group_apply import Applied
from worker.services.ledger import Claim
from worker.store import events as store_events

# Why the ledger refused an event (its data), or None for an outage (intake.refusal).
Refusal = Callable[[BaseException], str | None]


async def apply_in_order(
    conn: AsyncConnection,
    programs: ProgramTimeline,
    shares: list[tuple[str, list]],
    strict: bool,
    *,
    refusal: Refusal | None = None,
) -> list[Applied]:
    """Apply the shares in the caller's transaction, event by event, after taking the group's
    locks (see the module docstring). With `refusal`, each event goes in a savepoint of its
    own: a refused event is rolled back and ends rejected, the others apply."""
    firsts: dict[tuple[str, str], tuple[Claim, Any]] = {}
    for _, items in shares:
        for _, event in items:
            claim = Claim.of(event)
            firsts.setdefault(claim.key, (claim, event))
    reserved = await _reserve(conn, programs, list(firsts.values()), refusal)
    applying = [event for key, (_, event) in firsts.items() if key in reserved]
    await _lock(conn, programs, applying, refusal)
    await ledger.lock_shared(conn, applying)

    done: list[Applied] = []
    for member_id, items in shares:
        if refusal is None:
            done += [Applied(index, event, await ledger.apply_event(conn, programs, event)) for index, event in items]
            if strict:
                await audit.assert_member_consistent(conn, member_id)
            continue
        for index, event in items:
            try:
                async with conn.begin_nested():
                    done.append(Applied(index, event, await ledger.apply_event(conn, programs, event)))
                    if strict:
                        await audit.assert_member_consistent(conn, member_id)
            except (InvalidEvent, DBAPIError) as error:
                if (reason := refusal(error)) is None:
                    raise
                done.append(Applied(index, event, reason=reason))
    return done


async def _reserve(
    conn: AsyncConnection, programs: ProgramTimeline, pairs: list[tuple[Claim, Any]], refusal: Refusal | None
) -> set[tuple[str, str]]:
    """Reserve the keys (step 1); the keys reserved (the others were claimed and committed by
    another transaction: their events are duplicates or conflicts). With `refusal`, a key whose
    claim the database refuses (its values) is left to its event, which is refused on its own."""
    if refusal is None:
        reserved = await group_apply.claim_keys(conn, programs, pairs)
    else:
        reserved = await _each_refused_alone(
            conn,
            refusal,
            [claim.key for claim, _ in pairs],
            lambda keys: group_apply.claim_keys(conn, programs, [p for p in pairs if p[0].key in keys]),
            store_events.keys_in_lock_order,
        )
    await store_events.release_claims(conn, sorted(reserved))
    return reserved


async def _lock(conn: AsyncConnection, programs: ProgramTimeline, events: list[Any], refusal: Refusal | None) -> None:
    """Lock the members the events will lock (step 2), each enrolled if new at the lowest tier
    of the version deciding its first event here, as its own claim would enrol it."""
    tiers: dict[str, str] = {}
    for event in events:
        tier = programs.at(event.occurred_at).tiers[0].name
        members = (
            await identities.link_members(conn, programs, event)
            if isinstance(event, IdentityLinkEvent)
            else [event.member_id]
        )
        for member_id in members:
            tiers.setdefault(member_id, tier)
    if not tiers:
        return
    ordered = sorted(tiers)
    if refusal is None:
        await store_events.lock_members(conn, ordered, [tiers[m] for m in ordered])
    else:
        await store_events.lock_existing(conn, ordered)


async def _each_refused_alone(conn, refusal: Refusal, items: list, take, in_lock_order) -> set:
    """`take(items)` in a savepoint; should the database refuse it, each item alone in the
    order `in_lock_order` gives, the refused ones left out. What `take` returned, together."""
    try:
        async with conn.begin_nested():
            return set(await take(items))
    except DBAPIError as error:
        if refusal(error) is None:
            raise
    taken: set = set()
    for item in await in_lock_order(conn, items):
        try:
            async with conn.begin_nested():
                taken |= set(await take([item]))
        except DBAPIError as error:
            if refusal(error) is None:
                raise
    return taken
