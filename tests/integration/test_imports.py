"""`loyalty import` on the real database: members and balances in, twice, changed, cut short,
dry run; lots with their own expiry, `import` entries, a clean audit and no notifications."""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import text

from tests.factories import check_in, purchase, referral, signup
from tests.integration.test_scheduler_jobs import process, run_job
from worker.domain.program import DEFAULT_PROGRAM
from worker.services import imports, intake
from worker.services.audit import audit_all
from worker.services.report import build_report
from worker.store import imports as store_imports

NOW = datetime(2026, 12, 7, 4, 0, tzinfo=UTC)  # 2026-12-07 12:00 in Asia/Shanghai
SHANGHAI = ZoneInfo("Asia/Shanghai")

MEMBERS = """member_id,phone,card,email,wechat_openid,birthday,locale,labels,tier,tier_floor_until,enrolled_at,lifetime_points,qualifying_points
M1,+86 138-0000-0001,C-1,Ann@Example.com,,1990-04-02,en,vip|staff,Gold,2027-06-30,2019-03-01,9000,5200
M2,,,,oid-2,,zh-Hans,,,,,1500,1200
M3,,,,,,,,,,,,
"""


def write(tmp_path, name: str, content: str):
    path = tmp_path / name
    path.write_text(content)
    return path


async def members_file(db, path, *, dry_run=False, now=NOW):
    problems = []
    with path.open("rb") as handle:
        report = await imports.import_members(
            db, DEFAULT_PROGRAM, handle, now=now, dry_run=dry_run, on_problem=problems.append
        )
    return report, [str(p) for p in problems]


async def balances_file(db, path, *, dry_run=False, now=NOW):
    problems = []
    with path.open("rb") as handle:
        report = await imports.import_balances(
            db, DEFAULT_PROGRAM, handle, now=now, dry_run=dry_run, on_problem=problems.append
        )
    return report, [str(p) for p in problems]


def counts(report) -> tuple:
    return (report.rows, report.imported, report.unchanged, report.conflicts, report.bad)


async def table_counts(db) -> dict[str, int]:
    tables = (
        "members",
        "member_identities",
        "ledger_entries",
        "lots",
        "tier_floors",
        "tier_changes",
        "notifications",
        "import_members",
        "import_lots",
    )
    async with db.connect() as conn:
        return {t: (await conn.execute(text(f"SELECT count(*) FROM {t}"))).scalar_one() for t in tables}


async def test_members_go_in_with_identities_tier_floor_and_totals_and_a_second_run_changes_nothing(db, tmp_path):
    path = write(tmp_path, "members.csv", MEMBERS)

    report, problems = await members_file(db, path)

    assert (counts(report), problems) == ((3, 3, 0, 0, 0), [])
    async with db.connect() as conn:
        rows = (
            await conn.execute(
                text(
                    "SELECT member_id, tier, tier_floor, tier_floor_ends_on, available_points, qualifying_points, "
                    "lifetime_points, birthday, locale, labels, enrolled_at FROM members ORDER BY member_id"
                )
            )
        ).all()
        identities = (
            await conn.execute(text("SELECT kind, value, member_id FROM member_identities ORDER BY member_id, kind"))
        ).all()
        floors = (await conn.execute(text("SELECT member_id, tier, ends_on, reason, set_by FROM tier_floors"))).all()
        entries = (
            await conn.execute(
                text(
                    "SELECT member_id, kind, points, qualifying_points, source, event_id, rules FROM ledger_entries "
                    "ORDER BY member_id"
                )
            )
        ).all()
    assert [tuple(r) for r in rows] == [
        (
            "M1",
            "Gold",
            "Gold",
            date(2027, 6, 30),
            0,
            5200,
            9000,
            date(1990, 4, 2),
            "en",
            ["staff", "vip"],
            datetime(2019, 3, 1, tzinfo=SHANGHAI),
        ),
        ("M2", "Silver", None, None, 0, 1200, 1500, None, "zh-Hans", [], NOW),
        ("M3", "Regular", None, None, 0, 0, 0, None, None, [], NOW),
    ]
    assert [tuple(r) for r in identities] == [
        ("card", "C-1", "M1"),
        ("email", "ann@example.com", "M1"),
        ("phone", "+8613800000001", "M1"),
        ("wechat_openid", "oid-2", "M2"),
    ]
    assert [tuple(r) for r in floors] == [
        ("M1", "Gold", date(2027, 6, 30), "imported from the previous program", "import")
    ]
    assert [tuple(r) for r in entries] == [
        (
            "M1",
            "import",
            0,
            5200,
            "import",
            "M1",
            [{"rule": "import", "lifetime_points": 9000, "qualifying_points": 5200}],
        ),
        (
            "M2",
            "import",
            0,
            1200,
            "import",
            "M2",
            [{"rule": "import", "lifetime_points": 1500, "qualifying_points": 1200}],
        ),
    ]
    assert (await audit_all(db)).clean
    before = await table_counts(db)
    assert before["notifications"] == 0 and before["tier_changes"] == 0

    again, problems = await members_file(db, path)

    assert (counts(again), problems) == ((3, 0, 3, 0, 0), [])
    assert await table_counts(db) == before


