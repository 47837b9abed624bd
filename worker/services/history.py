"""A member's accepted events replayed in occurrence order, in memory: what each should earn.

The same decisions as the ledger's handlers (worker/services/ledger.py), step for step, on
plain data: each event is evaluated by `earning.evaluate_for` on the member as the events
before it left them; orders, waiting refunds and waiting reviews are kept as the handlers
keep them in their tables; the tier closes each event as `accounts.next_tier` decides it.
Nothing here reads or writes the database. The property tests on the real intake hold the
two to the same results: events applied in order (the handlers alone) and the same events
shuffled (the handlers, then this replay on every late event) give the same ledger.

Who referred whom is decided across members when a referral is applied (one referrer per
referee, the first to arrive); the replay takes that decision as given (`referrals_won`), and
the referee's events before each referral as they are stored (`referees`), from which it
decides, as the ledger does, whether the referral pays (worker/domain/referrals.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from worker.domain import referrals
from worker.domain.engine import validate_state
from worker.domain.lots import refund_bonus_reversal, refund_reversal
from worker.domain.program import Program
from worker.domain.reevaluation import EventKey
from worker.services import accounts
from worker.services.accounts import Account, Origin
from worker.services.earning import Earned, evaluate_for


@dataclass
class _Order:
    amount: Decimal | None = None
    points_earned: int = 0
    points_reversed: int = 0
    refunded_amount: Decimal = Decimal(0)
    bonus_points: int = 0
    bonus_reversed: int = 0
    waiting_refunds: list[Any] = field(default_factory=list)
    refund_ids: set[str] = field(default_factory=set)
    # The purchase that earned for the order: the first by occurrence when an order id repeats.
    currency: str | None = None
    purchased_at: datetime | None = None


@dataclass(frozen=True)
class RefereeFacts:
    """The referee's own events before a referral: the first one's time, and whether any was a purchase."""

    first_event_at: datetime | None
    purchased_before: bool


@dataclass
class History:
    """What the replay ends with: points by event and rule, and the member's state."""

    points: dict[EventKey, dict[str, int]]
    tier: str
    qualifying_amount: Decimal
    rule_state: dict
    profile: dict
    orders: list[dict]
    reviews: list[dict]
    refunds: list[dict]


