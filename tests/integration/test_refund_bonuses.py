"""A full refund takes back everything its purchase earned, bonuses included; a partial refund
only the amount-based points in proportion; `[refunds] reverse_bonuses = false` keeps the
bonuses. Through the real ledger, in every arrival order."""

from __future__ import annotations

from decimal import Decimal
from itertools import permutations

from sqlalchemy import text

from tests.conftest import NOW, truncate_all
from tests.factories import purchase, refund
from tests.ledger_views import earned_by_event
from worker.domain.engine import parse_program_text
from worker.domain.engine.language import DEFAULT_PROGRAM_PATH
from worker.services import intake, members
from worker.services.audit import audit_all

# The built-in program's rules (1 point per 1.00, +100 on the first purchase) and a
# minimum-order bonus of +50 on orders of 200.00 or more.
MINIMUM_ORDER = """
[[rules]]
id = "minimum_order"
on = "purchase"
when = { min_amount = "200.00" }
effect = { kind = "fixed", points = 50 }
"""
PROGRAM = parse_program_text(DEFAULT_PROGRAM_PATH.read_text(encoding="utf-8") + MINIMUM_ORDER, "program.toml")
KEEP_BONUSES = parse_program_text(
    DEFAULT_PROGRAM_PATH.read_text(encoding="utf-8") + "[refunds]\nreverse_bonuses = false\n" + MINIMUM_ORDER,
    "program.toml",
)

DAY1 = "2026-11-02T10:00:00+08:00"
DAY3 = "2026-11-04T10:00:00+08:00"
DAY5 = "2026-11-06T10:00:00+08:00"


async def process(db, raw, program=PROGRAM):
    return await intake.process(db, program, raw, now=NOW, strict=True)


async def points(db, member_id, program=PROGRAM) -> tuple[int, int]:
    view = await members.member_view(db, program, member_id)
    return view["available_points"], view["qualifying_points"]


async def order_row(db, order_id: str) -> tuple:
    async with db.connect() as conn:
        row = (
            await conn.execute(
                text(
                    "SELECT points_earned, points_reversed, bonus_points, bonus_reversed, refunded_amount "
                    "FROM orders WHERE order_id = :o"
                ),
                {"o": order_id},
            )
        ).one()
    return tuple(row)


async def test_a_full_refund_of_a_first_purchase_takes_back_its_bonuses_too(db):
    bought = await process(db, purchase("M1", "300.00", order_id="o-1", occurred_at=DAY1))
    refunded = await process(db, refund("M1", "o-1", "300.00", occurred_at=DAY3))

    # 300 for the amount, +100 first purchase, +50 minimum order; all of it back.
    assert (bought.status, bought.points) == ("applied", 450)
    assert (refunded.status, refunded.points) == ("applied", -450)
    assert await points(db, "M1") == (0, 0)
    assert await order_row(db, "o-1") == (300, 300, 150, 150, 300)
    async with db.connect() as conn:
        rules = (await conn.execute(text("SELECT rules FROM ledger_entries WHERE kind = 'reverse'"))).scalar_one()
    assert (rules[0]["rule"], rules[0]["bonus_points"], rules[1]["points_due"]) == ("refund", 150, 450)
    assert (await audit_all(db)).clean


async def test_partial_refunds_take_back_amount_points_only_until_the_order_is_refunded_whole(db):
    await process(db, purchase("M1", "300.00", order_id="o-1", occurred_at=DAY1))
    first = await process(db, refund("M1", "o-1", "100.00", occurred_at=DAY3))
    rest = await process(db, refund("M1", "o-1", "200.00", occurred_at=DAY5))

    assert first.points == -100  # floor(300 x 100 / 300); the bonuses stay
    assert rest.points == -350  # the other 200, and the 150 of bonuses with the refund that completes it
    assert await points(db, "M1") == (0, 0)
    assert await order_row(db, "o-1") == (300, 300, 150, 150, 300)


async def test_a_partial_refund_alone_keeps_the_bonuses(db):
    await process(db, purchase("M1", "300.00", order_id="o-1", occurred_at=DAY1))
    partial = await process(db, refund("M1", "o-1", "299.99", occurred_at=DAY3))

    assert partial.points == -299  # floor(300 x 299.99 / 300)
    assert await points(db, "M1") == (151, 151)
    assert await order_row(db, "o-1") == (300, 299, 150, 0, Decimal("299.99"))


