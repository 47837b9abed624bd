"""A referral pays (referrer +200, referee +100) only for a new member: enrolled, by event time,
at most `[referral] referee_new_days` (30) days before it, with no purchase before it. Through
the real ledger, in every arrival order; a late purchase of the referee takes both halves back."""

from __future__ import annotations

import asyncio
from itertools import permutations

from sqlalchemy import text

from tests.conftest import NOW, truncate_all
from tests.factories import purchase, referral, refund, review, signup
from tests.ledger_views import earned_by_event
from worker.domain.engine import parse_program_data
from worker.domain.program import DEFAULT_PROGRAM
from worker.services import intake, members
from worker.services.audit import audit_all
from worker.services.group_commit import GroupCommit

REFERRED_AT = "2026-11-20T10:00:00+08:00"


async def process(db, raw, program=DEFAULT_PROGRAM):
    return await intake.process(db, program, raw, now=NOW, strict=True)


async def available(db, *member_ids: str) -> list[int]:
    return [(await members.member_view(db, DEFAULT_PROGRAM, m))["available_points"] for m in member_ids]


async def test_a_referral_of_a_new_member_pays_both(db):
    await process(db, signup("B", occurred_at="2026-11-10T10:00:00+08:00"))
    paid = await process(db, referral("A", "B", occurred_at=REFERRED_AT))

    assert (paid.status, paid.points, paid.note) == ("applied", 200, None)
    assert await available(db, "A", "B") == [200, 150]  # B: 50 for signing up, 100 for being referred


async def test_a_member_enrolled_30_days_before_is_still_new(db):
    await process(db, signup("B", occurred_at="2026-10-21T10:00:00+08:00"))
    paid = await process(db, referral("A", "B", occurred_at=REFERRED_AT))

    assert paid.points == 200
    assert await available(db, "A", "B") == [200, 150]


async def test_a_member_enrolled_31_days_before_is_not_new(db):
    await process(db, signup("B", occurred_at="2026-10-20T10:00:00+08:00"))
    refused = await process(db, referral("A", "B", occurred_at=REFERRED_AT))

    assert (refused.status, refused.points, refused.note) == ("applied", 0, "referral.referee_not_new")
    assert await available(db, "A", "B") == [0, 50]
    async with db.connect() as conn:
        bonus = (
            await conn.execute(
                text("SELECT status, result FROM processed_events WHERE event_type = 'referral_referee'")
            )
        ).one()
    assert (bonus.status, bonus.result["note"]) == ("applied", "referral.referee_not_new")


async def test_a_member_with_a_purchase_before_the_referral_is_not_new(db):
    await process(db, purchase("B", "100.00", occurred_at="2026-11-15T10:00:00+08:00"))
    refused = await process(db, referral("A", "B", occurred_at=REFERRED_AT))

    assert (refused.status, refused.points, refused.note) == ("applied", 0, "referral.referee_not_new")
    assert await available(db, "A", "B") == [0, 200]  # B: 100 for the purchase and its first-purchase 100


async def test_a_purchase_after_the_referral_keeps_the_member_new(db):
    await process(db, referral("A", "B", occurred_at=REFERRED_AT))
    await process(db, purchase("B", "100.00", occurred_at="2026-11-21T10:00:00+08:00"))

    assert await available(db, "A", "B") == [200, 300]


async def test_the_program_sets_how_new_in_either_shape(db):
    old_shape = parse_program_data({"referral": {"referee_new_days": 10}})
    await process(db, signup("B", occurred_at="2026-11-09T10:00:00+08:00"), old_shape)
    refused = await process(db, referral("A", "B", occurred_at=REFERRED_AT), old_shape)

    assert (refused.points, refused.note) == (0, "referral.referee_not_new")
    assert old_shape.referral.referee_new_days == 10


async def test_a_late_purchase_of_the_referee_takes_both_halves_back(db):
    await process(db, signup("B", occurred_at="2026-11-10T10:00:00+08:00", event_id="s-b"))
    paid = await process(db, referral("A", "B", occurred_at=REFERRED_AT, event_id="ref-1"))
    assert await available(db, "A", "B") == [200, 150]

    late = await process(db, purchase("B", "100.00", occurred_at="2026-11-15T10:00:00+08:00", event_id="p-1"))

    assert (paid.points, late.status, late.points) == (200, "applied", 200)
    assert await available(db, "A", "B") == [0, 250]  # B: 50 + 200 for the purchase, no referral bonus
    # What each event earned, its corrections included (an event that nets 0 is not listed).
    assert await earned_by_event(db, "A") == {}
    assert await earned_by_event(db, "B") == {"s-b": 50, "p-1": 200}
    async with db.connect() as conn:
        check = (
            await conn.execute(
                text(
                    "SELECT source, event_id, member_id, result FROM processed_events "
                    "WHERE event_type = 'referrer_check'"
                )
            )
        ).one()
    # Checked once, when B turned out not to be new: after the bonus B was new, nothing was written.
    assert (check.source, check.event_id, check.member_id) == ("pos:referrer_check", "ref-1", "A")
    assert (check.result["note"], check.result["re_evaluated"]["points"]) == (
        "referral.referee_not_new",
        -200,
    )
    assert (await audit_all(db)).clean


