"""The rule engine gives today's points, rule by rule, for the default program and old-style files.

Generated inputs go through worker/domain/engine/reference_rules.py and through the engine (the shipped
default_program.toml, and from_program() of generated old-style programs); the points each
rule gives must be the same. Zero-point awards are left out on both sides: rules.py gives
some (a purchase of 0.99) and omits others (a 0 media bonus).
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from worker.domain.engine import EventData, Member, default_engine_program, evaluate, from_program, state_from_member
from worker.domain.engine import reference_rules as rules
from worker.domain.engine.reference_rules import MemberState
from worker.domain.events import Item
from worker.domain.program import DEFAULT_PROGRAM, Campaign, CheckIn, MemberDay, Multipliers, Program, Review, Tier

DEFAULT_ENGINE = default_engine_program()
SKUS = ("SKU-1", "SKU-2", "SKU-PROMO-1", "SKU-3")
CATEGORIES = ("beauty", "food", "toys")
SOURCES = ("pos", "ecommerce", "app", "mini")

days = st.dates(min_value=date(2023, 1, 1), max_value=date(2028, 12, 31))
birthdays = st.one_of(
    st.none(),
    st.dates(min_value=date(1950, 1, 1), max_value=date(2010, 12, 31)),
    st.just(date(1992, 2, 29)),
    st.just(date(1990, 12, 31)),
)
money = st.decimals(min_value=Decimal("0.01"), max_value=Decimal("99999.99"), places=2)
factors = st.decimals(min_value=Decimal("0.5"), max_value=Decimal("5"), places=2)
local_times = st.times(min_value=time(0, 0), max_value=time(23, 59, 59))


def at_local(program, on: date, clock: time = time(12)) -> datetime:
    return datetime.combine(on, clock, tzinfo=program.zone)


def nonzero(awards) -> dict[str, int]:
    return {award.rule: award.points for award in awards if award.points}


items_strategy = st.lists(
    st.builds(
        lambda sku, category, amount, quantity: Item(sku=sku, category=category, amount=str(amount), quantity=quantity),
        st.sampled_from(SKUS),
        st.sampled_from(CATEGORIES),
        money,
        st.integers(1, 5),
    ),
    max_size=4,
).map(tuple)


@st.composite
def old_style_programs(draw) -> Program:
    campaigns = []
    for index in range(draw(st.integers(0, 3))):
        start = draw(days)
        campaigns.append(
            Campaign(
                name=f"campaign-{index}",
                multiplier=draw(factors),
                starts_on=start,
                ends_on=start + timedelta(days=draw(st.integers(0, 40))),
                sources=draw(
                    st.one_of(st.none(), st.lists(st.sampled_from(SOURCES), min_size=1, unique=True).map(tuple))
                ),
            )
        )
    tiers = tuple(Tier(name=t.name, threshold=t.threshold, multiplier=draw(factors)) for t in DEFAULT_PROGRAM.tiers)
    return DEFAULT_PROGRAM.model_copy(
        update={
            "tiers": tiers,
            "campaigns": tuple(campaigns),
            "member_day": MemberDay(
                enabled=draw(st.booleans()), day_of_month=draw(st.integers(1, 31)), multiplier=draw(factors)
            ),
            "multipliers": Multipliers(
                categories=draw(st.dictionaries(st.sampled_from(CATEGORIES), factors, max_size=2)),
                skus=draw(st.dictionaries(st.sampled_from(SKUS), factors, max_size=2)),
            ),
            "purchase": DEFAULT_PROGRAM.purchase.model_copy(
                update={"first_purchase_bonus": draw(st.sampled_from([0, 100, 250]))}
            ),
            "check_in": CheckIn(
                points=draw(st.integers(0, 20)),
                streak_days=draw(st.integers(2, 9)),
                streak_bonus=draw(st.integers(0, 80)),
            ),
            "review": Review(
                points=draw(st.integers(0, 30)),
                media_bonus=draw(st.integers(0, 40)),
                daily_limit=draw(st.integers(0, 4)),
            ),
        }
    )


def compare_purchase(legacy: Program, engine, tier, birthday, has_purchased, amount, items, on, source, clock):
    state = MemberState(tier=tier, birthday=birthday, has_purchased=has_purchased)
    expected = rules.purchase(legacy, state, amount=amount, items=items, on=on, source=source)
    payload = {"amount": str(amount), "items": [item.model_dump(mode="json") for item in items]}
    member = Member(tier=tier, birthday=birthday, purchase_count=1 if has_purchased else 0)
    got = evaluate(engine, member, EventData("purchase", source, at_local(legacy, on, clock), payload))
    assert nonzero(got.awards) == nonzero(expected.awards)


tiers = st.sampled_from([t.name for t in DEFAULT_PROGRAM.tiers])


@settings(max_examples=300, deadline=None)
@given(tiers, birthdays, st.booleans(), money, items_strategy, days, st.sampled_from(SOURCES), local_times)
def test_default_program_purchase_matches_rules(tier, birthday, has_purchased, amount, items, on, source, clock):
    compare_purchase(DEFAULT_PROGRAM, DEFAULT_ENGINE, tier, birthday, has_purchased, amount, items, on, source, clock)


@settings(max_examples=300, deadline=None)
@given(
    old_style_programs(), tiers, birthdays, st.booleans(), money, items_strategy, st.data(), st.sampled_from(SOURCES)
)
def test_old_style_program_purchase_matches_rules(program, tier, birthday, has_purchased, amount, items, data, source):
    # Mostly days at the edges of the program's campaigns, where windows and sources decide.
    edges = [c.starts_on + timedelta(days=d) for c in program.campaigns for d in (-1, 0, 1)]
    edges += [c.ends_on + timedelta(days=d) for c in program.campaigns for d in (-1, 0, 1)]
    on = data.draw(st.sampled_from(edges) if edges and data.draw(st.booleans()) else days)
    compare_purchase(program, from_program(program), tier, birthday, has_purchased, amount, items, on, source, time(9))


def test_old_style_example_file_matches_rules_on_its_campaign_and_lines():
    program = DEFAULT_PROGRAM.model_copy(
        update={
            "multipliers": Multipliers(categories={"beauty": Decimal("1.5")}, skus={"SKU-PROMO-1": Decimal("3")}),
            "campaigns": (
                Campaign(
                    name="double-12",
                    multiplier=Decimal("2"),
                    starts_on=date(2026, 12, 1),
                    ends_on=date(2026, 12, 3),
                    sources=("ecommerce", "app"),
                ),
            ),
        }
    )
    items = (
        Item(sku="SKU-PROMO-1", category="beauty", amount="10.00", quantity=1),
        Item(sku="SKU-9", category="beauty", amount="20.00", quantity=1),
    )
    for on, source in [(date(2026, 12, 2), "app"), (date(2026, 12, 2), "pos"), (date(2026, 12, 4), "app")]:
        compare_purchase(
            program, from_program(program), "Gold", None, True, Decimal("100.00"), items, on, source, time(8)
        )


@st.composite
def day_sequences(draw, *, ordered: bool):
    start = draw(days)
    offsets = draw(st.lists(st.integers(0, 20), min_size=1, max_size=25))
    if ordered:
        offsets = sorted(offsets)
    return [start + timedelta(days=o) for o in offsets]


def run_sequence(legacy: Program, engine, state: MemberState, events):
    """Apply (kind, on, extra) events through both; compare each event's points per rule."""
    rule_state = state_from_member(state)
    for kind, on, extra in events:
        if kind == "check_in":
            expected = rules.check_in(legacy, state, on)
            event = EventData("check_in", "app", at_local(legacy, on))
        elif kind == "review":
            expected = rules.review(legacy, state, on=on, has_media=extra)
            event = EventData(
                "review",
                "app",
                at_local(legacy, on),
                {"review_id": "r", "order_id": "o", "sku": "s", "has_media": extra},
            )
        else:
            expected = rules.signup(legacy, state)
            event = EventData("signup", "app", at_local(legacy, on), {})
        got = evaluate(engine, Member(tier="Regular", state=rule_state), event)
        assert nonzero(got.awards) == nonzero(expected.awards), (kind, on)
        state, rule_state = expected.state, got.state


