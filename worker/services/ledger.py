"""Apply one validated event to one member's ledger, exactly once, in the caller's transaction.

The caller owns the transaction (`async with engine.begin()`); everything here either all
commits with it or all rolls back, including the idempotency claim and the outbox rows.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from pydantic import BaseModel
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from worker.domain import currencies, deciders, engine, referrals
from worker.domain.errors import InvalidEvent, InvariantViolation, MemberMerged
from worker.domain.events import (
    IdentityLinkEvent,
    ReferralEvent,
    parse_event,
    payload_hash,
    without_personal,
)
from worker.domain.program import Program
from worker.domain.program_timeline import ProgramTimeline, timeline_of
from worker.domain.result import Result
from worker.services import identities, mall, replay
from worker.store import accounts
from worker.store import decisions as store_decisions
from worker.store import events as store_events
from worker.store.accounts import Account, Origin
from worker.store.staged import Staged

# Effects the engine derives itself are claimed under a `source` containing ':', which the
# contract forbids in producers' sources, so no producer event can take their key.
INTERNAL_SOURCE_SEPARATOR = ":"

_CLAIMED_HASH = text("SELECT payload_hash FROM processed_events WHERE source = :source AND event_id = :event_id")

_REFERRAL_OF = text("SELECT referrer_member_id, source, event_id FROM referrals WHERE referee_member_id = :referee")
# The referral a member is the referee of, with its time.
_REFERRAL_AS_REFEREE = text(
    """
    SELECT r.referrer_member_id, r.source, r.event_id, p.occurred_at FROM referrals r
    JOIN processed_events p ON p.source = r.source AND p.event_id = r.event_id
    WHERE r.referee_member_id = :referee
    """
)


# Two members referring each other share one pair key, unique in referrals: of two such
# referrals at once, the second waits on the first's index entry and then finds it, so a
# mutual referral is refused without any lock beyond that index entry. Longer circles are
# found by the chain query below.
def _pair_key(a: str, b: str) -> str:
    return " ".join(sorted((a, b)))


# Whether the referee is the referrer or one of the members above the referrer in the chain
# of referrals (each member is referred at most once, so the chain is a path).
_REFERRAL_CIRCLE = text(
    """
    WITH RECURSIVE chain(member_id, depth) AS (
        SELECT CAST(:referrer AS text), 0
        UNION ALL
        SELECT r.referrer_member_id, chain.depth + 1 FROM referrals r JOIN chain ON r.referee_member_id = chain.member_id
        WHERE chain.depth < :depth_max
    )
    SELECT depth FROM chain WHERE member_id = :referee ORDER BY depth LIMIT 1
    """
)
# Longer chains than this are not followed (no real referral chain comes close).
REFERRAL_CHAIN_MAX = 1000


@dataclass(frozen=True)
class RefereeBonus:
    """The referee's half of a referral: its own single-member transaction."""

    member_id: str
    referrer_member_id: str
    source: str
    event_id: str  # the referral's event id
    occurred_at: datetime
    type: str = "referral_referee"

    @property
    def claim_key(self) -> tuple[str, str]:
        return f"{self.source}{INTERNAL_SOURCE_SEPARATOR}referee", self.event_id


@dataclass(frozen=True)
class BirthdayGift:
    """The birthday job's gift to one member: once per member per year (its event id says so)."""

    member_id: str
    year: int
    occurred_at: datetime
    source: str = "scheduler"
    type: str = "birthday_gift"

    @property
    def event_id(self) -> str:
        return f"birthday:{self.year}:{self.member_id}"

    @property
    def claim_key(self) -> tuple[str, str]:
        return f"job{INTERNAL_SOURCE_SEPARATOR}birthday", f"{self.year}:{self.member_id}"


