"""Delivery rules for the notification outbox, pure: quiet hours, the daily cap, retries.

Promotional kinds are the ones a member did not ask for: they are capped per member per
program-local day. Transactional kinds answer something the member did or must know about
their points (redemption results, earned/expired points, tier changes) and are never capped.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

from worker.domain.program import Notifications, QuietHours

# pending: waiting (maybe until next_attempt_at); sending: claimed, under a lease;
# failed: last attempt failed, retried at next_attempt_at; dead: out of attempts;
# suppressed: dropped by the daily cap, as stale, or because the member was erased.
STATUSES = ("pending", "sending", "sent", "failed", "dead", "suppressed")
PROMOTIONAL_KINDS = frozenset({"tier_nudge", "member_day", "points_expiring", "birthday"})

# Retry delays double from the base up to the ceiling: 30 s, 1 min, 2 min, ... 1 h.
# The base rides out a receiver's restart; the ceiling keeps a long outage from pushing
# the next try many hours out once the receiver is back.
RETRY_BASE_S = 30
RETRY_MAX_S = 3_600


def is_promotional(kind: str) -> bool:
    return kind in PROMOTIONAL_KINDS


def _at(day: date, clock: time, zone: ZoneInfo) -> datetime:
    return datetime.combine(day, clock, tzinfo=zone)


def quiet_until(quiet: QuietHours | None, zone: ZoneInfo, now: datetime, kind: str) -> datetime | None:
    """When the quiet hours around `now` end, or None if `now` is not in quiet hours
    (or they do not apply to this kind)."""
    if quiet is None or (quiet.scope == "promotional" and not is_promotional(kind)):
        return None
    local = now.astimezone(zone)
    today, clock = local.date(), local.time().replace(tzinfo=None)
    if quiet.start < quiet.end:
        inside = quiet.start <= clock < quiet.end
        return _at(today, quiet.end, zone) if inside else None
    # Spans midnight: quiet from start to 24:00 and from 00:00 to end.
    if clock >= quiet.start:
        return _at(today + timedelta(days=1), quiet.end, zone)
    if clock < quiet.end:
        return _at(today, quiet.end, zone)
    return None


def local_day(zone: ZoneInfo, now: datetime) -> tuple[datetime, datetime]:
    """The program-local calendar day containing `now`, as [start, end)."""
    today = now.astimezone(zone).date()
    return _at(today, time(0), zone), _at(today + timedelta(days=1), time(0), zone)


@dataclass(frozen=True)
class Decision:
    action: Literal["send", "hold", "suppress"]
    until: datetime | None = None
    reason: str | None = None


def decide(policy: Notifications, zone: ZoneInfo, kind: str, now: datetime, promotional_today: int) -> Decision:
    """Whether a due notification goes out now, waits for quiet hours to end, or is dropped
    because the member already had `promotional_today` promotional messages today."""
    until = quiet_until(policy.quiet_hours, zone, now, kind)
    if until is not None:
        return Decision("hold", until=until, reason="quiet hours")
    cap = policy.daily_promotional_cap
    if is_promotional(kind) and cap is not None and promotional_today >= cap:
        return Decision("suppress", reason=f"daily cap: {cap} promotional messages already sent today")
    return Decision("send")


def retry_delay_s(attempts: int) -> int:
    """Seconds to wait after the `attempts`-th failed attempt (1-based)."""
    delay_s: int = RETRY_BASE_S * 2 ** max(attempts - 1, 0)  # typeshed: int ** int may be a float
    return min(delay_s, RETRY_MAX_S)


@dataclass(frozen=True)
class AfterFailure:
    status: Literal["failed", "dead"]
    next_attempt_at: datetime | None


def after_failure(attempts: int, max_attempts: int, now: datetime) -> AfterFailure:
    if attempts >= max_attempts:
        return AfterFailure("dead", None)
    return AfterFailure("failed", now + timedelta(seconds=retry_delay_s(attempts)))


def member_day_of(dedupe_key: str | None, created_at: datetime, zone: ZoneInfo) -> date:
    """The day a member-day notice is about: the member-day job keys it `member_day:<member>:<day>`."""
    if dedupe_key and dedupe_key.startswith("member_day:"):
        try:
            return date.fromisoformat(dedupe_key.rsplit(":", 1)[1])
        except ValueError:
            pass
    return created_at.astimezone(zone).date()


def stale_reason(
    kind: str,
    params: dict[str, Any],
    about_day: date,
    now: datetime,
    zone: ZoneInfo,
    member_tier: str | None,
    tier_names: list[str],
) -> str | None:
    """Why a promotional notification is no longer true and must not be sent, or None.

    A nudge toward a tier the member has already reached ("only 400 points away from Gold"
    to a Gold member), and a member-day notice once that program-local day is over: a
    scheduler started late or a long receiver outage must not send a backlog of them.
    """
    if kind == "tier_nudge" and member_tier in tier_names and params.get("tier") in tier_names:
        if tier_names.index(member_tier) >= tier_names.index(params["tier"]):
            return f"stale: member already reached {params['tier']}"
    if kind == "member_day" and about_day < now.astimezone(zone).date():
        return f"stale: member day {about_day.isoformat()} is over"
    return None
