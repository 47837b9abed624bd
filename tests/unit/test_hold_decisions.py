"""Holds decided on plain values: what a hold takes, what capture, void and expiry write, and
what a refund of a paid order gives back."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from worker.domain import holds
from worker.domain.holds import Hold, HoldRefused
from worker.domain.lots import Lot

NOW = datetime(2026, 3, 1, 12, tzinfo=UTC)
DAY = timedelta(days=1)


def held(points=300, status="held", refunded_amount="0", points_refunded=0) -> Hold:
    return Hold("h-1", "M1", "o-1", points, status, 41, Decimal(refunded_amount), points_refunded)


def test_a_hold_takes_the_earliest_expiring_lots_first():
    lots = [Lot(1, 200, NOW + 30 * DAY), Lot(2, 150, NOW + 5 * DAY), Lot(3, 500, NOW + 90 * DAY)]
    movement = holds.place("h-1", "o-1", 300, 850, lots)
    assert (movement.what, movement.kind) == ("hold", "hold")
    assert movement.takes == ((2, 150), (1, 150))
    assert movement.rule == {"rule": "points_payment_hold", "hold_id": "h-1", "order_id": "o-1", "points": 300}


def test_a_hold_beyond_the_spendable_points_is_refused_naming_both_figures():
    # The balance row says 400, but only 350 are in lots that can still be spent.
    lots = [Lot(1, 200, NOW + 30 * DAY), Lot(2, 150, NOW + 5 * DAY)]
    with pytest.raises(HoldRefused) as refused:
        holds.place("h-1", "o-1", 360, 400, lots)
    assert (refused.value.status, refused.value.code) == (409, "not_enough_points")
    assert refused.value.detail == "points: 360 requested but 350 available"


def test_a_repeated_hold_must_have_the_same_terms():
    holds.same_terms(held(), "M1", 300, "o-1")
    with pytest.raises(HoldRefused) as refused:
        holds.same_terms(held(), "M1", 301, "o-1")
    assert refused.value.code == "hold_id_conflict"
    assert refused.value.detail == "hold_id: 'h-1' was already used for another member, order or amount"


def test_capture_spends_nothing_more_and_void_puts_every_point_back_where_it_came_from():
    captured = holds.settle(held(), "captured", [(2, 150), (1, 150)])
    assert captured is not None and (captured.kind, captured.takes) == ("spend", ())
    assert captured.rule["rule"] == "points_payment" and captured.rule["hold_entry_id"] == 41
    voided = holds.settle(held(), "voided", [(2, 150), (1, 150)])
    assert voided is not None and (voided.what, voided.kind) == ("hold_voided", "restore")
    assert voided.takes == ((2, -150), (1, -150))
    expired = holds.give_back(held(), "hold_expired", [(2, 150)])
    assert (expired.what, expired.takes, expired.rule["rule"]) == ("hold_expired", ((2, -150),), "hold_expired")


@pytest.mark.parametrize(
    ("wanted", "status", "code"),
    [
        ("captured", "captured", None),
        ("voided", "voided", None),
        ("voided", "expired", None),
        ("captured", "voided", "hold_voided"),
        ("captured", "expired", "hold_expired"),
        ("voided", "captured", "hold_captured"),
    ],
)
def test_a_settled_hold_answers_as_it_is_or_refuses(wanted, status, code):
    if code is None:
        assert holds.settle(held(status=status), wanted, []) is None
    else:
        with pytest.raises(HoldRefused) as refused:
            holds.settle(held(status=status), wanted, [])
        assert (refused.value.status, refused.value.code) == (409, code)


def test_a_refund_gives_its_share_back_to_unexpired_lots_latest_expiring_first():
    taken = {1: 100, 2: 200}
    expiry = {1: NOW - DAY, 2: NOW + 10 * DAY}  # lot 1 has expired since the hold
    # Half the order refunded: 150 of the 300 points are due; lot 2 has room for all of them.
    half = holds.refund_restore(held(), Decimal("100.00"), Decimal("50.00"), taken, {}, expiry, NOW)
    assert (half.refunded_amount, half.points_refunded) == (Decimal("50.00"), 150)
    assert half.movement is not None and half.movement.takes == ((2, -150),)
    assert (half.movement.rule["points_restored"], half.movement.rule["points_expired"]) == (150, 0)
    # The rest refunded later: 150 more due, lot 2 has 50 of room left, lot 1 has expired.
    rest = holds.refund_restore(
        held(refunded_amount="50.00", points_refunded=150),
        Decimal("100.00"),
        Decimal("100.00"),
        taken,
        {2: 150},
        expiry,
        NOW,
    )
    assert rest.points_refunded == 300
    assert rest.movement is not None and rest.movement.takes == ((2, -50),)
    assert (rest.movement.rule["points_restored"], rest.movement.rule["points_expired"]) == (50, 100)


def test_a_refund_already_followed_gives_nothing():
    again = holds.refund_restore(
        held(refunded_amount="100.00", points_refunded=300), Decimal("100.00"), Decimal("120.00"), {2: 300}, {}, {}, NOW
    )
    assert (again.refunded_amount, again.points_refunded, again.movement) == (Decimal("100.00"), 300, None)
