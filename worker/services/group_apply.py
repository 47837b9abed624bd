"""A group of members' events applied in one transaction with a handful of statements.

Group commit and batch messages (worker/services/intake.py) hand a group here: members in
sorted order, each member's events in occurrence order. Instead of a claim, a lock and a few
writes per event, the group

1. claims every event's key with one `INSERT ... SELECT FROM unnest(...)` (keys in sorted
   order, so two groups claiming the same keys wait on each other in one order);
2. locks (and enrols) every member that has an event to apply with one more, in member-id
   order, the one order every transaction that locks members takes, and then the locks its
   events share with other members' (referrals, rewards: `ledger.lock_shared`);
3. reads what the deciders read (store/staged.py): the orders its purchases, refunds and
   reviews name, with the refunds and reviews waiting for them, the members' purchase counts
   and the open lots of members whose refunds take points back; and takes entry and lot ids
   from their sequences;
4. decides the events of the members whose events are all set-based (purchases, refunds,
   reviews, referrals, check-ins, signups, activities, member updates, bonuses) on the locked
   accounts in memory, each event reading what the ones before it left, and writes all of that
   with one statement; their referrals are checked, claimed and decided for all of them at
   once (ledger.stage_referrals);
5. applies the other members' events (redemptions, adjustments) statement by statement, as
   they go on their own;
6. re-evaluates each member that had late events once, for all of them, their histories read
   with three statements for the whole group, as of the member's last late event applied.

Every event gets the ledger's own result, and the members end as the re-evaluation of their
histories in occurrence order leaves them: the same balances, tiers, rule state and rows as
applying the events one by one (tests/integration/test_event_time.py checks it against
shuffled, duplicated, concurrent batches).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from worker.domain.errors import MemberMerged
from worker.domain.events import IdentityLinkEvent
from worker.domain.program_timeline import ProgramTimeline
from worker.domain.result import Result
from worker.services import audit, ledger, replay
from worker.services.ledger import Claim, apply_claimed
from worker.store import accounts
from worker.store import events as store_events
from worker.store.accounts import Account, Origin
from worker.store.staged import Staged, json_text

_CLAIMED_HASHES = """
    SELECT p.source, p.event_id, p.payload_hash FROM processed_events p
    JOIN unnest($1::text[], $2::text[]) AS k(s, e) ON p.source = k.s AND p.event_id = k.e
