"""The scheduler's command line with real workers: `scheduler run --now`, then `drain`."""

from __future__ import annotations

import json

from tests.e2e.test_cli import clean, line, loyalty  # noqa: F401 - fixture

PURCHASE_2025 = dict(
    event_id="p-1",
    type="purchase",
    member_id="M1",
    occurred_at="2025-01-01T10:00:00+08:00",
    payload={"order_id": "o-1", "amount": "300.00", "currency": "CNY"},
)


def test_expiry_for_a_given_day_then_drain_then_member_show(clean, tmp_path):  # noqa: F811
    env = clean
    events = tmp_path / "events.jsonl"
    events.write_text(line(**PURCHASE_2025) + "\n")
    assert loyalty(env, "publish", str(events)).returncode == 0

    early = loyalty(env, "scheduler", "run", "expire-points", "--now", "2025-12-31T00:05:00+08:00")
    assert loyalty(env, "drain", "--timeout", "60").returncode == 0
    before = json.loads(loyalty(env, "member", "show", "M1", "--json").stdout)
    due = loyalty(env, "scheduler", "run", "expire-points", "--now", "2026-01-02T00:05:00+08:00")
    again = loyalty(env, "scheduler", "run", "expire-points", "--now", "2026-01-02T00:05:00+08:00")
    assert loyalty(env, "drain", "--timeout", "60").returncode == 0
    after = json.loads(loyalty(env, "member", "show", "M1", "--json").stdout)
    history = json.loads(loyalty(env, "member", "history", "M1", "--json").stdout)
    audit = loyalty(env, "audit")

    assert early.stdout.strip() == "enqueued expire-points for 2025-12-31T00:05:00+08:00"
    assert (due.returncode, again.returncode) == (0, 0)
    assert (before["available_points"], after["available_points"], after["qualifying_points"]) == (400, 0, 400)
    assert sorted((e["kind"], e["points"]) for e in history) == [("earn", 400), ("expire", -400)]
    assert audit.returncode == 0, audit.stdout


def test_jobs_listing_and_bad_arguments(clean):  # noqa: F811
    env = clean
    listing = json.loads(loyalty(env, "scheduler", "jobs", "--json").stdout)
    unknown = loyalty(env, "scheduler", "run", "expire")
    naive = loyalty(env, "scheduler", "run", "birthday", "--now", "2026-01-02T00:10:00")

    assert [(j["job"], j["enabled"], j["cron"]) for j in listing] == [
        ("expire-points", True, "5 0 * * *"),
        ("expiry-warnings", True, "0 10 * * *"),
        ("release-pending", True, "0 * * * *"),
        ("birthday", True, "10 0 * * *"),
        ("member-day", True, "0 9 * * *"),
        ("tier-review", False, "0 2 1 1 *"),
    ]
    assert all(j["next_run_at"] for j in listing if j["enabled"])
    assert (unknown.returncode, unknown.stderr.strip()) == (
        2,
        "error: unknown job 'expire'; jobs: expire-points, expiry-warnings, release-pending, birthday, member-day, tier-review",
    )
    assert naive.returncode == 2
    assert (
        naive.stderr.strip() == "error: --now: '2026-01-02T00:10:00' needs a UTC offset, e.g. 2026-01-02T00:05:00+08:00"
    )


def test_a_firing_more_than_a_day_ahead_needs_force_and_says_what_it_does(clean, tmp_path):  # noqa: F811
    from datetime import UTC, datetime, timedelta

    env = clean
    events = tmp_path / "events.jsonl"
    events.write_text(line(**PURCHASE_2025) + "\n")
    assert loyalty(env, "publish", str(events)).returncode == 0
    assert loyalty(env, "drain", "--timeout", "60").returncode == 0
    ahead = (datetime.now(UTC) + timedelta(days=400)).replace(microsecond=0).isoformat()

    refused = loyalty(env, "scheduler", "run", "expire-points", "--now", ahead)
    assert loyalty(env, "drain", "--timeout", "60").returncode == 0
    kept = json.loads(loyalty(env, "member", "show", "M1", "--json").stdout)
    forced = loyalty(env, "scheduler", "run", "expire-points", "--now", ahead, "--force")
    assert loyalty(env, "drain", "--timeout", "60").returncode == 0
    expired = json.loads(loyalty(env, "member", "show", "M1", "--json").stdout)

    effect = (
        f"expire-points for {ahead} is 400 days ahead of the clock: it will expire every lot whose "
        "expiry is before then, taking those points from members"
    )
    assert (refused.returncode, refused.stdout, refused.stderr) == (
        1,
        "",
        f"error: {effect}; pass --force to enqueue it\n",
    )
    assert kept["available_points"] == 400
    assert (forced.returncode, forced.stderr, forced.stdout) == (
        0,
        f"warning: {effect}\n",
        f"enqueued expire-points for {ahead}\n",
    )
    assert expired["available_points"] == 0