async def test_bad_rows_are_reported_by_line_and_column_and_the_good_ones_go_in(db, tmp_path):
    path = write(
        tmp_path,
        "members.csv",
        "member_id,birthday,tier,tier_floor_until,phone,lifetime_points,locale\n"
        "G1,1990-01-31,,,,,\n"
        "B1,1990-13-01,,,,,\n"
        ",,,,,,\n"
        "B2,,Platinum,,,,\n"
        "B3,,Gold,2026-12-06,,,\n"
        "B4,,,,12345,,\n"
        "B5,,,,,-5,\n"
        "B6,,,,,,fr\n"
        "B7,1990-01-01\n"
        "\n"
        "G2,,Gold,2026-12-07,,,\n",
    )

    report, problems = await members_file(db, path)

    assert counts(report) == (10, 2, 0, 0, 8)
    assert problems == [
        "line 3: birthday: 1990-13-01 is not a date (YYYY-MM-DD)",
        "line 4: member_id: is empty",
        "line 5: tier: Platinum is not a tier of the program (Regular, Silver, Gold, Diamond)",
        "line 6: tier_floor_until: 2026-12-06 is before today (2026-12-07)",
        "line 7: phone: must be a phone number in E.164 form with its country code, e.g. +8613800000000",
        "line 8: lifetime_points: -5 is not a whole number of points (0 to 1000000000000)",
        "line 9: locale: fr is not one of en, zh-Hans, zh-Hant",
        "line 10: columns: the row has 2 cells, the header 7",
    ]
    async with db.connect() as conn:
        ids = (await conn.execute(text("SELECT member_id FROM members ORDER BY 1"))).scalars().all()
    assert ids == ["G1", "G2"]


async def test_changed_rows_taken_identities_and_members_enrolled_otherwise_are_conflicts(db, tmp_path):
    await process(db, purchase("LIVE", "10.00", order_id="o-1"), DEFAULT_PROGRAM)
    first = write(tmp_path, "first.csv", "member_id,phone,lifetime_points\nA1,+8613800000001,100\nA2,,5\n")
    assert counts((await members_file(db, first))[0]) == (2, 2, 0, 0, 0)
    before = await table_counts(db)
    second = write(
        tmp_path,
        "second.csv",
        "member_id,phone,lifetime_points\n"
        "A1,+8613800000001,100\n"  # as before
        "A2,,6\n"  # changed
        "A3,+86 138 0000 0001,0\n"  # A1's phone
        "LIVE,,\n"  # enrolled by its purchase
        "A4,+8613800000004,\n"
        "A5,+8613800000004,\n"  # A4's phone, in the same file
        "A4,+8613800000004,\n"  # A4 again, same values
        "A4,+8613800000009,\n",  # A4 again, other values
    )

    report, problems = await members_file(db, second)

    assert counts(report) == (8, 1, 2, 5, 0)
    assert problems == [
        "line 3: conflict: member_id: A2 was imported with other values; not changed",
        "line 4: conflict: phone: already names member A1",
        "line 5: conflict: member_id: LIVE is already a member, not one imported",
        "line 7: conflict: phone: already names member A4",
        "line 9: conflict: member_id: A4 is on line 6 too, with other values",
    ]
    after = await table_counts(db)
    assert after["members"] == before["members"] + 1
    assert after["member_identities"] == before["member_identities"] + 1
    async with db.connect() as conn:
        lifetime = (await conn.execute(text("SELECT lifetime_points FROM members WHERE member_id = 'A2'"))).scalar()
    assert lifetime == 5


