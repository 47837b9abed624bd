"""The batch path sends a fixed number of statements for a group of set-based events, whatever
the group's size: purchases, refunds, reviews, check-ins, signups and activities are applied
with a handful of statements over arrays. (Referrals, redemptions and identity links still go
statement by statement.)"""

from __future__ import annotations

import pytest
from sqlalchemy import text

from tests import factories as f
from tests.conftest import NOW, truncate_all
from tests.integration.test_event_time import PROGRAM
from tests.statements import count_statements
from worker.services import audit, intake

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


def orders_group(members: range) -> tuple[list[dict], list[dict]]:
    """For each member: what is there before (a purchase, and a refund and a review waiting for
    an order not bought yet), and a group of six events that reads and moves all of it: a
    review before its purchase, the purchase (rewarding it), a refund of that purchase in the
    same group, a refund of the earlier purchase (taking from a lot the group did not write),
    the purchase the earlier refund and review wait for, and a check-in."""
    before, group = [], []
    for n in members:
        m = f"OR{n:03d}"
        before += [
            f.purchase(m, "300.00", order_id=f"p-{n}", occurred_at="2026-11-01T10:00:00+08:00", event_id=f"b1-{n}"),
            f.refund(
                m, f"x-{n}", "50.00", refund_id=f"rx-{n}", occurred_at="2026-11-02T10:00:00+08:00", event_id=f"b2-{n}"
            ),
            f.review(m, f"x-{n}", "sku-x", occurred_at="2026-11-02T11:00:00+08:00", event_id=f"b3-{n}"),
        ]
        group += [
            f.review(m, f"w-{n}", "sku-w", has_media=True, occurred_at="2026-11-03T09:00:00+08:00", event_id=f"g1-{n}"),
            f.purchase(m, "200.00", order_id=f"w-{n}", occurred_at="2026-11-03T10:00:00+08:00", event_id=f"g2-{n}"),
            f.refund(
                m, f"w-{n}", "100.00", refund_id=f"rw-{n}", occurred_at="2026-11-03T11:00:00+08:00", event_id=f"g3-{n}"
            ),
            f.refund(
                m, f"p-{n}", "300.00", refund_id=f"rp-{n}", occurred_at="2026-11-03T12:00:00+08:00", event_id=f"g4-{n}"
            ),
            f.purchase(m, "100.00", order_id=f"x-{n}", occurred_at="2026-11-03T13:00:00+08:00", event_id=f"g5-{n}"),
            f.check_in(m, "2026-11-03T14:00:00+08:00", event_id=f"g6-{n}"),
        ]
    return before, group


async def orders_statements(db, members: int):
    before, events = orders_group(range(members))
    assert all(o.status in ("applied", "deferred") for o in await intake.process_batch(db, PROGRAM, before, now=NOW))
    with count_statements(db) as counted:
        outcomes = await intake.process_batch(db, PROGRAM, events, now=NOW, strict=False)
    assert [o.status for o in outcomes] == ["deferred", "applied", "applied", "applied", "applied", "applied"] * members
    return counted


async def test_a_group_of_purchases_refunds_and_reviews_is_the_same_statements_for_12_and_60_events(db):
    small = await orders_statements(db, 2)
    await truncate_all(db)
    large = await orders_statements(db, 10)

    # As above, and the refunds and reviews waiting for the orders read, and the open lots of
    # the members whose refunds take points back.
    assert [" ".join(s.split()[:2]) for s in small.queries] == [
        "SELECT member_id,",
        "INSERT INTO",
        "INSERT INTO",
        "SELECT o.member_id,",
        "SELECT r.member_id,",
        "SELECT v.member_id,",
        "SELECT member_id,",
        "SELECT member_id,",
        "SELECT nextval('ledger_entries_entry_id_seq'),",
        "WITH entries",
    ]
    assert large.sent == small.sent


