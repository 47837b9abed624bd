"""The compiled engine gives exactly what the interpreter gives.

`evaluate` (engine/compiled.py) runs each program compiled once into closures; `interpret`
(engine/evaluate.py) walks the rule data for every event. Generated programs (every condition,
effect, limit, streak, mission, group mode, stop and priority the language has) and generated
event sequences go through both, the rule state carried from one event to the next; the whole
evaluation must be equal each time: awards with their details, rule state and trace with its
reasons, or the same error.
"""

from __future__ import annotations

import copy
import gc
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.unit.engine_programs import at, item, program, purchase
from worker.domain.engine import EventData, Member, default_engine_program, parse_engine_program
from worker.domain.engine.compiled import _COMPILED, compiled, evaluate
from worker.domain.engine.evaluate import interpret
from worker.domain.errors import EngineError, RuleStateError
from worker.domain.events import Item

ZONE = ZoneInfo("Asia/Shanghai")
TIERS = ("Regular", "Silver", "Gold")
EVENT_TYPES = ("purchase", "check_in", "review", "activity", "signup")
SOURCES = ("pos", "app", "ecommerce")
LABELS = ("plus", "employee", "vip")
ITEM_LABELS = ("eco", "fresh", "ship")
SKUS = ("A", "B", "SHIP", "GIFT")
CATEGORIES = ("food", "beauty", "shipping")
KINDS = ("share", "survey", "quiz")  # quiz is declared by some programs only
GROUPS = ("campaign", "line", "extra")
FIRST_DAY = date(2026, 1, 26)

# Mostly days of a few weeks (so that limits fill and streaks run), now and then years apart.
days = st.one_of(
    st.integers(0, 40).map(lambda n: FIRST_DAY + timedelta(days=n)),
    st.integers(-800, 1200).map(lambda n: FIRST_DAY + timedelta(days=n)),
)
# Hours at and around the edges of the time windows the rules are given.
HOURS = (0, 6, 11, 12, 14, 22, 23)
money = st.integers(0, 200_000).map(lambda cents: Decimal(cents) / 100)
factors = st.sampled_from(["0.5", "1", "1.5", "2", "3"])


# True about one time in ten.
rarely = st.sampled_from([False] * 9 + [True])


def some(values) -> st.SearchStrategy:
    return st.lists(st.sampled_from(values), min_size=1, max_size=len(values), unique=True)


@st.composite
def item_filters(draw) -> dict:
    keys = {
        "skus": some(SKUS),
        "categories": some(CATEGORIES),
        "labels": some(ITEM_LABELS),
        "exclude_skus": some(SKUS),
        "exclude_categories": some(CATEGORIES),
        "exclude_labels": some(ITEM_LABELS),
        "shipping": st.booleans(),
    }
    chosen = draw(st.lists(st.sampled_from(sorted(keys)), max_size=3, unique=True))
    return {key: draw(keys[key]) for key in chosen}


