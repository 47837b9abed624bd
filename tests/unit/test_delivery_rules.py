"""Pure delivery rules: quiet hours, the daily promotional cap, retry backoff, signatures."""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from worker.domain import delivery, signing
from worker.domain.errors import ProgramError
from worker.domain.program import Notifications, QuietHours, parse_program

SHANGHAI = ZoneInfo("Asia/Shanghai")
NIGHT = QuietHours(start=time(22), end=time(8))


def local(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 11, day, hour, minute, tzinfo=SHANGHAI)


@pytest.mark.parametrize(
    ("now", "until"),
    [
        (local(24, 23, 30), local(25, 8)),
        (local(24, 22, 0), local(25, 8)),
        (local(25, 7, 59), local(25, 8)),
        (local(25, 8, 0), None),
        (local(24, 21, 59), None),
        (local(24, 12, 0), None),
    ],
)
def test_quiet_hours_spanning_midnight(now, until):
    assert delivery.quiet_until(NIGHT, SHANGHAI, now.astimezone(UTC), "birthday") == until


def test_quiet_hours_within_a_day_and_promotional_scope():
    lunch = QuietHours(start=time(12), end=time(14), scope="promotional")
    assert delivery.quiet_until(lunch, SHANGHAI, local(24, 13), "member_day") == local(24, 14)
    assert delivery.quiet_until(lunch, SHANGHAI, local(24, 13), "redemption_confirmed") is None
    assert delivery.quiet_until(lunch, SHANGHAI, local(24, 14), "member_day") is None
    assert delivery.quiet_until(None, SHANGHAI, local(24, 13), "member_day") is None


def test_decide_holds_in_quiet_hours_then_caps_promotional_only():
    policy = Notifications(quiet_hours=NIGHT, daily_promotional_cap=2)
    assert delivery.decide(policy, SHANGHAI, "tier_nudge", local(24, 23), 0) == delivery.Decision(
        "hold", until=local(25, 8), reason="quiet hours"
    )
    assert delivery.decide(policy, SHANGHAI, "tier_nudge", local(24, 10), 1).action == "send"
    assert delivery.decide(policy, SHANGHAI, "tier_nudge", local(24, 10), 2) == delivery.Decision(
        "suppress", reason="daily cap: 2 promotional messages already sent today"
    )
    assert delivery.decide(policy, SHANGHAI, "redemption_confirmed", local(24, 10), 50).action == "send"
    assert (
        delivery.decide(Notifications(daily_promotional_cap=None), SHANGHAI, "birthday", local(24, 10), 99).action
        == "send"
    )


def test_promotional_and_transactional_kinds():
    assert sorted(delivery.PROMOTIONAL_KINDS) == ["birthday", "member_day", "points_expiring", "tier_nudge"]
    for kind in ("points_earned", "tier_upgraded", "redemption_confirmed", "redemption_rejected", "points_expired"):
        assert not delivery.is_promotional(kind)


def test_local_day_is_program_local():
    start, end = delivery.local_day(SHANGHAI, datetime(2026, 11, 24, 17, 0, tzinfo=UTC))  # 01:00 on the 25th
    assert (start, end) == (local(25, 0), local(26, 0))


def test_retry_backoff_doubles_to_a_ceiling_then_dead():
    assert [delivery.retry_delay_s(n) for n in (1, 2, 3, 4, 7, 8, 20)] == [30, 60, 120, 240, 1920, 3600, 3600]
    now = datetime(2026, 11, 24, 12, tzinfo=UTC)
    assert delivery.after_failure(2, 8, now) == delivery.AfterFailure(
        "failed", datetime(2026, 11, 24, 12, 1, tzinfo=UTC)
    )
    assert delivery.after_failure(8, 8, now) == delivery.AfterFailure("dead", None)


def test_program_file_notifications_section():
    program = parse_program(
        {
            "notifications": {
                "channel": "webhook",
                "quiet_hours": {"start": "22:00", "end": "08:00"},
                "daily_promotional_cap": 1,
            }
        }
    )
    assert program.notifications.quiet_hours == NIGHT
    assert program.notifications.daily_promotional_cap == 1
    with pytest.raises(ProgramError, match=r"notifications\.quiet_hours: start and end must differ"):
        parse_program({"notifications": {"quiet_hours": {"start": "08:00", "end": "08:00"}}})
    with pytest.raises(ProgramError, match=r"notifications\.chanel: unknown key"):
        parse_program({"notifications": {"chanel": "log"}})


