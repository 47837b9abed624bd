"""Missions through the real ledger: a mission completes whatever order its steps come in,
pays its effect exactly once, and late steps give the same result as steps in time order."""

from __future__ import annotations

import asyncio
import itertools
import tomllib

import pytest
from sqlalchemy import text

from tests import factories as f
from tests.conftest import NOW
from tests.ledger_views import earned_by_event
from worker.domain import engine
from worker.domain.engine.language import DEFAULT_PROGRAM_PATH
from worker.domain.program import DEFAULT_PROGRAM
from worker.services import intake

MISSION_RULE = """
[[rules]]
id = "starter"
description = "complete your profile, make a first purchase and review it"
effect = { kind = "fixed", points = 300 }
mission = { within_days = 30, steps = [
  { name = "complete_profile", on = "activity", when = { kinds = ["profile_completed"] } },
  { name = "first_purchase", on = "purchase", when = { nth_purchase = [1] } },
  { name = "first_review", on = "review" },
] }
"""
STEPS = ("complete_profile", "first_purchase", "first_review")


def mission_program():
    data = tomllib.loads(DEFAULT_PROGRAM_PATH.read_text() + MISSION_RULE)
    return engine.with_rules(DEFAULT_PROGRAM, engine.parse_engine_program(data, version="starter-1"))


def step_event(member_id: str, step: str, day: int) -> dict:
    at = f"2026-11-{day:02d}T10:00:00+08:00"
    if step == "complete_profile":
        return f.activity(member_id, "profile_completed", at, event_id=f"{member_id}-profile")
    if step == "first_purchase":
        return f.purchase(member_id, "80.00", order_id=f"{member_id}-O1", occurred_at=at, event_id=f"{member_id}-buy")
    return f.review(member_id, f"{member_id}-O1", "SKU-1", occurred_at=at, event_id=f"{member_id}-review")


async def mission_entries(db, member_id: str) -> list[tuple[str, int]]:
    """(event id, points) of every ledger item of the mission rule, corrections included."""
    async with db.connect() as conn:
        rows = (
            await conn.execute(
                text("SELECT event_id, rules FROM ledger_entries WHERE member_id = :m ORDER BY entry_id"),
                {"m": member_id},
            )
        ).all()
    return [(event_id, item["points"]) for event_id, items in rows for item in items if item.get("rule") == "starter"]


async def mission_state(db, member_id: str) -> dict:
    async with db.connect() as conn:
        state = (
            await conn.execute(text("SELECT rule_state FROM members WHERE member_id = :m"), {"m": member_id})
        ).scalar_one()
    return state["starter"]["mission"]


@pytest.mark.parametrize("order", list(itertools.permutations(STEPS)), ids="-".join)
async def test_mission_completes_once_whatever_order_its_steps_happen_in(db, order):
    program = mission_program()
    member = "M-" + "-".join(step.split("_")[1][:4] for step in order)
    # Given the three steps happening on 1, 2 and 3 November in this order.
    events = [step_event(member, step, day) for day, step in enumerate(order, start=1)]

    # When they arrive in that order.
    for raw in events:
        await intake.process(db, program, raw, now=NOW, strict=True)

    # Then the mission pays +300 once, on the event that completed it. A review of an order not
    # yet bought waits, and counts as its step when the purchase arrives, right after it.
    completing = f"{member}-review" if order[-1] == "first_purchase" else events[-1]["event_id"]
    assert await mission_entries(db, member) == [(completing, 300)]
    state = await mission_state(db, member)
    assert state["status"] == "completed"
    assert sorted(state["done"]) == sorted(STEPS)


@pytest.mark.parametrize("arrival", list(itertools.permutations(range(3))), ids=lambda a: "".join(map(str, a)))
async def test_late_steps_give_the_same_mission_as_steps_in_time_order(db, arrival):
    program = mission_program()
    member = "L" + "".join(map(str, arrival))
    # Given profile on 1 November, purchase on 2 November, review on 3 November.
    events = [step_event(member, step, day) for day, step in enumerate(STEPS, start=1)]

    # When they arrive in this order (earlier ones late, re-evaluated by event time).
    for index in arrival:
        await intake.process(db, program, events[index], now=NOW, strict=True)

    # Then the member ends as in time order: the review completed the mission, and the mission
    # rule's points add up to 300 once, on that event.
    assert sum(points for _, points in await mission_entries(db, member)) == 300
    earned = await earned_by_event(db, member)
    assert {event_id: points for event_id, points in earned.items() if points} == {
        f"{member}-buy": 180,
        f"{member}-review": 320,
    }
    state = await mission_state(db, member)
    assert state == {
        "started_at": "2026-11-01T10:00:00+08:00",
        "done": ["complete_profile", "first_purchase", "first_review"],
        "status": "completed",
    }


async def test_steps_committed_in_groups_complete_each_mission_once(db):
    from worker.services.group_commit import GroupCommit

    program = mission_program()
    group = GroupCommit(db, group_max=4, wait_ms=0, concurrency=2, strict=True)
    orders = list(itertools.permutations(range(3)))
    members = [f"G{''.join(map(str, arrival))}" for arrival in orders]
    # Given the three steps of six members happening as purchase, review, profile (the profile
    # completes the mission), each member's arriving in another order, interleaved.
    happened = ("first_purchase", "first_review", "complete_profile")
    timed = {m: [step_event(m, step, day) for day, step in enumerate(happened, start=1)] for m in members}
    arrivals = [timed[m][arrival[n]] for n in range(3) for m, arrival in zip(members, orders, strict=True)]

    # When they go through group commit (several members per transaction, late steps re-evaluated).
    for start in range(0, len(arrivals), 6):
        outcomes = await asyncio.gather(
            *(
                intake.process(db, program, e, now=NOW, strict=True, apply=group.apply)
                for e in arrivals[start : start + 6]
            )
        )
        assert {o.status for o in outcomes} <= {"applied", "deferred"}
    await group.stop()

    # Then every member's mission paid 300 once, on the profile step, and is completed.
    for member in members:
        assert sum(points for _, points in await mission_entries(db, member)) == 300
        earned = await earned_by_event(db, member)
        assert {event_id: points for event_id, points in earned.items() if points} == {
            f"{member}-buy": 180,
            f"{member}-review": 20,
            f"{member}-profile": 300,
        }
        assert (await mission_state(db, member))["status"] == "completed"