async def test_an_import_cut_short_resumes_and_the_rows_already_in_are_unchanged(db, tmp_path, monkeypatch):
    monkeypatch.setattr(imports, "CHUNK_ROWS", 2)
    path = write(tmp_path, "members.csv", "member_id,lifetime_points\n" + "".join(f"R{i},{i}\n" for i in range(1, 6)))
    real = store_imports.write_members
    calls = []

    async def dies_on_the_second_chunk(conn, members, now):
        calls.append(len(members))
        if len(calls) == 2:
            raise ConnectionResetError("the connection went away")
        await real(conn, members, now)

    monkeypatch.setattr(store_imports, "write_members", dies_on_the_second_chunk)
    with pytest.raises(ConnectionResetError):
        await members_file(db, path)
    async with db.connect() as conn:
        ids = (await conn.execute(text("SELECT member_id FROM import_members ORDER BY 1"))).scalars().all()
    assert ids == ["R1", "R2"]
    monkeypatch.setattr(store_imports, "write_members", real)

    report, problems = await members_file(db, path)

    assert (counts(report), problems) == ((5, 3, 2, 0, 0), [])
    assert (await audit_all(db)).clean


async def test_a_dry_run_writes_nothing_and_counts_as_the_real_run(db, tmp_path):
    path = write(tmp_path, "members.csv", "member_id,card,lifetime_points\nD1,C1,10\nD2,C1,20\nD1,C1,10\nD3,,x\n")
    empty = await table_counts(db)

    dry, dry_problems = await members_file(db, path, dry_run=True)

    assert await table_counts(db) == empty
    real, real_problems = await members_file(db, path)
    assert (dry.dry_run, real.dry_run) == (True, False)
    assert counts(dry) == counts(real) == (4, 1, 1, 1, 1)
    assert (
        dry_problems
        == real_problems
        == [
            "line 3: conflict: card: already names member D1",
            "line 5: lifetime_points: x is not a whole number of points (0 to 1000000000000)",
        ]
    )

    balances = write(tmp_path, "balances.csv", "member_id,lot_ref,points,expires_on\nD1,L1,50,2027-12-31\n")
    before = await table_counts(db)
    dry, _ = await balances_file(db, balances, dry_run=True)
    assert (counts(dry), dry.points) == ((1, 1, 0, 0, 0), 50)
    assert await table_counts(db) == before


BALANCES = """member_id,lot_ref,points,earned_on,expires_on,note
M1,old-1,300,2025-12-01,2027-01-31,autumn campaign
M1,old-2,200,,2027-06-30,
M2,old-3,1000,2026-01-15,2026-12-31,
M9,old-4,10,,2027-01-01,
M2,old-5,10,,2026-12-07,
M2,old-6,0,,2027-01-01,
M2,old-7,5,2027-01-01,2026-12-31,
"""


