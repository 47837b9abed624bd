"""`loyalty audit` on a corrupted row, `loyalty member erase`, through the real command line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from sqlalchemy import text

from tests.conftest import NOW
from tests.factories import purchase, signup
from worker.domain.program import DEFAULT_PROGRAM
from worker.services import intake
from worker.services.erasure import ERASED_RAW

LOYALTY = str(Path(sys.executable).parent / "loyalty")


def loyalty(env, *args):
    return subprocess.run([LOYALTY, *args], env=env, capture_output=True, text=True, timeout=60)


async def _apply(db, *events):
    for event in events:
        await intake.process(db, DEFAULT_PROGRAM, event, now=NOW, strict=True)


async def test_audit_reports_the_exact_difference_of_a_corrupted_member_and_exits_1(db, env):
    await _apply(db, purchase("A1", "250.00"), purchase("B2", "40.00"))
    clean = loyalty(env, "audit")
    assert (clean.returncode, clean.stdout) == (0, "2 members checked, 0 differences\n")

    async with db.begin() as conn:
        await conn.execute(text("UPDATE members SET available_points = available_points + 7 WHERE member_id = 'B2'"))
    report = loyalty(env, "audit")
    as_json = loyalty(env, "audit", "--json")

    assert report.returncode == 1 and as_json.returncode == 1
    assert report.stdout == (
        "B2: available_points (entries) is 147 but entries/lots say 140\n"
        "B2: available_points (lots) is 147 but entries/lots say 140\n"
        "2 members checked, 2 differences\n"
    )
    assert json.loads(as_json.stdout) == {
        "members_checked": 2,
        "clean": False,
        "differences": [
            {"member_id": "B2", "field": "available_points (entries)", "balance": 147, "recomputed": 140},
            {"member_id": "B2", "field": "available_points (lots)", "balance": 147, "recomputed": 140},
        ],
    }


async def test_member_erase_removes_personal_data_keeps_amounts_and_is_idempotent(db, env):
    await _apply(
        db,
        signup("E1", birthday="1990-05-17", locale="zh-Hans"),
        purchase("E1", "300.00"),
        signup("E2", birthday="1985-01-02", locale="en"),
    )
    await intake.process(db, DEFAULT_PROGRAM, {**signup("E1", birthday="1990-13-40"), "extra": 1}, now=NOW)
    async with db.connect() as conn:
        before = (
            await conn.execute(text("SELECT sum(points) FROM ledger_entries WHERE member_id = 'E1'"))
        ).scalar_one()

    first = loyalty(env, "member", "erase", "E1", "--json")
    second = loyalty(env, "member", "erase", "E1")
    missing = loyalty(env, "member", "erase", "NOBODY")
    replayed = loyalty(env, "rejected", "replay", "1")

    assert first.returncode == 0, first.stderr
    done = json.loads(first.stdout)
    assert done == {
        "member_id": "E1",
        "erased_at": done["erased_at"],
        "already_erased": False,
        "identities_removed": 0,
        "rejected_redacted": 1,
        "events_redacted": 1,
        "notifications_redacted": 0,
        "api_answers_removed": 0,
    }
    assert second.returncode == 0
    assert second.stdout.startswith("member E1 was already erased at ")
    assert second.stdout.endswith(
        "; 0 identities removed, 0 stored events, 0 rejected events and 0 notifications redacted, "
        "0 API answers removed\n"
    )
    assert (missing.returncode, missing.stderr) == (1, "error: no member 'NOBODY'\n")
    assert (replayed.returncode, replayed.stderr) == (
        1,
        "error: rejected event #1 was erased with its member's personal data\n",
    )
    async with db.connect() as conn:
        rows = {
            r.member_id: r
            for r in (
                await conn.execute(
                    text(
                        "SELECT member_id, birthday, locale, erased_at, available_points, lifetime_points FROM members"
                    )
                )
            ).all()
        }
        after = (await conn.execute(text("SELECT sum(points) FROM ledger_entries WHERE member_id = 'E1'"))).scalar_one()
        raw = (await conn.execute(text("SELECT raw FROM rejected_events WHERE member_id = 'E1'"))).scalar_one()
    e1, e2 = rows["E1"], rows["E2"]
    assert (e1.birthday, e1.locale) == (None, None)
    assert e1.erased_at is not None and e1.erased_at.isoformat() in second.stdout
    # Signup 50 + purchase 300 + first-purchase bonus 100: the amounts stay for the books.
    assert (e1.available_points, e1.lifetime_points, after) == (450, 450, before)
    assert raw == ERASED_RAW
    assert (str(e2.birthday), e2.locale, e2.erased_at) == ("1985-01-02", "en", None)
    assert loyalty(env, "audit").returncode == 0
