"""Calendar decisions and the scheduler's firing logic, on plain data and fakes."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import pytest

from scheduler.runner import Scheduler
from scheduler.schedule import job_specs, last_fire_time
from tests.factories import with_tiers
from worker.domain.engine import rules_of
from worker.domain.firings import birthdays_on, chunk_ranges, firing_key, job_config
from worker.domain.program import DEFAULT_PROGRAM as P

CST = timezone(timedelta(hours=8))


@pytest.mark.parametrize(
    ("on", "expected"),
    [
        (date(2027, 2, 28), [(2, 28), (2, 29)]),  # common year: 29 February birthdays too
        (date(2028, 2, 28), [(2, 28)]),
        (date(2028, 2, 29), [(2, 29)]),
        (date(2026, 11, 24), [(11, 24)]),
    ],
)
def test_birthdays_on(on, expected):
    assert birthdays_on(on) == expected


def test_chunk_ranges_are_contiguous_and_open_at_the_end():
    assert chunk_ranges(["M10", "M20"]) == [("", "M10"), ("M10", "M20"), ("M20", None)]
    assert chunk_ranges([]) == [("", None)]


def test_firing_key_and_unknown_job():
    assert firing_key("birthday", datetime(2026, 1, 2, tzinfo=CST)) == "birthday@2026-01-02T00:00:00+08:00"
    with pytest.raises(KeyError, match="unknown job 'expire'"):
        job_config(P, "expire")


def _review(grace_days=0):
    review = P.schedule.tier_review.model_copy(update={"enabled": True, "grace_days": grace_days})
    return P.model_copy(update={"schedule": P.schedule.model_copy(update={"tier_review": review})})


NOW = datetime(2027, 1, 1, 2, tzinfo=CST)


def test_tier_review_runs_when_the_program_tiers_go_down_at_a_review():
    assert job_config(P, "tier-review").enabled is False
    assert job_config(_review(), "tier-review").enabled is True
    assert job_config(with_tiers(_review(), downgrade="automatic"), "tier-review").enabled is False
    assert job_config(with_tiers(P, downgrade="review"), "tier-review").enabled is True
    tiers = rules_of(_review(grace_days=30)).tiers
    assert (tiers.downgrade, tiers.review_window_days, tiers.review_grace_days) == ("review", 365, 30)


def test_last_fire_time_in_the_program_zone():
    expire = next(s for s in job_specs(P) if s.name == "expire-points")  # 00:05 Asia/Shanghai

    fired = last_fire_time(expire.trigger, datetime(2026, 1, 2, 3, 0, tzinfo=CST), timedelta(days=1))
    none = last_fire_time(expire.trigger, datetime(2026, 1, 2, 0, 4, tzinfo=CST), timedelta(hours=2))

    assert fired == datetime(2026, 1, 2, 0, 5, tzinfo=CST)
    assert none is None


def test_bad_crontab_names_the_key():
    program = P.model_copy(
        update={
            "schedule": P.schedule.model_copy(
                update={"birthday": P.schedule.birthday.model_copy(update={"cron": "99 * * * *"})}
            )
        }
    )

    with pytest.raises(ValueError, match=r"^schedule\.birthday\.cron: "):
        job_specs(program)


class Announcements:
    """What Redis SET NX gives several schedulers: the first claim of a key wins."""

    def __init__(self):
        self.keys: set[tuple[str, datetime]] = set()

    def claim(self, job: str, at: datetime) -> bool:
        if (job, at) in self.keys:
            return False
        self.keys.add((job, at))
        return True


def test_two_schedulers_send_each_firing_once_and_catch_up_once_after_downtime():
    shared, sent = Announcements(), []
    clock = lambda: datetime(2026, 1, 2, 3, 0, tzinfo=CST)  # noqa: E731 - restarted at 03:00
    a = Scheduler(P, lambda job, when: sent.append((job, when)), shared.claim, clock)
    b = Scheduler(P, lambda job, when: sent.append((job, when)), shared.claim, clock)

    a.catch_up()
    b.catch_up()
    a.catch_up()

    # Within the 6 h grace: expire-points (00:05), birthday (00:10), release-pending (03:00).
    assert sorted(sent) == [
        ("birthday", "2026-01-02T00:10:00+08:00"),
        ("expire-points", "2026-01-02T00:05:00+08:00"),
        ("release-pending", "2026-01-02T03:00:00+08:00"),
    ]


def test_disabled_jobs_are_not_scheduled():
    scheduler = Scheduler(P, lambda *a: None, lambda *a: True, lambda: NOW)

    assert "tier-review" not in [s.name for s in scheduler.specs]
    assert sorted(j.id for j in scheduler.build().get_jobs()) == [
        "birthday",
        "expire-points",
        "expiry-warnings",
        "member-day",
        "release-pending",
    ]


def test_a_new_program_calendar_reschedules_the_jobs_and_an_unchanged_one_does_not():
    in_force = [P]
    scheduler = Scheduler(P, lambda *a: None, lambda *a: True, lambda: NOW, program_source=lambda: in_force[-1])
    running = scheduler.build()
    review_on = P.model_copy(
        update={
            "schedule": P.schedule.model_copy(
                update={
                    "tier_review": P.schedule.tier_review.model_copy(update={"enabled": True}),
                    "expire_points": P.schedule.expire_points.model_copy(update={"cron": "30 1 * * *"}),
                }
            )
        }
    )

    in_force.append(P.model_copy(update={"name": "same calendar"}))
    unchanged = scheduler.follow_program(running)
    in_force.append(review_on)
    changed = scheduler.follow_program(running)

    assert (unchanged, changed) == (False, True)
    jobs = {job.id: job for job in running.get_jobs()}
    assert sorted(jobs) == [
        "birthday",
        "expire-points",
        "expiry-warnings",
        "follow-program",
        "member-day",
        "release-pending",
        "tier-review",
    ]
    assert str(jobs["expire-points"].trigger) == str(job_specs(review_on)[0].trigger)


def test_a_calendar_that_cannot_be_scheduled_keeps_the_jobs():
    bad = P.model_copy(
        update={
            "schedule": P.schedule.model_copy(
                update={"birthday": P.schedule.birthday.model_copy(update={"cron": "99 * * * *"})}
            )
        }
    )
    scheduler = Scheduler(P, lambda *a: None, lambda *a: True, lambda: NOW, program_source=lambda: bad)
    running = scheduler.build()

    assert scheduler.follow_program(running) is False
    assert scheduler.program is P
    assert "birthday" in [job.id for job in running.get_jobs()]
