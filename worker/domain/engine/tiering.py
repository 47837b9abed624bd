"""Tier decisions under the program's tier settings. Pure: numbers and dates in, a tier name out.

The qualifying value is points earned less reversed (basis "points", as today) or money
spent less refunded (basis "amount"); the caller keeps the running total and the history.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal

from worker.domain.engine.evaluate import Evaluation, EventData, _money
from worker.domain.engine.language import EngineProgram, Level, TierFloor
from worker.domain.errors import InvalidFloor
from worker.domain.tiers import Nudge


def level_for(program: EngineProgram, qualifying: int | Decimal) -> Level:
    """The highest level whose threshold the qualifying value reaches."""
    reached = program.tiers.levels[0]
    for level in program.tiers.levels:
        if qualifying >= level.threshold:
            reached = level
    return reached


def qualifying_change(program: EngineProgram, event: EventData, evaluation: Evaluation) -> int | Decimal:
    """How much this event adds to the qualifying value: its awarded points, or, on the
    amount basis, a purchase's amount (a refund's amount is taken off)."""
    if program.tiers.basis == "points":
        return evaluation.points
    amount = event.payload.get("amount")
    if amount is None:
        return Decimal(0)
    if event.type == "purchase":
        return _money(amount, "payload.amount")
    if event.type == "refund":
        return -_money(amount, "payload.amount")
    return Decimal(0)


def next_level(program: EngineProgram, tier: str) -> Level | None:
    levels = program.tiers.levels
    rank = program.rank(tier)
    return levels[rank + 1] if rank + 1 < len(levels) else None


def to_next(program: EngineProgram, tier: str, qualifying: int | Decimal) -> tuple[Level | None, int | Decimal | None]:
    """The level above `tier` and how much qualifying value is still missing to reach it
    (points or money, as the basis says); (None, None) at the top."""
    upcoming = next_level(program, tier)
    if upcoming is None:
        return None, None
    missing: int | Decimal = upcoming.threshold - qualifying
    if missing < 0:
        missing = 0
    return upcoming, int(missing) if program.tiers.basis == "points" else missing


def nudge(program: EngineProgram, tier: str, before: int, after: int, window_points: int) -> Nudge | None:
    """A nudge when this change brought the member within `window_points` below the next tier.

    Only on the points basis (the message counts points), and only when they were outside
    that window before, so each approach is announced once.
    """
    upcoming = next_level(program, tier)
    if program.tiers.basis != "points" or upcoming is None or window_points <= 0:
        return None
    away_after = int(upcoming.threshold) - after
    away_before = int(upcoming.threshold) - before
    if 0 < away_after <= window_points < away_before:
        return Nudge(tier=upcoming.name, points_away=away_after)
    return None


def floor_in_force(floor: TierFloor | None, on: date) -> TierFloor | None:
    if floor is None or (floor.ends_on is not None and on > floor.ends_on):
        return None
    return floor


def operator_floor(program: EngineProgram, tier: str, ends_on: date | None, *, today: date) -> TierFloor | None:
    """The floor an operator asks for: at least `tier` until `ends_on` (inclusive) or without
    end; None for the lowest tier, which is no floor at all. InvalidFloor names the program's
    tiers when `tier` is not one of them, and refuses an end before `today`."""
    names = [level.name for level in program.tiers.levels]
    if tier not in names:
        raise InvalidFloor(f"unknown tier {tier!r}; tiers: {', '.join(names)}")
    if ends_on is not None and ends_on < today:
        raise InvalidFloor(
            f"the floor would end on {ends_on.isoformat()}, which is in the past (program time zone {program.timezone})"
        )
    return None if tier == names[0] else TierFloor(tier=tier, ends_on=ends_on)


def _with_floor(program: EngineProgram, tier: str, floor: TierFloor | None, on: date) -> str:
    active = floor_in_force(floor, on)
    if active is not None and program.rank(active.tier) > program.rank(tier):
        return active.tier
    return tier


def tier_value(
    rules: EngineProgram, qualifying: int, qualifying_amount: Decimal, baseline: int, amount_baseline: Decimal
) -> int | Decimal:
    """What counts towards tiers: qualifying points or money spent above the review baseline."""
    if rules.tiers.basis == "amount":
        return qualifying_amount - amount_baseline
    return qualifying - baseline


def tier_after(
    program: EngineProgram, current: str, qualifying: int | Decimal, *, on: date, floor: TierFloor | None = None
) -> str:
    """The tier after a change of the qualifying value.

    Upgrades apply at once. With downgrade "automatic" the tier also follows the value down;
    with "never" and "review" it does not go down here. Never below a floor in force on `on`.
    """
    reached = level_for(program, qualifying).name
    if program.tiers.downgrade == "automatic":
        tier = reached
    else:
        tier = max(current, reached, key=program.rank)
    return _with_floor(program, tier, floor, on)


def review_window(program: EngineProgram, on: date) -> tuple[date, date]:
    """The first and last local day (both included) a review on `on` looks at."""
    return on - timedelta(days=program.tiers.review_window_days - 1), on


def review_tier(
    program: EngineProgram,
    current: str,
    history: Iterable[tuple[date, int | Decimal]],
    *,
    on: date,
    floor: TierFloor | None = None,
) -> str:
    """The tier a review on `on` gives, from the qualifying history (date, value) pairs.

    Only entries in the window (the `review_window_days` days up to and including `on`)
    count; the tier is the level their total reaches, so it may drop several tiers at once,
    and it never rises above what the total reaches nor falls below a floor in force.
    With downgrade "never" the current tier is kept if higher.
    """
    start, end = review_window(program, on)
    total = sum((value for day, value in history if start <= day <= end), Decimal(0))
    tier = level_for(program, total).name
    if program.tiers.downgrade == "never":
        tier = max(current, tier, key=program.rank)
    return _with_floor(program, tier, floor, on)


def in_grace(program: EngineProgram, upgraded_at: datetime | None, now: datetime) -> bool:
    """Whether a review at `now` leaves the member alone: their last upgrade's cause occurred
    fewer than `review_grace_days` days before (event time, not when it was processed)."""
    grace = timedelta(days=program.tiers.review_grace_days)
    return upgraded_at is not None and now - upgraded_at < grace


def tier_at_review(
    program: EngineProgram,
    current: str,
    history: Iterable[tuple[date, int | Decimal]],
    *,
    now: datetime,
    floor: TierFloor | None = None,
    upgraded_at: datetime | None = None,
) -> str | None:
    """The tier the calendar review at `now` moves the member down to, or None to keep theirs.

    Only with downgrade "review"; the review's day is `now`'s local date. Inside the grace
    period of the last upgrade nothing moves. Otherwise the tier is `review_tier`'s, which
    may be several tiers down and never below a floor in force; a review never raises a
    tier (upgrades happen as events arrive).
    """
    if program.tiers.downgrade != "review" or in_grace(program, upgraded_at, now):
        return None
    reviewed = review_tier(program, current, history, on=now.astimezone(program.zone).date(), floor=floor)
    return reviewed if program.rank(reviewed) < program.rank(current) else None


@dataclass(frozen=True)
class ReviewCandidate:
    """What a tier review reads of one member: tier, floor, running qualifying values, the
    window's qualifying value (points or money, as the tiers' basis says), and the occurrence
    of the event behind the last upgrade to the member's tier."""

    member_id: str
    tier: str
    floor: TierFloor | None
    qualifying_points: int
    qualifying_amount: Decimal
    window_value: int | Decimal
    upgraded_at: datetime | None


