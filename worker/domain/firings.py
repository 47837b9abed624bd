"""Calendar decisions for the scheduled jobs. Pure: dates and numbers in, answers out."""

from __future__ import annotations

import calendar
from datetime import date, datetime

from worker.domain.engine import rules_of
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
    """The job's section of `[schedule]`. The tier review runs exactly when the program's tiers
    go down at a review (downgrade "review"; an enabled `[schedule.tier_review]` says so in
    an old-style file), on that section's crontab."""
    if name not in JOB_KEYS:
        raise KeyError(f"unknown job {name!r}; jobs: {', '.join(JOB_KEYS)}")
    config: Job = getattr(program.schedule, JOB_KEYS[name])
    if name == "tier-review":
        config = config.model_copy(update={"enabled": rules_of(program).tiers.downgrade == "review"})
    return config


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