async def test_a_group_of_purchases_refunds_and_reviews_writes_what_one_event_at_a_time_writes(db):
    """The same events applied one by one, each in its own transaction, and as one group: the
    same balances, lots, entries, orders, refunds, reviews and outcomes."""
    before, events = orders_group(range(3))

    async def rows() -> dict:
        async with db.connect() as conn:

            async def q(sql: str) -> list:
                return [tuple(r) for r in (await conn.execute(text(sql))).all()]

            return {
                "members": await q(
                    "SELECT member_id, tier, available_points, pending_points, qualifying_points, lifetime_points,"
                    " qualifying_amount FROM members ORDER BY 1"
                ),
                "entries": await q(
                    "SELECT member_id, kind, points, pending_points, qualifying_points, source, event_id, rules::text"
                    " FROM ledger_entries ORDER BY member_id, event_id, kind"
                ),
                "lots": await q(
                    "SELECT l.member_id, e.event_id, l.points, l.remaining, l.expires_at, l.pending_until"
                    " FROM lots l JOIN ledger_entries e USING (entry_id) ORDER BY 1, 2"
                ),
                "takes": await q(
                    "SELECT e.event_id, le.event_id, t.points FROM lot_takes t"
                    " JOIN ledger_entries e ON e.entry_id = t.entry_id"
                    " JOIN lots l ON l.lot_id = t.lot_id JOIN ledger_entries le ON le.entry_id = l.entry_id"
                    " ORDER BY 1, 2"
                ),
                "orders": await q(
                    "SELECT o.member_id, o.order_id, o.amount, o.points_earned, o.points_reversed, o.refunded_amount,"
                    " o.bonus_points, o.bonus_reversed, e.event_id FROM orders o"
                    " LEFT JOIN lots l ON l.lot_id = o.lot_id LEFT JOIN ledger_entries e ON e.entry_id = l.entry_id"
                    " ORDER BY 1, 2"
                ),
                "refunds": await q(
                    "SELECT member_id, order_id, refund_id, status, points_reversed FROM refunds ORDER BY 1, 2, 3"
                ),
                "reviews": await q("SELECT member_id, order_id, sku, review_id, status FROM reviews ORDER BY 1, 2, 3"),
                "outcomes": await q(
                    "SELECT source, event_id, status, result - 'lot_id' FROM processed_events ORDER BY 1, 2"
                ),
            }

    for raw in before + events:
        await intake.process(db, PROGRAM, dict(raw), now=NOW, strict=True)
    one_by_one = await rows()
    await truncate_all(db)
    await intake.process_batch(db, PROGRAM, before, now=NOW, strict=True)
    await intake.process_batch(db, PROGRAM, events, now=NOW, strict=True)
    grouped = await rows()

    for name in one_by_one:
        assert (name, [r for r in grouped[name] if r not in one_by_one[name]]) == (name, [])
    assert grouped == one_by_one
    assert (await audit.audit_all(db)).clean
    # What the group moved, exactly: the review rewarded by its purchase, the refunds taking back.
    assert one_by_one["refunds"][:3] == [
        ("OR000", "p-0", "rp-0", "applied", 400),  # its first-purchase bonus too
        ("OR000", "w-0", "rw-0", "applied", 100),
        ("OR000", "x-0", "rx-0", "applied", 50),
    ]
    assert [r[:5] for r in one_by_one["reviews"][:2]] == [
        ("OR000", "w-0", "sku-w", one_by_one["reviews"][0][3], "applied"),
        ("OR000", "x-0", "sku-x", one_by_one["reviews"][1][3], "applied"),
    ]


