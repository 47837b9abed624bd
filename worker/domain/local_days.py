"""A program's local days: the local date of an instant, birthdays and member days. Pure."""

from __future__ import annotations

import calendar
from datetime import date, datetime

from worker.domain.program import Program


def local_date(program: Program, at: datetime) -> date:
    return at.astimezone(program.zone).date()


def is_birthday(birthday: date | None, on: date) -> bool:
    """Birthdays on 29 February are kept on 28 February in common years."""
    if birthday is None:
        return False
    if birthday.month == 2 and birthday.day == 29 and not calendar.isleap(on.year):
        return (on.month, on.day) == (2, 28)
    return (on.month, on.day) == (birthday.month, birthday.day)


def falls_on(day_of_month: int, on: date) -> bool:
    """A day past the month's end (e.g. the 31st) falls on the month's last day."""
    return on.day == min(day_of_month, calendar.monthrange(on.year, on.month)[1])


def is_member_day(program: Program, on: date) -> bool:
    rule = program.member_day
    if not rule.enabled:
        return False
    if rule.weekdays is not None:
        return on.isoweekday() in rule.weekdays
    return falls_on(rule.day_of_month, on)
