"""The pure deciders on plain data: one event, the member's state before it, the program ->
the steps to write and the state moved on. No database, no clock."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from tests import factories as f
from worker.domain import deciders, referrals
from worker.domain.deciders import DECIDERS, Facts, decide, referral_facts
from worker.domain.decisions import (
    Decision,
    DropReview,
    Earn,
    MarkApplied,
    MemberState,
    OrderState,
    Origin,
    Outcome,
    PutOrder,
    PutRefund,
    PutReview,
    RefundRow,
    Reverse,
    ReviewRow,
    WaitFor,
)
from worker.domain.engine import Award
from worker.domain.events import parse_event
from worker.domain.program import DEFAULT_PROGRAM as P
from worker.domain.program import Birthday, Pending, Program, Refunds
from worker.services.ledger import BirthdayGift, RefereeBonus

MEMBER = "M1"


def fresh(member_id: str = MEMBER) -> MemberState:
    """A member with no events, as a re-evaluation starts."""
    return MemberState(
        member_id=member_id,
        tier="Regular",
        qualifying=0,
        qualifying_amount=Decimal(0),
        profile={
            "birthday": None,
            "locale": None,
            "signed_up_at": None,
            "first_purchase_at": None,
            "labels": frozenset(),
        },
        rule_state={},
    )


def at(day: int, hour: int = 10, year: int = 2026) -> str:
    """A November time in the program's zone (no member day: that is the 8th)."""
    return f"{year}-11-{day:02d}T{hour:02d}:00:00+08:00"


def purchase(order_id: str, amount: str, event_id: str, occurred_at: str = at(2)) -> Any:
    return parse_event(f.purchase(MEMBER, amount, order_id, event_id=event_id, occurred_at=occurred_at))


def refund(order_id: str, refund_id: str, amount: str, event_id: str, occurred_at: str = at(3)) -> Any:
    return parse_event(f.refund(MEMBER, order_id, amount, refund_id, event_id=event_id, occurred_at=occurred_at))


def review(order_id: str, sku: str, event_id: str, has_media: bool = False, occurred_at: str = at(4)) -> Any:
    event = f.review(MEMBER, order_id, sku, has_media, event_id=event_id, source="app", occurred_at=occurred_at)
    return parse_event(event)


def rules(step: Earn) -> list[tuple[str, int]]:
    return [(a.rule, a.points) for a in step.awards]


def kinds(decision: Decision) -> list[str]:
    return [type(step).__name__ for step in decision.steps]


# ---------------------------------------------------------------- purchase


def test_a_purchase_earns_by_the_default_program_and_puts_its_order():
    state = fresh()
    event = purchase("O1", "350.75", "p1")

    decision = decide(state, event, P)

    assert decision.outcome == Outcome("applied", 450)
    earn = decision.steps[0]
    assert rules(earn) == [("purchase", 350), ("first_purchase", 100)]  # floor(350.75 x 1.0) + first-purchase bonus
    assert earn.awards[0].detail["tier"] == "Regular"
    assert decision.steps == [Earn(Origin.of(event), earn.awards, order_id="O1"), PutOrder("O1", purchase=True)]
    assert earn.pending is False and earn.notify == "points_earned"
    assert state.qualifying == 450
    assert state.qualifying_amount == Decimal("350.75")
    assert state.purchases == 1
    assert state.profile["first_purchase_at"] == event.occurred_at
    assert state.orders == {
        "O1": OrderState(
            amount=Decimal("350.75"),
            currency="CNY",
            purchased_at=event.occurred_at,
            points_earned=350,
            bonus_points=100,
        )
    }


def test_a_second_purchase_has_no_first_purchase_bonus_and_an_earlier_one_moves_first_purchase_at_back():
    state = fresh()
    decide(state, purchase("O1", "100.00", "p1", at(5)), P)
    earlier = purchase("O2", "20.50", "p2", at(3))

    decision = decide(state, earlier, P)

    assert rules(decision.steps[0]) == [("purchase", 20)]
    assert state.profile["first_purchase_at"] == earlier.occurred_at
    assert (state.qualifying, state.qualifying_amount, state.purchases) == (220, Decimal("120.50"), 2)


