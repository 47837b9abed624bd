"""Coupon rewards on real PostgreSQL: the pool's order and uniqueness, an empty pool taking no
points, generated codes, a till's use exactly once under concurrency, cancellation, expiry."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, date, datetime

import pytest

from tests.conftest import NOW
from tests.factories import purchase, signup
from tests.integration.mall_support import assert_clean, available, cancel, process, redemption, rows
from worker.domain.coupons import CodeFile, parse_codes
from worker.domain.errors import CouponRefused
from worker.domain.mall import parse_catalog
from worker.domain.messages import load_catalog
from worker.domain.program import DEFAULT_PROGRAM as P
from worker.outbox import dispatch
from worker.outbox.channels import LogChannel
from worker.services import coupons, mall, member_reads, members, redeem

COFFEE = {"reward_id": "coffee", "name": "Coffee", "cost_points": 300, "min_tier": "Regular"}
POOL = {**COFFEE, "kind": "coupon", "valid_days": 30}
GENERATED = {
    **COFFEE,
    "reward_id": "shop",
    "name": "50 off",
    "kind": "coupon",
    "codes": "generated",
    "code_prefix": "SHOP-",
    "valid_days": 14,
}
AT = "2026-11-10T10:00:00+08:00"
# 10 November in Shanghai: a coupon valid 30 days from then may be used until 9 December.
LAST_DAY = date(2026, 12, 9)


async def load(db, *rewards):
    return await mall.load_rewards(db, parse_catalog({"reward": list(rewards)}, P))


async def load_codes(db, reward_id, *lines):
    return await coupons.load_codes(db, reward_id, parse_codes(lines, "codes.txt"))


async def fund(db, *member_ids, amount="900.00"):
    """Members with floor(amount) + 100 (first purchase) points."""
    for member_id in member_ids:
        await process(db, purchase(member_id, amount, occurred_at="2026-11-03T10:00:00+08:00"))


def at(iso: str) -> datetime:
    # In UTC, as the API's and CLI's clocks are: a retry of redeem_now carries the first
    # attempt's time as stored, in UTC.
    return datetime.fromisoformat(iso).astimezone(UTC)


# ---------------------------------------------------------------- loading a pool


async def test_loading_skips_repeats_in_the_file_and_codes_already_loaded(db):
    await load(db, POOL, {**POOL, "reward_id": "tea", "name": "Tea"})

    first = await load_codes(db, "coffee", "C-1", "C-2", "C-1", "C-3")
    again = await load_codes(db, "coffee", "C-3", "C-4")
    elsewhere = await load_codes(db, "tea", "C-4", "T-1")

    assert first == {"reward_id": "coffee", "loaded": 3, "skipped": 1, "codes_left": 3}
    assert again == {"reward_id": "coffee", "loaded": 1, "skipped": 1, "codes_left": 4}
    assert elsewhere == {"reward_id": "tea", "loaded": 1, "skipped": 1, "codes_left": 1}
    assert await rows(db, "SELECT reward_id, code, status FROM coupons ORDER BY seq") == [
        ("coffee", "C-1", "available"),
        ("coffee", "C-2", "available"),
        ("coffee", "C-3", "available"),
        ("coffee", "C-4", "available"),
        ("tea", "T-1", "available"),
    ]
    listed = {r["reward_id"]: r["coupon"] for r in await mall.list_rewards(db)}
    assert listed["coffee"] == {"codes": "pool", "code_prefix": None, "valid_days": 30, "codes_left": 4}


async def test_only_a_coupon_with_a_pool_takes_codes(db):
    await load(db, {**COFFEE, "reward_id": "mug", "name": "Mug"}, GENERATED)
    messages = []

    for reward_id in ("nope", "mug", "shop"):
        with pytest.raises(CouponRefused) as error:
            await coupons.load_codes(db, reward_id, CodeFile(("X-1",), 0))
        messages.append(str(error.value))

    assert messages == [
        "reward 'nope': no such reward (load the rewards file first)",
        "reward 'mug': not a coupon reward (kind = \"coupon\" in the rewards file)",
        "reward 'shop': its codes are generated at redemption; it has no pool to load",
    ]
    assert await rows(db, "SELECT count(*) FROM coupons") == [(0,)]


# ---------------------------------------------------------------- issuing


async def test_the_pool_issues_codes_first_loaded_first_one_per_unit(db):
    await load(db, POOL)
    await load_codes(db, "coffee", "C-1", "C-2", "C-3", "C-4", "C-5")
    await fund(db, "M1", "M2")

    one = await redeem.redeem_now(db, P, "M1", "coffee", now=at(AT), event_id="x-1")
    two = await redeem.redeem_now(db, P, "M2", "coffee", 2, now=at(AT), event_id="x-2")
    repeat = await redeem.redeem_now(db, P, "M1", "coffee", now=at(AT), event_id="x-1")

    assert (one["status"], one["points"], one["available_points"]) == ("confirmed", 300, 700)
    assert one["coupons"] == [{"code": "C-1", "expires_on": "2026-12-09"}]
    assert two["coupons"] == [{"code": "C-2", "expires_on": "2026-12-09"}, {"code": "C-3", "expires_on": "2026-12-09"}]
    assert (repeat["duplicate"], repeat["coupons"]) == (True, one["coupons"])
    assert await rows(db, "SELECT code, status, event_id, expires_on FROM coupons ORDER BY seq") == [
        ("C-1", "issued", "x-1", LAST_DAY),
        ("C-2", "issued", "x-2", LAST_DAY),
        ("C-3", "issued", "x-2", LAST_DAY),
        ("C-4", "available", None, None),
        ("C-5", "available", None, None),
    ]
    # The member's history shows the code with the entry that paid for it.
    history = await members.history(db, "M1", 10)
    assert [e["rules"] for e in history if e["kind"] == "redeem"] == [
        [
            {
                "rule": "redemption",
                "reward_id": "coffee",
                "quantity": 1,
                "cost_points": 300,
                "coupons": [{"code": "C-1", "expires_on": "2026-12-09"}],
            }
        ]
    ]
    view = await coupons.coupon_view(db, P, "C-2", now=at(AT))
    assert view == {
        "code": "C-2",
        "status": "issued",
        "reward_id": "coffee",
        "reward_name": "Coffee",
        "member_id": "M2",
        "redemption": {"source": "api", "event_id": "x-2"},
        "issued_at": "2026-11-10T02:00:00+00:00",
        "expires_on": "2026-12-09",
        "used_at": None,
        "used_by": None,
        "cancelled_at": None,
    }
    # A pool code nobody was given is no coupon, nor is a code never loaded.
    assert await coupons.coupon_view(db, P, "C-4", now=at(AT)) is None
    assert (await coupons.use_coupon(db, P, "C-4", now=at(AT), used_by="till")).coupon is None
    assert (await coupons.use_coupon(db, P, "NOPE", now=at(AT), used_by="till")).coupon is None
    assert await coupons.coupon_view(db, P, "NOPE", now=at(AT)) is None
    await assert_clean(db)


async def test_the_confirmation_of_a_coupon_carries_its_codes_and_last_day_in_every_language(db):
    await load(db, POOL, {**COFFEE, "reward_id": "mug", "name": "Mug"})
    await load_codes(db, "coffee", "C-1", "C-2", "C-3", "C-4")
    for member_id, locale in (("EN", "en"), ("HANS", "zh-Hans"), ("HANT", "zh-Hant")):
        await process(db, signup(member_id, locale=locale, occurred_at="2026-11-01T10:00:00+08:00"))
    await fund(db, "EN", "HANS", "HANT")

    await redeem.redeem_now(db, P, "EN", "coffee", 2, now=at(AT), event_id="x-1")
    await redeem.redeem_now(db, P, "HANS", "coffee", now=at(AT), event_id="x-2")
    await redeem.redeem_now(db, P, "HANT", "coffee", now=at(AT), event_id="x-3")
    await redeem.redeem_now(db, P, "EN", "mug", now=at(AT), event_id="x-4")
    report = await dispatch.dispatch_once(db, P, LogChannel(), clock=lambda: NOW, catalog=load_catalog())

    sent = await rows(
        db,
        "SELECT member_id, params, text FROM notifications WHERE kind = 'redemption_confirmed' ORDER BY notification_id",
    )
    assert report.dead == 0
    assert sent == [
        (
            "EN",
            {
                "reward_name": "Coffee",
                "quantity": 2,
                "points": 600,
                "available_points": 450,
                "coupon": True,
                "coupon_codes": "C-1, C-2",
                "coupon_expires_on": "2026-12-09",
            },
            "You redeemed 2 x Coffee for 600 points. Your coupon code: C-1, C-2, valid until 2026-12-09. "
            "Available balance: 450.",
        ),
        (
            "HANS",
            {
                "reward_name": "Coffee",
                "quantity": 1,
                "points": 300,
                "available_points": 750,
                "coupon": True,
                "coupon_codes": "C-3",
                "coupon_expires_on": "2026-12-09",
            },
            "您已使用 300 积分兑换 Coffee × 1。优惠券码：C-3，有效期至 2026-12-09。当前可用积分：750。",
        ),
        (
            "HANT",
            {
                "reward_name": "Coffee",
                "quantity": 1,
                "points": 300,
                "available_points": 750,
                "coupon": True,
                "coupon_codes": "C-4",
                "coupon_expires_on": "2026-12-09",
            },
            "您已使用 300 點積分兌換 Coffee × 1。優惠券碼：C-4，有效期至 2026-12-09。目前可用積分：750。",
        ),
        (
            "EN",
            {"reward_name": "Mug", "quantity": 1, "points": 300, "available_points": 150},
            "You redeemed 1 x Mug for 300 points. Available balance: 150.",
        ),
    ]


async def test_an_empty_pool_refuses_and_takes_no_points(db):
    await load(db, {**POOL, "stock": 5})
    await load_codes(db, "coffee", "ONLY-1")
    await fund(db, "M1", "M2")

    first = await process(db, redemption("M1", "coffee", event_id="r-1"))
    second = await process(db, redemption("M2", "coffee", event_id="r-2"))
    at_once = await redeem.redeem_now(db, P, "M2", "coffee", now=at(AT), event_id="x-3")

    assert (first.points, second.points, second.note) == (-300, 0, "redemption.no_codes_left")
    assert (at_once["status"], at_once["reason"], at_once["reason_text"], at_once["coupons"]) == (
        "rejected",
        "no_codes_left",
        "no codes are left for this reward",
        [],
    )
    assert (await available(db, "M1"), await available(db, "M2")) == (700, 1000)
    assert await rows(db, "SELECT member_id, points FROM ledger_entries WHERE kind = 'redeem'") == [("M1", -300)]
    assert await rows(db, "SELECT stock, redeemed FROM rewards") == [(5, 1)]
    assert await rows(db, "SELECT event_id, status, reason FROM redemptions ORDER BY event_id") == [
        ("r-1", "confirmed", None),
        ("r-2", "rejected", "no_codes_left"),
        ("x-3", "rejected", "no_codes_left"),
    ]
    assert await rows(db, "SELECT params FROM notifications WHERE kind = 'redemption_rejected' LIMIT 1") == [
        ({"reward_name": "Coffee", "reason": "no_codes_left"},)
    ]
    # The member app shows the reward locked.
    seen = await member_reads.rewards_for_member(db, P, await members.member_view(db, P, "M2"), now=NOW)
    assert [(r["reward_id"], r["kind"], r["locked"]) for r in seen] == [
        ("coffee", "coupon", {"reason": "no_codes_left", "text": "No codes left."})
    ]
    await assert_clean(db)


async def test_members_racing_for_a_small_pool_get_distinct_codes_and_the_rest_are_refused(db):
    await load(db, POOL)
    await load_codes(db, "coffee", "C-1", "C-2", "C-3")
    buyers = [f"B{i:02d}" for i in range(10)]
    await fund(db, *buyers)

    outcomes = await asyncio.gather(*(process(db, redemption(m, "coffee")) for m in buyers))

    assert sorted(o.note or "confirmed" for o in outcomes) == ["confirmed"] * 3 + ["redemption.no_codes_left"] * 7
    issued = await rows(db, "SELECT c.code, r.member_id FROM coupons c JOIN redemptions r USING (source, event_id)")
    assert sorted(code for code, _ in issued) == ["C-1", "C-2", "C-3"]
    assert len({member for _, member in issued}) == 3
    await assert_clean(db)


async def test_generated_codes_are_unique_and_unguessable_in_form(db):
    await load(db, {**GENERATED, "cost_points": 10})
    await fund(db, "M1", "M2")

    outcomes = [
        await redeem.redeem_now(db, P, member, "shop", 20, now=at(AT), event_id=f"g-{member}-{i}")
        for member in ("M1", "M2")
        for i in range(2)
    ]

    codes = [c["code"] for o in outcomes for c in o["coupons"]]
    assert len(codes) == 80 and len(set(codes)) == 80
    assert all(re.fullmatch(r"SHOP-[A-Z2-7]{16}", code) for code in codes)
    assert {c["expires_on"] for o in outcomes for c in o["coupons"]} == {"2026-11-23"}
    assert await rows(db, "SELECT count(*), count(DISTINCT code) FROM coupons WHERE status = 'issued'") == [(80, 80)]
    await assert_clean(db)


# ---------------------------------------------------------------- using at the till


async def issue(db, member_id="M1", event_id="x-1", reward=POOL, codes=("C-1",)):
    await load(db, reward)
    if codes:
        await load_codes(db, reward["reward_id"], *codes)
    await fund(db, member_id)
    outcome = await redeem.redeem_now(db, P, member_id, reward["reward_id"], now=at(AT), event_id=event_id)
    return outcome["coupons"][0]["code"]


async def test_two_tills_using_one_code_at_once_succeed_exactly_once(db):
    code = await issue(db)
    now = at("2026-11-20T15:00:00+08:00")

    outcomes = await asyncio.gather(*(coupons.use_coupon(db, P, code, now=now, used_by=f"till-{i}") for i in range(10)))

    assert sorted(str(o.refusal) for o in outcomes) == ["None"] + ["coupon_used"] * 9
    winner = next(o for o in outcomes if o.refusal is None)
    assert (winner.coupon["status"], winner.coupon["used_at"]) == ("used", "2026-11-20T07:00:00+00:00")
    assert all(o.coupon == winner.coupon for o in outcomes)
    assert await rows(db, "SELECT status, used_by FROM coupons") == [("used", winner.coupon["used_by"])]


async def test_a_coupon_is_used_until_the_end_of_its_last_day_then_expired(db):
    await load(db, {**POOL, "valid_days": 3})
    await load_codes(db, "coffee", "C-1", "C-2")
    await fund(db, "M1")
    for event_id in ("x-1", "x-2"):
        await redeem.redeem_now(db, P, "M1", "coffee", now=at(AT), event_id=event_id)
    last_moment = at("2026-11-12T23:59:59+08:00")
    next_day = at("2026-11-13T00:00:00+08:00")

    in_time = await coupons.use_coupon(db, P, "C-1", now=last_moment, used_by="till")
    too_late = await coupons.use_coupon(db, P, "C-2", now=next_day, used_by="till")

    assert (in_time.refusal, in_time.coupon["expires_on"]) == (None, "2026-11-12")
    assert (too_late.refusal, too_late.coupon["status"]) == ("coupon_expired", "expired")
    assert (await coupons.coupon_view(db, P, "C-2", now=last_moment))["status"] == "issued"
    assert (await coupons.coupon_view(db, P, "C-1", now=next_day))["status"] == "used"
    assert await rows(db, "SELECT code, status FROM coupons ORDER BY code") == [("C-1", "used"), ("C-2", "issued")]


# ---------------------------------------------------------------- cancelling


async def test_cancelling_an_unused_coupon_gives_the_points_back_and_cancels_the_code(db):
    await load(db, {**POOL, "stock": 10})
    await load_codes(db, "coffee", "C-1", "C-2")
    await fund(db, "M1")
    await process(db, redemption("M1", "coffee", event_id="r-1"))
    assert await available(db, "M1") == 700

    cancelled = await process(db, cancel("M1", "r-1", event_id="c-1"))
    use = await coupons.use_coupon(db, P, "C-1", now=at("2026-11-12T12:00:00+08:00"), used_by="till")

    assert (cancelled.points, cancelled.detail["coupons_cancelled"]) == (300, ["C-1"])
    assert await available(db, "M1") == 1000
    assert (use.refusal, use.coupon["status"], use.coupon["cancelled_at"]) == (
        "coupon_cancelled",
        "cancelled",
        "2026-11-12T02:00:00+00:00",
    )
    assert await rows(db, "SELECT code, status FROM coupons ORDER BY seq") == [
        ("C-1", "cancelled"),
        ("C-2", "available"),
    ]
    assert await rows(db, "SELECT stock, redeemed FROM rewards") == [(10, 0)]
    assert await rows(db, "SELECT rules FROM ledger_entries WHERE kind = 'restore'") == [
        (
            [
                {
                    "rule": "redemption_cancel",
                    "redemption_source": "app",
                    "redemption_event_id": "r-1",
                    "points_spent": 300,
                    "points_restored": 300,
                    "points_expired": 0,
                    "coupons_cancelled": ["C-1"],
                }
            ],
        )
    ]
    await assert_clean(db)


async def test_cancelling_the_redemption_of_a_used_coupon_is_refused(db):
    await load(db, POOL)
    await load_codes(db, "coffee", "C-1")
    await fund(db, "M1")
    await process(db, redemption("M1", "coffee", event_id="r-1"))
    used = await coupons.use_coupon(db, P, "C-1", now=at("2026-11-11T09:30:00+08:00"), used_by="till-1")

    refused = await process(db, cancel("M1", "r-1", event_id="c-1"))

    assert used.refusal is None
    assert (refused.status, refused.points, refused.note) == ("applied", 0, "redemption_cancel.coupon_used")
    assert refused.detail["reason"] == (
        "coupon C-1 was used at 2026-11-11T01:30:00+00:00; the redemption of a used coupon cannot be cancelled"
    )
    assert await available(db, "M1") == 700
    assert await rows(db, "SELECT status FROM redemptions") == [("confirmed",)]
    assert await rows(db, "SELECT status, used_by FROM coupons") == [("used", "till-1")]
    assert await rows(db, "SELECT count(*) FROM ledger_entries WHERE kind = 'restore'") == [(0,)]
    assert await rows(db, "SELECT count(*) FROM notifications WHERE kind = 'redemption_cancelled'") == [(0,)]
    await assert_clean(db)


async def test_a_use_racing_a_cancellation_ends_one_way_or_the_other(db):
    await load(db, POOL)
    await load_codes(db, "coffee", "C-1")
    await fund(db, "M1")
    await process(db, redemption("M1", "coffee", event_id="r-1"))

    cancelled, used = await asyncio.gather(
        process(db, cancel("M1", "r-1", event_id="c-1")),
        coupons.use_coupon(db, P, "C-1", now=at("2026-11-12T10:00:00+08:00"), used_by="till"),
    )

    status = (await rows(db, "SELECT status FROM coupons"))[0][0]
    if used.refusal is None:
        assert (status, cancelled.note, await available(db, "M1")) == ("used", "redemption_cancel.coupon_used", 700)
    else:
        assert (status, used.refusal, cancelled.points, await available(db, "M1")) == (
            "cancelled",
            "coupon_cancelled",
            300,
            1000,
        )
    await assert_clean(db)