@st.composite
def conditions(draw, rule_ids: list[str], streak_rules: list[str], on: tuple[str, ...], kind: str) -> dict:
    """A `when` table: a few conditions of every kind the language has (often an item filter
    for the effects that read lines)."""
    when: dict = {}
    if kind != "fixed" and draw(st.booleans()):
        when["items"] = draw(item_filters())
    options = [
        "sources",
        "tiers",
        "labels",
        "exclude_labels",
        "dates",
        "weekdays",
        "days_of_month",
        "birthday",
        "time",
        "amounts",
        "items",
        "payload",
    ]
    if on == ("purchase",):
        options.append("nth_purchase")
    if on == ("activity",):
        options.append("kinds")
    if rule_ids:
        options.append("after_rules")
    if streak_rules:
        options.append("streak")
    # Few conditions a rule, so that rules match often enough for their effects to meet.
    count = draw(st.sampled_from([0, 0, 1, 1, 2, 3]))
    for option in draw(st.lists(st.sampled_from(options), min_size=count, max_size=count, unique=True)):
        if option == "sources":
            when["sources"] = draw(some(SOURCES))
        elif option == "tiers":
            when["tiers"] = draw(some(TIERS))
        elif option == "labels":
            when["labels"] = draw(some(LABELS))
        elif option == "exclude_labels":
            when["exclude_labels"] = draw(some(LABELS))
        elif option == "kinds":
            when["kinds"] = draw(some(("share", "survey")))
        elif option == "dates":
            first, length = draw(days), draw(st.integers(0, 20))
            if draw(st.booleans()):
                when["starts_on"] = first
            if draw(st.booleans()):
                when["ends_on"] = first + timedelta(days=length)
        elif option == "weekdays":
            when["weekdays"] = draw(st.lists(st.integers(1, 7), min_size=1, max_size=3, unique=True))
        elif option == "days_of_month":
            when["days_of_month"] = draw(st.lists(st.sampled_from([1, 8, 15, 28, 29, 30, 31]), min_size=1, max_size=3))
        elif option == "birthday":
            when["birthday"] = draw(st.sampled_from(["day", "month"]))
        elif option == "time":
            start, end = draw(st.lists(st.sampled_from(HOURS), min_size=2, max_size=2, unique=True))
            when["time"] = {"from": time(start), "to": time(end)}
        elif option == "nth_purchase":
            when["nth_purchase"] = draw(st.lists(st.integers(1, 4), min_size=1, max_size=2))
        elif option == "amounts":
            least = draw(st.sampled_from(["0", "10.00", "150.00", None]))
            most = draw(st.sampled_from(["300.00", "2000.00", None]))
            if least is not None:
                when["min_amount"] = least
            if most is not None:
                when["max_amount"] = most
        elif option == "items":
            when["items"] = draw(item_filters())
        elif option == "payload":
            when["payload"] = draw(
                st.dictionaries(
                    st.sampled_from(["has_media", "channel", "level", "currency"]),
                    st.one_of(st.booleans(), st.sampled_from(["spring", "CNY", "5"]), st.integers(0, 6)),
                    min_size=1,
                    max_size=2,
                )
            )
        elif option == "after_rules":
            when["after_rules"] = draw(some(rule_ids))
        elif option == "streak":
            rule = draw(st.sampled_from(streak_rules))
            when["streak"] = (
                {"rule": rule, "day": draw(st.integers(1, 4))}
                if draw(st.booleans())
                else {
                    "rule": rule,
                    "every": draw(st.integers(1, 3)),
                }
            )
    return when


@st.composite
def effects(draw, kind: str, has_items: bool, per_amount_rules: list[str], groups: list[str]) -> dict:
    if kind == "fixed":
        return {"kind": "fixed", "points": draw(st.integers(0, 100))}
    if kind == "per_quantity":
        return {"kind": "per_quantity", "points": draw(st.integers(0, 10))}
    if kind == "per_amount":
        effect: dict = {
            "kind": "per_amount",
            "unit": draw(st.sampled_from(["1", "3", "10"])),
            "rounding": draw(st.sampled_from(["floor", "ceil", "half_up", "half_even"])),
        }
        if draw(st.booleans()):
            effect["steps"] = [
                {"from": "0", "rate": draw(st.sampled_from(["0", "0.5", "1"]))},
                {"from": "100", "rate": draw(st.sampled_from(["1", "2"]))},
                {"from": "500", "rate": draw(st.sampled_from(["2", "3"]))},
            ]
            effect["stepping"] = draw(st.sampled_from(["whole", "marginal"]))
        else:
            effect["rate"] = draw(st.sampled_from(["0", "1", "1.5", "2"]))
        return effect
    effect = {"kind": "multiply", "factor": draw(st.sampled_from(["tier", "0.5", "1.5", "2", "3"]))}
    if has_items and draw(st.booleans()):
        effect["target"] = "lines"
    if groups and draw(st.booleans()):
        effect["group"] = draw(st.sampled_from(groups))
    if per_amount_rules and draw(st.booleans()):
        effect["applies_to"] = draw(some(per_amount_rules))
    return effect