@dataclass(frozen=True)
class ReferrerCheck:
    """A referral that no longer pays, taken back on the referrer's own account: its history is
    evaluated again, which gives the referral nothing. Asked once the referee's side is decided
    (after the referee bonus, and after a late event of the referee that occurred before the
    referral) and applied only when the referee is not new (`check_due`). Whether a referee is
    new only ever changes from yes to no (events are only added), so one check per referral,
    claimed under the referral's event id, is all it takes; a redelivery finds it claimed."""

    member_id: str  # the referrer
    referee_member_id: str
    referral_source: str
    event_id: str  # the referral's
    occurred_at: datetime  # the referral's
    type: str = "referrer_check"

    @property
    def source(self) -> str:
        return f"{self.referral_source}{INTERNAL_SOURCE_SEPARATOR}referrer_check"


def follow_ups(event: Any) -> list[RefereeBonus | ReferrerCheck]:
    """Single-member effects an event causes beyond its own member, derived from the event alone
    so that a redelivered message recreates them (they are idempotent on their own keys)."""
    if isinstance(event, ReferralEvent):
        return [
            RefereeBonus(
                member_id=event.payload.referee_member_id,
                referrer_member_id=event.member_id,
                source=event.source,
                event_id=event.event_id,
                occurred_at=event.occurred_at,
            ),
            ReferrerCheck(
                member_id=event.member_id,
                referee_member_id=event.payload.referee_member_id,
                referral_source=event.source,
                event_id=event.event_id,
                occurred_at=event.occurred_at,
            ),
        ]
    return []


async def referral_checks(conn: AsyncConnection, member_id: str) -> list[ReferrerCheck]:
    """The referrer check a late event of `member_id` asks for (or a redelivery of one): one
    when the member is a referee (`check_due` then says whether it is applied). An event on
    time for its member was seen by the referee bonus and the check after it already."""
    rows = (await conn.execute(_REFERRAL_AS_REFEREE, {"referee": member_id})).all()
    return [
        ReferrerCheck(
            member_id=row.referrer_member_id,
            referee_member_id=member_id,
            referral_source=row.source,
            event_id=row.event_id,
            occurred_at=row.occurred_at,
        )
        for row in rows
    ]


async def check_due(conn: AsyncConnection, program: Program, check: ReferrerCheck) -> bool:
    """Whether a referrer check is to be applied: its referee is not new (read, not locked; the
    check's handler decides again under the referrer's lock). A check not due writes nothing,
    so that it can still be applied when a later event of the referee makes it due. A check of a
    referral that is not the referee's (a second referral of them, `referee_already_referred`)
    is never due: it would take nothing back, and a row written for it on one delivery and not
    on another would make the ledger depend on arrival order."""
    return (await checks_due(conn, timeline_of(program), [check]))[0]


async def referee_is_new(conn: AsyncConnection, program: Program, referee: str, referred_at: datetime) -> bool:
    """Whether a referral of `referee` at `referred_at` pays, from the referee's stored events."""
    fetch = (await conn.get_raw_connection()).driver_connection.fetch
    return (await _referees_new(fetch, timeline_of(program), [(referee, referred_at)]))[0]


@dataclass(frozen=True)
class Claim:
    """An event's processed_events row as it is claimed: its key, digest and stored form."""

    source: str
    event_id: str
    payload_hash: str
    stored: dict | None

    @classmethod
    def of(cls, event: Any) -> Claim:
        key_source, key_id = getattr(event, "claim_key", (event.source, event.event_id))
        # One dump of a contract event serves its digest and its stored form (500 items at most).
        dumped = event.model_dump(mode="json") if isinstance(event, BaseModel) else None
        return cls(key_source, key_id, _digest(event, dumped), stored_form(event, dumped))

    @property
    def key(self) -> tuple[str, str]:
        return self.source, self.event_id

    def row(self, program: Program, event: Any) -> dict:
        """The processed_events row's values."""
        return {
            "source": self.source,
            "event_id": self.event_id,
            "payload_hash": self.payload_hash,
            "member_id": event.member_id,
            "event_type": event.type,
            "occurred_at": event.occurred_at,
            "payload": self.stored,
            "program_version": str(engine.rules_of(program).version) if self.stored is not None else None,
        }

    def lost(self, member_id: str, stored_hash: str) -> Result:
        """The result of an event whose key another event holds: the same payload or not."""
        return Result("duplicate" if stored_hash == self.payload_hash else "conflict", member_id)


