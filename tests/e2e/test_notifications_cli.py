"""`loyalty notifications ...` as subprocesses against this run's database."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from sqlalchemy import text

from tests.receiver import Receiver
from worker.domain.signing import verify

LOYALTY = str(Path(sys.executable).parent / "loyalty")


def loyalty(env, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([LOYALTY, *args], env=env, capture_output=True, text=True, timeout=60)


async def seed(db) -> None:
    async with db.begin() as conn:
        await conn.execute(
            text(
                # M1 is 400 points below Gold, as its nudge says: a nudge is checked again when it goes out.
                "INSERT INTO members (member_id, tier, locale, qualifying_points) "
                "VALUES ('M1', 'Silver', 'zh-Hant', 4600), ('M2', 'Regular', NULL, 0)"
            )
        )
        await conn.execute(
            text(
                """
                INSERT INTO notifications (member_id, kind, params, status, attempts, last_error) VALUES
                ('M1', 'tier_nudge', '{"points_away": 400, "tier": "Gold"}', 'dead', 8, 'webhook answered HTTP 500'),
                ('M2', 'points_expired', '{"points": 30}', 'pending', 0, NULL)
                """
            )
        )


async def test_list_retry_and_dispatch_from_the_command_line(db, env):
    await seed(db)

    dead = loyalty(env, "notifications", "list", "--status", "dead", "--json")
    retried = loyalty(env, "notifications", "retry", "--failed")
    dispatched = loyalty(env, "notifications", "dispatch", "--json")
    sent = loyalty(env, "notifications", "list", "--member", "M1", "--status", "sent", "--json")

    assert dead.returncode == 0, dead.stderr
    [row] = json.loads(dead.stdout)
    assert (row["notification_id"], row["status"], row["attempts"], row["last_error"]) == (
        1,
        "dead",
        8,
        "webhook answered HTTP 500",
    )
    assert row["text"] == "您距離金卡僅差 400 點積分。"
    assert (retried.returncode, retried.stdout.strip()) == (0, "queued 1 notifications again: 1")
    assert dispatched.returncode == 0, dispatched.stderr
    assert json.loads(dispatched.stdout) == {
        "claimed": 2,
        "sent": 2,
        "failed": 0,
        "dead": 0,
        "held": 0,
        "suppressed": 0,
    }
    logged = [json.loads(line) for line in dispatched.stderr.splitlines() if line.startswith("{")]
    assert sorted(e["text"] for e in logged if e["event"] == "notification") == [
        "30 points have expired.",
        "您距離金卡僅差 400 點積分。",
    ]
    [row] = json.loads(sent.stdout)
    assert (row["status"], row["attempts"], row["channel"], row["locale"]) == ("sent", 1, "log", "zh-Hant")


async def test_command_line_errors_are_clear(db, env, tmp_path):
    await seed(db)
    program_file = tmp_path / "program.toml"
    program_file.write_text('[notifications]\nchannel = "webhook"\n', encoding="utf-8")
    bad_templates = tmp_path / "templates"
    bad_templates.mkdir()

    both = loyalty(env, "notifications", "retry", "1", "--failed")
    not_failed = loyalty(env, "notifications", "retry", "2")
    status = loyalty(env, "notifications", "list", "--status", "lost")
    no_url = loyalty({**env, "LOYALTY_PROGRAM_FILE": str(program_file)}, "notifications", "dispatch")
    templates = loyalty(env, "notifications", "check-templates", str(bad_templates))

    assert (both.returncode, both.stderr.strip()) == (2, "error: give a notification ID or --failed (not both)")
    assert (not_failed.returncode, not_failed.stderr.strip()) == (
        1,
        "error: notification 2 is not failed or dead (or does not exist)",
    )
    assert status.stderr.strip() == "error: --status must be one of pending, sending, sent, failed, dead, suppressed"
    assert (no_url.returncode, no_url.stderr.strip()) == (
        2,
        "error: notifications.channel is 'webhook' but neither LOYALTY_WEBHOOK_URL nor notifications.webhook_url is set",
    )
    assert templates.returncode == 2
    assert templates.stderr.strip() == f"error: {bad_templates / 'notifications.en.toml'}: no such template file"


async def test_webhook_dispatch_from_the_command_line_never_prints_the_secret(db, env, tmp_path):
    await seed(db)
    program_file = tmp_path / "program.toml"
    program_file.write_text('[notifications]\nchannel = "webhook"\n', encoding="utf-8")
    secret = "cli-secret-value-1234"
    with Receiver(lambda request, number: 500) as receiver:
        run_env = {
            **env,
            "LOYALTY_PROGRAM_FILE": str(program_file),
            "LOYALTY_WEBHOOK_URL": receiver.url,
            "LOYALTY_WEBHOOK_SECRET": secret,
        }
        result = loyalty(run_env, "notifications", "dispatch", "--json")

    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["failed"] == 1
    assert '"error": "webhook answered HTTP 500: boom"' in result.stderr
    assert secret not in result.stdout + result.stderr
    [request] = receiver.requests
    assert verify(
        secret,
        request.headers["X-Loyalty-Timestamp"],
        request.body,
        request.headers["X-Loyalty-Signature"],
        now_s=float(request.headers["X-Loyalty-Timestamp"]),
    )
