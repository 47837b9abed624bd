"""Points holds on real PostgreSQL, next to the expiry job, redemptions and refunds: the audit stays clean."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from sqlalchemy import text

from tests.factories import purchase, refund
from tests.integration.test_scheduler_jobs import process, run_job
from worker.domain.program import DEFAULT_PROGRAM
from worker.services import holds
from worker.services.audit import audit_all
from worker.services.holds import HoldRefused
from worker.services.member_reads import member_state


def at(value: str) -> datetime:
    return datetime.fromisoformat(value)


async def place(db, hold_id, points, now, member_id="M1", order_id="o-pay", expires_in_s=900):
    return await holds.place_hold(
        db,
        DEFAULT_PROGRAM,
        hold_id=hold_id,
        member_id=member_id,
        points=points,
        order_id=order_id,
        expires_in_s=expires_in_s,
        key_name="till",
        now=now,
    )


async def state(db, now, member_id="M1"):
    return await member_state(db, DEFAULT_PROGRAM, member_id, now=now)


async def lots(db) -> list[tuple]:
    async with db.connect() as conn:
        return [tuple(r) for r in await conn.execute(text("SELECT lot_id, remaining FROM lots ORDER BY lot_id"))]


async def test_a_hold_takes_the_earliest_expiring_lot_and_void_gives_it_back(db):
    await process(db, purchase("M1", "100.00", occurred_at="2025-01-01T10:00:00+08:00"))  # lot 1: 200 (with bonus)
    await process(db, purchase("M1", "300.00", occurred_at="2025-06-01T10:00:00+08:00"))  # lot 2: 300
    now = at("2025-06-02T10:00:00+08:00")

    await place(db, "h-1", 250, now)
    held = await lots(db)
    voided = await holds.void(db, DEFAULT_PROGRAM, "h-1", now=now)
    after = await lots(db)

    assert held == [(1, 0), (2, 250)]
    assert voided["status"] == "voided"
    assert after == [(1, 200), (2, 300)]
    assert (await state(db, now))["available_points"] == 500
    assert (await audit_all(db)).clean


async def test_held_points_are_not_expired_and_a_lot_that_ran_out_meanwhile_expires_after_void(db):
    await process(db, purchase("M1", "100.00", occurred_at="2025-01-01T10:00:00+08:00"))  # 200, expires 2026-01-01
    before_expiry = at("2025-12-31T23:50:00+08:00")
    await place(db, "h-1", 150, before_expiry, expires_in_s=24 * 3600)

    await run_job(db, "expire-points", at("2026-01-02T00:05:00+08:00"))  # expires the 50 not held
    during = await state(db, at("2026-01-01T12:00:00+08:00"))
    assert (await audit_all(db)).clean
    await holds.void(db, DEFAULT_PROGRAM, "h-1", now=at("2026-01-01T12:00:00+08:00"))
    voided = await state(db, at("2026-01-01T12:00:00+08:00"))
    await run_job(db, "expire-points", at("2026-01-03T00:05:00+08:00"))
    expired = await state(db, at("2026-01-03T12:00:00+08:00"))

    assert (during["available_points"], during["held_points"]) == (0, 150)
    assert (voided["available_points"], voided["held_points"]) == (150, 0)
    assert expired["available_points"] == 0
    assert (await audit_all(db)).clean


async def test_redemptions_cannot_spend_held_points(db):
    from worker.services.redeem import redeem_now

    async with db.begin() as conn:
        await conn.execute(
            text("INSERT INTO rewards (reward_id, name, cost_points, min_tier) VALUES ('mug', 'Mug', 300, 'Regular')")
        )
    await process(db, purchase("M1", "300.00", occurred_at="2025-06-01T10:00:00+08:00"))  # 400
    now = at("2025-06-02T10:00:00+08:00")
    await place(db, "h-1", 200, now)

    outcome = await redeem_now(db, DEFAULT_PROGRAM, "M1", "mug", now=now, event_id="x-1")

    assert (outcome["status"], outcome["reason"]) == ("rejected", "not_enough_points")
    assert (await audit_all(db)).clean


async def test_an_expired_hold_is_released_by_the_next_read_and_cannot_be_captured(db):
    await process(db, purchase("M1", "300.00", occurred_at="2025-06-01T10:00:00+08:00"))  # 400
    now = at("2025-06-02T10:00:00+08:00")
    await place(db, "h-1", 400, now, expires_in_s=60)

    just_before = await state(db, now + timedelta(seconds=59))
    after = await state(db, now + timedelta(seconds=60))
    with pytest.raises(HoldRefused) as refused:
        await holds.capture(db, DEFAULT_PROGRAM, "h-1", now=now + timedelta(seconds=61))

    assert (just_before["available_points"], just_before["held_points"]) == (0, 400)
    assert (after["available_points"], after["held_points"]) == (400, 0)
    assert (refused.value.status, refused.value.code) == (409, "hold_expired")
    assert (await audit_all(db)).clean


async def test_partial_refunds_restore_the_paid_points_in_proportion_and_exactly_once(db):
    await process(db, purchase("M1", "900.00", order_id="o-1", occurred_at="2025-06-01T10:00:00+08:00"))  # 1000
    now = at("2025-06-02T10:00:00+08:00")
    await place(db, "h-1", 333, now, order_id="o-pay")
    await holds.capture(db, DEFAULT_PROGRAM, "h-1", now=now)
    # Silver now (1000 qualifying): the cash part earns 30 x 1.2 = 36.
    await process(db, purchase("M1", "30.00", order_id="o-pay", occurred_at="2025-06-02T10:00:00+08:00"))

    await process(db, refund("M1", "o-pay", "10.00", occurred_at="2025-06-03T10:00:00+08:00"))
    first = await state(db, now + timedelta(days=1))
    again = await state(db, now + timedelta(days=1))
    await process(db, refund("M1", "o-pay", "20.00", occurred_at="2025-06-04T10:00:00+08:00"))
    settled = await holds.sweep(db, DEFAULT_PROGRAM, now=now + timedelta(days=2))
    whole = await state(db, now + timedelta(days=2))

    # 1000 - 333 + 36; a third refunded: -12 earned, +floor(333/3) = 111 paid points back.
    assert first["available_points"] == 703 - 12 + 111
    assert again["available_points"] == first["available_points"]
    assert settled == 1
    # All refunded: the 36 earned are gone and all 333 paid points are back.
    assert whole["available_points"] == 1000
    assert (await audit_all(db)).clean
