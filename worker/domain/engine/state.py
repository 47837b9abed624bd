"""Rule state: one JSON-serialisable mapping for every stateful rule, keyed by rule id.

    {"review": {"day:2026-11-24": {"count": 2, "points": 40}},
     "signup": {"ever": {"count": 1, "points": 50}},
     "check_in": {"streak": {"last_on": "2026-11-24", "days": 3}},
     "welcome": {"mission": {"started_at": "2026-11-01T10:00:00+08:00", "done": ["signup"], "status": "open"}}}

Period keys are program-local: `day:YYYY-MM-DD`, `week:YYYY-Www` (ISO weeks, Monday start),
`month:YYYY-MM`, `year:YYYY`, `ever`. A new stateful rule only adds keys, never columns.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from copy import deepcopy
from datetime import date, datetime
from typing import Any

from worker.domain.errors import RuleStateError

PERIOD_KINDS = ("day", "week", "month", "year", "ever")
# Counters kept per rule and period kind, counted back from the newest: enough for events that
# arrive late (an offline till), small enough that the mapping stays a few keys per rule.
PERIODS_KEPT = {"day": 8, "week": 5, "month": 3, "year": 2, "ever": 1}

_PERIOD_KEY = re.compile(r"^(day:\d{4}-\d{2}-\d{2}|week:\d{4}-W\d{2}|month:\d{4}-\d{2}|year:\d{4}|ever)$")
MISSION_STATUSES = ("open", "completed", "expired")


def period_key(per: str, on: date) -> str:
    """The key of the period holding the local date `on`."""
    if per == "day":
        return f"day:{on.isoformat()}"
    if per == "week":
        year, week, _ = on.isocalendar()
        return f"week:{year:04d}-W{week:02d}"
    if per == "month":
        return f"month:{on.year:04d}-{on.month:02d}"
    if per == "year":
        return f"year:{on.year:04d}"
    if per == "ever":
        return "ever"
    raise ValueError(f"unknown period {per!r}")


def _fail(path: str, message: str) -> RuleStateError:
    return RuleStateError(f"state.{path}: {message}")


def _count(path: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise _fail(path, "must be a non-negative integer")


def _date(path: str, value: Any) -> None:
    try:
        date.fromisoformat(value)
    except (TypeError, ValueError):
        raise _fail(path, "must be a date as YYYY-MM-DD") from None


def validate_state(state: Any) -> dict[str, Any]:
    """A deep copy of `state` if it has the shape the engine writes; RuleStateError naming the key if not."""
    check_state(state)
    return {} if state is None else deepcopy(dict(state))


def check_state(state: Any) -> None:
    """RuleStateError naming the key unless `state` (None: no state) has the shape the engine writes."""
    if state is None:
        return
    if not isinstance(state, Mapping):
        raise RuleStateError("state: must be a mapping of rule id to rule state")
    for rule_id, entries in state.items():
        if not isinstance(rule_id, str) or not rule_id:
            raise RuleStateError(f"state: {rule_id!r} is not a rule id")
        if not isinstance(entries, Mapping):
            raise _fail(rule_id, "must be a mapping")
        for key, value in entries.items():
            path = f"{rule_id}.{key}"
            if not isinstance(value, Mapping):
                raise _fail(path, "must be a mapping")
            if key == "streak":
                if set(value) != {"last_on", "days"}:
                    raise _fail(path, "must have exactly last_on and days")
                _date(f"{path}.last_on", value["last_on"])
                _count(f"{path}.days", value["days"])
            elif key == "mission":
                if set(value) != {"started_at", "done", "status"}:
                    raise _fail(path, "must have exactly started_at, done and status")
                try:
                    started = datetime.fromisoformat(value["started_at"])
                except (TypeError, ValueError):
                    raise _fail(f"{path}.started_at", "must be an ISO 8601 time with a UTC offset") from None
                if started.utcoffset() is None:
                    raise _fail(f"{path}.started_at", "must include a UTC offset")
                done = value["done"]
                if not isinstance(done, list) or not all(isinstance(step, str) for step in done):
                    raise _fail(f"{path}.done", "must be a list of step names")
                if value["status"] not in MISSION_STATUSES:
                    raise _fail(f"{path}.status", f"must be one of {', '.join(MISSION_STATUSES)}")
            elif isinstance(key, str) and _PERIOD_KEY.match(key):
                if not set(value) <= {"count", "points"}:
                    raise _fail(path, "may hold only count and points")
                for name, number in value.items():
                    _count(f"{path}.{name}", number)
            else:
                raise _fail(path, "unknown key: use streak, mission, ever or day:/week:/month:/year: periods")


def prune_periods(entries: dict[str, Any]) -> None:
    """Drop the oldest period counters of each kind beyond PERIODS_KEPT (in place)."""
    for kind, kept in PERIODS_KEPT.items():
        keys = sorted(
            (k for k in entries if k.split(":", 1)[0] == kind and k not in ("streak", "mission")), reverse=True
        )
        for key in keys[kept:]:
            del entries[key]


def is_closed(entries: Mapping[str, Any], key: str) -> bool:
    """True when `key` is older than every period counter still kept of its kind (a very late event)."""
    kind = key.split(":", 1)[0]
    keys = sorted((k for k in entries if k.split(":", 1)[0] == kind), reverse=True)
    return len(keys) >= PERIODS_KEPT[kind] and key < keys[-1]