async def apply_event(conn: AsyncConnection, programs: Program | ProgramTimeline, event: Any) -> Result:
    """Claim the event's key, lock its member, apply the rules, write entries, lots and outbox.

    The event is decided by the version of `programs` in force at its occurred_at. An event
    earlier (in occurrence order) than the latest the member has had is applied and then the
    member's history is evaluated again (worker/services/replay.py), each event by its own
    version. An identity_link locks two members and claims its key itself
    (worker/services/identities.py)."""
    timeline = timeline_of(programs)
    if isinstance(event, IdentityLinkEvent):
        return await identities.link(conn, timeline, event, types=REPLAYED_TYPES, stored_event=stored_event)
    program = timeline.at(event.occurred_at)
    claim = Claim.of(event)
    params = {**claim.row(program, event), "tier": program.tiers[0].name}
    member_row = await store_events.claim_and_lock(conn, params)
    if member_row is None:
        stored_hash = (
            await conn.execute(_CLAIMED_HASH, {"source": claim.source, "event_id": claim.event_id})
        ).scalar_one()
        return claim.lost(event.member_id, stored_hash)
    if member_row["merged_into"] is not None:  # merged after intake resolved the event: resolve again
        raise MemberMerged(event.member_id, member_row["merged_into"])
    account = accounts.account_from_row(event.member_id, member_row)
    return await apply_claimed(conn, timeline, account, event, claim, erased=member_row["erased_at"] is not None)


async def apply_claimed(
    conn: AsyncConnection,
    programs: ProgramTimeline,
    account: Account,
    event: Any,
    claim: Claim,
    *,
    erased: bool,
    replay_now: bool = True,
) -> Result:
    """Apply an event whose key this transaction holds to its locked account, and close it.

    `replay_now=False`: the caller re-evaluates a late event's member itself, later in the
    transaction (a group does it once per member, for all its late events: group_apply.py)."""
    program = programs.at(event.occurred_at)
    if erased and claim.stored is not None:
        event, claim = await _without_personal(conn, event, claim)
    origin = Origin.of(event)
    handler = _HANDLERS.get(type(event), _decided)
    result: Result = await handler(conn, program, account, origin, event)
    late = claim.stored is not None and account.is_late(origin)
    if claim.stored is not None:
        account.saw(origin)
    if (late or re_evaluates(event, result)) and result.status == "applied" and REEVALUATE and replay_now:
        replayed = await replay.reevaluate(
            conn, programs, account, origin, types=REPLAYED_TYPES, erased=erased, stored_event=stored_event
        )
        if replayed is not None:
            result = with_replay(result, replayed)
    return await close(conn, program, account, origin, claim, result)


async def _without_personal(conn: AsyncConnection, event: Any, claim: Claim) -> tuple[Any, Claim]:
    """An erased member's event as applied and stored: without the personal data it carries
    (a late signup's birthday and locale), so that nothing puts them back after the erasure."""
    assert claim.stored is not None
    scrubbed = without_personal(claim.stored)
    if scrubbed == claim.stored or not isinstance(event, BaseModel):
        return event, claim
    await store_events.store_scrubbed(conn, claim.source, claim.event_id, scrubbed)
    return parse_event(scrubbed), replace(claim, stored=scrubbed)


