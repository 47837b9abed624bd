"""Mall eligibility and the catalog file, on literals."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from worker.domain.errors import ProgramError
from worker.domain.lots import Lot
from worker.domain.mall import (
    Restore,
    RewardTerms,
    Spend,
    Taken,
    UsedCoupon,
    cancel_refusal,
    check_redemption,
    load_catalog,
    parse_catalog,
    period_bounds,
    restore,
    spend,
)
from worker.domain.program import DEFAULT_PROGRAM as P

SHANGHAI = ZoneInfo("Asia/Shanghai")
AT = datetime(2026, 12, 1, 2, 0, tzinfo=UTC)  # 10:00 in Shanghai
MUG = RewardTerms("mug", "Mug", cost_points=500, min_tier="Silver")


def check(reward=MUG, tier="Silver", points=10_000, quantity=1, at=AT, held=0):
    return check_redemption(
        P, reward, tier=tier, spendable_points=points, quantity=quantity, at=at, already_in_period=held
    )


def test_exact_balance_succeeds_and_one_point_short_fails():
    assert check(points=500) is None
    assert check(points=499) == "not_enough_points"


def test_quantity_multiplies_the_cost():
    assert check(points=1500, quantity=3) is None
    assert check(points=1499, quantity=3) == "not_enough_points"


def test_tier_gating():
    assert check(tier="Regular") == "tier_too_low"
    assert [check(tier=t) for t in ("Silver", "Gold", "Diamond")] == [None, None, None]
    assert check(tier="Platinum") == "tier_too_low"  # a tier the program no longer has


def test_unknown_reward():
    assert check(reward=None) == "unknown_reward"


def test_availability_window_is_half_open():
    sale = RewardTerms(
        "s", "Sale", 100, "Regular", available_from=AT, available_until=datetime(2026, 12, 2, tzinfo=UTC)
    )
    assert check(reward=sale, at=datetime(2026, 12, 1, 1, 59, 59, tzinfo=UTC)) == "not_available"
    assert check(reward=sale, at=AT) is None
    assert check(reward=sale, at=datetime(2026, 12, 1, 23, 59, tzinfo=UTC)) is None
    assert check(reward=sale, at=datetime(2026, 12, 2, tzinfo=UTC)) == "not_available"


def test_early_access_opens_hours_before_for_that_tier_and_above_only():
    presale = RewardTerms(
        "p", "Pre-sale", 100, "Gold", available_from=AT, early_access_tier="Diamond", early_access_hours=24
    )
    day_before = datetime(2026, 11, 30, 2, 0, tzinfo=UTC)
    just_too_early = datetime(2026, 11, 30, 1, 59, tzinfo=UTC)
    assert check(reward=presale, tier="Diamond", at=day_before) is None
    assert check(reward=presale, tier="Diamond", at=just_too_early) == "not_available"
    assert check(reward=presale, tier="Gold", at=day_before) == "not_available"
    assert check(reward=presale, tier="Gold", at=AT) is None
    # Window first, then tier: a Silver member is told it is not available yet, then that the tier is too low.
    assert check(reward=presale, tier="Silver", at=day_before) == "not_available"
    assert check(reward=presale, tier="Silver", at=AT) == "tier_too_low"


def test_limit_counts_units_already_held_plus_requested():
    limited = RewardTerms("l", "Limited", 100, "Regular", limit_count=2, limit_period="month")
    assert check(reward=limited, held=1, quantity=1) is None
    assert check(reward=limited, held=2, quantity=1) == "limit_reached"
    assert check(reward=limited, held=0, quantity=3) == "limit_reached"


def test_stock_left():
    assert check(reward=RewardTerms("s", "S", 100, "Regular", stock_left=2), quantity=2) is None
    assert check(reward=RewardTerms("s", "S", 100, "Regular", stock_left=1), quantity=2) == "out_of_stock"
    assert check(reward=RewardTerms("s", "S", 100, "Regular", stock_left=0)) == "out_of_stock"


def test_period_bounds_are_program_local():
    late = datetime(2026, 11, 30, 17, 30, tzinfo=UTC)  # 1 December 01:30 in Shanghai
    assert period_bounds(SHANGHAI, "day", late) == (
        datetime(2026, 12, 1, tzinfo=SHANGHAI),
        datetime(2026, 12, 2, tzinfo=SHANGHAI),
    )
    assert period_bounds(SHANGHAI, "month", late) == (
        datetime(2026, 12, 1, tzinfo=SHANGHAI),
        datetime(2027, 1, 1, tzinfo=SHANGHAI),
    )
    assert period_bounds(SHANGHAI, "month", datetime(2026, 1, 31, 12, tzinfo=UTC)) == (
        datetime(2026, 1, 1, tzinfo=SHANGHAI),
        datetime(2026, 2, 1, tzinfo=SHANGHAI),
    )
    assert period_bounds(SHANGHAI, "ever", late) == (None, None)


def test_example_catalog_loads():
    catalog = load_catalog(Path(__file__).parents[2] / "docs" / "rewards.example.toml", P)
    assert [r.reward_id for r in catalog.reward] == [
        "tote-bag",
        "cobrand-tumbler",
        "flash-headphones-2026-12",
        "coffee-voucher",
        "shop-50-off",
    ]
    flash = catalog.reward[2]
    assert (flash.early_access.tier, flash.early_access.hours, flash.limit.period) == ("Diamond", 24, "day")
    coffee, shop = catalog.reward[3:]
    assert (coffee.kind, coffee.code_source, coffee.code_prefix, coffee.valid_days) == ("coupon", "pool", None, 30)
    assert (shop.kind, shop.code_source, shop.code_prefix, shop.valid_days) == ("coupon", "generated", "SHOP50-", 14)
    assert (catalog.reward[0].kind, catalog.reward[0].code_source) == ("item", None)


@pytest.mark.parametrize(
    "reward, message",
    [
        ({"cost_points": 0}, "rewards: reward.0.cost_points: must be greater than or equal to 1"),
        ({"colour": "red"}, "rewards: reward.0.colour: unknown key"),
        ({"limit": {"count": 1, "period": "week"}}, "rewards: reward.0.limit.period: must be 'day', 'month' or 'ever'"),
        (
            {"min_tier": "Platinum"},
            "rewards: reward.0.min_tier: unknown tier 'Platinum' (tiers: Regular, Silver, Gold, Diamond)",
        ),
        (
            {"early_access": {"tier": "Diamond", "hours": 24}},
            "rewards: reward.0: early_access needs available_from (the time everyone else may start)",
        ),
        (
            {"available_from": datetime(2026, 12, 1)},
            "rewards: reward.0.available_from: must include a UTC offset, e.g. 2026-12-01T00:00:00+08:00",
        ),
    ],
)
def test_catalog_errors_name_the_bad_key(reward, message):
    base = {"reward_id": "mug", "name": "Mug", "cost_points": 500, "min_tier": "Silver"}
    with pytest.raises(ProgramError) as error:
        parse_catalog({"reward": [{**base, **reward}]}, P)
    assert str(error.value) == message


def test_duplicate_reward_ids_are_refused():
    base = {"reward_id": "mug", "name": "Mug", "cost_points": 500, "min_tier": "Silver"}
    with pytest.raises(ProgramError) as error:
        parse_catalog({"reward": [base, base]}, P)
    assert str(error.value) == "rewards: reward.1.reward_id: 'mug' appears more than once"


@pytest.mark.parametrize(
    "payload, reason",
    [
        ({"reward_id": "mug", "quantity": 21}, "payload.quantity: must be less than or equal to 20"),
        ({"reward_id": "mug", "quantity": "2"}, "payload.quantity: must be a valid integer"),
        ({"quantity": 1}, "payload.reward_id: is required"),
    ],
)
def test_redemption_contract_names_the_field(payload, reason):
    from worker.domain.errors import InvalidEvent
    from worker.domain.events import REDEMPTION_QUANTITY_MAX, parse_event

    assert REDEMPTION_QUANTITY_MAX == 20
    raw = {
        "event_id": "x-1",
        "type": "redemption",
        "source": "app",
        "member_id": "M1",
        "occurred_at": "2026-11-10T10:00:00+08:00",
        "payload": payload,
    }
    with pytest.raises(InvalidEvent) as error:
        parse_event(raw)
    assert error.value.reason == reason


def test_redemption_defaults_to_one_and_cancel_names_its_redemption():
    from worker.domain.events import RedemptionCancelEvent, RedemptionEvent, parse_event

    envelope = {"event_id": "x-1", "source": "app", "member_id": "M1", "occurred_at": "2026-11-10T10:00:00+08:00"}
    redeem = parse_event({**envelope, "type": "redemption", "payload": {"reward_id": "mug"}})
    undo = parse_event({**envelope, "type": "redemption_cancel", "payload": {"redemption_event_id": "x-0"}})
    assert (type(redeem), redeem.payload.quantity) == (RedemptionEvent, 1)
    assert (type(undo), undo.payload.redemption_event_id) == (RedemptionCancelEvent, "x-0")


# ---------------------------------------------------------------- what a redemption moves


def test_a_redemption_spends_the_earliest_expiring_lots_first():
    lots = [
        Lot(7, 300, datetime(2027, 6, 30, tzinfo=UTC)),
        Lot(3, 400, datetime(2027, 3, 31, tzinfo=UTC)),
        Lot(9, 900, datetime(2027, 3, 31, tzinfo=UTC)),
    ]
    payment = spend(MUG, 2, lots, [])

    assert payment == Spend(
        1000,
        [(3, 400), (9, 600)],
        {"rule": "redemption", "reward_id": "mug", "quantity": 2, "cost_points": 500},
    )


def test_a_coupon_redemption_names_its_codes_and_lots_short_of_the_cost_are_refused():
    codes = [{"code": "MUG-1", "expires_on": "2027-01-31"}]
    assert spend(MUG, 1, [Lot(1, 500, AT)], codes).rule["coupons"] == codes
    with pytest.raises(ValueError, match="redemption of 500 points: the lots hold 499"):
        spend(MUG, 1, [Lot(1, 499, AT)], [])


def test_a_cancellation_gives_back_to_the_lots_not_expired_by_its_time():
    taken = [
        Taken(3, 400, datetime(2026, 11, 30, tzinfo=UTC)),
        Taken(9, 600, datetime(2027, 3, 31, tzinfo=UTC)),
    ]
    give_back = restore("app", "rd-1", 1000, taken, ["MUG-1"], datetime(2026, 12, 1, tzinfo=UTC))

    assert give_back == Restore(
        [(9, -600)],
        600,
        {
            "rule": "redemption_cancel",
            "redemption_source": "app",
            "redemption_event_id": "rd-1",
            "points_spent": 1000,
            "points_restored": 600,
            "points_expired": 400,
            "coupons_cancelled": ["MUG-1"],
        },
    )


def test_a_cancellation_that_changes_nothing_says_why():
    used_at = datetime(2026, 11, 20, 9, 30, tzinfo=UTC)
    assert cancel_refusal(None, []) == ("redemption_cancel.unknown_redemption", {})
    assert cancel_refusal("rejected", []) == ("redemption_cancel.redemption_rejected", {})
    assert cancel_refusal("cancelled", []) == ("redemption_cancel.redemption_cancelled", {})
    assert cancel_refusal("confirmed", [UsedCoupon("MUG-1", used_at)]) == (
        "redemption_cancel.coupon_used",
        {
            "redemption": "confirmed",
            "reason": "coupon MUG-1 was used at 2026-11-20T09:30:00+00:00; "
            "the redemption of a used coupon cannot be cancelled",
            "coupons_used": ["MUG-1"],
        },
    )
    assert cancel_refusal("confirmed", []) is None
