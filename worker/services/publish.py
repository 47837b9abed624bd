"""Validate JSON Lines and hand the valid events to a sender; report each invalid line."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime

from worker.domain.errors import InvalidEvent
from worker.domain.events import event_size_bytes
from worker.domain.program import Program
from worker.domain.program_timeline import ProgramTimeline
from worker.services.intake import BATCH_BYTES_MAX, BATCH_EVENTS_MAX, validate


@dataclass
class PublishReport:
    accepted: int = 0
    messages: int = 0
    invalid: list[tuple[int, str]] = field(default_factory=list)


def publish_lines(
    lines: Iterable[str],
    program: Program | ProgramTimeline,
    now: datetime,
    send: Callable[[dict], None],
    send_batch: Callable[[list[dict]], None] | None = None,
    batch_size: int = 0,
) -> PublishReport:
    """Send each valid line (or batches of them); blank lines are skipped."""
    if batch_size > BATCH_EVENTS_MAX:
        raise ValueError(f"batch size must be at most {BATCH_EVENTS_MAX}")
    report = PublishReport()
    pending: list[dict] = []
    pending_bytes = 0

    def flush() -> None:
        nonlocal pending_bytes
        pending_bytes = 0
        if pending:
            send_batch(list(pending))  # type: ignore[misc]
            report.messages += 1
            pending.clear()

    for number, line in enumerate(lines, start=1):
        line = line.rstrip("\r\n")  # the line's content only: sizes in errors match the worker's
        if not line.strip():
            continue
        try:
            validate(line, program, now)
        except InvalidEvent as error:
            report.invalid.append((number, error.reason))
            continue
        event = json.loads(line)
        report.accepted += 1
        if batch_size > 1 and send_batch is not None:
            # Measured as the worker measures it; every event is at most EVENT_BYTES_MAX.
            size = event_size_bytes(event) + 1  # the comma between events
            if pending_bytes + size > BATCH_BYTES_MAX:
                flush()
            pending.append(event)
            pending_bytes += size
            if len(pending) >= batch_size:
                flush()
        else:
            send(event)
            report.messages += 1
    if send_batch is not None:
        flush()
    return report
