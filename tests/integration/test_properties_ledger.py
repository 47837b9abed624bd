"""Property tests on real PostgreSQL: random event sequences for random members, applied
through the intake service, keep every ledger invariant; replaying them changes nothing."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import pool, text

from db.engine import create_engine
from tests import factories as f
from tests.conftest import NOW, truncate_all
from tests.fault.workload import snapshot
from worker.domain import tiers
from worker.domain.program import DEFAULT_PROGRAM
from worker.services import intake
from worker.services.audit import audit_all

MEMBERS = ("P1", "P2", "P3")
START = datetime(2026, 9, 1, 1, 0, tzinfo=UTC)

op = st.tuples(
    st.sampled_from(
        ("purchase", "purchase", "purchase", "refund", "refund", "signup", "check_in", "review", "referral")
    ),
    st.integers(0, len(MEMBERS) - 1),  # member
    st.integers(1, 400_000),  # amount in cents
    st.integers(0, 5),  # order number
    st.integers(0, 80),  # day offset
    st.integers(0, len(MEMBERS) - 1),  # other member (referee)
)


def _events(ops) -> list[dict]:
    events = []
    for n, (kind, m, amount_cents, order, day, other) in enumerate(ops):
        member, at = MEMBERS[m], (START + timedelta(days=day, minutes=n)).isoformat()
        amount = f"{Decimal(amount_cents) / 100:.2f}"
        order_id = f"o-{member}-{order}"
        if kind == "purchase":
            events.append(f.purchase(member, amount, order_id=order_id, occurred_at=at, event_id=f"e{n}"))
        elif kind == "refund":
            events.append(f.refund(member, order_id, amount, refund_id=f"r{n}", occurred_at=at, event_id=f"e{n}"))
        elif kind == "signup":
            events.append(f.signup(member, birthday="1990-10-15", occurred_at=at, event_id=f"e{n}"))
        elif kind == "check_in":
            events.append(f.check_in(member, at, event_id=f"e{n}"))
        elif kind == "review":
            events.append(f.review(member, order_id, "sku-1", has_media=day % 2 == 0, occurred_at=at, event_id=f"e{n}"))
        else:
            referee = MEMBERS[(m + 1 + other % 2) % len(MEMBERS)]  # never the member itself
            events.append(f.referral(member, referee, occurred_at=at, event_id=f"e{n}"))
    return events


_INVARIANTS = text(
    """
    SELECT m.member_id, m.tier, m.available_points, m.pending_points, m.qualifying_points,
           coalesce((SELECT sum(remaining) FROM lots l WHERE l.member_id = m.member_id AND pending_until IS NULL), 0) AS lots,
           coalesce((SELECT sum(points) FROM ledger_entries e WHERE e.member_id = m.member_id AND kind = 'earn'), 0) AS earned,
           coalesce((SELECT -sum(points) FROM ledger_entries e WHERE e.member_id = m.member_id AND kind = 'reverse'), 0) AS reversed
    FROM members m
    """
)
_ORDERS = text("SELECT count(*) FROM orders WHERE amount IS NOT NULL AND points_reversed > points_earned")


async def _check(database_url: str, events: list[dict]) -> None:
    engine = create_engine(database_url, poolclass=pool.NullPool)
    try:
        await truncate_all(engine)
        for event in events:
            outcome = await intake.process(engine, DEFAULT_PROGRAM, event, now=NOW, strict=True)
            assert outcome.status in ("applied", "deferred", "rejected"), outcome
            # Rejected only for a reused event id, or a referral back up the chain (never paid).
            assert (
                outcome.status != "rejected"
                or outcome.reason.startswith("event_id")
                or outcome.reason.endswith("referrals cannot be mutual or circular")
            ), outcome.reason
        async with engine.connect() as conn:
            rows = (await conn.execute(_INVARIANTS)).all()
            assert (await conn.execute(_ORDERS)).scalar_one() == 0
        for row in rows:
            assert row.available_points >= 0 and row.pending_points >= 0
            assert row.available_points == row.lots
            rank = DEFAULT_PROGRAM.tier_rank
            assert rank(row.tier) >= rank(tiers.tier_for(DEFAULT_PROGRAM, row.qualifying_points).name)
            assert 0 <= row.reversed <= row.earned
        assert (await audit_all(engine)).clean
        before = await snapshot(engine)
        replay = [await intake.process(engine, DEFAULT_PROGRAM, dict(e), now=NOW, strict=True) for e in events]
        assert {o.status for o in replay} <= {"duplicate", "rejected"}
        assert await snapshot(engine) == before
    finally:
        await engine.dispose()


@settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
@given(ops=st.lists(op, min_size=1, max_size=25))
def test_random_sequences_keep_every_invariant_and_replay_changes_nothing(database_url, ops):
    asyncio.run(_check(database_url, _events(ops)))