def test_signature_is_hmac_sha256_over_timestamp_dot_body():
    body = b'{"kind":"tier_nudge"}'
    expected = hmac.new(b"s3cret", b"1764000000." + body, hashlib.sha256).hexdigest()
    assert signing.sign("s3cret", 1764000000, body) == f"v1={expected}"
    signature = signing.sign("s3cret", 1764000000, body)
    assert signing.verify("s3cret", "1764000000", body, signature, now_s=1764000010)
    assert not signing.verify("other", "1764000000", body, signature, now_s=1764000010)
    assert not signing.verify("s3cret", "1764000000", body + b" ", signature, now_s=1764000010)
    assert not signing.verify("s3cret", "1764000000", body, signature, now_s=1764000000 + 301)


_times = st.times().map(lambda t: t.replace(second=0, microsecond=0))
_instants = st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2035, 1, 1), timezones=st.just(UTC))


@given(start=_times, end=_times, now=_instants, zone=st.sampled_from(["Asia/Shanghai", "Asia/Taipei", "UTC"]))
def test_a_held_row_waits_only_until_the_next_end_of_quiet_hours(start, end, now, zone):
    if start == end:
        return
    tz = ZoneInfo(zone)
    until = delivery.quiet_until(QuietHours(start=start, end=end), tz, now, "birthday")
    local_now = now.astimezone(tz).time().replace(tzinfo=None)
    inside = start <= local_now < end if start < end else (local_now >= start or local_now < end)
    assert (until is not None) == inside
    if until is not None:
        assert now < until <= now + timedelta(days=1)
        assert until.astimezone(tz).time() == end


@given(
    kind=st.sampled_from(["points_earned", "tier_upgraded", "redemption_confirmed", "redemption_rejected"]),
    sent_today=st.integers(min_value=0, max_value=10_000),
    cap=st.integers(min_value=0, max_value=100),
)
def test_transactional_kinds_are_never_capped(kind, sent_today, cap):
    policy = Notifications(daily_promotional_cap=cap)
    assert delivery.decide(policy, SHANGHAI, kind, datetime(2026, 11, 24, 4, tzinfo=UTC), sent_today).action == "send"


LEVELS = [("Regular", 0), ("Silver", 1000), ("Gold", 5000), ("Diamond", 15000)]
GOLD_400 = {"tier": "Gold", "points_away": 400}


@pytest.mark.parametrize(
    ("tier", "points", "expected"),
    [
        ("Silver", 4600, delivery.NudgeNow({"tier": "Gold", "points_away": 400})),
        ("Silver", 4900, delivery.NudgeNow({"tier": "Gold", "points_away": 100})),
        ("Silver", 4500, delivery.NudgeNow({"tier": "Gold", "points_away": 500})),
        (
            "Silver",
            4499,
            delivery.NudgeNow(GOLD_400, "stale: 501 points away from Gold, outside the nudge window of 500"),
        ),
        ("Gold", 5200, delivery.NudgeNow(GOLD_400, "stale: member already reached Gold")),
        ("Diamond", 15000, delivery.NudgeNow(GOLD_400, "stale: member already reached Gold")),
        ("Silver", 5000, delivery.NudgeNow(GOLD_400, "stale: member has the points for Gold")),
        ("Regular", 4600, delivery.NudgeNow(GOLD_400, "stale: Gold is not the next tier above Regular")),
    ],
)
def test_a_nudge_is_worked_out_again_from_the_members_points_at_dispatch(tier, points, expected):
    assert delivery.nudge_now(GOLD_400, tier, points, LEVELS, 500) == expected


def test_a_nudge_toward_a_tier_the_program_no_longer_has_on_the_points_basis_is_stale():
    assert delivery.nudge_now(GOLD_400, "Silver", 4600, [], 500).reason == (
        "stale: Gold is not a tier on the points basis"
    )
    # A nudge without a tier is left for rendering to refuse, naming the parameter.
    assert delivery.nudge_now({"points_away": 400}, "Silver", 4600, LEVELS, 500) == delivery.NudgeNow(
        {"points_away": 400}
    )


def test_the_nudge_quiet_period_counts_from_the_last_nudge_sent():
    sent = local(1, 10)

    assert delivery.nudge_quiet_reason(None, 7, local(1, 11)) is None
    assert delivery.nudge_quiet_reason(sent, 7, sent + timedelta(days=7)) is None
    assert delivery.nudge_quiet_reason(sent, 0, sent) is None
    assert delivery.nudge_quiet_reason(sent, 7, sent + timedelta(days=7, seconds=-1)) == (
        "quiet period: a tier nudge went out at 2026-11-01T10:00:00+08:00, within the last 7 days"
    )


def test_a_member_day_notice_is_stale_once_its_local_day_is_over():
    assert delivery.member_day_stale(local(8, 0).date(), local(8, 23, 59), SHANGHAI) is None
    assert delivery.member_day_stale(local(8, 0).date(), local(9, 0), SHANGHAI) == (
        "stale: member day 2026-11-08 is over"
    )
