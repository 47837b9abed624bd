"""The program file: validation naming the key, versions, the default program, tiers, explain."""

from __future__ import annotations

import tomllib
from datetime import date
from decimal import Decimal

import pytest

from tests.unit.engine_programs import HEAD, TIERS, at, event, item, program, purchase, run
from worker.domain.engine import (
    EventData,
    Member,
    TierFloor,
    default_engine_program,
    event_data,
    explain,
    from_program,
    level_for,
    parse_engine_program,
    qualifying_change,
    review_tier,
    tier_after,
)
from worker.domain.errors import ProgramError
from worker.domain.program import DEFAULT_PROGRAM


def problem(rules: str, extra: str = "") -> str:
    with pytest.raises(ProgramError) as error:
        program(rules, extra)
    return str(error.value)


RULE = '[[rules]]\nid = "r"\non = "purchase"\n'
FIXED = 'effect = { kind = "fixed", points = 1 }\n'


@pytest.mark.parametrize(
    ("rules", "message"),
    [
        (
            RULE * 0 + RULE + FIXED + RULE + 'when = { weekdays = ["Sun"] }\n' + FIXED,
            "rules.1.when.weekdays: 'Sun' is not a weekday, use 1-7 or mon..sun",
        ),
        (
            RULE + "when = { weekdays = [8] }\n" + FIXED,
            "rules.0.when.weekdays: 8 is not a weekday, use 1-7 or mon..sun",
        ),
        (RULE + "when = { weekday = [1] }\n" + FIXED, "rules.0.when.weekday: unknown key"),
        (
            RULE + 'effect = { kind = "fixed", points = -1 }\n',
            "rules.0.effect.points: must be greater than or equal to 0",
        ),
        (RULE + 'effect = { kind = "bonus", points = 1 }\n', "rules.0.effect: kind must be one of fixed, per_amount"),
        (RULE + "effect = { points = 1 }\n", "rules.0.effect: kind is required"),
        (RULE, "rules.0.effect: is required"),
        ('[[rules]]\nid = "r"\n' + FIXED, "rules.0: on: give the event types this rule listens to"),
        ('[[rules]]\nid = "r"\non = "purchse"\n' + FIXED, "rules.0.on: 'purchse' is not an event type"),
        (RULE + FIXED + RULE + FIXED, "rules.1.id: 'r' is used by an earlier rule; ids must be unique"),
        ('[[rules]]\nid = "Has Space"\non = "purchase"\n' + FIXED, "rules.0.id: String should match pattern"),
        (RULE + 'when = { tiers = ["Platinum"] }\n' + FIXED, "rules.0.when.tiers: 'Platinum' is not a tier"),
        (RULE + 'when = { kinds = ["dance"] }\n' + FIXED, "rules.0.when.kinds: 'dance' is not an activity kind"),
        (RULE + 'when = { after_rules = ["nope"] }\n' + FIXED, "rules.0.when.after_rules: no rule has id 'nope'"),
        (
            RULE + 'when = { streak = { rule = "r", day = 7 } }\n' + FIXED,
            "rules.0.when.streak.rule: 'r' is not a rule with a streak",
        ),
        (
            RULE + 'when = { streak = { rule = "r" } }\n' + FIXED,
            "rules.0.when.streak: give exactly one of day or every",
        ),
        (
            RULE + 'effect = { kind = "multiply", factor = "2", group = "promo" }\n',
            "rules.0.effect.group: unknown group 'promo'; declare it under [groups]",
        ),
        (
            RULE + 'effect = { kind = "multiply", factor = "2", target = "lines" }\n',
            "rules.0.effect.target: 'lines' needs when.items to say which lines",
        ),
        (RULE + 'effect = { kind = "multiply", factor = "0" }\n', 'rules.0.effect.factor: must be "tier" or a decimal'),
        (RULE + 'effect = { kind = "multiply", factor = 1.5 }\n', 'rules.0.effect.factor: must be "tier" or a decimal'),
        (
            RULE + "when = { starts_on = 2026-12-03, ends_on = 2026-12-01 }\n" + FIXED,
            "rules.0.when: ends_on is before starts_on",
        ),
        (
            RULE + 'when = { time = { from = "10:00", to = "10:00" } }\n' + FIXED,
            "rules.0.when.time: from and to must differ",
        ),
        (RULE + FIXED + 'limits = [{ per = "fortnight", count = 1 }]\n', "rules.0.limits.0.per: must be 'day', 'week'"),
        (RULE + FIXED + 'limits = [{ per = "day" }]\n', "rules.0.limits.0: give count, points or both"),
        (
            RULE + 'effect = { kind = "per_amount", steps = [{ from = "10", rate = "1" }] }\n',
            "rules.0.effect.steps: the first step must start from 0",
        ),
        (RULE + 'effect = { kind = "per_amount", rounding = "nearest" }\n', "rules.0.effect.rounding: must be 'floor'"),
    ],
)
def test_validation_errors_name_the_key(rules, message):
    assert message in problem(rules)