class _Replay:
    def __init__(
        self,
        program: Program,
        account: Account,
        referrals_won: set[EventKey],
        referees: dict[EventKey, RefereeFacts] | None = None,
    ):
        self.program = program
        self.account = account
        self.referrals_won = referrals_won
        self.referees = referees or {}
        self.orders: dict[str, _Order] = {}
        self.purchases = 0
        self.reviews: dict[tuple[str, str], dict] = {}
        self.refunds: dict[tuple[str, str], dict] = {}
        self.points: dict[EventKey, dict[str, int]] = {}

    def credit(self, origin: Origin, rule: str, points: int) -> None:
        by_rule = self.points.setdefault((origin.source, origin.event_id), {})
        by_rule[rule] = by_rule.get(rule, 0) + points

    def book(self, origin: Origin, outcome: Earned) -> None:
        """As ledger._book: the rule state, then one earn entry when there are points."""
        self.account.rule_state = outcome.state
        if outcome.points > 0:
            for award in outcome.awards:
                self.credit(origin, award.rule, award.points)
            self.account.qualifying += outcome.points

    def apply(self, event: Any) -> None:
        origin = Origin.of(event)
        self.account.rule_state = validate_state(self.account.rule_state)  # as the row reads back
        getattr(self, "_" + event.type)(origin, event)
        self.account.tier = accounts.next_tier(self.program, self.account, origin)

    def _purchase(self, origin: Origin, event: Any) -> None:
        payload = event.payload
        order = self.orders.get(payload.order_id)
        if order is not None and order.amount is not None:
            return
        outcome = evaluate_for(self.program, self.account, origin, payload.model_dump(), purchase_count=self.purchases)
        first = self.account.profile["first_purchase_at"]
        if first is None or origin.occurred_at < first:
            self.account.profile["first_purchase_at"] = origin.occurred_at
        self.book(origin, outcome)
        accounts.count_spend(self.account, payload.amount)
        waiting = order
        order = self.orders[payload.order_id] = _Order(
            payload.amount,
            outcome.order_points,
            bonus_points=outcome.bonus_points,
            currency=payload.currency,
            purchased_at=origin.occurred_at,
        )
        self.purchases += 1
        if waiting is not None:
            self._reward_waiting_reviews(payload.order_id)
            order.refund_ids = waiting.refund_ids
            for refund in sorted(waiting.waiting_refunds, key=lambda r: (r.occurred_at, r.payload.refund_id)):
                refund_origin = Origin(refund.source, refund.event_id, "refund", refund.occurred_at)
                self._apply_refund(
                    refund_origin, payload.order_id, order, refund.payload.refund_id, refund.payload.amount
                )

    def _apply_refund(self, origin: Origin, order_id: str, order: _Order, refund_id: str, amount: Decimal) -> None:
        assert order.amount is not None
        due = refund_reversal(order.points_earned, order.amount, order.refunded_amount, amount, order.points_reversed)
        bonus = 0
        if self.program.refunds.reverse_bonuses:
            bonus = refund_bonus_reversal(
                order.bonus_points, order.amount, order.refunded_amount, amount, order.bonus_reversed
            )
        if due + bonus > 0:
            self.credit(origin, "refund", -(due + bonus))
            self.account.qualifying -= due + bonus
        accounts.count_spend(self.account, order.refunded_amount - min(order.refunded_amount + amount, order.amount))
        order.refunded_amount = min(order.refunded_amount + amount, order.amount)
        order.points_reversed += due
        order.bonus_reversed += bonus
        self.refunds[(order_id, refund_id)] = {
            "order_id": order_id,
            "refund_id": refund_id,
            "status": "applied",
            "points_reversed": due + bonus,
        }

    def _refund(self, origin: Origin, event: Any) -> None:
        payload = event.payload
        order = self.orders.get(payload.order_id)
        if order is not None and payload.refund_id in order.refund_ids:
            return
        if order is None or order.amount is None:
            order = self.orders.setdefault(payload.order_id, _Order())
            order.refund_ids.add(payload.refund_id)
            order.waiting_refunds.append(event)
            self.refunds[(payload.order_id, payload.refund_id)] = {
                "order_id": payload.order_id,
                "refund_id": payload.refund_id,
                "status": "waiting",
                "points_reversed": 0,
            }
            return
        order.refund_ids.add(payload.refund_id)
        self._apply_refund(origin, payload.order_id, order, payload.refund_id, payload.amount)

    def _signup(self, origin: Origin, event: Any) -> None:
        profile = event.payload
        if profile.birthday is not None:
            self.account.profile["birthday"] = profile.birthday
        if profile.locale is not None:
            self.account.profile["locale"] = profile.locale
        if self.account.profile["signed_up_at"] is None:
            self.account.profile["signed_up_at"] = origin.occurred_at
        self.book(origin, evaluate_for(self.program, self.account, origin, event.payload.model_dump()))

    def _check_in(self, origin: Origin, event: Any) -> None:
        self.book(origin, evaluate_for(self.program, self.account, origin, event.payload.model_dump()))

    def _activity(self, origin: Origin, event: Any) -> None:
        self.book(origin, evaluate_for(self.program, self.account, origin, event.payload.model_dump()))

    def _review_row(self, origin: Origin, payload: Any, status: str) -> dict:
        return {
            "order_id": payload.order_id,
            "sku": payload.sku,
            "review_id": payload.review_id,
            "source": origin.source,
            "event_id": origin.event_id,
            "status": status,
            "has_media": payload.has_media,
            "occurred_at": origin.occurred_at,
        }

    def _review(self, origin: Origin, event: Any) -> None:
        payload = event.payload
        key = (payload.order_id, payload.sku)
        order = self.orders.get(payload.order_id)
        if order is None or order.amount is None:
            if key in self.reviews:
                return
            self.reviews[key] = self._review_row(origin, payload, "waiting")
            self.orders.setdefault(payload.order_id, _Order())
            return
        outcome = evaluate_for(self.program, self.account, origin, payload.model_dump())
        if outcome.awards:
            if key in self.reviews:
                return
            self.reviews[key] = self._review_row(origin, payload, "applied")
        self.book(origin, outcome)

    def _reward_waiting_reviews(self, order_id: str) -> None:
        waiting = [r for (o, _), r in self.reviews.items() if o == order_id and r["status"] == "waiting"]
        for review in sorted(waiting, key=lambda r: (r["occurred_at"], r["source"], r["event_id"])):
            origin = Origin(review["source"], review["event_id"], "review", review["occurred_at"])
            outcome = evaluate_for(
                self.program,
                self.account,
                origin,
                {
                    "order_id": order_id,
                    "sku": review["sku"],
                    "review_id": review["review_id"],
                    "has_media": review["has_media"],
                },
            )
            key = (order_id, review["sku"])
            if outcome.awards:
                self.reviews[key] = {**review, "status": "applied"}
            else:
                del self.reviews[key]
            self.book(origin, outcome)

    def _pays(self, origin: Origin) -> bool:
        """As the ledger's referral handlers: a referral won, of a referee who is new."""
        key = (origin.source, origin.event_id)
        if key not in self.referrals_won:
            return False
        facts = self.referees.get(key, RefereeFacts(None, False))
        days = self.program.referral.referee_new_days
        return referrals.referee_is_new(origin.occurred_at, facts.first_event_at, facts.purchased_before, days)

    def _referral(self, origin: Origin, event: Any) -> None:
        if not self._pays(origin):
            return
        referee = event.payload.referee_member_id
        self.book(
            origin,
            evaluate_for(
                self.program, self.account, origin, event.payload.model_dump(), extra={"referee_member_id": referee}
            ),
        )

    def _referral_referee(self, origin: Origin, bonus: Any) -> None:
        if not self._pays(origin):
            return
        self.book(
            origin,
            evaluate_for(
                self.program,
                self.account,
                origin,
                {"referrer_member_id": bonus.referrer_member_id},
                event_type="referral_referee",
                extra={"referrer_member_id": bonus.referrer_member_id},
            ),
        )

    def _birthday_gift(self, origin: Origin, gift: Any) -> None:
        points = self.program.birthday.gift_points
        if points > 0:
            self.credit(origin, "birthday_gift", points)
            self.account.qualifying += points


