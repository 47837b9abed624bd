"""The program report against a hand-computed scenario."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import date
from decimal import Decimal
from pathlib import Path

from sqlalchemy import text

from tests.conftest import NOW
from tests.factories import purchase, refund, signup
from worker.domain.program import DEFAULT_PROGRAM
from worker.services import intake
from worker.services.report import build_report
from worker.web.report_html import text_report

LOYALTY = str(Path(sys.executable).with_name("loyalty"))

# Redemption and expiry belong to other modules; their entries are written as those would.
_SPEND = text(
    """
    WITH e AS (INSERT INTO ledger_entries (member_id, kind, points, source, event_id, occurred_at)
               VALUES (:m, :kind, :points, 'test', :id, :at) RETURNING 1)
    UPDATE members SET available_points = available_points + :points WHERE member_id = :m
    """
)


async def scenario(db):
    for raw in (
        purchase("A", "350.75", order_id="oA", occurred_at="2026-11-02T10:00:00+08:00"),  # 350 + 100 first
        purchase("B", "1000.00", order_id="oB", source="shop", occurred_at="2026-11-03T10:00:00+08:00"),  # 1100
        signup("C", source="app", occurred_at="2026-11-04T10:00:00+08:00"),  # 50
        refund("A", "oA", "100.00", occurred_at="2026-11-05T10:00:00+08:00"),  # -99
        purchase("D", "10.00", occurred_at="2026-10-15T10:00:00+08:00"),  # 110, before range
    ):
        assert (await intake.process(db, DEFAULT_PROGRAM, raw, now=NOW, strict=True)).status == "applied"
    async with db.begin() as conn:
        await conn.execute(_SPEND, {"m": "B", "kind": "redeem", "points": -600, "id": "r1", "at": NOW.replace(day=10)})
        await conn.execute(_SPEND, {"m": "A", "kind": "expire", "points": -51, "id": "x1", "at": NOW.replace(day=20)})
        await conn.execute(text("UPDATE tier_changes SET changed_at = '2026-11-03T02:00:00Z'"))


async def test_report_figures_match_the_hand_computed_scenario(db):
    await scenario(db)

    report = await build_report(db, DEFAULT_PROGRAM, date(2026, 11, 1), date(2026, 11, 30))

    assert (report.available_points, report.pending_points) == (300 + 500 + 50 + 110, 0)
    assert report.liability_value == Decimal("9.60")  # 960 points x 0.01
    assert (report.earned, report.reversed, report.redeemed, report.expired) == (1600, 99, 600, 51)
    assert report.breakage == Decimal("0.0319")  # 51 / 1600 = 0.031875
    assert report.redemption_rate == Decimal("0.3750")  # 600 / 1600
    assert report.tiers == [("Regular", 3), ("Silver", 1), ("Gold", 0), ("Diamond", 0)]
    assert report.moves == [("Regular", "Silver", 1)]
    assert report.earn_by == [("shop", "purchase", 1100), ("pos", "purchase", 450), ("app", "signup", 50)]
    lines = {line[:28].strip(): line[28:42].strip() for line in text_report(report).splitlines() if line[28:].strip()}
    assert (lines["Breakage (expired/earned)"], lines["Redemption rate"], lines["Liability value"]) == (
        "3.19%",
        "37.50%",
        "CNY 9.60",
    )

    october = await build_report(db, DEFAULT_PROGRAM, date(2026, 10, 1), date(2026, 10, 31))
    assert (october.earned, october.expired, october.moves, october.breakage) == (110, 0, [], Decimal("0"))


async def test_report_command_writes_json_and_a_self_contained_html_page(db, env, tmp_path):
    await scenario(db)
    page = tmp_path / "report.html"

    done = subprocess.run(
        [LOYALTY, "report", "--from", "2026-11-01", "--to", "2026-11-30", "--json", "--html", str(page)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["liability"] == {
        "available_points": 960,
        "pending_points": 0,
        "outstanding_points": 960,
        "point_value": "0.01",
        "value": "9.60",
        "currency": "CNY",
    }
    assert (data["breakage"], data["redemption_rate"]) == ("0.0319", "0.3750")
    html = page.read_text()
    assert html.count("<svg") == 4 and "http://" not in html.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert '<div class="v">3.19%</div>' in html
    assert '<div class="v">CNY 9.60</div>' in html
