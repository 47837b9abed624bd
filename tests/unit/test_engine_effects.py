"""Effects (per_amount, fixed, per_quantity, multiply) and how rules combine."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from tests.unit.engine_programs import at, event, item, points, program, purchase, run
from worker.domain.engine import Member

SHIPPING = '[items]\nshipping_skus = ["SHIP"]\nshipping_labels = ["shipping"]\n'


def per_amount(extra_effect: str = "", when: str = "", rule_id: str = "earn") -> str:
    return (
        f'[[rules]]\nid = "{rule_id}"\non = "purchase"\nwhen = {{ {when} }}\n'
        f'effect = {{ kind = "per_amount"{extra_effect} }}\n'
    )


@pytest.mark.parametrize(
    ("effect", "amount", "expected"),
    [
        ("", "350.75", 350),  # 1 per 1.00, floored by default
        (', rate = "2", unit = "10"', "355.00", 71),
        (', rate = "1", unit = "3"', "10.00", 3),  # 3.33
        (', rate = "1", unit = "3", rounding = "half_up"', "5.00", 2),  # 1.67
        (', rate = "1", unit = "3", rounding = "ceil"', "4.00", 2),  # 1.33
        (', rate = "1", unit = "2", rounding = "half_even"', "5.00", 2),  # 2.5
        (', rate = "1.5"', "0.29", 0),
    ],
)
def test_points_per_amount_rate_unit_and_rounding(effect, amount, expected):
    assert points(program(per_amount(effect)), purchase(amount)) == {"earn": expected}


def test_decimal_arithmetic_has_no_float_error():
    assert points(program(per_amount(', rate = "100"')), purchase("0.29")) == {"earn": 29}


def test_stepped_rates_whole_and_marginal():
    steps = ', steps = [{ from = "0", rate = "1" }, { from = "500", rate = "2" }, { from = "1000", rate = "3" }]'
    whole = program(per_amount(steps))
    marginal = program(per_amount(steps + ', stepping = "marginal"'))

    assert points(whole, purchase("499.00")) == {"earn": 499}
    assert points(whole, purchase("600.00")) == {"earn": 1200}
    assert points(whole, purchase("1000.00")) == {"earn": 3000}
    assert points(marginal, purchase("600.00")) == {"earn": 500 + 200}
    assert points(marginal, purchase("1200.00")) == {"earn": 500 + 1000 + 600}


def test_exclude_a_sku_from_points():
    prog = program(per_amount(when='items = { exclude_skus = ["GIFTCARD"] }'))

    assert points(prog, purchase("150.00", item("GIFTCARD", "100.00"), item("A", "50.00"))) == {"earn": 50}


def test_exclude_a_labelled_line():
    prog = program(per_amount(when='items = { exclude_labels = ["tobacco"] }'))

    ev = purchase("80.00", item("A", "30.00", labels=("tobacco", "adult")), item("B", "50.00", labels=("fresh",)))
    assert points(prog, ev) == {"earn": 50}


def test_include_only_filters_by_category_sku_or_label():
    prog = program(per_amount(when='items = { categories = ["beauty"], skus = ["X1"], labels = ["eco"] }'))

    ev = purchase(
        "100.00",
        item("A", "10.00", "beauty"),
        item("X1", "20.00", "food"),
        item("C", "30.00", "food", labels=("eco",)),
        item("D", "40.00", "food"),
    )
    assert points(prog, ev) == {"earn": 60}


def test_shipping_lines_are_excluded_from_line_and_order_amounts():
    lines = program(per_amount(when="items = {}"), extra=SHIPPING)
    order = program(per_amount(), extra=SHIPPING)
    with_shipping = program(per_amount(when="items = { shipping = true }"), extra=SHIPPING)
    ev = purchase("115.00", item("A", "100.00"), item("SHIP", "10.00"), item("EXP", "5.00", labels=("shipping",)))

    assert points(lines, ev) == {"earn": 100}
    assert points(order, ev) == {"earn": 100}  # the order amount less its shipping lines
    assert points(with_shipping, ev) == {"earn": 115}


def test_flat_points_per_product_quantity():
    prog = program("""
[[rules]]
id = "bottles"
on = "purchase"
when = { items = { skus = ["WATER-1", "WATER-2"] } }
effect = { kind = "per_quantity", points = 5 }
""")

    ev = purchase(
        "60.00", item("WATER-1", "20.00", quantity=3), item("WATER-2", "10.00", quantity=1), item("A", "30.00")
    )
    assert points(prog, ev) == {"bottles": 20}


def test_fixed_points_and_two_points_rules_at_once():
    prog = program(
        per_amount()
        + per_amount(', rate = "1", unit = "10"', when='items = { categories = ["beauty"] }', rule_id="beauty_extra")
        + """
[[rules]]
id = "thanks"
on = "purchase"
effect = { kind = "fixed", points = 7 }
"""
    )

    ev = purchase("100.00", item("A", "40.00", "beauty"), item("B", "60.00", "food"))
    assert points(prog, ev) == {"earn": 100, "beauty_extra": 4, "thanks": 7}


def test_multiplier_on_the_order_and_on_matching_lines():
    prog = program(
        per_amount()
        + """
