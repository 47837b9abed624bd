"""Operator tier floors (`loyalty member set-tier`): the member keeps at least a tier until a
date, or without end. One transaction with the member's row locked; the floor record and any
tier change are written by accounts, the one writer of member tiers."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from worker.domain.engine import TierFloor
from worker.domain.errors import InvalidFloor, UnknownMember
from worker.domain.events import safe_text
from worker.domain.program import Program
from worker.store import accounts

# A reason is a sentence or two for the next operator, not a document.
REASON_CHARS_MAX = 500
BY_CHARS_MAX = 64


@dataclass(frozen=True)
class FloorOutcome:
    member_id: str
    # The floor now in force (None: no floor), as recorded.
    floor: dict[str, Any] | None
    tier_before: str
    tier: str
    # None when nothing was written (removing a floor the member does not have).
    floor_id: int | None

    def as_json(self) -> dict[str, Any]:
        return {
            "member_id": self.member_id,
            "floor": self.floor,
            "tier_before": self.tier_before,
            "tier": self.tier,
            "tier_changed": self.tier != self.tier_before,
            "floor_id": self.floor_id,
        }


def _text(value: str, what: str, limit: int) -> str:
    cleaned = safe_text(value.strip(), limit)
    if not cleaned:
        raise InvalidFloor(f"{what} must not be empty")
    return cleaned


async def set_tier_floor(
    engine: AsyncEngine,
    program: Program,
    member_id: str,
    floor: TierFloor | None,
    *,
    reason: str,
    by: str,
    now: datetime,
) -> FloorOutcome:
    """Set the member's floor (None removes it; see `engine.tiering.operator_floor` for what an
    operator may ask). UnknownMember when the member is not enrolled: nothing is written."""
    reason = _text(reason, "reason", REASON_CHARS_MAX)
    by = _text(by, "by", BY_CHARS_MAX)
    async with engine.begin() as conn:
        account = await accounts.lock_existing_member(conn, member_id)
        if account is None:
            raise UnknownMember(member_id)
        if floor is None and account.tier_floor is None:
            return FloorOutcome(member_id, None, account.tier, account.tier, None)
        done = await accounts.set_floor(conn, program, account, floor, reason=reason, by=by, now=now)
    shown = None
    if floor is not None:
        shown = {
            "tier": floor.tier,
            "ends_on": _iso(floor.ends_on),
            "reason": reason,
            "set_by": by,
            "set_at": done.set_at.isoformat(),
        }
    return FloorOutcome(member_id, shown, done.tier_before, done.tier, done.floor_id)


def _iso(value: date | None) -> str | None:
    return value.isoformat() if value is not None else None
