"""One pure decision per event type: `decide(state, event, program, facts) -> Decision`.

No I/O and no clock. The live path (worker/services/ledger.py) loads the state an event needs,
decides and writes the decision's steps; a re-evaluation (worker/services/fold.py) folds the
same deciders over the member's whole history in memory. So an event is decided one way only,
whichever path it takes.

Each decider moves `state` on as it decides (the qualifying value, money spent, rule state,
profile, and the orders, refunds and reviews it touches), so that the events of one member are
decided one after the other on the state the previous one left. Facts that span members (whether
a referral won its referee, and whether the referee was new) come in `facts`, decided by the
caller under the locks it holds.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import Any

from worker.domain import currencies, referrals
from worker.domain.decisions import (
    Adjust,
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
from worker.domain.earning import Earned, evaluate_for
from worker.domain.engine import Award
from worker.domain.errors import InvalidEvent
from worker.domain.lots import refund_bonus_reversal, refund_reversal
from worker.domain.program import Program


@dataclass(frozen=True)
class Facts:
    """What a decision needs beyond the member: for a referral (or its referee bonus), whether it
    pays, and the note when it does not (None: it pays)."""

    referral_note: str | None = None


# The note of an imported member's signup: they signed up in the previous program.
SIGNUP_OF_IMPORTED = "signup.already_signed_up"


def _book(state: MemberState, origin: Origin, earned: Earned, decision: Decision, **earn: Any) -> None:
    """An evaluation's rule state, and one earn of its awards when there are points."""
    state.rule_state = earned.state
    if earned.points > 0:
        decision.steps.append(Earn(origin, earned.awards, **earn))
        state.qualifying += earned.points


def _booked(state: MemberState, origin: Origin, earned: Earned, **earn: Any) -> Decision:
    decision = Decision(Outcome("applied", earned.points, earned.note))
    _book(state, origin, earned, decision, **earn)
    return decision


def purchase(state: MemberState, origin: Origin, event: Any, program: Program, facts: Facts) -> Decision:
    payload = event.payload
    order = state.orders.get(payload.order_id)
    if order is not None and order.bought:
        return Decision(Outcome("applied", note="purchase.order_already_earned"))
    # The rules earn on the amounts in the program's base currency; the order keeps them as sent.
    in_base, conversion = currencies.purchase_in_base(program, payload.model_dump())
    provenance = conversion.provenance() if conversion is not None else None
    earned = evaluate_for(program, state, origin, in_base, purchase_count=state.purchases, extra=provenance)
    # The earliest purchase by occurrence, whatever order the events arrive in.
    first = state.profile["first_purchase_at"]
    if first is None or origin.occurred_at < first:
        state.profile["first_purchase_at"] = origin.occurred_at
    decision = _booked(state, origin, earned, pending=program.pending.days > 0, order_id=payload.order_id)
    state.qualifying_amount += payload.amount
    # A refund takes back the order's amount-based points in proportion, and its fixed
    # bonuses (the first-purchase bonus, a minimum-order bonus) when it refunds the whole order.
    waiting = order
    order = state.orders[payload.order_id] = OrderState(
        amount=payload.amount,
        currency=payload.currency,
        purchased_at=origin.occurred_at,
        points_earned=earned.order_points,
        bonus_points=earned.bonus_points,
    )
    state.purchases += 1
    decision.steps.append(PutOrder(payload.order_id, purchase=True))
    if waiting is not None:  # reviews and refunds arrived before the purchase: apply them now, in order
        order.refund_ids = waiting.refund_ids
        order.review_skus = waiting.review_skus
        for review in state.waiting_reviews(payload.order_id):
            _reward_waiting_review(state, review, program, decision)
        for refund in state.waiting_refunds(payload.order_id):
            refund_origin = Origin(refund.source, refund.event_id, "refund", refund.occurred_at)
            reversed_points = _apply_refund(state, refund_origin, order, refund, program, decision, new=False)
            decision.steps.append(MarkApplied(refund.source, refund.event_id, -reversed_points))
    return decision


