"""A dramatiq no-op async actor on the same broker set-up as the worker: the broker ceiling.

Run by the harness as `python -m dramatiq benchmarks.noop --processes P --threads T`.
"""

from __future__ import annotations

import os

import dramatiq
from dramatiq.brokers.redis import RedisBroker
from dramatiq.middleware import AsyncIO, default_middleware

QUEUE = "noop"

broker = RedisBroker(
    url=os.environ.get("LOYALTY_REDIS_URL", "redis://127.0.0.1:6379/0"),
    namespace=os.environ.get("LOYALTY_NAMESPACE", "loyalty"),
    middleware=[m() for m in default_middleware] + [AsyncIO()],
)
dramatiq.set_broker(broker)


@dramatiq.actor(queue_name=QUEUE, actor_name="noop", max_retries=0)
async def noop(*args) -> None:
    return None
