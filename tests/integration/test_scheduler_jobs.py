"""Calendar jobs on real PostgreSQL, driven by explicit firing times (as `--now` does)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from sqlalchemy import text

from tests.conftest import NOW
from tests.factories import purchase, refund, signup
from worker import jobs
from worker.domain.program import DEFAULT_PROGRAM, Pending
from worker.services import intake, members
from worker.services.audit import audit_all

CST = timezone(timedelta(hours=8))


def at(text_: str) -> datetime:
    return datetime.fromisoformat(text_)


async def process(db, raw, program=DEFAULT_PROGRAM, now=NOW):
    outcome = await intake.process(db, program, raw, now=now, strict=True)
    assert outcome.status in ("applied", "deferred"), outcome
    return outcome


async def run_job(db, job: str, when: datetime, program=DEFAULT_PROGRAM):
    """Plan a firing and run its chunks in order, as the workers would."""
    ranges = []

    async def send(spans):
        ranges.extend(spans)

    plan = await jobs.plan(db, program, job, when, send)
    results = [await jobs.run_chunk(db, program, job, when, r.after, r.upto) for r in ranges]
    return plan, results


async def view(db, member_id, program=DEFAULT_PROGRAM):
    return await members.member_view(db, program, member_id)


async def rows(db, sql: str, **params):
    async with db.connect() as conn:
        return [tuple(r) for r in (await conn.execute(text(sql), params)).all()]


async def test_lots_expire_the_day_after_their_year_not_before(db):
    await process(db, purchase("M1", "300.00", occurred_at="2025-01-01T10:00:00+08:00"))  # 300 + 100 bonus

    await run_job(db, "expire-points", at("2025-12-31T00:05:00+08:00"))
    before = await view(db, "M1")
    await run_job(db, "expire-points", at("2026-01-02T00:05:00+08:00"))
    after = await view(db, "M1")

    assert (before["available_points"], before["qualifying_points"]) == (400, 400)
    assert (after["available_points"], after["qualifying_points"], after["tier"]) == (0, 400, "Regular")
    assert await rows(
        db, "SELECT kind, points, qualifying_points, event_type FROM ledger_entries WHERE kind = 'expire'"
    ) == [("expire", -400, 0, "expire-points")]
    assert await rows(db, "SELECT kind, params->>'points' FROM notifications WHERE kind = 'points_expired'") == [
        ("points_expired", "400")
    ]
    assert (await audit_all(db)).clean


async def test_a_partly_consumed_lot_expires_only_its_remainder_earliest_lots_first(db):
    await process(db, purchase("M1", "100.00", order_id="o-1", occurred_at="2025-01-01T10:00:00+08:00"))  # lot 200
    await process(db, refund("M1", "o-1", "50.00", occurred_at="2025-01-05T10:00:00+08:00"))  # takes 50 from it
    await process(db, purchase("M1", "80.00", occurred_at="2025-06-01T10:00:00+08:00"))  # lot 80, later expiry

    await run_job(db, "expire-points", at("2026-01-02T00:05:00+08:00"))

    assert await rows(db, "SELECT points, remaining FROM lots ORDER BY lot_id") == [(200, 0), (80, 80)]
    v = await view(db, "M1")
    assert (v["available_points"], v["qualifying_points"]) == (80, 230)
    assert await rows(db, "SELECT points FROM ledger_entries WHERE kind = 'expire'") == [(-150,)]
    assert (await audit_all(db)).clean


async def test_running_a_firing_twice_or_again_the_same_day_changes_nothing(db):
    await process(db, purchase("M1", "300.00", occurred_at="2025-01-01T10:00:00+08:00"))
    when = at("2026-01-02T00:05:00+08:00")

    first, _ = await run_job(db, "expire-points", when)
    again, again_results = await run_job(db, "expire-points", when)
    later, later_results = await run_job(db, "expire-points", when + timedelta(hours=3))

    assert (first.claimed, again.claimed, later.claimed) == (True, False, True)
    assert again_results == [] and [r.points for r in later_results] == [0]
    assert await rows(db, "SELECT count(*) FROM ledger_entries WHERE kind = 'expire'") == [(1,)]
    assert await rows(
        db,
        "SELECT job, chunks_planned, chunks_done, points, finished_at IS NOT NULL FROM scheduler_firings ORDER BY scheduled_for",
    ) == [("expire-points", 1, 1, 400, True), ("expire-points", 1, 1, 0, True)]


async def test_a_chunk_delivered_twice_runs_once(db):
    await process(db, purchase("M1", "300.00", occurred_at="2025-01-01T10:00:00+08:00"))
    when = at("2026-01-02T00:05:00+08:00")
    ranges = []

    async def send(spans):
        ranges.extend(spans)

    await jobs.plan(db, DEFAULT_PROGRAM, "expire-points", when, send)
    first = await jobs.run_chunk(db, DEFAULT_PROGRAM, "expire-points", when, ranges[0].after, ranges[0].upto)
    second = await jobs.run_chunk(db, DEFAULT_PROGRAM, "expire-points", when, ranges[0].after, ranges[0].upto)

    assert (first.points, second) == (400, None)


async def test_chunks_cover_every_member_once(db):
    program = DEFAULT_PROGRAM.model_copy(
        update={"schedule": DEFAULT_PROGRAM.schedule.model_copy(update={"chunk_members": 10})}
    )
    for i in range(35):
        await process(db, purchase(f"M{i:03}", "10.00", occurred_at="2025-01-01T10:00:00+08:00"))

    plan, results = await run_job(db, "expire-points", at("2026-01-02T00:05:00+08:00"), program)

    assert [(r.after, r.upto) for r in plan.ranges] == [
        ("", "M009"),
        ("M009", "M019"),
        ("M019", "M029"),
        ("M029", None),
    ]
    assert [r.members for r in results] == [10, 10, 10, 5]
    assert await rows(db, "SELECT sum(available_points) FROM members") == [(0,)]


async def test_expiry_warning_names_points_and_local_date_once(db):
    await process(db, purchase("M1", "100.00", occurred_at="2025-01-10T20:00:00+08:00"))  # 200, expires 2026-01-10
    await process(db, purchase("M1", "50.00", occurred_at="2025-01-10T21:00:00+08:00"))  # 50, same local day
    await process(db, purchase("M1", "70.00", occurred_at="2025-01-20T10:00:00+08:00"))  # 70, 2026-01-20

    await run_job(db, "expiry-warnings", at("2025-12-20T10:00:00+08:00"))
    await run_job(db, "expiry-warnings", at("2025-12-21T10:00:00+08:00"))
    await run_job(db, "expiry-warnings", at("2025-12-25T10:00:00+08:00"))

    assert await rows(
        db,
        "SELECT params->>'points', params->>'expires_on' FROM notifications "
        "WHERE kind = 'points_expiring' ORDER BY notification_id",
    ) == [("250", "2026-01-10"), ("70", "2026-01-20")]


async def test_birthday_gift_once_per_year_and_29_february_on_the_28th(db):
    await process(db, signup("B1", birthday="1990-11-24"))
    await process(db, signup("B2", birthday="2000-02-29"))
    await process(db, signup("B3", birthday="1990-11-25"))

    await run_job(db, "birthday", at("2026-11-24T00:10:00+08:00"))
    await run_job(db, "birthday", at("2026-11-24T15:00:00+08:00"))  # a second run the same day
    await run_job(db, "birthday", at("2027-02-28T00:10:00+08:00"))
    await run_job(db, "birthday", at("2027-11-24T00:10:00+08:00"))

    points = {m: (await view(db, m))["available_points"] for m in ("B1", "B2", "B3")}
    assert points == {"B1": 50 + 200 + 200, "B2": 50 + 200, "B3": 50}
    assert await rows(
        db, "SELECT member_id, params->>'points' FROM notifications WHERE kind = 'birthday' ORDER BY notification_id"
    ) == [("B1", "200"), ("B2", "200"), ("B1", "200")]
    assert (await audit_all(db)).clean


async def test_pending_points_release_after_the_window_and_a_refund_inside_cancels_them(db):
    program = DEFAULT_PROGRAM.model_copy(update={"pending": Pending(days=14)})
    await process(db, purchase("M1", "300.00", order_id="o-1", occurred_at="2026-03-01T10:00:00+08:00"), program)
    await process(db, purchase("M2", "300.00", order_id="o-2", occurred_at="2026-03-01T10:00:00+08:00"), program)
    await process(db, refund("M1", "o-1", "100.00", occurred_at="2026-03-05T10:00:00+08:00"), program)

    held = await view(db, "M1", program)
    await run_job(db, "release-pending", at("2026-03-15T09:00:00+08:00"), program)  # window still open
    early = await view(db, "M1", program)
    await run_job(db, "release-pending", at("2026-03-15T11:00:00+08:00"), program)
    m1, m2 = await view(db, "M1", program), await view(db, "M2", program)

    assert (held["available_points"], held["pending_points"]) == (0, 300)  # 400 - floor(300 x 100/300)
    assert (early["available_points"], early["pending_points"]) == (0, 300)
    assert (m1["available_points"], m1["pending_points"], m1["qualifying_points"]) == (300, 0, 300)
    assert (m2["available_points"], m2["pending_points"]) == (400, 0)
    assert await rows(
        db, "SELECT member_id, points, pending_points FROM ledger_entries WHERE kind = 'release' ORDER BY member_id"
    ) == [("M1", 300, -300), ("M2", 400, -400)]
    assert (await audit_all(db)).clean


async def test_member_day_message_only_on_member_days_to_active_members_once(db):
    await process(db, signup("A1"))

    off_day, _ = await run_job(db, "member-day", at("2026-12-07T09:00:00+08:00"))
    await run_job(db, "member-day", at("2026-12-08T09:00:00+08:00"))
    await run_job(db, "member-day", at("2026-12-08T12:00:00+08:00"))

    assert off_day.note == "not a member day"
    assert await rows(db, "SELECT member_id, params->>'multiplier' FROM notifications WHERE kind = 'member_day'") == [
        ("A1", "2")
    ]


async def test_a_weekly_member_day_sends_its_notice_on_its_weekdays_like_the_monthly_one(db):
    from worker.domain.engine import parse_program_text
    from worker.domain.engine.language import DEFAULT_PROGRAM_PATH

    # Given a program file whose member-day rule doubles points on Wednesdays.
    weekly_rule = DEFAULT_PROGRAM_PATH.read_text().replace("days_of_month = 8 }", 'weekdays = ["wed"] }')
    assert weekly_rule != DEFAULT_PROGRAM_PATH.read_text()
    program = parse_program_text(weekly_rule, "weekly.toml")
    await process(db, signup("W1"), program)

    # When the member-day job fires on Tuesday, on two Wednesdays (twice on the first) and on the 8th.
    tuesday, _ = await run_job(db, "member-day", at("2026-12-01T09:00:00+08:00"), program)
    await run_job(db, "member-day", at("2026-12-02T09:00:00+08:00"), program)
    await run_job(db, "member-day", at("2026-12-02T12:00:00+08:00"), program)
    eighth, _ = await run_job(db, "member-day", at("2026-12-08T09:00:00+08:00"), program)
    await run_job(db, "member-day", at("2026-12-09T09:00:00+08:00"), program)
    bought = await process(
        db,
        purchase("W1", "100.00", occurred_at="2026-12-09T10:00:00+08:00"),
        program,
        now=at("2026-12-09T10:00:00+08:00"),
    )

    # Then each Wednesday sends one notice with the rule's factor, as the monthly day does, and a
    # Wednesday purchase earns double.
    assert (tuesday.note, eighth.note) == ("not a member day", "not a member day")
    assert await rows(
        db,
        "SELECT member_id, params->>'multiplier', dedupe_key FROM notifications WHERE kind = 'member_day' "
        "ORDER BY notification_id",
    ) == [("W1", "2", "member_day:W1:2026-12-02"), ("W1", "2", "member_day:W1:2026-12-09")]
    assert bought.points == 200 + 100  # 100.00 x2 on member day, and the first-purchase bonus


def _review_program(grace_days: int = 0):
    schedule = DEFAULT_PROGRAM.schedule
    review = schedule.tier_review.model_copy(update={"enabled": True, "window_days": 365, "grace_days": grace_days})
    return DEFAULT_PROGRAM.model_copy(update={"schedule": schedule.model_copy(update={"tier_review": review})})


async def test_tier_review_recalculates_from_the_window_respects_floor_and_recent_points(db):
    program = _review_program()
    for member in ("OLD", "FLOOR", "ACTIVE"):
        await process(db, purchase(member, "6000.00", occurred_at="2025-02-01T10:00:00+08:00"), program)  # Gold
    await process(db, purchase("ACTIVE", "5000.00", occurred_at="2026-10-01T10:00:00+08:00"), program)
    async with db.begin() as conn:
        await conn.execute(text("UPDATE members SET tier_floor = 'Gold' WHERE member_id = 'FLOOR'"))

    await run_job(db, "tier-review", at("2027-01-01T02:00:00+08:00"), program)
    tiers_after = {m: (await view(db, m, program))["tier"] for m in ("OLD", "FLOOR", "ACTIVE")}
    await process(
        db,
        purchase("OLD", "100.00", occurred_at="2027-01-05T10:00:00+08:00"),
        program,
        now=at("2027-01-05T12:00:00+08:00"),
    )
    old = await view(db, "OLD", program)

    # Nothing in OLD's window: the level of 0 points, two tiers down at once.
    assert tiers_after == {"OLD": "Regular", "FLOOR": "Gold", "ACTIVE": "Gold"}
    # After the review only points from the window on count towards tiers: 0 + 100 (Regular x1.0).
    assert (old["tier"], old["next_tier"], old["points_to_next_tier"]) == ("Regular", "Silver", 1000 - 100)
    assert await rows(db, "SELECT member_id, from_tier, to_tier, reason FROM tier_changes WHERE reason = 'review'") == [
        ("OLD", "Gold", "Regular", "review")
    ]
    assert await rows(
        db, "SELECT params->>'from_tier', params->>'to_tier' FROM notifications WHERE kind = 'tier_downgraded'"
    ) == [("Gold", "Regular")]
    assert (await audit_all(db)).clean


async def test_tier_review_grace_period_keeps_a_recent_upgrade(db):
    program = _review_program(grace_days=3660)  # the longest grace a program may give: every upgrade here is recent
    await process(db, purchase("NEW", "6000.00", occurred_at="2025-02-01T10:00:00+08:00"), program)

    await run_job(db, "tier-review", at("2027-01-01T02:00:00+08:00"), program)

    assert (await view(db, "NEW", program))["tier"] == "Gold"