async def test_balances_are_lots_with_their_own_expiry_and_import_entries_and_the_audit_stays_clean(db, tmp_path):
    await members_file(db, write(tmp_path, "members.csv", MEMBERS))
    path = write(tmp_path, "balances.csv", BALANCES)

    report, problems = await balances_file(db, path)

    assert (counts(report), report.points) == ((7, 3, 0, 0, 4), 1500)
    assert problems == [
        "line 5: member_id: M9 is not a member (import it with `loyalty import members` first)",
        "line 6: expires_on: 2026-12-07 is not after today (2026-12-07)",
        "line 7: points: 0 is not a whole number of points (1 to 1000000000000)",
        "line 8: expires_on: 2026-12-31 is not after earned_on (2027-01-01)",
    ]
    async with db.connect() as conn:
        lots = (
            await conn.execute(
                text(
                    "SELECT l.member_id, l.points, l.remaining, l.earned_at, l.expires_at, l.pending_until, "
                    "e.kind, e.points, e.qualifying_points, e.event_id, e.rules, e.occurred_at "
                    "FROM lots l JOIN ledger_entries e USING (entry_id) ORDER BY l.lot_id"
                )
            )
        ).all()
        balances = (
            await conn.execute(
                text(
                    "SELECT member_id, available_points, pending_points, qualifying_points, lifetime_points, tier "
                    "FROM members ORDER BY member_id"
                )
            )
        ).all()
        notifications = (await conn.execute(text("SELECT count(*) FROM notifications"))).scalar_one()
    assert [tuple(r) for r in lots] == [
        (
            "M1",
            300,
            300,
            datetime(2025, 12, 1, tzinfo=SHANGHAI),
            datetime(2027, 1, 31, tzinfo=SHANGHAI),
            None,
            "import",
            300,
            0,
            "old-1",
            [
                {
                    "rule": "import",
                    "points": 300,
                    "lifetime_points": 0,
                    "lot_ref": "old-1",
                    "expires_on": "2027-01-31",
                    "note": "autumn campaign",
                }
            ],
            NOW,
        ),
        (
            "M1",
            200,
            200,
            NOW,
            datetime(2027, 6, 30, tzinfo=SHANGHAI),
            None,
            "import",
            200,
            0,
            "old-2",
            [{"rule": "import", "points": 200, "lifetime_points": 0, "lot_ref": "old-2", "expires_on": "2027-06-30"}],
            NOW,
        ),
        (
            "M2",
            1000,
            1000,
            datetime(2026, 1, 15, tzinfo=SHANGHAI),
            datetime(2026, 12, 31, tzinfo=SHANGHAI),
            None,
            "import",
            1000,
            0,
            "old-3",
            [{"rule": "import", "points": 1000, "lifetime_points": 0, "lot_ref": "old-3", "expires_on": "2026-12-31"}],
            NOW,
        ),
    ]
    assert [tuple(r) for r in balances] == [
        ("M1", 500, 0, 5200, 9000, "Gold"),
        ("M2", 1000, 0, 1200, 1500, "Silver"),
        ("M3", 0, 0, 0, 0, "Regular"),
    ]
    assert notifications == 0
    audit = await audit_all(db)
    assert (audit.members_checked, audit.differences) == (3, [])
    flow = (await build_report(db, DEFAULT_PROGRAM, date(2026, 12, 1), date(2026, 12, 31))).reconciliation
    assert (flow.opening, flow.adjusted, flow.earned, flow.closing, flow.balanced) == (0, 1500, 0, 1500, True)

    before = await table_counts(db)
    again, problems = await balances_file(db, path)
    assert (counts(again), again.points) == ((7, 0, 3, 0, 4), 0)
    assert await table_counts(db) == before

    changed = write(tmp_path, "changed.csv", "member_id,lot_ref,points,expires_on\nM1,old-1,301,2027-01-31\n")
    conflict, problems = await balances_file(db, changed)
    assert counts(conflict) == (1, 0, 0, 1, 0)
    assert problems == ["line 2: conflict: lot_ref: old-1 of member M1 was imported with other values; not changed"]


async def test_imported_lots_expire_on_their_day_and_are_spent_like_earned_ones(db, tmp_path):
    await members_file(db, write(tmp_path, "members.csv", "member_id\nM1\n"))
    await balances_file(
        db,
        write(tmp_path, "b.csv", "member_id,lot_ref,points,expires_on\nM1,a,100,2026-12-31\nM1,b,40,2027-03-31\n"),
    )
    # The expiry job of 2026-12-31 00:05 (Shanghai) expires the first lot, not the second.
    await run_job(db, "expire-points", datetime(2026, 12, 31, 0, 5, tzinfo=SHANGHAI))
    async with db.connect() as conn:
        left = (await conn.execute(text("SELECT remaining FROM lots ORDER BY lot_id"))).scalars().all()
        available = (await conn.execute(text("SELECT available_points FROM members"))).scalar_one()
    assert (left, available) == ([0, 40], 40)
    assert (await audit_all(db)).clean


