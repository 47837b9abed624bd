"""A member's accepted events folded in occurrence order, in memory: what each should earn.

The same deciders as the live path (worker/domain/deciders.py), on a state that holds all of
the member's orders, refunds and reviews: each event is decided on the member as the events
before it left them, and the tier closes each event as `accounts.next_tier` decides it.
Nothing here reads or writes the database. The property tests on the real intake hold the
fold to the live path's results: events applied in order and the same events shuffled (then
re-evaluated on every late event) give the same ledger.

Who referred whom is decided across members when a referral is applied (one referrer per
referee, the first to arrive); the fold takes that decision as given (`referrals_won`), and
the referee's events before each referral as they are stored (`referees`), from which the
decider's facts say whether the referral pays (worker/domain/referrals.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from worker.domain import deciders, engine
from worker.domain.decisions import Earn, MemberState, Origin, Reverse
from worker.domain.engine import validate_state
from worker.domain.program import Program
from worker.domain.reevaluation import EventKey
from worker.store.accounts import Account


@dataclass(frozen=True)
class RefereeFacts:
    """The referee's own events before a referral: the first one's time, and whether any was a purchase."""

    first_event_at: datetime | None
    purchased_before: bool


@dataclass(frozen=True)
class Opening:
    """What a member imported from another program starts with (worker/services/imports.py):
    the tier, qualifying points and profile their history is folded from."""

    tier: str
    qualifying: int
    birthday: date | None
    locale: str | None
    labels: frozenset[str] = frozenset()
    absorbed: bool = False  # the opening of a member merged into this one


def opening_of(openings: list[Opening], program: Program) -> Opening | None:
    """What a member's history is folded from: their own opening (first in `openings`), with
    the tiers and qualifying points of imported members merged into them, whose points the
    merge moved to them. The profile (birthday, locale, labels) is the member's own."""
    if not openings:
        return None
    own = openings[0] if not openings[0].absorbed else None
    ranks = {tier.name: rank for rank, tier in enumerate(program.tiers)}
    return Opening(
        tier=max((o.tier for o in openings), key=lambda name: ranks.get(name, -1)),
        qualifying=sum(o.qualifying for o in openings),
        birthday=own.birthday if own is not None else None,
        locale=own.locale if own is not None else None,
        labels=own.labels if own is not None else frozenset(),
    )


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


def _credit(points: dict[EventKey, dict[str, int]], origin: Origin, rule: str, amount: int) -> None:
    by_rule = points.setdefault(origin.key, {})
    by_rule[rule] = by_rule.get(rule, 0) + amount


def _facts(program: Program, event: Any, won: set[EventKey], referees: dict[EventKey, RefereeFacts]) -> Any:
    """A referral's (or referee bonus's) facts as they are stored: won, and of a new referee."""
    if event.type not in ("referral", "referral_referee"):
        return None
    key = (event.source, event.event_id)
    facts = referees.get(key, RefereeFacts(None, False))
    return deciders.referral_facts(
        event.occurred_at, facts.first_event_at, facts.purchased_before, key in won, program.referral.referee_new_days
    )


def _tier_after(program: Program, member: Account, state: MemberState, origin: Origin) -> str:
    """The tier the member closes an event with, as `accounts.next_tier` decides it."""
    rules = engine.rules_of(program)
    value = engine.tier_value(rules, state.qualifying, state.qualifying_amount, member.baseline, member.amount_baseline)
    on = origin.occurred_at.astimezone(rules.zone).date()
    return engine.tier_after(rules, state.tier, value, on=on, floor=member.floor)


def replay(
    program: Program,
    member: Account,
    *,
    events: list[Any],
    referrals_won: set[EventKey],
    programs: list[Program] | None = None,
    referees: dict[EventKey, RefereeFacts] | None = None,
    opening: Opening | None = None,
) -> History:
    """Fold `events` (already in occurrence order) over a member who had none (or, imported,
    only their `opening`), with `member`'s operator floor and review baselines; each event
    with its program in `programs` (the version in force at its occurred_at), or `program`."""
    state = MemberState(
        member_id=member.member_id,
        tier=opening.tier if opening is not None else program.tiers[0].name,
        qualifying=opening.qualifying if opening is not None else 0,
        qualifying_amount=Decimal(0),
        profile={
            "birthday": opening.birthday if opening is not None else None,
            "locale": opening.locale if opening is not None else None,
            "signed_up_at": None,
            "first_purchase_at": None,
            "labels": opening.labels if opening is not None else frozenset(),
            # An existing customer to the rules (worker/domain/earning.py, member_snapshot).
            "imported": opening is not None,
        },
        rule_state={},
    )
    points: dict[EventKey, dict[str, int]] = {}
    for event, decided_by in zip(events, programs or [program] * len(events), strict=True):
        state.rule_state = validate_state(state.rule_state)  # as the row reads back
        decision = deciders.decide(state, event, decided_by, _facts(decided_by, event, referrals_won, referees or {}))
        for step in decision.steps:
            if isinstance(step, Earn):
                for award in step.awards:
                    _credit(points, step.origin, award.rule, award.points)
            elif isinstance(step, Reverse):
                _credit(points, step.origin, "refund", -step.points)
        state.tier = _tier_after(decided_by, member, state, Origin.of(event))
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
        for order_id, o in state.orders.items()
        if o.bought
    ]
    reviews = [{**r.__dict__, "occurred_at": r.occurred_at.isoformat()} for r in state.reviews.values()]
    refunds = [
        {
            "order_id": r.order_id,
            "refund_id": r.refund_id,
            "source": r.source,
            "event_id": r.event_id,
            "status": r.status,
            "points_reversed": r.points_reversed,
        }
        for r in state.refunds.values()
    ]
    return History(
        points,
        state.tier,
        state.qualifying_amount,
        state.rule_state,
        dict(state.profile),
        orders,
        reviews,
        refunds,
    )