def referrals_group(members: int) -> list[dict]:
    """Each member checks in, refers a new member, refers the next member's referee too (which
    only one of the two referrals wins) and buys."""
    events = []
    for n in range(members):
        m, at = f"RR{n:03d}", "2026-11-03T1{}:00:00+08:00"
        events += [
            f.check_in(m, at.format(0), event_id=f"c-{n}"),
            f.referral(m, f"RE{n:03d}", occurred_at=at.format(1), event_id=f"r1-{n}"),
            f.referral(m, f"RE{(n + 1) % members:03d}", occurred_at=at.format(2), event_id=f"r2-{n}"),
            f.purchase(m, "100.00", order_id=f"o-{n}", occurred_at=at.format(3), event_id=f"p-{n}"),
        ]
    return events


async def test_a_batch_of_referrals_is_the_same_statements_for_12_and_60_events(db):
    """The referrals decided for the whole group, their referee bonuses applied as groups of
    their own, and the referrer checks asked all at once."""

    async def counted(members: int):
        with count_statements(db) as statements:
            outcomes = await intake.process_batch(db, PROGRAM, referrals_group(members), now=NOW)
        assert [o.status for o in outcomes] == ["applied"] * 4 * members
        return statements

    small = await counted(3)
    async with db.connect() as conn:
        paid = (await conn.execute(text("SELECT count(*) FROM referrals"))).scalar_one()
        bonuses = (
            await conn.execute(text("SELECT count(*) FROM ledger_entries WHERE event_type = 'referral_referee'"))
        ).scalar_one()
    assert (paid, bonuses) == (3, 3)
    await truncate_all(db)
    large = await counted(15)

    assert large.sent == small.sent
    assert [" ".join(s.split()[:2]) for s in small.queries] == [
        "SELECT member_id,",
        "INSERT INTO",
        "INSERT INTO",
        # The referrals' locks on their referees and referrers, in one order for every group.
        "SELECT count(pg_advisory_xact_lock(k))",
        "SELECT o.member_id,",
        "SELECT member_id,",
        "SELECT nextval('ledger_entries_entry_id_seq'),",
        "WITH RECURSIVE",
        "SELECT referee_member_id,",
        "INSERT INTO",
        "SELECT k.i,",
        "WITH entries",
        # The referee bonuses: their identities, then a group of their own.
        "SELECT member_id,",
        "INSERT INTO",
        "INSERT INTO",
        "SELECT nextval('ledger_entries_entry_id_seq'),",
        "SELECT referee_member_id,",
        "SELECT k.i,",
        "WITH entries",
        # The referrer checks: none is due, the referees being new.
        "SELECT referee_member_id,",
        "SELECT k.i,",
    ]


async def test_a_group_mixing_every_set_based_type_is_the_same_statements_for_any_size(db):
    """Purchases, refunds, reviews, referrals, check-ins, signups and activities in one batch."""

    async def counted(members: int):
        before, orders = orders_group(range(members))
        await intake.process_batch(db, PROGRAM, before, now=NOW)
        events = orders + referrals_group(members) + group(ALL_SET_BASED, 2 * members)
        with count_statements(db) as statements:
            outcomes = await intake.process_batch(db, PROGRAM, events, now=NOW)
        assert sorted(o.status for o in outcomes) == ["applied"] * 11 * members + ["deferred"] * members
        return statements

    small = await counted(2)
    await truncate_all(db)
    large = await counted(10)

    assert large.sent == small.sent
    # The group's 15 (identities, claims, lock, referral locks, orders, waiting refunds and
    # reviews, purchase counts, lots, ids, chains, referrals recorded, referrals claimed,
    # referee facts, write),
    # the referee bonuses' group's 7 and the referrer checks' 2.
    assert len(small.queries) == 24


async def test_the_counter_counts_statements_sent_through_sqlalchemy_and_through_the_driver(db):
    with count_statements(db) as counted:
        async with db.begin() as conn:
            await conn.execute(text("SELECT 1"))
            raw = (await conn.get_raw_connection()).driver_connection
            await raw.fetch("SELECT 2")
            await raw.execute("SELECT 3")

    assert counted.queries == ["SELECT 1", "SELECT 2", "SELECT 3"]
    assert counted.transaction_control[-1] == "COMMIT;"
