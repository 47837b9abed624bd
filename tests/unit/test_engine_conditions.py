"""Each condition of the rule language, on literal programs and plain-data events."""

from __future__ import annotations

from datetime import date

import pytest

from tests.unit.engine_programs import REGULAR, UTC, at, event, item, points, program, purchase, run
from worker.domain.engine import Member

FIXED = 'effect = { kind = "fixed", points = 10 }\n'


def one_rule(when: str, on: str = "purchase", extra: str = ""):
    return program(f'[[rules]]\nid = "r"\non = "{on}"\nwhen = {{ {when} }}\n{FIXED}', extra)


def test_rules_consider_only_the_event_types_they_listen_to():
    prog = program(f'[[rules]]\nid = "r"\non = ["check_in", "review"]\n{FIXED}')

    assert points(prog, event("check_in")) == {"r": 10}
    assert points(prog, purchase("10.00")) == {}
    assert run(prog, purchase("10.00")).trace == ()


def test_source_channel():
    prog = one_rule('sources = ["app", "ecommerce"]')

    assert points(prog, purchase("10.00", source="app")) == {"r": 10}
    result = run(prog, purchase("10.00", source="pos"))
    assert result.awards == ()
    assert result.trace[0].reason == "source 'pos' is not one of app, ecommerce"


def test_member_tier():
    prog = one_rule('tiers = ["Gold", "Diamond"]')

    assert points(prog, purchase("10.00"), Member(tier="Gold")) == {"r": 10}
    assert points(prog, purchase("10.00"), Member(tier="Silver")) == {}


def test_member_labels_include_and_exclude():
    plus = one_rule('labels = ["plus", "employee"]')
    not_staff = one_rule('exclude_labels = ["employee"]')

    assert points(plus, purchase("10.00"), Member(tier="Regular", labels=frozenset({"plus"}))) == {"r": 10}
    assert points(plus, purchase("10.00"), REGULAR) == {}
    assert points(not_staff, purchase("10.00"), Member(tier="Regular", labels=frozenset({"employee"}))) == {}
    assert points(not_staff, purchase("10.00"), Member(tier="Regular", labels=frozenset({"plus"}))) == {"r": 10}


def test_date_range_is_inclusive_in_program_local_dates():
    prog = one_rule("starts_on = 2026-12-01, ends_on = 2026-12-03")

    assert points(prog, purchase("1.00", when=at(2026, 12, 1, 0, 0))) == {"r": 10}
    assert points(prog, purchase("1.00", when=at(2026, 12, 3, 23, 59))) == {"r": 10}
    assert points(prog, purchase("1.00", when=at(2026, 12, 4, 0, 0))) == {}
    # 30 November 17:00 UTC is already 1 December in Shanghai.
    assert points(prog, purchase("1.00", when=at(2026, 11, 30, 17, 0, zone=UTC))) == {"r": 10}


def test_weekly_member_day_by_number_or_name():
    wednesdays = one_rule("weekdays = [3]")
    by_name = one_rule('weekdays = ["wed", "sat"]')

    assert points(wednesdays, purchase("1.00", when=at(2026, 11, 4))) == {"r": 10}  # a Wednesday
    assert points(wednesdays, purchase("1.00", when=at(2026, 11, 5))) == {}
    assert points(by_name, purchase("1.00", when=at(2026, 11, 7))) == {"r": 10}  # a Saturday


@pytest.mark.parametrize(
    ("on", "expected"),
    [
        (date(2026, 4, 30), True),  # the 31st falls on April's last day
        (date(2026, 5, 31), True),
        (date(2026, 5, 30), False),
        (date(2026, 2, 28), True),
    ],
)
def test_days_of_month_past_the_months_end_fall_on_its_last_day(on, expected):
    prog = one_rule("days_of_month = [31]")

    assert bool(points(prog, purchase("1.00", when=at(on.year, on.month, on.day)))) is expected


