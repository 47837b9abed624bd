"""Every row of the default program, on plain data: no database, no clock."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from worker.domain import local_days
from worker.domain.engine import reference_rules as rules
from worker.domain.engine.reference_rules import MemberState
from worker.domain.events import Item
from worker.domain.program import DEFAULT_PROGRAM as P
from worker.domain.program import Campaign, Program

ORDINARY_DAY = date(2026, 11, 2)  # not a member day, no birthday
MEMBER_DAY = date(2026, 11, 8)
# A member who has bought before (no first-purchase bonus), as most tests here need.
PURCHASED_BEFORE = MemberState(has_purchased=True)


def buy(
    amount: str,
    state: MemberState = PURCHASED_BEFORE,
    on: date = ORDINARY_DAY,
    source: str = "pos",
    program: Program = P,
    items: tuple = (),
) -> rules.Outcome:
    return rules.purchase(program, state, amount=Decimal(amount), items=items, on=on, source=source)


# --- purchase: floor(amount x tier multiplier x campaign multiplier), Decimal throughout ---


@pytest.mark.parametrize(
    ("tier", "amount", "points"),
    [
        ("Regular", "350.75", 350),  # floor, not round: 350.75 -> 350
        ("Regular", "0.99", 0),
        ("Silver", "101.00", 121),  # 121.2
        ("Silver", "0.10", 0),  # 0.12
        ("Gold", "99.99", 149),  # 149.985
        ("Diamond", "123.45", 246),  # 246.9
    ],
)
def test_purchase_points_are_floored_product_of_amount_and_tier_multiplier(tier, amount, points):
    outcome = buy(amount, MemberState(tier=tier, has_purchased=True))

    assert outcome.points == points
    assert [a.rule for a in outcome.awards] == ["purchase"]


def test_decimal_arithmetic_has_no_float_error():
    # As floats, 0.29 * 100 = 28.999999999999996 and would floor to 28.
    program = P.model_copy(
        update={"tiers": (P.tiers[0].model_copy(update={"multiplier": Decimal("100")}),) + P.tiers[1:]}
    )

    assert buy("0.29", program=program).points == 29


def test_tier_multiplier_is_the_tier_held_before_the_event():
    # 999 qualifying + 1000 spent: the member becomes Silver by this purchase, but earns at Regular.
    outcome = buy("1000.00", MemberState(tier="Regular", qualifying_points=999, has_purchased=True))

    assert outcome.points == 1000
    assert outcome.awards[0].detail["tier"] == "Regular"


def test_member_day_doubles_points():
    outcome = buy("100.00", on=MEMBER_DAY)

    assert outcome.points == 200
    assert outcome.awards[0].detail["campaign"] == "member_day"
    assert outcome.awards[0].detail["campaign_multiplier"] == "2"


def test_birthday_triples_points_in_the_members_tier():
    outcome = buy("100.00", MemberState(tier="Silver", birthday=date(1990, 11, 2), has_purchased=True))

    assert outcome.points == 360  # 100 x 1.2 x 3


def test_birthday_on_member_day_takes_the_highest_multiplier_not_both():
    outcome = buy("100.00", MemberState(birthday=date(1990, 11, 8), has_purchased=True), on=MEMBER_DAY)

    assert outcome.points == 300  # x3, not x6
    assert outcome.awards[0].detail["campaign"] == "birthday"


def test_campaign_applies_only_in_its_window_and_to_its_sources():
    program = P.model_copy(
        update={
            "campaigns": (
                Campaign(
                    name="double-12",
                    multiplier=Decimal("2.5"),
                    starts_on=date(2026, 12, 1),
                    ends_on=date(2026, 12, 3),
                    sources=("ecommerce",),
                ),
            )
        }
    )

    inside_web = buy("100.00", on=date(2026, 12, 3), source="ecommerce", program=program)
    inside_pos = buy("100.00", on=date(2026, 12, 3), source="pos", program=program)
    after = buy("100.00", on=date(2026, 12, 4), source="ecommerce", program=program)
    assert (inside_web.points, inside_pos.points, after.points) == (250, 100, 100)
    assert inside_web.awards[0].detail["campaign"] == "double-12"


def test_first_purchase_bonus_once():
    first = buy("10.00", MemberState())
    second = buy("10.00", first.state)

    assert [(a.rule, a.points) for a in first.awards] == [("purchase", 10), ("first_purchase", 100)]
    assert [(a.rule, a.points) for a in second.awards] == [("purchase", 10)]


def test_category_and_sku_multipliers_apply_to_their_lines_sku_wins():
    program = P.model_copy(
        update={
            "multipliers": P.multipliers.model_copy(
                update={"categories": {"beauty": Decimal("2")}, "skus": {"SKU-1": Decimal("3")}}
            )
        }
    )
    items = (
        Item(sku="SKU-1", category="beauty", amount="10.00", quantity=1),  # sku x3: +20
        Item(sku="SKU-2", category="beauty", amount="20.00", quantity=2),  # category x2: +20
        Item(sku="SKU-3", category="food", amount="70.00", quantity=1),  # x1
    )

    assert buy("100.00", program=program, items=items).points == 140


# --- signup, check-in, review, referral ---


def test_signup_gives_50_once():
    first = rules.signup(P, MemberState())
    again = rules.signup(P, first.state)

    assert first.points == 50
    assert (again.points, again.note) == (0, "signup.already_signed_up")


def test_check_in_10_once_per_local_day():
    first = rules.check_in(P, MemberState(), date(2026, 11, 1))
    same_day = rules.check_in(P, first.state, date(2026, 11, 1))
    earlier = rules.check_in(P, first.state, date(2026, 10, 31))

    assert first.points == 10
    assert (same_day.points, same_day.note) == (0, "check_in.already_checked_in_today")
    assert (earlier.points, earlier.note) == (0, "check_in.earlier_than_last_check_in")


def test_seventh_consecutive_day_adds_50_and_the_streak_restarts():
    state, points = MemberState(), []
    for day in range(1, 16):
        outcome = rules.check_in(P, state, date(2026, 11, day))
        state = outcome.state
        points.append(outcome.points)

    assert points == [10] * 6 + [60] + [10] * 6 + [60] + [10]
    assert state.check_in_streak == 1


def test_a_missed_day_restarts_the_streak():
    state = MemberState()
    for day in (1, 2, 3, 4, 5, 6):
        state = rules.check_in(P, state, date(2026, 11, day)).state
    after_gap = rules.check_in(P, state, date(2026, 11, 8))

    assert after_gap.points == 10
    assert after_gap.state.check_in_streak == 1


def test_review_20_plus_30_with_media():
    plain = rules.review(P, MemberState(), on=ORDINARY_DAY, has_media=False)
    media = rules.review(P, MemberState(), on=ORDINARY_DAY, has_media=True)

    assert (plain.points, media.points) == (20, 50)


def test_at_most_three_rewarded_reviews_per_local_day():
    state, points = MemberState(), []
    for _ in range(4):
        outcome = rules.review(P, state, on=ORDINARY_DAY, has_media=False)
        state = outcome.state
        points.append(outcome.points)
    next_day = rules.review(P, state, on=date(2026, 11, 3), has_media=False)

    assert points == [20, 20, 20, 0]
    assert rules.review(P, state, on=ORDINARY_DAY, has_media=True).note == "review.daily_limit_reached"
    assert next_day.points == 20


def test_referral_gives_referrer_200_and_referee_100():
    assert rules.referrer(P, MemberState(), "B").points == 200
    assert rules.referee(P, MemberState(), "A").points == 100


# --- dates in the program's time zone ---


def test_rules_use_the_program_local_date():
    # 17:30 UTC on the 7th is 01:30 on the 8th in Asia/Shanghai: a member day.
    at = datetime(2026, 11, 7, 17, 30, tzinfo=UTC)

    assert local_days.local_date(P, at) == MEMBER_DAY
    assert local_days.local_date(P.model_copy(update={"timezone": "UTC"}), at) == date(2026, 11, 7)


@pytest.mark.parametrize(
    ("birthday", "on", "expected"),
    [
        (date(1990, 5, 20), date(2026, 5, 20), True),
        (date(1990, 5, 20), date(2026, 5, 21), False),
        (date(2000, 2, 29), date(2026, 2, 28), True),  # common year: kept on the 28th
        (date(2000, 2, 29), date(2028, 2, 28), False),  # leap year: the 29th itself
        (date(2000, 2, 29), date(2028, 2, 29), True),
        (None, date(2026, 5, 20), False),
    ],
)
def test_birthday(birthday, on, expected):
    assert local_days.is_birthday(birthday, on) is expected


def test_member_day_past_month_end_falls_on_the_last_day():
    program = P.model_copy(update={"member_day": P.member_day.model_copy(update={"day_of_month": 31})})

    assert local_days.is_member_day(program, date(2026, 11, 30)) is True
    assert local_days.is_member_day(program, date(2026, 12, 30)) is False
    assert local_days.is_member_day(program, date(2026, 12, 31)) is True


def test_disabled_member_day_gives_no_multiplier():
    program = P.model_copy(update={"member_day": P.member_day.model_copy(update={"enabled": False})})

    assert buy("100.00", on=MEMBER_DAY, program=program).points == 100