def test_a_program_with_pending_days_earns_pending_points():
    program = P.model_copy(update={"pending": Pending(days=14)})

    decision = decide(fresh(), purchase("O1", "10.00", "p1"), program)

    assert decision.steps[0].pending is True


def test_the_same_order_again_earns_nothing_and_leaves_the_state_as_it_was():
    state = fresh()
    decide(state, purchase("O1", "350.75", "p1"), P)
    before = copy.deepcopy(state)

    decision = decide(state, purchase("O1", "999.00", "p2", at(6)), P)

    assert decision == Decision(Outcome("applied", note="purchase.order_already_earned"), [])
    assert state == before


# ---------------------------------------------------------------- refund


def test_a_refund_before_its_purchase_waits_and_the_purchase_applies_it():
    state = fresh()
    early = refund("O1", "R1", "50.00", "r1", at(2, 9))

    waiting = decide(state, early, P)

    row = RefundRow("O1", "R1", Decimal("50.00"), "pos", "r1", early.occurred_at, "waiting")
    assert waiting == Decision(
        Outcome("deferred", note="refund.waiting_for_purchase"), [PutRefund(row, new=True), WaitFor("O1")]
    )
    assert state.orders == {"O1": OrderState(refund_ids={"R1"})}
    assert state.refunds == {("O1", "R1"): row}
    assert (state.qualifying, state.qualifying_amount) == (0, Decimal(0))

    bought = purchase("O1", "200.00", "p1", at(2, 8))
    decision = decide(state, bought, P)

    # The purchase's own outcome: 200 + first-purchase 100; the refund takes back floor(200 x 50 / 200).
    assert decision.outcome == Outcome("applied", 300)
    applied = RefundRow("O1", "R1", Decimal("50.00"), "pos", "r1", early.occurred_at, "applied", 50)
    reverse_rule = {
        "rule": "refund",
        "order_id": "O1",
        "refund_id": "R1",
        "amount": "50.00",
        "order_amount": "200.00",
        "order_points": 200,
    }
    earn = decision.steps[0]
    assert rules(earn) == [("purchase", 200), ("first_purchase", 100)]
    assert decision.steps == [
        Earn(Origin.of(bought), earn.awards, order_id="O1"),
        PutOrder("O1", purchase=True),
        Reverse(Origin.of(early), 50, "O1", (reverse_rule,)),
        PutOrder("O1", purchase=False),
        PutRefund(applied, new=False),
        MarkApplied("pos", "r1", -50),
    ]
    assert state.refunds == {("O1", "R1"): applied}
    order = state.orders["O1"]
    assert (order.points_earned, order.points_reversed, order.refunded_amount) == (200, 50, Decimal("50.00"))
    assert (order.bonus_points, order.bonus_reversed, order.refund_ids) == (100, 0, {"R1"})
    assert (state.qualifying, state.qualifying_amount, state.purchases) == (250, Decimal("150.00"), 1)


def test_the_same_refund_id_twice_is_applied_once_whether_waiting_or_applied():
    state = fresh()
    decide(state, refund("O1", "R1", "50.00", "r1"), P)
    before = copy.deepcopy(state)

    while_waiting = decide(state, refund("O1", "R1", "50.00", "r2"), P)

    assert while_waiting == Decision(Outcome("applied", note="refund.refund_id_already_applied"), [])
    assert state == before

    decide(state, purchase("O1", "200.00", "p1"), P)
    before = copy.deepcopy(state)

    after_purchase = decide(state, refund("O1", "R1", "50.00", "r3"), P)

    assert after_purchase == Decision(Outcome("applied", note="refund.refund_id_already_applied"), [])
    assert state == before


