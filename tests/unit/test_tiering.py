"""Tier decisions as the ledger and the review job take them: literal programs, dates and values."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from tests.unit.engine_programs import program
from worker.domain.engine import TierFloor, review_window, tier_after, tier_at_review, to_next
from worker.domain.engine.tiering import (
    Downgrade,
    ReviewCandidate,
    nudge,
    operator_floor,
    raised_by_floor,
    review_member,
)
from worker.domain.errors import InvalidFloor

CST = timezone(timedelta(hours=8))
# The review firing of 1 January 2027, 02:00 in the program's time zone.
NOW = datetime(2027, 1, 1, 2, tzinfo=CST)
ON = NOW.date()


def tiers(settings: str):
    return program("", tiers=settings)


REVIEW = tiers('downgrade = "review"\nreview_window_days = 365')


def test_automatic_downgrade_follows_a_refund_down_and_back_up():
    automatic = tiers('downgrade = "automatic"')

    # Silver at 1100 points; a refund takes 1000 of them back.
    assert tier_after(automatic, "Silver", 100, on=ON) == "Regular"
    assert tier_after(automatic, "Gold", 1100, on=ON) == "Silver"
    assert tier_after(automatic, "Regular", 5000, on=ON) == "Gold"
    # The same refund leaves the tier alone when tiers never go down, or only at a review.
    assert tier_after(tiers(""), "Silver", 100, on=ON) == "Silver"
    assert tier_after(REVIEW, "Silver", 100, on=ON) == "Silver"


@pytest.mark.parametrize(
    ("tier", "window", "floor", "expected"),
    [
        ("Gold", 4999, None, "Silver"),
        ("Gold", 0, None, "Regular"),  # two tiers down at once
        ("Diamond", 1200, None, "Silver"),  # two tiers down
        ("Diamond", 10, None, "Regular"),  # three
        ("Gold", 5000, None, None),  # kept
        ("Diamond", 100, TierFloor(tier="Diamond"), None),  # the floor holds
        ("Diamond", 100, TierFloor(tier="Gold"), "Gold"),  # down to the floor, no further
        ("Diamond", 100, TierFloor(tier="Gold", ends_on=date(2026, 12, 31)), "Regular"),  # the floor ended
        ("Gold", 100, TierFloor(tier="Gold", ends_on=date(2027, 1, 1)), None),  # its last day is included
        ("Regular", 0, None, None),
        ("Silver", 20000, None, None),  # a review never raises a tier
    ],
)
def test_review_recalculates_the_tier_from_the_window(tier, window, floor, expected):
    assert tier_at_review(REVIEW, tier, [(ON, window)], now=NOW, floor=floor) == expected


def test_review_counts_only_the_window_in_local_days():
    history = [(date(2026, 1, 1), 20000), (date(2026, 1, 2), 1000), (date(2027, 1, 1), 200)]

    # 365 days up to and including 1 January 2027 start on 2 January 2026.
    assert review_window(REVIEW, ON) == (date(2026, 1, 2), date(2027, 1, 1))
    assert tier_at_review(REVIEW, "Diamond", history, now=NOW) == "Silver"


def test_review_on_the_amount_basis_counts_money():
    amount = tiers('basis = "amount"\ndowngrade = "review"')

    assert tier_at_review(amount, "Gold", [(ON, Decimal("4999.99"))], now=NOW) == "Silver"
    assert tier_at_review(amount, "Gold", [(ON, Decimal("5000.00"))], now=NOW) is None


def test_grace_counts_from_the_occurrence_of_the_upgrade():
    graced = tiers('downgrade = "review"\nreview_grace_days = 30')

    assert tier_at_review(graced, "Gold", [], now=NOW, upgraded_at=NOW - timedelta(days=29, hours=23)) is None
    assert tier_at_review(graced, "Gold", [], now=NOW, upgraded_at=NOW - timedelta(days=30)) == "Regular"
    assert tier_at_review(graced, "Gold", [], now=NOW, upgraded_at=None) == "Regular"


def test_no_review_moves_a_tier_unless_downgrade_is_review():
    assert tier_at_review(tiers(""), "Gold", [], now=NOW) is None
    assert tier_at_review(tiers('downgrade = "automatic"'), "Gold", [], now=NOW) is None


def test_floor_in_force_and_ended_with_automatic_downgrade():
    automatic = tiers('downgrade = "automatic"')
    floor = TierFloor(tier="Gold", ends_on=date(2026, 12, 31))

    assert tier_after(automatic, "Gold", 0, on=date(2026, 12, 31), floor=floor) == "Gold"
    assert tier_after(automatic, "Gold", 0, on=date(2027, 1, 1), floor=floor) == "Regular"
    assert tier_after(automatic, "Gold", 1000, on=date(2027, 1, 1), floor=TierFloor(tier="Gold")) == "Gold"


def test_amount_basis_upgrades_on_money_and_reports_money_to_the_next_tier():
    amount = tiers('basis = "amount"\ndowngrade = "automatic"')

    assert tier_after(amount, "Regular", Decimal("1000.00"), on=ON) == "Silver"
    assert tier_after(amount, "Silver", Decimal("999.99"), on=ON) == "Regular"
    assert to_next(amount, "Silver", Decimal("1200.50")) == (amount.level("Gold"), Decimal("3799.50"))
    assert to_next(tiers(""), "Silver", 4600) == (tiers("").level("Gold"), 400)
    assert to_next(amount, "Diamond", Decimal("1")) == (None, None)


def test_nudges_count_points_only():
    assert nudge(tiers(""), "Silver", 4000, 4600, 500).points_away == 400
    assert nudge(tiers(""), "Silver", 4600, 4700, 500) is None  # already inside the window
    assert nudge(tiers('basis = "amount"'), "Silver", 4000, 4600, 500) is None


def test_operator_floor_names_the_tiers_and_refuses_a_past_end():
    prog = tiers("")

    assert operator_floor(prog, "Gold", date(2026, 12, 31), today=date(2026, 12, 31)) == TierFloor(
        tier="Gold", ends_on=date(2026, 12, 31)
    )
    assert operator_floor(prog, "Gold", None, today=ON) == TierFloor(tier="Gold")
    assert operator_floor(prog, "Regular", date(2027, 3, 1), today=ON) is None  # the lowest tier: no floor
    with pytest.raises(InvalidFloor, match=r"^unknown tier 'Platinum'; tiers: Regular, Silver, Gold, Diamond$"):
        operator_floor(prog, "Platinum", None, today=ON)
    with pytest.raises(InvalidFloor, match=r"2026-12-31, which is in the past \(program time zone Asia/Shanghai\)"):
        operator_floor(prog, "Gold", date(2026, 12, 31), today=ON)


def test_a_review_decision_moves_the_baseline_of_the_basis_reviewed():
    member = ReviewCandidate("M1", "Gold", None, 12000, Decimal("900.00"), 3000, None)
    assert review_member(REVIEW, member, now=NOW) == Downgrade("M1", "Gold", "Silver", 9000, None)
    amount = tiers('basis = "amount"\ndowngrade = "review"')
    spender = ReviewCandidate("M2", "Gold", None, 0, Decimal("9000.00"), Decimal("1200.50"), None)
    assert review_member(amount, spender, now=NOW) == Downgrade("M2", "Gold", "Silver", None, Decimal("7799.50"))
    # A floor in force holds the tier; a tier the window still earns is kept.
    floored = ReviewCandidate("M3", "Gold", TierFloor(tier="Gold"), 12000, Decimal(0), 0, None)
    assert review_member(REVIEW, floored, now=NOW) is None
    assert review_member(REVIEW, ReviewCandidate("M4", "Silver", None, 3000, Decimal(0), 3000, None), now=NOW) is None


def test_a_floor_raises_the_tier_only_while_in_force_and_above_it():
    gold_to_june = TierFloor(tier="Gold", ends_on=date(2027, 6, 30))
    assert raised_by_floor(REVIEW, "Silver", gold_to_june, ON) == "Gold"
    assert raised_by_floor(REVIEW, "Silver", gold_to_june, date(2027, 7, 1)) is None
    assert raised_by_floor(REVIEW, "Diamond", gold_to_june, ON) is None
    assert raised_by_floor(REVIEW, "Gold", gold_to_june, ON) is None
    assert raised_by_floor(REVIEW, "Silver", None, ON) is None
