"""The report's points flow on a ledger written by the real services: earnings (pending and
released), a late purchase and its re-evaluation, a refund, mall redemptions and a
cancellation, holds captured, voided, expired and open, and points expiry. Every figure is
computed by hand below, for the whole range and for windows that cut through the middle."""

from __future__ import annotations

import json
import subprocess
from datetime import date, datetime

from sqlalchemy import text

from tests.factories import event, purchase, refund
from tests.integration.test_report import LOYALTY
from tests.integration.test_scheduler_jobs import process, run_job
from worker.domain.mall import parse_catalog
from worker.domain.program import DEFAULT_PROGRAM, Pending
from worker.services import holds, mall
from worker.services.audit import audit_all
from worker.services.report import Reconciliation, build_report
from worker.web.report_html import text_report

# Purchases stay pending for a week: the flow counts points earned whether pending or not.
P = DEFAULT_PROGRAM.model_copy(update={"pending": Pending(days=7)})


def at(value: str) -> datetime:
    return datetime.fromisoformat(value + "+08:00")


async def hold(db, hold_id: str, points: int, now: str, expires_in_s: int = 3600) -> None:
    await holds.place_hold(
        db,
        P,
        hold_id=hold_id,
        member_id="H",
        points=points,
        order_id=f"o-{hold_id}",
        expires_in_s=expires_in_s,
        key_name="till",
        now=at(now),
    )


async def ledger(db) -> None:
    """The scenario; each line says what it books (all times Asia/Shanghai)."""
    await mall.load_rewards(
        db,
        parse_catalog({"reward": [{"reward_id": "mug", "name": "Mug", "cost_points": 200, "min_tier": "Regular"}]}, P),
    )
    # E: 200 + 100 first purchase, pending to 2025-10-08; expires 2026-10-01.
    await process(db, purchase("E", "200.00", order_id="o-E1", occurred_at="2025-10-01T10:00:00+08:00"), P)
    # H: 1000 + 100 first purchase, pending to 2026-10-27 (Silver from here on).
    await process(db, purchase("H", "1000.00", order_id="o-H1", occurred_at="2026-10-20T10:00:00+08:00"), P)
    await run_job(db, "release-pending", at("2026-10-28T00:05:00"), P)  # E 300, H 1100 released

    # A: 800 + 100 first purchase (pending), then 300 on 11-09 (Regular at 900: no multiplier; not
    # the 8th, the member day) -> Silver.
    await process(db, purchase("A", "800.00", order_id="o-A1", occurred_at="2026-11-06T10:00:00+08:00"), P)
    await process(db, purchase("A", "300.00", order_id="o-A2", occurred_at="2026-11-09T10:00:00+08:00"), P)
    # A late purchase before both: applied as Silver, 100 x 1.2 = 120 (pending); the
    # re-evaluation makes it the first purchase (200: +80), takes o-A1's bonus back (-100) and
    # reaches Silver before o-A2 (300 x 1.2 = 360: +60). Corrections are dated at the event
    # they correct.
    await process(db, purchase("A", "100.00", order_id="o-A0", occurred_at="2026-11-03T10:00:00+08:00"), P)

    await hold(db, "pre", 50, "2026-11-05T12:00:00", expires_in_s=86400)  # open across the window's start
    await holds.capture(db, P, "pre", now=at("2026-11-06T11:00:00"))
    await run_job(db, "expire-points", at("2026-11-07T00:10:00"), P)  # E's 300
    await hold(db, "cap", 300, "2026-11-07T12:00:00")
    await holds.capture(db, P, "cap", now=at("2026-11-07T12:05:00"))
    await hold(db, "void", 200, "2026-11-09T12:00:00")
    await holds.void(db, P, "void", now=at("2026-11-09T12:01:00"))
    await hold(db, "exp", 150, "2026-11-10T12:00:00", expires_in_s=60)
    assert await holds.settle_member(db, P, "H", now=at("2026-11-10T12:30:00"))  # hold_expired
    # Refund a third of o-A2: floor(360 x 100 / 300) = 120 taken back.
    await process(db, refund("A", "o-A2", "100.00", occurred_at="2026-11-12T10:00:00+08:00"), P)
    await run_job(db, "release-pending", at("2026-11-14T00:05:00"), P)  # A's 120 and 800; o-A2's 180 stays pending
    for event_id, minute in (("r-1", "00"), ("r-2", "30")):
        redemption = event("redemption", "A", f"2026-11-14T10:{minute}:00+08:00", source="app", reward_id="mug")
        await process(db, {**redemption, "event_id": event_id}, P)
    await hold(db, "open", 100, "2026-11-15T12:00:00")  # still open at the end
    cancel = event("redemption_cancel", "A", "2026-11-16T10:00:00+08:00", source="app", redemption_event_id="r-2")
    await process(db, cancel, P)
    assert (await audit_all(db)).clean


