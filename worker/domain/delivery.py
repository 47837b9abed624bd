"""Delivery rules for the notification outbox, pure: quiet hours, the daily cap, retries.

Promotional kinds are the ones a member did not ask for: they are capped per member per
program-local day. Transactional kinds answer something the member did or must know about
their points (redemption results, earned/expired points, tier changes) and are never capped.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

from worker.domain.program import Notifications, QuietHours

# pending: waiting (maybe until next_attempt_at); sending: claimed, under a lease;
# failed: last attempt failed, retried at next_attempt_at; dead: out of attempts;
# suppressed: not sent, with the reason in last_error: the daily cap, no longer true (stale),
# a nudge within the quiet period, or the member was erased.
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


def member_day_stale(about_day: date, now: datetime, zone: ZoneInfo) -> str | None:
    """Why a member-day notice is no longer true and must not be sent, or None: once its
    program-local day is over, a scheduler started late or a long receiver outage must not
    send a backlog of them."""
    if about_day < now.astimezone(zone).date():
        return f"stale: member day {about_day.isoformat()} is over"
    return None


@dataclass(frozen=True)
class NudgeNow:
    """A tier nudge as the member's state makes it at dispatch: its parameters, or why not."""

    params: dict[str, Any]
    reason: str | None = None


def nudge_now(
    params: Mapping[str, Any],
    member_tier: str | None,
    points: int,
    levels: Sequence[tuple[str, int]],
    window_points: int,
) -> NudgeNow:
    """The nudge's `points_away` from the member's qualifying `points` now (above their review
    baseline), or the reason it is no longer true: the member reached the tier, the tier is no
    longer the next one up, or the member fell back beyond `window_points` (another nudge is
    queued if they come close again). `levels` are the program's (name, threshold) on the
    points basis, lowest first; empty when tiers are on another basis."""
    tier = params.get("tier")
    if tier is None:  # not a nudge the ledger queued: rendering names what is missing
        return NudgeNow(dict(params))
    names = [name for name, _ in levels]
    if tier not in names:
        return NudgeNow(dict(params), f"stale: {tier} is not a tier on the points basis")
    rank = names.index(member_tier) if member_tier in names else -1
    if rank >= names.index(tier):
        return NudgeNow(dict(params), f"stale: member already reached {tier}")
    if names.index(tier) != rank + 1:
        return NudgeNow(dict(params), f"stale: {tier} is not the next tier above {member_tier}")
    away = levels[rank + 1][1] - points
    if away <= 0:
        return NudgeNow(dict(params), f"stale: member has the points for {tier}")
    if away > window_points:
        return NudgeNow(
            dict(params), f"stale: {away} points away from {tier}, outside the nudge window of {window_points}"
        )
    return NudgeNow({**params, "points_away": away})


def nudge_quiet_reason(last_sent_at: datetime | None, quiet_period_days: int, now: datetime) -> str | None:
    """Why a tier nudge must not go out because the member had one within the quiet period."""
    if last_sent_at is None or quiet_period_days <= 0 or now >= last_sent_at + timedelta(days=quiet_period_days):
        return None
    return (
        f"quiet period: a tier nudge went out at {last_sent_at.isoformat()}, within the last {quiet_period_days} days"
    )
