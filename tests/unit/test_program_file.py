"""Program files in the rule language: rules from [[rules]], tiers from [tiers], the old
sections for everything else; every mistake named by its key. Old-shape files unchanged."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest

from tests.unit.engine_programs import at, purchase
from worker.domain.engine import (
    Member,
    default_engine_program,
    evaluate,
    load_program,
    parse_program_text,
    program_version,
    rules_of,
    version_id,
)
from worker.domain.engine.language import DEFAULT_PROGRAM_PATH
from worker.domain.errors import ProgramError
from worker.domain.local_days import is_member_day
from worker.domain.program import DEFAULT_PROGRAM, Program

EXAMPLE = Path(__file__).parents[2] / "docs" / "program.example.toml"
DEFAULT_TOML = DEFAULT_PROGRAM_PATH.read_text(encoding="utf-8")

TIERS = """
[tiers]
downgrade = "never"
[[tiers.levels]]
name = "Member"
threshold = 0
[[tiers.levels]]
name = "VIP"
threshold = 2000
multiplier = "2"
"""
RULES = """
[[rules]]
id = "purchase"
on = "purchase"
effect = { kind = "per_amount", rate = "2", unit = "1" }
[[rules]]
id = "tier"
on = "purchase"
effect = { kind = "multiply", factor = "tier" }
"""


def load_text(tmp_path: Path, text: str):
    path = tmp_path / "program.toml"
    path.write_text(text, encoding="utf-8")
    return load_program(path)


def error_for(tmp_path: Path, text: str) -> str:
    with pytest.raises(ProgramError) as caught:
        load_text(tmp_path, text)
    return str(caught.value).removeprefix(f"{tmp_path / 'program.toml'}: ")


def test_the_built_in_rule_file_as_a_program_file_is_the_default_program(tmp_path):
    program = load_text(tmp_path, DEFAULT_TOML)

    assert {key: getattr(program, key) for key in type(program).model_fields} == {
        key: getattr(DEFAULT_PROGRAM, key) for key in type(program).model_fields
    }
    assert rules_of(program).rules == default_engine_program().rules
    # Not published: entries record the file, as they do for an old-shape file.
    assert program_version(program) == program_version(DEFAULT_PROGRAM) == "file:default"


def test_rules_come_from_the_file_and_tiers_from_its_tiers_table(tmp_path):
    program = load_text(tmp_path, 'name = "spring"\n' + TIERS + RULES)

    assert [(t.name, t.threshold, t.multiplier) for t in program.tiers] == [
        ("Member", 0, Decimal("1")),
        ("VIP", 2000, Decimal("2")),
    ]
    result = evaluate(rules_of(program), Member(tier="Member"), purchase("10.00"))
    assert (result.points_by_rule(), result.program_version) == ({"purchase": 20}, "file:spring")


def test_the_old_sections_other_than_earning_ones_keep_their_meaning(tmp_path):
    program = load_text(
        tmp_path,
        TIERS
        + RULES
        + """