@dataclass(frozen=True)
class Downgrade:
    """One member's downgrade at a tier review, with the new baseline of the basis reviewed
    (what the qualifying value was before the window; None: unchanged), so that upgrades
    afterwards count the window and what follows."""

    member_id: str
    from_tier: str
    to_tier: str
    baseline: int | None
    amount_baseline: Decimal | None


def review_member(program: EngineProgram, candidate: ReviewCandidate, *, now: datetime) -> Downgrade | None:
    """The calendar review of one member at `now` (`tier_at_review`), with the baseline moved
    for the basis reviewed; None when the member keeps their tier."""
    on = now.astimezone(program.zone).date()
    window = candidate.window_value
    to_tier = tier_at_review(
        program, candidate.tier, [(on, window)], now=now, floor=candidate.floor, upgraded_at=candidate.upgraded_at
    )
    if to_tier is None:
        return None
    if program.tiers.basis == "points":
        return Downgrade(candidate.member_id, candidate.tier, to_tier, candidate.qualifying_points - int(window), None)
    amount_baseline = candidate.qualifying_amount - Decimal(window)
    return Downgrade(candidate.member_id, candidate.tier, to_tier, None, amount_baseline)


def raised_by_floor(program: EngineProgram, tier: str, floor: TierFloor | None, on: date) -> str | None:
    """The tier an operator's floor raises the member to at once: the floor's, when it is in
    force on `on` and above the member's tier; None otherwise. Removing or lowering a floor
    moves no tier (the next review, or with downgrade "automatic" the next event, does)."""
    active = floor_in_force(floor, on)
    if active is not None and program.rank(active.tier) > program.rank(tier):
        return active.tier
    return None