def figures(report) -> dict:
    return report.reconciliation.as_json()


async def test_the_flow_reconciles_for_the_whole_range_and_for_windows_through_it(db):
    await ledger(db)

    whole = await build_report(db, P, None, None)
    window = await build_report(db, P, date(2026, 11, 6), date(2026, 11, 15))
    after = await build_report(db, P, date(2026, 11, 16), date(2026, 11, 30))

    # H 650 available; A 860 available and 180 pending; E nothing left.
    assert (whole.available_points, whole.pending_points) == (650 + 860, 180)
    assert figures(whole) == {
        "opening": 0,
        "earned": 300 + 1100 + 900 + 300 + 120,
        "corrections": 80 - 100 + 60,
        "reversed": 120,
        # Holds captured (50 + 300) and the mall (200 + 200 - 200 cancelled).
        "redeemed": 350 + 200,
        "held": 100,
        "expired": 300,
        "adjusted": 0,
        "closing": 1690,
        "balanced": True,
    }
    assert (whole.earned, whole.reversed, whole.redeemed, whole.expired) == (2720, 120, 550, 300)
    assert whole.earn_by == [("pos", "purchase", 2720)]
    assert figures(window) == {
        # Before 11-06: E 300 (not expired yet), H 1100 - 50 held, A 120 + 80.
        "opening": 300 + 1050 + 200,
        "earned": 900 + 300,
        "corrections": -100 + 60,
        "reversed": 120,
        "redeemed": 50 + 300 + 400,
        # Open holds: 50 at the start, 100 at the end.
        "held": 50,
        "expired": 300,
        "adjusted": 0,
        "closing": 1690 - 200,
        "balanced": True,
    }
    assert figures(after) == {
        "opening": 1490,
        "earned": 0,
        "corrections": 0,
        "reversed": 0,
        "redeemed": -200,
        "held": 0,
        "expired": 0,
        "adjusted": 0,
        "closing": 1690,
        "balanced": True,
    }


async def test_points_given_back_for_a_refunded_paid_order_are_not_redeemed(db):
    await process(db, purchase("M", "900.00", order_id="o-1", occurred_at="2025-06-01T10:00:00+08:00"))  # 1000
    await holds.place_hold(
        db, DEFAULT_PROGRAM, hold_id="pay", member_id="M", points=333, order_id="o-pay",
        expires_in_s=900, key_name="till", now=at("2025-06-02T10:00:00"),
    )  # fmt: skip
    await holds.capture(db, DEFAULT_PROGRAM, "pay", now=at("2025-06-02T10:01:00"))
    # The cash part earns 30 x 1.2 (Silver) = 36; the whole order is refunded the next day.
    await process(db, purchase("M", "30.00", order_id="o-pay", occurred_at="2025-06-02T10:00:00+08:00"))
    await process(db, refund("M", "o-pay", "30.00", occurred_at="2025-06-03T10:00:00+08:00"))
    assert await holds.sweep(db, DEFAULT_PROGRAM, now=at("2025-06-04T10:00:00")) == 1  # the 333 paid points back

    capture_day = await build_report(db, DEFAULT_PROGRAM, date(2025, 6, 2), date(2025, 6, 2))
    whole = await build_report(db, DEFAULT_PROGRAM, None, None)

    assert (figures(capture_day)["redeemed"], figures(capture_day)["held"], figures(capture_day)["closing"]) == (
        333,
        0,
        1000 - 333 + 36,
    )
    assert figures(whole) == {
        "opening": 0,
        "earned": 1036,
        "corrections": 0,
        "reversed": 36,
        "redeemed": 0,
        "held": 0,
        "expired": 0,
        "adjusted": 0,
        "closing": 1000,
        "balanced": True,
    }