def replay(
    program: Program,
    member: Account,
    *,
    events: list[Any],
    referrals_won: set[EventKey],
    programs: list[Program] | None = None,
    referees: dict[EventKey, RefereeFacts] | None = None,
) -> History:
    """Replay `events` (already in occurrence order) on a member who had none, with `member`'s
    operator floor and review baselines; each event with its program in `programs` (the
    version that applied it), or `program`."""
    account = Account(
        member_id=member.member_id,
        tier=program.tiers[0].name,
        tier_floor=member.tier_floor,
        tier_floor_ends_on=member.tier_floor_ends_on,
        available=0,
        pending=0,
        qualifying=0,
        qualifying_amount=Decimal(0),
        lifetime=0,
        profile={"birthday": None, "locale": None, "signed_up_at": None, "first_purchase_at": None},
        rule_state={},
        baseline=member.baseline,
        amount_baseline=member.amount_baseline,
    )
    run = _Replay(program, account, referrals_won, referees)
    for event, applied_with in zip(events, programs or [program] * len(events), strict=True):
        run.program = applied_with
        run.apply(event)
    orders = [
        {
            "order_id": order_id,
            "amount": str(o.amount),
            "currency": o.currency,
            "purchased_at": o.purchased_at.isoformat() if o.purchased_at else None,
            "points_earned": o.points_earned,
            "points_reversed": o.points_reversed,
            "refunded_amount": str(o.refunded_amount),
            "bonus_points": o.bonus_points,
            "bonus_reversed": o.bonus_reversed,
        }
        for order_id, o in run.orders.items()
        if o.amount is not None
    ]
    reviews = [{**r, "occurred_at": r["occurred_at"].isoformat()} for r in run.reviews.values()]
    return History(
        run.points,
        account.tier,
        account.qualifying_amount,
        account.rule_state,
        dict(account.profile),
        orders,
        reviews,
        list(run.refunds.values()),
    )