@st.composite
def programs(draw):
    """A valid program in the rule language: 1-9 rules, of every shape."""
    count = draw(st.integers(1, 9))
    ids = [f"r{n}" for n in range(count)]
    # A purchase's points come from per_amount rules and their multipliers: most programs have some.
    kinds = [draw(st.sampled_from(["per_amount", "multiply", "multiply", "fixed", "per_quantity"])) for _ in ids]
    streaks = [draw(st.booleans()) and draw(st.booleans()) for _ in ids]
    streak_rules = [rule_id for rule_id, streak in zip(ids, streaks, strict=True) if streak]
    per_amount_rules = [rule_id for rule_id, kind in zip(ids, kinds, strict=True) if kind == "per_amount"]
    groups = {name: draw(st.sampled_from(["highest", "stack", "first"])) for name in draw(some(GROUPS))}
    rules = []
    for index, rule_id in enumerate(ids):
        amounts = kinds[index] in ("per_amount", "multiply")
        on = ("purchase",) if amounts or draw(st.booleans()) else tuple(draw(some(EVENT_TYPES)))
        when = draw(conditions(ids[:index] + ids[index + 1 :], streak_rules, on, kinds[index]))
        rule: dict = {
            "id": rule_id,
            "on": list(on),
            "priority": draw(st.sampled_from([0, 0, 0, 5, -5])),
            "when": when,
            "effect": draw(effects(kinds[index], "items" in when, per_amount_rules, sorted(groups))),
        }
        if draw(st.integers(0, 3)) == 0:
            rule["limits"] = [
                {"per": per, **limit}
                for per, limit in zip(
                    draw(some(["day", "week", "month", "year", "ever"])),
                    draw(
                        st.lists(
                            st.sampled_from([{"count": 1}, {"count": 2}, {"points": 60}, {"count": 3, "points": 150}]),
                            min_size=2,
                            max_size=2,
                        )
                    ),
                    strict=False,
                )
            ]
        if streaks[index]:
            rule["streak"] = {"restart_after": draw(st.integers(2, 4))} if draw(st.booleans()) else {}
        elif draw(st.integers(0, 5)) == 0:
            steps = [
                {"name": "s_purchase", "on": "purchase", "when": {"min_amount": "1.00"}},
                {"name": "s_check_in", "on": ["check_in", "activity"]},
                {"name": "s_signup", "on": "signup"},
            ]
            rule["mission"] = {"within_days": draw(st.integers(1, 10)), "steps": steps[: draw(st.integers(1, 3))]}
            if draw(st.booleans()):
                del rule["on"]
        if draw(rarely):
            rule["stop"] = True
        rules.append(rule)
    data = {
        "version": "generated",
        "timezone": "Asia/Shanghai",
        "groups": groups,
        "activity": {"kinds": ["quiz"] if draw(st.booleans()) else []},
        "items": draw(
            st.sampled_from(
                [{}, {"shipping_skus": ["SHIP"]}, {"shipping_categories": ["shipping"], "shipping_labels": ["ship"]}]
            )
        ),
        "tiers": {
            "levels": [
                {"name": "Regular", "threshold": 0},
                {"name": "Silver", "threshold": 1000, "multiplier": "1.5"},
                {"name": "Gold", "threshold": 5000, "multiplier": "2"},
            ]
        },
        "rules": rules,
    }
    return parse_engine_program(data)


@st.composite
def purchase_programs(draw):
    """Programs of per_amount rules and their multipliers only, with item filters and limits by
    points: where groups, targets, `applies_to`, line factors, steps and caps meet."""
    ids = [f"r{n}" for n in range(draw(st.integers(2, 7)))]
    kinds = ["per_amount"] + [draw(st.sampled_from(["per_amount", "multiply", "multiply"])) for _ in ids[1:]]
    per_amount_rules = [rule_id for rule_id, kind in zip(ids, kinds, strict=True) if kind == "per_amount"]
    groups = {name: draw(st.sampled_from(["highest", "stack", "first"])) for name in GROUPS}
    rules = []
    for rule_id, kind in zip(ids, kinds, strict=True):
        when = {"items": draw(item_filters())} if draw(st.booleans()) else {}
        if draw(rarely):
            when["tiers"] = draw(some(TIERS))
        rule = {
            "id": rule_id,
            "on": "purchase",
            "when": when,
            "effect": draw(effects(kind, "items" in when, per_amount_rules, sorted(groups))),
        }
        if kind == "per_amount" and draw(rarely):
            rule["limits"] = [{"per": "day", "points": draw(st.sampled_from([1, 50, 400]))}]
        rules.append(rule)
    return parse_engine_program(
        {
            "version": "purchases",
            "groups": groups,
            "items": {"shipping_skus": ["SHIP"]} if draw(st.booleans()) else {},
            "tiers": {
                "levels": [
                    {"name": "Regular", "threshold": 0},
                    {"name": "Silver", "threshold": 1000, "multiplier": "1.5"},
                    {"name": "Gold", "threshold": 5000, "multiplier": "2"},
                ]
            },
            "rules": rules,
        }
    )


