"""Shared pieces of the calendar jobs."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Range:
    """Members with after < member_id <= upto (upto None: no upper end)."""

    after: str
    upto: str | None

    def params(self) -> dict:
        return {"after": self.after, "upto": self.upto}


@dataclass(frozen=True)
class ChunkResult:
    members: int = 0
    points: int = 0


async def lock_then_apply(conn, lock, apply, span: Range, now, key: str) -> ChunkResult:
    """Lock the range's members that have work (in id order, as the ledger does), then do the
    work for them in one set-based statement returning `members` and `points`."""
    member_ids = (await conn.execute(lock, {**span.params(), "now": now})).scalars().all()
    if not member_ids:
        return ChunkResult()
    row = (await conn.execute(apply, {"member_ids": list(member_ids), "now": now, "key": key})).one()
    return ChunkResult(members=row.members, points=int(row.points))


# The member-range condition every job query uses, with :after and :upto bound from a Range.
IN_RANGE = "member_id > :after AND (CAST(:upto AS text) IS NULL OR member_id <= CAST(:upto AS text))"
