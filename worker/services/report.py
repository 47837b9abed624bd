"""Program report: liability, breakage, redemption rate, tiers, earn by source and type.

Flows (earned, reversed, redeemed, expired, earn by source/type) are ledger entries whose
occurred_at falls in [from, to]; tier movement is tier_changes.changed_at in the range;
liability and tier distribution are the members' balances now.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from worker.domain.program import Program

RATIO_PLACES = Decimal("0.0001")
MONEY_PLACES = Decimal("0.01")

_LIABILITY = text("SELECT coalesce(sum(available_points), 0), coalesce(sum(pending_points), 0) FROM members")
_FLOWS = text(
    """
    SELECT kind, coalesce(sum(points + pending_points), 0)::bigint FROM ledger_entries
    WHERE occurred_at >= :start AND occurred_at < :end GROUP BY kind
    """
)
_EARN_BY = text(
    """
    SELECT coalesce(source, '-'), coalesce(event_type, '-'), sum(points + pending_points)::bigint
    FROM ledger_entries WHERE kind = 'earn' AND occurred_at >= :start AND occurred_at < :end
    GROUP BY 1, 2 ORDER BY 3 DESC, 1, 2
    """
)
_TIERS = text("SELECT tier, count(*) FROM members WHERE erased_at IS NULL GROUP BY tier")
_MOVES = text(
    """
    SELECT from_tier, to_tier, count(*) FROM tier_changes
    WHERE changed_at >= :start AND changed_at < :end GROUP BY 1, 2 ORDER BY 3 DESC, 1, 2
    """
)
# Open range ends: far enough to hold any ledger timestamp.
_BEGINNING = datetime(1970, 1, 1, tzinfo=ZoneInfo("UTC"))
_END = datetime(9999, 1, 1, tzinfo=ZoneInfo("UTC"))


@dataclass
class Report:
    program: str
    date_from: date | None
    date_to: date | None
    available_points: int
    pending_points: int
    point_value: Decimal
    flows: dict[str, int]
    earn_by: list[tuple[str, str, int]]
    tiers: list[tuple[str, int]]
    moves: list[tuple[str, str, int]] = field(default_factory=list)

    @property
    def outstanding_points(self) -> int:
        return self.available_points + self.pending_points

    @property
    def liability_value(self) -> Decimal:
        return (self.outstanding_points * self.point_value).quantize(MONEY_PLACES, ROUND_HALF_UP)

    @property
    def earned(self) -> int:
        return self.flows.get("earn", 0)

    @property
    def reversed(self) -> int:
        return -self.flows.get("reverse", 0)

    @property
    def redeemed(self) -> int:
        """Redeemed net of restored (cancelled redemptions give points back)."""
        return -self.flows.get("redeem", 0) - self.flows.get("restore", 0)

    @property
    def expired(self) -> int:
        return -self.flows.get("expire", 0)

    def _ratio(self, part: int) -> Decimal | None:
        return (Decimal(part) / Decimal(self.earned)).quantize(RATIO_PLACES, ROUND_HALF_UP) if self.earned else None

    @property
    def breakage(self) -> Decimal | None:
        return self._ratio(self.expired)

    @property
    def redemption_rate(self) -> Decimal | None:
        return self._ratio(self.redeemed)

    def as_json(self) -> dict[str, Any]:
        return {
            "program": self.program,
            "from": self.date_from.isoformat() if self.date_from else None,
            "to": self.date_to.isoformat() if self.date_to else None,
            "liability": {
                "available_points": self.available_points,
                "pending_points": self.pending_points,
                "outstanding_points": self.outstanding_points,
                "point_value": str(self.point_value),
                "value": str(self.liability_value),
            },
            "earned": self.earned,
            "reversed": self.reversed,
            "redeemed": self.redeemed,
            "expired": self.expired,
            "breakage": str(self.breakage) if self.breakage is not None else None,
            "redemption_rate": str(self.redemption_rate) if self.redemption_rate is not None else None,
            "tiers": dict(self.tiers),
            "tier_moves": [{"from": f, "to": t, "members": n} for f, t, n in self.moves],
            "earn_by": [{"source": s, "type": t, "points": p} for s, t, p in self.earn_by],
        }


def _bounds(program: Program, date_from: date | None, date_to: date | None) -> dict[str, datetime]:
    """Whole days in the program's time zone, both ends included."""
    zone = ZoneInfo(program.timezone)
    start = datetime.combine(date_from, time(), zone) if date_from else _BEGINNING
    end = datetime.combine(date_to + timedelta(days=1), time(), zone) if date_to else _END
    return {"start": start, "end": end}


async def build_report(
    engine: AsyncEngine, program: Program, date_from: date | None = None, date_to: date | None = None
) -> Report:
    bounds = _bounds(program, date_from, date_to)
    async with engine.connect() as conn:
        available, pending = (await conn.execute(_LIABILITY)).one()
        flows = {kind: int(points) for kind, points in (await conn.execute(_FLOWS, bounds)).all()}
        earn_by = [tuple(r) for r in (await conn.execute(_EARN_BY, bounds)).all()]
        counts = {tier: n for tier, n in (await conn.execute(_TIERS)).all()}
        moves = [tuple(r) for r in (await conn.execute(_MOVES, bounds)).all()]
    order = [t.name for t in program.tiers] + sorted(set(counts) - {t.name for t in program.tiers})
    return Report(
        program.name,
        date_from,
        date_to,
        int(available),
        int(pending),
        program.point_value,
        flows,
        earn_by,
        [(t, counts.get(t, 0)) for t in order],
        moves,
    )  # type: ignore[arg-type]
