"""Decoding of queued messages that tolerates garbage.

Producers in any language write messages straight into Redis (docs/wire-format.md). Dramatiq's
own decoder raises on a message that is not valid JSON or lacks a field; the consumer then
drops it from its cache but leaves it unacked in Redis, where it stays forever and keeps the
queue from ever reading as empty. This decoder turns such a message into one for the
`reject_message` actor, which stores it in rejected_events with the reason and acks it.
"""

from __future__ import annotations

import json
import re
import time
from typing import Any

from dramatiq.encoder import JSONEncoder, MessageData
from dramatiq.errors import DecodeError

REJECT_ACTOR = "reject_message"
# The part of an undecodable message kept for inspection; the rest is cut so a hostile
# producer cannot fill the database through it.
RAW_KEPT_CHARS_MAX = 64 * 1024
_REQUIRED = {"queue_name": str, "actor_name": str, "args": list, "kwargs": dict, "options": dict,
             "message_id": str, "message_timestamp": int}
_REDIS_ID = re.compile(rb'"redis_message_id"\s*:\s*"([0-9A-Za-z-]{1,64})"')


def _problem(fields: Any) -> str | None:
    if not isinstance(fields, dict):
        return f"message: must be a JSON object, got {type(fields).__name__}"
    for key, kind in _REQUIRED.items():
        if key not in fields:
            return f"message.{key}: is required"
        if not isinstance(fields[key], kind) or (kind is int and isinstance(fields[key], bool)):
            return f"message.{key}: must be a JSON {'array' if kind is list else kind.__name__}"
    if not isinstance(fields["options"].get("redis_message_id", ""), str):
        return "message.options.redis_message_id: must be a string"
    return None


class TolerantJSONEncoder(JSONEncoder):
    """`actors` are the names this worker declares; a message for any other name is rejected
    the same way (dramatiq would move it to the dead-letter queue, out of sight)."""

    def __init__(self, actors: frozenset[str] = frozenset()):
        self.actors = actors

    def decode(self, data: bytes) -> MessageData:
        try:
            fields = super().decode(data)
            problem = _problem(fields)
            if problem is None and self.actors and fields["actor_name"] not in self.actors:
                name = fields["actor_name"][:64]
                problem = f"message.actor_name: {name!r} is not an actor of this worker"
        except DecodeError as error:
            fields, problem = None, f"message: not valid JSON ({type(error.error).__name__})"
        if problem is None:
            return fields
        redis_id = _redis_id(data, fields)
        if redis_id is None:
            # Nothing to ack it by: the broker's own error path logs it and moves on.
            raise DecodeError(problem, data, ValueError(problem))
        text = data.decode("utf-8", errors="replace")[:RAW_KEPT_CHARS_MAX]
        return {"queue_name": "events", "actor_name": REJECT_ACTOR, "args": [text, problem], "kwargs": {},
                "options": {"redis_message_id": redis_id}, "message_id": redis_id,
                "message_timestamp": int(time.time() * 1000)}


def _redis_id(data: bytes, fields: Any) -> str | None:
    if isinstance(fields, dict) and isinstance(fields.get("options"), dict):
        value = fields["options"].get("redis_message_id")
        if isinstance(value, str):
            return value
    match = _REDIS_ID.search(data if isinstance(data, bytes) else json.dumps(data).encode())
    return match.group(1).decode() if match else None