async def test_a_merge_nets_to_zero_across_members(db):
    await process(db, purchase("S", "100.00", order_id="o-S", occurred_at="2026-11-02T10:00:00+08:00"))  # 200
    by_card = purchase("x", "100.00", order_id="o-C", occurred_at="2026-11-03T10:00:00+08:00")
    del by_card["member_id"]  # named by its card only: a second member, 200
    await process(db, {**by_card, "member": {"kind": "card", "value": "8800123"}})
    link = {
        "event_id": "link-1",
        "type": "identity_link",
        "source": "operator",
        "member_id": "S",
        "occurred_at": "2026-11-20T10:00:00+08:00",
        "payload": {"kind": "card", "value": "8800123"},
    }
    await process(db, link)  # S absorbs the card's member; one first-purchase bonus is taken back

    whole = await build_report(db, DEFAULT_PROGRAM, None, None)
    merge_day = await build_report(db, DEFAULT_PROGRAM, date(2026, 11, 20), date(2026, 11, 20))

    async with db.connect() as conn:
        moved = (await conn.execute(text("SELECT points FROM ledger_entries WHERE kind = 'transfer' ORDER BY 1"))).all()
    assert [p for (p,) in moved] == [-200, 200]  # the card member's 200, out of one member and into the other
    assert figures(whole) == {
        "opening": 0,
        "earned": 400,
        "corrections": -100,
        "reversed": 0,
        "redeemed": 0,
        "held": 0,
        "expired": 0,
        "adjusted": 0,
        "closing": 300,
        "balanced": True,
    }
    assert (figures(merge_day)["opening"], figures(merge_day)["adjusted"], figures(merge_day)["closing"]) == (
        300,
        0,
        300,
    )
    assert figures(merge_day)["balanced"]


async def test_adjustments_and_entries_the_flow_does_not_name_land_in_adjusted(db):
    await ledger(db)
    async with db.begin() as conn:
        # Written as an operator's adjustment or a writer the report does not know would; the
        # members' balances are left as they were.
        await conn.execute(
            text(
                """
                INSERT INTO ledger_entries (member_id, kind, points, pending_points, qualifying_points, rules, occurred_at)
                VALUES ('H', 'adjust', 25, 0, 0, '[{"rule": "goodwill"}]', '2026-11-09T00:00:00Z'),
                       ('H', 'restore', 5, 0, 0, '[{"rule": "something_new"}]', '2026-11-09T00:00:00Z')
                """
            )
        )

    window = await build_report(db, P, date(2026, 11, 6), date(2026, 11, 15))
    whole = await build_report(db, P, None, None)

    assert (figures(window)["adjusted"], figures(window)["closing"], figures(window)["balanced"]) == (30, 1520, True)
    # Without an end, the closing balance must also be the members' available + pending.
    assert (figures(whole)["closing"], whole.outstanding_points, figures(whole)["balanced"]) == (1720, 1690, False)
    assert "  NOT BALANCED: opening and flow give 1,720, the ledger's closing is 1,720, the members hold 1,690" in (
        text_report(whole).splitlines()
    )


def test_balanced_is_the_equation_checked():
    lines = dict(opening=10, earned=5, corrections=-1, reversed=1, redeemed=2, held=1, expired=1, adjusted=1)

    assert Reconciliation(**lines, closing=10, outstanding_now=None).balanced
    assert Reconciliation(**lines, closing=10, outstanding_now=10).balanced
    assert not Reconciliation(**lines, closing=11, outstanding_now=None).balanced
    assert not Reconciliation(**lines, closing=10, outstanding_now=9).balanced


async def test_report_command_shows_the_flow_in_json_and_the_currency_in_html(db, env, tmp_path):
    await ledger(db)
    program = tmp_path / "program.toml"
    program.write_text('currency = "EUR"\npoint_value = "0.01"\n\n[pending]\ndays = 7\n', encoding="utf-8")
    page = tmp_path / "report.html"

    done = subprocess.run(
        [LOYALTY, "report", "--from", "2026-11-06", "--to", "2026-11-15", "--json", "--html", str(page)],
        env={**env, "LOYALTY_PROGRAM_FILE": str(program)},
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["reconciliation"] == {
        "opening": 1550,
        "earned": 1200,
        "corrections": -40,
        "reversed": 120,
        "redeemed": 750,
        "held": 50,
        "expired": 300,
        "adjusted": 0,
        "closing": 1490,
        "balanced": True,
    }
    assert (data["earned"], data["reversed"], data["redeemed"], data["expired"]) == (1200, 120, 750, 300)
    assert data["liability"]["currency"] == "EUR" and data["liability"]["value"] == "16.90"
    html = page.read_text()
    assert '<div class="v">EUR 16.90</div>' in html
    assert '<td>Corrections (re-evaluation)</td><td class="n">+</td><td class="n">-40</td>' in html
    assert '<td>Closing (end of 2026-11-15)</td><td class="n">=</td><td class="n">1,490</td>' in html
    assert "balanced: opening and flow give the closing available + pending points (end of 2026-11-15)" in html
