"""What applying one event to a member's ledger produced.

A plain value in the domain: the ledger's handlers return it (the mall's among them), and the
store records it as an event's outcome.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Result:
    status: str  # applied | duplicate | deferred | conflict
    member_id: str
    points: int = 0
    note: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)
    # (kind, points) of the entries and (from, to) of the tier changes this event wrote.
    movements: tuple[tuple[str, int], ...] = ()
    tier_moves: tuple[tuple[str, str], ...] = ()

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"points": self.points}
        if self.note:
            out["note"] = self.note
        out.update(self.detail)
        return out
