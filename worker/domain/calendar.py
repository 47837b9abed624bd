"""Calendar decisions for the scheduled jobs. Pure: dates and numbers in, answers out."""

from __future__ import annotations

import calendar
from datetime import date, datetime, timedelta

from worker.domain.program import Job, Program

# Job names as operators type them, and the program-file keys that configure them.
JOB_KEYS: dict[str, str] = {
    "expire-points": "expire_points",
    "expiry-warnings": "expiry_warnings",
    "release-pending": "release_pending",
    "birthday": "birthday",
    "member-day": "member_day",
    "tier-review": "tier_review",
}


def job_config(program: Program, name: str) -> Job:
    if name not in JOB_KEYS:
        raise KeyError(f"unknown job {name!r}; jobs: {', '.join(JOB_KEYS)}")
    job: Job = getattr(program.schedule, JOB_KEYS[name])
    return job


def firing_key(job: str, scheduled_for: datetime) -> str:
    """The idempotency key of one firing, also written on the ledger entries it makes."""
    return f"{job}@{scheduled_for.isoformat()}"


def birthdays_on(on: date) -> list[tuple[int, int]]:
    """(month, day) pairs whose birthday is celebrated on `on`: 29 February birthdays are
    celebrated on 28 February in common years."""
    days = [(on.month, on.day)]
    if (on.month, on.day) == (2, 28) and not calendar.isleap(on.year):
        days.append((2, 29))
    return days


def chunk_ranges(boundaries: list[str]) -> list[tuple[str, str | None]]:
    """Member-id ranges (after, upto] from the sorted ids that end each full chunk.

    The last range is open-ended so members enrolled after planning are still covered.
    """
    ranges: list[tuple[str, str | None]] = []
    after = ""
    for upto in boundaries:
        ranges.append((after, upto))
        after = upto
    ranges.append((after, None))
    return ranges


def reviewed_tier(
    program: Program,
    tier: str,
    window_points: int,
    *,
    floor: str | None,
    upgraded_at: datetime | None,
    now: datetime,
) -> str | None:
    """The tier after a review, or None to keep the current one.

    A member whose points in the window fall short of their tier's threshold drops one tier,
    never below an operator's floor, and not while inside the grace period after an upgrade.
    """
    rule = program.schedule.tier_review
    rank = program.tier_rank(tier)
    if rank == 0 or window_points >= program.tiers[rank].threshold:
        return None
    if upgraded_at is not None and now - upgraded_at < timedelta(days=rule.grace_days):
        return None
    lower = program.tiers[rank - 1].name
    if floor is not None and program.tier_rank(floor) > program.tier_rank(lower):
        lower = floor
    return None if lower == tier else lower
