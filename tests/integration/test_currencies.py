"""Purchases in an accepted currency earn on their amount converted to the base; an event in a
currency the program does not accept ends rejected with the reason recorded, by the version in
force at its occurred_at. Through the real intake and ledger."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import text

from tests.conftest import NOW
from tests.factories import purchase, refund
from worker.domain.engine import parse_program_text
from worker.domain.program import DEFAULT_PROGRAM
from worker.domain.program_timeline import ProgramTimeline, Start
from worker.services import intake, members
from worker.services.audit import audit_all

PROGRAM = parse_program_text(
    '[currencies]\nbase = "CNY"\naccepted = { USD = { rate = "7.2" }, HKD = { rate = "0.92" } }\n', "program.toml"
)
DAY1 = "2026-11-02T10:00:00+08:00"
DAY3 = "2026-11-04T10:00:00+08:00"


async def process(db, raw, programs=PROGRAM):
    return await intake.process(db, programs, raw, now=NOW, strict=True)


async def rejected(db) -> list[tuple]:
    async with db.connect() as conn:
        return [
            tuple(r)
            for r in await conn.execute(text("SELECT event_id, reason FROM rejected_events ORDER BY rejected_id"))
        ]


async def test_a_usd_purchase_earns_on_its_amount_in_the_base_and_a_refund_in_usd_reverses_in_proportion(db):
    bought = await process(db, purchase("M1", "100.00", order_id="o-1", currency="USD", occurred_at=DAY1))
    refunded = await process(db, refund("M1", "o-1", "25.00", currency="USD", occurred_at=DAY3))
    plain = await process(db, refund("M1", "o-1", "25.00", occurred_at=DAY3))

    # USD 100.00 = CNY 720.00: 720 points, +100 on the first purchase; a quarter of the order
    # takes back a quarter of its 720 each time, with or without the currency named.
    assert (bought.status, bought.points) == ("applied", 820)
    assert (refunded.status, refunded.points) == ("applied", -180)
    assert (plain.status, plain.points) == ("applied", -180)
    view = await members.member_view(db, PROGRAM, "M1")
    assert (view["available_points"], view["qualifying_points"]) == (460, 460)
    async with db.connect() as conn:
        rules = (
            await conn.execute(text("SELECT rules FROM ledger_entries WHERE kind = 'earn' AND member_id = 'M1'"))
        ).scalar_one()
        order = (await conn.execute(text("SELECT amount, currency, points_earned FROM orders"))).one()
    assert {k: rules[0][k] for k in ("rule", "points", "amount", "currency", "currency_amount", "currency_rate")} == {
        "rule": "purchase",
        "points": 720,
        "amount": "720.00",
        "currency": "USD",
        "currency_amount": "100.00",
        "currency_rate": "7.2",
    }
    assert (str(order.amount), order.currency, order.points_earned) == ("100.00", "USD", 720)
    assert (await audit_all(db)).clean


async def test_a_purchase_in_the_base_earns_as_before(db):
    bought = await process(db, purchase("M1", "100.00", currency="CNY", occurred_at=DAY1))

    assert (bought.status, bought.points) == ("applied", 200)


async def test_an_unaccepted_currency_is_rejected_with_its_reason_recorded_and_nothing_written(db):
    eur = purchase("M1", "100.00", currency="EUR", event_id="p-eur", occurred_at=DAY1)
    eur_refund = refund("M1", "o-9", "10.00", currency="EUR", event_id="r-eur", occurred_at=DAY1)

    outcomes = [await process(db, eur), await process(db, eur_refund)]

    reason = "payload.currency: EUR is not accepted by this program (accepted: CNY, HKD, USD)"
    assert [(o.status, o.reason) for o in outcomes] == [("rejected", reason), ("rejected", reason)]
    assert await rejected(db) == [("p-eur", reason), ("r-eur", reason)]
    async with db.connect() as conn:
        assert (await conn.execute(text("SELECT count(*) FROM ledger_entries"))).scalar_one() == 0


async def test_a_refund_in_another_currency_than_its_order_is_rejected(db):
    await process(db, purchase("M1", "100.00", order_id="o-1", currency="USD", occurred_at=DAY1))

    outcome = await process(db, refund("M1", "o-1", "50.00", currency="HKD", event_id="r-hkd", occurred_at=DAY3))

    reason = "payload.currency: HKD is not the currency of order o-1 (USD)"
    assert (outcome.status, outcome.reason) == ("rejected", reason)
    assert await rejected(db) == [("r-hkd", reason)]
    view = await members.member_view(db, PROGRAM, "M1")
    assert view["available_points"] == 820


async def test_whether_a_currency_is_accepted_follows_the_version_in_force_at_occurred_at(db):
    # Until 3 November only CNY (the built-in program); from then on USD too.
    start = datetime(2026, 11, 3, 0, 0, tzinfo=UTC)
    first = datetime(2026, 10, 1, 0, 0, tzinfo=UTC)
    versions = [Start(first, first, "v-cny", DEFAULT_PROGRAM), Start(start, start, "v-usd", PROGRAM)]
    timeline = ProgramTimeline.build(versions, DEFAULT_PROGRAM, NOW)

    before = await process(db, purchase("M1", "10.00", currency="USD", event_id="p-1", occurred_at=DAY1), timeline)
    after = await process(db, purchase("M1", "10.00", currency="USD", event_id="p-2", occurred_at=DAY3), timeline)

    assert (before.status, before.reason) == (
        "rejected",
        "payload.currency: USD is not accepted by this program (accepted: CNY)",
    )
    assert (after.status, after.points) == ("applied", 172)  # CNY 72.00, +100 first purchase