[expiry]
days = 90
[pending]
days = 14
[birthday]
gift_points = 500
[purchase]
currencies = ["CNY", "HKD"]
[notifications]
channel = "webhook"
[schedule.expire_points]
cron = "15 1 * * *"
[referral]
""",
    )

    assert (program.expiry.days, program.pending.days, program.birthday.gift_points) == (90, 14, 500)
    assert (program.purchase.currencies, program.notifications.channel) == (("CNY", "HKD"), "webhook")
    assert program.schedule.expire_points.cron == "15 1 * * *"
    assert (program.schedule.tier_review.enabled, program.schedule.tier_review.grace_days) == (False, 0)


def test_the_review_s_grace_is_the_tiers_table_s_in_rules_and_in_the_schedule(tmp_path):
    program = load_text(tmp_path, TIERS.replace('"never"', '"review"\nreview_grace_days = 90') + RULES)

    assert (rules_of(program).tiers.review_grace_days, program.schedule.tier_review.grace_days) == (90, 90)


def test_the_report_currency_is_a_top_level_key_in_either_shape(tmp_path):
    rule_language = load_text(tmp_path, 'currency = "EUR"\npoint_value = "0.02"\n' + TIERS + RULES)
    old_shape = load_text(tmp_path, 'currency = "HKD"\n')

    assert (rule_language.currency, rule_language.point_value) == ("EUR", Decimal("0.02"))
    assert (old_shape.currency, load_program(None).currency) == ("HKD", "CNY")
    assert error_for(tmp_path, 'currency = "eur"\n') == (
        "currency: 'eur' is not a currency code: three capital letters (ISO 4217), e.g. CNY"
    )


def test_a_review_downgrade_turns_on_the_tier_review_job_with_its_window(tmp_path):
    program = load_text(tmp_path, TIERS.replace('"never"', '"review"\nreview_window_days = 180') + RULES)

    assert (program.schedule.tier_review.enabled, program.schedule.tier_review.window_days) == (True, 180)


def test_the_member_day_notice_follows_a_member_day_rule_or_an_explicit_section(tmp_path):
    rule = (
        '[[rules]]\nid = "member_day"\non = "purchase"\nwhen = { days_of_month = 18 }\n'
        'effect = { kind = "multiply", factor = "3" }\n'
    )

    from_rule = load_text(tmp_path, TIERS + RULES + rule).member_day
    without = load_text(tmp_path, TIERS + RULES).member_day
    explicit = load_text(tmp_path, TIERS + RULES + rule + "[member_day]\nday_of_month = 1\n").member_day

    assert (from_rule.enabled, from_rule.day_of_month, from_rule.multiplier) == (True, 18, Decimal("3"))
    assert without.enabled is False
    assert (explicit.enabled, explicit.day_of_month, explicit.multiplier) == (True, 1, Decimal("2"))


def test_a_weekly_member_day_rule_gives_a_weekly_notice(tmp_path):
    rule = (
        '[[rules]]\nid = "member_day"\non = "purchase"\nwhen = { weekdays = ["wed"] }\n'
        'effect = { kind = "multiply", factor = "2" }\n'
    )

    weekly = load_text(tmp_path, TIERS + RULES + rule).member_day
    explicit = load_text(tmp_path, TIERS + RULES + "[member_day]\nweekdays = [3, 6]\n").member_day
    both = rule.replace('weekdays = ["wed"]', 'weekdays = ["wed"], days_of_month = 8')

    assert (weekly.enabled, weekly.weekdays, weekly.multiplier) == (True, (3,), Decimal("2"))
    assert (explicit.enabled, explicit.weekdays) == (True, (3, 6))
    assert load_text(tmp_path, TIERS + RULES + both).member_day.enabled is False  # Wednesday the 8th only
    assert [is_member_day(Program(member_day=weekly), date(2026, 11, d)) for d in (3, 4, 5, 11)] == [
        False,
        True,
        False,
        True,
    ]
    with pytest.raises(ProgramError, match="give day_of_month \\(monthly\\) or weekdays \\(weekly\\), not both"):
        load_text(tmp_path, TIERS + RULES + "[member_day]\nweekdays = [3]\nday_of_month = 8\n")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (TIERS + RULES + "when = { weekday = [1] }\n", "rules.1.when.weekday: unknown key"),
        (RULES, "tiers: is required"),
        (
            TIERS + RULES + "[signup]\npoints = 80\n",
            "signup: earning rules of a rule-language file are its [[rules]]; remove this section",
        ),
        (
            TIERS
            + RULES
            + '[[campaigns]]\nname = "x"\nmultiplier = "2"\nstarts_on = 2026-12-01\nends_on = 2026-12-03\n',
            "campaigns: earning rules of a rule-language file are its [[rules]]; remove this section",
        ),
        (
            TIERS + RULES + "[purchase]\nfirst_purchase_bonus = 10\n",
            "purchase.first_purchase_bonus: earning rules of a rule-language file are its [[rules]]; remove this key",
        ),
        (
            TIERS + RULES + '[birthday]\nmultiplier = "2"\n',
            "birthday.multiplier: earning rules of a rule-language file are its [[rules]]; remove this key",
        ),
        (
            TIERS + RULES + "[schedule.tier_review]\nenabled = true\n",
            "schedule.tier_review.enabled: a rule-language file sets this with tiers.downgrade",
        ),
        (
            TIERS + RULES + "[schedule.tier_review]\nwindow_days = 180\n",
            "schedule.tier_review.window_days: a rule-language file sets this with tiers.review_window_days",
        ),
        (
            TIERS + RULES + "[schedule.tier_review]\ngrace_days = 30\n",
            "schedule.tier_review.grace_days: a rule-language file sets this with tiers.review_grace_days",
        ),
        (
            TIERS + RULES + "[referral]\nreferrer_points = 300\nreferee_points = 50\n",
            "referral.referrer_points: earning rules of a rule-language file are its [[rules]]; remove this key; "
            "referral.referee_points: earning rules of a rule-language file are its [[rules]]; remove this key",
        ),
        (
            TIERS + RULES.replace('factor = "tier"', 'factor = "2"'),
            "tiers.levels.1.multiplier: no rule multiplies by the tier; add one with "
            'effect = { kind = "multiply", factor = "tier" } or remove this key',
        ),
        (
            RULES.replace('rate = "2", unit = "1"', 'rate = "2", steps = [{ from = "0", rate = "1" }]') + TIERS,
            "rules.0.effect.rate: with steps, each step's rate applies; remove this key",
        ),
        (
            RULES.replace('unit = "1"', 'unit = "1", stepping = "marginal"') + TIERS,
            "rules.0.effect.stepping: says how steps apply; give steps or remove this key",
        ),
        (TIERS.replace("2000", '"2000.50"') + RULES, "tiers.levels.1.threshold: must be a whole number of points"),
        (TIERS + RULES + "[expiry]\ndays = 0\n", "expiry.days: must be greater than or equal to 1"),
        (TIERS + RULES + "[expiry]\nday = 30\n", "expiry.day: unknown key"),
        ('nmae = "x"\n' + TIERS + RULES, "nmae: unknown key"),
        ("version = true\n" + TIERS + RULES, "version: must be a string or an integer"),
    ],
)
def test_rule_language_errors_name_the_key(tmp_path, text, expected):
    assert error_for(tmp_path, text) == expected


def test_an_old_shape_file_is_read_as_before_and_may_carry_a_version(tmp_path):
    program = load_text(tmp_path, 'version = "2026-12-a"\n[signup]\npoints = 80\n')

    assert program.signup.points == 80
    assert program_version(program) == "file:default"
    assert load_program(EXAMPLE).multipliers.categories == {"beauty": Decimal("1.5")}


def test_a_published_version_records_its_id_in_either_shape():
    old_shape = parse_program_text("[signup]\npoints = 80\n", version="v7")
    rule_language = parse_program_text(DEFAULT_TOML, version="2026-12-spring")

    assert (program_version(old_shape), old_shape.signup.points) == ("v7", 80)
    assert rules_of(old_shape).rules[-1].id == "referral_referee"
    result = evaluate(
        rules_of(rule_language), Member(tier="Regular", purchase_count=1), purchase("100.00", when=at(2026, 11, 8))
    )
    assert (result.program_version, result.points_by_rule()) == ("2026-12-spring", {"purchase": 200})


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('version = "2026-12-spring"\n', "2026-12-spring"),
        ("version = 7\n", "7"),
    ],
)
def test_the_version_to_publish_is_the_files_version_key(text, expected):
    assert version_id(text, "p.toml") == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[signup]\npoints = 80\n", 'p.toml: version: is required to publish, e.g. version = "2026-12-spring"'),
        (
            'version = "spring 2026"\n',
            "p.toml: version: 'spring 2026' must be 1 to 64 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit",
        ),
        ('version = "file:x"\n', "p.toml: version: 'file:x' must be 1 to 64 letters"),
        ("version = [1]\n", "p.toml: version: must be a string or an integer"),
        ("version = \n", "p.toml: not valid TOML: "),
    ],
)
def test_a_version_to_publish_needs_a_usable_id(text, expected):
    with pytest.raises(ProgramError) as caught:
        version_id(text, "p.toml")
    assert str(caught.value).startswith(expected)


def test_a_rule_language_file_may_use_every_tier_setting_the_ledger_applies():
    loaded = parse_program_text(
        TIERS.replace('"never"', '"automatic"').replace("downgrade", 'basis = "amount"\ndowngrade') + RULES, "test.toml"
    )
    tiers = rules_of(loaded).tiers
    assert (tiers.basis, tiers.downgrade) == ("amount", "automatic")


def test_refund_and_referral_settings_read_in_either_shape(tmp_path):
    settings = "[referral]\nreferee_new_days = 10\n[refunds]\nreverse_bonuses = false\n"

    rule_language = load_text(tmp_path, TIERS + RULES + settings)
    old_shape = load_text(tmp_path, settings)
    default = load_text(tmp_path, TIERS + RULES)

    for loaded in (rule_language, old_shape):
        assert (loaded.referral.referee_new_days, loaded.refunds.reverse_bonuses) == (10, False)
    assert (default.referral.referee_new_days, default.refunds.reverse_bonuses) == (30, True)
    assert (DEFAULT_PROGRAM.referral.referee_new_days, DEFAULT_PROGRAM.refunds.reverse_bonuses) == (30, True)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "[referral]\nreferrer_points = 5\nreferee_new_days = 10\n",
            "referral.referrer_points: earning rules of a rule-language file are its [[rules]]; remove this key",
        ),
        ("[refunds]\nreverse = false\n", "refunds.reverse: unknown key"),
        (
            '[refunds]\nreverse_bonuses = "maybe"\n',
            "refunds.reverse_bonuses: must be a valid boolean, unable to interpret input",
        ),
        ("[referral]\nreferee_new_days = -1\n", "referral.referee_new_days: must be greater than or equal to 0"),
    ],
)
def test_refund_and_referral_settings_are_checked_in_a_rule_language_file(tmp_path, text, expected):
    assert error_for(tmp_path, TIERS + RULES + text) == expected
