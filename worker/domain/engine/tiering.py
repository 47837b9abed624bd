"""Tier decisions under the program's tier settings. Pure: numbers and dates in, a tier name out.

The qualifying value is points earned less reversed (basis "points", as today) or money
spent less refunded (basis "amount"); the caller keeps the running total and the history.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, timedelta
from decimal import Decimal

from worker.domain.engine.evaluate import Evaluation, EventData, _money
from worker.domain.engine.language import EngineProgram, Level, TierFloor


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


def floor_in_force(floor: TierFloor | None, on: date) -> TierFloor | None:
    if floor is None or (floor.ends_on is not None and on > floor.ends_on):
        return None
    return floor


def _with_floor(program: EngineProgram, tier: str, floor: TierFloor | None, on: date) -> str:
    active = floor_in_force(floor, on)
    if active is not None and program.rank(active.tier) > program.rank(tier):
        return active.tier
    return tier


def tier_after(program: EngineProgram, current: str, qualifying: int | Decimal, *, on: date,
               floor: TierFloor | None = None) -> str:
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


def review_tier(program: EngineProgram, current: str, history: Iterable[tuple[date, int | Decimal]], *,
                on: date, floor: TierFloor | None = None) -> str:
    """The tier a review on `on` gives, from the qualifying history (date, value) pairs.

    Only entries in the window (the `review_window_days` days up to and including `on`)
    count; the tier is the level their total reaches, so it may drop several tiers at once,
    and it never rises above what the total reaches nor falls below a floor in force.
    With downgrade "never" the current tier is kept if higher.
    """
    start = on - timedelta(days=program.tiers.review_window_days - 1)
    total = sum((value for day, value in history if start <= day <= on), Decimal(0))
    tier = level_for(program, total).name
    if program.tiers.downgrade == "never":
        tier = max(current, tier, key=program.rank)
    return _with_floor(program, tier, floor, on)