def test_a_full_refund_takes_back_the_order_points_and_its_bonus():
    state = fresh()
    decide(state, purchase("O1", "350.75", "p1"), P)
    full = refund("O1", "R1", "350.75", "r1")

    decision = decide(state, full, P)

    assert decision.outcome == Outcome("applied", -450)
    rule = {
        "rule": "refund",
        "order_id": "O1",
        "refund_id": "R1",
        "amount": "350.75",
        "order_amount": "350.75",
        "order_points": 350,
        "bonus_points": 100,
    }
    applied = RefundRow("O1", "R1", Decimal("350.75"), "pos", "r1", full.occurred_at, "applied", 450)
    assert decision.steps == [
        Reverse(Origin.of(full), 450, "O1", (rule,)),
        PutOrder("O1", purchase=False),
        PutRefund(applied, new=True),
    ]
    order = state.orders["O1"]
    assert (order.points_reversed, order.bonus_reversed, order.refunded_amount) == (350, 100, Decimal("350.75"))
    assert (state.qualifying, state.qualifying_amount) == (0, Decimal(0))


def test_a_full_refund_keeps_the_bonus_when_the_program_says_so():
    program = P.model_copy(update={"refunds": Refunds(reverse_bonuses=False)})
    state = fresh()
    decide(state, purchase("O1", "350.75", "p1"), program)

    decision = decide(state, refund("O1", "R1", "350.75", "r1"), program)

    assert decision.outcome == Outcome("applied", -350)
    assert decision.steps[0].points == 350
    assert "bonus_points" not in decision.steps[0].rules[0]
    assert (state.orders["O1"].bonus_reversed, state.qualifying) == (0, 100)


def test_partial_refunds_take_back_in_proportion_floored_on_the_running_total():
    state = fresh()
    decide(state, purchase("O1", "350.75", "p1"), P)

    first = decide(state, refund("O1", "R1", "100.00", "r1"), P)
    # floor(350 x 100.00 / 350.75) = floor(99.78...) = 99; the bonus stays.
    assert first.outcome == Outcome("applied", -99)
    assert [s.points for s in first.steps if isinstance(s, Reverse)] == [99]
    assert (state.qualifying, state.qualifying_amount) == (351, Decimal("250.75"))

    rest = decide(state, refund("O1", "R2", "250.75", "r2"), P)
    # The running total reaches the whole order: 350 - 99 = 251 of its points, and the 100 bonus.
    assert rest.outcome == Outcome("applied", -351)
    assert rest.steps[0].rules[0]["bonus_points"] == 100
    assert (state.qualifying, state.qualifying_amount) == (0, Decimal(0))

    beyond = refund("O1", "R3", "10.00", "r3")
    more = decide(state, beyond, P)
    # Nothing left to take back, but the refund is recorded.
    assert more.outcome == Outcome("applied", 0)
    applied = RefundRow("O1", "R3", Decimal("10.00"), "pos", "r3", beyond.occurred_at, "applied", 0)
    assert more.steps == [PutOrder("O1", purchase=False), PutRefund(applied, new=True)]
    order = state.orders["O1"]
    assert (order.points_reversed, order.bonus_reversed, order.refunded_amount) == (350, 100, Decimal("350.75"))
    assert (state.qualifying, state.qualifying_amount) == (0, Decimal(0))


# ---------------------------------------------------------------- review


def test_a_review_before_its_purchase_waits_and_the_purchase_rewards_it():
    state = fresh()
    early = review("O1", "SKU1", "v1", has_media=True, occurred_at=at(2, 9))

    waiting = decide(state, early, P)

    row = ReviewRow("O1", "SKU1", early.payload.review_id, "app", "v1", "waiting", True, early.occurred_at)
    assert waiting == Decision(
        Outcome("deferred", note="review.waiting_for_purchase"), [PutReview(row, new=True), WaitFor("O1")]
    )
    assert state.orders == {"O1": OrderState(review_skus={"SKU1"})}
    assert state.qualifying == 0

    bought = purchase("O1", "100.00", "p1", at(2, 8))
    decision = decide(state, bought, P)

    assert decision.outcome == Outcome("applied", 200)
    rewarded = ReviewRow("O1", "SKU1", early.payload.review_id, "app", "v1", "applied", True, early.occurred_at)
    purchase_earn, review_earn = decision.steps[0], decision.steps[3]
    assert rules(purchase_earn) == [("purchase", 100), ("first_purchase", 100)]
    assert rules(review_earn) == [("review", 20), ("review_media", 30)]
    assert decision.steps == [
        Earn(Origin.of(bought), purchase_earn.awards, order_id="O1"),
        PutOrder("O1", purchase=True),
        PutReview(rewarded, new=False),
        Earn(Origin.of(early), review_earn.awards),
        MarkApplied("app", "v1", 50),
    ]
    assert state.reviews == {("O1", "SKU1"): rewarded}
    assert state.qualifying == 250


