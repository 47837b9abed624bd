"""Member segments: labels set through the ledger, and members listed by tier or label.

A label change is a `member_update` event, validated and applied through the ledger's own path
(as a queued one is), so that it has an occurrence time the ledger folds: an event that
occurred before the change is decided with the labels as they were then, whatever order the
events arrive in (worker/domain/deciders.py `member_update`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from worker.domain.errors import InvalidEvent, UnknownMember
from worker.domain.labels import LabelError, changed, check_label, check_labels
from worker.domain.program import Program
from worker.domain.program_timeline import ProgramTimeline, timeline_of
from worker.services.intake import validate
from worker.services.ledger import apply_event

# Listing pages: a screenful by default; the maximum bounds one query (and one answer).
LIST_PAGE_DEFAULT = 100
LIST_PAGE_MAX = 500

# The member a label change is for: a member merged into another is changed on the member kept
# (an event for it lands there too), locked until the change is applied, so that `--add` and
# `--remove` apply to the labels as they are under the lock and two changes at once both count.
_MERGED_INTO = text("SELECT merged_into FROM members WHERE member_id = :member_id")
_LOCK = text("SELECT labels FROM members WHERE member_id = :member_id FOR UPDATE")
_LABELS = text("SELECT labels FROM members WHERE member_id = :member_id")


@dataclass(frozen=True)
class LabelsSet:
    """A label change as applied: the member it landed on and their labels now."""

    member_id: str
    labels: list[str]
    event_id: str
    status: str  # applied | duplicate

    def as_json(self) -> dict[str, Any]:
        return {"member_id": self.member_id, "labels": self.labels, "event_id": self.event_id, "status": self.status}


def label_event(member_id: str, labels: tuple[str, ...], now: datetime, source: str) -> dict:
    """The member_update an operator's or the API's label change sends, at `now`."""
    digest = hashlib.sha256(f"{member_id}|{','.join(labels)}|{now.isoformat()}".encode()).hexdigest()[:20]
    return {
        "event_id": f"labels-{digest}",
        "type": "member_update",
        "source": source,
        "member_id": member_id,
        "occurred_at": now.isoformat(),
        "payload": {"labels": list(labels)},
    }


async def set_labels(
    engine: AsyncEngine,
    programs: Program | ProgramTimeline,
    member_id: str,
    *,
    now: datetime,
    source: str,
    labels: Any = None,
    add: tuple[str, ...] = (),
    remove: tuple[str, ...] = (),
) -> LabelsSet:
    """Replace the member's labels with `labels` (a list), or add and remove some, with a
    member_update event at `now` from `source`, in one transaction.

    Raises UnknownMember for a member who is not enrolled (a queued event would enrol them; an
    operator has mistyped the id), LabelError naming the field (`labels.0: ...`, `--add: ...`)."""
    timeline = timeline_of(programs)
    wanted = check_labels(labels) if labels is not None else None
    async with engine.begin() as conn:
        found = (await conn.execute(_MERGED_INTO, {"member_id": member_id})).first()
        if found is None:
            raise UnknownMember(member_id)
        target = found.merged_into or member_id
        current = (await conn.execute(_LOCK, {"member_id": target})).scalar_one()
        if wanted is None:
            wanted = changed(current, add, remove)
        raw = label_event(target, wanted, now, source)
        try:
            event = validate(raw, timeline, now)
        except InvalidEvent as error:  # the checks above say the same of labels, with their own field
            raise LabelError(error.reason.removeprefix("payload.")) from None
        result = await apply_event(conn, timeline, event)
        stored = await _labels_of(conn, result.member_id)
    return LabelsSet(result.member_id, stored, raw["event_id"], result.status)


async def _labels_of(conn: AsyncConnection, member_id: str) -> list[str]:
    return sorted((await conn.execute(_LABELS, {"member_id": member_id})).scalar_one())


# The listing: members still in the program (not erased, not merged into another), in member-id
# order from the cursor. One statement per combination of filters, so that each is planned for
# its own index: (tier, member_id) for a tier, the GIN index on labels for a label.
_LIST_COLUMNS = """
    SELECT member_id, tier, labels, available_points, pending_points, qualifying_points, enrolled_at
    FROM members WHERE erased_at IS NULL AND merged_into IS NULL"""
_FILTERS = {
    "tier": " AND tier = :tier",
    "label": " AND labels @> ARRAY[CAST(:label AS text)]",
    "cursor": " AND member_id > :cursor",
}


def list_statement(*, tier: bool, label: bool, cursor: bool) -> Any:
    """The listing statement for the filters given (the tests EXPLAIN it)."""
    wanted = {"tier": tier, "label": label, "cursor": cursor}
    where = "".join(sql for name, sql in _FILTERS.items() if wanted[name])
    return text(_LIST_COLUMNS + where + " ORDER BY member_id LIMIT :n")


async def list_members(
    engine: AsyncEngine,
    *,
    tier: str | None = None,
    label: str | None = None,
    cursor: str | None = None,
    limit: int = LIST_PAGE_DEFAULT,
) -> dict[str, Any]:
    """One page of members by member id, after `cursor` (the previous page's `next_cursor`),
    of `tier` and with `label` when given; `next_cursor` is None on the last page."""
    if label is not None:
        check_label(label, "label")
    limit = max(1, min(limit, LIST_PAGE_MAX))
    statement = list_statement(tier=tier is not None, label=label is not None, cursor=cursor is not None)
    params = {"tier": tier, "label": label, "cursor": cursor, "n": limit + 1}
    async with engine.connect() as conn:
        rows = (await conn.execute(statement, {k: v for k, v in params.items() if v is not None})).mappings().all()
    page = rows[:limit]
    return {
        "members": [
            {
                "member_id": r["member_id"],
                "tier": r["tier"],
                "labels": sorted(r["labels"]),
                "available_points": r["available_points"],
                "pending_points": r["pending_points"],
                "qualifying_points": r["qualifying_points"],
                "enrolled_at": r["enrolled_at"].isoformat(),
            }
            for r in page
        ],
        "next_cursor": page[-1]["member_id"] if len(rows) > limit else None,
    }
