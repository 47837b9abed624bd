"""A deterministic mixed workload and a comparable snapshot of the ledger it produces."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from sqlalchemy import text

from tests import factories as f

START = datetime(2026, 10, 1, 2, 0, tzinfo=UTC)
LOCALES = ("en", "zh-Hans", "zh-Hant")


def _at(minutes: int) -> str:
    return (START + timedelta(minutes=minutes)).isoformat()


def workload(members: int, seed: int = 7, hot_purchases: int = 0) -> list[dict]:
    """Signups, purchases, partial refunds, reviews and referrals for `members` members, in
    occurrence order, plus `hot_purchases` purchases of 1.00 for member HOT.

    Every member stays in the first tier (well under 1000 qualifying points) and has no
    check-ins: tier multipliers and streaks depend on the order a member's own events are
    applied in, and concurrent workers do not keep that order. Everything else here (refunds
    before purchases, referrals before signups, duplicates, interleaving) must not matter."""
    rng = random.Random(seed)
    events: list[tuple[int, dict]] = []
    for m in range(members):
        member = f"M{m:04d}"
        t = m  # stagger members by a minute
        if m % 5 != 4:  # some members never sign up: their events still apply
            events.append((t, f.signup(member, occurred_at=_at(t), event_id=f"su-{member}",
                                       birthday=f"19{70 + m % 30}-0{1 + m % 9}-1{m % 10}",
                                       locale=LOCALES[m % 3])))
        if m % 7 == 0 and m + 1 < members:
            events.append((t + 1, f.referral(member, f"M{m + 1:04d}", occurred_at=_at(t + 1), event_id=f"rf-{member}")))
        for p in range(rng.randint(1, 3)):
            t += rng.randint(30, 3000)
            order = f"o-{member}-{p}"
            amount = Decimal(rng.randint(100, 8_000)) / 100
            events.append((t, f.purchase(member, f"{amount:.2f}", order_id=order, occurred_at=_at(t),
                                         event_id=f"pu-{order}")))
            if rng.random() < 0.25:
                part = max(Decimal("0.01"), (amount * Decimal(rng.randint(10, 100)) / 100).quantize(Decimal("0.01")))
                events.append((t + 60, f.refund(member, order, f"{min(part, amount):.2f}", refund_id=f"r-{order}",
                                                 occurred_at=_at(t + 60), event_id=f"rf-{order}")))
            if rng.random() < 0.2:
                events.append((t + 120, f.review(member, order, f"sku-{p}", has_media=p % 2 == 0,
                                                 occurred_at=_at(t + 120), event_id=f"rv-{order}")))
    for h in range(hot_purchases):
        events.append((h, f.purchase("HOT", "1.00", order_id=f"o-hot-{h}", occurred_at=_at(h),
                                     event_id=f"pu-hot-{h}")))
    events.sort(key=lambda pair: pair[0])
    return [event for _, event in events]


_MEMBER_ROWS = text(
    """
    SELECT member_id, tier, tier_floor, available_points, pending_points, qualifying_points, lifetime_points,
           birthday, locale, signed_up_at, first_purchase_at, check_in_last_on, check_in_streak
    FROM members ORDER BY member_id
    """
)
_ENTRY_SUMS = text(
    """
    SELECT member_id, kind, count(*) AS n, sum(points) AS points, sum(pending_points) AS pending,
           sum(qualifying_points) AS qualifying
    FROM ledger_entries GROUP BY member_id, kind ORDER BY member_id, kind
    """
)
_LOT_SUMS = text("SELECT member_id, count(*), sum(points), sum(remaining) FROM lots GROUP BY member_id ORDER BY member_id")


async def snapshot(engine) -> dict:
    """Everything the final ledger is judged on, without ids or wall-clock timestamps."""
    async with engine.connect() as conn:
        return {
            "members": [tuple(r) for r in (await conn.execute(_MEMBER_ROWS)).all()],
            "entries": [tuple(r) for r in (await conn.execute(_ENTRY_SUMS)).all()],
            "lots": [tuple(r) for r in (await conn.execute(_LOT_SUMS)).all()],
            "processed": (await conn.execute(text("SELECT count(*) FROM processed_events"))).scalar_one(),
            "rejected": (await conn.execute(text("SELECT count(*) FROM rejected_events"))).scalar_one(),
        }