@settings(max_examples=200, deadline=None)
@given(day_sequences(ordered=False))
def test_default_check_in_sequences_match_rules(sequence):
    run_sequence(DEFAULT_PROGRAM, DEFAULT_ENGINE, MemberState(), [("check_in", on, None) for on in sequence])


@settings(max_examples=150, deadline=None)
@given(old_style_programs(), day_sequences(ordered=False), st.integers(0, 8), st.integers(0, 3))
def test_old_style_check_in_sequences_match_rules_from_a_stored_streak(program, sequence, streak, gap):
    streak = min(streak, program.check_in.streak_days - 1)
    start = MemberState(check_in_last_on=sequence[0] - timedelta(days=gap), check_in_streak=streak)
    run_sequence(program, from_program(program), start, [("check_in", on, None) for on in sequence])


def test_seven_day_streak_then_a_gap_matches_rules():
    first = date(2026, 11, 1)
    sequence = [first + timedelta(days=d) for d in (0, 1, 2, 3, 4, 5, 6, 7, 9, 10)]
    run_sequence(DEFAULT_PROGRAM, DEFAULT_ENGINE, MemberState(), [("check_in", on, None) for on in sequence])


@settings(max_examples=200, deadline=None)
@given(old_style_programs(), st.lists(st.tuples(st.integers(0, 3), st.booleans()), min_size=1, max_size=15), days)
def test_review_sequences_over_the_daily_cap_match_rules(program, steps, start):
    # Events in the order they occurred (see docs/rules.md for late reviews).
    offsets = sorted(step[0] for step in steps)
    events = [("review", start + timedelta(days=o), media) for o, (_, media) in zip(offsets, steps, strict=True)]
    for legacy, engine in ((program, from_program(program)), (DEFAULT_PROGRAM, DEFAULT_ENGINE)):
        run_sequence(legacy, engine, MemberState(), events)