def with_replay(result: Result, replayed: replay.Replayed) -> Result:
    """A late event's result once its re-evaluation is booked: in its place the event may earn
    after all, and its note (why it did not) goes then."""
    earned = result.points + replayed.own_points
    note = result.note if earned == 0 else None
    detail = {**result.detail, "re_evaluated": replayed.as_json()}
    return replace(result, points=earned, note=note, detail=detail)


async def close(
    conn: AsyncConnection, program: Program, account: Account, origin: Origin, claim: Claim, result: Result
) -> Result:
    """Close the account after an event, with the event's outcome in its processed_events row
    (when there is more to say than `applied`), and start the account's next event."""
    record = None
    if not result.plain:
        record = {
            "status": result.status,
            "result": result.as_json(),
            "source": claim.source,
            "event_id": claim.event_id,
        }
    await accounts.close(conn, program, account, origin, record)
    result = replace(result, movements=tuple(account.movements), tier_moves=tuple(account.tier_moves))
    account.next_event()
    return result


# Off only in the test that shows what arrival order does without it.
REEVALUATE = True
# Event types replayed in occurrence order by a re-evaluation: every type a decider decides.
# Redemptions are spending: facts of their moment, never re-decided.
REPLAYED_TYPES = tuple(deciders.DECIDERS)


def stored_form(event: Any, dumped: dict | None = None) -> dict | None:
    """The event as its processed_events row keeps it for a replay (None: not replayed)."""
    if isinstance(event, RefereeBonus):
        return {
            "member_id": event.member_id,
            "referrer_member_id": event.referrer_member_id,
            "source": event.source,
            "event_id": event.event_id,
            "occurred_at": event.occurred_at.isoformat(),
        }
    if isinstance(event, BirthdayGift):
        return {"member_id": event.member_id, "year": event.year, "occurred_at": event.occurred_at.isoformat()}
    if isinstance(event, ReferrerCheck):
        return None
    if event.type in REPLAYED_TYPES:
        # The member it landed on, not the identity it was sent with: a replay parses it again.
        data = dict(dumped) if dumped is not None else event.model_dump(mode="json")
        data.pop("member", None)
        return data
    return None


def stored_event(event_type: str, data: dict) -> Any:
    """The event a processed_events row's stored form describes."""
    if event_type == "referral_referee":
        return RefereeBonus(
            data["member_id"],
            data["referrer_member_id"],
            data["source"],
            data["event_id"],
            datetime.fromisoformat(data["occurred_at"]),
        )
    if event_type == "birthday_gift":
        return BirthdayGift(data["member_id"], data["year"], datetime.fromisoformat(data["occurred_at"]))
    return parse_event(data)


def _digest(event: Any, dumped: dict | None = None) -> str:
    if isinstance(event, RefereeBonus):
        return f"referee:{event.referrer_member_id}"
    if isinstance(event, BirthdayGift):
        return event.event_id
    if isinstance(event, ReferrerCheck):
        return f"referrer_check:{event.referee_member_id}"
    return payload_hash(event, dumped)


async def _decided(
    conn, program: Program, account: Account, origin: Origin, event: Any, facts: deciders.Facts | None = None
) -> Result:
    """Load what the event's decider reads, decide, and write the decision."""
    state = store_decisions.member_state(account)
    order_id = getattr(getattr(event, "payload", None), "order_id", None)
    if order_id is not None:
        await store_decisions.load_order(conn, account, state, order_id, purchase=event.type == "purchase")
        if event.type == "refund" and order_id in state.orders:
            refusal = currencies.refund_refusal(state.orders[order_id].currency, order_id, event.payload.currency)
            if refusal is not None:
                raise InvalidEvent(refusal)
    if event.type in deciders.SPENDING_TYPES:
        await store_decisions.load_spendable(conn, account, state, origin.occurred_at)
    decision = deciders.decide(state, event, program, facts)
    lot_id = await store_decisions.write_decision(conn, program, account, state, decision, origin)
    # What the decider moved on besides the points the writes above booked.
    account.rule_state = state.rule_state
    account.profile = state.profile
    account.qualifying_amount = state.qualifying_amount
    if account.qualifying != state.qualifying:
        raise InvariantViolation(
            f"member {account.member_id}: qualifying {account.qualifying} booked, {state.qualifying} decided"
        )
    outcome = decision.outcome
    detail = {"lot_id": lot_id} if lot_id else {}
    return Result(outcome.status, account.member_id, outcome.points, note=outcome.note, detail=detail)


