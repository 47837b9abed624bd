"""The batch path sends a fixed number of statements for a group of set-based events, whatever
the group's size: purchases, check-ins, signups and activities are applied with a handful of
statements over arrays. (Refunds, reviews and referrals still go statement by statement.)"""

from __future__ import annotations

import pytest
from sqlalchemy import text

from tests import factories as f
from tests.conftest import NOW, truncate_all
from tests.integration.test_event_time import PROGRAM
from tests.statements import count_statements
from worker.services import intake

PURCHASES_AND_CHECK_INS = ("purchase", "check_in")
ALL_SET_BASED = ("purchase", "check_in", "signup", "activity")


def group(kinds: tuple[str, ...], size: int) -> list[dict]:
    """`size` events of `kinds` in turn, for size // 2 members (two events each)."""
    events = []
    for i in range(size):
        kind, member_id = kinds[i % len(kinds)], f"SC{i % (size // 2):03d}"
        at = f"2026-11-{1 + i % 20:02d}T10:00:{i % 60:02d}+08:00"
        if kind == "purchase":
            events.append(f.purchase(member_id, "120.00", order_id=f"o-{i}", occurred_at=at, event_id=f"e-{i}"))
        elif kind == "check_in":
            events.append(f.check_in(member_id, at, event_id=f"e-{i}"))
        elif kind == "signup":
            events.append(f.signup(member_id, occurred_at=at, event_id=f"e-{i}", birthday="1990-05-05"))
        else:
            events.append(f.activity(member_id, "share", at, event_id=f"e-{i}"))
    return events


async def statements_for(db, kinds: tuple[str, ...], size: int):
    events = group(kinds, size)
    with count_statements(db) as counted:
        outcomes = await intake.process_batch(db, PROGRAM, events, now=NOW, strict=False)
    assert [o.status for o in outcomes] == ["applied"] * size
    return counted


@pytest.mark.parametrize(
    "kinds", [PURCHASES_AND_CHECK_INS, ALL_SET_BASED], ids=["purchases+check-ins", "all set-based"]
)
async def test_a_group_of_set_based_events_is_the_same_statements_for_10_and_50_events(db, kinds):
    small = await statements_for(db, kinds, 10)
    await truncate_all(db)
    large = await statements_for(db, kinds, 50)

    # The identities' look-up, the claims, the members' lock, the orders and purchase counts
    # read, the ids reserved and the one write of everything, whatever the size; with BEGIN,
    # COMMIT and the pool's liveness checks around them.
    assert [" ".join(s.split()[:2]) for s in small.queries] == [
        "SELECT member_id,",
        "INSERT INTO",
        "INSERT INTO",
        "SELECT o.member_id,",
        "SELECT member_id,",
        "SELECT nextval('ledger_entries_entry_id_seq'),",
        "WITH entries",
    ]
    assert (len(small), len(small.queries), len(small.pings)) == (17, 7, 2)
    assert large.sent == small.sent


async def test_the_counter_counts_statements_sent_through_sqlalchemy_and_through_the_driver(db):
    with count_statements(db) as counted:
        async with db.begin() as conn:
            await conn.execute(text("SELECT 1"))
            raw = (await conn.get_raw_connection()).driver_connection
            await raw.fetch("SELECT 2")
            await raw.execute("SELECT 3")

    assert counted.queries == ["SELECT 1", "SELECT 2", "SELECT 3"]
    assert counted.transaction_control[-1] == "COMMIT;"
