"""The dramatiq Redis broker's dead-letter queues: list them, move messages back.

Layout (dramatiq/brokers/redis/dispatch.lua): `<ns>:<queue>.XQ` is a sorted set of Redis
message ids scored by when they died, `<ns>:<queue>.XQ.msgs` a hash of id -> encoded message.
Replay enqueues a fresh copy with its retry count reset, then deletes the dead one; a crash
between the two replays it twice, which the ledger's idempotency makes harmless.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import dramatiq
import redis
from dramatiq import Message

# Dead letters listed or replayed per call; more are taken by calling again.
DLQ_BATCH_MAX = 1000
# Options the Retries middleware and the broker add; a replayed message starts clean.
_RESET_OPTIONS = ("retries", "traceback", "requeue_timestamp", "eta", "redis_message_id")


def _keys(namespace: str, queue: str) -> tuple[str, str]:
    return f"{namespace}:{queue}.XQ", f"{namespace}:{queue}.XQ.msgs"


def _summary(queue: str, redis_id: str, dead_at_ms: float, message: Message) -> dict[str, Any]:
    first = message.args[0] if message.args else None
    event = first if isinstance(first, dict) else {}
    trace = (message.options.get("traceback") or "").strip().splitlines()
    return {
        "id": redis_id,
        "queue": queue,
        "actor": message.actor_name,
        "message_id": message.message_id,
        "dead_at": datetime.fromtimestamp(dead_at_ms / 1000, UTC).isoformat(),
        "retries": message.options.get("retries", 0),
        "event_id": event.get("event_id") if isinstance(event.get("event_id"), str) else None,
        "error": trace[-1] if trace else None,
    }


def list_dead(client: redis.Redis, namespace: str, queues: list[str], limit: int = DLQ_BATCH_MAX) -> list[dict]:
    out: list[dict] = []
    for queue in queues:
        ids_key, msgs_key = _keys(namespace, queue)
        for raw_id, score in client.zrange(ids_key, 0, min(limit, DLQ_BATCH_MAX) - 1, withscores=True):
            redis_id = raw_id.decode()
            data = client.hget(msgs_key, redis_id)
            if data is not None:
                out.append(_summary(queue, redis_id, score, Message.decode(data)))
    return out


def replay(
    broker: dramatiq.Broker, client: redis.Redis, namespace: str, queues: list[str], only_id: str | None = None
) -> list[dict]:
    """Move dead messages (all, or the one with this id) back to their queues."""
    replayed = []
    for queue in queues:
        ids_key, msgs_key = _keys(namespace, queue)
        ids = [only_id] if only_id else [i.decode() for i in client.zrange(ids_key, 0, DLQ_BATCH_MAX - 1)]
        for redis_id in ids:
            data = client.hget(msgs_key, redis_id)
            if data is None:
                continue
            dead = Message.decode(data)
            options = {k: v for k, v in dead.options.items() if k not in _RESET_OPTIONS}
            fresh = dead._replace(queue_name=queue, options=options)
            broker.enqueue(fresh)
            client.pipeline().zrem(ids_key, redis_id).hdel(msgs_key, redis_id).execute()
            replayed.append({"id": redis_id, "queue": queue, "actor": dead.actor_name, "message_id": dead.message_id})
    return replayed
