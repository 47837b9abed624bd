"""Decoding of queued messages that tolerates garbage, and the check that each message belongs
to the queue it came from.

Producers in any language write messages straight into Redis (docs/wire-format.md). Dramatiq's
own decoder raises on a message that is not valid JSON or lacks a field; the consumer then
drops it from its cache but leaves it unacked in Redis, where it stays forever and keeps the
queue from ever reading as empty. This decoder turns such a message into one for the
`reject_message` actor, which stores it in rejected_events with the reason and acks it.

Trust follows queues: producers write the events queue, only the scheduler and the worker
write the others. A message naming an actor of another queue (a calendar job sent on the
events queue, say) is rejected the same way, before any actor runs.
"""

from __future__ import annotations

import inspect
import json
import re
import time
from collections.abc import Mapping
from typing import Any

import orjson
from dramatiq.broker import MessageProxy
from dramatiq.brokers.redis import RedisBroker, _RedisConsumer
from dramatiq.common import q_name
from dramatiq.encoder import JSONEncoder, MessageData
from dramatiq.errors import DecodeError
from dramatiq.message import Message

from worker.domain.events import JSON_DEPTH_MAX, nested_deeper_than, safe_text

REJECT_ACTOR = "reject_message"
# The part of an undecodable message kept for inspection; the rest is cut so a hostile
# producer cannot fill the database through it.
RAW_KEPT_CHARS_MAX = 64 * 1024
# The largest message decoded at all: well above a batch message of the largest size (4 MiB
# of events), so that an over-size batch is still told apart by the batch's own check.
# Anything bigger is refused unread.
MESSAGE_BYTES_MAX = 16 * 1024 * 1024
# A message wraps its events in three more levels: the message, its args, a batch's list.
MESSAGE_DEPTH_MAX = JSON_DEPTH_MAX + 3
_REQUIRED = {
    "queue_name": str,
    "actor_name": str,
    "args": list,
    "kwargs": dict,
    "options": dict,
    "message_id": str,
    "message_timestamp": int,
}
# 19 digits in a row may be an integer orjson would read as a float (or only a long string of
# digits, which the standard library then decodes just the same).
_LONG_DIGITS = re.compile(rb"[0-9]{19}")
_REDIS_ID = re.compile(rb'"redis_message_id"\s*:\s*"([0-9A-Za-z-]{1,64})"')


def _problem(fields: Any, redis: bool) -> str | None:
    if not isinstance(fields, dict):
        return f"message: must be a JSON object, got {type(fields).__name__}"
    for key, kind in _REQUIRED.items():
        if key not in fields:
            return f"message.{key}: is required"
        if not isinstance(fields[key], kind) or (kind is int and isinstance(fields[key], bool)):
            return f"message.{key}: must be a JSON {'array' if kind is list else kind.__name__}"
    if redis and "redis_message_id" not in fields["options"]:
        return "message.options.redis_message_id: is required"
    if not isinstance(fields["options"].get("redis_message_id", ""), str):
        return "message.options.redis_message_id: must be a string"
    return None


def arguments_problem(name: str, signature: inspect.Signature, args: list, kwargs: dict) -> str | None:
    """Why a message's arguments do not fit its actor (which would raise TypeError on every
    retry), or None."""
    try:
        signature.bind(*args, **kwargs)
    except TypeError:
        shown = ", ".join(signature.parameters)
        return f"message.args: {name}({shown}) cannot take {len(args)} positional and {len(kwargs)} keyword arguments"
    return None


class TolerantJSONEncoder(JSONEncoder):
    """`actors` maps the names this worker declares to their signatures; a message for any
    other name, or with arguments its actor cannot take, is rejected the same way (dramatiq
    would move it to the dead-letter queue, out of sight, or fail it on every retry)."""

    def __init__(self, actors: Mapping[str, inspect.Signature] | None = None, *, redis: bool = True):
        self.actors = dict(actors or {})
        # Messages read from Redis are acked by their redis_message_id; in-process ones have none.
        self.redis = redis

    def decode(self, data: bytes) -> MessageData:
        fields: Any = None
        if len(data) > MESSAGE_BYTES_MAX:
            problem: str | None = f"message: {len(data)} bytes is over the limit of {MESSAGE_BYTES_MAX} bytes"
        else:
            try:
                fields = self._fast_decode(data)
                # Depth first: a message nested too deep is refused for that whatever else it
                # lacks (orjson decodes up to 1,024 levels, where the standard library's
                # decoder ran out of recursion and said so before anything else was checked).
                if nested_deeper_than(fields, MESSAGE_DEPTH_MAX):
                    problem = f"message: nests arrays and objects deeper than {MESSAGE_DEPTH_MAX} levels"
                else:
                    problem = _problem(fields, self.redis)
            except DecodeError as error:
                problem = f"message: not valid JSON ({type(error.error).__name__})"
            except RecursionError:
                problem = f"message: nests arrays and objects deeper than {MESSAGE_DEPTH_MAX} levels"
            except ValueError as error:  # e.g. an integer of more digits than Python converts
                problem = f"message: not valid JSON ({type(error).__name__})"
        if problem is None and self.actors:
            name = fields["actor_name"]
            if name not in self.actors:
                problem = f"message.actor_name: {safe_text(name, 64)!r} is not an actor of this worker"
            else:
                problem = arguments_problem(name, self.actors[name], fields["args"], fields["kwargs"])
        if problem is None:
            return fields
        redis_id = _redis_id(data, fields)
        if redis_id is None:
            # No id to ack it by in the bytes: the Redis consumer finds it (below).
            raise DecodeError(problem, data, ValueError(problem))
        return rejection(data.decode("utf-8", errors="replace"), problem, redis_id, redis_id)

    def _fast_decode(self, data: bytes) -> Any:
        """orjson where it decodes as the standard library does (several times faster); what
        it refuses (NaN, numbers out of range, lone surrogates, bad UTF-8) or reads otherwise
        (an integer of more than 64 bits becomes a float) goes through dramatiq's decoder as
        before, so what is accepted and every rejection reason stay the same."""
        if _LONG_DIGITS.search(data) is None:
            try:
                return orjson.loads(data)
            except orjson.JSONDecodeError:
                pass
        return super().decode(data)


