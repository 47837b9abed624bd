"""The points mall on real PostgreSQL: exact balances, stock and limits under concurrency,
lots spent earliest-expiring first and given back on cancellation, exactly once."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from tests.factories import purchase
from tests.integration.mall_support import assert_clean, available, cancel, process, redemption, rows
from worker.domain.mall import parse_catalog
from worker.domain.program import DEFAULT_PROGRAM as P
from worker.services import mall, redeem

BASE = {"name": "Mug", "cost_points": 500, "min_tier": "Regular"}  # overridden per reward


async def load(db, *rewards):
    catalog = parse_catalog({"reward": [{**BASE, **r} for r in rewards]}, P)
    return await mall.load_rewards(db, catalog)


async def test_balance_equal_to_cost_succeeds_one_point_short_fails(db):
    await load(db, {"reward_id": "mug"})
    await process(db, purchase("RICH", "400.00"))  # 400 + 100 first-purchase bonus = 500
    await process(db, purchase("POOR", "399.00"))  # 499

    ok = await process(db, redemption("RICH", "mug", event_id="r-1"))
    short = await process(db, redemption("POOR", "mug", event_id="r-2"))

    assert (ok.status, ok.points, ok.note) == ("applied", -500, None)
    assert (short.status, short.points, short.note) == ("applied", 0, "redemption.not_enough_points")
    assert (await available(db, "RICH"), await available(db, "POOR")) == (0, 499)
    assert await rows(db, "SELECT event_id, status, points, reason FROM redemptions ORDER BY event_id") == [
        ("r-1", "confirmed", 500, None),
        ("r-2", "rejected", 0, "not_enough_points"),
    ]
    assert await rows(db, "SELECT member_id, kind, points FROM ledger_entries WHERE kind = 'redeem'") == [
        ("RICH", "redeem", -500)
    ]
    assert await rows(
        db, "SELECT member_id, kind, params FROM notifications WHERE kind LIKE 'redemption%' ORDER BY member_id"
    ) == [
        ("POOR", "redemption_rejected", {"reward_name": "Mug", "reason": "not_enough_points"}),
        ("RICH", "redemption_confirmed", {"reward_name": "Mug", "quantity": 1, "points": 500, "available_points": 0}),
    ]
    await assert_clean(db)


async def test_quantity_times_cost_and_unknown_reward(db):
    await load(db, {"reward_id": "pen", "cost_points": 120})
    await process(db, purchase("M1", "400.00"))  # 500

    four = await process(db, redemption("M1", "pen", quantity=4))
    five = await process(db, redemption("M1", "pen", quantity=1))
    unknown = await process(db, redemption("M1", "no-such-reward"))

    assert (four.points, five.note, unknown.note) == (-480, "redemption.not_enough_points", "redemption.unknown_reward")
    assert await available(db, "M1") == 20
    await assert_clean(db)


async def test_tier_gating_and_early_access(db):
    await load(
        db,
        {"reward_id": "silver-gift", "min_tier": "Silver", "cost_points": 100},
        {
            "reward_id": "presale",
            "min_tier": "Gold",
            "cost_points": 100,
            "available_from": datetime(2026, 11, 20, 2, 0, tzinfo=UTC),  # 10:00 in Shanghai
            "early_access": {"tier": "Diamond", "hours": 24},
        },
    )
    await process(db, purchase("REG", "400.00"))  # 500: Regular
    await process(db, purchase("GOLD", "4900.00"))  # 5000: Gold
    await process(db, purchase("DIA", "14900.00"))  # 15000: Diamond

    outcomes = [
        await process(db, redemption("REG", "silver-gift")),
        await process(db, redemption("GOLD", "silver-gift")),
        await process(db, redemption("DIA", "presale", at="2026-11-19T10:00:00+08:00")),  # 24 h early: Diamond only
        await process(db, redemption("GOLD", "presale", at="2026-11-19T10:00:00+08:00")),
        await process(db, redemption("DIA", "presale", at="2026-11-19T09:59:59+08:00")),  # before the early window
        await process(db, redemption("GOLD", "presale", at="2026-11-20T10:00:00+08:00")),  # everyone's start
        await process(db, redemption("REG", "presale", at="2026-11-20T10:00:00+08:00")),
    ]

    assert [o.note or o.points for o in outcomes] == [
        "redemption.tier_too_low",
        -100,
        -100,
        "redemption.not_available",
        "redemption.not_available",
        -100,
        "redemption.tier_too_low",
    ]
    await assert_clean(db)


async def test_stock_of_one_with_twenty_concurrent_members_sells_exactly_one(db):
    await load(db, {"reward_id": "last-one", "stock": 1})
    buyers = [f"B{i:02d}" for i in range(20)]
    for member_id in buyers:
        await process(db, purchase(member_id, "400.00"))

    outcomes = await asyncio.gather(*(process(db, redemption(m, "last-one")) for m in buyers))

    assert sorted(o.note or "confirmed" for o in outcomes) == ["confirmed"] + ["redemption.out_of_stock"] * 19
    assert await rows(db, "SELECT stock, redeemed FROM rewards") == [(1, 1)]
    assert await rows(db, "SELECT count(*) FROM ledger_entries WHERE kind = 'redeem'") == [(1,)]
    assert await rows(db, "SELECT sum(available_points) FROM members") == [(20 * 500 - 500,)]
    assert (await mall.list_rewards(db))[0]["stock_left"] == 0
    await assert_clean(db)


async def test_one_member_racing_against_their_own_limit_gets_it_once(db):
    await load(db, {"reward_id": "once", "cost_points": 10, "limit": {"count": 1, "period": "ever"}})
    await process(db, purchase("M1", "400.00"))

    outcomes = await asyncio.gather(*(process(db, redemption("M1", "once")) for _ in range(8)))

    assert sorted(o.note or "confirmed" for o in outcomes) == ["confirmed"] + ["redemption.limit_reached"] * 7
    assert await available(db, "M1") == 490
    await assert_clean(db)


async def test_limits_per_program_local_day_month_and_ever(db):
    await load(
        db,
        {"reward_id": "daily", "cost_points": 10, "limit": {"count": 1, "period": "day"}},
        {"reward_id": "monthly", "cost_points": 10, "limit": {"count": 2, "period": "month"}},
        {"reward_id": "ever", "cost_points": 10, "limit": {"count": 1, "period": "ever"}},
    )
    await process(db, purchase("M1", "900.00"))

    async def note(reward_id, at, quantity=1, **kw):
        outcome = await process(db, redemption("M1", reward_id, quantity, at=at, **kw))
        return outcome.note or "ok"

    daily = [
        await note("daily", "2026-11-10T00:00:00+08:00"),
        await note("daily", "2026-11-10T23:59:59+08:00"),
        await note("daily", "2026-11-11T00:00:00+08:00"),  # still 10 November in UTC
    ]
    monthly = [
        await note("monthly", "2026-10-31T23:00:00+08:00"),
        await note("monthly", "2026-11-01T00:30:00+08:00", quantity=2),  # 31 October in UTC, November locally
        await note("monthly", "2026-11-20T00:00:00+08:00"),
        await note("monthly", "2026-10-31T12:00:00+08:00"),  # October holds one: the November ones do not count
    ]
    ever = [
        await note("ever", "2026-11-03T10:00:00+08:00", event_id="ever-1"),
        await note("ever", "2026-11-10T10:00:00+08:00"),
    ]
    await process(db, cancel("M1", "ever-1"))  # a cancelled redemption no longer counts
    ever.append(await note("ever", "2026-11-13T10:00:00+08:00"))

    assert daily == ["ok", "redemption.limit_reached", "ok"]
    assert monthly == ["ok", "ok", "redemption.limit_reached", "ok"]
    assert ever == ["ok", "redemption.limit_reached", "ok"]
    await assert_clean(db)


async def fifo_member(db, member_id):
    """Three lots, earned out of expiry order; returns their lot ids by expiry."""
    # The first purchase (by occurrence) has the 100-point bonus; the last one arrives late.
    await process(db, purchase(member_id, "100.00", occurred_at="2025-11-15T10:00:00+08:00"))  # 200, expires 2026-11-15
    await process(db, purchase(member_id, "300.00", occurred_at="2026-06-01T10:00:00+08:00"))  # 300, expires 2027-06-01
    await process(db, purchase(member_id, "200.00", occurred_at="2026-03-01T10:00:00+08:00"))  # 200, expires 2027-03-01
    lots = await rows(db, "SELECT lot_id, points FROM lots WHERE member_id = :m ORDER BY expires_at", m=member_id)
    assert [p for _, p in lots] == [200, 200, 300]
    return [lot_id for lot_id, _ in lots]


async def test_spending_takes_earliest_expiring_lots_first(db):
    await load(db, {"reward_id": "lamp", "cost_points": 350})
    soon, later, latest = await fifo_member(db, "M1")

    await process(db, redemption("M1", "lamp", event_id="lamp-1"))

    assert await rows(db, "SELECT lot_id, points FROM lot_takes ORDER BY lot_id") == [(soon, 200), (later, 150)]
    assert await rows(db, "SELECT lot_id, remaining FROM lots ORDER BY expires_at") == [
        (soon, 0),
        (later, 50),
        (latest, 300),
    ]
    assert await available(db, "M1") == 350
    await assert_clean(db)


async def test_cancellation_restores_the_same_lots_with_their_expiry_and_the_stock(db):
    await load(db, {"reward_id": "lamp", "name": "Lamp", "cost_points": 350, "stock": 3})
    soon, later, latest = await fifo_member(db, "M1")
    expiries = await rows(db, "SELECT lot_id, expires_at FROM lots ORDER BY lot_id")

    await process(db, redemption("M1", "lamp", event_id="lamp-1"))
    first = await process(db, cancel("M1", "lamp-1", at="2026-11-12T10:00:00+08:00", event_id="c-1"))
    again = await process(db, cancel("M1", "lamp-1", at="2026-11-12T11:00:00+08:00", event_id="c-2"))
    redelivered = await process(db, cancel("M1", "lamp-1", at="2026-11-12T10:00:00+08:00", event_id="c-1"))

    assert (first.points, again.note, redelivered.status) == (
        350,
        "redemption_cancel.redemption_cancelled",
        "duplicate",
    )
    assert await rows(db, "SELECT lot_id, remaining FROM lots ORDER BY expires_at") == [
        (soon, 200),
        (later, 200),
        (latest, 300),
    ]
    assert await rows(db, "SELECT lot_id, expires_at FROM lots ORDER BY lot_id") == expiries
    assert await rows(
        db, "SELECT kind, points FROM ledger_entries WHERE kind IN ('redeem', 'restore') ORDER BY entry_id"
    ) == [("redeem", -350), ("restore", 350)]
    assert await rows(db, "SELECT stock, redeemed FROM rewards") == [(3, 0)]
    assert await rows(db, "SELECT status, points_restored, cancel_event_id FROM redemptions") == [
        ("cancelled", 350, "c-1")
    ]
    assert await rows(db, "SELECT params FROM notifications WHERE kind = 'redemption_cancelled'") == [
        ({"reward_name": "Lamp", "points": 350},)
    ]
    assert await available(db, "M1") == 700
    await assert_clean(db)


async def test_cancellation_after_a_lot_expired_returns_nothing_to_that_lot(db):
    await load(db, {"reward_id": "lamp", "cost_points": 350})
    soon, later, latest = await fifo_member(db, "M1")

    await process(db, redemption("M1", "lamp", event_id="lamp-1", at="2026-11-10T10:00:00+08:00"))
    cancelled = await process(db, cancel("M1", "lamp-1", at="2026-11-20T10:00:00+08:00"))  # `soon` expired on the 15th

    assert cancelled.points == 150
    assert await rows(db, "SELECT lot_id, remaining FROM lots ORDER BY expires_at") == [
        (soon, 0),
        (later, 200),
        (latest, 300),
    ]
    assert await rows(db, "SELECT rules->0->'points_expired' FROM ledger_entries WHERE kind = 'restore'") == [(200,)]
    assert await available(db, "M1") == 500
    await assert_clean(db)


async def test_expired_lots_are_not_spent_even_before_the_expiry_job_runs(db):
    await load(db, {"reward_id": "lamp", "cost_points": 350})
    await fifo_member(db, "M1")

    outcome = await process(db, redemption("M1", "lamp", quantity=2, at="2026-11-20T10:00:00+08:00"))

    # 700 on the balance, but the 200 that expired on the 15th cannot be spent.
    assert outcome.note == "redemption.not_enough_points"
    await assert_clean(db)


async def test_duplicates_change_nothing(db):
    await load(db, {"reward_id": "mug", "stock": 5})
    await process(db, purchase("M1", "900.00"))
    raw = redemption("M1", "mug", event_id="dup-1")

    outcomes = [await process(db, dict(raw)) for _ in range(3)]
    reused = await process(db, redemption("M1", "mug", quantity=2, event_id="dup-1"))

    assert [o.status for o in outcomes] == ["applied", "duplicate", "duplicate"]
    assert reused.status == "rejected"
    assert await rows(db, "SELECT count(*) FROM redemptions") == [(1,)]
    assert await rows(db, "SELECT stock, redeemed FROM rewards") == [(5, 1)]
    assert await available(db, "M1") == 500
    assert await rows(db, "SELECT count(*) FROM notifications WHERE kind = 'redemption_confirmed'") == [(1,)]
    await assert_clean(db)


async def test_cancel_of_unknown_or_rejected_redemption_changes_nothing(db):
    await load(db, {"reward_id": "mug"})
    await process(db, purchase("M1", "100.00"))  # 200: too few
    await process(db, redemption("M1", "mug", event_id="poor-1"))

    unknown = await process(db, cancel("M1", "nope"))
    rejected = await process(db, cancel("M1", "poor-1"))
    other_member = await process(db, cancel("M2", "poor-1"))

    assert (unknown.note, rejected.note, other_member.note) == (
        "redemption_cancel.unknown_redemption",
        "redemption_cancel.redemption_rejected",
        "redemption_cancel.unknown_redemption",
    )
    assert await rows(db, "SELECT count(*) FROM ledger_entries WHERE kind = 'restore'") == [(0,)]
    await assert_clean(db)


async def test_redeem_now_runs_the_same_service_and_is_idempotent_on_its_event_id(db):
    await load(db, {"reward_id": "mug", "stock": 2})
    await process(db, purchase("M1", "900.00"))  # 1000
    now = datetime(2026, 11, 24, 4, 0, tzinfo=UTC)

    first = await redeem.redeem_now(db, P, "M1", "mug", 1, now=now, event_id="till-7")
    again = await redeem.redeem_now(db, P, "M1", "mug", 1, now=now, event_id="till-7")
    too_many = await redeem.redeem_now(db, P, "M1", "mug", 2, now=now)
    reused = await redeem.redeem_now(db, P, "M1", "mug", 2, now=now, event_id="till-7")

    assert {k: first[k] for k in ("status", "duplicate", "points", "available_points", "reason")} == {
        "status": "confirmed",
        "duplicate": False,
        "points": 500,
        "available_points": 500,
        "reason": None,
    }
    assert (again["status"], again["duplicate"], again["available_points"]) == ("confirmed", True, 500)
    assert (too_many["status"], too_many["reason"]) == ("rejected", "out_of_stock")
    assert (reused["status"], reused["reason"]) == (
        "conflict",
        "event_id: 'till-7' from source 'api' was already used with a different payload",
    )
    assert await rows(db, "SELECT stock, redeemed FROM rewards") == [(2, 1)]
    await assert_clean(db)


async def test_reloading_the_catalog_keeps_what_was_redeemed(db):
    counts = await load(db, {"reward_id": "mug", "stock": 2})
    await process(db, purchase("M1", "900.00"))
    await process(db, redemption("M1", "mug"))

    same = await load(db, {"reward_id": "mug", "stock": 2})
    restocked = await load(db, {"reward_id": "mug", "stock": 10})

    assert (counts["inserted"], same["unchanged"], restocked["updated"]) == (1, 1, 1)
    assert await rows(db, "SELECT stock, redeemed FROM rewards") == [(10, 1)]