# A group's referrals (worker/services/group_apply.py), for all of them at once: each
# referrer's chain of referrers above it, the referrals recorded for the referees, and what
# decides whether a referee is new.
_GROUP_CHAINS = """
    WITH RECURSIVE chain(i, member_id, depth) AS (
        SELECT k.i, k.referrer, 0 FROM unnest($1::text[]) WITH ORDINALITY AS k(referrer, i)
        UNION ALL
        SELECT chain.i, r.referrer_member_id, chain.depth + 1
        FROM referrals r JOIN chain ON r.referee_member_id = chain.member_id
        WHERE chain.depth < $2
    )
    SELECT i, member_id FROM chain ORDER BY i, depth
"""
_GROUP_REFERRALS_OF = """
    SELECT referee_member_id, source, event_id FROM referrals WHERE referee_member_id = ANY($1::text[])
"""
# What decides whether a referral pays (worker/domain/referrals.py), for each (referee,
# referred_at): the referee's events that occurred before it, by event time, of the types that
# show enrolment. A referee imported from a previous program purchased there, whenever the
# referral occurred.
_GROUP_REFEREES_BEFORE = f"""
    SELECT k.i, min(p.occurred_at) AS first_event_at,
        coalesce(bool_or(p.event_type = 'purchase'), false)
        OR {accounts.imported("k.referee")} AS purchased_before
    FROM unnest($1::text[], $2::timestamptz[]) WITH ORDINALITY AS k(referee, referred_at, i)
    LEFT JOIN processed_events p
        ON p.member_id = k.referee AND p.occurred_at < k.referred_at AND p.event_type = ANY($3::text[])
    GROUP BY k.i, k.referee ORDER BY k.i
"""


async def stage_referrals(staged: Staged, programs: ProgramTimeline, events: list[Any]) -> None:
    """Decide the facts of a group's referrals and referee bonuses (`events`: the staged members'
    events in the order the group applies them) with a fixed number of statements, as
    `_referral` and `_referee_bonus` decide them one by one, and claim the referrals that win.
    A circle of referrals, or a referee another transaction claimed meanwhile, raises
    InvalidEvent: the group is then applied event by event (intake.apply_group), where each
    event is decided, and refused if it must be, on its own."""
    referred = [e for e in events if isinstance(e, ReferralEvent)]
    bonuses = [e for e in events if isinstance(e, RefereeBonus)]
    if not referred and not bonuses:
        return
    parent: dict[str, str] = {}  # member -> its referrer, as far as the group's chains go
    if referred:
        chains: dict[int, list[str]] = {}
        for row in await staged.fetch(_GROUP_CHAINS, [e.member_id for e in referred], REFERRAL_CHAIN_MAX):
            chains.setdefault(row["i"], []).append(row["member_id"])
        for chain in chains.values():
            parent.update(zip(chain, chain[1:], strict=False))
    referees = sorted({e.payload.referee_member_id for e in referred} | {b.member_id for b in bonuses})
    recorded = {
        r["referee_member_id"]: (r["source"], r["event_id"]) for r in await staged.fetch(_GROUP_REFERRALS_OF, referees)
    }
    claimed: list[ReferralEvent] = []
    for event in referred:
        referrer, referee = event.member_id, event.payload.referee_member_id
        depth = _chain_depth(parent, referrer, referee)
        if depth is not None:
            raise InvalidEvent(_circle_reason(referee, referrer, depth))
        if referee not in recorded:
            recorded[referee] = (event.source, event.event_id)
            parent[referee] = referrer
            claimed.append(event)
    if claimed:
        rows = sorted(
            (
                e.payload.referee_member_id,
                e.member_id,
                e.source,
                e.event_id,
                _pair_key(e.payload.referee_member_id, e.member_id),
            )
            for e in claimed
        )
        if await staged.claim_referrals(rows) != {row[0] for row in rows}:
            raise InvalidEvent("referrals: a referee was claimed by another transaction; applied one by one")
    asks: list[tuple[tuple[str, str, str], str, datetime]] = []
    for event in [*referred, *bonuses]:
        key = (event.type, event.source, event.event_id)
        referee = event.payload.referee_member_id if isinstance(event, ReferralEvent) else event.member_id
        if recorded.get(referee) == (event.source, event.event_id):
            asks.append((key, referee, event.occurred_at))
        else:
            staged.referral_facts[key] = deciders.Facts(referrals.ALREADY_REFERRED)
    if asks:
        new = await _referees_new(staged.fetch, programs, [(referee, at) for _, referee, at in asks])
        for (key, _, _), is_new in zip(asks, new, strict=True):
            staged.referral_facts[key] = deciders.Facts() if is_new else deciders.Facts(referrals.NOT_NEW)


