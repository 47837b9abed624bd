"""The worker's /metrics endpoint: a dramatiq fork process next to the worker processes.

It serves what the worker processes wrote to the multiprocess directory (dramatiq's queue
metrics and worker.metrics) plus gauges read at scrape time: queue depths from Redis, the
outbox backlog and open rejected events from PostgreSQL.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import structlog
from dramatiq.middleware.prometheus import Prometheus
from prometheus_client.core import GaugeMetricFamily

from worker.config import METRICS_STOPPED_MARKER, metrics_host, metrics_port

log = structlog.get_logger(__name__)

# A scrape must answer well inside Prometheus's default 10 s scrape timeout.
STATE_TIMEOUT_S = 5.0


class WorkerMetrics(Prometheus):
    """dramatiq's Prometheus middleware, served by `serve` instead of dramatiq's own server."""

    @property
    def forks(self):
        return [serve]

    def after_worker_boot(self, broker, worker) -> None:
        """Export the error, retry, reject and delivery counters at 0 from boot: dramatiq
        creates a series on its first increment, so dashboards showed "No data" until the
        first failure, and an alert on a rate could not tell healthy from not scraped."""
        from worker import metrics
        from worker.domain.messages import KIND_PARAMS

        counters = (
            self.total_messages,
            self.total_errored_messages,
            self.total_retried_messages,
            self.total_rejected_messages,
        )
        for name in broker.get_declared_actors():
            actor = broker.get_actor(name)
            for counter in counters:
                counter.labels(actor.queue_name, name)
        metrics.export_zeros(KIND_PARAMS)


class StateCollector:
    """Gauges computed on each scrape from Redis and PostgreSQL."""

    def __init__(self, settings):
        self.settings = settings

    def collect(self):
        import redis

        from db.engine import create_engine
        from worker.actors import queue_names
        from worker.services import stats

        queues = GaugeMetricFamily(
            "loyalty_queue_messages", "Messages in the broker by queue and state.", labels=["queue", "state"]
        )
        outbox = GaugeMetricFamily("loyalty_outbox_notifications", "Outbox rows by status.", labels=["status"])
        rejected = GaugeMetricFamily("loyalty_rejected_events_open", "Rejected events not yet replayed.")
        up = GaugeMetricFamily("loyalty_state_up", "1 when the last state read from Redis and PostgreSQL worked.")
        heartbeats = GaugeMetricFamily(
            "loyalty_worker_heartbeat_age_seconds",
            "Seconds since each live worker process's last broker heartbeat.",
            labels=["worker"],
        )

        async def read():
            engine = create_engine(self.settings.database_url, pool_size=1, max_overflow=0)
            try:
                return await asyncio.wait_for(stats.database_stats(engine), STATE_TIMEOUT_S)
            finally:
                await engine.dispose()

        try:
            client = redis.Redis.from_url(self.settings.redis_url, socket_timeout=STATE_TIMEOUT_S)
            for queue, states in stats.queue_depths(client, self.settings.namespace, queue_names()).items():
                for state, n in states.items():
                    queues.add_metric([queue, state], n)
            # Worker ids are per process run; dramatiq drops dead ones from the set after the
            # heartbeat timeout, so the series stay as few as the live worker processes.
            for beat in stats.worker_heartbeats(client, self.settings.namespace, time.time()):
                heartbeats.add_metric([beat["worker_id"]], beat["age_seconds"])
            db = asyncio.run(read())
            for status, n in db["outbox"].items():
                outbox.add_metric([status], n)
            rejected.add_metric([], db["rejected_open"])
            up.add_metric([], 1)
        except Exception as error:  # a scrape must still return the process metrics
            log.warning("metrics_state_unavailable", error=f"{type(error).__name__}: {error}")
            up.add_metric([], 0)
        yield from (queues, outbox, rejected, up, heartbeats)


def registry(settings):
    from prometheus_client import CollectorRegistry
    from prometheus_client.multiprocess import MultiProcessCollector

    reg = CollectorRegistry()
    MultiProcessCollector(reg)
    reg.register(StateCollector(settings))
    return reg


def serve() -> int:
    """Fork entry point (runs in its own process, started by the dramatiq CLI)."""
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    from worker import logs
    from worker.config import Settings

    logs.configure()
    reg = registry(Settings.from_env())

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            if self.path.split("?")[0] not in ("/", "/metrics"):
                self.send_error(404)
                return
            body = generate_latest(reg)
            self.send_response(200)
            self.send_header("Content-Type", CONTENT_TYPE_LATEST)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, fmt, *args):
            pass

    from worker.preflight import METRICS_PORT_HINT, PreflightError, bind_port

    host, port = metrics_host(), metrics_port()
    try:
        server = bind_port(port, lambda: ThreadingHTTPServer((host, port), Handler), "metrics port", METRICS_PORT_HINT)
    except PreflightError as error:
        # `loyalty worker` checked the port before it started; another process took it since
        # (or dramatiq was started by hand). A worker without its metrics fails its health
        # check and goes unwatched: stop the whole worker, as `loyalty worker` would refuse.
        log.error("metrics_cannot_start", reason=str(error))
        folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
        if folder:
            open(os.path.join(folder, METRICS_STOPPED_MARKER), "w").close()
        os.kill(os.getppid(), signal.SIGTERM)
        return error.code
    log.info("metrics_listening", host=host, port=port)
    try:
        server.serve_forever()
    finally:
        server.server_close()
    return 0
