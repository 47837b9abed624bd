"""Worker log lines: JSON in production, each line inside a message carrying its context."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import structlog

from tests.e2e.test_cli import clean  # noqa: F401 - fixture: empty schema and queues
from tests.factories import purchase
from worker.runtime import LogContextMiddleware

LOYALTY = str(Path(sys.executable).with_name("loyalty"))


class _Message:
    message_id = "m-1"
    actor_name = "process_event"
    args = ({"event_id": "e-1", "member_id": "M1"},)


def test_context_is_bound_for_the_message_and_cleared_after():
    middleware = LogContextMiddleware()

    middleware.before_process_message(None, _Message())
    bound = structlog.contextvars.get_contextvars()
    middleware.after_process_message(None, _Message())

    assert bound == {"message_id": "m-1", "actor": "process_event", "event_id": "e-1", "member_id": "M1"}
    assert structlog.contextvars.get_contextvars() == {}


def test_drain_writes_json_lines_with_message_context(clean):  # noqa: F811
    env = clean
    events = [purchase("LOG-1", "120.00", event_id="log-e1"), purchase("LOG-2", "80.00", event_id="log-e2")]
    published = subprocess.run(
        [LOYALTY, "publish", "-"],
        input="\n".join(json.dumps(e) for e in events),
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert published.returncode == 0, published.stderr

    drained = subprocess.run([LOYALTY, "drain", "--timeout", "60"], env=env, capture_output=True, text=True, timeout=90)

    assert drained.returncode == 0, drained.stderr
    lines = [json.loads(line) for line in drained.stderr.splitlines() if line.startswith("{")]
    processed = sorted((log for log in lines if log["event"] == "event_processed"), key=lambda log: log["event_id"])
    assert [(log["event_id"], log["member_id"], log["actor"], log["status"], log["points"]) for log in processed] == [
        ("log-e1", "LOG-1", "process_event", "applied", 220),
        ("log-e2", "LOG-2", "process_event", "applied", 180),
    ]
    assert all(len(log["message_id"]) == 36 and log["level"] == "info" for log in processed)
    assert len({log["message_id"] for log in processed}) == 2