def test_a_second_review_of_the_same_item_is_not_rewarded_whether_waiting_or_bought():
    state = fresh()
    decide(state, review("O1", "SKU1", "v1"), P)
    before = copy.deepcopy(state)

    while_waiting = decide(state, review("O1", "SKU1", "v2"), P)

    assert while_waiting == Decision(Outcome("applied", note="review.item_already_rewarded"), [])
    assert state == before

    decide(state, purchase("O1", "100.00", "p1"), P)
    before = copy.deepcopy(state)

    after_purchase = decide(state, review("O1", "SKU1", "v3"), P)

    assert after_purchase == Decision(Outcome("applied", note="review.item_already_rewarded"), [])
    assert state == before


def test_a_review_of_a_bought_order_claims_its_item_and_earns():
    state = fresh()
    decide(state, purchase("O1", "100.00", "p1"), P)
    event = review("O1", "SKU1", "v1")

    decision = decide(state, event, P)

    row = ReviewRow("O1", "SKU1", event.payload.review_id, "app", "v1", "applied", False, event.occurred_at)
    assert decision.outcome == Outcome("applied", 20)
    assert decision.steps == [PutReview(row, new=True), Earn(Origin.of(event), decision.steps[1].awards)]
    assert rules(decision.steps[1]) == [("review", 20)]
    assert state.qualifying == 220


def test_a_waiting_review_over_the_daily_limit_gives_up_its_claim_when_the_purchase_comes():
    state = fresh()
    for n in range(4):  # the default daily limit is 3
        decide(state, review("O1", f"SKU{n}", f"v{n}", occurred_at=at(4, 10 + n)), P)

    decision = decide(state, purchase("O1", "10.00", "p1"), P)

    assert kinds(decision)[-2:] == ["DropReview", "MarkApplied"]
    assert decision.steps[-2:] == [DropReview("O1", "SKU3"), MarkApplied("app", "v3", 0, "review.daily_limit_reached")]
    assert [s.points for s in decision.steps if isinstance(s, Earn)] == [110, 20, 20, 20]
    assert set(state.reviews) == {("O1", "SKU0"), ("O1", "SKU1"), ("O1", "SKU2")}
    assert state.orders["O1"].review_skus == {"SKU0", "SKU1", "SKU2"}
    assert state.qualifying == 170


# ---------------------------------------------------------------- signup, check-in, activity


def test_signup_sets_the_profile_and_signed_up_at_only_the_first_time():
    state = fresh()
    first = parse_event(f.signup(MEMBER, birthday="1990-05-01", locale="zh-Hans", event_id="s1", occurred_at=at(2)))

    decision = decide(state, first, P)

    assert decision.outcome == Outcome("applied", 50)
    assert decision.steps == [Earn(Origin.of(first), (Award("signup", 50, {"program_version": "file:default"}),))]
    assert state.profile["birthday"] == datetime(1990, 5, 1).date()
    assert state.profile["locale"] == "zh-Hans"
    assert state.profile["signed_up_at"] == first.occurred_at

    again = parse_event(f.signup(MEMBER, locale="en", event_id="s2", occurred_at=at(5)))
    second = decide(state, again, P)

    assert second == Decision(Outcome("applied", note="signup.already_signed_up"), [])
    assert state.profile["locale"] == "en"
    assert state.profile["birthday"] == datetime(1990, 5, 1).date()  # not given again: kept
    assert state.profile["signed_up_at"] == first.occurred_at
    assert state.qualifying == 50


