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


def test_drain_writes_json_lines_with_message_context(clean):
    env = clean
    events = [purchase("LOG-1", "120.00", event_id="log-e1"), purchase("LOG-2", "80.00", event_id="log-e2")]
    published = subprocess.run(
        [LOYALTY, "publish", "-"], input="\n".join(json.dumps(e) for e in events),
        env=env, capture_output=True, text=True, timeout=60,
    )
    assert published.returncode == 0, published.stderr

    drained = subprocess.run([LOYALTY, "drain", "--timeout", "60"], env=env,
                             capture_output=True, text=True, timeout=90)

    assert drained.returncode == 0, drained.stderr
    lines = [json.loads(line) for line in drained.stderr.splitlines() if line.startswith("{")]
    processed = sorted((l for l in lines if l["event"] == "event_processed"), key=lambda l: l["event_id"])
    assert [(l["event_id"], l["member_id"], l["actor"], l["status"], l["points"]) for l in processed] == [
        ("log-e1", "LOG-1", "process_event", "applied", 220),
        ("log-e2", "LOG-2", "process_event", "applied", 180),
    ]
    assert all(len(l["message_id"]) == 36 and l["level"] == "info" for l in processed)
    assert len({l["message_id"] for l in processed}) == 2
