"""Open missions as `loyalty member show` (text and --json) and `GET /v1/members/{id}` show them."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import httpx

from tests.e2e.api_server import api_process
from tests.e2e.test_api import ev, make_key
from tests.e2e.test_cli import clean, loyalty  # noqa: F401  (clean is a fixture)
from tests.integration.test_missions import MISSION_RULE
from worker.domain.engine.language import DEFAULT_PROGRAM_PATH

MISSIONS = (
    MISSION_RULE
    + """
[[rules]]
id = "explorer"
effect = { kind = "fixed", points = 50 }
mission = { within_days = 7, steps = [
  { name = "share", on = "activity", when = { kinds = ["share"] } },
  { name = "check_in", on = "check_in" },
] }
"""
)


def test_member_show_and_the_api_list_open_missions_with_their_progress(clean, tmp_path):  # noqa: F811
    program = tmp_path / "program.toml"
    program.write_text(DEFAULT_PROGRAM_PATH.read_text() + MISSIONS)
    env = {**clean, "LOYALTY_PROGRAM_FILE": str(program)}
    zone = ZoneInfo("Asia/Shanghai")
    yesterday = (datetime.now(UTC).astimezone(zone) - timedelta(days=1)).replace(hour=10, minute=0, second=0)
    profile_at = yesterday.replace(microsecond=0)
    bought_at = profile_at + timedelta(hours=2)
    # The purchase arrives first; the profile step, two hours earlier, arrives late.
    events = tmp_path / "events.jsonl"
    events.write_text(
        "\n".join(
            json.dumps(e)
            for e in (
                ev(
                    "b-1",
                    "purchase",
                    "M1",
                    occurred_at=bought_at.isoformat(),
                    order_id="o-1",
                    amount="80.00",
                    currency="CNY",
                ),
                ev("a-1", "activity", "M1", source="app", occurred_at=profile_at.isoformat(), kind="profile_completed"),
            )
        )
        + "\n"
    )
    assert loyalty(env, "db", "upgrade").returncode == 0
    assert loyalty(env, "publish", str(events)).returncode == 0
    drained = loyalty(env, "drain", "--timeout", "60", "--threads", "1")
    assert drained.returncode == 0, drained.stderr

    shown = loyalty(env, "member", "show", "M1", "--json")
    text = loyalty(env, "member", "show", "M1")
    with api_process(env, tmp_path / "api.log") as url:
        key = make_key(env, "app-1", "members:read")
        response = httpx.get(f"{url}/v1/members/M1", headers=key)

    ends_at = profile_at + timedelta(days=30)
    missions = [
        {
            "rule": "starter",
            "description": "complete your profile, make a first purchase and review it",
            "steps_done": 2,
            "steps_total": 3,
            "done": ["complete_profile", "first_purchase"],
            "remaining": ["first_review"],
            "started_at": profile_at.isoformat(),
            "ends_at": ends_at.isoformat(),
        },
        {
            "rule": "explorer",
            "description": "",
            "steps_done": 0,
            "steps_total": 2,
            "done": [],
            "remaining": ["share", "check_in"],
            "started_at": None,
            "ends_at": None,
        },
    ]
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["missions"] == missions
    assert text.returncode == 0, text.stderr
    lines = text.stdout.splitlines()
    at = next(n for n, line in enumerate(lines) if line.strip().startswith("missions:"))
    assert lines[at : at + 2] == [
        f"            missions: starter: 2 of 3 steps done, remaining first_review, until {ends_at:%Y-%m-%d} 10:00",
        "                      explorer: 0 of 2 steps done, remaining share, check_in",
    ]
    assert response.status_code == 200, response.text
    assert response.json()["missions"] == missions