def rejection(raw: str, problem: str, message_id: str, redis_id: str) -> MessageData:
    """A message for the reject_message actor in place of one that cannot be run."""
    return {
        "queue_name": "events",
        "actor_name": REJECT_ACTOR,
        "args": [raw[:RAW_KEPT_CHARS_MAX], problem],
        "kwargs": {},
        "options": {"redis_message_id": redis_id},
        "message_id": message_id,
        "message_timestamp": int(time.time() * 1000),
    }


def _redis_id(data: bytes, fields: Any) -> str | None:
    if isinstance(fields, dict) and isinstance(fields.get("options"), dict):
        value = fields["options"].get("redis_message_id")
        if isinstance(value, str):
            return value
    match = _REDIS_ID.search(data if isinstance(data, bytes) else json.dumps(data).encode())
    return match.group(1).decode() if match else None


def queue_problem(actor_queue: str | None, message_queue: str, consumed_queue: str) -> str | None:
    """Why a message may not run from the queue it was read from, or None."""
    consumed = q_name(consumed_queue)
    if q_name(message_queue) != consumed:
        return f"message.queue_name: {safe_text(message_queue, 64)!r} was read from queue {consumed!r}"
    if actor_queue is not None and actor_queue != consumed:
        return f"message.actor_name: the actor belongs to queue {actor_queue!r}, not {consumed!r}"
    return None


class _QueueCheckedConsumer(_RedisConsumer):
    def __init__(self, broker, queue_name, prefetch, timeout):
        # dramatiq gives every queue of a worker the same prefetch (2 × threads); the broker's
        # queue_prefetch lowers it for the queues it names.
        cap = broker.queue_prefetch.get(queue_name)
        super().__init__(broker, queue_name, prefetch if cap is None else min(prefetch, cap), timeout)

    def __next__(self):
        try:
            proxy = super().__next__()
        except DecodeError as error:
            return self._undecodable(error)
        if proxy is None:
            return proxy
        message = proxy._message
        if proxy.actor_name == REJECT_ACTOR:
            # The worker acks a message through the consumer its queue_name names: a rejection
            # made by the decoder must name the queue it was read from.
            if message.queue_name == self.queue_name:
                return proxy
            return type(proxy)(message.copy(queue_name=self.queue_name))
        actor = self.broker.actors.get(proxy.actor_name)
        problem = queue_problem(actor.queue_name if actor else None, proxy.queue_name, self.queue_name)
        if problem is None:
            return proxy
        fields = rejection(
            message.encode().decode("utf-8", errors="replace"),
            problem,
            message.message_id,
            message.options["redis_message_id"],
        )
        fields.update(args=tuple(fields["args"]), queue_name=self.queue_name)
        return type(proxy)(Message(**fields))

    def _undecodable(self, error: DecodeError):
        """Bytes that name no Redis id of their own: the id is the one among this consumer's
        fetched-but-unacked ids whose stored body is these bytes."""
        data = error.data if isinstance(error.data, bytes) else str(error.data).encode()
        client, prefix = self.broker.client, f"{self.broker.namespace}:"
        in_flight = client.smembers(f"{prefix}__acks__.{self.broker.broker_id}.{self.queue_name}")
        for redis_id in in_flight:
            if client.hget(f"{prefix}{self.queue_name}.msgs", redis_id) == data:
                problem = str(error.error) if error.error else "message: cannot be decoded"
                fields = rejection(
                    data.decode("utf-8", errors="replace"), problem, redis_id.decode(), redis_id.decode()
                )
                fields.update(args=tuple(fields["args"]), queue_name=self.queue_name)
                return MessageProxy(Message(**fields))
        raise error


class QueueCheckedRedisBroker(RedisBroker):
    """The Redis broker whose consumers reject a message that does not belong to their queue.

    `queue_prefetch` caps how many messages of a queue one worker process holds at once
    (fetched and not yet acknowledged), per queue name; other queues keep dramatiq's."""

    def __init__(self, *args: Any, queue_prefetch: Mapping[str, int] | None = None, **kwargs: Any):
        self.queue_prefetch = dict(queue_prefetch or {})
        assert all(cap >= 1 for cap in self.queue_prefetch.values())
        super().__init__(*args, **kwargs)

    @property
    def consumer_class(self):
        return _QueueCheckedConsumer
