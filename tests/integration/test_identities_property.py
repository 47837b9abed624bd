"""A merge is the union of two members' events in occurrence order: random histories of one
person, split at random between a card (at the till) and a phone (in the app) and linked at
the end, leave one member whose balances, tier, rule state and points per event equal those of
a member who had every event by one identity from the start. Whether the split events arrive
in occurrence order or shuffled, the member kept is the same (the one whose first event of
their own doing occurred earliest, a tie to the lower id), and every event's recorded outcome
(status and points, as the API reads them) is the same, and the one member's."""

from __future__ import annotations

import asyncio
import random
from datetime import datetime

from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from sqlalchemy import text

from db.engine import create_engine
from tests.conftest import NOW, truncate_all
from tests.integration.test_event_time import PROGRAM, build, occurrence, op
from worker.domain.identities import identity_member_id, survivor_of
from worker.domain.reevaluation import points_by_event
from worker.domain.referrals import ENROLMENT_TYPES
from worker.services import intake, member_reads
from worker.services.audit import audit_all

CARD = {"kind": "card", "value": "8800123"}
PHONE = {"kind": "phone", "value": "+8613800000000"}


def named(identity: dict, event: dict) -> dict:
    out = {k: v for k, v in event.items() if k != "member_id"}
    return {**out, "member": identity}


async def one_member(db) -> dict:
    """The surviving member's state and what each of its events earned, without its id."""
    async with db.connect() as conn:
        rows = (
            (
                await conn.execute(
                    text(
                        "SELECT member_id, tier, available_points, qualifying_points, lifetime_points, rule_state, birthday, "
                        "first_purchase_at FROM members WHERE merged_into IS NULL AND member_id NOT IN ('ER1', 'ER2')"
                    )
                )
            )
            .mappings()
            .all()
        )
        assert len(rows) == 1, rows
        survivor = dict(rows[0])
        entries = (
            (
                await conn.execute(
                    text(
                        "SELECT source, event_id, kind, qualifying_points, rules FROM ledger_entries WHERE member_id = :m "
                        "ORDER BY entry_id"
                    ),
                    {"m": survivor.pop("member_id")},
                )
            )
            .mappings()
            .all()
        )
    return {**survivor, "points": points_by_event(entries)}


async def survivor_id(db) -> str:
    async with db.connect() as conn:
        return (
            await conn.execute(
                text("SELECT member_id FROM members WHERE merged_into IS NULL AND member_id NOT IN ('ER1', 'ER2')")
            )
        ).scalar_one()


async def outcomes(db) -> dict[tuple[str, str], tuple[str, int]]:
    """Every claimed event's recorded status and points, as `GET /v1/events/...` reads them."""
    async with db.connect() as conn:
        keys = (await conn.execute(text("SELECT source, event_id FROM processed_events"))).all()
        read = {(s, e): await member_reads.recorded_outcome(conn, s, e) for s, e in keys}
    return {key: (o["status"], o["points"]) for key, o in read.items()}


def expected_survivor(split: list[dict]) -> str:
    """The rule, from the events: of the two identities' members, the one whose first event of
    their own doing occurred earliest (a member without one last), a tie to the lower id."""
    first: dict[str, datetime | None] = {}
    for identity in (CARD, PHONE):
        own = [e for e in split if e["member"] == identity]
        member_id = identity_member_id(identity["kind"], identity["value"])
        if not own and identity is PHONE:
            return identity_member_id("card", CARD["value"])  # the link attaches the phone: no merge
        times = [datetime.fromisoformat(e["occurred_at"]) for e in own if e["type"] in ENROLMENT_TYPES]
        first[member_id] = min(times, default=None)
    (a, at), (b, bt) = first.items()
    return survivor_of((at, a), (bt, b))


LINK = {
    "event_id": "link-1",
    "type": "identity_link",
    "source": "app",
    "member_id": identity_member_id("card", CARD["value"]),
    "occurred_at": "2026-11-24T10:00:00+08:00",
    "payload": PHONE,
}


async def linked_after(db, arrivals: list[dict]) -> tuple[dict, str, dict]:
    """The split events processed in the order given, then the link: the member left, its id
    and every event's recorded outcome."""
    await truncate_all(db)
    for event in arrivals:
        assert (await intake.process(db, PROGRAM, event, now=NOW, strict=True)).status != "rejected"
    assert (await intake.process(db, PROGRAM, LINK, now=NOW, strict=True)).status == "applied"
    merged = await one_member(db)
    report = await audit_all(db)
    assert report.clean, [str(d) for d in report.differences]
    return merged, await survivor_id(db), await outcomes(db)


async def scenario(url: str, ops: list[tuple], seed: int) -> list:
    """The one member (by card, in order), then the split linked after arriving in occurrence
    order, then after arriving shuffled: each as (member, its id, recorded outcomes); and the
    member the rule says the split keeps."""
    db = create_engine(url, pool_size=2, max_overflow=0)
    try:
        events = sorted(build(ops), key=occurrence)
        rng = random.Random(seed)
        await truncate_all(db)
        for event in events:  # everything by card, in order
            assert (await intake.process(db, PROGRAM, named(CARD, event), now=NOW, strict=True)).status != "rejected"
        whole = (await one_member(db), await survivor_id(db), await outcomes(db))

        split = [named(rng.choice((CARD, PHONE)), event) for event in events]
        in_order = await linked_after(db, split)
        rng.shuffle(split)
        shuffled = await linked_after(db, split)
        return [whole, in_order, shuffled, expected_survivor(split)]
    finally:
        await db.dispose()


# One person's history: referrals are between two members, and refunds and reviews alone wait
# for a purchase that never comes (no member at all), so each history has an event of its own.
histories = st.lists(op.filter(lambda o: o[0] != "referral"), min_size=2, max_size=16).filter(
    lambda ops: any(o[0] not in ("refund", "review") for o in ops)
)


@hsettings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(histories, st.integers(min_value=0, max_value=2**16))
def test_card_and_phone_histories_linked_later_equal_one_member_with_all_of_them(database_url, ops, seed):
    (one, _, one_outcomes), (merged, kept, recorded), shuffled, survivor = asyncio.run(
        scenario(database_url, ops, seed)
    )
    merged_shuffled, kept_shuffled, recorded_shuffled = shuffled
    assert merged == one
    assert merged_shuffled == one
    # The member kept follows the events' times, not their arrival
    assert kept == kept_shuffled == survivor
    # Every event reads what the one member's ledger recorded for it; the link alike in both orders
    assert recorded == recorded_shuffled
    assert {key: outcome for key, outcome in recorded.items() if key != ("app", "link-1")} == one_outcomes
