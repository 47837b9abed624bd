"""Recovery without SQL: dead letters replayed after a fix, rejected events after a program change."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from sqlalchemy import text

from tests.factories import purchase
from worker.broker import build_broker
from worker.config import Settings

LOYALTY = str(Path(sys.executable).with_name("loyalty"))


def loyalty(env, *args, check=True):
    done = subprocess.run([LOYALTY, *args], env=env, capture_output=True, text=True, timeout=120)
    if check:
        assert done.returncode == 0, done.stdout + done.stderr
    return done


async def scalar(db, sql):
    async with db.connect() as conn:
        return (await conn.execute(text(sql))).scalar_one()


async def test_poisoned_message_is_dead_lettered_and_replayed_after_the_fix(env, db):
    # Given a message that fails with its retries exhausted: its idempotency table is missing.
    async with db.begin() as conn:
        await conn.execute(text("ALTER TABLE processed_events RENAME TO processed_events_away"))
    try:
        broker = build_broker(Settings.from_env(env))
        broker.get_actor("process_event").send_with_options(
            args=(purchase("DLQ-1", "200.00", event_id="dlq-e1"),), max_retries=0
        )
        loyalty(env, "drain", "--timeout", "60")
        dead = json.loads(loyalty(env, "dlq", "list", "--json").stdout)
    finally:
        async with db.begin() as conn:
            await conn.execute(text("ALTER TABLE processed_events_away RENAME TO processed_events"))
    stats = json.loads(loyalty(env, "stats", "--json").stdout)

    # The broker keeps the message as it was enqueued: the error is in the worker's log only.
    assert [(d["queue"], d["actor"], d["event_id"]) for d in dead] == [("events", "process_event", "dlq-e1")]
    assert stats["queues"]["events"] == {"ready": 0, "in_flight": 0, "delayed": 0, "dead": 1}

    # When the fix is in and the dead letter is replayed
    replayed = loyalty(env, "dlq", "replay", "--all")
    loyalty(env, "drain", "--timeout", "60")

    # Then it is applied once, and the dead-letter queue is empty.
    assert replayed.stdout.splitlines()[-1] == "1 messages replayed"
    assert await scalar(db, "SELECT available_points FROM members WHERE member_id = 'DLQ-1'") == 300
    after = json.loads(loyalty(env, "stats", "--json").stdout)
    assert after["queues"]["events"]["dead"] == 0


async def test_rejected_event_replays_after_a_program_change(env, db, tmp_path):
    broker = build_broker(Settings.from_env(env))
    broker.get_actor("process_event").send(purchase("REJ-1", "50.00", currency="USD", event_id="rej-e1"))
    loyalty(env, "drain", "--timeout", "60")
    [row] = json.loads(loyalty(env, "rejected", "list", "--json").stdout)
    assert row["reason"] == "payload.currency: USD is not accepted by this program (accepted: CNY)"

    same_program = loyalty(env, "rejected", "replay", str(row["rejected_id"]), check=False)
    program = tmp_path / "program.toml"
    program.write_text('[purchase]\ncurrencies = ["CNY", "USD"]\n')
    changed = loyalty({**env, "LOYALTY_PROGRAM_FILE": str(program)}, "rejected", "replay", str(row["rejected_id"]))
    again = loyalty(env, "rejected", "replay", str(row["rejected_id"]), check=False)

    assert same_program.returncode == 1
    assert "rejected again: payload.currency: USD is not accepted" in same_program.stderr
    assert changed.stdout.strip() == f"#{row['rejected_id']} applied, 150 points"
    assert await scalar(db, "SELECT available_points FROM members WHERE member_id = 'REJ-1'") == 150
    assert await scalar(db, "SELECT status FROM rejected_events") == "replayed"
    assert again.returncode == 1 and "already replayed" in again.stderr
    assert json.loads(loyalty(env, "rejected", "list", "--json").stdout) == []