def _apply_refund(
    state: MemberState,
    origin: Origin,
    order: OrderState,
    refund: RefundRow,
    program: Program,
    decision: Decision,
    *,
    new: bool,
) -> int:
    """Take back what one refund of a bought order reverses; returns the points taken back."""
    assert order.amount is not None
    amount = refund.amount
    due = refund_reversal(order.points_earned, order.amount, order.refunded_amount, amount, order.points_reversed)
    bonus = 0
    if program.refunds.reverse_bonuses:
        bonus = refund_bonus_reversal(
            order.bonus_points, order.amount, order.refunded_amount, amount, order.bonus_reversed
        )
    if due + bonus > 0:
        rule = {
            "rule": "refund",
            "order_id": refund.order_id,
            "refund_id": refund.refund_id,
            "amount": str(amount),
            "order_amount": str(order.amount),
            "order_points": order.points_earned,
        }
        if bonus:
            rule["bonus_points"] = bonus
        decision.steps.append(Reverse(origin, due + bonus, refund.order_id, (rule,)))
        state.qualifying -= due + bonus
    refunded = min(order.refunded_amount + amount, order.amount)
    state.qualifying_amount += order.refunded_amount - refunded
    order.refunded_amount = refunded
    order.points_reversed += due
    order.bonus_reversed += bonus
    applied = RefundRow(
        refund.order_id,
        refund.refund_id,
        amount,
        refund.source,
        refund.event_id,
        refund.occurred_at,
        "applied",
        due + bonus,
    )
    state.refunds[(refund.order_id, refund.refund_id)] = applied
    decision.steps.append(PutOrder(refund.order_id, purchase=False))
    decision.steps.append(PutRefund(applied, new=new))
    return due + bonus


def refund(state: MemberState, origin: Origin, event: Any, program: Program, facts: Facts) -> Decision:
    payload = event.payload
    order = state.orders.get(payload.order_id)
    if order is not None and payload.refund_id in order.refund_ids:
        return Decision(Outcome("applied", note="refund.refund_id_already_applied"))
    row = RefundRow(
        payload.order_id,
        payload.refund_id,
        payload.amount,
        origin.source,
        origin.event_id,
        origin.occurred_at,
        "waiting",
    )
    if order is None or not order.bought:
        # The purchase has not arrived yet: the refund waits and is applied with it.
        if order is None:
            order = state.orders[payload.order_id] = OrderState()
        order.refund_ids.add(payload.refund_id)
        state.refunds[(payload.order_id, payload.refund_id)] = row
        return Decision(
            Outcome("deferred", note="refund.waiting_for_purchase"),
            [PutRefund(row, new=True), WaitFor(payload.order_id)],
        )
    order.refund_ids.add(payload.refund_id)
    decision = Decision(Outcome("applied"))
    reversed_points = _apply_refund(state, origin, order, row, program, decision, new=True)
    decision.outcome = Outcome("applied", -reversed_points)
    return decision


def signup(state: MemberState, origin: Origin, event: Any, program: Program, facts: Facts) -> Decision:
    profile = event.payload
    if profile.birthday is not None:
        state.profile["birthday"] = profile.birthday
    if profile.locale is not None:
        state.profile["locale"] = profile.locale
    if state.profile["signed_up_at"] is None:
        state.profile["signed_up_at"] = origin.occurred_at
    if state.profile.get("imported"):
        # An imported member signed up in the previous program: their signup here brings in
        # their profile and earns no welcome.
        return Decision(Outcome("applied", note=SIGNUP_OF_IMPORTED))
    return _booked(state, origin, evaluate_for(program, state, origin, event.payload.model_dump()))


