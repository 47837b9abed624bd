"""What merging two members moves, decided on plain values. Pure; no I/O.

A merge keeps one member (`identities.survivor_of`) and empties the other into it: every open
lot of the absorbed member is emptied and copied to the survivor with the same points, earning
time, expiry and pending window; qualifying, lifetime and money values follow. Two `transfer`
entries record it, one per member, each listing by event what the absorbed member's ledger had
booked for it, so that a re-evaluation of the survivor finds those points booked
(`reevaluation.points_by_event` reads them back). The store writes what `transfer` decides.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from worker.domain.errors import InvariantViolation

EventKey = tuple[str, str]


@dataclass(frozen=True)
class Balances:
    """The absorbed member's balance row, as its lock read it."""

    member_id: str
    available: int
    pending: int
    qualifying: int
    lifetime: int


@dataclass(frozen=True)
class OpenLot:
    lot_id: int
    remaining: int
    earned_at: datetime
    expires_at: datetime
    pending_until: datetime | None


@dataclass(frozen=True)
class TransferEntry:
    """One side's `transfer` entry: signed points, pending and qualifying points, and its rule
    items (the first carries the merge and the lifetime points it moves)."""

    member_id: str
    points: int
    pending: int
    qualifying: int
    rules: list[dict[str, Any]]


@dataclass(frozen=True)
class Transfer:
    absorbed: TransferEntry
    survivor: TransferEntry
    emptied: list[tuple[int, int]]  # (lot_id, points) taken from the absorbed member's lots
    copied: list[OpenLot]  # the lots the survivor gets, each with what was left in it

    @property
    def points(self) -> int:
        """Points moved, available and pending."""
        return self.survivor.points + self.survivor.pending


def moved_items(
    booked: Mapping[EventKey, Mapping[str, int]], event_types: Mapping[EventKey, str]
) -> list[dict[str, Any]]:
    """What the absorbed member's ledger booked, by event and rule, as transfer rule items."""
    return [
        {
            "rule": rule,
            "points": points,
            "moves": {"source": source, "event_id": event_id, "event_type": event_types.get((source, event_id))},
        }
        for (source, event_id), by_rule in booked.items()
        for rule, points in sorted(by_rule.items())
    ]


def transfer(survivor_id: str, absorbed: Balances, lots: list[OpenLot], moved: list[dict[str, Any]]) -> Transfer:
    """Everything `absorbed` holds, moved to `survivor_id`. The lots must hold what the balance
    row says (InvariantViolation otherwise: a merge never papers over a broken account)."""
    available = sum(lot.remaining for lot in lots if lot.pending_until is None)
    pending = sum(lot.remaining for lot in lots if lot.pending_until is not None)
    if (available, pending) != (absorbed.available, absorbed.pending):
        raise InvariantViolation(
            f"member {absorbed.member_id}: lots hold {available} available and {pending} pending, "
            f"the balance says {absorbed.available} and {absorbed.pending}"
        )
    merge = {"merge": {"survivor": survivor_id, "absorbed": absorbed.member_id}}

    def side(member_id: str, sign: int) -> TransferEntry:
        head = {**merge, "lifetime_points": sign * absorbed.lifetime}
        items = [head, *({**item, "points": sign * item["points"]} for item in moved)]
        return TransferEntry(member_id, sign * available, sign * pending, sign * absorbed.qualifying, items)

    return Transfer(
        absorbed=side(absorbed.member_id, -1),
        survivor=side(survivor_id, 1),
        emptied=[(lot.lot_id, lot.remaining) for lot in lots],
        copied=list(lots),
    )
