"""Tiers, nudges, lot selection and refund math on plain data."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from worker.domain import tiers
from worker.domain.lots import Lot, refund_reversal, take_earliest_expiring
from worker.domain.program import DEFAULT_PROGRAM as P


@pytest.mark.parametrize(
    ("qualifying", "tier"),
    [
        (0, "Regular"),
        (999, "Regular"),
        (1000, "Silver"),
        (4999, "Silver"),
        (5000, "Gold"),
        (14999, "Gold"),
        (15000, "Diamond"),
        (10**9, "Diamond"),
    ],
)
def test_tier_thresholds(qualifying, tier):
    assert tiers.tier_for(P, qualifying).name == tier


def test_points_to_next_tier_and_none_at_the_top():
    assert tiers.points_to_next(P, "Silver", 4600) == (P.tier("Gold"), 400)
    assert tiers.points_to_next(P, "Diamond", 20000) == (None, None)


def test_upgrades_apply_at_once_but_never_demote_and_respect_the_floor():
    assert tiers.upgraded_tier(P, "Regular", 5000) == "Gold"
    assert tiers.upgraded_tier(P, "Gold", 10) == "Gold"
    assert tiers.upgraded_tier(P, "Regular", 10, floor="Silver") == "Silver"


def test_nudge_when_entering_the_window_below_the_next_tier():
    nudge = tiers.nudge(P, "Silver", qualifying_before=4000, qualifying_after=4600)

    assert (nudge.tier, nudge.points_away) == ("Gold", 400)


@pytest.mark.parametrize(
    ("tier", "before", "after"),
    [
        ("Silver", 4550, 4600),  # already inside the window: announced before
        ("Silver", 4000, 4499),  # 501 away: still outside
        ("Gold", 4000, 5000),  # reached Gold: the next is Diamond, far away
        ("Diamond", 14000, 16000),  # no next tier
    ],
)
def test_no_nudge(tier, before, after):
    assert tiers.nudge(P, tier, before, after) is None


def test_nudge_at_exactly_500_away():
    assert tiers.nudge(P, "Silver", 4000, 4500).points_away == 500


def _at(day: int) -> datetime:
    return datetime(2027, 1, day, tzinfo=UTC)


def test_lots_are_taken_earliest_expiring_first():
    lots = [Lot(1, 100, _at(20)), Lot(2, 50, _at(5)), Lot(3, 70, _at(10))]

    assert take_earliest_expiring(lots, 130) == [(2, 50), (3, 70), (1, 10)]


def test_a_preferred_lot_is_drained_first_and_shortfall_is_visible():
    lots = [Lot(1, 100, _at(20)), Lot(2, 50, _at(5))]

    assert take_earliest_expiring(lots, 120, first=1) == [(1, 100), (2, 20)]
    assert take_earliest_expiring(lots, 500) == [(2, 50), (1, 100)]  # 150 of 500: caller sees the gap


def test_negative_points_are_refused():
    with pytest.raises(ValueError, match="must not be negative"):
        take_earliest_expiring([], -1)


def test_refund_reverses_floor_of_proportional_points():
    # 333 points on 100.00; refund 50.00 -> floor(166.5) = 166.
    assert refund_reversal(333, Decimal("100.00"), Decimal(0), Decimal("50.00"), 0) == 166


def test_partial_refunds_adding_up_to_the_order_reverse_exactly_what_it_earned():
    due1 = refund_reversal(333, Decimal("100.00"), Decimal(0), Decimal("33.33"), 0)
    due2 = refund_reversal(333, Decimal("100.00"), Decimal("33.33"), Decimal("33.33"), due1)
    due3 = refund_reversal(333, Decimal("100.00"), Decimal("66.66"), Decimal("33.34"), due1 + due2)

    assert (due1, due2, due3) == (110, 111, 112)
    assert due1 + due2 + due3 == 333


def test_refunds_beyond_the_order_amount_never_reverse_more():
    first = refund_reversal(100, Decimal("100.00"), Decimal(0), Decimal("100.00"), 0)
    extra = refund_reversal(100, Decimal("100.00"), Decimal("100.00"), Decimal("50.00"), 100)

    assert (first, extra) == (100, 0)
