"""Group commit: concurrent one-event messages share transactions, each keeps its own outcome."""

from __future__ import annotations

import asyncio

from sqlalchemy import text

from tests import factories as f
from tests.conftest import NOW
from worker.domain.program import DEFAULT_PROGRAM
from worker.services import intake
from worker.services.audit import audit_all
from worker.services.group_commit import GroupCommit


async def rows(db, sql: str) -> list[tuple]:
    async with db.connect() as conn:
        return [tuple(r) for r in (await conn.execute(text(sql))).all()]


async def process_all(db, group: GroupCommit, events: list[dict]) -> list[intake.Outcome]:
    return await asyncio.gather(
        *(intake.process(db, DEFAULT_PROGRAM, e, now=NOW, strict=True, apply=group.apply) for e in events)
    )


async def test_concurrent_events_commit_in_fewer_transactions_than_events_and_each_applies_once(db):
    group = GroupCommit(db, group_max=16, wait_ms=0, concurrency=2, strict=True)
    members = [f"G{n:02d}" for n in range(40)]
    events = [f.purchase(m, "100.00", event_id=f"g-{m}") for m in members]
    events += [f.purchase("G03", "50.00", event_id="g-G03-2"), dict(events[0])]  # a second order; a redelivery

    outcomes = await process_all(db, group, events)
    await group.stop()

    assert [o.status for o in outcomes] == ["applied"] * 41 + ["duplicate"]
    # Rows written by one transaction share its xmin.
    [(transactions,)] = await rows(db, "SELECT count(DISTINCT xmin::text) FROM processed_events")
    assert 1 <= transactions < 41
    assert group.groups_committed == transactions and group.events_committed == 42
    assert await rows(db, "SELECT count(*), count(DISTINCT event_id) FROM processed_events") == [(41, 41)]
    balances = dict(await rows(db, "SELECT member_id, available_points FROM members"))
    assert balances["G00"] == 200  # 100 for 100.00 plus the first-purchase bonus, once
    assert balances["G03"] == 250
    assert (await audit_all(db)).clean


async def test_one_event_the_database_refuses_is_rejected_alone_and_the_rest_of_its_group_applies(db):
    async with db.begin() as conn:
        await conn.execute(text("ALTER TABLE members ADD CONSTRAINT no_poison CHECK (member_id <> 'G-POISON')"))
    group = GroupCommit(db, group_max=64, wait_ms=5, concurrency=1, strict=True)
    try:
        events = [f.purchase(f"G{n}", "10.00", event_id=f"gp-{n}") for n in range(9)]
        events.insert(4, f.purchase("G-POISON", "10.00", event_id="gp-poison"))
        outcomes = await process_all(db, group, events)
        await group.stop()
    finally:
        async with db.begin() as conn:
            await conn.execute(text("ALTER TABLE members DROP CONSTRAINT no_poison"))

    reason = "event: a value was refused by the database (SQLSTATE 23514, CheckViolationError)"
    assert [(o.status, o.reason) for o in outcomes] == [("applied", None)] * 4 + [("rejected", reason)] + [
        ("applied", None)
    ] * 5
    assert group.groups_committed == 1  # all ten in one group: the refusal split nothing off
    assert await rows(db, "SELECT event_id FROM rejected_events") == [("gp-poison",)]
    assert await rows(db, "SELECT count(*) FROM processed_events") == [(9,)]
    assert (await audit_all(db)).clean


async def test_a_referral_and_its_referee_bonus_go_through_the_group_as_follow_ups(db):
    group = GroupCommit(db, group_max=8, wait_ms=0, concurrency=1, strict=True)
    await process_all(db, group, [f.signup("R1", event_id="s-1"), f.signup("R2", event_id="s-2")])

    [outcome] = await process_all(db, group, [f.referral("R1", "R2", event_id="ref-1")])
    await group.stop()

    assert outcome.status == "applied"
    assert await rows(db, "SELECT event_id FROM processed_events WHERE event_type = 'referral_referee'") == [("ref-1",)]
    assert (await audit_all(db)).clean


async def test_each_event_is_committed_before_its_actor_is_answered(db):
    group = GroupCommit(db, group_max=8, wait_ms=1, concurrency=2, strict=True)

    async def process_then_look(event: dict) -> int:
        await intake.process(db, DEFAULT_PROGRAM, event, now=NOW, apply=group.apply)
        # Another connection sees committed rows only: what a message's ack relies on.
        async with db.connect() as conn:
            sql = text("SELECT count(*) FROM processed_events WHERE event_id = :id")
            return (await conn.execute(sql, {"id": event["event_id"]})).scalar_one()

    seen = await asyncio.gather(*(process_then_look(f.purchase(f"C{n}", "5.00", event_id=f"c-{n}")) for n in range(20)))
    await group.stop()

    assert seen == [1] * 20
    assert group.groups_committed < 20