def test_check_ins_and_activities_earn_by_the_rules_alone():
    state = fresh()
    check_in = parse_event(f.check_in(MEMBER, at(4), event_id="c1", source="app"))
    activity = parse_event(f.activity(MEMBER, "share", at(4), event_id="a1"))

    checked = decide(state, check_in, P)
    shared = decide(state, activity, P)

    assert checked.outcome == Outcome("applied", 10)
    assert rules(checked.steps[0]) == [("check_in", 10)]
    assert state.rule_state["check_in"]["streak"] == {"last_on": "2026-11-04", "days": 1}
    # The default program has no activity rule.
    assert shared == Decision(Outcome("applied", note="activity.no_rule_matched"), [])
    assert state.qualifying == 10


# ---------------------------------------------------------------- referrals


def test_a_referral_pays_the_referrer_only_with_facts_that_say_it_pays():
    event = parse_event(f.referral(MEMBER, "M2", event_id="rf1", source="app"))
    state = fresh()
    before = copy.deepcopy(state)

    refused = decide(state, event, P, Facts("referral.referee_already_referred"))

    assert refused == Decision(Outcome("applied", note="referral.referee_already_referred"), [])
    assert state == before

    paid = decide(state, event, P, Facts())

    award = Award("referral_referrer", 200, {"referee_member_id": "M2", "program_version": "file:default"})
    assert paid == Decision(Outcome("applied", 200), [Earn(Origin.of(event), (award,))])
    assert state.qualifying == 200


def test_the_referee_bonus_pays_only_with_facts_that_say_it_pays():
    bonus = RefereeBonus("M2", MEMBER, "app", "rf1", datetime(2026, 11, 2, 2, tzinfo=UTC))
    state = fresh("M2")
    before = copy.deepcopy(state)

    refused = decide(state, bonus, P, Facts(referrals.NOT_NEW))

    assert refused == Decision(Outcome("applied", note=referrals.NOT_NEW), [])
    assert state == before

    paid = decide(state, bonus, P)

    award = Award("referral_referee", 100, {"referrer_member_id": MEMBER, "program_version": "file:default"})
    origin = Origin("app", "rf1", "referral_referee", bonus.occurred_at)
    assert paid == Decision(Outcome("applied", 100), [Earn(origin, (award,))])
    assert state.qualifying == 100


def test_referral_facts_say_why_a_referral_does_not_pay():
    referred_at = datetime(2026, 11, 20, 2, tzinfo=UTC)
    recent = referred_at - timedelta(days=30)
    old = referred_at - timedelta(days=31)

    assert referral_facts(referred_at, recent, False, won=False, days=30) == Facts("referral.referee_already_referred")
    assert referral_facts(referred_at, old, False, won=True, days=30) == Facts(referrals.NOT_NEW)
    assert referral_facts(referred_at, recent, True, won=True, days=30) == Facts(referrals.NOT_NEW)
    assert referral_facts(referred_at, recent, False, won=True, days=30) == Facts()
    assert referral_facts(referred_at, None, False, won=True, days=30) == Facts()


# ---------------------------------------------------------------- birthday gift


def test_the_birthday_gift_earns_with_a_birthday_notification_once_per_year():
    gift = BirthdayGift(MEMBER, 2026, datetime(2026, 5, 1, 0, 10, tzinfo=UTC))
    state = fresh()

    decision = decide(state, gift, P)

    origin = Origin("scheduler", f"birthday:2026:{MEMBER}", "birthday_gift", gift.occurred_at)
    earn = Earn(
        origin,
        (Award("birthday_gift", 200, {"year": 2026}),),
        notify="birthday",
        dedupe_key=f"birthday:{MEMBER}:2026",
        params={"points": 200},
    )
    assert decision == Decision(Outcome("applied", 200), [earn])
    assert state.qualifying == 200


