"""The command line as operators and producers use it: real processes, real services."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

LOYALTY = str(Path(sys.executable).parent / "loyalty")


def loyalty(env: dict, *args: str, stdin: str | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([LOYALTY, *args], env=env, input=stdin, capture_output=True, text=True, timeout=timeout)


def line(**event) -> str:
    base = {"source": "pos", "occurred_at": "2026-11-03T10:00:00+08:00", "payload": {}}
    return json.dumps({**base, **event})


@pytest.fixture
def clean(db, env):
    """An empty schema and an empty queue namespace."""
    import redis

    from tests.conftest import REDIS_URL

    client = redis.Redis.from_url(REDIS_URL)
    for key in client.scan_iter(f"{env['LOYALTY_NAMESPACE']}:*"):
        client.delete(key)
    return env


def test_publish_drain_show_history_notifications_audit(clean, tmp_path):
    env = clean
    events = tmp_path / "events.jsonl"
    events.write_text(
        "\n".join(
            [
                line(event_id="s-1", type="signup", member_id="M1", source="app", payload={"locale": "en"}),
                line(
                    event_id="p-1",
                    type="purchase",
                    member_id="M1",
                    payload={"order_id": "o-1", "amount": "4500.00", "currency": "CNY"},
                ),
                '{"event_id": "broken"',
                line(
                    event_id="p-2",
                    type="purchase",
                    member_id="M1",
                    payload={"order_id": "o-2", "amount": "1.999", "currency": "CNY"},
                ),
                "",
                line(event_id="c-1", type="check_in", member_id="M1", source="mini_program"),
                line(
                    event_id="p-1",
                    type="purchase",
                    member_id="M1",
                    payload={"order_id": "o-1", "amount": "4500.00", "currency": "CNY"},
                ),  # resent: a duplicate
            ]
        )
        + "\n"
    )

    assert loyalty(env, "db", "upgrade").returncode == 0
    published = loyalty(env, "publish", str(events))
    drained = loyalty(env, "drain", "--timeout", "60", "--threads", "1")  # one thread: queue order
    show = loyalty(env, "member", "show", "M1", "--json")
    history = loyalty(env, "member", "history", "M1", "--json")
    notes = loyalty(env, "notifications", "list", "--member", "M1", "--json")
    audit = loyalty(env, "audit", "--json")

    assert published.returncode == 1
    assert published.stderr.splitlines() == [
        "line 3: event: not valid JSON: Expecting ',' delimiter: line 1 column 22 (char 21)",
        "line 4: payload.amount: must have at most 2 decimal places",
    ]
    assert published.stdout.strip() == "published 4 events in 4 messages; 2 invalid lines"
    assert drained.returncode == 0, drained.stderr
    view = json.loads(show.stdout)
    assert {
        k: view[k]
        for k in (
            "member_id",
            "tier",
            "available_points",
            "pending_points",
            "qualifying_points",
            "lifetime_points",
            "next_tier",
            "points_to_next_tier",
            "locale",
        )
    } == {
        "member_id": "M1",
        "tier": "Silver",
        "available_points": 4660,
        "pending_points": 0,
        "qualifying_points": 4660,
        "lifetime_points": 4660,
        "next_tier": "Gold",
        "points_to_next_tier": 340,
        "locale": "en",
    }
    entries = json.loads(history.stdout)
    assert sorted((e["kind"], e["points"], e["event"]["type"]) for e in entries) == [
        ("earn", 10, "check_in"),
        ("earn", 50, "signup"),
        ("earn", 4600, "purchase"),
    ]
    assert sorted((n["kind"], n["text"]) for n in json.loads(notes.stdout)) == [
        ("points_earned", "You earned 10 points. Available balance: 4660."),
        ("points_earned", "You earned 4600 points. Available balance: 4650."),
        ("points_earned", "You earned 50 points. Available balance: 50."),
        ("tier_nudge", "You're only 350 points away from Gold."),
        ("tier_upgraded", "Congratulations! You are now a Silver member."),
    ]
    assert json.loads(audit.stdout) == {"members_checked": 1, "clean": True, "differences": []}


def test_demo_runs_without_servers_and_tells_the_story():
    demo = subprocess.run(
        [LOYALTY, "demo"],
        capture_output=True,
        text=True,
        timeout=300,
        env={k: v for k, v in os.environ.items() if not k.startswith("LOYALTY_")},
    )

    assert demo.returncode == 0, demo.stderr
    out = demo.stdout
    assert "Events: 21 processed - 19 applied, 1 duplicate, 0 deferred, 1 rejected" in out
    assert "M1001    Gold          5008       5008  9992 points to Diamond" in out
    # The outbox goes out day by day: each nudge says what was true when it was sent, and the
    # second comes within the first's quiet period (the demo's dispatches are seconds apart).
    assert "M1001  tier_nudge    sent  You're only 380 points away from Silver.\n" in out
    assert (
        "M1001  tier_nudge    suppressed You're only 400 points away from Gold. (quiet period: a tier nudge went out at "
        in out
    )
    assert "pos/pos-00032: payload.amount: must have at most 2 decimal places" in out
    assert "Audit: balances match entries and lots." in out


def test_program_check_names_the_bad_key(tmp_path, env):
    bad = tmp_path / "program.toml"
    bad.write_text("[check_in]\npoints = 10\nstreak = 7\n")

    result = loyalty(env, "program", "check", str(bad))

    assert result.returncode == 2
    assert result.stderr.strip() == f"error: {bad}: check_in.streak: unknown key"


def test_publish_dry_run_validates_without_enqueuing(clean, tmp_path):
    import redis

    from tests.conftest import REDIS_URL

    events = tmp_path / "events.jsonl"
    events.write_text(line(event_id="s-1", type="signup", member_id="M1") + "\n" + '{"event_id": "broken"\n')
    # No Redis needed: a dry run never connects.
    offline = {**clean, "LOYALTY_REDIS_URL": "redis://127.0.0.1:1/0"}

    dry = loyalty(offline, "publish", "--dry-run", str(events))

    assert (dry.returncode, dry.stdout) == (1, "dry run: 1 valid events, 1 invalid lines; nothing enqueued\n")
    assert dry.stderr.startswith("line 2: ")
    assert list(redis.Redis.from_url(REDIS_URL).scan_iter(f"{clean['LOYALTY_NAMESPACE']}:*")) == []


def test_stats_reads_lag_in_human_units_and_lists_worker_heartbeats(clean, tmp_path):
    import re
    import socket
    from datetime import UTC, datetime, timedelta

    events = tmp_path / "events.jsonl"
    three_days_ago = (datetime.now(UTC) - timedelta(days=3)).isoformat()
    events.write_text(line(event_id="s-1", type="signup", member_id="M1", occurred_at=three_days_ago) + "\n")
    assert loyalty(clean, "db", "upgrade").returncode == 0
    assert loyalty(clean, "publish", str(events)).returncode == 0
    assert loyalty(clean, "drain", "--timeout", "60", "--threads", "1").returncode == 0

    done = loyalty(clean, "stats")

    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert "lag over 15 min: 1 events, avg 3.0 d, max 3.0 d" in lines
    # The drain's worker left its heartbeat (dramatiq drops it after the heartbeat timeout).
    host = re.escape(socket.gethostname())
    pattern = rf"worker {host} pid [0-9]+: last heartbeat \S+ \([0-9.]+ s ago\)"
    assert any(re.fullmatch(pattern, x) for x in lines), lines
