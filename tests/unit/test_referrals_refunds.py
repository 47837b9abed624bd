"""Who is a new member for a referral, and what a refund takes back of an order's bonuses: pure."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from worker.domain.lots import refund_bonus_reversal, refund_reversal
from worker.domain.referrals import referee_is_new

AT = datetime(2026, 11, 20, 2, 0, tzinfo=UTC)


def test_a_referee_with_no_event_before_the_referral_is_new():
    assert referee_is_new(AT, None, False, 30) is True


def test_a_referee_enrolled_up_to_the_days_before_is_new_and_one_second_more_is_not():
    assert referee_is_new(AT, AT - timedelta(days=30), False, 30) is True
    assert referee_is_new(AT, AT - timedelta(days=30, seconds=1), False, 30) is False
    assert referee_is_new(AT, AT - timedelta(days=1), False, 0) is False


def test_a_referee_with_a_purchase_before_the_referral_is_not_new():
    assert referee_is_new(AT, AT - timedelta(hours=1), True, 30) is False


def test_only_the_refund_that_completes_the_order_takes_its_bonuses_back_once():
    amount = Decimal("300.00")

    partial = refund_bonus_reversal(150, amount, Decimal(0), Decimal("100.00"), 0)
    completing = refund_bonus_reversal(150, amount, Decimal("100.00"), Decimal("200.00"), 0)
    beyond = refund_bonus_reversal(150, amount, Decimal("300.00"), Decimal("50.00"), 150)
    whole = refund_bonus_reversal(150, amount, Decimal(0), Decimal("500.00"), 0)

    assert (partial, completing, beyond, whole) == (0, 150, 0, 150)
    # The order's own points in proportion, as before: 100 then 200.
    assert refund_reversal(300, amount, Decimal(0), Decimal("100.00"), 0) == 100
    assert refund_reversal(300, amount, Decimal("100.00"), Decimal("200.00"), 100) == 200
