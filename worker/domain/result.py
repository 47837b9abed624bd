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

    @property
    def plain(self) -> bool:
        """`applied` with no points, note or detail: the event's processed_events row keeps the
        empty result its claim wrote."""
        return self.status == "applied" and not (self.points or self.note or self.detail)

    def recorded(self) -> dict[str, Any]:
        """The result an event's processed_events row keeps: empty for a plain one."""
        return {} if self.plain else self.as_json()

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"points": self.points}
        if self.note:
            out["note"] = self.note
        out.update(self.detail)
        return out
