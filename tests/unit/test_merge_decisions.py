"""What a merge moves, decided on plain values (worker/domain/merges.py)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from worker.domain.errors import InvariantViolation
from worker.domain.merges import Balances, OpenLot, Transfer, TransferEntry, moved_items, transfer
from worker.domain.reevaluation import points_by_event

EARNED = datetime(2026, 10, 1, 2, 0, tzinfo=UTC)
EXPIRES = datetime(2027, 10, 1, 2, 0, tzinfo=UTC)
PENDING = datetime(2026, 10, 8, 2, 0, tzinfo=UTC)
LOTS = [OpenLot(11, 300, EARNED, EXPIRES, None), OpenLot(12, 50, EARNED, EXPIRES, PENDING)]
CARD = Balances("id-card", available=300, pending=50, qualifying=420, lifetime=500)
BOOKED = {("pos", "p-1"): {"base": 300, "first_purchase": 100}, ("app", "c-1"): {"check_in": 20}}
TYPES = {("pos", "p-1"): "purchase", ("app", "c-1"): "check_in"}


def test_the_absorbed_member_is_emptied_into_the_survivor_with_every_event_it_booked():
    moved = moved_items(BOOKED, TYPES)
    decided = transfer("M1001", CARD, LOTS, moved)

    merge = {"merge": {"survivor": "M1001", "absorbed": "id-card"}}
    assert decided == Transfer(
        absorbed=TransferEntry(
            "id-card",
            -300,
            -50,
            -420,
            [
                {**merge, "lifetime_points": -500},
                {
                    "rule": "base",
                    "points": -300,
                    "moves": {"source": "pos", "event_id": "p-1", "event_type": "purchase"},
                },
                {
                    "rule": "first_purchase",
                    "points": -100,
                    "moves": {"source": "pos", "event_id": "p-1", "event_type": "purchase"},
                },
                {
                    "rule": "check_in",
                    "points": -20,
                    "moves": {"source": "app", "event_id": "c-1", "event_type": "check_in"},
                },
            ],
        ),
        survivor=TransferEntry(
            "M1001",
            300,
            50,
            420,
            [
                {**merge, "lifetime_points": 500},
                {
                    "rule": "base",
                    "points": 300,
                    "moves": {"source": "pos", "event_id": "p-1", "event_type": "purchase"},
                },
                {
                    "rule": "first_purchase",
                    "points": 100,
                    "moves": {"source": "pos", "event_id": "p-1", "event_type": "purchase"},
                },
                {
                    "rule": "check_in",
                    "points": 20,
                    "moves": {"source": "app", "event_id": "c-1", "event_type": "check_in"},
                },
            ],
        ),
        emptied=[(11, 300), (12, 50)],
        copied=LOTS,
    )
    assert decided.points == 350


def test_the_survivors_entry_reads_back_as_what_the_absorbed_member_booked():
    decided = transfer("M1001", CARD, LOTS, moved_items(BOOKED, TYPES))
    entry = {"kind": "transfer", "rules": decided.survivor.rules, "source": "link", "event_id": "l-1"}

    assert points_by_event([entry]) == BOOKED


def test_a_balance_that_its_lots_do_not_hold_is_not_merged():
    with pytest.raises(
        InvariantViolation, match="member id-card: lots hold 300 available and 50 pending, the balance says 310 and 50"
    ):
        transfer("M1001", Balances("id-card", 310, 50, 420, 500), LOTS, [])