def test_program_level_errors_name_the_key():
    with pytest.raises(ProgramError, match=r"timezone: unknown time zone 'Mars/Olympus'"):
        parse_engine_program(tomllib.loads('timezone = "Mars/Olympus"\n' + TIERS.format(settings="")))
    with pytest.raises(ProgramError, match=r"tiers.levels: the first level must have threshold 0"):
        parse_engine_program({"tiers": {"levels": [{"name": "A", "threshold": 5}]}})
    with pytest.raises(ProgramError, match=r"tiers.downgrade: must be 'never', 'automatic' or 'review'"):
        parse_engine_program(tomllib.loads(HEAD + TIERS.format(settings='downgrade = "sometimes"')))
    with pytest.raises(ProgramError, match=r"^program: tiers: is required"):
        parse_engine_program({})


def test_several_problems_are_reported_together():
    message = problem(RULE + 'when = { weekdays = ["Sun"], colour = "red" }\n' + FIXED)

    assert "rules.0.when.weekdays" in message and "rules.0.when.colour: unknown key" in message


def test_the_caller_sets_the_program_version_and_awards_name_their_rule():
    data = tomllib.loads(HEAD + TIERS.format(settings="") + RULE + FIXED)

    assert parse_engine_program(data).version == 7
    stored = parse_engine_program(data, version="2026-12-01.3")
    result = run(stored, purchase("1.00"))
    assert result.program_version == "2026-12-01.3"
    assert [a.as_json() for a in result.awards] == [{"rule": "r", "points": 1}]


def test_the_default_program_ships_with_the_package_and_has_todays_rules():
    engine = default_engine_program()

    assert [rule.id for rule in engine.rules] == [
        "purchase",
        "tier_multiplier",
        "member_day",
        "birthday",
        "first_purchase",
        "signup",
        "check_in",
        "check_in_streak",
        "review",
        "review_media",
        "referral_referrer",
        "referral_referee",
    ]
    assert [(level.name, level.threshold, level.multiplier) for level in engine.tiers.levels] == [
        (t.name, t.threshold, t.multiplier) for t in DEFAULT_PROGRAM.tiers
    ]


def test_default_program_purchase_on_member_day_with_a_birthday():
    engine = default_engine_program()
    member = Member(tier="Silver", birthday=date(1990, 11, 8), purchase_count=0)

    result = run(engine, purchase("100.00", when=at(2026, 11, 8)), member)
    assert result.points_by_rule() == {"purchase": 360, "first_purchase": 100}  # 100 x 1.2 x 3, not x6
    assert result.awards[0].detail["multipliers"] == {"tier_multiplier": "1.2", "birthday": "3"}


def test_from_program_keeps_old_style_line_multipliers_and_campaign_names():
    old = DEFAULT_PROGRAM.model_copy(
        update={
            "multipliers": DEFAULT_PROGRAM.multipliers.model_copy(
                update={"categories": {"beauty": Decimal("1.5")}, "skus": {"SKU-PROMO-1": Decimal("3")}}
            )
        }
    )
    engine = from_program(old, version=4)

    assert engine.version == 4
    assert {r.id: r.description for r in engine.rules if r.id.startswith("line_")} == {
        "line_sku_0": "SKU SKU-PROMO-1",
        "line_category_0": "category beauty",
    }
    ev = purchase("30.00", item("SKU-PROMO-1", "10.00", "beauty"), item("B", "20.00", "beauty"))
    assert run(engine, ev, Member(tier="Regular", purchase_count=1)).points_by_rule() == {"purchase": 60}


def test_explain_renders_every_rule_considered():
    engine = default_engine_program()
    result = run(engine, purchase("100.00", when=at(2026, 11, 8)), Member(tier="Regular", purchase_count=3))
    text = explain(result)

    assert text.splitlines()[0] == "purchase at 2026-11-08T12:00:00+08:00 (program default-1)"
    assert "+ purchase" in text and "+200" in text
    assert "- birthday" in text and "is not the member's birthday" in text
    assert "- first_purchase" in text and "purchase number 4, not 1" in text
    assert text.splitlines()[-1] == "  = 200 points"
    assert "no rule listens" in explain(run(engine, event("redemption")))