async def test_a_late_event_re_evaluates_an_imported_member_from_what_they_brought_in(db, tmp_path):
    await members_file(
        db,
        write(
            tmp_path,
            "members.csv",
            "member_id,birthday,locale,labels,tier,lifetime_points,qualifying_points\n"
            "M1,1990-04-02,en,vip|plus,Gold,9000,5200\n",
        ),
        now=datetime(2026, 11, 1, tzinfo=UTC),
    )
    # Gold earns x1.5 in the default program; the second purchase arrives after a later one. An
    # imported member is an existing customer: neither is their first purchase, and the
    # re-evaluation from what they brought in agrees with what each earned.
    await process(db, purchase("M1", "100.00", order_id="o-2", occurred_at="2026-11-20T10:00:00+08:00"))
    late = await process(db, purchase("M1", "100.00", order_id="o-1", occurred_at="2026-11-10T10:00:00+08:00"))

    assert late.detail["re_evaluated"] == {"events": 2, "corrected_events": 0, "points": 0}
    async with db.connect() as conn:
        row = (
            await conn.execute(
                text(
                    "SELECT tier, birthday, locale, labels, qualifying_points, available_points FROM members "
                    "WHERE member_id = 'M1'"
                )
            )
        ).one()
        changes = (await conn.execute(text("SELECT count(*) FROM tier_changes"))).scalar_one()
    # The labels brought in stay too: the re-evaluation starts from them.
    assert tuple(row) == ("Gold", date(1990, 4, 2), "en", ["plus", "vip"], 5200 + 150 + 150, 150 + 150)
    assert changes == 0
    assert (await audit_all(db)).clean


async def test_a_line_that_is_not_utf8_or_breaks_the_quoting_stops_the_import_naming_it(db, tmp_path):
    not_utf8 = tmp_path / "latin1.csv"
    not_utf8.write_bytes(b"member_id,locale\nU1,en\nU\xe92,en\n")
    unclosed = write(tmp_path, "quote.csv", 'member_id,locale\nQ1,en\nQ2,"en\n' + "x" * 140_000 + "\n")

    with pytest.raises(imports.ImportFileError) as latin1:
        await members_file(db, not_utf8)
    with pytest.raises(imports.ImportFileError) as quote:
        await members_file(db, unclosed)

    assert str(latin1.value) == "line 3: is not UTF-8 text"
    assert str(quote.value) == "line 3: field larger than field limit (131072)"


# ---------------------------------------------------------------- imported members are not new

EXISTING = "member_id,tier,lifetime_points,qualifying_points\nI1,,,\nI2,,800,300\n"


async def earned_rules(db, member_id: str) -> list[tuple[str, int, list[str]]]:
    """Each earn entry of the member: its event, points and rules, in the order they occurred."""
    async with db.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT event_id, points, rules FROM ledger_entries WHERE member_id = :m AND kind = 'earn' "
                "ORDER BY occurred_at, entry_id"
            ),
            {"m": member_id},
        )
        return [(r.event_id, r.points, [rule["rule"] for rule in r.rules]) for r in rows]


