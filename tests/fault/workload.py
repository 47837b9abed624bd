"""A deterministic mixed workload and a comparable snapshot of the ledger it produces."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from sqlalchemy import text

from tests import factories as f
from worker.domain.reevaluation import points_by_event

START = datetime(2026, 10, 1, 2, 0, tzinfo=UTC)
LOCALES = ("en", "zh-Hans", "zh-Hant")


def _at(minutes: int) -> str:
    return (START + timedelta(minutes=minutes)).isoformat()


def workload(members: int, seed: int = 7, hot_purchases: int = 0) -> list[dict]:
    """Signups, purchases, partial refunds, reviews, referrals and daily check-ins for `members`
    members, in occurrence order, plus `hot_purchases` purchases of 1.00 for member HOT.

    Every third member checks in on eight consecutive days (a 7-day streak bonus), and every
    eleventh makes purchases large enough to cross tiers, so tier multipliers and streaks are
    in play: none of it may depend on the order the events are applied in (refunds before
    purchases, referrals before signups, duplicates, interleaving, late events)."""
    rng = random.Random(seed)
    events: list[tuple[int, dict]] = []
    for m in range(members):
        member = f"M{m:04d}"
        t = m  # stagger members by a minute
        if m % 5 != 4:  # some members never sign up: their events still apply
            events.append(
                (
                    t,
                    f.signup(
                        member,
                        occurred_at=_at(t),
                        event_id=f"su-{member}",
                        birthday=f"19{70 + m % 30}-0{1 + m % 9}-1{m % 10}",
                        locale=LOCALES[m % 3],
                    ),
                )
            )
        if m % 7 == 0 and m + 1 < members:
            events.append((t + 1, f.referral(member, f"M{m + 1:04d}", occurred_at=_at(t + 1), event_id=f"rf-{member}")))
        if m % 3 == 0:
            for day in range(8):
                at = t + 24 * 60 * day + 5
                events.append((at, f.check_in(member, _at(at), event_id=f"ci-{member}-{day}")))
        for p in range(rng.randint(1, 3)):
            t += rng.randint(30, 3000)
            order = f"o-{member}-{p}"
            amount = Decimal(rng.randint(100, 8_000)) / 100
            if m % 11 == 0:
                amount *= 60  # 60 to 4,800: past Silver and Gold within a few purchases
            events.append(
                (t, f.purchase(member, f"{amount:.2f}", order_id=order, occurred_at=_at(t), event_id=f"pu-{order}"))
            )
            if rng.random() < 0.25:
                part = max(Decimal("0.01"), (amount * Decimal(rng.randint(10, 100)) / 100).quantize(Decimal("0.01")))
                events.append(
                    (
                        t + 60,
                        f.refund(
                            member,
                            order,
                            f"{min(part, amount):.2f}",
                            refund_id=f"r-{order}",
                            occurred_at=_at(t + 60),
                            event_id=f"rf-{order}",
                        ),
                    )
                )
            if rng.random() < 0.2:
                events.append(
                    (
                        t + 120,
                        f.review(
                            member,
                            order,
                            f"sku-{p}",
                            has_media=p % 2 == 0,
                            occurred_at=_at(t + 120),
                            event_id=f"rv-{order}",
                        ),
                    )
                )
    for h in range(hot_purchases):
        events.append((h, f.purchase("HOT", "1.00", order_id=f"o-hot-{h}", occurred_at=_at(h), event_id=f"pu-hot-{h}")))
    events.sort(key=lambda pair: pair[0])
    return [event for _, event in events]


_MEMBER_ROWS = text(
    """
    SELECT member_id, tier, tier_floor, available_points, pending_points, qualifying_points, lifetime_points,
           birthday, locale, signed_up_at, first_purchase_at, rule_state
    FROM members ORDER BY member_id
    """
)
_ENTRIES = text(
    "SELECT member_id, source, event_id, kind, qualifying_points, rules FROM ledger_entries ORDER BY entry_id"
)
_LOT_SUMS = text("SELECT member_id, sum(remaining) FROM lots GROUP BY member_id ORDER BY member_id")


def _points_by_member_event(rows) -> dict:
    """Qualifying points per member, event and rule: what each event earned, corrections included."""
    by_member: dict[str, list] = {}
    for row in rows:
        by_member.setdefault(row["member_id"], []).append(row)
    return {member: points_by_event(entries) for member, entries in sorted(by_member.items())}


async def snapshot(engine) -> dict:
    """Everything the final ledger is judged on, without ids or wall-clock timestamps: member
    rows, what each event earned by rule, and the points left in lots (how many entries and
    lots hold them depends on whether corrections were booked, which arrival order decides)."""
    async with engine.connect() as conn:
        return {
            "members": [tuple(r) for r in (await conn.execute(_MEMBER_ROWS)).all()],
            "points": _points_by_member_event((await conn.execute(_ENTRIES)).mappings().all()),
            "lots": [tuple(r) for r in (await conn.execute(_LOT_SUMS)).all()],
            "processed": (await conn.execute(text("SELECT count(*) FROM processed_events"))).scalar_one(),
            "rejected": (await conn.execute(text("SELECT count(*) FROM rejected_events"))).scalar_one(),
        }