"""

# Event types whose decisions read and write only what staged.py holds; a member with any
# other event in the group goes unstaged.
STAGED_TYPES = frozenset(
    {
        "purchase",
        "refund",
        "review",
        "referral",
        "check_in",
        "signup",
        "activity",
        "referral_referee",
        "birthday_gift",
        "member_update",
    }
)
# Event types that name an order.
ORDER_TYPES = frozenset({"purchase", "refund", "review"})


@dataclass
class Applied:
    index: int
    event: Any
    result: Result | None = None
    reason: str | None = None  # refused by the ledger: recorded as rejected


def can_apply(shares: list[tuple[str, list]]) -> bool:
    """Whether apply_group can take the group: an identity link moves two members' rows and
    goes event by event (group_each.py), with the rest of its group."""
    return not any(isinstance(event, IdentityLinkEvent) for _, items in shares for _, event in items)


async def apply_group(
    conn: AsyncConnection, programs: ProgramTimeline, shares: list[tuple[str, list]], strict: bool
) -> list[Applied]:
    """Apply the shares in the caller's transaction (see the module docstring), each event
    decided by the version in force at its occurred_at."""
    staged = Staged(conn)
    claims: dict[int, Claim] = {}
    first: dict[tuple[str, str], int] = {}  # key -> index of the group's first event with it
    events: dict[int, Any] = {}
    for _, items in shares:
        for index, event in items:
            claims[index] = claim = Claim.of(event)
            events[index] = event
            first.setdefault(claim.key, index)
    won = await claim_keys(conn, programs, [(claims[i], events[i]) for i in first.values()])
    lost_hashes = await _claimed_hashes(staged, [key for key in first if key not in won])
    # A new member is enrolled at the lowest tier of the version deciding their first event.
    enrolling: dict[str, Any] = {}
    for _, items in shares:  # each member's events in occurrence order
        for index, event in items:
            if claims[index].key in won and first[claims[index].key] == index:
                enrolling.setdefault(event.member_id, event)
    rows = await _lock(staged, programs, enrolling)
    to_apply = {i for i in first.values() if claims[i].key in won}
    await ledger.lock_shared(conn, [events[i] for i in sorted(to_apply)])
    locked: dict[str, Account] = {}
    for member_id, row in rows.items():
        if row["merged_into"] is not None:  # merged after intake resolved the events: resolve again
            raise MemberMerged(member_id, row["merged_into"])
        locked[member_id] = accounts.account_from_row(member_id, row)
    # Members whose every event can be staged go first and are written with one statement;
    # the others then go statement by statement.
    plain = {
        member_id
        for member_id, items in shares
        if member_id in locked and all(events[i].type in STAGED_TYPES for i, _ in items if i in to_apply)
    }
    await _read(staged, [events[i] for i in sorted(to_apply)])
    # The plain members' referrals and referee bonuses, in the order they are applied below.
    await ledger.stage_referrals(
        staged,
        programs,
        [events[i] for m, items in shares if m in plain for i, _ in items if i in to_apply],
    )
    done: dict[int, Applied] = {}
    late: dict[str, tuple[int, Claim, Result]] = {}  # member -> its last late event applied
    for staging in (True, False):
        for member_id, items in shares:
            if (member_id in plain) != staging:
                continue
            account = locked.get(member_id)
            if account is not None:
                account.staged = staged if staging else None
            for index, event in items:
                claim = claims[index]
                if index not in to_apply:
                    stored = claims[first[claim.key]].payload_hash if claim.key in won else lost_hashes[claim.key]
                    done[index] = Applied(index, event, claim.lost(member_id, stored))
                    continue
                assert account is not None
                is_late = claim.stored is not None and account.is_late(Origin.of(event))
                erased = rows[member_id]["erased_at"] is not None
                result = await apply_claimed(conn, programs, account, event, claim, erased=erased, replay_now=False)
                if (is_late and result.status == "applied") or ledger.re_evaluates(event, result):
                    late[member_id] = (index, claim, result)
                done[index] = Applied(index, event, result)
        if staging:
            await staged.flush()
    if late and ledger.REEVALUATE:
        await _re_evaluate(conn, programs, staged, locked, rows, late, events, done)
    await staged.flush()
    if strict:
        for member_id in sorted(rows):
            await audit.assert_member_consistent(conn, member_id)
    return [done[index] for _, items in shares for index, _ in items]


async def _re_evaluate(
    conn: AsyncConnection,
    programs: ProgramTimeline,
    staged: Staged,
    locked: dict[str, Account],
    rows: dict[str, Any],
    late: dict[str, tuple[int, Claim, Result]],
    events: dict[int, Any],
    done: dict[int, Applied],
) -> None:
    """Re-evaluate each member that had late events once, their histories read together, as of
    the last late event applied (its result carries the re-evaluation, as a late event's does
    on its own); the corrections go statement by statement, the balance rows are staged."""
    stored = await replay.load(conn, sorted(late), ledger.REPLAYED_TYPES)
    for member_id in sorted(late):
        index, claim, result = late[member_id]
        account, event = locked[member_id], events[index]
        account.staged = None
        replayed = await replay.reevaluate(
            conn,
            programs,
            account,
            Origin.of(event),
            types=ledger.REPLAYED_TYPES,
            erased=rows[member_id]["erased_at"] is not None,
            stored_event=ledger.stored_event,
            stored=stored[member_id],
        )
        if replayed is None:
            continue
        account.staged = staged
        closed = await ledger.close(
            conn, programs.at(event.occurred_at), account, Origin.of(event), claim, ledger.with_replay(result, replayed)
        )
        done[index] = Applied(
            index,
            event,
            replace(
                closed,
                movements=result.movements + closed.movements,
                tier_moves=result.tier_moves + closed.tier_moves,
            ),
        )


async def claim_keys(
    conn: AsyncConnection, programs: ProgramTimeline, pairs: list[tuple[Claim, Any]]
) -> set[tuple[str, str]]:
    if not pairs:
        return set()
    rows = [claim.row(programs.at(event.occurred_at), event) for claim, event in pairs]
    params = {
        "sources": [r["source"] for r in rows],
        "event_ids": [r["event_id"] for r in rows],
        "hashes": [r["payload_hash"] for r in rows],
        "member_ids": [r["member_id"] for r in rows],
        "types": [r["event_type"] for r in rows],
        "occurred": [r["occurred_at"] for r in rows],
        "payloads": [None if r["payload"] is None else json_text(r["payload"]) for r in rows],
        "versions": [r["program_version"] for r in rows],
    }
    return await store_events.claim_many(conn, params)


async def _claimed_hashes(staged: Staged, keys: list[tuple[str, str]]) -> dict[tuple[str, str], str]:
    if not keys:
        return {}
    rows = await staged.fetch(_CLAIMED_HASHES, [k[0] for k in keys], [k[1] for k in keys])
    return {(r["source"], r["event_id"]): r["payload_hash"] for r in rows}


async def _lock(staged: Staged, programs: ProgramTimeline, first_events: dict[str, Any]) -> dict[str, Any]:
    """Lock (and enrol) the members, each by its first event of the group, in member-id order."""
    if not first_events:
        return {}
    member_ids = sorted(first_events)
    tiers = [programs.at(first_events[m].occurred_at).tiers[0].name for m in member_ids]
    rows = await store_events.lock_many(staged, member_ids, tiers)
    return {row["member_id"]: row for row in rows}


async def _read(staged: Staged, applying: list[Any]) -> None:
    """Read what the group's deciders read (staged.py) and reserve the ids its entries take:
    one per event, and one more per refund or review waiting for an order the group names."""
    named = sorted({(e.member_id, e.payload.order_id) for e in applying if e.type in ORDER_TYPES})
    await staged.read_orders(named, sorted({e.member_id for e in applying if e.type == "purchase"}))
    # Members whose events take points back: a refund, or a purchase that applies waiting refunds.
    reversing = {e.member_id for e in applying if e.type == "refund"}
    reversing.update(m for (m, _), waiting in staged.waiting_refunds.items() if waiting)
    await staged.read_lots(sorted(reversing))
    await staged.reserve(len(applying) + staged.waiting_count())
