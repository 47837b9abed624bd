"""Activity events on PostgreSQL: a program-file rule pays them, its limit holds per local day,
and a kind the program does not know is rejected naming payload.kind."""

from __future__ import annotations

import tomllib

from sqlalchemy import text

from tests import factories as f
from tests.conftest import NOW
from worker.domain import engine
from worker.domain.deciders import DECIDERS
from worker.domain.engine.language import DEFAULT_PROGRAM_PATH
from worker.domain.events import EVENT_MODELS, IdentityLinkEvent
from worker.domain.program import DEFAULT_PROGRAM
from worker.services import intake
from worker.services.audit import audit_all
from worker.services.ledger import _HANDLERS

SHARE_RULE = """
[[rules]]
id = "share"
on = "activity"
description = "a share earns 5 points, at most 3 a day"
when = { kinds = ["share"] }
effect = { kind = "fixed", points = 5 }
limits = [{ per = "day", count = 3 }]
"""


def sharing_program():
    """The built-in rules plus the share rule, as a program file would add it."""
    data = tomllib.loads(DEFAULT_PROGRAM_PATH.read_text() + SHARE_RULE)
    return engine.with_rules(DEFAULT_PROGRAM, engine.parse_engine_program(data, version="share-1"))


async def rows(db, sql: str, **params) -> list:
    async with db.connect() as conn:
        return [tuple(r) for r in (await conn.execute(text(sql), params)).all()]


def test_every_event_type_of_the_contract_is_decided_or_has_a_ledger_handler():
    # An identity_link locks two members and claims its key itself (ledger.apply_event).
    types = {model.model_fields["type"].annotation.__args__[0]: model for model in EVENT_MODELS}
    undecided = [model for name, model in types.items() if name not in DECIDERS and model not in _HANDLERS]
    assert undecided == [IdentityLinkEvent]


async def test_five_shares_in_one_local_day_pay_three_and_the_next_day_pays_again(db):
    program = sharing_program()
    # Given five shares of one member on 2 November, Shanghai time (the first at 00:30 local,
    # still 1 November in UTC), and one on 3 November.
    times = [
        "2026-11-02T00:30:00+08:00",
        "2026-11-02T09:00:00+08:00",
        "2026-11-02T12:00:00+08:00",
        "2026-11-02T18:00:00+08:00",
        "2026-11-02T23:59:00+08:00",
    ]
    shares = [f.activity("A1", "share", at, {"channel": "wechat"}, event_id=f"share-{n}") for n, at in enumerate(times)]
    next_day = f.activity("A1", "share", "2026-11-03T08:00:00+08:00", event_id="share-5")

    # When they are processed.
    outcomes = [await intake.process(db, program, raw, now=NOW, strict=True) for raw in [*shares, next_day]]

    # Then the first three of the day pay 5 each, the other two are applied with the limit as
    # their note and no entry, and the next day pays 5.
    assert [(o.status, o.points, o.note) for o in outcomes] == [
        ("applied", 5, None),
        ("applied", 5, None),
        ("applied", 5, None),
        ("applied", 0, "activity.daily_limit_reached"),
        ("applied", 0, "activity.daily_limit_reached"),
        ("applied", 5, None),
    ]
    assert await rows(db, "SELECT available_points FROM members WHERE member_id = 'A1'") == [(20,)]
    assert await rows(
        db, "SELECT event_id, status, result FROM processed_events WHERE result ? 'note' ORDER BY event_id"
    ) == [
        ("share-3", "applied", {"points": 0, "note": "activity.daily_limit_reached"}),
        ("share-4", "applied", {"points": 0, "note": "activity.daily_limit_reached"}),
    ]
    entries = await rows(db, "SELECT event_id, event_type, points, rules FROM ledger_entries ORDER BY entry_id")
    assert [(e[0], e[1], e[2], [(r["rule"], r["points"], r["program_version"]) for r in e[3]]) for e in entries] == [
        (f"share-{n}", "activity", 5, [("share", 5, "share-1")]) for n in (0, 1, 2, 5)
    ]
    assert await rows(db, "SELECT rule_state -> 'share' FROM members WHERE member_id = 'A1'") == [
        ({"day:2026-11-02": {"count": 3, "points": 15}, "day:2026-11-03": {"count": 1, "points": 5}},)
    ]
    assert (await audit_all(db)).clean


async def test_an_activity_the_built_in_program_has_no_rule_for_earns_nothing(db):
    outcome = await intake.process(
        db, DEFAULT_PROGRAM, f.activity("A2", "survey", "2026-11-02T10:00:00+08:00"), now=NOW, strict=True
    )

    assert (outcome.status, outcome.points, outcome.note) == ("applied", 0, "activity.no_rule_matched")


async def test_an_activity_kind_the_program_does_not_know_is_rejected_naming_the_field(db):
    raw = f.activity("A3", "watch_live", "2026-11-02T10:00:00+08:00")

    outcome = await intake.process(db, sharing_program(), raw, now=NOW, strict=True)

    reason = "payload.kind: watch_live is not an activity kind of this program (kinds: share, survey, trial, profile_completed, game)"
    assert (outcome.status, outcome.reason) == ("rejected", reason)
    assert await rows(db, "SELECT event_id, reason FROM rejected_events") == [(raw["event_id"], reason)]
    assert await rows(db, "SELECT count(*) FROM members") == [(0,)]
