"""`loyalty audit` finds a corrupted balance row and names the exact difference."""

from __future__ import annotations

import json

import asyncpg
from sqlalchemy.engine import make_url

from tests.e2e.test_cli import clean, line, loyalty  # noqa: F401  (clean is a fixture)


async def corrupt(database_url: str, sql: str) -> None:
    url = make_url(database_url)
    conn = await asyncpg.connect(host=url.host, port=url.port, user=url.username, database=url.database)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def test_audit_exits_1_and_reports_the_corrupted_field(clean, tmp_path, database_url):  # noqa: F811
    env = clean
    events = tmp_path / "events.jsonl"
    events.write_text(
        "\n".join(
            [
                line(
                    event_id="p-1",
                    type="purchase",
                    member_id="A1",
                    payload={"order_id": "o-1", "amount": "50.00", "currency": "CNY"},
                ),
                line(
                    event_id="p-2",
                    type="purchase",
                    member_id="B2",
                    payload={"order_id": "o-2", "amount": "30.00", "currency": "CNY"},
                ),
            ]
        )
        + "\n"
    )
    assert loyalty(env, "publish", str(events)).returncode == 0
    assert loyalty(env, "drain", "--timeout", "60", "--threads", "1").returncode == 0
    clean_run = loyalty(env, "audit")
    assert (clean_run.returncode, clean_run.stdout) == (0, "2 members checked, 0 differences\n")

    # 50 + 100 first-purchase bonus = 150 in entries and lots; the row now says 157.
    await corrupt(database_url, "UPDATE members SET available_points = available_points + 7 WHERE member_id = 'A1'")
    text_run = loyalty(env, "audit")
    json_run = loyalty(env, "audit", "--json")

    assert text_run.returncode == 1
    assert text_run.stdout.splitlines() == [
        "A1: available_points (entries) is 157 but entries/lots say 150",
        "A1: available_points (lots) is 157 but entries/lots say 150",
        "2 members checked, 2 differences",
    ]
    assert json_run.returncode == 1
    assert json.loads(json_run.stdout) == {
        "members_checked": 2,
        "clean": False,
        "differences": [
            {"member_id": "A1", "field": "available_points (entries)", "balance": 157, "recomputed": 150},
            {"member_id": "A1", "field": "available_points (lots)", "balance": 157, "recomputed": 150},
        ],
    }


async def test_audit_finds_a_lot_whose_remainder_was_changed(clean, tmp_path, database_url):  # noqa: F811
    env = clean
    events = tmp_path / "events.jsonl"
    events.write_text(
        line(
            event_id="p-1",
            type="purchase",
            member_id="A1",
            payload={"order_id": "o-1", "amount": "50.00", "currency": "CNY"},
        )
        + "\n"
    )
    assert loyalty(env, "publish", str(events)).returncode == 0
    assert loyalty(env, "drain", "--timeout", "60", "--threads", "1").returncode == 0

    await corrupt(database_url, "UPDATE lots SET remaining = remaining - 40 WHERE member_id = 'A1'")
    run = loyalty(env, "audit")

    assert run.returncode == 1
    assert run.stdout.splitlines() == [
        "A1: available_points (lots) is 150 but entries/lots say 110",
        "1 members checked, 1 differences",
    ]
