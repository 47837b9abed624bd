"""`loyalty import members|balances` as an operator runs it: real processes, exact output."""

from __future__ import annotations

import json

from tests.e2e.test_cli import clean, loyalty  # noqa: F401  (clean is a fixture)

MEMBERS = (
    "member_id,phone,email,birthday,locale,labels,tier,tier_floor_until,lifetime_points,qualifying_points\n"
    "M1,+8613800000001,ann@example.com,1990-04-02,en,vip|staff,Gold,2030-06-30,9000,5200\n"
    "M2,,,1990-13-01,,,,,,\n"
    "M3,+8613800000001,,,,,,,,\n"
    "M4,,,,zh-Hans,,,,1500,1200\n"
)
BALANCES = (
    "member_id,lot_ref,points,earned_on,expires_on,note\n"
    "M1,old-1,300,2025-12-01,2030-01-31,autumn campaign\n"
    "M1,old-2,200,,2030-06-30,\n"
    "M4,old-3,1000,,2030-12-31,\n"
    "M9,old-4,10,,2030-01-01,\n"
)


def test_members_and_balances_imported_checked_and_run_again(clean, tmp_path):  # noqa: F811
    env = clean
    members = tmp_path / "members.csv"
    members.write_text(MEMBERS)
    balances = tmp_path / "balances.csv"
    balances.write_text(BALANCES)

    first = loyalty(env, "import", "members", str(members))
    again = loyalty(env, "import", "members", str(members), "--json")
    lots = loyalty(env, "import", "balances", str(balances), "--json")
    lots_again = loyalty(env, "import", "balances", str(balances))
    audit = loyalty(env, "audit")
    report = loyalty(env, "report", "--json")

    problems = [
        "line 3: birthday: 1990-13-01 is not a date (YYYY-MM-DD)",
        "line 4: conflict: phone: already names member M1",
    ]
    assert (first.returncode, first.stdout, first.stderr.splitlines()) == (
        1,
        "members: 4 rows: 2 imported, 0 unchanged, 1 conflicts, 1 bad\n",
        problems,
    )
    assert again.returncode == 1
    assert json.loads(again.stdout) == {
        "file": "members",
        "dry_run": False,
        "rows": 4,
        "imported": 0,
        "unchanged": 2,
        "conflicts": 1,
        "bad": 1,
        "problems": [
            {"line": 3, "status": "bad", "reason": "birthday: 1990-13-01 is not a date (YYYY-MM-DD)"},
            {"line": 4, "status": "conflict", "reason": "phone: already names member M1"},
        ],
    }
    assert again.stderr == ""
    assert lots.returncode == 1
    assert json.loads(lots.stdout) == {
        "file": "balances",
        "dry_run": False,
        "rows": 4,
        "imported": 3,
        "unchanged": 0,
        "conflicts": 0,
        "bad": 1,
        "points": 1500,
        "problems": [
            {
                "line": 5,
                "status": "bad",
                "reason": "member_id: M9 is not a member (import it with `loyalty import members` first)",
            }
        ],
    }
    assert (lots_again.returncode, lots_again.stdout) == (
        1,
        "balances: 4 rows: 0 imported, 3 unchanged, 0 conflicts, 1 bad (0 points)\n",
    )
    assert (audit.returncode, audit.stdout) == (0, "2 members checked, 0 differences\n")
    flow = json.loads(report.stdout)["reconciliation"]
    assert (flow["adjusted"], flow["earned"], flow["closing"], flow["balanced"]) == (1500, 0, 1500, True)


def test_a_file_that_cannot_be_read_exits_2_naming_the_problem(clean, tmp_path):  # noqa: F811
    env = clean
    unknown = tmp_path / "unknown.csv"
    unknown.write_text("member_id,nickname\nM1,Ann\n")
    missing = tmp_path / "missing.csv"

    header = loyalty(env, "import", "members", str(unknown))
    absent = loyalty(env, "import", "balances", str(missing))

    assert (header.returncode, header.stdout) == (2, "")
    assert header.stderr == (
        f"error: {unknown}: line 1: header: unknown column 'nickname'; the columns are member_id, phone, card, "
        "email, wechat_openid, birthday, locale, labels, tier, tier_floor_until, enrolled_at, lifetime_points, "
        "qualifying_points\n"
    )
    assert (absent.returncode, absent.stderr) == (2, f"error: {missing}: No such file or directory\n")
