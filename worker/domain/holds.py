"""Points as payment at checkout, decided on plain values: hold, capture, void, expiry, and the
points a refund of a paid order gives back.

Each function takes what the holds service read under the member's lock and returns a
`Movement`: the one ledger entry to write (its kind, its lot takes, its rule provenance), or
raises `HoldRefused`. No I/O and no clock: `now` is passed in.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from worker.domain.lots import Lot, refund_reversal, take_earliest_expiring


class HoldRefused(Exception):
    """An expected refusal: `code` for programs, `detail` for people, `status` for HTTP."""

    def __init__(self, status: int, code: str, detail: str):
        super().__init__(detail)
        self.status, self.code, self.detail = status, code, detail


@dataclass(frozen=True)
class Hold:
    """What a decision needs of a hold's row."""

    hold_id: str
    member_id: str
    order_id: str
    points: int
    status: str  # held, captured, voided, expired
    hold_entry_id: int | None = None
    refunded_amount: Decimal = Decimal(0)
    points_refunded: int = 0

    @classmethod
    def of(cls, row: Any) -> Hold:
        return cls(
            row["hold_id"],
            row["member_id"],
            row["order_id"],
            row["points"],
            row["status"],
            row["hold_entry_id"],
            Decimal(row["refunded_amount"]),
            row["points_refunded"],
        )


@dataclass(frozen=True)
class Movement:
    """One entry: `kind`, the lot takes (lot id, points; negative puts points back into the lot)
    and the rule provenance. `what` is the entry's event type (the step of the hold's life)."""

    what: str
    kind: str
    takes: tuple[tuple[int, int], ...]
    rule: dict[str, Any]


def same_terms(existing: Hold, member_id: str, points: int, order_id: str) -> None:
    """A repeated hold request must name the same member, points and order as the first."""
    if (existing.member_id, existing.points, existing.order_id) != (member_id, points, order_id):
        raise HoldRefused(
            409,
            "hold_id_conflict",
            f"hold_id: {existing.hold_id!r} was already used for another member, order or amount",
        )


def place(hold_id: str, order_id: str, points: int, available: int, lots: list[Lot]) -> Movement:
    """Reserve `points` from the spendable lots, earliest-expiring first. `available` is the
    member's balance row; lots past their expiry must already be left out of `lots`."""
    spendable = min(available, sum(lot.remaining for lot in lots))
    if spendable < points:
        raise HoldRefused(409, "not_enough_points", f"points: {points} requested but {spendable} available")
    rule = {"rule": "points_payment_hold", "hold_id": hold_id, "order_id": order_id, "points": points}
    return Movement("hold", "hold", tuple(take_earliest_expiring(lots, points)), rule)


# What a capture or void finds on a hold that is already settled: the same answer, or a refusal.
_SETTLED_ANSWERS: dict[tuple[str, str], tuple[str, str] | None] = {
    ("captured", "captured"): None,
    ("voided", "voided"): None,
    ("voided", "expired"): None,
    ("captured", "voided"): ("hold_voided", "the hold was voided; its points were given back"),
    ("captured", "expired"): ("hold_expired", "the hold expired before it was captured; its points were given back"),
    ("voided", "captured"): ("hold_captured", "the hold was captured; refund the order to give the points back"),
}


def settle(hold: Hold, wanted: str, held_takes: list[tuple[int, int]]) -> Movement | None:
    """Capture (`wanted` = captured) or void (voided) a hold. None: the hold is already settled
    the way asked, and the answer is the hold as it is. `held_takes` are the hold entry's takes."""
    if hold.status != "held":
        refusal = _SETTLED_ANSWERS[(wanted, hold.status)]
        if refusal is not None:
            raise HoldRefused(409, *refusal)
        return None
    if wanted == "captured":
        # The points already left with the hold: a zero-point entry naming the order.
        rule = {
            "rule": "points_payment",
            "hold_id": hold.hold_id,
            "order_id": hold.order_id,
            "points": hold.points,
            "hold_entry_id": hold.hold_entry_id,
        }
        return Movement("capture", "spend", (), rule)
    return give_back(hold, "hold_voided", held_takes)


def give_back(hold: Hold, rule_name: str, held_takes: list[tuple[int, int]]) -> Movement:
    """Every point of an open hold back to the lot it came from (`hold_voided`, `hold_expired`);
    a lot that ran out meanwhile is expired by the expiry job, as it would have been had the
    points never been held."""
    rule = {"rule": rule_name, "hold_id": hold.hold_id, "order_id": hold.order_id, "points": hold.points}
    return Movement(rule_name, "restore", tuple((lot_id, -points) for lot_id, points in held_takes), rule)


@dataclass(frozen=True)
class RefundRestore:
    refunded_amount: Decimal  # the order's refunded amount the hold has now followed
    points_refunded: int  # the hold's points given back for refunds so far (restored or expired)
    movement: Movement | None  # None when the refund gives nothing back


def refund_restore(
    hold: Hold,
    order_amount: Decimal,
    order_refunded: Decimal,
    taken: dict[int, int],
    given: dict[int, int],
    expiry: dict[int, datetime],
    now: datetime,
) -> RefundRestore:
    """The order's newly refunded share of the points paid, back to the hold's lots that have
    not expired, latest-expiring first; the share of expired lots is lost, as for a cancelled
    redemption. `taken`: what the hold took per lot; `given`: what refunds gave back per lot so
    far; `expiry`: each taken lot's expiry."""
    refunded = min(order_refunded, order_amount)
    due = refund_reversal(
        hold.points, order_amount, hold.refunded_amount, refunded - hold.refunded_amount, hold.points_refunded
    )
    if due == 0:
        return RefundRestore(refunded, hold.points_refunded, None)
    back: list[tuple[int, int]] = []
    left = due
    for lot_id in sorted(taken, key=lambda i: (expiry[i], i), reverse=True):
        room = taken[lot_id] - given.get(lot_id, 0)
        if left == 0 or expiry[lot_id] <= now or room <= 0:
            continue
        back.append((lot_id, -min(room, left)))
        left -= min(room, left)
    rule = {
        "rule": "points_payment_refund",
        "hold_id": hold.hold_id,
        "order_id": hold.order_id,
        "points_due": due,
        "points_restored": due - left,
        "points_expired": left,
        "order_refunded_amount": str(refunded),
    }
    return RefundRestore(refunded, hold.points_refunded + due, Movement("refund", "restore", tuple(back), rule))
