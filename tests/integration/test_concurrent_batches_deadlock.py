"""Concurrent groups take their locks in one order and cannot deadlock: batch messages and
group commits that share members, event keys (a redelivered event in two messages at once),
referees and identities, applied at the same time, never meet PostgreSQL's deadlock error
(SQLSTATE 40P01), which only a redelivery would recover from."""

from __future__ import annotations

import asyncio
import random
from datetime import timedelta

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from tests import factories as f
from tests.conftest import NOW
from worker.domain.mall import parse_catalog
from worker.domain.program import DEFAULT_PROGRAM
from worker.services import intake, mall
from worker.services.audit import audit_all
from worker.services.group_commit import GroupCommit

DEADLOCK = "40P01"
ROUNDS = 12
LANES = 4
START = NOW - timedelta(days=5)
OK = ("applied", "deferred", "duplicate")


def _at(minutes: int) -> str:
    return (START + timedelta(minutes=minutes)).isoformat()


def link(member_id: str, at: str, event_id: str, phone: str) -> dict:
    built = f.event("identity_link", member_id, at, event_id=event_id, source="app")
    built["payload"] = {"kind": "phone", "value": phone}
    return built


def round_events(r: int) -> tuple[list[list[dict]], dict[str, str]]:
    """Round `r`'s messages (each event in one or two of them) and the referrer each referee
    ends with: four members with purchases and check-ins, phones linked to them, and four
    referrals that cross: in member-id order one message meets referee X before Y, the other
    Y before X, and each referee is referred twice."""
    rng = random.Random(r)
    a, b, c, d = (f"R{r:02d}{name}" for name in "ABCD")
    x, y = f"R{r:02d}X", f"R{r:02d}Y"
    events = []
    for n, m in enumerate((a, b, c, d)):
        events.append(f.purchase(m, "120.00", order_id=f"o-{m}", occurred_at=_at(n), event_id=f"p-{m}"))
        events.append(f.check_in(m, _at(10 + n), event_id=f"c-{m}"))
        events.append(link(m, _at(20 + n), f"l-{m}", f"+8613{r:03d}{n:05d}"))
    crossing = [
        [
            f.referral(a, x, occurred_at=_at(30), event_id=f"rf-{a}"),
            f.referral(c, y, occurred_at=_at(31), event_id=f"rf-{c}"),
        ],
        [
            f.referral(b, y, occurred_at=_at(32), event_id=f"rf-{b}"),
            f.referral(d, x, occurred_at=_at(33), event_id=f"rf-{d}"),
        ],
    ]
    messages: list[list[dict]] = [[] for _ in range(LANES)]
    for event in events:
        for lane in rng.sample(range(LANES), rng.choice((1, 2))):
            messages[lane].append(dict(event))
    for message in messages:
        rng.shuffle(message)
    return [*crossing, *messages], {x: a, y: c}


async def _deliver(apply, counted: list[int]) -> list:
    """A message applied until it is not stopped by a deadlock, as the queue redelivers it;
    each deadlock counted."""
    while True:
        try:
            return await apply()
        except DBAPIError as error:
            if getattr(error.orig, "sqlstate", None) != DEADLOCK:
                raise
            counted.append(1)


async def _referrers(db) -> dict[str, str]:
    async with db.connect() as conn:
        rows = await conn.execute(text("SELECT referee_member_id, referrer_member_id FROM referrals"))
        return dict(rows.all())


async def test_concurrent_batch_messages_never_deadlock(db):
    deadlocks: list[int] = []
    referred: dict[str, str] = {}
    for r in range(ROUNDS):
        messages, _ = round_events(r)
        results = await asyncio.gather(
            *(
                _deliver(lambda m=m: intake.process_batch(db, DEFAULT_PROGRAM, m, now=NOW, strict=True), deadlocks)
                for m in messages
            )
        )
        assert [o.status for outcomes in results for o in outcomes if o.status not in OK] == []
        referred.update(round_events(r)[1])

    assert len(deadlocks) == 0
    # Each referee went to the referrer whose referral occurred first... or to whichever committed
    # first: either way one referrer per referee, and the ledger balances.
    assert sorted(await _referrers(db)) == sorted(referred)
    assert (await audit_all(db)).clean


async def test_concurrent_one_event_messages_in_group_commits_never_deadlock(db):
    deadlocks: list[int] = []
    groups = [GroupCommit(db, group_max=8, wait_ms=2, concurrency=2, strict=True) for _ in range(2)]
    try:
        for r in range(ROUNDS):
            messages, _ = round_events(100 + r)

            async def lane(n: int, message: list[dict]) -> list:
                group = groups[n % len(groups)]
                return [
                    await _deliver(
                        lambda raw=raw: intake.process(
                            db, DEFAULT_PROGRAM, raw, now=NOW, strict=True, apply=group.apply
                        ),
                        deadlocks,
                    )
                    for raw in message
                ]

            results = await asyncio.gather(*(lane(n, m) for n, m in enumerate(messages)))
            assert [o.status for outcomes in results for o in outcomes if o.status not in OK] == []
    finally:
        for group in groups:
            await group.stop()

    assert len(deadlocks) == 0
    assert (await audit_all(db)).clean


REWARDS = [
    {"reward_id": "rw-a", "name": "Cup", "cost_points": 10, "min_tier": "Regular", "stock": 1000},
    {"reward_id": "rw-b", "name": "Pen", "cost_points": 10, "min_tier": "Regular", "stock": 1000},
]


async def test_concurrent_batches_redeeming_rewards_in_crossing_orders_never_deadlock(db):
    """Two messages each redeem both rewards, one rw-b before rw-a (in member-id order), the
    other rw-a before rw-b: each reward row is locked by the redemption that takes its stock."""
    await mall.load_rewards(db, parse_catalog({"reward": REWARDS}, DEFAULT_PROGRAM))
    deadlocks: list[int] = []
    for r in range(ROUNDS):
        a, b, c, d = (f"W{r:02d}{name}" for name in "ABCD")
        funded = [f.purchase(m, "120.00", occurred_at=_at(n), event_id=f"p-{m}") for n, m in enumerate((a, b, c, d))]
        assert {o.status for o in await intake.process_batch(db, DEFAULT_PROGRAM, funded, now=NOW)} == {"applied"}

        def redeem(member_id: str, reward_id: str) -> dict:
            return f.event(
                "redemption", member_id, _at(40), event_id=f"rd-{member_id}", source="app", reward_id=reward_id
            )

        messages = [[redeem(a, "rw-b"), redeem(c, "rw-a")], [redeem(b, "rw-a"), redeem(d, "rw-b")]]
        results = await asyncio.gather(
            *(
                _deliver(lambda m=m: intake.process_batch(db, DEFAULT_PROGRAM, m, now=NOW, strict=True), deadlocks)
                for m in messages
            )
        )
        assert [o.status for outcomes in results for o in outcomes] == ["applied"] * 4

    assert len(deadlocks) == 0
    assert await mall.stock_differences(db) == []
    async with db.connect() as conn:
        redeemed = (await conn.execute(text("SELECT reward_id, redeemed FROM rewards ORDER BY reward_id"))).all()
    assert redeemed == [("rw-a", 2 * ROUNDS), ("rw-b", 2 * ROUNDS)]