@given(st.integers(1, 4), days)
def test_signup_twice_or_more_matches_rules(times, on):
    run_sequence(DEFAULT_PROGRAM, DEFAULT_ENGINE, MemberState(), [("signup", on, None)] * times)


def test_referrals_match_rules():
    on = datetime(2026, 11, 2, 10, tzinfo=DEFAULT_PROGRAM.zone)
    referrer = evaluate(
        DEFAULT_ENGINE, Member(tier="Gold"), EventData("referral", "app", on, {"referee_member_id": "M2"})
    )
    referee = evaluate(DEFAULT_ENGINE, Member(tier="Regular"), EventData("referral_referee", "app", on))

    assert nonzero(referrer.awards) == nonzero(rules.referrer(DEFAULT_PROGRAM, MemberState(), "M2").awards)
    assert nonzero(referee.awards) == nonzero(rules.referee(DEFAULT_PROGRAM, MemberState(), "M1").awards)


def test_default_toml_and_translated_default_program_agree_on_every_rule_number():
    translated = from_program(DEFAULT_PROGRAM)
    shipped = {rule.id: rule.model_dump(exclude={"description"}) for rule in DEFAULT_ENGINE.rules}
    derived = {rule.id: rule.model_dump(exclude={"description"}) for rule in translated.rules}

    assert shipped == derived
    assert DEFAULT_ENGINE.tiers == translated.tiers
    assert DEFAULT_ENGINE.groups == translated.groups


MONTH_ENDS = [date(2026, m, d) for m, d in ((1, 31), (2, 28), (4, 30), (4, 29), (6, 30), (12, 31))] + [
    date(2028, 2, 29)
]


@settings(max_examples=100, deadline=None)
@given(st.integers(28, 31), st.sampled_from(MONTH_ENDS), money)
def test_member_day_past_the_months_end_matches_rules(day_of_month, on, amount):
    program = DEFAULT_PROGRAM.model_copy(update={"member_day": MemberDay(day_of_month=day_of_month)})
    compare_purchase(program, from_program(program), "Regular", None, True, amount, (), on, "pos", time(23, 59))


@given(
    st.sampled_from([date(2026, 2, 28), date(2026, 3, 1), date(2028, 2, 28), date(2028, 2, 29), date(2027, 2, 28)]),
    st.sampled_from([date(1992, 2, 29), date(1990, 2, 28), date(1990, 3, 1)]),
    money,
)
def test_birthdays_including_29_february_match_rules(on, birthday, amount):
    compare_purchase(DEFAULT_PROGRAM, DEFAULT_ENGINE, "Silver", birthday, True, amount, (), on, "pos", time(0, 5))
