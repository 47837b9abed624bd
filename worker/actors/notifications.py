"""Notification actor: run the outbox dispatcher once (the scheduler sends it every few seconds)."""

from __future__ import annotations

import structlog

from worker import runtime
from worker.actors import ActorSpec
from worker.outbox import dispatch
from worker.outbox.channels import open_channel

log = structlog.get_logger(__name__)

QUEUE = "notifications"


async def dispatch_notifications() -> None:
    rt = runtime.current()
    async with open_channel(rt.settings, rt.program) as channel:
        report = await dispatch.dispatch(rt.engine, rt.program, channel, clock=rt.clock)
    if report.claimed:
        log.info("notifications_dispatched", channel=channel.name, **report.as_dict())


# No dramatiq retries: the next scheduled run picks up whatever this one left, and failed
# deliveries carry their own backoff in the outbox. The time limit covers a run's budget
# plus one batch of sends at the longest webhook timeout.
ACTORS = (ActorSpec(dispatch_notifications, QUEUE, {"max_retries": 0, "time_limit": 120_000}),)
