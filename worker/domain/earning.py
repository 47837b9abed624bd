"""One event's earning on one member as the rule engine decides it. Pure.

The deciders (worker/domain/deciders.py) call `evaluate_for`, on the live path and in a
re-evaluation alike; `explain` builds the same member snapshot.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from worker.domain import engine
from worker.domain.decisions import Origin
from worker.domain.engine import Award, Evaluation
from worker.domain.program import Program


@dataclass(frozen=True)
class Earned:
    """An evaluation as the ledger books it (engine/entries.py)."""

    awards: tuple[Award, ...]
    state: dict[str, Any]
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
    account: Any,
    origin: Origin,
    payload: dict[str, Any] | None = None,
    *,
    event_type: str | None = None,
    purchase_count: int = 0,
    extra: dict[str, Any] | None = None,
) -> Earned:
    """The program's rules for one event on this member as they are now (before the event);
    `account` as in member_snapshot."""
    rules = engine.rules_of(program)
    member = member_snapshot(account, purchase_count)
    data = engine.EventData(event_type or origin.event_type, origin.source, origin.occurred_at, payload or {})
    evaluation: Evaluation = engine.evaluate(rules, member, data)
    awards = engine.entry_awards(rules, evaluation, extra)
    return Earned(awards, evaluation.state, engine.outcome_note(evaluation), engine.order_points(rules, awards))


def member_snapshot(account: Any, purchase_count: int) -> engine.Member:
    """What the engine knows of a member: the account (or a decider's MemberState: anything with
    tier, qualifying, profile and rule_state) as it is before the event.

    A member imported from a previous program (`imported` in the profile) is an existing
    customer: their import counts as one purchase before this program's, so a first-purchase
    rule (`nth_purchase = [1]`) never pays them and their first purchase here is number 2."""
    return engine.Member(
        tier=account.tier,
        qualifying=account.qualifying,
        labels=frozenset(account.profile.get("labels") or ()),
        birthday=account.profile["birthday"],
        purchase_count=purchase_count + imported_purchases(account.profile),
        state=account.rule_state,
    )


def imported_purchases(profile: dict[str, Any]) -> int:
    """The purchases a member brought from a previous program, as this program counts them: one."""
    return 1 if profile.get("imported") else 0
