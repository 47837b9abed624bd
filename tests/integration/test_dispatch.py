"""The outbox dispatcher against real PostgreSQL and a real local HTTP receiver."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import text

from tests.conftest import NOW
from tests.factories import purchase, refund, signup
from tests.receiver import Receiver
from worker.config import Settings
from worker.domain.messages import load_catalog
from worker.domain.program import DEFAULT_PROGRAM, Notifications, Program, QuietHours
from worker.domain.signing import verify
from worker.outbox import dispatch
from worker.outbox.channels import DELIVERY_ID_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, LogChannel, open_channel
from worker.services import intake

SECRET = "test-shared-secret"
CATALOG = load_catalog()
SHANGHAI = ZoneInfo("Asia/Shanghai")


def webhook_program(**notifications) -> Program:
    return Program(notifications=Notifications(channel="webhook", **notifications))


def hook_settings(receiver: Receiver) -> Settings:
    return Settings(webhook_url=receiver.url, webhook_secret=SECRET)


async def add_member(db, member_id: str, locale: str | None = None) -> None:
    async with db.begin() as conn:
        await conn.execute(
            text("INSERT INTO members (member_id, tier, locale) VALUES (:m, 'Regular', :l) ON CONFLICT DO NOTHING"),
            {"m": member_id, "l": locale},
        )


# The built-in program's tiers: a nudge toward one is true for a member of the tier below it.
THRESHOLDS = {"Regular": 0, "Silver": 1000, "Gold": 5000, "Diamond": 15000}


async def queue(db, member_id: str, kind: str, locale: str | None = None, **params) -> int:
    await add_member(db, member_id, locale)
    async with db.begin() as conn:
        if kind == "tier_nudge" and params.get("tier") in THRESHOLDS and "points_away" in params:
            # The member the nudge was worked out for: it is re-checked against their points at dispatch.
            names = list(THRESHOLDS)
            await conn.execute(
                text("UPDATE members SET tier = :tier, qualifying_points = :points WHERE member_id = :m"),
                {
                    "m": member_id,
                    "tier": names[names.index(params["tier"]) - 1],
                    "points": THRESHOLDS[params["tier"]] - params["points_away"],
                },
            )
        return (
            await conn.execute(
                text(
                    "INSERT INTO notifications (member_id, kind, params) VALUES (:m, :k, CAST(:p AS jsonb)) RETURNING notification_id"
                ),
                {"m": member_id, "k": kind, "p": json.dumps(params)},
            )
        ).scalar_one()


async def outbox(db) -> dict[int, dict]:
    async with db.connect() as conn:
        rows = (
            await conn.execute(
                text("SELECT *, delivery_id::text AS delivery FROM notifications ORDER BY notification_id")
            )
        ).mappings()
        return {r["notification_id"]: dict(r) for r in rows}


async def once(db, program, channel, at: datetime, **kw) -> dispatch.DispatchReport:
    return await dispatch.dispatch_once(db, program, channel, clock=lambda: at, catalog=CATALOG, **kw)


async def test_signature_verifies_with_the_shared_secret_and_not_another(db):
    nid = await queue(db, "M1", "tier_nudge", "zh-Hans", points_away=400, tier="Gold")
    program = webhook_program()
    with Receiver() as receiver:
        async with open_channel(hook_settings(receiver), program) as channel:
            report = await once(db, program, channel, NOW)

    assert (report.claimed, report.sent) == (1, 1)
    [request] = receiver.requests
    stamp, signature = request.headers[TIMESTAMP_HEADER], request.headers[SIGNATURE_HEADER]
    assert verify(SECRET, stamp, request.body, signature, now_s=time.time())
    assert not verify("another-secret", stamp, request.body, signature, now_s=time.time())
    body = json.loads(request.body)
    row = (await outbox(db))[nid]
    assert body["text"] == "您距离金卡仅差 400 积分。"
    assert (body["kind"], body["locale"], body["member_id"], body["attempt"]) == ("tier_nudge", "zh-Hans", "M1", 1)
    assert request.headers[DELIVERY_ID_HEADER] == body["delivery_id"] == row["delivery"]
    assert (row["status"], row["attempts"], row["channel"], row["locale"], row["text"]) == (
        "sent",
        1,
        "webhook",
        "zh-Hans",
        "您距离金卡仅差 400 积分。",
    )
    assert row["sent_at"] == NOW and row["last_error"] is None


async def test_receiver_failing_twice_gets_three_deliveries_with_one_delivery_id(db):
    nid = await queue(db, "M1", "redemption_confirmed", reward_name="Mug", quantity=1, points=500, available_points=20)
    program = webhook_program()
    with Receiver(lambda request, number: 500 if number <= 2 else 200) as receiver:
        async with open_channel(hook_settings(receiver), program) as channel:
            first = await once(db, program, channel, NOW)
            after_first = (await outbox(db))[nid]
            too_early = await once(db, program, channel, NOW + timedelta(seconds=29))
            second = await once(db, program, channel, NOW + timedelta(seconds=30))
            after_second = (await outbox(db))[nid]
            third = await once(db, program, channel, NOW + timedelta(seconds=90))

    assert (first.failed, too_early.claimed, second.failed, third.sent) == (1, 0, 1, 1)
    assert (after_first["status"], after_first["attempts"], after_first["last_error"]) == (
        "failed",
        1,
        "webhook answered HTTP 500: boom",
    )
    assert after_first["next_attempt_at"] == NOW + timedelta(seconds=30)
    assert (after_second["status"], after_second["attempts"]) == ("failed", 2)
    assert after_second["next_attempt_at"] == NOW + timedelta(seconds=30 + 60)
    assert len(receiver.requests) == 3
    ids = {r.headers[DELIVERY_ID_HEADER] for r in receiver.requests}
    row = (await outbox(db))[nid]
    assert ids == {row["delivery"]}
    assert [json.loads(r.body)["attempt"] for r in receiver.requests] == [1, 2, 3]
    assert (row["status"], row["attempts"], row["last_error"], row["next_attempt_at"]) == ("sent", 3, None, None)


async def test_receiver_that_never_answers_times_out_without_blocking_the_others(db):
    slow = await queue(db, "SLOW", "points_expired", points=10)
    fast = [await queue(db, f"F{i}", "points_expired", points=i) for i in range(5)]
    program = webhook_program(webhook_timeout_ms=2000)
    hang = lambda request, number: None if json.loads(request.body)["member_id"] == "SLOW" else 200  # noqa: E731
    with Receiver(hang) as receiver:
        async with open_channel(hook_settings(receiver), program) as channel:
            started = time.monotonic()
            run = asyncio.create_task(once(db, program, channel, NOW))
            deadline = started + 5
            while len(receiver.requests) < 6 and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            # The claim is committed before any request is made: another connection sees
            # the slow row in flight, under a lease, while its request hangs.
            during = (await outbox(db))[slow]
            report = await run
            elapsed = time.monotonic() - started

    assert len(receiver.requests) == 6
    assert (during["status"], during["attempts"]) == ("sending", 1)
    assert during["lease_until"] == NOW + timedelta(seconds=dispatch.lease_s(program, dispatch.BATCH_SIZE))
    fast_arrivals = [r.at - started for r in receiver.requests if json.loads(r.body)["member_id"] != "SLOW"]
    # The slow row is first in the batch; had it held the others up, they would arrive after its timeout.
    assert max(fast_arrivals) < 2.0, fast_arrivals
    assert 2.0 <= elapsed < 5.0
    rows = await outbox(db)
    assert (rows[slow]["status"], rows[slow]["last_error"]) == (
        "failed",
        "timeout: no answer from the webhook within 2 s",
    )
    assert [rows[n]["status"] for n in fast] == ["sent"] * 5
    assert (report.sent, report.failed) == (5, 1)


async def test_two_dispatchers_at_once_never_send_a_row_twice(db):
    ids = [await queue(db, f"M{i % 30}", "points_expired", points=i) for i in range(150)]
    program = webhook_program()

    def respond(request, number):
        time.sleep(0.005)
        return 200

    with Receiver(respond) as receiver:
        settings = hook_settings(receiver)
        async with open_channel(settings, program) as one, open_channel(settings, program) as two:
            reports = await asyncio.gather(
                dispatch.dispatch(db, program, one, clock=lambda: NOW, batch_size=10, budget_s=60, catalog=CATALOG),
                dispatch.dispatch(db, program, two, clock=lambda: NOW, batch_size=10, budget_s=60, catalog=CATALOG),
            )

    counts = Counter(r.headers[DELIVERY_ID_HEADER] for r in receiver.requests)
    assert len(counts) == 150 and set(counts.values()) == {1}
    assert sum(r.sent for r in reports) == 150 and all(r.sent > 0 for r in reports)
    rows = await outbox(db)
    assert {(rows[n]["status"], rows[n]["attempts"]) for n in ids} == {("sent", 1)}


async def test_quiet_hours_hold_rows_until_they_end(db):
    program = Program(notifications=Notifications(quiet_hours=QuietHours(start="22:00", end="08:00")))
    nudge = await queue(db, "M1", "tier_nudge", points_away=400, tier="Gold")
    redeemed = await queue(db, "M1", "redemption_rejected", reward_name="Mug", reason="out of stock")
    late = datetime(2026, 11, 24, 23, 0, tzinfo=SHANGHAI)
    morning = datetime(2026, 11, 25, 8, 0, tzinfo=SHANGHAI)

    held = await once(db, program, LogChannel(), late)
    rows = await outbox(db)
    before_end = await once(db, program, LogChannel(), morning - timedelta(minutes=1))
    after_end = await once(db, program, LogChannel(), morning)

    assert (held.claimed, held.held, held.sent) == (2, 2, 0)
    assert {(rows[n]["status"], rows[n]["next_attempt_at"], rows[n]["attempts"]) for n in (nudge, redeemed)} == {
        ("pending", morning, 0)
    }
    assert before_end.claimed == 0
    assert after_end.sent == 2
    rows = await outbox(db)
    assert [rows[n]["status"] for n in (nudge, redeemed)] == ["sent", "sent"]
    assert rows[nudge]["sent_at"] == morning


async def test_daily_cap_suppresses_extra_promotional_messages_only(db):
    program = Program(notifications=Notifications(daily_promotional_cap=2))
    day = datetime(2026, 11, 24, 10, 0, tzinfo=SHANGHAI)
    promos = [
        await queue(db, "M1", "tier_nudge", points_away=400, tier="Gold"),
        await queue(db, "M1", "birthday", points=200),
        await queue(db, "M1", "member_day", multiplier="2"),
    ]
    receipt = await queue(
        db, "M1", "redemption_confirmed", reward_name="Mug", quantity=1, points=500, available_points=0
    )
    other = await queue(db, "M2", "member_day", multiplier="2")

    first = await once(db, program, LogChannel(), day)
    later_today = await queue(db, "M1", "points_expiring", points=50, expires_on="2026-12-31")
    second = await once(db, program, LogChannel(), day + timedelta(hours=13))  # 23:00 local, same day
    tomorrow = await queue(db, "M1", "member_day", multiplier="2")
    third = await once(db, program, LogChannel(), day + timedelta(hours=14))  # 00:00 local, next day

    rows = await outbox(db)
    assert [rows[n]["status"] for n in promos] == ["sent", "sent", "suppressed"]
    assert rows[promos[2]]["last_error"] == "daily cap: 2 promotional messages already sent today"
    assert (rows[receipt]["status"], rows[other]["status"]) == ("sent", "sent")
    assert (rows[later_today]["status"], rows[tomorrow]["status"]) == ("suppressed", "sent")
    assert (first.sent, first.suppressed, second.suppressed, third.sent) == (4, 1, 1, 1)


async def test_ledger_notifications_render_in_the_members_language(db):
    for event in (signup("TW1", locale="zh-Hant"), purchase("TW1", "4450.00")):
        assert (await intake.process(db, DEFAULT_PROGRAM, event, now=NOW, strict=True)).status == "applied"

    report = await once(db, DEFAULT_PROGRAM, LogChannel(), NOW)

    rows = await outbox(db)
    texts = {r["kind"]: r["text"] for r in rows.values() if r["kind"] != "points_earned"}
    assert report.sent == 4
    assert texts == {"tier_upgraded": "恭喜！您已升級為銀卡會員。", "tier_nudge": "您距離金卡僅差 400 點積分。"}
    assert {r["status"] for r in rows.values()} == {"sent"}


async def test_dead_after_max_attempts_then_retry_sends_with_the_same_delivery_id(db):
    nid = await queue(db, "M1", "points_expired", points=10)
    program = webhook_program(max_attempts=2)
    with Receiver(lambda request, number: 503 if number <= 2 else 200) as receiver:
        async with open_channel(hook_settings(receiver), program) as channel:
            await once(db, program, channel, NOW)
            dead = await once(db, program, channel, NOW + timedelta(seconds=30))
            row = (await outbox(db))[nid]
            nothing_due = await once(db, program, channel, NOW + timedelta(days=1))
            assert await dispatch.retry(db, nid) == [nid]
            sent = await once(db, program, channel, NOW + timedelta(days=1))

    assert (dead.dead, row["status"], row["last_error"], nothing_due.claimed) == (
        1,
        "dead",
        "webhook answered HTTP 503: boom",
        0,
    )
    assert sent.sent == 1 and (await outbox(db))[nid]["status"] == "sent"
    assert len({r.headers[DELIVERY_ID_HEADER] for r in receiver.requests}) == 1


async def test_bad_params_make_the_row_dead_with_the_reason(db):
    nid = await queue(db, "M1", "tier_nudge", points_away=400)
    report = await once(db, DEFAULT_PROGRAM, LogChannel(), NOW)
    row = (await outbox(db))[nid]
    assert (report.dead, row["status"], row["last_error"]) == (
        1,
        "dead",
        "render: tier_nudge: parameter 'tier' is missing",
    )


async def test_row_left_sending_by_a_dead_dispatcher_is_claimed_again_after_its_lease(db):
    nid = await queue(db, "M1", "points_expired", points=10)
    async with db.begin() as conn:
        await conn.execute(
            text("UPDATE notifications SET status = 'sending', attempts = 1, released_at = :t, lease_until = :t"),
            {"t": NOW + timedelta(seconds=60)},
        )
    before = await once(db, DEFAULT_PROGRAM, LogChannel(), NOW)
    after = await once(db, DEFAULT_PROGRAM, LogChannel(), NOW + timedelta(seconds=60))
    row = (await outbox(db))[nid]
    assert (before.claimed, after.sent, row["status"], row["attempts"]) == (0, 1, "sent", 2)


async def test_dispatch_actor_delivers_through_a_worker(db, settings):
    from dataclasses import replace

    from worker.broker import build_broker
    from worker.drain import drain

    nid = await queue(db, "M1", "birthday", "zh-Hant", points=200)
    program = webhook_program()
    with Receiver() as receiver:
        broker = build_broker(
            replace(settings, webhook_url=receiver.url, webhook_secret=SECRET), stub=True, program=program
        )
        broker.get_actor("dispatch_notifications").send()
        await asyncio.to_thread(drain, broker, timeout_s=30, threads=1)

    [request] = receiver.requests
    assert json.loads(request.body)["text"] == "生日快樂！我們已為您贈送 200 點積分。"
    row = (await outbox(db))[nid]
    assert (row["status"], row["channel"]) == ("sent", "webhook")


async def test_stale_promotional_notifications_are_dropped_not_sent(db):
    """A nudge toward a tier the member already has, a member-day notice after its day."""
    day = datetime(2026, 11, 9, 10, 0, tzinfo=SHANGHAI)
    passed = await queue(db, "M1", "tier_nudge", points_away=400, tier="Silver")
    ahead = await queue(db, "M1", "tier_nudge", points_away=400, tier="Gold")
    async with db.begin() as conn:
        await conn.execute(text("UPDATE members SET tier = 'Silver' WHERE member_id = 'M1'"))
        over, today = [
            (
                await conn.execute(
                    text(
                        "INSERT INTO notifications (member_id, kind, params, dedupe_key) "
                        "VALUES ('M1', 'member_day', '{\"multiplier\": \"2\"}', :key) RETURNING notification_id"
                    ),
                    {"key": f"member_day:M1:{d}"},
                )
            ).scalar_one()
            for d in ("2026-11-08", "2026-11-09")
        ]

    report = await once(db, DEFAULT_PROGRAM, LogChannel(), day)

    rows = await outbox(db)
    assert [(rows[n]["status"], rows[n]["last_error"]) for n in (passed, ahead, over, today)] == [
        ("suppressed", "stale: member already reached Silver"),
        ("sent", None),
        ("suppressed", "stale: member day 2026-11-08 is over"),
        ("sent", None),
    ]
    assert (report.sent, report.suppressed) == (2, 2)


# ---------------------------------------------------------------- tier nudges through the ledger

NUDGE_AT = "2026-11-02T10:00:00+08:00"


async def apply(db, *events) -> None:
    for event in events:
        assert (await intake.process(db, DEFAULT_PROGRAM, event, now=NOW, strict=True)).status == "applied"


async def nudges(db, member_id: str) -> list[tuple[str, str | None, int, str | None]]:
    """(status, text, points_away, last_error) of the member's tier nudges, oldest first."""
    rows = await outbox(db)
    return [
        (r["status"], r["text"], r["params"]["points_away"], r["last_error"])
        for r in rows.values()
        if r["member_id"] == member_id and r["kind"] == "tier_nudge"
    ]