async def test_with_reverse_bonuses_false_a_full_refund_takes_back_the_amount_points_only(db):
    await process(db, purchase("M1", "300.00", order_id="o-1", occurred_at=DAY1), KEEP_BONUSES)
    refunded = await process(db, refund("M1", "o-1", "300.00", occurred_at=DAY3), KEEP_BONUSES)

    assert refunded.points == -300
    assert await points(db, "M1", KEEP_BONUSES) == (150, 150)
    assert await order_row(db, "o-1") == (300, 300, 150, 0, 300)


async def test_a_refund_waiting_for_its_purchase_takes_back_the_bonuses_when_it_arrives(db):
    early = await process(db, refund("M1", "o-1", "300.00", occurred_at=DAY3))
    bought = await process(db, purchase("M1", "300.00", order_id="o-1", occurred_at=DAY1))

    assert early.status == "deferred"
    assert bought.points == 450
    assert await points(db, "M1") == (0, 0)
    assert await order_row(db, "o-1") == (300, 300, 150, 150, 300)


async def test_the_next_purchase_after_a_refunded_first_one_is_not_a_first_purchase(db):
    await process(db, purchase("M1", "300.00", order_id="o-1", occurred_at=DAY1))
    await process(db, refund("M1", "o-1", "300.00", occurred_at=DAY3))
    again = await process(db, purchase("M1", "250.00", order_id="o-2", occurred_at=DAY5))

    assert again.points == 300  # 250 and the minimum-order 50; no second first-purchase bonus
    assert await points(db, "M1") == (300, 300)


async def test_refunds_and_bonuses_end_the_same_in_every_arrival_order(db):
    events = [
        purchase("M1", "300.00", order_id="o-1", occurred_at=DAY1, event_id="p-1"),
        refund("M1", "o-1", "300.00", refund_id="r-1", occurred_at=DAY3, event_id="r-1"),
        purchase("M1", "250.00", order_id="o-2", occurred_at=DAY5, event_id="p-2"),
        refund("M1", "o-2", "50.00", refund_id="r-2", occurred_at=DAY5.replace("10:00", "11:00"), event_id="r-2"),
    ]
    seen = {}
    for order in permutations(range(len(events))):
        await truncate_all(db)
        for index in order:
            await process(db, dict(events[index]))
        async with db.connect() as conn:
            orders = (
                await conn.execute(
                    text(
                        "SELECT order_id, points_earned, points_reversed, bonus_points, bonus_reversed FROM orders "
                        "ORDER BY order_id"
                    )
                )
            ).all()
        seen[order] = (await points(db, "M1"), await earned_by_event(db, "M1"), [tuple(o) for o in orders])
        assert (await audit_all(db)).clean

    # In order: o-1 earns 450 and gives all of it back; o-2 earns 250 + 50 (not the first
    # purchase); its partial refund of 50.00 takes back 50 of the 250 amount points.
    expected = (
        (250, 250),
        {"p-1": 450, "r-1": -450, "p-2": 300, "r-2": -50},
        [("o-1", 300, 300, 150, 150), ("o-2", 250, 50, 50, 0)],
    )
    assert {order: result for order, result in seen.items() if result != expected} == {}


async def test_batches_with_the_earlier_purchase_late_end_as_in_order(db):
    later = [
        purchase("M1", "250.00", order_id="o-2", occurred_at=DAY5, event_id="p-2"),
        refund("M1", "o-1", "300.00", refund_id="r-1", occurred_at=DAY3, event_id="r-1"),
    ]
    earlier = [purchase("M1", "300.00", order_id="o-1", occurred_at=DAY1, event_id="p-1")]

    for batch in (later, earlier):
        outcomes = await intake.process_batch(db, PROGRAM, batch, now=NOW, strict=True)
        assert {o.status for o in outcomes} <= {"applied", "deferred"}

    # p-2 was the first purchase until p-1 arrived: the re-evaluation moves the +100 to p-1,
    # whose waiting full refund then takes back all 450 it earned.
    assert await earned_by_event(db, "M1") == {"p-1": 450, "r-1": -450, "p-2": 300}
    assert await points(db, "M1") == (300, 300)
    assert await order_row(db, "o-1") == (300, 300, 150, 150, 300)
