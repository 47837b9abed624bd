"""Earning integrity and refusals found in the ledger, on PostgreSQL: reviews earn only for
the member's own orders, referrals cannot be mutual or circular, internal keys cannot be taken
by producers, and an event the database refuses for its data is rejected, never retried, and
never blocks the other events of its batch."""

from __future__ import annotations

import asyncio

from sqlalchemy import text

from tests import factories as f
from tests.conftest import NOW
from worker.domain.program import DEFAULT_PROGRAM
from worker.services import intake
from worker.services.audit import audit_all
from worker.services.ledger import BirthdayGift, apply_event


async def process(db, event):
    return await intake.process(db, DEFAULT_PROGRAM, event, now=NOW, strict=True)


async def rows(db, sql: str, **params) -> list:
    async with db.connect() as conn:
        return [tuple(r) for r in (await conn.execute(text(sql), params)).all()]


async def points(db, member_id: str) -> int:
    found = await rows(db, "SELECT available_points FROM members WHERE member_id = :m", m=member_id)
    return found[0][0] if found else 0


async def test_a_review_of_an_order_not_bought_waits_and_earns_when_the_purchase_arrives(db):
    review = f.review("R1", "o-late", "SKU-1", has_media=True, occurred_at="2026-11-02T12:00:00+08:00")
    first = await process(db, review)
    assert (first.status, first.points, first.note) == ("deferred", 0, "review.waiting_for_purchase")
    assert await points(db, "R1") == 0

    bought = await process(db, f.purchase("R1", "10.00", order_id="o-late", occurred_at="2026-11-02T10:00:00+08:00"))

    assert (bought.status, bought.points) == ("applied", 110)  # 10 + the first-purchase bonus
    assert await points(db, "R1") == 110 + 20 + 30  # the review and its media bonus
    assert await rows(db, "SELECT status FROM processed_events WHERE event_id = :e", e=review["event_id"]) == [
        ("applied",)
    ]
    assert (await process(db, review)).status == "duplicate"
    assert (await audit_all(db)).clean


async def test_a_review_of_another_members_order_earns_nothing(db):
    await process(db, f.purchase("OWNER", "10.00", order_id="o-owned"))
    outcome = await process(db, f.review("STRANGER", "o-owned", "SKU-1"))
    assert (outcome.status, outcome.note) == ("deferred", "review.waiting_for_purchase")
    assert await points(db, "STRANGER") == 0
    assert await points(db, "OWNER") == 110


async def test_waiting_reviews_respect_the_daily_limit_in_occurrence_order(db):
    day = "2026-11-03T{:02d}:00:00+08:00"
    for n in range(4):
        await process(db, f.review("CAP", "o-cap", f"SKU-{n}", occurred_at=day.format(12 + n)))
    await process(db, f.purchase("CAP", "1.00", order_id="o-cap", occurred_at=day.format(9)))
    # 1 + 100 first purchase, three reviews of 20 within the limit of 3 a day; the fourth earns nothing.
    assert await points(db, "CAP") == 101 + 3 * 20
    assert await rows(db, "SELECT sku FROM reviews WHERE member_id = 'CAP' ORDER BY sku") == [
        ("SKU-0",),
        ("SKU-1",),
        ("SKU-2",),
    ]


async def test_a_review_of_an_earlier_day_does_not_reset_todays_daily_limit(db):
    today, yesterday = "2026-11-04T{:02d}:00:00+08:00", "2026-11-03T{:02d}:00:00+08:00"
    await process(db, f.purchase("DAYS", "1.00", order_id="o-today", occurred_at=today.format(9)))
    for n in range(3):
        await process(db, f.review("DAYS", "o-today", f"SKU-{n}", occurred_at=today.format(10 + n)))
    waiting = await process(db, f.review("DAYS", "o-yesterday", "SKU-Y", occurred_at=yesterday.format(12)))
    assert waiting.status == "deferred"
    await process(db, f.purchase("DAYS", "1.00", order_id="o-yesterday", occurred_at=yesterday.format(9)))
    fourth_today = await process(db, f.review("DAYS", "o-today", "SKU-3", occurred_at=today.format(15)))

    assert (fourth_today.points, fourth_today.note) == (0, "review.daily_limit_reached")
    # 1 + 100 first purchase, 1; three reviews today and yesterday's one: 4 x 20.
    assert await points(db, "DAYS") == 1 + 100 + 1 + 4 * 20