async def four_hundred_from_gold(db, member_id: str) -> None:
    """Signup 50, a first purchase of 4450.00 (4450 + 100): Silver, 400 points below Gold."""
    await apply(db, signup(member_id), purchase(member_id, "4450.00", order_id=f"{member_id}-o1"))


async def test_a_nudge_says_how_far_the_member_is_when_it_goes_out_not_when_queued(db):
    # Given a nudge queued at 400 points from Gold, and a purchase of 250.00 at Silver (x1.2 =
    # 300 points) before the dispatcher runs.
    await four_hundred_from_gold(db, "N1")
    await apply(db, purchase("N1", "250.00", occurred_at="2026-11-03T10:00:00+08:00"))

    report = await once(db, DEFAULT_PROGRAM, LogChannel(), NOW)

    # Then the one nudge delivered says 100, as its stored text and parameters do.
    assert await nudges(db, "N1") == [("sent", "You're only 100 points away from Gold.", 100, None)]
    assert report.suppressed == 0


async def test_a_member_who_crossed_into_the_tier_before_dispatch_gets_no_nudge(db):
    # Given a nudge queued at 400 from Gold, then 500.00 at Silver (600 points): Gold.
    await four_hundred_from_gold(db, "N2")
    await apply(db, purchase("N2", "500.00", occurred_at="2026-11-03T10:00:00+08:00"))

    report = await once(db, DEFAULT_PROGRAM, LogChannel(), NOW)

    # Then the nudge is suppressed with the reason, and the upgrade is what the member hears.
    assert await nudges(db, "N2") == [("suppressed", None, 400, "stale: member already reached Gold")]
    rows = await outbox(db)
    assert sorted(r["text"] for r in rows.values() if r["member_id"] == "N2" and r["kind"] == "tier_upgraded") == [
        "Congratulations! You are now a Gold member.",
        "Congratulations! You are now a Silver member.",
    ]
    assert report.suppressed == 1


