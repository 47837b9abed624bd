"""`loyalty program explain` as data and as text, from literal evaluations and events; its program files."""

from __future__ import annotations

import json
from datetime import date, datetime
from zoneinfo import ZoneInfo

from tests.unit.engine_programs import program
from worker.domain.engine import (
    Award,
    Considered,
    Evaluation,
    Member,
    default_engine_program,
    explain_event,
    explanation,
    load_program_as_published,
    member_view,
    render_explanation,
    rules_of,
)
from worker.domain.engine.language import DEFAULT_PROGRAM_PATH
from worker.domain.events import parse_event

ZONE = ZoneInfo("Asia/Shanghai")
PURCHASE = parse_event(
    {
        "event_id": "p-9",
        "type": "purchase",
        "source": "pos",
        "member_id": "M1",
        "occurred_at": "2026-11-08T04:00:00+00:00",
        "payload": {"order_id": "o-9", "amount": "100.00", "currency": "CNY"},
    }
)
# What evaluate gives a Silver member's fourth purchase on member day, written out.
EVALUATION = Evaluation(
    program_version="default-1",
    event_type="purchase",
    local_at=datetime(2026, 11, 8, 12, 0, tzinfo=ZONE),
    awards=(
        Award(
            "purchase",
            240,
            {
                "amount": "100.00",
                "rate": "1",
                "unit": "1",
                "rounding": "floor",
                "tier": "Silver",
                "multipliers": {"tier_multiplier": "1.2", "member_day": "2"},
            },
        ),
    ),
    state={},
    trace=(
        Considered("purchase", True, "100.00 x 1 / 1 x1.2 (tier_multiplier) x2 (member_day), floor", 240),
        Considered("tier_multiplier", True, "x1.2"),
        Considered("member_day", True, "x2 (group campaign)"),
        Considered("birthday", False, "2026-11-08 is not the member's birthday"),
        Considered("first_purchase", False, "purchase number 4, not 1"),
    ),
)
SILVER = Member(
    tier="Silver",
    qualifying=1500,
    birthday=date(1990, 5, 20),
    purchase_count=3,
    state={"check_in": {"streak": {"last_on": "2026-11-07", "days": 2}}},
)


def test_the_explanation_holds_the_event_member_every_rule_multipliers_and_total():
    explained = explanation(EVALUATION, PURCHASE, member_view("M1", SILVER, known=True), ["a note"])

    assert explained == {
        "event": {
            "type": "purchase",
            "event_id": "p-9",
            "source": "pos",
            "member_id": "M1",
            "occurred_at": "2026-11-08T04:00:00+00:00",
            "local_at": "2026-11-08T12:00:00+08:00",
        },
        "program_version": "default-1",
        "member": {
            "member_id": "M1",
            "known": True,
            "tier": "Silver",
            "qualifying": 1500,
            "purchase_count": 3,
            "birthday": "1990-05-20",
            "rule_state": {"check_in": {"streak": {"last_on": "2026-11-07", "days": 2}}},
        },
        "rules": [
            {
                "rule": "purchase",
                "matched": True,
                "points": 240,
                "reason": "100.00 x 1 / 1 x1.2 (tier_multiplier) x2 (member_day), floor",
            },
            {"rule": "tier_multiplier", "matched": True, "points": None, "reason": "x1.2"},
            {"rule": "member_day", "matched": True, "points": None, "reason": "x2 (group campaign)"},
            {"rule": "birthday", "matched": False, "points": None, "reason": "2026-11-08 is not the member's birthday"},
            {"rule": "first_purchase", "matched": False, "points": None, "reason": "purchase number 4, not 1"},
        ],
        "multipliers": [{"rule": "tier_multiplier", "factor": "1.2"}, {"rule": "member_day", "factor": "2"}],
        "points": 240,
        "notes": ["a note"],
    }
    assert json.loads(json.dumps(explained)) == explained


def test_the_text_names_each_rule_with_its_points_or_why_not():
    explained = explanation(EVALUATION, PURCHASE, member_view("M1", SILVER, known=True), ["a note"])

    assert render_explanation(explained).splitlines() == [
        "member M1 (as stored): tier Silver, qualifying 1500, 3 purchases before, birthday 1990-05-20",
        'rule state: {"check_in": {"streak": {"days": 2, "last_on": "2026-11-07"}}}',
        "note: a note",
        "purchase p-9 from pos at 2026-11-08T12:00:00+08:00 (program default-1)",
        "  + purchase           +240  100.00 x 1 / 1 x1.2 (tier_multiplier) x2 (member_day), floor",
        "  + tier_multiplier          x1.2",
        "  + member_day               x2 (group campaign)",
        "  - birthday                 2026-11-08 is not the member's birthday",
        "  - first_purchase           purchase number 4, not 1",
        "  multipliers: tier_multiplier x1.2, member_day x2",
        "  = 240 points",
    ]


def test_a_new_member_is_the_program_s_first_tier_with_nothing_stored():
    explained = explain_event(default_engine_program(), PURCHASE, "M1", None)

    assert explained["member"] == {
        "member_id": "M1",
        "known": False,
        "tier": "Regular",
        "qualifying": 0,
        "purchase_count": 0,
        "birthday": None,
        "rule_state": {},
    }
    assert [(r["rule"], r["matched"], r["points"]) for r in explained["rules"]] == [
        ("purchase", True, 200),
        ("tier_multiplier", True, None),
        ("member_day", True, None),
        ("birthday", False, None),
        ("first_purchase", True, 100),
    ]
    assert render_explanation(explained).splitlines()[0] == (
        "member M1 (new): tier Regular, qualifying 0, 0 purchases before, no birthday"
    )


def test_the_evaluation_is_the_one_the_engine_gives_for_the_stored_member():
    explained = explain_event(default_engine_program(), PURCHASE, "M1", SILVER)

    assert explained["points"] == 240
    assert explained["rules"] == explanation(EVALUATION, PURCHASE, explained["member"])["rules"]


def test_an_event_no_rule_listens_to_says_so():
    check_in = parse_event(
        {
            "event_id": "c-1",
            "type": "check_in",
            "source": "app",
            "member_id": "M1",
            "occurred_at": "2026-11-08T04:00:00+00:00",
        }
    )
    explained = explain_event(
        program('[[rules]]\nid = "r"\non = "signup"\neffect = { kind = "fixed", points = 1 }\n'), check_in, "M1", None
    )

    assert (explained["rules"], explained["multipliers"], explained["points"]) == ([], [], 0)
    assert render_explanation(explained).splitlines()[2:] == ["  no rule listens to this event", "  = 0 points"]


def test_a_program_file_of_either_shape_loads_as_it_would_be_published(tmp_path):
    old = tmp_path / "old.toml"
    old.write_text('name = "spring"\n[signup]\npoints = 80\n')
    new = tmp_path / "rules.toml"
    new.write_text(
        DEFAULT_PROGRAM_PATH.read_text().replace("points = 50 }\nlimits", "points = 70 }\nlimits")
        + "[expiry]\ndays = 90\n"
    )

    from_old, from_new = load_program_as_published(old), load_program_as_published(new)

    assert (from_old.name, from_old.signup.points, rules_of(from_old).version) == ("spring", 80, "file:spring")
    assert (from_new.name, rules_of(from_new).version, from_new.expiry.days) == ("default", "default-1", 90)
    assert [r.effect.points for r in rules_of(from_new).rules if r.id == "signup"] == [70]
