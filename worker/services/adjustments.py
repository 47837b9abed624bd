"""An operator's adjustment made at once: `loyalty member adjust` and `POST /v1/members/{id}/adjustments`.

Each builds the `adjustment` event a CRM system queues (docs/events.md) and applies it through
intake's own path (`intake.process`) in one transaction, with the member's balances checked
against the ledger before it commits: exactly once per (source, event_id), in the member's
history, the audit and the report like any event. It sits above intake, as the queue's
consumer does; the decision itself is the `adjustment` decider's (worker/domain/deciders.py).
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import date, datetime, tzinfo
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from worker.domain.errors import InvalidEvent, UnknownMember
from worker.domain.program_timeline import ProgramTimeline
from worker.services import holds
from worker.services.intake import process, validate

_MEMBER_EXISTS = text("SELECT 1 FROM members WHERE member_id = :member_id")
_FIRST_ATTEMPT_AT = text("SELECT occurred_at FROM processed_events WHERE source = :source AND event_id = :event_id")
_ENTRY = text(
    """
    SELECT e.entry_id, e.points, e.qualifying_points, e.rules, e.occurred_at,
           l.lot_id, l.expires_at,
           (SELECT available_points FROM members WHERE member_id = e.member_id) AS available_points
    FROM ledger_entries e LEFT JOIN lots l ON l.entry_id = e.entry_id
    WHERE e.source = :source AND e.event_id = :event_id AND e.kind = 'adjust'
    """
)
_TAKES = text(
    """
    SELECT t.lot_id, t.points, l.expires_at FROM lot_takes t JOIN lots l USING (lot_id)
    WHERE t.entry_id = :entry_id ORDER BY l.expires_at, t.lot_id
    """
)
_PAYLOAD_PREFIX = re.compile(r"(^|; )payload\.")


class AdjustmentRefused(Exception):
    """An adjustment not made, nothing written. `kind`: `invalid` (the request breaks the
    contract), `refused` (the ledger refused it: a debit beyond the spendable points) or
    `conflict` (its event id was used for another adjustment). `detail` names the field first,
    as the request names it (`points: ...`)."""

    def __init__(self, kind: str, detail: str):
        super().__init__(detail)
        self.kind, self.detail = kind, detail

    @property
    def field(self) -> str:
        return self.detail.split(":", 1)[0]


@dataclass(frozen=True)
class Adjustment:
    """What the caller asks for: signed points, why, who, and for a credit its expiry day."""

    member_id: str
    points: int
    reason: str | None
    by: str
    expires_on: date | str | None = None
    qualifying: bool = False

    def payload(self) -> dict[str, Any]:
        out: dict[str, Any] = {"points": self.points, "by": self.by, "qualifying": self.qualifying}
        if self.reason is not None:
            out["reason"] = self.reason
        if self.expires_on is not None:
            out["expires_on"] = str(self.expires_on)
        return out


def _as_requested(reason: str) -> str:
    """A contract reason with the request's field names: `payload.points: ...` -> `points: ...`."""
    return _PAYLOAD_PREFIX.sub(r"\1", reason)


async def adjust_now(
    engine: AsyncEngine,
    programs: ProgramTimeline,
    adjustment: Adjustment,
    *,
    source: str,
    now: datetime,
    event_id: str | None = None,
) -> dict[str, Any]:
    """Apply one adjustment at once; returns its entry, the credit's lot or the debit's lot
    takes, and the member's available points after it.

    `event_id` is the idempotency key (a fresh one when not given): the same id and request
    again answers `duplicate` with the first entry. Raises UnknownMember for a member who is not
    enrolled (a queued adjustment would enrol them; an operator has mistyped the id) and
    AdjustmentRefused otherwise."""
    member_id = adjustment.member_id
    async with engine.connect() as conn:
        if (await conn.execute(_MEMBER_EXISTS, {"member_id": member_id})).first() is None:
            raise UnknownMember(member_id)
        # A retry is the same request made later: it carries the first attempt's time, so its
        # payload hashes the same and the ledger answers duplicate.
        first_at = None
        if event_id is not None:
            first_at = (await conn.execute(_FIRST_ATTEMPT_AT, {"source": source, "event_id": event_id})).scalar()
    # Holds past their expiry give their points back first: they are the member's to adjust.
    await holds.settle_member(engine, programs.at(now), member_id, now=now)
    raw = {
        "event_id": event_id or f"adjust-{uuid.uuid4().hex}",
        "type": "adjustment",
        "source": source,
        "member_id": member_id,
        "occurred_at": (first_at or now).isoformat(),
        "payload": adjustment.payload(),
    }
    try:
        validate(raw, programs, now)
    except InvalidEvent as error:
        raise AdjustmentRefused("invalid", _as_requested(error.reason)) from None
    outcome = await process(engine, programs, raw, now=now, strict=True)
    if outcome.status == "rejected":
        reason = outcome.reason or "refused"
        kind = "conflict" if reason.startswith("event_id:") else "refused"
        raise AdjustmentRefused(kind, _as_requested(reason))
    return await _answer(engine, outcome.status, source, raw["event_id"], member_id, programs.at(now).zone)


async def _answer(
    engine: AsyncEngine, status: str, source: str, event_id: str, member_id: str, zone: tzinfo
) -> dict[str, Any]:
    """The adjustment as booked: its entry, the credit's lot (with its program-local expiry day)
    or the debit's lot takes, and the member's available points now."""
    async with engine.connect() as conn:
        row = (await conn.execute(_ENTRY, {"source": source, "event_id": event_id})).mappings().one()
        takes = [] if row["lot_id"] is not None else (await conn.execute(_TAKES, {"entry_id": row["entry_id"]})).all()
    rule = row["rules"][0]
    return {
        "status": status,
        "source": source,
        "event_id": event_id,
        "member_id": member_id,
        "entry_id": row["entry_id"],
        "points": row["points"],
        "qualifying_points": row["qualifying_points"],
        "reason": rule["reason"],
        "by": rule["by"],
        "expires_on": rule["expires_on"],
        "occurred_at": row["occurred_at"].isoformat(),
        "lot": {
            "lot_id": row["lot_id"],
            "points": row["points"],
            "expires_at": row["expires_at"].isoformat(),
            "expires_on": row["expires_at"].astimezone(zone).date().isoformat(),
        }
        if row["lot_id"] is not None
        else None,
        "taken": [{"lot_id": t.lot_id, "points": t.points, "expires_at": t.expires_at.isoformat()} for t in takes],
        "available_points": row["available_points"],
    }