async def test_sending_everything_again_changes_nothing(db):
    events = [
        signup("B", occurred_at="2026-11-10T10:00:00+08:00"),
        referral("A", "B", occurred_at=REFERRED_AT),
        purchase("B", "100.00", occurred_at="2026-11-15T10:00:00+08:00"),
    ]
    for event in events:
        await process(db, event)
    before = await _rows(db)

    again = [await process(db, dict(event)) for event in events]

    assert [o.status for o in again] == ["duplicate"] * 3
    assert await _rows(db) == before
    assert await available(db, "A", "B") == [0, 250]


async def _rows(db) -> dict:
    async with db.connect() as conn:
        return {
            table: (await conn.execute(text(f"SELECT count(*) FROM {table}"))).scalar_one()
            for table in ("processed_events", "ledger_entries", "lots", "notifications")
        }


async def test_a_late_purchase_in_a_batch_takes_both_halves_back(db):
    await process(db, signup("B", occurred_at="2026-11-10T10:00:00+08:00"))
    await process(db, referral("A", "B", occurred_at=REFERRED_AT, event_id="ref-1"))

    outcomes = await intake.process_batch(
        db,
        DEFAULT_PROGRAM,
        [purchase("B", "100.00", occurred_at="2026-11-15T10:00:00+08:00"), signup("C")],
        now=NOW,
        strict=True,
    )

    assert [o.status for o in outcomes] == ["applied", "applied"]
    assert await available(db, "A", "B") == [0, 250]


NOT_NEW = [
    signup("B", occurred_at="2026-11-10T10:00:00+08:00", event_id="s-b"),
    purchase("B", "100.00", order_id="o-1", occurred_at="2026-11-15T10:00:00+08:00", event_id="p-b1"),
    referral("A", "B", occurred_at=REFERRED_AT, event_id="ref-1"),
    purchase("A", "50.00", order_id="o-2", occurred_at="2026-11-21T10:00:00+08:00", event_id="p-a"),
]
NEW = [
    signup("B", occurred_at="2026-11-10T10:00:00+08:00", event_id="s-b"),
    referral("A", "B", occurred_at=REFERRED_AT, event_id="ref-1"),
    purchase("B", "100.00", order_id="o-1", occurred_at="2026-11-21T10:00:00+08:00", event_id="p-b1"),
    purchase("A", "50.00", order_id="o-2", occurred_at="2026-11-19T10:00:00+08:00", event_id="p-a"),
]


async def _outcome_of(db, events: list[dict], order: tuple[int, ...]) -> tuple:
    await truncate_all(db)
    for index in order:
        await process(db, dict(events[index]))
    assert (await audit_all(db)).clean
    return tuple(await available(db, "A", "B")), await earned_by_event(db, "A"), await earned_by_event(db, "B")


async def test_a_referral_of_a_member_not_new_pays_nothing_in_every_arrival_order(db):
    results = {order: await _outcome_of(db, NOT_NEW, order) for order in permutations(range(len(NOT_NEW)))}

    # A: 50 + 100 for a first purchase; B: 50 + 200; the referral nothing on either side.
    expected = ((150, 250), {"p-a": 150}, {"s-b": 50, "p-b1": 200})
    assert {order: result for order, result in results.items() if result != expected} == {}


async def test_a_referral_of_a_new_member_pays_in_every_arrival_order(db):
    results = {order: await _outcome_of(db, NEW, order) for order in permutations(range(len(NEW)))}

    # The purchase after the referral is B's first: 100 + 100. A's purchase before the referral
    # is A's first too.
    expected = ((350, 350), {"ref-1": 200, "p-a": 150}, {"s-b": 50, "ref-1": 100, "p-b1": 200})
    assert {order: result for order, result in results.items() if result != expected} == {}


async def test_a_refund_or_review_alone_does_not_enrol_in_either_order(db):
    old = "2026-10-01T10:00:00+08:00"  # 50 days before the referral
    events = [
        refund("B", "o-9", "10.00", occurred_at=old, event_id="r-b"),
        review("B", "o-9", "SKU-1", occurred_at=old, event_id="rv-b"),
        referral("A", "B", occurred_at=REFERRED_AT, event_id="ref-1"),
    ]
    for order in ((0, 1, 2), (2, 0, 1)):
        await truncate_all(db)
        for index in order:
            await process(db, dict(events[index]))
        # Both wait for a purchase that never came: B is new when referred.
        assert await available(db, "A", "B") == [200, 100], order


async def test_through_group_commit_a_purchase_sent_with_the_referral_unmakes_it(db):
    group = GroupCommit(db, group_max=16, wait_ms=5, concurrency=2, strict=True)
    events = [
        signup("B", occurred_at="2026-11-10T10:00:00+08:00"),
        referral("A", "B", occurred_at=REFERRED_AT, event_id="ref-1"),
        purchase("B", "100.00", occurred_at="2026-11-15T10:00:00+08:00"),
        signup("C", occurred_at="2026-11-10T10:00:00+08:00"),
        referral("A", "C", occurred_at=REFERRED_AT, event_id="ref-2"),
    ]
    try:
        outcomes = await asyncio.gather(
            *(intake.process(db, DEFAULT_PROGRAM, e, now=NOW, strict=True, apply=group.apply) for e in events)
        )
    finally:
        await group.stop()

    assert {o.status for o in outcomes} == {"applied"}
    # B was not new, C was: in one group the referral sees B's purchase claimed with it; in
    # groups of their own, the referrer check after B's bonus takes A's 200 back.
    assert await available(db, "A", "B", "C") == [200, 250, 150]
    assert await earned_by_event(db, "A") == {"ref-2": 200}
    assert (await audit_all(db)).clean