def test_no_birthday_gift_when_the_program_gives_none():
    program = P.model_copy(update={"birthday": Birthday(gift_points=0)})
    state = fresh()

    decision = decide(state, BirthdayGift(MEMBER, 2026, datetime(2026, 5, 1, tzinfo=UTC)), program)

    assert decision == Decision(Outcome("applied", note="birthday.no_gift"), [])
    assert state.qualifying == 0


# ---------------------------------------------------------------- dispatch


def test_every_event_type_the_ledger_decides_has_one_decider():
    assert set(DECIDERS) == {
        "purchase",
        "refund",
        "review",
        "signup",
        "check_in",
        "activity",
        "referral",
        "referral_referee",
        "birthday_gift",
        "adjustment",
        "member_update",
    }
    assert DECIDERS["check_in"] is DECIDERS["activity"] is deciders.by_rules


def test_decide_dispatches_by_the_event_type():
    events = [
        purchase("O1", "10.00", "p1"),
        refund("O1", "R1", "5.00", "r1"),
        review("O1", "SKU1", "v1"),
        parse_event(f.signup(MEMBER, event_id="s1")),
        parse_event(f.check_in(MEMBER, at(4), event_id="c1")),
        parse_event(f.activity(MEMBER, "share", at(4), event_id="a1")),
        parse_event(f.referral(MEMBER, "M2", event_id="rf1")),
        RefereeBonus(MEMBER, "M3", "app", "rf9", datetime(2026, 11, 2, tzinfo=UTC)),
        BirthdayGift(MEMBER, 2026, datetime(2026, 11, 2, tzinfo=UTC)),
        parse_event(f.event("adjustment", MEMBER, at(5), event_id="adj1", points=50, reason="goodwill", by="ops")),
        parse_event(f.member_update(MEMBER, labels=["vip"], event_id="mu1")),
    ]
    assert sorted({e.type for e in events}) == sorted(DECIDERS)
    by_decide, by_hand = fresh(), fresh()
    for event in events:
        decided = decide(by_decide, event, P)
        direct = DECIDERS[event.type](by_hand, Origin.of(event), event, P, Facts())
        assert decided == direct, event.type
    assert by_decide == by_hand


# ---------------------------------------------------------------- folding


def history(year: int = 2026) -> list[Any]:
    """One member's events in occurrence order: a refund and a review ahead of their purchase."""
    return [
        parse_event(f.signup(MEMBER, birthday="1990-05-01", locale="en", event_id="s1", occurred_at=at(1, 9, year))),
        parse_event(f.check_in(MEMBER, at(1, 10, year), event_id="c1", source="app")),
        refund("O2", "R2", "30.00", "r2", at(2, 9, year)),
        review("O2", "SKU9", "v9", has_media=True, occurred_at=at(2, 10, year)),
        purchase("O1", "199.99", "p1", at(2, 11, year)),
        parse_event(f.check_in(MEMBER, at(2, 12, year), event_id="c2", source="app")),
        purchase("O2", "120.00", "p2", at(3, 10, year)),
        refund("O1", "R1", "99.99", "r1", at(4, 10, year)),
        parse_event(f.referral(MEMBER, "M2", event_id="rf1", source="app", occurred_at=at(5, 10, year))),
        purchase("O3", "80.00", "p3", at(8, 10, year)),  # member day: doubled
        refund("O3", "R3", "80.00", "r3", at(9, 10, year)),
    ]


def fold(events: list[Any], program: Program = P) -> tuple[MemberState, list[Decision]]:
    state = fresh()
    return state, [decide(state, event, program) for event in events]


def summary(decisions: list[Decision]) -> list[tuple[Any, ...]]:
    """What each decision gives, without the times it carries."""
    out = []
    for decision in decisions:
        steps = []
        for step in decision.steps:
            if isinstance(step, Earn):
                steps.append(("Earn", tuple(rules(step))))
            elif isinstance(step, Reverse):
                steps.append(("Reverse", step.points))
            else:
                steps.append((type(step).__name__,))
        out.append((decision.outcome, tuple(steps)))
    return out