async def test_a_member_who_fell_back_before_dispatch_gets_no_nudge_until_the_next_approach(db):
    # Given a nudge queued at 400 from Gold, then a refund of 445.00 (445 points back): 845 away.
    await four_hundred_from_gold(db, "N3")
    await apply(db, refund("N3", "N3-o1", "445.00", occurred_at="2026-11-03T10:00:00+08:00"))

    fell_back = await once(db, DEFAULT_PROGRAM, LogChannel(), NOW)
    # When the member comes close again: 300.00 at Silver (360 points), 485 away.
    await apply(db, purchase("N3", "300.00", occurred_at="2026-11-04T10:00:00+08:00"))
    came_back = await once(db, DEFAULT_PROGRAM, LogChannel(), NOW + timedelta(hours=1))

    # Then the first nudge was not sent, and the new approach has its own.
    assert await nudges(db, "N3") == [
        ("suppressed", None, 400, "stale: 845 points away from Gold, outside the nudge window of 500"),
        ("sent", "You're only 485 points away from Gold.", 485, None),
    ]
    assert (fell_back.suppressed, came_back.sent) == (1, 2)  # the nudge and the purchase's points_earned


async def test_a_second_approach_after_falling_back_gets_a_second_nudge(db):
    # Given a nudge sent at 400 from Gold.
    await four_hundred_from_gold(db, "N4")
    await once(db, DEFAULT_PROGRAM, LogChannel(), NOW)
    # When the member falls back beyond the window and comes close again.
    await apply(
        db,
        refund("N4", "N4-o1", "445.00", occurred_at="2026-11-03T10:00:00+08:00"),
        purchase("N4", "300.00", occurred_at="2026-11-04T10:00:00+08:00"),
    )
    # And the dispatcher runs after the quiet period of 7 days.
    await once(db, DEFAULT_PROGRAM, LogChannel(), NOW + timedelta(days=7))

    # Then both approaches were nudged, each with the distance of its moment.
    assert await nudges(db, "N4") == [
        ("sent", "You're only 400 points away from Gold.", 400, None),
        ("sent", "You're only 485 points away from Gold.", 485, None),
    ]