async def _referees_new(
    fetch: Callable[..., Awaitable[list]], programs: ProgramTimeline, asks: list[tuple[str, datetime]]
) -> list[bool]:
    """`referee_is_new` for (referee, referred_at) pairs, with one statement."""
    rows = await fetch(
        _GROUP_REFEREES_BEFORE, [r for r, _ in asks], [at for _, at in asks], list(referrals.ENROLMENT_TYPES)
    )
    return [
        referrals.referee_is_new(
            at, row["first_event_at"], row["purchased_before"], programs.at(at).referral.referee_new_days
        )
        for (_, at), row in zip(asks, rows, strict=True)
    ]


async def checks_due(conn: AsyncConnection, programs: ProgramTimeline, checks: list[ReferrerCheck]) -> list[bool]:
    """`check_due` of each check, with two statements for all of them."""
    if not checks:
        return []
    fetch = (await conn.get_raw_connection()).driver_connection.fetch
    referees = sorted({c.referee_member_id for c in checks})
    recorded = {
        r["referee_member_id"]: (r["source"], r["event_id"]) for r in await fetch(_GROUP_REFERRALS_OF, referees)
    }
    theirs = [c for c in checks if recorded.get(c.referee_member_id) == (c.referral_source, c.event_id)]
    new = await _referees_new(fetch, programs, [(c.referee_member_id, c.occurred_at) for c in theirs]) if theirs else []
    not_new = {id(c) for c, is_new in zip(theirs, new, strict=True) if not is_new}
    return [id(c) in not_new for c in checks]


def _chain_depth(parent: dict[str, str], referrer: str, referee: str) -> int | None:
    """How many steps above `referrer` the referee is in the chain of referrals (None: not in it)."""
    node: str | None = referrer
    for depth in range(REFERRAL_CHAIN_MAX + 1):
        if node is None:
            return None
        if node == referee:
            return depth
        node = parent.get(node)
    return None


