"""Program report: liability, breakage, redemption rate, tiers, earn by source and type, and
the points flow that reconciles the outstanding points of the window's start with its end.

Flows (earned, corrections, reversed, redeemed, held, expired, adjusted, earn by source/type)
are ledger entries whose occurred_at falls in [from, to]; tier movement is
tier_changes.changed_at in the range; liability and tier distribution are the members'
balances now.

Every ledger entry falls in exactly one line of the flow (`_LINE`), so opening plus the lines
is the closing balance whatever kinds the ledger holds; an entry kind the flow does not name
lands in `adjusted` rather than being left out.
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
# Entry kinds an operator's adjustment or a balance import writes, and the merge's transfers
# (one entry per member, netting to zero): the flow's `adjusted` line, with any kind the flow
# does not name otherwise.
ADJUSTED_KINDS = ("adjust", "adjustment", "import", "transfer")
# The rule of a `restore` entry says what it gives back: a cancelled redemption or a refunded
# paid order (both un-spend points: `redeemed`), or a hold released unspent (`held`).
_UNSPENT_RULES = ("redemption_cancel", "points_payment_refund")
_RELEASED_RULES = ("hold_voided", "hold_expired")
# A re-evaluation's entries name the event they correct (worker/services/replay.py).
_CORRECTS = """jsonb_path_exists(rules, '$[*].corrects')"""
# The line of the flow each entry belongs to. Points are available + pending, so an entry that
# moves points between the two (a pending release) nets to zero in its line.
_LINE = f"""
    CASE
        WHEN kind IN ('earn', 'reverse') AND {_CORRECTS} THEN 'corrections'
        WHEN kind IN ('earn', 'release') THEN 'earned'
        WHEN kind = 'reverse' THEN 'reversed'
        WHEN kind = 'redeem' THEN 'redeemed'
        WHEN kind = 'restore' AND rules -> 0 ->> 'rule' IN {_UNSPENT_RULES!r} THEN 'redeemed'
        WHEN kind IN ('hold', 'spend') THEN 'held'
        WHEN kind = 'restore' AND rules -> 0 ->> 'rule' IN {_RELEASED_RULES!r} THEN 'held'
        WHEN kind = 'expire' THEN 'expired'
        WHEN kind IN {ADJUSTED_KINDS!r} THEN 'adjusted'
        ELSE 'adjusted'
    END"""
# Each line's net points in the window, and the points of holds captured in it: a capture
# writes a zero-point `spend` entry (the points left with the hold), and moves them from
# `held` to `redeemed`.
_FLOWS = text(
    f"""
    SELECT {_LINE} AS line, coalesce(sum(points + pending_points), 0)::bigint,
           coalesce(sum(CAST(rules -> 0 ->> 'points' AS bigint)) FILTER (WHERE kind = 'spend'), 0)::bigint
    FROM ledger_entries WHERE occurred_at >= :start AND occurred_at < :end GROUP BY line
    """
)
# Outstanding points (available + pending) as of each end of the window.
_BALANCES = text(
    """
    SELECT coalesce(sum(points + pending_points) FILTER (WHERE occurred_at < :start), 0)::bigint,
           coalesce(sum(points + pending_points) FILTER (WHERE occurred_at < :end), 0)::bigint
    FROM ledger_entries
    """
)
_EARN_BY = text(
    f"""
    SELECT coalesce(source, '-'), coalesce(event_type, '-'), sum(points + pending_points)::bigint
    FROM ledger_entries WHERE kind = 'earn' AND NOT {_CORRECTS} AND occurred_at >= :start AND occurred_at < :end
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


