"""The earning rules as they were before the rule engine: the reference the equivalence tests
(tests/unit/test_engine_equivalence.py) hold the engine to, and the member state legacy
programs translate from (engine/legacy.py). The ledger does not use them. Pure.

No clock and no I/O here: the caller passes the event's program-local date.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from worker.domain.local_days import is_birthday, is_member_day
from worker.domain.lots import floor_points
from worker.domain.program import Program


@dataclass(frozen=True)
class Award:
    """Points one rule gives, with the inputs that produced them (shown in member history)."""

    rule: str
    points: int
    detail: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {"rule": self.rule, "points": self.points, **self.detail}


@dataclass(frozen=True)
class MemberState:
    """What the rules need to know about a member, as it was before the event."""

    tier: str = "Regular"
    qualifying_points: int = 0
    birthday: date | None = None
    has_purchased: bool = False
    signed_up: bool = False
    check_in_last_on: date | None = None
    check_in_streak: int = 0
    review_day: date | None = None
    reviews_on_day: int = 0


@dataclass(frozen=True)
class Outcome:
    """Awards for one event, the member state after it, and why nothing was given if so."""

    awards: tuple[Award, ...]
    state: MemberState
    note: str | None = None

    @property
    def points(self) -> int:
        return sum(a.points for a in self.awards)


def campaign_multiplier(program: Program, on: date, birthday: date | None, source: str) -> tuple[Decimal, str | None]:
    """The highest campaign multiplier in force; they never stack."""
    offers: list[tuple[Decimal, str]] = []
    if is_member_day(program, on):
        offers.append((program.member_day.multiplier, "member_day"))
    if is_birthday(birthday, on):
        offers.append((program.birthday.multiplier, "birthday"))
    for campaign in program.campaigns:
        in_window = campaign.starts_on <= on <= campaign.ends_on
        if in_window and (campaign.sources is None or source in campaign.sources):
            offers.append((campaign.multiplier, campaign.name))
    if not offers:
        return Decimal(1), None
    return max(offers, key=lambda offer: offer[0])


def _line_multiplier(program: Program, sku: str, category: str) -> Decimal:
    rules = program.multipliers
    if sku in rules.skus:
        return rules.skus[sku]
    return rules.categories.get(category, Decimal(1))


def purchase(
    program: Program, state: MemberState, *, amount: Decimal, items: tuple[Any, ...] = (), on: date, source: str
) -> Outcome:
    """floor(amount x line bonuses x tier multiplier x campaign multiplier), plus the first-purchase bonus."""
    tier = program.tier(state.tier)
    bonus_amount = sum(
        (item.amount * (_line_multiplier(program, item.sku, item.category) - 1) for item in items), Decimal(0)
    )
    campaign, campaign_name = campaign_multiplier(program, on, state.birthday, source)
    points = floor_points((amount + bonus_amount) * tier.multiplier * campaign)
    detail = {"amount": str(amount), "tier": tier.name, "tier_multiplier": str(tier.multiplier)}
    if bonus_amount:
        detail["item_bonus_amount"] = str(bonus_amount)
    if campaign_name is not None:
        detail.update(campaign=campaign_name, campaign_multiplier=str(campaign))
    awards = [Award("purchase", points, detail)]
    if not state.has_purchased and program.purchase.first_purchase_bonus:
        awards.append(Award("first_purchase", program.purchase.first_purchase_bonus))
    return Outcome(tuple(awards), replace(state, has_purchased=True))


def signup(program: Program, state: MemberState) -> Outcome:
    if state.signed_up:
        return Outcome((), state, note="signup.already_signed_up")
    return Outcome((Award("signup", program.signup.points),), replace(state, signed_up=True))


def check_in(program: Program, state: MemberState, on: date) -> Outcome:
    """Once per local day; the Nth consecutive day adds the streak bonus and the streak restarts."""
    last = state.check_in_last_on
    if last is not None and on <= last:
        note = "check_in.already_checked_in_today" if on == last else "check_in.earlier_than_last_check_in"
        return Outcome((), state, note=note)
    rule = program.check_in
    streak = state.check_in_streak + 1 if last == on - timedelta(days=1) else 1
    awards = [Award("check_in", rule.points, {"streak_day": streak})]
    if streak >= rule.streak_days:
        awards.append(Award("check_in_streak", rule.streak_bonus, {"streak_days": rule.streak_days}))
        streak = 0
    return Outcome(tuple(awards), replace(state, check_in_last_on=on, check_in_streak=streak))


def review(program: Program, state: MemberState, *, on: date, has_media: bool) -> Outcome:
    """Review points, within the daily limit. The one-per-(order, sku) check is the caller's (it needs storage)."""
    rule = program.review
    count = state.reviews_on_day if state.review_day == on else 0
    if count >= rule.daily_limit:
        return Outcome((), replace(state, review_day=on, reviews_on_day=count), note="review.daily_limit_reached")
    awards = [Award("review", rule.points)]
    if has_media and rule.media_bonus:
        awards.append(Award("review_media", rule.media_bonus))
    return Outcome(tuple(awards), replace(state, review_day=on, reviews_on_day=count + 1))


def referrer(program: Program, state: MemberState, referee_member_id: str) -> Outcome:
    award = Award("referral_referrer", program.referral.referrer_points, {"referee_member_id": referee_member_id})
    return Outcome((award,), state)


def referee(program: Program, state: MemberState, referrer_member_id: str) -> Outcome:
    award = Award("referral_referee", program.referral.referee_points, {"referrer_member_id": referrer_member_id})
    return Outcome((award,), state)
