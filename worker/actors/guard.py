"""The actor behind worker.wire: a message that could not be decoded is stored as rejected."""

from __future__ import annotations

import structlog

from worker import runtime
from worker.actors import ActorSpec
from worker.domain.events import safe_text
from worker.services import intake

log = structlog.get_logger(__name__)


async def reject_message(raw: str, reason: str) -> None:
    rt = runtime.current()
    # A producer can address this actor too: whatever it passes is stored as text.
    reason = reason if isinstance(reason, str) else f"message: {intake.raw_text(reason)}"
    await intake.record_rejected(rt.engine, raw, reason)
    log.warning("message_rejected", reason=safe_text(reason, 300))


# Same retry budget as the event actors: only an infrastructure fault can make it fail.
ACTORS = (ActorSpec(reject_message, "events", {"max_retries": 20, "min_backoff": 500, "max_backoff": 60_000}),)