@dataclass(frozen=True)
class Reconciliation:
    """Outstanding points (available + pending) at the window's start, the flow through it, and
    at its end. Each line counts in the direction of its sign in the equation; corrections,
    held (more released from holds than put in them) and adjusted may be negative."""

    opening: int
    earned: int
    corrections: int
    reversed: int
    redeemed: int
    held: int
    expired: int
    adjusted: int
    closing: int
    # The members' available + pending now, when the window runs to the present (None: it
    # ends earlier, and the closing balance is the ledger's as of then).
    outstanding_now: int | None = None

    @property
    def flow_closing(self) -> int:
        """Where the opening balance and the flow lead."""
        return (
            self.opening
            + self.earned
            + self.corrections
            - self.reversed
            - self.redeemed
            - self.held
            - self.expired
            + self.adjusted
        )

    @property
    def balanced(self) -> bool:
        return self.flow_closing == self.closing and self.outstanding_now in (None, self.closing)

    @classmethod
    def of(
        cls, opening: int, closing: int, lines: dict[str, tuple[int, int]], outstanding_now: int | None
    ) -> Reconciliation:
        """From the net points of each line and the points captured (`_FLOWS`' rows)."""
        net = {line: points for line, (points, _) in lines.items()}
        captured = sum(c for _, c in lines.values())
        return cls(
            opening=opening,
            earned=net.get("earned", 0),
            corrections=net.get("corrections", 0),
            reversed=-net.get("reversed", 0),
            redeemed=captured - net.get("redeemed", 0),
            held=-net.get("held", 0) - captured,
            expired=-net.get("expired", 0),
            adjusted=net.get("adjusted", 0),
            closing=closing,
            outstanding_now=outstanding_now,
        )

    def as_json(self) -> dict[str, Any]:
        return {
            "opening": self.opening,
            "earned": self.earned,
            "corrections": self.corrections,
            "reversed": self.reversed,
            "redeemed": self.redeemed,
            "held": self.held,
            "expired": self.expired,
            "adjusted": self.adjusted,
            "closing": self.closing,
            "balanced": self.balanced,
        }


@dataclass
class Report:
    program: str
    date_from: date | None
    date_to: date | None
    available_points: int
    pending_points: int
    point_value: Decimal
    reconciliation: Reconciliation
    earn_by: list[tuple[str, str, int]]
    tiers: list[tuple[str, int]]
    moves: list[tuple[str, str, int]] = field(default_factory=list)
    currency: str = "CNY"

    @property
    def outstanding_points(self) -> int:
        return self.available_points + self.pending_points

    @property
    def liability_value(self) -> Decimal:
        return (self.outstanding_points * self.point_value).quantize(MONEY_PLACES, ROUND_HALF_UP)

    @property
    def liability(self) -> str:
        """The liability value with its currency, e.g. `CNY 13.63`."""
        return f"{self.currency} {self.liability_value:,}"

    @property
    def earned(self) -> int:
        return self.reconciliation.earned

    @property
    def reversed(self) -> int:
        """Taken back by refunds (re-evaluation corrections are a line of their own)."""
        return self.reconciliation.reversed

    @property
    def redeemed(self) -> int:
        """Spent in the mall and on captured holds, net of cancellations and refunded payments."""
        return self.reconciliation.redeemed

    @property
    def expired(self) -> int:
        return self.reconciliation.expired

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
                "currency": self.currency,
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
            "reconciliation": self.reconciliation.as_json(),
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
        opening, closing = (await conn.execute(_BALANCES, bounds)).one()
        lines = {line: (int(points), int(captured)) for line, points, captured in await conn.execute(_FLOWS, bounds)}
        earn_by = [tuple(r) for r in (await conn.execute(_EARN_BY, bounds)).all()]
        counts = {tier: n for tier, n in (await conn.execute(_TIERS)).all()}
        moves = [tuple(r) for r in (await conn.execute(_MOVES, bounds)).all()]
    order = [t.name for t in program.tiers] + sorted(set(counts) - {t.name for t in program.tiers})
    # A window without an end closes on every entry: the members' balances must say the same.
    now = int(available) + int(pending) if date_to is None else None
    return Report(
        program.name,
        date_from,
        date_to,
        int(available),
        int(pending),
        program.point_value,
        Reconciliation.of(int(opening), int(closing), lines, now),
        earn_by,
        [(t, counts.get(t, 0)) for t in order],
        moves,
        program.currency,
    )  # type: ignore[arg-type]
