"""Which jobs run when: the program's crontabs as APScheduler triggers, and firing times."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from apscheduler.triggers.cron import CronTrigger

from worker.domain.firings import JOB_KEYS, job_config
from worker.domain.program import Program


@dataclass(frozen=True)
class JobSpec:
    name: str
    enabled: bool
    cron: str
    trigger: CronTrigger


def job_specs(program: Program) -> list[JobSpec]:
    specs = []
    for name in JOB_KEYS:
        config = job_config(program, name)
        try:
            trigger = CronTrigger.from_crontab(config.cron, timezone=program.zone)
        except ValueError as error:
            raise ValueError(f"schedule.{JOB_KEYS[name]}.cron: {error}") from None
        specs.append(JobSpec(name, config.enabled, config.cron, trigger))
    return specs


def last_fire_time(trigger: CronTrigger, now: datetime, lookback: timedelta) -> datetime | None:
    """The latest time the trigger fired at or before `now`, looking back at most `lookback`."""
    last = None
    at = trigger.get_next_fire_time(None, now - lookback)
    while at is not None and at <= now:
        last = at
        at = trigger.get_next_fire_time(at, at + timedelta(microseconds=1))
    return last


def next_fire_time(trigger: CronTrigger, now: datetime) -> datetime | None:
    return trigger.get_next_fire_time(None, now)
