"""Property tests of the pure rules: refunds, lots, tiers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from worker.domain import tiers
from worker.domain.lots import Lot, refund_reversal, take_earliest_expiring
from worker.domain.program import DEFAULT_PROGRAM

cents = st.integers(min_value=1, max_value=10_000_000).map(lambda c: Decimal(c) / 100)


@settings(max_examples=150, deadline=None)
@given(order_points=st.integers(0, 100_000), amount=cents, refunds=st.lists(cents, max_size=8))
def test_refund_reversals_never_exceed_what_the_order_earned(order_points, amount, refunds):
    refunded, reversed_total = Decimal(0), 0
    for refund in refunds:
        due = refund_reversal(order_points, amount, refunded, refund, reversed_total)
        assert due >= 0
        refunded = min(refunded + refund, amount)
        reversed_total += due
        assert reversed_total <= order_points
    if refunded == amount:
        assert reversed_total == order_points  # a full refund takes back exactly the order's points


@settings(max_examples=150, deadline=None)
@given(remaining=st.lists(st.integers(0, 1000), max_size=10), points=st.integers(0, 5000), data=st.data())
def test_lot_takes_cover_exactly_what_is_there_and_never_overdraw(remaining, points, data):
    start = datetime(2026, 1, 1, tzinfo=UTC)
    lots = [Lot(i + 1, r, start + timedelta(days=data.draw(st.integers(0, 400)))) for i, r in enumerate(remaining)]
    first = data.draw(st.one_of(st.none(), st.integers(1, max(len(lots), 1))))
    taken = take_earliest_expiring(lots, points, first)
    by_id = {lot.lot_id: lot for lot in lots}
    assert len({lot_id for lot_id, _ in taken}) == len(taken)
    assert all(0 < n <= by_id[lot_id].remaining for lot_id, n in taken)
    assert sum(n for _, n in taken) == min(points, sum(remaining))


@settings(max_examples=150, deadline=None)
@given(steps=st.lists(st.integers(-3000, 8000), max_size=20))
def test_tier_never_falls_below_what_qualifying_points_imply(steps):
    tier, qualifying = DEFAULT_PROGRAM.tiers[0].name, 0
    for step in steps:
        qualifying = max(qualifying + step, 0)
        before = tier
        tier = tiers.upgraded_tier(DEFAULT_PROGRAM, tier, qualifying)
        rank = DEFAULT_PROGRAM.tier_rank
        assert rank(tier) >= rank(tiers.tier_for(DEFAULT_PROGRAM, qualifying).name)
        assert rank(tier) >= rank(before)  # upgrades only; demotion is the tier review's job