# --- tiers: qualifying basis, downgrade modes, reviews, floors ---


def tiers(settings: str):
    return program("", tiers=settings)


def test_upgrades_at_once_and_never_downgrades_by_default():
    prog = tiers("")

    assert tier_after(prog, "Regular", 5200, on=date(2026, 11, 2)) == "Gold"
    assert tier_after(prog, "Gold", 10, on=date(2026, 11, 2)) == "Gold"


def test_automatic_downgrade_follows_qualifying_points():
    prog = tiers('downgrade = "automatic"')

    assert tier_after(prog, "Gold", 4999, on=date(2026, 11, 2)) == "Silver"
    assert tier_after(prog, "Diamond", 0, on=date(2026, 11, 2)) == "Regular"
    assert tier_after(prog, "Silver", 15000, on=date(2026, 11, 2)) == "Diamond"


def test_review_over_the_window_can_drop_two_tiers():
    prog = tiers('downgrade = "review"\nreview_window_days = 365')
    history = [(date(2025, 6, 1), 20000), (date(2026, 1, 10), 800), (date(2026, 10, 1), 900)]

    # 1 January 2027: the 365 days back start on 2 January 2026, so 2025's points are out.
    assert review_tier(prog, "Diamond", history, on=date(2027, 1, 1)) == "Silver"
    assert review_tier(prog, "Diamond", history, on=date(2026, 1, 31)) == "Diamond"
    assert review_tier(prog, "Diamond", [(date(2026, 12, 1), 10)], on=date(2027, 1, 1)) == "Regular"
    # Between reviews a review-mode tier does not go down.
    assert tier_after(prog, "Diamond", 0, on=date(2026, 11, 2)) == "Diamond"


def test_review_with_downgrade_never_keeps_the_tier():
    assert review_tier(tiers(""), "Gold", [], on=date(2027, 1, 1)) == "Gold"


def test_tier_floor_holds_until_its_end_date():
    prog = tiers('downgrade = "automatic"')
    floor = TierFloor(tier="Gold", ends_on=date(2026, 12, 31))

    assert tier_after(prog, "Gold", 0, on=date(2026, 12, 31), floor=floor) == "Gold"
    assert tier_after(prog, "Gold", 0, on=date(2027, 1, 1), floor=floor) == "Regular"
    assert tier_after(prog, "Regular", 20000, on=date(2026, 12, 1), floor=floor) == "Diamond"  # a floor, not a cap
    assert review_tier(prog, "Diamond", [], on=date(2026, 12, 1), floor=TierFloor(tier="Silver")) == "Silver"


def test_amount_basis_counts_money_spent_less_refunded():
    prog = tiers('basis = "amount"')
    buy = purchase("1200.50")
    refund = EventData("refund", "pos", at(2026, 11, 3), {"order_id": "O1", "refund_id": "R1", "amount": "200.50"})

    assert qualifying_change(prog, buy, run(prog, buy)) == Decimal("1200.50")
    assert qualifying_change(prog, refund, run(prog, refund)) == Decimal("-200.50")
    assert level_for(prog, Decimal("999.99")).name == "Regular"
    assert tier_after(prog, "Regular", Decimal("1000.00"), on=date(2026, 11, 3)) == "Silver"


def test_points_basis_counts_the_points_awarded():
    engine = default_engine_program()
    buy = purchase("250.00")

    assert qualifying_change(engine, buy, run(engine, buy, Member(tier="Regular", purchase_count=2))) == 250


def test_contract_events_become_plain_data_for_the_engine():
    from worker.domain.events import parse_event

    parsed = parse_event(
        {
            "event_id": "E1",
            "source": "pos",
            "member_id": "M1",
            "type": "purchase",
            "occurred_at": "2026-11-08T10:00:00+08:00",
            "payload": {
                "order_id": "O1",
                "amount": "100.00",
                "currency": "CNY",
                "items": [{"sku": "A", "category": "beauty", "amount": "100.00", "quantity": 1}],
            },
        }
    )
    data = event_data(parsed)

    assert (data.type, data.source, data.payload["amount"]) == ("purchase", "pos", Decimal("100.00"))
    assert run(default_engine_program(), data, Member(tier="Regular", purchase_count=1)).points_by_rule() == {
        "purchase": 200
    }