async def test_an_imported_member_earns_no_welcome_one_event_at_a_time(db, tmp_path):
    await members_file(db, write(tmp_path, "members.csv", EXISTING), now=datetime(2026, 11, 1, tzinfo=UTC))

    outcomes = [
        await process(db, event)
        for event in (
            signup("I1", event_id="s-i1", occurred_at="2026-11-02T10:00:00+08:00"),
            purchase("I1", "300.00", event_id="p-i1", order_id="o-1", occurred_at="2026-11-03T10:00:00+08:00"),
            signup("N1", event_id="s-n1", occurred_at="2026-11-02T10:00:00+08:00"),
            purchase("N1", "300.00", event_id="p-n1", order_id="o-1", occurred_at="2026-11-03T10:00:00+08:00"),
        )
    ]

    assert [(o.points, o.note) for o in outcomes] == [
        (0, "signup.already_signed_up"),
        (300, None),
        (50, None),
        (400, None),
    ]
    assert await earned_rules(db, "I1") == [("p-i1", 300, ["purchase"])]
    assert await earned_rules(db, "N1") == [("s-n1", 50, ["signup"]), ("p-n1", 400, ["purchase", "first_purchase"])]
    assert (await audit_all(db)).clean


async def test_an_imported_member_earns_no_first_purchase_bonus_in_a_batch(db, tmp_path):
    await members_file(db, write(tmp_path, "members.csv", EXISTING), now=datetime(2026, 11, 1, tzinfo=UTC))
    batch = [
        purchase("I1", "300.00", event_id="p-i1", order_id="o-1", occurred_at="2026-11-03T10:00:00+08:00"),
        purchase("I2", "200.00", event_id="p-i2", order_id="o-1", occurred_at="2026-11-03T10:00:00+08:00"),
        purchase("N1", "300.00", event_id="p-n1", order_id="o-1", occurred_at="2026-11-03T10:00:00+08:00"),
        purchase("I1", "100.00", event_id="p-i1b", order_id="o-2", occurred_at="2026-11-04T10:00:00+08:00"),
    ]

    outcomes = await intake.process_batch(db, DEFAULT_PROGRAM, batch, now=NOW, strict=True)

    assert [(o.status, o.points) for o in outcomes] == [
        ("applied", 300),
        ("applied", 200),
        ("applied", 400),
        ("applied", 100),
    ]
    assert await earned_rules(db, "I1") == [("p-i1", 300, ["purchase"]), ("p-i1b", 100, ["purchase"])]
    assert await earned_rules(db, "I2") == [("p-i2", 200, ["purchase"])]
    assert await earned_rules(db, "N1") == [("p-n1", 400, ["purchase", "first_purchase"])]
    assert (await audit_all(db)).clean


async def test_a_late_first_purchase_of_an_imported_member_is_re_evaluated_without_the_bonus(db, tmp_path):
    await members_file(db, write(tmp_path, "members.csv", EXISTING), now=datetime(2026, 11, 1, tzinfo=UTC))
    for member_id in ("I1", "N1"):
        await process(
            db,
            purchase(
                member_id, "200.00", event_id=f"p2-{member_id}", order_id="o-2", occurred_at="2026-11-20T10:00:00+08:00"
            ),
        )

    late_imported = await process(
        db, purchase("I1", "100.00", event_id="p1-I1", order_id="o-1", occurred_at="2026-11-10T10:00:00+08:00")
    )
    late_new = await process(
        db, purchase("N1", "100.00", event_id="p1-N1", order_id="o-1", occurred_at="2026-11-10T10:00:00+08:00")
    )

    assert (late_imported.points, late_imported.detail["re_evaluated"]) == (
        100,
        {"events": 2, "corrected_events": 0, "points": 0},
    )
    assert await earned_rules(db, "I1") == [("p1-I1", 100, ["purchase"]), ("p2-I1", 200, ["purchase"])]
    # The member who was not imported: the bonus moves to the purchase that was first after all.
    assert late_new.detail["re_evaluated"] == {"events": 2, "corrected_events": 2, "points": 0}
    assert (await audit_all(db)).clean


async def test_a_referral_of_an_imported_member_does_not_pay(db, tmp_path):
    await members_file(db, write(tmp_path, "members.csv", EXISTING), now=datetime(2026, 11, 1, tzinfo=UTC))
    await process(db, signup("N1", occurred_at="2026-11-02T10:00:00+08:00"))

    imported = await process(db, referral("N1", "I1", event_id="r-1", occurred_at="2026-11-03T10:00:00+08:00"))
    new = await process(db, referral("N1", "N2", event_id="r-2", occurred_at="2026-11-03T10:00:00+08:00"))

    assert (imported.points, imported.note) == (0, "referral.referee_not_new")
    assert (new.points, new.note) == (DEFAULT_PROGRAM.referral.referrer_points, None)
    assert (await audit_all(db)).clean