[[rules]]
id = "double"
on = "purchase"
effect = { kind = "multiply", factor = "2" }
[[rules]]
id = "beauty"
on = "purchase"
when = { items = { categories = ["beauty"] } }
effect = { kind = "multiply", factor = "1.5", target = "lines" }
"""
    )

    ev = purchase("100.00", item("A", "40.00", "beauty"), item("B", "60.00", "food"))
    # (100 + 40 x 0.5) x 2
    assert points(prog, ev) == {"earn": 240}
    assert Decimal(run(prog, ev).awards[0].detail["weighted_amount"]) == Decimal("120")


def test_tier_multiplier_is_the_tier_held_before_the_event():
    prog = program(
        per_amount() + '[[rules]]\nid = "tier"\non = "purchase"\neffect = { kind = "multiply", factor = "tier" }\n'
    )

    assert points(prog, purchase("100.00"), Member(tier="Silver", qualifying=4999)) == {"earn": 150}


def test_multiplier_applies_to_named_per_amount_rules_only():
    prog = program(
        per_amount()
        + per_amount(', rate = "1", unit = "10"', rule_id="extra")
        + """
[[rules]]
id = "double_base"
on = "purchase"
effect = { kind = "multiply", factor = "2", applies_to = ["earn"] }
"""
    )

    assert points(prog, purchase("100.00")) == {"earn": 200, "extra": 10}


CAMPAIGNS = """
[[rules]]
id = "member_day"
on = "purchase"
when = { weekdays = ["wed"] }
effect = { kind = "multiply", factor = "2", group = "campaign" }
[[rules]]
id = "birthday"
on = "purchase"
when = { birthday = "day" }
effect = { kind = "multiply", factor = "3", group = "campaign" }
"""


@pytest.mark.parametrize(("mode", "expected"), [("highest", 300), ("stack", 600), ("first", 200)])
def test_group_highest_wins_stacks_or_takes_the_first(mode, expected):
    prog = program(per_amount() + CAMPAIGNS, extra=f'[groups]\ncampaign = "{mode}"\n')
    member = Member(tier="Regular", birthday=date(1990, 11, 4))

    result = run(prog, purchase("100.00", when=at(2026, 11, 4)), member)  # a Wednesday and the birthday
    assert result.points_by_rule() == {"earn": expected}


def test_multipliers_outside_any_group_stack():
    prog = program(per_amount() + CAMPAIGNS.replace(', group = "campaign"', ""))
    member = Member(tier="Regular", birthday=date(1990, 11, 4))

    assert points(prog, purchase("100.00", when=at(2026, 11, 4)), member) == {"earn": 600}


def test_the_trace_says_which_multiplier_a_group_left_out():
    prog = program(per_amount() + CAMPAIGNS, extra='[groups]\ncampaign = "highest"\n')
    member = Member(tier="Regular", birthday=date(1990, 11, 4))

    trace = {c.rule: c for c in run(prog, purchase("100.00", when=at(2026, 11, 4)), member).trace}
    assert "left out" in trace["member_day"].reason
    assert trace["birthday"].matched and "left out" not in trace["birthday"].reason


def test_line_group_first_makes_the_sku_win_over_its_category():
    prog = program(
        per_amount()
        + """
[[rules]]
id = "promo_sku"
on = "purchase"
when = { items = { skus = ["P1"] } }
effect = { kind = "multiply", factor = "1.2", target = "lines", group = "line" }
[[rules]]
id = "beauty"
on = "purchase"
when = { items = { categories = ["beauty"] } }
effect = { kind = "multiply", factor = "3", target = "lines", group = "line" }
""",
        extra='[groups]\nline = "first"\n',
    )

    ev = purchase("200.00", item("P1", "100.00", "beauty"), item("B", "100.00", "beauty"))
    assert points(prog, ev) == {"earn": 120 + 300}


STOPPER = """
[[rules]]
id = "staff"
on = "purchase"
priority = 10
when = { labels = ["employee"] }
stop = true
effect = { kind = "fixed", points = 0 }
"""


def test_a_matching_stop_rule_stops_the_rules_after_it():
    prog = program(per_amount() + STOPPER)
    staff = Member(tier="Regular", labels=frozenset({"employee"}))

    result = run(prog, purchase("100.00"), staff)
    assert result.points_by_rule() == {"staff": 0}
    assert [(c.rule, c.matched, c.reason) for c in result.trace] == [
        ("staff", True, "fixed"),
        ("earn", False, "stopped by rule 'staff'"),
    ]


def test_a_stop_rule_that_does_not_match_stops_nothing():
    prog = program(per_amount() + STOPPER)

    assert points(prog, purchase("100.00")) == {"earn": 100}


def test_priority_orders_rules_and_ties_keep_file_order():
    prog = program("""
[[rules]]
id = "low"
on = "check_in"
effect = { kind = "fixed", points = 1 }
[[rules]]
id = "high"
on = "check_in"
priority = 5
stop = true
effect = { kind = "fixed", points = 2 }
[[rules]]
id = "also_low"
on = "check_in"
effect = { kind = "fixed", points = 3 }
""")

    result = run(prog, event("check_in"))
    assert [c.rule for c in result.trace] == ["high", "low", "also_low"]
    assert result.points_by_rule() == {"high": 2}
