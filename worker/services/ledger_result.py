"""What applying one event to a member's ledger produced.

Its own module because the ledger's handlers return it, the mall's among them, and the
ledger imports those handlers: the type sits below both, so neither imports the other back.
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
    detail: dict = field(default_factory=dict)
    # (kind, points) of the entries and (from, to) of the tier changes this event wrote.
    movements: tuple[tuple[str, int], ...] = ()
    tier_moves: tuple[tuple[str, str], ...] = ()

    def as_json(self) -> dict:
        out: dict[str, Any] = {"points": self.points}
        if self.note:
            out["note"] = self.note
        out.update(self.detail)
        return out