async def test_a_referral_of_an_imported_member_in_a_batch_does_not_pay(db, tmp_path):
    await members_file(db, write(tmp_path, "members.csv", EXISTING), now=datetime(2026, 11, 1, tzinfo=UTC))
    batch = [
        signup("N1", event_id="s-n1", occurred_at="2026-11-02T10:00:00+08:00"),
        referral("N1", "I2", event_id="r-1", occurred_at="2026-11-03T10:00:00+08:00"),
        signup("N3", event_id="s-n3", occurred_at="2026-11-02T10:00:00+08:00"),
        referral("N3", "N4", event_id="r-2", occurred_at="2026-11-03T10:00:00+08:00"),
    ]

    outcomes = await intake.process_batch(db, DEFAULT_PROGRAM, batch, now=NOW, strict=True)

    assert [(o.status, o.points, o.note) for o in outcomes] == [
        ("applied", 50, None),
        ("applied", 0, "referral.referee_not_new"),
        ("applied", 50, None),
        ("applied", DEFAULT_PROGRAM.referral.referrer_points, None),
    ]
    assert (await audit_all(db)).clean


async def test_a_member_who_absorbs_an_imported_one_keeps_what_it_brought_in(db, tmp_path):
    """A member's card turns out to be an imported member's: the merge keeps the member whose
    first event is earliest (the imported one has none here), and that member now holds the
    imported tier and qualifying points, is an existing customer to the rules, and keeps both
    through the re-evaluation of a late event."""
    await members_file(
        db,
        write(
            tmp_path, "members.csv", "member_id,card,tier,lifetime_points,qualifying_points\nA1,C-9,Gold,9000,5200\n"
        ),
        now=datetime(2026, 11, 1, tzinfo=UTC),
    )
    await process(db, check_in("S1", "2026-11-02T10:00:00+08:00", event_id="c-1"))
    linked = await process(
        db,
        {
            "event_id": "l-1",
            "type": "identity_link",
            "source": "operator",
            "member_id": "S1",
            "occurred_at": "2026-11-03T10:00:00+08:00",
            "payload": {"kind": "card", "value": "C-9"},
        },
    )
    first = await process(
        db, purchase("S1", "100.00", event_id="p-1", order_id="o-1", occurred_at="2026-11-04T10:00:00+08:00")
    )
    late = await process(db, check_in("S1", "2026-11-01T10:00:00+08:00", event_id="c-0"))

    assert (linked.member_id, linked.detail["survivor"], linked.detail["absorbed"]) == ("S1", "S1", "A1")
    # Gold earns x1.5 and an existing customer's first purchase here earns no bonus.
    assert (first.points, await earned_rules(db, "S1")) == (
        150,
        [("c-0", 10, ["check_in"]), ("c-1", 10, ["check_in"]), ("p-1", 150, ["purchase"])],
    )
    # The late check-in earns its own 10 through the re-evaluation, which changes nothing else.
    assert late.detail["re_evaluated"] == {"events": 3, "corrected_events": 1, "points": 10}
    async with db.connect() as conn:
        row = (
            await conn.execute(
                text("SELECT tier, qualifying_points, lifetime_points FROM members WHERE member_id = 'S1'")
            )
        ).one()
        changes = (
            await conn.execute(
                text("SELECT from_tier, to_tier, reason, event_id FROM tier_changes WHERE member_id = 'S1'")
            )
        ).all()
    assert tuple(row) == ("Gold", 5200 + 10 + 150 + 10, 9000 + 10 + 150 + 10)
    # Gold with the merge, and not a step down after it.
    assert [tuple(c) for c in changes] == [("Regular", "Gold", "upgrade", "l-1")]
    assert (await audit_all(db)).clean
