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


# The member-range condition every job query uses, with :after and :upto bound from a Range.
IN_RANGE = "member_id > :after AND (CAST(:upto AS text) IS NULL OR member_id <= CAST(:upto AS text))"
