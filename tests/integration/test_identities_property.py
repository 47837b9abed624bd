"""A merge is the union of two members' events in occurrence order: random histories of one
person, split at random between a card (at the till) and a phone (in the app) and linked at
the end, leave one member whose balances, tier, rule state and points per event equal those of
a member who had every event by one identity from the start."""

from __future__ import annotations

import asyncio
import random

from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from sqlalchemy import text

from db.engine import create_engine
from tests.conftest import NOW, truncate_all
from tests.integration.test_event_time import PROGRAM, build, occurrence, op
from worker.domain.identities import identity_member_id
from worker.domain.reevaluation import points_by_event
from worker.services import intake
from worker.services.audit import audit_all

CARD = {"kind": "card", "value": "8800123"}
PHONE = {"kind": "phone", "value": "+8613800000000"}


def named(identity: dict, event: dict) -> dict:
    out = {k: v for k, v in event.items() if k != "member_id"}
    return {**out, "member": identity}


async def one_member(db) -> dict:
    """The surviving member's state and what each of its events earned, without its id."""
    async with db.connect() as conn:
        rows = (
            (
                await conn.execute(
                    text(
                        "SELECT member_id, tier, available_points, qualifying_points, lifetime_points, rule_state, birthday, "
                        "first_purchase_at FROM members WHERE merged_into IS NULL AND member_id NOT IN ('ER1', 'ER2')"
                    )
                )
            )
            .mappings()
            .all()
        )
        assert len(rows) == 1, rows
        survivor = dict(rows[0])
        entries = (
            (
                await conn.execute(
                    text(
                        "SELECT source, event_id, kind, qualifying_points, rules FROM ledger_entries WHERE member_id = :m "
                        "ORDER BY entry_id"
                    ),
                    {"m": survivor.pop("member_id")},
                )
            )
            .mappings()
            .all()
        )
    return {**survivor, "points": points_by_event(entries)}


async def scenario(url: str, ops: list[tuple], seed: int) -> tuple[dict, dict]:
    db = create_engine(url, pool_size=2, max_overflow=0)
    try:
        events = sorted(build(ops), key=occurrence)
        rng = random.Random(seed)
        await truncate_all(db)
        for event in events:  # everything by card, in order
            assert (await intake.process(db, PROGRAM, named(CARD, event), now=NOW, strict=True)).status != "rejected"
        whole = await one_member(db)

        await truncate_all(db)
        split = [named(rng.choice((CARD, PHONE)), event) for event in events]
        rng.shuffle(split)
        for event in split:
            assert (await intake.process(db, PROGRAM, event, now=NOW, strict=True)).status != "rejected"
        link = {
            "event_id": "link-1",
            "type": "identity_link",
            "source": "app",
            "member_id": identity_member_id("card", CARD["value"]),
            "occurred_at": "2026-11-24T10:00:00+08:00",
            "payload": PHONE,
        }
        assert (await intake.process(db, PROGRAM, link, now=NOW, strict=True)).status == "applied"
        merged = await one_member(db)
        report = await audit_all(db)
        assert report.clean, [str(d) for d in report.differences]
        return whole, merged
    finally:
        await db.dispose()


# One person's history: referrals are between two members, and refunds and reviews alone wait
# for a purchase that never comes (no member at all), so each history has an event of its own.
histories = st.lists(op.filter(lambda o: o[0] != "referral"), min_size=2, max_size=16).filter(
    lambda ops: any(o[0] not in ("refund", "review") for o in ops)
)


@hsettings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(histories, st.integers(min_value=0, max_value=2**16))
def test_card_and_phone_histories_linked_later_equal_one_member_with_all_of_them(database_url, ops, seed):
    whole, merged = asyncio.run(scenario(database_url, ops, seed))
    assert merged == whole
