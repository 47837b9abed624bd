"""Event time on the real PostgreSQL, through the real intake: a member's ledger is a function of
the set of their accepted events taken in occurrence order. The same events applied one by one
in occurrence order, and shuffled, duplicated and applied by 8 concurrent appliers, end with
the same balances, tiers, lots, rule counters, order rows, points per event and rule and
recorded outcomes (status and net points); and so do they shuffled, duplicated and sent as
concurrent batch messages."""

from __future__ import annotations

import asyncio
import random
import tomllib
from datetime import datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from sqlalchemy import text

from db.engine import create_engine
from tests import factories as f
from tests.conftest import NOW, truncate_all
from tests.ledger_views import earned_by_event
from worker.domain import engine as rule_engine
from worker.domain.engine.language import DEFAULT_PROGRAM_PATH
from worker.domain.program import DEFAULT_PROGRAM
from worker.domain.reevaluation import points_by_event
from worker.services import intake, ledger, member_reads, members
from worker.services.audit import audit_all

MEMBER, REFEREES = "EA", ("ER1", "ER2")
START = NOW - timedelta(days=30)
LANES = 8
SHARE_RULE = """
[[rules]]
id = "share"
on = "activity"
when = { kinds = ["share"] }
effect = { kind = "fixed", points = 5 }
limits = [{ per = "day", count = 3 }]
"""
PROGRAM = rule_engine.with_rules(
    DEFAULT_PROGRAM,
    rule_engine.parse_engine_program(
        tomllib.loads(DEFAULT_PROGRAM_PATH.read_text() + SHARE_RULE), version="event-time-1"
    ),
)

day = st.integers(min_value=0, max_value=9)
hour = st.integers(min_value=0, max_value=23)
op = st.one_of(
    # Purchases of 10.00 to 3,000.00: a few cross Silver (1,000) and Gold (5,000).
    st.tuples(st.just("purchase"), day, hour, st.integers(min_value=1_000, max_value=300_000)),
    st.tuples(
        st.just("refund"), st.integers(min_value=0, max_value=5), day, hour, st.integers(min_value=10, max_value=100)
    ),
    st.tuples(st.just("check_in"), day, hour),
    st.tuples(st.just("review"), st.integers(min_value=0, max_value=5), day, hour, st.booleans()),
    st.tuples(st.just("activity"), day, hour),
    st.tuples(st.just("signup"), day, hour),
    st.tuples(st.just("referral"), st.integers(min_value=0, max_value=1), day, hour),
)


def _at(d: int, h: int, i: int) -> str:
    return (START + timedelta(days=d, hours=h, seconds=i)).isoformat()


