"""`loyalty member set-tier` and `tier-history` as an operator runs them: real processes, exact output."""

from __future__ import annotations

import json
from datetime import datetime
from zoneinfo import ZoneInfo

from tests.e2e.test_cli import clean, line, loyalty  # noqa: F401  (clean is a fixture)

ZONE = ZoneInfo("Asia/Shanghai")


def _enrol_silver(env, tmp_path) -> None:
    events = tmp_path / "events.jsonl"
    # 1000.00: 1000 points and the 100-point first-purchase bonus, Silver.
    events.write_text(
        line(
            event_id="p-1",
            type="purchase",
            member_id="M1",
            payload={"order_id": "o-1", "amount": "1000.00", "currency": "CNY"},
        )
        + "\n"
    )
    assert loyalty(env, "db", "upgrade").returncode == 0
    assert loyalty(env, "publish", str(events)).returncode == 0
    assert loyalty(env, "drain", "--timeout", "60", "--threads", "1").returncode == 0


def test_set_tier_raises_the_tier_records_who_and_why_and_clears(clean, tmp_path):  # noqa: F811
    env = {**clean, "USER": "bob"}
    _enrol_silver(env, tmp_path)

    raised = loyalty(
        env,
        "member",
        "set-tier",
        "M1",
        "Gold",
        "--until",
        "2099-12-31",
        "--reason",
        "complaint handled",
        "--by",
        "alice",
    )
    shown = loyalty(env, "member", "show", "M1", "--json")
    shown_text = loyalty(env, "member", "show", "M1")
    again = loyalty(env, "member", "set-tier", "M1", "Gold", "--reason", "keeps Gold for good")
    cleared = loyalty(env, "member", "set-tier", "M1", "--clear", "--reason", "offer ended", "--json")
    nothing = loyalty(env, "member", "set-tier", "M1", "Regular", "--reason", "offer ended")
    history = loyalty(env, "member", "tier-history", "M1")
    history_json = loyalty(env, "member", "tier-history", "M1", "--json")

    assert (raised.returncode, raised.stdout, raised.stderr) == (
        0,
        "member M1: floor Gold until 2099-12-31, set by alice; tier Silver -> Gold\n",
        "",
    )
    view = json.loads(shown.stdout)
    floor = view["tier_floor"]
    assert (view["tier"], floor["tier"], floor["ends_on"], floor["in_force"], floor["reason"], floor["set_by"]) == (
        "Gold",
        "Gold",
        "2099-12-31",
        True,
        "complaint handled",
        "alice",
    )
    set_on = datetime.fromisoformat(floor["set_at"]).astimezone(ZONE).date()
    assert f"          tier_floor: Gold until 2099-12-31 (set by alice on {set_on}: complaint handled)" in (
        shown_text.stdout.splitlines()
    )
    assert (again.returncode, again.stdout) == (0, "member M1: floor Gold without end, set by bob; tier stays Gold\n")
    assert cleared.returncode == 0, cleared.stderr
    assert {k: v for k, v in json.loads(cleared.stdout).items() if k != "floor_id"} == {
        "member_id": "M1",
        "floor": None,
        "tier_before": "Gold",
        "tier": "Gold",
        "tier_changed": False,
    }
    assert (nothing.returncode, nothing.stdout) == (0, "member M1: no floor to remove; tier stays Gold\n")
    assert json.loads(loyalty(env, "member", "show", "M1", "--json").stdout)["tier_floor"] is None
    first_floor = next(r["floor_id"] for r in json.loads(history_json.stdout) if r["kind"] == "floor")
    # Each line starts with the local time of the change ("2026-12-01 23:12  ").
    assert [row[len("YYYY-MM-DD HH:MM  ") :] for row in history.stdout.splitlines()] == [
        "Regular -> Silver  upgrade (pos p-1)",
        "floor Gold until 2099-12-31 set by alice: complaint handled",
        f"Silver -> Gold  operator floor: complaint handled (operator floor:{first_floor})",
        "floor Gold without end set by bob: keeps Gold for good",
        "floor removed by bob: offer ended",
    ]


def test_set_tier_refusals_and_their_exit_codes(clean, tmp_path):  # noqa: F811
    env = clean
    _enrol_silver(env, tmp_path)

    unknown_tier = loyalty(env, "member", "set-tier", "M1", "Platinum", "--reason", "typo")
    unknown_member = loyalty(env, "member", "set-tier", "NOBODY", "Gold", "--reason", "wrong id")
    no_reason = loyalty(env, "member", "set-tier", "M1", "Gold")
    blank_reason = loyalty(env, "member", "set-tier", "M1", "Gold", "--reason", "  ")
    past = loyalty(env, "member", "set-tier", "M1", "Gold", "--until", "2020-01-01", "--reason", "late")
    not_a_date = loyalty(env, "member", "set-tier", "M1", "Gold", "--until", "31/12", "--reason", "late")
    both = loyalty(env, "member", "set-tier", "M1", "Gold", "--clear", "--reason", "both")
    neither = loyalty(env, "member", "set-tier", "M1", "--reason", "neither")
    history_of_nobody = loyalty(env, "member", "tier-history", "NOBODY")

    assert (unknown_tier.returncode, unknown_tier.stdout, unknown_tier.stderr) == (
        2,
        "",
        "error: unknown tier 'Platinum'; tiers: Regular, Silver, Gold, Diamond\n",
    )
    assert (unknown_member.returncode, unknown_member.stdout, unknown_member.stderr) == (
        1,
        "",
        "error: no member 'NOBODY'\n",
    )
    assert no_reason.returncode == 2 and "Missing option '--reason'" in no_reason.stderr
    assert (blank_reason.returncode, blank_reason.stderr) == (2, "error: reason must not be empty\n")
    assert (past.returncode, past.stderr) == (
        2,
        "error: the floor would end on 2020-01-01, which is in the past (program time zone Asia/Shanghai)\n",
    )
    assert (not_a_date.returncode, not_a_date.stderr) == (2, "error: --until: '31/12' is not a date (YYYY-MM-DD)\n")
    assert (both.returncode, both.stderr) == (2, "error: give a tier or --clear, not both\n")
    assert (neither.returncode, neither.stderr) == (2, "error: give a tier, or --clear to remove the floor\n")
    assert (history_of_nobody.returncode, history_of_nobody.stderr) == (1, "error: no member 'NOBODY'\n")
    # Nothing was written by any of them.
    view = json.loads(loyalty(env, "member", "show", "M1", "--json").stdout)
    assert (view["tier"], view["tier_floor"]) == ("Silver", None)
