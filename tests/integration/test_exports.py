"""`loyalty export`'s service: the exact rows of a small ledger and its members, as CSV and JSON
Lines, date filters on whole program-local days, and no personal data of an erased member."""

from __future__ import annotations

import io
import json
from datetime import date

from sqlalchemy import text

from tests.conftest import NOW
from tests.factories import purchase, refund, signup
from worker.domain.program import DEFAULT_PROGRAM
from worker.services import exports, intake
from worker.services.erasure import erase_member

ZONE = DEFAULT_PROGRAM.timezone
HEADER_LEDGER = (
    "entry_id,kind,points,pending_points,qualifying_points,member_id,source,event_id,event_type,"
    "occurred_at,created_at,program_version,rules"
)


async def small_ledger(db) -> None:
    """M1 signs up (+50), buys 100.00 (+100, +100 first purchase) and returns half (-50); M2
    signs up two days later and is erased."""
    for raw in (
        signup("M1", birthday="1990-05-20", locale="zh-Hans", event_id="s-1", occurred_at="2026-11-01T09:00:00+08:00"),
        purchase("M1", "100.00", order_id="o-1", event_id="p-1", occurred_at="2026-11-02T10:00:00+08:00"),
        refund("M1", "o-1", "50.00", refund_id="r-1", event_id="r-1", occurred_at="2026-11-04T00:30:00+08:00"),
        signup("M2", birthday="1985-01-02", event_id="s-2", occurred_at="2026-11-03T23:59:00+08:00"),
    ):
        assert (await intake.process(db, DEFAULT_PROGRAM, raw, now=NOW, strict=True)).status == "applied"
    async with db.begin() as conn:
        await conn.execute(text("UPDATE members SET labels = '{plus,\"a,b\"}' WHERE member_id IN ('M1', 'M2')"))
        # enrolled_at is when the worker first saw the member: here, when the signups occurred.
        await conn.execute(
            text(
                "UPDATE members SET enrolled_at = CASE member_id WHEN 'M1' THEN timestamptz '2026-11-01T01:00:00Z' "
                "ELSE timestamptz '2026-11-03T15:59:00Z' END"
            )
        )
    await erase_member(db, "M2", NOW)


async def export(db, kind, fmt="csv", date_from=None, date_to=None) -> tuple[str, int]:
    out = io.StringIO()
    batches: list[int] = []
    written = await exports.export(
        db, kind, fmt, out, exports.bounds(ZONE, date_from, date_to), progress=batches.append
    )
    assert sum(batches) == written
    return out.getvalue(), written


async def created(db) -> list[str]:
    async with db.connect() as conn:
        # As the export writes times: ISO 8601 in UTC, as PostgreSQL writes them (no trailing
        # zeros in the fraction of a second).
        await conn.execute(text("SET TIME ZONE 'UTC'"))
        rows = await conn.execute(text("SELECT to_json(created_at) #>> '{}' FROM ledger_entries ORDER BY entry_id"))
        return list(rows.scalars())


async def test_the_ledger_as_csv_row_by_row(db):
    await small_ledger(db)
    at = await created(db)

    body, written = await export(db, "ledger")

    signup_rules = '[{""rule"": ""signup"", ""points"": 50, ""program_version"": ""file:default""}]'
    assert body.splitlines()[0] == HEADER_LEDGER
    assert body.splitlines()[1] == (
        f'1,earn,50,0,50,M1,pos,s-1,signup,2026-11-01T01:00:00+00:00,{at[0]},file:default,"{signup_rules}"'
    )
    assert [line.split(",")[:12] for line in body.splitlines()[2:]] == [
        [
            "2",
            "earn",
            "200",
            "0",
            "200",
            "M1",
            "pos",
            "p-1",
            "purchase",
            "2026-11-02T02:00:00+00:00",
            at[1],
            "file:default",
        ],
        ["3", "reverse", "-50", "0", "-50", "M1", "pos", "r-1", "refund", "2026-11-03T16:30:00+00:00", at[2], ""],
        [
            "4",
            "earn",
            "50",
            "0",
            "50",
            "M2",
            "pos",
            "s-2",
            "signup",
            "2026-11-03T15:59:00+00:00",
            at[3],
            "file:default",
        ],
    ]
    assert written == 4


async def test_the_ledger_as_json_lines_with_its_rules_as_json(db):
    await small_ledger(db)
    at = await created(db)

    body, written = await export(db, "ledger", "jsonl")

    rows = [json.loads(line) for line in body.splitlines()]
    assert written == len(rows) == 4
    assert rows[0] == {
        "entry_id": 1,
        "kind": "earn",
        "points": 50,
        "pending_points": 0,
        "qualifying_points": 50,
        "member_id": "M1",
        "source": "pos",
        "event_id": "s-1",
        "event_type": "signup",
        "occurred_at": "2026-11-01T01:00:00+00:00",
        "created_at": at[0],
        "program_version": "file:default",
        "rules": [{"rule": "signup", "points": 50, "program_version": "file:default"}],
    }
    # A refund's reversal: no rule version gave it, so it names none.
    assert (rows[2]["program_version"], rows[2]["rules"][0]["rule"], rows[2]["rules"][1]) == (
        None,
        "refund",
        {"points_due": 50, "unrecovered": 0, "from_pending": 0, "from_available": 50},
    )
    assert [r["rules"][0]["points"] for r in (rows[1], rows[3])] == [100, 50]


async def test_dates_are_whole_program_local_days_both_included(db):
    await small_ledger(db)

    # 3 November, Shanghai time: M2's signup at 23:59; the refund at 00:30 on the 4th is not.
    one_day, _ = await export(db, "ledger", "jsonl", date(2026, 11, 3), date(2026, 11, 3))
    from_the_2nd, _ = await export(db, "ledger", "jsonl", date_from=date(2026, 11, 2))
    to_the_2nd, _ = await export(db, "ledger", "jsonl", date_to=date(2026, 11, 2))
    members_on_the_3rd, _ = await export(db, "members", "jsonl", date(2026, 11, 3), date(2026, 11, 3))

    def ids(body: str, key: str = "event_id") -> list[str]:
        return [json.loads(line)[key] for line in body.splitlines()]

    assert ids(one_day) == ["s-2"]
    assert ids(from_the_2nd) == ["p-1", "r-1", "s-2"]
    assert ids(to_the_2nd) == ["s-1", "p-1"]
    assert ids(members_on_the_3rd, "member_id") == ["M2"]


async def test_members_with_balances_and_no_personal_data_of_an_erased_member(db):
    await small_ledger(db)

    body, written = await export(db, "members")
    as_jsonl, _ = await export(db, "members", "jsonl")

    assert written == 2
    erased_at = NOW.isoformat()
    assert body.splitlines() == [
        "member_id,tier,available_points,pending_points,lifetime_points,qualifying_points,birthday,locale,labels,"
        "enrolled_at,erased_at",
        'M1,Regular,200,0,250,200,1990-05-20,zh-Hans,"[""plus"",""a,b""]",2026-11-01T01:00:00+00:00,',
        f"M2,Regular,50,0,50,50,,,[],2026-11-03T15:59:00+00:00,{erased_at}",
    ]
    assert [json.loads(line) for line in as_jsonl.splitlines()][1] == {
        "member_id": "M2",
        "tier": "Regular",
        "available_points": 50,
        "pending_points": 0,
        "lifetime_points": 50,
        "qualifying_points": 50,
        "birthday": None,
        "locale": None,
        "labels": [],
        "enrolled_at": "2026-11-03T15:59:00+00:00",
        "erased_at": erased_at,
    }
