"""The ledger earns through the rule engine: rule state in members.rule_state, entries that
name their rules and program version, and members migrated from the old rule columns."""

from __future__ import annotations

import importlib

from sqlalchemy import text

from tests.conftest import NOW
from tests.factories import check_in, purchase, signup
from worker.domain.program import DEFAULT_PROGRAM
from worker.services import intake

MIGRATION = importlib.import_module("db.migrations.versions.0007_rule_state")


async def process(db, raw):
    return await intake.process(db, DEFAULT_PROGRAM, raw, now=NOW, strict=True)


async def test_entries_name_their_rules_and_program_version_and_rule_state_is_one_column(db):
    await process(db, purchase("M1", "350.00", occurred_at="2026-11-02T10:00:00+08:00"))
    await process(db, check_in("M1", "2026-11-02T09:00:00+08:00"))

    async with db.connect() as conn:
        rules = (await conn.execute(text("SELECT rules FROM ledger_entries ORDER BY entry_id"))).scalars().all()
        state = (await conn.execute(text("SELECT rule_state FROM members WHERE member_id = 'M1'"))).scalar_one()
    assert [[(a["rule"], a["points"], a["program_version"]) for a in entry] for entry in rules] == [
        [("purchase", 350, "file:default"), ("first_purchase", 100, "file:default")],
        [("check_in", 10, "file:default")],
    ]
    assert (rules[0][0]["amount"], rules[0][0]["tier"], rules[0][0]["tier_multiplier"]) == ("350.00", "Regular", "1.0")
    assert state == {"check_in": {"streak": {"last_on": "2026-11-02", "days": 1}}}


async def test_migrated_members_keep_their_streak_and_signup(db):
    # Given a member written by the previous release: the old columns set, no rule state yet.
    async with db.begin() as conn:
        await conn.execute(
            text(
                """
            INSERT INTO members (member_id, tier, signed_up_at, check_in_last_on, check_in_streak)
            VALUES ('OLD', 'Regular', '2026-10-01T10:00:00+08:00', '2026-11-01', 6)
            """
            )
        )
        # When the migration's fill runs (its second statement).
        fill = [s for s in MIGRATION.UPGRADE.split(";\n") if s.strip().startswith("UPDATE")][0]
        await conn.execute(text(fill))
    # Then the seventh day in a row completes the streak, and a second signup earns nothing.
    day_seven = await process(db, check_in("OLD", "2026-11-02T09:00:00+08:00"))
    again = await process(db, signup("OLD"))

    assert day_seven.points == 60
    assert (again.points, again.note) == (0, "signup.already_signed_up")