def member_update(state: MemberState, origin: Origin, event: Any, program: Program, facts: Facts) -> Decision:
    """The member's labels (the whole set), birthday or locale from now on; nothing earns.
    Replayed in occurrence order like every decided event, so the events after it (and only
    those) are decided with the labels it sets, in whatever order the events arrived."""
    payload = event.payload
    if payload.labels is not None:
        state.profile["labels"] = frozenset(payload.labels)
    if payload.birthday is not None:
        state.profile["birthday"] = payload.birthday
    if payload.locale is not None:
        state.profile["locale"] = payload.locale
    return Decision(Outcome("applied"))


def by_rules(state: MemberState, origin: Origin, event: Any, program: Program, facts: Facts) -> Decision:
    """An event that earns by the program's rules alone (check-ins, activities)."""
    return _booked(state, origin, evaluate_for(program, state, origin, event.payload.model_dump()))


def _review_row(origin: Origin, payload: Any, status: str) -> ReviewRow:
    return ReviewRow(
        payload.order_id,
        payload.sku,
        payload.review_id,
        origin.source,
        origin.event_id,
        status,
        payload.has_media,
        origin.occurred_at,
    )


def review(state: MemberState, origin: Origin, event: Any, program: Program, facts: Facts) -> Decision:
    """Reviews earn only for the member's own orders: one of an order not (yet) seen waits."""
    payload = event.payload
    order = state.orders.get(payload.order_id)
    if order is None or not order.bought:
        if order is not None and payload.sku in order.review_skus:
            return Decision(Outcome("applied", note="review.item_already_rewarded"))
        if order is None:
            order = state.orders[payload.order_id] = OrderState()
        row = _review_row(origin, payload, "waiting")
        order.review_skus.add(payload.sku)
        state.reviews[(payload.order_id, payload.sku)] = row
        return Decision(
            Outcome("deferred", note="review.waiting_for_purchase"),
            [PutReview(row, new=True), WaitFor(payload.order_id)],
        )
    earned = evaluate_for(program, state, origin, payload.model_dump())
    decision = Decision(Outcome("applied", earned.points, earned.note))
    if earned.awards:
        if payload.sku in order.review_skus:
            return Decision(Outcome("applied", note="review.item_already_rewarded"))
        row = _review_row(origin, payload, "applied")
        order.review_skus.add(payload.sku)
        state.reviews[(payload.order_id, payload.sku)] = row
        decision.steps.append(PutReview(row, new=True))
    _book(state, origin, earned, decision)
    return decision


def _reward_waiting_review(state: MemberState, review: ReviewRow, program: Program, decision: Decision) -> None:
    """A review that arrived before its purchase, decided now that the purchase is here."""
    origin = Origin(review.source, review.event_id, "review", review.occurred_at)
    payload = {
        "order_id": review.order_id,
        "sku": review.sku,
        "review_id": review.review_id,
        "has_media": review.has_media,
    }
    earned = evaluate_for(program, state, origin, payload)
    key = (review.order_id, review.sku)
    if earned.awards:
        rewarded = ReviewRow(**{**review.__dict__, "status": "applied"})
        state.reviews[key] = rewarded
        decision.steps.append(PutReview(rewarded, new=False))
    else:
        # A waiting review that finds nothing to earn (the daily limit reached) gives up its
        # claim, as a review over the limit does when it arrives after its purchase.
        del state.reviews[key]
        state.orders[review.order_id].review_skus.discard(review.sku)
        decision.steps.append(DropReview(review.order_id, review.sku))
    _book(state, origin, earned, decision)
    decision.steps.append(MarkApplied(review.source, review.event_id, earned.points, earned.note))


def referral(state: MemberState, origin: Origin, event: Any, program: Program, facts: Facts) -> Decision:
    """The referrer's half; `facts.referral_note` says why it does not pay (None: it pays)."""
    if facts.referral_note is not None:
        return Decision(Outcome("applied", note=facts.referral_note))
    referee = event.payload.referee_member_id
    earned = evaluate_for(program, state, origin, event.payload.model_dump(), extra={"referee_member_id": referee})
    return _booked(state, origin, earned)