def test_folding_a_members_events_gives_the_same_state_in_every_run():
    events = history()

    state, decisions = fold(events)
    again, decisions_again = fold(events)

    assert state == again
    assert decisions == decisions_again
    # signup 50, check-ins 10 + 10, O1 199 + 100 bonus, O2 120 with R2 taking 30, review 20 + 30,
    # R1 floor(199 x 99.99 / 199.99) = 99, referral 200, O3 160 on member day taken back whole.
    assert state.qualifying == 50 + 10 + 10 + 299 + 120 - 30 + 50 - 99 + 200 + 160 - 160
    assert state.qualifying_amount == Decimal("190.00")
    assert state.purchases == 3
    assert {o: (s.points_earned, s.points_reversed) for o, s in state.orders.items()} == {
        "O1": (199, 99),
        "O2": (120, 30),
        "O3": (160, 160),
    }


def test_the_deciders_never_read_the_clock():
    # The events' own times are all a decider reads: the same November decides the same in any year.
    state, now = fold(history(2026))
    before, long_ago = fold(history(2001))
    after, far_ahead = fold(history(2199))

    assert summary(long_ago) == summary(now) == summary(far_ahead)
    assert (before.qualifying, before.qualifying_amount) == (state.qualifying, state.qualifying_amount)
    assert (after.qualifying, after.qualifying_amount) == (state.qualifying, state.qualifying_amount)


# ---------------------------------------------------------------- property: refunds never take back too much

ORDERS = ("O0", "O1", "O2")
order_amounts = st.tuples(*[st.integers(1, 100_000).map(lambda c: Decimal(c) / 100) for _ in ORDERS])


@st.composite
def purchases_and_refunds(draw: st.DrawFn) -> tuple[dict[str, Decimal], list[tuple[str, str, str, Decimal]]]:
    amounts = dict(zip(ORDERS, draw(order_amounts), strict=True))
    ops = []
    for _ in range(draw(st.integers(0, 14))):
        order_id = draw(st.sampled_from(ORDERS))
        if draw(st.booleans()):
            ops.append(("purchase", order_id, "", amounts[order_id]))
        else:
            cents = draw(st.integers(1, int(amounts[order_id] * 100)))
            refund_id = draw(st.sampled_from(("R0", "R1", "R2", "R3")))  # a repeat is a duplicate
            ops.append(("refund", order_id, refund_id, Decimal(cents) / 100))
    return amounts, ops


@settings(max_examples=200, deadline=None)
@given(case=purchases_and_refunds())
def test_refunds_in_any_order_never_take_back_more_than_their_order_earned(case):
    amounts, ops = case
    start = datetime(2026, 11, 2, 2, tzinfo=UTC)
    state, earned, reversed_points = fresh(), 0, 0
    for n, (kind, order_id, refund_id, amount) in enumerate(ops):
        when = (start + timedelta(minutes=n)).isoformat()
        if kind == "purchase":
            event = purchase(order_id, str(amount), f"e{n}", when)
        else:
            event = refund(order_id, refund_id, str(amount), f"e{n}", when)
        for step in decide(state, event, P).steps:
            if isinstance(step, Earn):
                earned += step.points
            elif isinstance(step, Reverse):
                reversed_points += step.points

    assert earned - reversed_points == state.qualifying
    bought = {o: s for o, s in state.orders.items() if s.bought}
    for order_id, order in bought.items():
        assert order.amount == amounts[order_id]
        assert 0 <= order.points_reversed <= order.points_earned
        assert 0 <= order.bonus_reversed <= order.bonus_points
        assert Decimal(0) <= order.refunded_amount <= order.amount
        if order.refunded_amount == order.amount:  # a whole refund takes back all the order gave
            assert (order.points_reversed, order.bonus_reversed) == (order.points_earned, order.bonus_points)
    assert state.qualifying_amount == sum((o.amount - o.refunded_amount for o in bought.values()), Decimal(0))
    for (order_id, _), row in state.refunds.items():
        assert row.status == ("applied" if order_id in bought else "waiting")
    assert sum(r.points_reversed for r in state.refunds.values()) == reversed_points
