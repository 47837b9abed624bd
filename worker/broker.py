"""Broker construction and actor declaration: the composition root of the worker."""

from __future__ import annotations

import inspect

import dramatiq
from dramatiq.brokers.stub import StubBroker
from dramatiq.middleware import AsyncIO, CurrentMessage, default_middleware

from worker.actors import all_specs
from worker.actors.events import BATCH_PREFETCH, BATCH_QUEUE
from worker.config import DEFAULT_HEARTBEAT_TIMEOUT_MS, Settings
from worker.domain.program import Program
from worker.durability import RedisDurabilityCheck
from worker.runtime import LogContextMiddleware, RuntimeMiddleware, on_event_loop
from worker.stopping import StopOnce
from worker.wire import QueueCheckedRedisBroker, TolerantJSONEncoder

# A dead worker's unacked messages go back on the queue once its heartbeat is this old.
# Lower recovers faster after a crash; it must stay well above the longest pause a live
# worker can have between broker calls. Settings.heartbeat_timeout_ms (env
# LOYALTY_HEARTBEAT_TIMEOUT_MS) overrides it.
HEARTBEAT_TIMEOUT_MS = DEFAULT_HEARTBEAT_TIMEOUT_MS


def build_broker(
    settings: Settings, *, stub: bool = False, program: Program | None = None, metrics: bool = False
) -> dramatiq.Broker:
    """metrics=True (worker processes under the dramatiq CLI only) adds the Prometheus
    middleware and its /metrics fork process; it needs PROMETHEUS_MULTIPROC_DIR set."""
    middleware = [m() for m in default_middleware] + [
        AsyncIO(),
        CurrentMessage(),
        LogContextMiddleware(),
        RuntimeMiddleware(settings, program),
        StopOnce(),
    ]
    if metrics and not stub:
        from worker.metrics_server import WorkerMetrics

        middleware.append(WorkerMetrics())
    if stub:
        broker: dramatiq.Broker = StubBroker(middleware=middleware)
    else:
        middleware.append(RedisDurabilityCheck())
        broker = QueueCheckedRedisBroker(
            url=settings.redis_url,
            namespace=settings.namespace,
            middleware=middleware,
            heartbeat_timeout=settings.heartbeat_timeout_ms,
            maintenance_chance=settings.maintenance_chance,
            queue_prefetch={BATCH_QUEUE: BATCH_PREFETCH},
        )
    dramatiq.set_broker(broker)
    declare_actors(broker)
    dramatiq.set_encoder(
        TolerantJSONEncoder({spec.name: inspect.signature(spec.fn) for spec in all_specs()}, redis=not stub)
    )
    return broker


def name_worker(broker: dramatiq.Broker) -> None:
    """Mark this process's broker as a worker's (host and pid) for the heartbeat lists:
    `loyalty stats`, the dashboard and the metrics show these ids only."""
    import os
    import socket

    from worker.services.stats import worker_id

    if hasattr(broker, "broker_id"):
        broker.broker_id = worker_id(socket.gethostname(), os.getpid())


def declare_actors(broker: dramatiq.Broker) -> dict[str, dramatiq.Actor]:
    """Async actors run on the process's event loop; a plain function (one that only talks to
    the broker) runs on its worker thread."""
    return {
        spec.name: dramatiq.actor(
            on_event_loop(spec.fn) if inspect.iscoroutinefunction(spec.fn) else spec.fn,
            broker=broker,
            actor_name=spec.name,
            queue_name=spec.queue_name,
            **spec.options,
        )
        for spec in all_specs()
    }


def actor(broker: dramatiq.Broker, name: str) -> dramatiq.Actor:
    return broker.get_actor(name)