def referral_referee(state: MemberState, origin: Origin, bonus: Any, program: Program, facts: Facts) -> Decision:
    """The referee's half of a referral (worker/services/ledger.py RefereeBonus)."""
    if facts.referral_note is not None:
        return Decision(Outcome("applied", note=facts.referral_note))
    earned = evaluate_for(
        program,
        state,
        origin,
        {"referrer_member_id": bonus.referrer_member_id},
        event_type="referral_referee",
        extra={"referrer_member_id": bonus.referrer_member_id},
    )
    return _booked(state, origin, earned)


def birthday_gift(state: MemberState, origin: Origin, gift: Any, program: Program, facts: Facts) -> Decision:
    points = program.birthday.gift_points
    if points <= 0:
        return Decision(Outcome("applied", note="birthday.no_gift"))
    awards = (Award("birthday_gift", points, {"year": gift.year}),)
    state.qualifying += points
    earn = Earn(
        origin,
        awards,
        notify="birthday",
        dedupe_key=f"birthday:{state.member_id}:{gift.year}",
        params={"points": points},
    )
    return Decision(Outcome("applied", points), [earn])


def adjustment(state: MemberState, origin: Origin, event: Any, program: Program, facts: Facts) -> Decision:
    """An operator's goodwill credit or debit, with who and why in its rule provenance.

    A debit beyond the spendable points is refused (when they are known: a re-evaluation replays
    a debit that was applied). A credit's lot expires at the start of `expires_on` in the
    program's time zone, or by the program's expiry rule. The points count towards tiers only
    when the payload says `qualifying`; lifetime points are what events earned and stay."""
    payload = event.payload
    points = payload.points
    if points < 0 and state.spendable is not None and -points > state.spendable:
        raise InvalidEvent(f"payload.points: {-points} requested but {state.spendable} available")
    expires_at = None
    if points > 0:
        if payload.expires_on is not None:
            expires_at = datetime.combine(payload.expires_on, time(), tzinfo=program.zone)
        else:
            expires_at = origin.occurred_at + timedelta(days=program.expiry.days)
    qualifying = points if payload.qualifying else 0
    rule = {
        "rule": "adjustment",
        "points": points,
        "reason": payload.reason,
        "by": payload.by,
        "qualifying": payload.qualifying,
        "expires_on": payload.expires_on.isoformat() if payload.expires_on is not None else None,
    }
    state.qualifying += qualifying
    if state.spendable is not None:
        state.spendable += points
    return Decision(Outcome("applied", points), [Adjust(origin, points, qualifying, expires_at, (rule,))])


Decider = Callable[[MemberState, Origin, Any, Program, Facts], Decision]

# Every event type the ledger decides, by its `type`.
DECIDERS: dict[str, Decider] = {
    "purchase": purchase,
    "refund": refund,
    "review": review,
    "signup": signup,
    "check_in": by_rules,
    "activity": by_rules,
    "referral": referral,
    "referral_referee": referral_referee,
    "birthday_gift": birthday_gift,
    "adjustment": adjustment,
    "member_update": member_update,
}


# Types whose decider reads `state.spendable` (the live path loads it for them).
SPENDING_TYPES = frozenset({"adjustment"})


def decide(state: MemberState, event: Any, program: Program, facts: Facts | None = None) -> Decision:
    """The decision for one event on the member's state, which it moves on."""
    return DECIDERS[event.type](state, Origin.of(event), event, program, facts or Facts())


def referral_facts(referred_at: Any, first_event_at: Any, purchased_before: bool, won: bool, days: int) -> Facts:
    """Whether a referral pays, as the facts a decider takes: won by this referral, of a new referee."""
    if not won:
        return Facts(referrals.ALREADY_REFERRED)
    if not referrals.referee_is_new(referred_at, first_event_at, purchased_before, days):
        return Facts(referrals.NOT_NEW)
    return Facts()