async def _referral(conn, program: Program, account: Account, origin: Origin, event: ReferralEvent) -> Result:
    if account.staged is not None:  # decided for the whole group (stage_referrals)
        facts = account.staged.referral_facts[(event.type, origin.source, origin.event_id)]
        return await _decided(conn, program, account, origin, event, facts)
    referee = event.payload.referee_member_id
    depth = (
        await conn.execute(
            _REFERRAL_CIRCLE, {"referrer": account.member_id, "referee": referee, "depth_max": REFERRAL_CHAIN_MAX}
        )
    ).scalar()
    if depth is not None:
        raise InvalidEvent(_circle_reason(referee, account.member_id, depth))
    won = await store_decisions.claim_referral(
        conn, referee, account.member_id, origin.source, origin.event_id, _pair_key(referee, account.member_id)
    )
    if not won and (await conn.execute(_REFERRAL_OF, {"referee": referee})).first() is None:
        # Not the referee's key: the pair's, taken by the referee referring this member.
        raise InvalidEvent(_circle_reason(referee, account.member_id, 1))
    # The referee is referred (no other referral of them pays), but only a new member earns.
    facts = await _referral_facts(conn, program, referee, origin.occurred_at, won=won)
    return await _decided(conn, program, account, origin, event, facts)


async def _referral_facts(conn, program: Program, referee: str, referred_at: datetime, *, won: bool) -> deciders.Facts:
    """Whether a referral pays, as its decider takes it: won by it, of a referee who is new."""
    if not won:
        return deciders.Facts(referrals.ALREADY_REFERRED)
    if not await referee_is_new(conn, program, referee, referred_at):
        return deciders.Facts(referrals.NOT_NEW)
    return deciders.Facts()


def _circle_reason(referee: str, referrer: str, depth: int) -> str:
    return (
        f"payload.referee_member_id: {referee} is above {referrer} in the chain of referrals "
        f"({depth} {'step' if depth == 1 else 'steps'} up); referrals cannot be mutual or circular"
    )


async def _referee_bonus(conn, program: Program, account: Account, origin: Origin, bonus: RefereeBonus) -> Result:
    if account.staged is not None:  # decided for the whole group (stage_referrals)
        facts = account.staged.referral_facts[(bonus.type, bonus.source, bonus.event_id)]
        return await _decided(conn, program, account, origin, bonus, facts)
    referral = (await conn.execute(_REFERRAL_OF, {"referee": account.member_id})).first()
    won = referral is not None and (referral.source, referral.event_id) == (bonus.source, bonus.event_id)
    facts = await _referral_facts(conn, program, account.member_id, origin.occurred_at, won=won)
    return await _decided(conn, program, account, origin, bonus, facts)


async def _referrer_check(conn, program: Program, account: Account, origin: Origin, check: ReferrerCheck) -> Result:
    """Nothing when the referral still pays (or is not this referrer's); otherwise the note that
    has the caller evaluate the referrer's history again (`re_evaluates`)."""
    if not await check_due(conn, program, check):
        return Result("applied", account.member_id)
    return Result("applied", account.member_id, note=referrals.NOT_NEW)


async def lock_shared(conn: AsyncConnection, events: list[Any]) -> None:
    """Take the locks a group's events share with other members' events, once its members are
    locked and before any of them is applied, each kind in a sorted order: the referral locks
    of their referrals' referees and referrers (worker/store/decisions.py `lock_referrals`),
    then the rows of the rewards their redemptions and cancellations touch. An event applied
    on its own takes these locks as it goes, in the same order."""
    referred = [m for e in events if isinstance(e, ReferralEvent) for m in (e.member_id, e.payload.referee_member_id)]
    await store_decisions.lock_referrals(conn, referred)
    await mall.lock_rewards(conn, events)


def re_evaluates(event: Any, result: Result) -> bool:
    """Whether an event has its member's history evaluated again though it is not late: a
    referrer check that found the referee not new."""
    return isinstance(event, ReferrerCheck) and result.status == "applied" and result.note == referrals.NOT_NEW


# Events that need more than their decider: facts across members (referrals), a check that
# decides nothing, and the mall's spending. Every other event type is decided by its decider
# (worker/domain/deciders.py DECIDERS) through `_decided`.
_HANDLERS = {
    ReferralEvent: _referral,
    RefereeBonus: _referee_bonus,
    ReferrerCheck: _referrer_check,
    mall.RedemptionEvent: mall.redeem,
    mall.RedemptionCancelEvent: mall.cancel,
}