@pytest.mark.parametrize(
    ("birthday", "on", "day", "month"),
    [
        (date(1990, 11, 2), date(2026, 11, 2), True, True),
        (date(1990, 11, 3), date(2026, 11, 2), False, True),
        (date(1992, 2, 29), date(2026, 2, 28), True, True),  # kept on 28 February in common years
        (date(1992, 2, 29), date(2028, 2, 28), False, True),
        (date(1990, 10, 2), date(2026, 11, 2), False, False),
    ],
)
def test_birthday_day_and_month(birthday, on, day, month):
    member = Member(tier="Regular", birthday=birthday)
    ev = purchase("1.00", when=at(on.year, on.month, on.day))

    assert bool(points(one_rule('birthday = "day"'), ev, member)) is day
    assert bool(points(one_rule('birthday = "month"'), ev, member)) is month
    assert points(one_rule('birthday = "month"'), ev, REGULAR) == {}


def test_local_time_of_day_including_a_window_across_midnight():
    lunch = one_rule("time = { from = 11:00:00, to = 14:00:00 }")
    night = one_rule('time = { from = "22:00", to = "02:00" }')

    assert points(lunch, purchase("1.00", when=at(2026, 11, 2, 11, 0))) == {"r": 10}
    assert points(lunch, purchase("1.00", when=at(2026, 11, 2, 14, 0))) == {}  # `to` is exclusive
    assert points(lunch, purchase("1.00", when=at(2026, 11, 2, 3, 30, zone=UTC))) == {"r": 10}  # 11:30 local
    assert points(night, purchase("1.00", when=at(2026, 11, 2, 23, 30))) == {"r": 10}
    assert points(night, purchase("1.00", when=at(2026, 11, 2, 1, 59))) == {"r": 10}
    assert points(night, purchase("1.00", when=at(2026, 11, 2, 12, 0))) == {}


def test_first_and_nth_purchase():
    first = one_rule("nth_purchase = 1")
    third_or_tenth = one_rule("nth_purchase = [3, 10]")

    assert points(first, purchase("1.00"), Member(tier="Regular", purchase_count=0)) == {"r": 10}
    assert points(first, purchase("1.00"), Member(tier="Regular", purchase_count=1)) == {}
    assert points(third_or_tenth, purchase("1.00"), Member(tier="Regular", purchase_count=2)) == {"r": 10}
    assert points(third_or_tenth, purchase("1.00"), Member(tier="Regular", purchase_count=9)) == {"r": 10}
    assert points(third_or_tenth, purchase("1.00"), Member(tier="Regular", purchase_count=3)) == {}


def test_minimum_order_met_and_missed():
    prog = one_rule('min_amount = "200.00"')

    assert points(prog, purchase("200.00")) == {"r": 10}
    missed = run(prog, purchase("199.99"))
    assert missed.awards == ()
    assert missed.trace[0].reason == "amount 199.99 is below the minimum 200.00"


def test_maximum_order():
    assert points(one_rule('max_amount = "50"'), purchase("50.00")) == {"r": 10}
    assert points(one_rule('max_amount = "50"'), purchase("50.01")) == {}


def test_item_filter_matches_when_some_line_matches():
    prog = one_rule('items = { categories = ["beauty"] }')

    assert points(prog, purchase("30.00", item("A", "10.00", "food"), item("B", "20.00", "beauty"))) == {"r": 10}
    missed = run(prog, purchase("10.00", item("A", "10.00", "food")))
    assert missed.trace[0].reason == "no order line matches the item filter"


def test_payload_attribute_equality():
    prog = one_rule("payload = { has_media = true }", on="review")

    assert points(prog, event("review", has_media=True)) == {"r": 10}
    assert points(prog, event("review", has_media=False)) == {}
    assert points(prog, event("review")) == {}


def test_after_rules_needs_the_other_rule_to_match_this_event():
    prog = program("""
[[rules]]
id = "base"
on = "review"
when = { sources = ["app"] }
effect = { kind = "fixed", points = 20 }
[[rules]]
id = "bonus"
on = "review"
when = { after_rules = ["base"] }
effect = { kind = "fixed", points = 30 }
""")

    assert points(prog, event("review", source="app")) == {"base": 20, "bonus": 30}
    assert points(prog, event("review", source="pos")) == {}