@st.composite
def payloads(draw, event_type: str) -> dict:
    if event_type == "purchase":
        lines = draw(
            st.lists(
                st.fixed_dictionaries(
                    {
                        "sku": st.sampled_from(SKUS),
                        "category": st.sampled_from(CATEGORIES),
                        "amount": money,
                        "quantity": st.integers(1, 4),
                    },
                    optional={"labels": st.lists(st.sampled_from(ITEM_LABELS), max_size=2, unique=True)},
                ),
                min_size=draw(st.sampled_from([0, 1, 1, 2])),
                max_size=4,
            )
        )
        amount = sum((line["amount"] for line in lines), Decimal(0)) + draw(money)
        payload: dict = {"order_id": "O1", "currency": draw(st.sampled_from(["CNY", "USD"])), "items": lines}
        if not draw(rarely):
            payload["amount"] = amount if draw(st.booleans()) else str(amount)
        return payload
    if event_type == "review":
        return {"review_id": "r", "order_id": "O1", "sku": "A", "has_media": draw(st.booleans())}
    if event_type == "activity":
        attributes = draw(
            st.dictionaries(
                st.sampled_from(["channel", "level", "kind"]),
                st.one_of(st.sampled_from(["spring", "5"]), st.integers(0, 6), st.booleans()),
                max_size=2,
            )
        )
        return {"kind": draw(st.sampled_from(KINDS)), "attributes": attributes}
    return {}


@st.composite
def events(draw) -> EventData:
    event_type = draw(st.sampled_from(("purchase", "purchase", *EVENT_TYPES)))
    on = draw(days)
    when = datetime.combine(on, time(draw(st.sampled_from(HOURS)), draw(st.sampled_from([0, 30]))), tzinfo=ZONE)
    return EventData(event_type, draw(st.sampled_from(SOURCES)), when, draw(payloads(event_type)))


members = st.builds(
    Member,
    tier=st.sampled_from(TIERS),
    labels=st.frozensets(st.sampled_from(LABELS), max_size=2),
    birthday=st.one_of(st.none(), days.map(lambda d: d.replace(year=1990)), st.just(date(1992, 2, 29))),
    purchase_count=st.integers(0, 4),
)


def outcome(evaluator, prog, member, event):
    try:
        return evaluator(prog, member, event)
    except (EngineError, RuleStateError) as error:
        return type(error), str(error)


def replay_both(prog, member: Member, sequence: list[EventData]) -> None:
    """Each event through both, on the state the interpreter left; every result equal."""
    state: dict = dict(member.state)
    for event in sequence:
        now = Member(member.tier, member.qualifying, member.labels, member.birthday, member.purchase_count, state)
        expected = outcome(interpret, prog, now, event)
        kept = copy.deepcopy(state)
        got = outcome(evaluate, prog, now, event)
        assert got == expected, event
        assert state == kept  # the member's state is read, never changed in place
        if not isinstance(expected, tuple):
            # The details read the same too (== on a Decimal would not tell 1.0 from 1.00).
            assert [a.as_json() for a in got.awards] == [a.as_json() for a in expected.awards]
            assert repr(got.state) == repr(expected.state)
            state = expected.state


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(programs(), members, st.lists(events(), min_size=5, max_size=20))
def test_compiled_evaluations_equal_the_interpreter_s(prog, member, sequence):
    replay_both(prog, member, sequence)


@settings(max_examples=300, deadline=None)
@given(purchase_programs(), members, st.lists(events(), min_size=5, max_size=10))
def test_compiled_multipliers_equal_the_interpreter_s(prog, member, sequence):
    replay_both(prog, member, sequence)


@settings(max_examples=200, deadline=None)
@given(members, st.lists(events(), min_size=5, max_size=10))
def test_the_default_program_compiled_equals_the_interpreter(member, sequence):
    replay_both(default_engine_program(), member, sequence)


