"""One event's earning on one member as the rule engine decides it, for the ledger and its replay.

Both the ledger's handlers (worker/services/ledger.py) and the re-evaluation of a member's
history (worker/services/history.py) call `evaluate_for`, so an event earns the same in both.
"""

from __future__ import annotations

from dataclasses import dataclass

from worker.domain import engine
from worker.domain.engine import Award, Evaluation
from worker.domain.program import Program
from worker.services.accounts import Account, Origin


@dataclass(frozen=True)
class Earned:
    """An evaluation as the ledger books it (engine/entries.py)."""

    awards: tuple[Award, ...]
    state: dict
    note: str | None
    order_points: int = 0

    @property
    def points(self) -> int:
        return sum(a.points for a in self.awards)

    @property
    def bonus_points(self) -> int:
        """What a purchase earned beyond its order's amount-based points (its fixed bonuses),
        which only a full refund takes back."""
        return self.points - self.order_points


def evaluate_for(
    program: Program,
    account: Account,
    origin: Origin,
    payload: dict | None = None,
    *,
    event_type: str | None = None,
    purchase_count: int = 0,
    extra: dict | None = None,
) -> Earned:
    """The program's rules for one event on this member as they are now (before the event)."""
    rules = engine.rules_of(program)
    member = member_snapshot(account, purchase_count)
    data = engine.EventData(event_type or origin.event_type, origin.source, origin.occurred_at, payload or {})
    evaluation: Evaluation = engine.evaluate(rules, member, data)
    awards = engine.entry_awards(rules, evaluation, extra)
    return Earned(awards, evaluation.state, engine.outcome_note(evaluation), engine.order_points(rules, awards))


def member_snapshot(account: Account, purchase_count: int) -> engine.Member:
    """What the engine knows of a member: the account as it is before the event."""
    return engine.Member(
        tier=account.tier,
        qualifying=account.qualifying,
        birthday=account.profile["birthday"],
        purchase_count=purchase_count,
        state=account.rule_state,
    )
