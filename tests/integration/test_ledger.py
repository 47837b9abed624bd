"""The ledger service on real PostgreSQL: exactly once, balances exact, bad input kept."""

from __future__ import annotations

import asyncio

from sqlalchemy import text

from tests.conftest import NOW
from tests.factories import purchase, referral, refund, signup
from tests.ledger_views import earned_by_event
from worker.domain.program import DEFAULT_PROGRAM
from worker.services import intake, members
from worker.services.audit import audit_all


async def process(db, raw):
    return await intake.process(db, DEFAULT_PROGRAM, raw, now=NOW, strict=True)


async def balance(db, member_id):
    return await members.member_view(db, DEFAULT_PROGRAM, member_id)


async def test_purchase_earns_floor_of_amount_plus_first_purchase_bonus(db):
    outcome = await process(db, purchase("M1", "350.75", occurred_at="2026-11-02T10:00:00+08:00"))

    assert (outcome.status, outcome.points) == ("applied", 450)
    view = await balance(db, "M1")
    assert (view["available_points"], view["qualifying_points"], view["tier"]) == (450, 450, "Regular")
    assert (view["next_tier"], view["points_to_next_tier"]) == ("Silver", 550)


async def test_replay_changes_nothing_and_reused_id_with_other_payload_is_rejected(db):
    event = purchase("M1", "100.00", event_id="pos-1")
    first = await process(db, event)
    again = await process(db, dict(event))
    reused = await process(db, purchase("M1", "999.00", event_id="pos-1"))

    assert (first.status, again.status, reused.status) == ("applied", "duplicate", "rejected")
    assert reused.reason == "event_id: 'pos-1' from source 'pos' was already used with a different payload"
    assert (await balance(db, "M1"))["available_points"] == 200
    async with db.connect() as conn:
        entries = (await conn.execute(text("SELECT count(*) FROM ledger_entries"))).scalar_one()
    assert entries == 1


async def test_invalid_event_is_stored_with_reason_naming_the_field(db):
    outcome = await process(db, purchase("M1", "12.345"))

    assert outcome.status == "rejected"
    assert outcome.reason == "payload.amount: must have at most 2 decimal places"
    async with db.connect() as conn:
        row = (await conn.execute(text("SELECT reason, member_id, raw FROM rejected_events"))).one()
    assert row.reason == outcome.reason and row.member_id == "M1" and '"12.345"' in row.raw


async def test_refund_before_purchase_waits_then_applies_with_it(db):
    early = await process(db, refund("M1", "o-9", "100.00", occurred_at="2026-11-03T10:00:00+08:00"))
    await process(db, purchase("M1", "400.00", order_id="o-9"))

    assert early.status == "deferred"
    async with db.connect() as conn:
        statuses = (
            await conn.execute(text("SELECT event_type, status FROM processed_events ORDER BY event_type"))
        ).all()
    assert [tuple(r) for r in statuses] == [("purchase", "applied"), ("refund", "applied")]
    view = await balance(db, "M1")
    # 400 + 100 first-purchase bonus, minus floor(400 x 100/400) = 100.
    assert (view["available_points"], view["qualifying_points"]) == (400, 400)


async def test_referral_gives_both_members_their_points_once(db):
    await process(db, referral("A", "B", event_id="ref-1"))
    await process(db, referral("A", "B", event_id="ref-1"))
    second = await process(db, referral("C", "B"))
    await process(db, signup("B"))

    assert second.note == "referral.referee_already_referred"
    assert [(await balance(db, m))["available_points"] for m in ("A", "B", "C")] == [200, 150, 0]


async def test_eight_concurrent_workers_on_one_member_lose_nothing(db):
    events = [purchase("HOT", "1.00", event_id=f"hot-{i}") for i in range(200)]

    outcomes = await asyncio.gather(*(process(db, e) for e in events))

    assert {o.status for o in outcomes} == {"applied"}
    view = await balance(db, "HOT")
    # 1 point per purchase, the first-purchase bonus once; stays Regular so no multiplier changes.
    assert (view["available_points"], view["tier"]) == (200 * 1 + 100, "Regular")
    # Whatever order they arrived in, the first purchase by occurrence (occurred_at, source,
    # event_id: all share the time, so "hot-0") has the bonus; corrections moved it there.
    earned = await earned_by_event(db, "HOT")
    assert earned == {"hot-0": 101, **{f"hot-{i}": 1 for i in range(1, 200)}}
    assert (await audit_all(db)).clean
