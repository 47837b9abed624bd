"""Process messages in this process until the queues are empty: `loyalty drain`, the demo, tests."""

from __future__ import annotations

import time

import dramatiq
from dramatiq.brokers.stub import StubBroker

# How long the drain waits between checks of the queue sizes.
POLL_INTERVAL_MS = 50


class DrainTimeout(Exception):
    def __init__(self, left: dict[str, int]):
        super().__init__(f"queues not empty at timeout: {left}")
        self.left = left


def _sizes(broker: dramatiq.Broker) -> dict[str, int]:
    """Messages not yet acked per queue, delayed ones (retries) included."""
    if isinstance(broker, StubBroker):
        return {name: queue.unfinished_tasks for name, queue in sorted(broker.queues.items())}
    return {queue: int(broker.do_qsize(queue)) for queue in sorted(broker.get_declared_queues())}


def drain(broker: dramatiq.Broker, *, timeout_s: float = 600, threads: int = 8) -> None:
    """Start an in-process worker, wait until every declared queue is empty, stop it."""
    worker = dramatiq.Worker(broker, worker_threads=threads, worker_timeout=POLL_INTERVAL_MS)
    worker.start()
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            sizes = _sizes(broker)
            if not any(sizes.values()):
                worker.join()
                if not any(_sizes(broker).values()):
                    return
            if time.monotonic() > deadline:
                raise DrainTimeout({q: n for q, n in sizes.items() if n})
            time.sleep(POLL_INTERVAL_MS / 1000)
    finally:
        worker.stop()
