"""Recompute balances from entries, lots and orders and compare them with the balance rows."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from worker.domain.errors import InvariantViolation

# Members per audit query: large enough to be quick, small enough to keep each query short.
AUDIT_CHUNK_MEMBERS = 5000

_COMPARE = """
SELECT m.member_id,
       m.available_points, m.pending_points, m.qualifying_points, m.lifetime_points,
       coalesce(e.available, 0) AS entries_available, coalesce(e.pending, 0) AS entries_pending,
       coalesce(e.qualifying, 0) AS entries_qualifying, coalesce(e.lifetime, 0) AS entries_lifetime,
       coalesce(l.available, 0) AS lots_available, coalesce(l.pending, 0) AS lots_pending,
       m.qualifying_amount, coalesce(o.spent, 0) AS orders_spent
FROM members m
LEFT JOIN (
    SELECT member_id, sum(points) AS available, sum(pending_points) AS pending,
           sum(qualifying_points) AS qualifying,
           -- Lifetime points: what events earned, less what corrections took back of it; a
           -- refund's reversal, and a correction of one, leave lifetime points alone.
           coalesce(sum(points + pending_points) FILTER (
               WHERE kind = 'earn' AND NOT rules @> '[{{"rule": "refund", "corrects": {{}}}}]'), 0)
           + coalesce(sum(qualifying_points) FILTER (
               WHERE kind = 'reverse' AND rules @> '[{{"corrects": {{}}}}]'
               AND NOT rules @> '[{{"rule": "refund", "corrects": {{}}}}]'), 0)
           -- A merge moves the absorbed member's lifetime points to the member kept; an import
           -- brings a member's in from the previous program.
           + coalesce(sum(CAST(rules -> 0 ->> 'lifetime_points' AS bigint)) FILTER (WHERE kind IN ('transfer', 'import')), 0)
           AS lifetime
    FROM ledger_entries WHERE {entries_filter} GROUP BY member_id
) e USING (member_id)
LEFT JOIN (
    SELECT member_id,
           coalesce(sum(remaining) FILTER (WHERE pending_until IS NULL), 0) AS available,
           coalesce(sum(remaining) FILTER (WHERE pending_until IS NOT NULL), 0) AS pending
    FROM lots WHERE {lots_filter} GROUP BY member_id
) l USING (member_id)
LEFT JOIN (
    SELECT member_id, sum(amount - refunded_amount) AS spent
    FROM orders WHERE amount IS NOT NULL AND {entries_filter} GROUP BY member_id
) o USING (member_id)
WHERE {members_filter}
ORDER BY m.member_id
"""

_ONE = text(
    _COMPARE.format(
        entries_filter="member_id = :member_id",
        lots_filter="member_id = :member_id",
        members_filter="m.member_id = :member_id",
    )
)
_CHUNK = text(
    _COMPARE.format(
        entries_filter="member_id > :after AND member_id <= :upto",
        lots_filter="member_id > :after AND member_id <= :upto",
        members_filter="m.member_id > :after AND m.member_id <= :upto",
    )
)
_CHUNK_END = text(
    "SELECT max(member_id) FROM (SELECT member_id FROM members WHERE member_id > :after ORDER BY member_id LIMIT :n) s"
)


@dataclass(frozen=True)
class Difference:
    member_id: str
    field: str
    balance: int | Decimal
    recomputed: int | Decimal

    def __str__(self) -> str:
        return f"{self.member_id}: {self.field} is {self.balance} but entries/lots say {self.recomputed}"


def _differences(row) -> list[Difference]:
    checks = [
        ("available_points", row.available_points, "entries", row.entries_available),
        ("available_points", row.available_points, "lots", row.lots_available),
        ("pending_points", row.pending_points, "entries", row.entries_pending),
        ("pending_points", row.pending_points, "lots", row.lots_pending),
        ("qualifying_points", row.qualifying_points, "entries", row.entries_qualifying),
        ("lifetime_points", row.lifetime_points, "entries", row.entries_lifetime),
        ("qualifying_amount", row.qualifying_amount, "orders", row.orders_spent),
    ]
    return [
        # Sums of bigints come back as numeric: points are compared as integers, money as Decimal.
        Difference(
            row.member_id,
            f"{name} ({against})",
            balance,
            Decimal(recomputed) if name.endswith("_amount") else int(recomputed),
        )
        for name, balance, against, recomputed in checks
        if balance != recomputed
    ]


async def assert_member_consistent(conn: AsyncConnection, member_id: str) -> None:
    row = (await conn.execute(_ONE, {"member_id": member_id})).one()
    problems = _differences(row)
    if problems:
        raise InvariantViolation("; ".join(str(p) for p in problems))


@dataclass(frozen=True)
class AuditReport:
    members_checked: int
    differences: list[Difference]

    @property
    def clean(self) -> bool:
        return not self.differences


async def audit_all(engine: AsyncEngine, chunk_members: int = AUDIT_CHUNK_MEMBERS) -> AuditReport:
    """Every member, in chunks of member ids, each chunk one set-based query."""
    checked, differences, after = 0, [], ""
    async with engine.connect() as conn:
        while True:
            upto = (await conn.execute(_CHUNK_END, {"after": after, "n": chunk_members})).scalar()
            if upto is None:
                break
            rows = (await conn.execute(_CHUNK, {"after": after, "upto": upto})).all()
            checked += len(rows)
            for row in rows:
                differences.extend(_differences(row))
            after = upto
            await conn.rollback()
    return AuditReport(checked, differences)
