"""Tier arithmetic over qualifying points. Pure: program and numbers in, answers out."""

from __future__ import annotations

from dataclasses import dataclass

from worker.domain.program import Program, Tier


def tier_for(program: Program, qualifying_points: int) -> Tier:
    """The highest tier whose threshold the qualifying points reach."""
    reached = program.tiers[0]
    for tier in program.tiers:
        if qualifying_points >= tier.threshold:
            reached = tier
    return reached


def next_tier(program: Program, tier_name: str) -> Tier | None:
    rank = program.tier_rank(tier_name)
    return program.tiers[rank + 1] if rank + 1 < len(program.tiers) else None


def points_to_next(program: Program, tier_name: str, qualifying_points: int) -> tuple[Tier | None, int | None]:
    upcoming = next_tier(program, tier_name)
    if upcoming is None:
        return None, None
    return upcoming, max(upcoming.threshold - qualifying_points, 0)


def upgraded_tier(program: Program, current: str, qualifying_points: int, floor: str | None = None) -> str:
    """Upgrades apply at once; a lower points tier never demotes here (that is the tier review)."""
    candidates = [current, tier_for(program, qualifying_points).name]
    if floor is not None:
        candidates.append(floor)
    return max(candidates, key=program.tier_rank)


@dataclass(frozen=True)
class Nudge:
    tier: str
    points_away: int


def nudge(program: Program, tier_after: str, qualifying_before: int, qualifying_after: int) -> Nudge | None:
    """A nudge when this change brought the member inside the window below the next tier.

    Only when they were outside that window before, so each approach is announced once.
    """
    window = program.nudge.window_points
    upcoming = next_tier(program, tier_after)
    if upcoming is None or window <= 0:
        return None
    away_after = upcoming.threshold - qualifying_after
    away_before = upcoming.threshold - qualifying_before
    if 0 < away_after <= window < away_before:
        return Nudge(tier=upcoming.name, points_away=away_after)
    return None