async def test_two_nudges_within_the_quiet_period_send_one(db):
    # Given a nudge sent at 400 from Gold, and a second approach the next day.
    await four_hundred_from_gold(db, "N5")
    await once(db, DEFAULT_PROGRAM, LogChannel(), NOW)
    await apply(
        db,
        refund("N5", "N5-o1", "445.00", occurred_at="2026-11-03T10:00:00+08:00"),
        purchase("N5", "300.00", occurred_at="2026-11-04T10:00:00+08:00"),
    )

    # When the dispatcher runs one second short of 7 days after the first nudge went out.
    report = await once(db, DEFAULT_PROGRAM, LogChannel(), NOW + timedelta(days=7, seconds=-1))

    # Then the second is suppressed, naming the quiet period.
    assert await nudges(db, "N5") == [
        ("sent", "You're only 400 points away from Gold.", 400, None),
        (
            "suppressed",
            None,
            485,
            f"quiet period: a tier nudge went out at {NOW.isoformat()}, within the last 7 days",
        ),
    ]
    assert report.suppressed == 1


async def test_two_nudges_due_in_one_batch_send_one(db):
    # Given two approaches before any dispatch: the first nudge fell away, so a second is queued.
    await four_hundred_from_gold(db, "N6")
    await apply(
        db,
        refund("N6", "N6-o1", "445.00", occurred_at="2026-11-03T10:00:00+08:00"),
        purchase("N6", "300.00", occurred_at="2026-11-04T10:00:00+08:00"),
        purchase("N6", "50.00", occurred_at="2026-11-05T10:00:00+08:00"),
    )

    # When one dispatcher run takes both (the member is now 425 away).
    report = await once(db, DEFAULT_PROGRAM, LogChannel(), NOW)

    # Then the older one, true again, goes out with today's distance, and the other is held back.
    [first, second] = await nudges(db, "N6")
    assert first == ("sent", "You're only 425 points away from Gold.", 425, None)
    assert second[:3] == ("suppressed", None, 425)
    assert second[3] == f"quiet period: a tier nudge went out at {NOW.isoformat()}, within the last 7 days"
    assert report.suppressed == 1
