"""Lot selection and refund math. Pure functions over plain values."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_FLOOR, Decimal


@dataclass(frozen=True)
class Lot:
    lot_id: int
    remaining: int
    expires_at: datetime


def take_earliest_expiring(lots: list[Lot], points: int, first: int | None = None) -> list[tuple[int, int]]:
    """Which lots give `points`, earliest-expiring first, as (lot_id, taken) pairs.

    `first` names a lot to drain before the others (a refund takes back from its own order's
    lot first). Takes at most what the lots hold; the caller compares the total with `points`.
    """
    if points < 0:
        raise ValueError("points must not be negative")
    ordered = sorted(lots, key=lambda lot: (lot.lot_id != first, lot.expires_at, lot.lot_id))
    taken: list[tuple[int, int]] = []
    left = points
    for lot in ordered:
        if left == 0:
            break
        take = min(lot.remaining, left)
        if take > 0:
            taken.append((lot.lot_id, take))
            left -= take
    return taken


def floor_points(value: Decimal) -> int:
    return int(value.to_integral_value(rounding=ROUND_FLOOR))


def refund_reversal(
    order_points: int, order_amount: Decimal, refunded_before: Decimal, refund_amount: Decimal, reversed_before: int
) -> int:
    """Points to take back for one refund of an order.

    floor(order points x refund / order amount), computed on the running refund total so that
    partial refunds adding up to the whole order take back exactly what the order earned, and
    never more in total.
    """
    if order_amount <= 0:
        return 0
    refunded_total = min(refunded_before + refund_amount, order_amount)
    due_total = min(floor_points(Decimal(order_points) * refunded_total / order_amount), order_points)
    return max(due_total - reversed_before, 0)


def refund_bonus_reversal(
    bonus_points: int, order_amount: Decimal, refunded_before: Decimal, refund_amount: Decimal, reversed_before: int
) -> int:
    """The fixed points of an order (everything its purchase earned beyond the amount-based
    points) to take back for one refund: all of them, once, by the refund that brings the
    running refund total to the order's amount; nothing for a partial refund."""
    if order_amount <= 0 or min(refunded_before + refund_amount, order_amount) < order_amount:
        return 0
    return max(bonus_points - reversed_before, 0)