def build(ops: list[tuple]) -> list[dict]:
    """Events for one member (and the referees' bonuses) from ops; refunds and reviews name the
    k-th purchase's order, and may occur before it."""
    purchases = [i for i, o in enumerate(ops) if o[0] == "purchase"]
    events: list[dict] = []
    referred: set[str] = set()
    for i, o in enumerate(ops):
        kind, eid = o[0], f"e-{i:02d}"
        if kind == "purchase":
            events.append(
                f.purchase(
                    MEMBER,
                    f"{o[3] // 100}.{o[3] % 100:02d}",
                    order_id=f"o-{i}",
                    occurred_at=_at(o[1], o[2], i),
                    event_id=eid,
                )
            )
        elif kind == "refund":
            k = purchases[o[1]] if o[1] < len(purchases) else None
            if k is None:
                continue
            cents = max(1, ops[k][3] * o[4] // 200)  # 5% to 50% of the order
            events.append(
                f.refund(
                    MEMBER,
                    f"o-{k}",
                    f"{cents // 100}.{cents % 100:02d}",
                    refund_id=f"r-{i}",
                    occurred_at=_at(o[2], o[3], i),
                    event_id=eid,
                )
            )
        elif kind == "check_in":
            events.append(f.check_in(MEMBER, _at(o[1], o[2], i), event_id=eid))
        elif kind == "review":
            k = purchases[o[1]] if o[1] < len(purchases) else i
            events.append(
                f.review(MEMBER, f"o-{k}", f"sku-{i}", has_media=o[4], occurred_at=_at(o[2], o[3], i), event_id=eid)
            )
        elif kind == "activity":
            share = f.event("activity", MEMBER, _at(o[1], o[2], i), event_id=eid, source="app")
            share["payload"] = {"kind": "share"}
            events.append(share)
        elif kind == "signup":
            events.append(
                f.signup(
                    MEMBER,
                    occurred_at=_at(o[1], o[2], i),
                    event_id=eid,
                    source="app",
                    birthday=(START + timedelta(days=o[1])).date().replace(year=1990).isoformat(),
                )
            )
        else:
            referee = REFEREES[o[1]]
            if referee in referred:  # one referrer per referee: who wins is a cross-member decision
                continue
            referred.add(referee)
            events.append(f.referral(MEMBER, referee, occurred_at=_at(o[2], o[3], i), event_id=eid, source="app"))
    return events


def occurrence(event: dict) -> tuple:
    return (datetime.fromisoformat(event["occurred_at"]), event["source"], event["event_id"])


async def apply_all(db, events: list[dict], lanes: int = 1) -> None:
    queue: asyncio.Queue = asyncio.Queue()
    for event in events:
        queue.put_nowait(event)

    async def lane() -> None:
        while not queue.empty():
            outcome = await intake.process(db, PROGRAM, dict(queue.get_nowait()), now=NOW, strict=True)
            assert outcome.status in ("applied", "deferred", "duplicate"), outcome

    await asyncio.gather(*(lane() for _ in range(lanes)))


async def apply_batches(db, events: list[dict], rng: random.Random, lanes: int) -> None:
    """The events as batch messages of 1 to 8 events, applied by concurrent appliers: each batch
    is one group transaction (worker/services/group_apply.py)."""
    queue: asyncio.Queue = asyncio.Queue()
    start = 0
    while start < len(events):
        size = rng.randint(1, 8)
        queue.put_nowait([dict(e) for e in events[start : start + size]])
        start += size

    async def lane() -> None:
        while not queue.empty():
            outcomes = await intake.process_batch(db, PROGRAM, queue.get_nowait(), now=NOW, strict=True)
            assert all(o.status in ("applied", "deferred", "duplicate") for o in outcomes), outcomes

    await asyncio.gather(*(lane() for _ in range(lanes)))


async def state(db) -> dict[str, Any]:
    """Everything judged, per member: no ids, no wall-clock times, no entry or lot counts
    (corrections add entries whose number depends on the arrival order)."""
    async with db.connect() as conn:

        async def q(sql: str) -> list:
            return [tuple(r) for r in (await conn.execute(text(sql))).all()]

        entries = (
            (
                await conn.execute(
                    text(
                        "SELECT member_id, source, event_id, kind, qualifying_points, rules FROM ledger_entries ORDER BY entry_id"
                    )
                )
            )
            .mappings()
            .all()
        )
        by_member: dict[str, list] = {}
        for row in entries:
            by_member.setdefault(row["member_id"], []).append(row)
        return {
            "members": await q(
                "SELECT member_id, tier, available_points, pending_points, qualifying_points, "
                "lifetime_points, birthday, signed_up_at, first_purchase_at, rule_state "
                "FROM members ORDER BY member_id"
            ),
            "points": {m: points_by_event(rows) for m, rows in sorted(by_member.items())},
            "lots": await q("SELECT member_id, sum(remaining) FROM lots GROUP BY member_id ORDER BY member_id"),
            "orders": await q(
                "SELECT member_id, order_id, amount, points_earned, points_reversed, refunded_amount "
                "FROM orders ORDER BY member_id, order_id"
            ),
            "refunds": await q("SELECT order_id, refund_id, status, points_reversed FROM refunds ORDER BY 1, 2"),
            "reviews": await q("SELECT order_id, sku, status FROM reviews ORDER BY 1, 2"),
            # Each event's recorded outcome and net points, as the API reads them
            "processed": await q(
                "SELECT source, event_id, status, coalesce((result ->> 'points')::bigint, 0) FROM processed_events "
                "ORDER BY 1, 2"
            ),
        }


async def scenario(url: str, ops: list[tuple], seed: int) -> tuple[dict, dict, dict]:
    db = create_engine(url, pool_size=LANES, max_overflow=2)
    try:
        events = build(ops)
        await truncate_all(db)
        await apply_all(db, sorted(events, key=occurrence))
        in_order = await state(db)
        assert (await audit_all(db)).clean

        await truncate_all(db)
        rng = random.Random(seed)
        delivered = events + rng.sample(events, len(events) // 2)  # at least once: some twice
        rng.shuffle(delivered)
        await apply_all(db, delivered, lanes=LANES)
        shuffled = await state(db)
        report = await audit_all(db)
        assert report.clean, [str(d) for d in report.differences]

        await truncate_all(db)
        rng.shuffle(delivered)
        await apply_batches(db, delivered, rng, lanes=LANES)
        batched = await state(db)
        report = await audit_all(db)
        assert report.clean, [str(d) for d in report.differences]
        return in_order, shuffled, batched
    finally:
        await db.dispose()


@hsettings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(op, min_size=2, max_size=22), st.integers(min_value=0, max_value=2**16))
def test_shuffled_duplicated_concurrent_delivery_gives_the_in_order_ledger(database_url, ops, seed):
    in_order, shuffled, batched = asyncio.run(scenario(database_url, ops, seed))
    assert shuffled == in_order
    assert batched == in_order


# Found by the property above with the re-evaluation switched off: a purchase that arrives
# after a later one takes neither the first-purchase bonus nor its place before the tier.
LATE_FIRST_PURCHASE = [
    ("purchase", 1, 10, 150_000),
    ("purchase", 0, 10, 10_000),
    ("check_in", 2, 9),
    ("check_in", 1, 9),
    ("review", 0, 3, 12, True),
]


def test_without_the_re_evaluation_arrival_order_shows(database_url, monkeypatch):
    monkeypatch.setattr(ledger, "REEVALUATE", False)
    in_order, reverse = asyncio.run(scenario_fixed(database_url, LATE_FIRST_PURCHASE, reverse=True))
    assert reverse != in_order


def test_with_it_the_same_reverse_delivery_gives_the_in_order_ledger(database_url):
    in_order, reverse = asyncio.run(scenario_fixed(database_url, LATE_FIRST_PURCHASE, reverse=True))
    assert reverse == in_order


async def scenario_fixed(url: str, ops: list[tuple], reverse: bool) -> tuple[dict, dict]:
    """`scenario` with the events delivered in reverse occurrence order, one at a time."""
    db = create_engine(url, pool_size=2, max_overflow=0)
    try:
        events = sorted(build(ops), key=occurrence)
        await truncate_all(db)
        await apply_all(db, events)
        in_order = await state(db)
        await truncate_all(db)
        await apply_all(db, list(reversed(events)) if reverse else events)
        return in_order, await state(db)
    finally:
        await db.dispose()


async def test_a_late_first_purchase_moves_the_bonus_and_re_earns_the_later_purchase_at_its_tier(db):
    # Given a purchase of 1,500.00 on day 1 and one of 100.00 on day 0 that arrives after it.
    events = sorted(build(LATE_FIRST_PURCHASE[:2]), key=occurrence)
    for event in reversed(events):
        assert (await intake.process(db, PROGRAM, event, now=NOW, strict=True)).status == "applied"

    # Then the bonus is the day-0 purchase's, and the day-1 purchase earned at Regular (the
    # day-0 purchase brought 200 qualifying points, under Silver): 1500, as in occurrence order.
    assert await earned_by_event(db, MEMBER) == {"e-01": 200, "e-00": 1500}
    view = await members.member_view(db, PROGRAM, MEMBER)
    assert (view["tier"], view["available_points"], view["qualifying_points"]) == ("Silver", 1700, 1700)
    async with db.connect() as conn:
        entries = (
            await conn.execute(
                text(
                    "SELECT event_id, kind, points, rules -> 0 ->> 'note' FROM ledger_entries WHERE member_id = :m "
                    "ORDER BY entry_id"
                ),
                {"m": MEMBER},
            )
        ).all()
        adjusted = (
            await conn.execute(
                text("SELECT params FROM notifications WHERE member_id = :m AND kind = 'points_adjusted'"),
                {"m": MEMBER},
            )
        ).all()
    assert [tuple(e) for e in entries] == [
        ("e-00", "earn", 1600, None),  # arrived first: 1500 at Regular and the first-purchase bonus
        ("e-01", "earn", 120, None),  # the late one on the fast path: at Silver, no bonus
        ("e-01", "earn", 100, "purchase e-01 re-earned in its place in occurrence order: +80"),
        ("e-01", "reverse", -20, "purchase e-01 re-earned in its place in occurrence order: +80"),
        ("e-01", "reverse", -100, "purchase e-00 re-earned after the late purchase e-01: -100"),
    ]
    assert adjusted == [({"points": "-20", "available_points": 1700, "late_event_id": "e-01"},)]


async def test_after_a_late_first_purchase_each_purchase_reads_its_net_points(db):
    # Given the day-1 purchase applied with the first-purchase bonus (1600), then the day-0 one
    events = sorted(build(LATE_FIRST_PURCHASE[:2]), key=occurrence)
    for event in reversed(events):
        assert (await intake.process(db, PROGRAM, event, now=NOW, strict=True)).status == "applied"

    # Then each reads what the ledger has for it once the bonus moved: 1500 and 200, as in order
    async with db.connect() as conn:
        read = {e: await member_reads.recorded_outcome(conn, "pos", e) for e in ("e-00", "e-01")}
    assert {e: (o["status"], o["points"], o["reason"]) for e, o in read.items()} == {
        "e-00": ("applied", 1500, None),
        "e-01": ("applied", 200, None),
    }


@pytest.mark.parametrize("delivered", ["in_order", "reversed"])
async def test_seven_daily_check_ins_pay_the_streak_whatever_the_order(db, delivered):
    events = [f.check_in(MEMBER, _at(d, 9, d), event_id=f"ci-{d}") for d in range(7)]
    for event in events if delivered == "in_order" else reversed(events):
        await intake.process(db, PROGRAM, event, now=NOW, strict=True)

    # 7 x 10 and the 50-point bonus on the 7th day, as in occurrence order.
    assert await earned_by_event(db, MEMBER) == {**{f"ci-{d}": 10 for d in range(6)}, "ci-6": 60}
    assert (await audit_all(db)).clean


DOUBLE = (
    DEFAULT_PROGRAM_PATH.read_text()
    .replace('version = "default-1"', 'version = "double-1"')
    .replace(
        'effect = { kind = "per_amount", rate = "1", unit = "1", rounding = "floor" }',
        'effect = { kind = "per_amount", rate = "2", unit = "1", rounding = "floor" }',
    )
)


async def test_a_re_evaluation_decides_each_event_by_the_version_in_force_at_its_time(db):
    from worker.services.program_versions import publish, timeline_in_force

    # Given the built-in program published as a version from the start, a version earning 2
    # points per 1.00 from day 1, a purchase of day 0, one of day 2, and one of day 1 that
    # arrives last, all processed once both versions are in force.
    await publish(db, DEFAULT_PROGRAM_PATH.read_text(), "default.toml", by="test", now=START, effective_from=START)
    await publish(db, DOUBLE, "double.toml", by="test", now=START, effective_from=START + timedelta(days=1))
    timeline = await timeline_in_force(db, DEFAULT_PROGRAM, NOW)
    first, late, last = (f.purchase(MEMBER, "100.00", occurred_at=_at(d, 10, 0), event_id=f"v-{d}") for d in (0, 1, 2))
    assert (await intake.process(db, timeline, first, now=NOW, strict=True)).points == 200  # 100 + the bonus
    assert (await intake.process(db, timeline, last, now=NOW, strict=True)).points == 200
    assert (await intake.process(db, timeline, late, now=NOW, strict=True)).points == 200

    # Then the re-evaluation decides each event by the version in force when it occurred,
    # though the doubling version was in force when all of them were processed: it books no
    # correction.
    assert await earned_by_event(db, MEMBER) == {"v-0": 200, "v-1": 200, "v-2": 200}
    async with db.connect() as conn:
        versions = (
            await conn.execute(
                text(
                    "SELECT event_id, program_version, result -> 're_evaluated' ->> 'corrected_events' "
                    "FROM processed_events WHERE member_id = :m ORDER BY event_id"
                ),
                {"m": MEMBER},
            )
        ).all()
    assert [tuple(v) for v in versions] == [
        ("v-0", "default-1", None),
        ("v-1", "double-1", "0"),
        ("v-2", "double-1", None),
    ]