async def test_mutual_and_circular_referrals_are_rejected_naming_the_field(db):
    assert (await process(db, f.referral("A", "B"))).status == "applied"
    mutual = await process(db, f.referral("B", "A"))
    assert (mutual.status, mutual.reason) == (
        "rejected",
        (
            "payload.referee_member_id: A is above B in the chain of referrals (1 step up); "
            "referrals cannot be mutual or circular"
        ),
    )
    assert (await process(db, f.referral("B", "C"))).status == "applied"
    circle = await process(db, f.referral("C", "A"))
    assert circle.reason == (
        "payload.referee_member_id: A is above C in the chain of referrals (2 steps up); "
        "referrals cannot be mutual or circular"
    )
    # A 200 as referrer; B 100 as referee + 200 as referrer; C 100 as referee. Nothing for the refused ones.
    assert [await points(db, m) for m in "ABC"] == [200, 300, 100]
    assert await rows(db, "SELECT reason FROM rejected_events ORDER BY rejected_id") == [
        (mutual.reason,),
        (circle.reason,),
    ]
    assert (await audit_all(db)).clean


async def test_concurrent_mutual_referrals_pay_one_way_only(db):
    outcomes = await asyncio.gather(process(db, f.referral("X", "Y")), process(db, f.referral("Y", "X")))
    assert sorted(o.status for o in outcomes) == ["applied", "rejected"]
    assert sorted([await points(db, "X"), await points(db, "Y")]) == [100, 200]


async def test_a_producer_event_id_ending_in_referee_does_not_cancel_a_referee_bonus(db):
    squatter = f.referral("Q1", "Q9", event_id="ref-1#referee", source="app")
    assert (await process(db, squatter)).status == "applied"
    real = f.referral("Q2", "Q3", event_id="ref-1", source="app")
    assert (await process(db, real)).status == "applied"
    assert await points(db, "Q3") == 100  # the referee's bonus, under its own key
    assert await rows(
        db, "SELECT source, event_id FROM processed_events WHERE event_type = 'referral_referee' ORDER BY event_id"
    ) == [("app:referee", "ref-1"), ("app:referee", "ref-1#referee")]


async def test_a_producer_with_source_scheduler_cannot_take_a_birthday_gifts_key(db):
    squatter = f.check_in("G1", "2026-11-02T10:00:00+08:00", source="scheduler", event_id="birthday:2026:G1")
    assert (await process(db, squatter)).status == "applied"
    gift = BirthdayGift("G1", 2026, NOW)
    async with db.begin() as conn:
        result = await apply_event(conn, DEFAULT_PROGRAM, gift)
    assert (result.status, result.points) == ("applied", 200)


async def test_an_event_the_database_refuses_is_rejected_once_and_not_retried(db):
    # A real constraint the database enforces, standing in for any data the contract let through.
    async with db.begin() as conn:
        await conn.execute(text("ALTER TABLE members ADD CONSTRAINT no_poison CHECK (member_id <> 'POISON')"))
    try:
        poison = f.purchase("POISON", "10.00", event_id="poison-1")
        outcome = await process(db, poison)
        again = await process(db, poison)  # a redelivery: rejected again, counted on the same row
    finally:
        async with db.begin() as conn:
            await conn.execute(text("ALTER TABLE members DROP CONSTRAINT no_poison"))
    reason = "event: a value was refused by the database (SQLSTATE 23514, CheckViolationError)"
    assert (outcome.status, outcome.reason, again.status) == ("rejected", reason, "rejected")
    assert await rows(db, "SELECT event_id, reason, attempts FROM rejected_events") == [("poison-1", reason, 2)]
    assert await rows(db, "SELECT count(*) FROM processed_events") == [(0,)]


async def test_one_refused_event_in_a_batch_never_blocks_the_others(db):
    async with db.begin() as conn:
        await conn.execute(text("ALTER TABLE members ADD CONSTRAINT no_poison CHECK (member_id <> 'M5-POISON')"))
    try:
        events = [f.purchase(f"M{n}", "10.00", event_id=f"b-{n}") for n in range(9)]
        events.insert(5, f.purchase("M5-POISON", "10.00", event_id="b-poison"))
        # Mutual referrals in one batch: members apply in id order, so M0's goes first and M1's is refused.
        events.append(f.referral("M1", "M0", event_id="b-ref-by-1"))
        events.append(f.referral("M0", "M1", event_id="b-ref-by-0"))
        outcomes = await intake.process_batch(db, DEFAULT_PROGRAM, events, now=NOW, strict=True)
    finally:
        async with db.begin() as conn:
            await conn.execute(text("ALTER TABLE members DROP CONSTRAINT no_poison"))
    assert sorted(o.status for o in outcomes) == ["applied"] * 10 + ["rejected"] * 2
    assert [await points(db, f"M{n}") for n in range(9)] == [110 + 200, 110 + 100] + [110] * 7
    assert sorted(r[0] for r in await rows(db, "SELECT event_id FROM rejected_events")) == ["b-poison", "b-ref-by-1"]
    assert (await audit_all(db)).clean
