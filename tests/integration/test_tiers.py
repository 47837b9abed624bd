"""Tiers as the program's [tiers] settings say, on real PostgreSQL: downgrade modes, the amount
basis, the tier review in event time and operator floors."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from sqlalchemy import text

from tests.factories import check_in, purchase, refund, with_tiers
from tests.integration.test_scheduler_jobs import at, rows, run_job
from worker.domain.engine import TierFloor
from worker.domain.errors import UnknownMember
from worker.domain.program import DEFAULT_PROGRAM
from worker.services import intake, members
from worker.services.audit import audit_all
from worker.services.floors import set_tier_floor

AUTOMATIC = with_tiers(DEFAULT_PROGRAM, downgrade="automatic")
REVIEW = with_tiers(DEFAULT_PROGRAM, downgrade="review")


async def process(db, raw, program):
    """Apply one event as the worker would, an hour after it occurred."""
    now = datetime.fromisoformat(raw["occurred_at"]) + timedelta(hours=1)
    outcome = await intake.process(db, program, raw, now=now, strict=True)
    assert outcome.status in ("applied", "deferred"), outcome
    return outcome


async def view(db, member_id, program, now=None):
    return await members.member_view(db, program, member_id, now=now)


async def changes(db, member_id):
    return await rows(
        db, "SELECT from_tier, to_tier, reason FROM tier_changes WHERE member_id = :m ORDER BY change_id", m=member_id
    )


async def floor(db, program, member_id, tier, ends_on=None, *, reason="retention offer", now, by="alice"):
    wanted = TierFloor(tier=tier, ends_on=ends_on) if tier is not None else None
    return await set_tier_floor(db, program, member_id, wanted, reason=reason, by=by, now=now)


# ---------------------------------------------------------------- downgrade "automatic"


async def test_automatic_a_refund_takes_the_member_back_down_at_once(db):
    # Given a purchase of 1000.00: 1000 points and the 100-point first-purchase bonus, Silver.
    await process(db, purchase("M1", "1000.00", order_id="o-1", occurred_at="2026-11-02T10:00:00+08:00"), AUTOMATIC)
    silver = await view(db, "M1", AUTOMATIC)

    # When the order is refunded in full: its 1000 points go, and its first-purchase bonus with them.
    await process(db, refund("M1", "o-1", "1000.00", occurred_at="2026-11-05T10:00:00+08:00"), AUTOMATIC)
    after = await view(db, "M1", AUTOMATIC)

    # Then the tier follows the qualifying points down, with a tier change saying why.
    assert (silver["tier"], silver["qualifying_points"]) == ("Silver", 1100)
    assert (after["tier"], after["qualifying_points"], after["next_tier"], after["points_to_next_tier"]) == (
        "Regular",
        0,
        "Silver",
        1000,
    )
    assert await changes(db, "M1") == [("Regular", "Silver", "upgrade"), ("Silver", "Regular", "downgrade")]
    assert await rows(db, "SELECT source, event_id, occurred_at FROM tier_changes WHERE reason = 'downgrade'") == [
        ("pos", (await rows(db, "SELECT event_id FROM refunds"))[0][0], at("2026-11-05T10:00:00+08:00"))
    ]
    assert await rows(
        db,
        "SELECT kind, params->>'from_tier', params->>'to_tier' FROM notifications "
        "WHERE kind LIKE 'tier_%' ORDER BY notification_id",
    ) == [("tier_upgraded", "Regular", "Silver"), ("tier_downgraded", "Silver", "Regular")]
    assert (await audit_all(db)).clean


async def test_never_keeps_the_tier_after_the_same_refund(db):
    await process(
        db, purchase("M1", "1000.00", order_id="o-1", occurred_at="2026-11-02T10:00:00+08:00"), DEFAULT_PROGRAM
    )
    await process(db, refund("M1", "o-1", "1000.00", occurred_at="2026-11-05T10:00:00+08:00"), DEFAULT_PROGRAM)

    assert (await view(db, "M1", DEFAULT_PROGRAM))["tier"] == "Silver"
    assert await changes(db, "M1") == [("Regular", "Silver", "upgrade")]


async def test_amount_basis_counts_money_spent_less_refunded(db):
    program = with_tiers(DEFAULT_PROGRAM, basis="amount", downgrade="automatic")
    # 900.00 earns 1000 points with the bonus: Silver by points, not by money.
    await process(db, purchase("M1", "900.00", order_id="o-1", occurred_at="2026-11-02T10:00:00+08:00"), program)
    first = await view(db, "M1", program)
    await process(db, purchase("M1", "200.00", order_id="o-2", occurred_at="2026-11-03T10:00:00+08:00"), program)
    second = await view(db, "M1", program)
    # A refund larger than what is left of the order counts only what is left (200.00).
    await process(db, refund("M1", "o-2", "150.00", occurred_at="2026-11-04T10:00:00+08:00"), program)
    await process(db, refund("M1", "o-2", "150.00", occurred_at="2026-11-04T11:00:00+08:00"), program)
    third = await view(db, "M1", program)

    assert (first["tier"], first["qualifying_amount"], first["amount_to_next_tier"], first["points_to_next_tier"]) == (
        "Regular",
        "900.00",
        "100.00",
        None,
    )
    assert (second["tier"], second["qualifying_amount"], second["next_tier"], second["amount_to_next_tier"]) == (
        "Silver",
        "1100.00",
        "Gold",
        "3900.00",
    )
    assert (third["tier"], third["qualifying_amount"], third["amount_to_next_tier"]) == ("Regular", "900.00", "100.00")
    assert await changes(db, "M1") == [("Regular", "Silver", "upgrade"), ("Silver", "Regular", "downgrade")]
    # No nudges on the amount basis: they count points.
    assert await rows(db, "SELECT count(*) FROM notifications WHERE kind = 'tier_nudge'") == [(0,)]
    assert (await audit_all(db)).clean


async def test_automatic_lets_the_tier_fall_at_the_first_event_after_the_floor_ends(db):
    await process(db, purchase("M1", "1000.00", occurred_at="2026-11-02T10:00:00+08:00"), AUTOMATIC)  # Silver
    raised = await floor(
        db, AUTOMATIC, "M1", "Gold", at("2026-12-31T00:00:00+08:00").date(), now=at("2026-11-24T12:00:00+08:00")
    )

    await process(db, check_in("M1", "2026-12-31T23:00:00+08:00"), AUTOMATIC)
    on_the_last_day = (await view(db, "M1", AUTOMATIC, now=at("2026-12-31T23:30:00+08:00")))["tier"]
    await process(db, check_in("M1", "2027-01-01T09:00:00+08:00"), AUTOMATIC)
    after = await view(db, "M1", AUTOMATIC, now=at("2027-01-01T10:00:00+08:00"))

    assert (raised.tier_before, raised.tier) == ("Silver", "Gold")
    assert on_the_last_day == "Gold"
    assert after["tier"] == "Silver"
    assert after["tier_floor"] == {
        "tier": "Gold",
        "ends_on": "2026-12-31",
        "in_force": False,
        "reason": "retention offer",
        "set_by": "alice",
        "set_at": raised.floor["set_at"],
    }
    assert await changes(db, "M1") == [
        ("Regular", "Silver", "upgrade"),
        ("Silver", "Gold", "operator floor: retention offer"),
        ("Gold", "Silver", "downgrade"),
    ]


# ---------------------------------------------------------------- downgrade "review"


async def test_review_drops_two_tiers_when_the_window_holds_little(db):
    # Diamond in 2025 (15000 + 100 bonus); in 2026 only 1000.00 x2.0 (Diamond) = 2000 points.
    await process(db, purchase("M1", "15000.00", occurred_at="2025-03-01T10:00:00+08:00"), REVIEW)
    await process(db, purchase("M1", "1000.00", occurred_at="2026-06-01T10:00:00+08:00"), REVIEW)
    # A refund between reviews does not lower a review-mode tier.
    await process(
        db,
        refund(
            "M1",
            (await rows(db, "SELECT order_id FROM orders ORDER BY purchased_at"))[0][0],
            "15000.00",
            occurred_at="2025-03-05T10:00:00+08:00",
        ),
        REVIEW,
    )
    before = await view(db, "M1", REVIEW)

    plan, _ = await run_job(db, "tier-review", at("2027-01-01T02:00:00+08:00"), REVIEW)
    reviewed = await view(db, "M1", REVIEW)
    # Afterwards upgrades count the window and what follows: 2000 + 1500 x1.2 (Silver) = 3800.
    await process(db, purchase("M1", "1500.00", occurred_at="2027-01-05T10:00:00+08:00"), REVIEW)
    later = await view(db, "M1", REVIEW)

    assert before["tier"] == "Diamond"
    assert plan.note is None
    assert (reviewed["tier"], reviewed["points_to_next_tier"]) == ("Silver", 5000 - 2000)
    assert (later["tier"], later["points_to_next_tier"]) == ("Silver", 5000 - 3800)
    assert await changes(db, "M1") == [("Regular", "Diamond", "upgrade"), ("Diamond", "Silver", "review")]
    assert await rows(db, "SELECT source, event_id, occurred_at FROM tier_changes WHERE reason = 'review'") == [
        ("scheduler", "tier-review@2027-01-01T02:00:00+08:00", at("2027-01-01T02:00:00+08:00"))
    ]
    assert (await audit_all(db)).clean


async def test_review_on_the_amount_basis_counts_the_window_purchases_less_refunds(db):
    program = with_tiers(DEFAULT_PROGRAM, basis="amount", downgrade="review")
    await process(db, purchase("M1", "6000.00", occurred_at="2025-03-01T10:00:00+08:00"), program)  # Gold
    await process(db, purchase("M1", "1500.00", order_id="o-2", occurred_at="2026-06-01T10:00:00+08:00"), program)
    await process(db, refund("M1", "o-2", "400.00", occurred_at="2026-06-10T10:00:00+08:00"), program)

    await run_job(db, "tier-review", at("2027-01-01T02:00:00+08:00"), program)
    reviewed = await view(db, "M1", program)

    # The window holds 1500.00 - 400.00: Silver, and 3900.00 to Gold from there.
    assert (reviewed["tier"], reviewed["qualifying_amount"], reviewed["amount_to_next_tier"]) == (
        "Silver",
        "7100.00",
        "3900.00",
    )
    assert await changes(db, "M1") == [("Regular", "Gold", "upgrade"), ("Gold", "Silver", "review")]


async def test_review_grace_counts_from_the_event_not_from_its_processing(db):
    program = with_tiers(DEFAULT_PROGRAM, downgrade="review", review_window_days=30, review_grace_days=90)
    # LATE's upgrade happened long ago but was processed recently; EARLY's the other way round.
    await process(db, purchase("LATE", "6000.00", occurred_at="2026-09-01T10:00:00+08:00"), program)
    await process(db, purchase("EARLY", "6000.00", occurred_at="2026-11-15T10:00:00+08:00"), program)
    async with db.begin() as conn:
        await conn.execute(
            text("UPDATE tier_changes SET changed_at = '2026-12-30T10:00:00+08:00' WHERE member_id = 'LATE'")
        )
        await conn.execute(
            text("UPDATE tier_changes SET changed_at = '2026-06-01T10:00:00+08:00' WHERE member_id = 'EARLY'")
        )

    # 1 January 2027: nothing in either 30-day window; grace is 90 days from the purchase.
    await run_job(db, "tier-review", at("2027-01-01T02:00:00+08:00"), program)

    assert (await view(db, "LATE", program))["tier"] == "Regular"
    assert (await view(db, "EARLY", program))["tier"] == "Gold"


async def test_review_firing_does_nothing_unless_downgrade_is_review(db):
    await process(db, purchase("M1", "6000.00", occurred_at="2025-03-01T10:00:00+08:00"), AUTOMATIC)

    plan, results = await run_job(db, "tier-review", at("2027-01-01T02:00:00+08:00"), AUTOMATIC)

    assert (plan.claimed, plan.note, results) == (True, "tier downgrade is 'automatic', not 'review'", [])
    assert (await view(db, "M1", AUTOMATIC))["tier"] == "Gold"


# ---------------------------------------------------------------- operator floors


async def test_floor_keeps_a_member_at_gold_through_a_review_and_lets_them_fall_after_it_ends(db):
    # Silver by a purchase in November 2026 (1100 points), then an operator's floor to January.
    await process(db, purchase("M1", "1000.00", occurred_at="2026-11-02T10:00:00+08:00"), REVIEW)
    raised = await floor(
        db,
        REVIEW,
        "M1",
        "Gold",
        at("2027-01-31T00:00:00+08:00").date(),
        reason="complaint handled",
        now=at("2026-11-24T12:00:00+08:00"),
    )
    shown = await view(db, "M1", REVIEW, now=at("2026-11-24T12:00:00+08:00"))

    await run_job(db, "tier-review", at("2027-01-01T02:00:00+08:00"), REVIEW)
    kept = await view(db, "M1", REVIEW, now=at("2027-01-01T03:00:00+08:00"))
    await run_job(db, "tier-review", at("2027-02-01T02:00:00+08:00"), REVIEW)
    fallen = await view(db, "M1", REVIEW, now=at("2027-02-01T03:00:00+08:00"))
    history = await members.tier_history(db, "M1")

    assert (raised.tier_before, raised.tier, raised.floor["set_by"]) == ("Silver", "Gold", "alice")
    assert (
        shown["tier"],
        shown["tier_floor"]["tier"],
        shown["tier_floor"]["ends_on"],
        shown["tier_floor"]["in_force"],
    ) == ("Gold", "Gold", "2027-01-31", True)
    assert kept["tier"] == "Gold"
    # The floor ended on 31 January: the window's 1100 points say Silver.
    assert (fallen["tier"], fallen["tier_floor"]["in_force"]) == ("Silver", False)
    assert [(h["kind"], h.get("from_tier"), h.get("to_tier") or h.get("tier"), h["reason"]) for h in history] == [
        ("change", "Regular", "Silver", "upgrade"),
        ("floor", None, "Gold", "complaint handled"),
        ("change", "Silver", "Gold", "operator floor: complaint handled"),
        ("change", "Gold", "Silver", "review"),
    ]
    assert history[2]["event"] == {"source": "operator", "event_id": f"floor:{raised.floor_id}"}
    assert await rows(db, "SELECT member_id, tier, ends_on, reason, set_by FROM tier_floors") == [
        ("M1", "Gold", at("2027-01-31T00:00:00+08:00").date(), "complaint handled", "alice")
    ]
    assert await rows(
        db, "SELECT kind, params->>'to_tier' FROM notifications WHERE kind LIKE 'tier_%' ORDER BY notification_id"
    ) == [("tier_upgraded", "Silver"), ("tier_upgraded", "Gold"), ("tier_downgraded", "Silver")]
    assert (await audit_all(db)).clean


async def test_floor_below_the_tier_changes_nothing_and_clearing_lets_the_next_review_decide(db):
    await process(db, purchase("M1", "6000.00", occurred_at="2025-03-01T10:00:00+08:00"), REVIEW)  # Gold
    kept = await floor(db, REVIEW, "M1", "Silver", now=at("2026-11-24T12:00:00+08:00"))
    await run_job(db, "tier-review", at("2027-01-01T02:00:00+08:00"), REVIEW)
    held = await view(db, "M1", REVIEW)
    cleared = await floor(db, REVIEW, "M1", None, reason="offer withdrawn", now=at("2027-01-02T12:00:00+08:00"))
    again = await floor(db, REVIEW, "M1", None, reason="offer withdrawn", now=at("2027-01-02T12:05:00+08:00"))
    still = await view(db, "M1", REVIEW)
    await run_job(db, "tier-review", at("2028-01-01T02:00:00+08:00"), REVIEW)

    assert (kept.tier_before, kept.tier) == ("Gold", "Gold")
    assert (held["tier"], held["tier_floor"]["ends_on"]) == ("Silver", None)  # down to the floor, not below
    assert (cleared.floor, cleared.tier, cleared.floor_id is not None) == (None, "Silver", True)
    assert (again.floor, again.floor_id) == (None, None)  # no floor to remove: nothing written
    assert (still["tier"], still["tier_floor"]) == ("Silver", None)
    assert (await view(db, "M1", REVIEW))["tier"] == "Regular"
    assert await rows(db, "SELECT tier, reason FROM tier_floors ORDER BY floor_id") == [
        ("Silver", "retention offer"),
        (None, "offer withdrawn"),
    ]


async def test_floor_for_an_unknown_member_writes_nothing(db):
    with pytest.raises(UnknownMember):
        await floor(db, REVIEW, "NOBODY", "Gold", now=at("2026-11-24T12:00:00+08:00"))

    assert await rows(db, "SELECT count(*) FROM members") == [(0,)]
    assert await rows(db, "SELECT count(*) FROM tier_floors") == [(0,)]