@settings(max_examples=100, deadline=None)
@given(programs(), members, st.lists(events(), min_size=10, max_size=30), st.data())
def test_a_stored_state_is_read_the_same(prog, member, sequence, data):
    """From rule state another program left (stale period kinds, old counters, streaks, missions)."""
    other = data.draw(programs())
    state: dict = {}
    for event in sequence:
        result = interpret(other, Member(member.tier, state=state), event)
        state = result.state
    replay_both(prog, Member(member.tier, member.qualifying, member.labels, member.birthday, 0, state), sequence)


def test_items_as_contract_objects_read_as_mappings_do():
    prog = program(
        '[[rules]]\nid = "earn"\non = "purchase"\nwhen = { items = { categories = ["beauty"] } }\n'
        'effect = { kind = "per_amount" }\n'
    )
    lines = [Item(sku="A", category="beauty", amount="10.50", quantity=2, labels=("eco",))]
    event = EventData("purchase", "pos", at(2026, 11, 2), {"amount": Decimal("20.00"), "items": lines})

    assert evaluate(prog, Member(tier="Regular"), event) == interpret(prog, Member(tier="Regular"), event)
    assert evaluate(prog, Member(tier="Regular"), event).points == 10


@pytest.mark.parametrize(
    ("member", "payload", "message"),
    [
        (Member(tier="Platinum"), {"amount": "1.00"}, "member tier 'Platinum' is not a tier of program 7"),
        (Member(tier="Regular"), {"amount": 1.5}, "payload.amount: must be a decimal string or Decimal, not float"),
        (
            Member(tier="Regular"),
            {"amount": "9.00", "items": [{"sku": "A", "amount": "x"}]},
            "payload.items.0.amount: 'x' is not a decimal amount",
        ),
    ],
)
def test_the_same_errors(member, payload, message):
    prog = program('[[rules]]\nid = "earn"\non = "purchase"\neffect = { kind = "per_amount" }\n')
    event = EventData("purchase", "pos", at(2026, 11, 2), payload)

    for evaluator in (evaluate, interpret):
        with pytest.raises(EngineError) as error:
            evaluator(prog, member, event)
        assert str(error.value) == message


def test_a_program_is_compiled_once_and_a_changed_copy_anew():
    prog = program('[[rules]]\nid = "earn"\non = "purchase"\neffect = { kind = "per_amount" }\n')
    doubled = prog.model_copy(
        update={
            "rules": (
                prog.rules[0].model_copy(
                    update={"effect": prog.rules[0].effect.model_copy(update={"rate": Decimal(2)})}
                ),
            )
        }
    )

    assert compiled(prog) is compiled(prog)
    assert evaluate(prog, Member(tier="Regular"), purchase("10.00")).points == 10
    assert evaluate(doubled, Member(tier="Regular"), purchase("10.00")).points == 20


def test_a_compiled_program_goes_with_its_program():
    prog = program('[[rules]]\nid = "earn"\non = "purchase"\neffect = { kind = "per_amount" }\n')
    compiled(prog)
    key = id(prog)
    assert key in _COMPILED

    del prog
    gc.collect()

    assert key not in _COMPILED


def test_an_example_with_every_shape_of_line_multiplier():
    prog = program(
        (
            '[[rules]]\nid = "earn"\non = "purchase"\neffect = { kind = "per_amount" }\n'
            '[[rules]]\nid = "sku"\non = "purchase"\nwhen = { items = { skus = ["A"] } }\n'
            'effect = { kind = "multiply", factor = "3", target = "lines", group = "line" }\n'
            '[[rules]]\nid = "cat"\non = "purchase"\nwhen = { items = { categories = ["beauty"] } }\n'
            'effect = { kind = "multiply", factor = "2", target = "lines", group = "line" }\n'
        ),
        '[groups]\nline = "first"\n',
    )
    event = purchase("100.00", item("A", "10.00", "beauty"), item("B", "20.00", "beauty"), item("C", "30.00"))

    got = evaluate(prog, Member(tier="Regular"), event)
    assert got == interpret(prog, Member(tier="Regular"), event)
    assert got.points_by_rule() == {"earn": 100 + 20 + 20}
