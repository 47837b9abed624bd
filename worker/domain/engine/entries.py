"""An evaluation as the ledger books it: awards in the per-award shape member history reads,
the order's share of the points, and the note when nothing was given. Pure.

The shape is the one worker/domain/engine/reference_rules.py wrote before the engine was wired in, so stored
history, `describe_rule` and the demo read old and new entries alike:

    {"rule": "purchase", "points": 2400, "amount": "1200.00", "tier": "Regular",
     "tier_multiplier": "1.0", "campaign": "member_day", "campaign_multiplier": "2", ...}

Engine fields (rate, unit, rounding, multipliers by rule id) are kept next to them, and every
award names the program version that produced it.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from worker.domain.engine.compiled import compiled
from worker.domain.engine.evaluate import Award, Evaluation
from worker.domain.engine.language import EngineProgram, Multiply

# Rule kinds whose points are the order's own (refunds reverse them in proportion); fixed
# bonuses on a purchase (the first-purchase bonus) are taken back by a full refund only,
# unless the program's `[refunds] reverse_bonuses` is false.
ORDER_EFFECTS = ("per_amount", "per_quantity")


def entry_awards(
    program: EngineProgram, evaluation: Evaluation, extra: Mapping[str, Any] | None = None
) -> tuple[Award, ...]:
    """The evaluation's awards with their inputs in member-history shape; `extra` is added to each
    (e.g. the referee of a referral, which the engine does not need to know)."""
    by_id = compiled(program).by_id
    out = []
    for award in evaluation.awards:
        rule = by_id[award.rule]
        detail: dict[str, Any] = {}
        if rule.effect.kind == "per_amount":
            detail = _purchase_detail(program, award.detail, by_id)
        elif rule.streak is not None:
            days = evaluation.state.get(rule.id, {}).get("streak", {}).get("days", 0)
            # A streak that restarts stores 0 on the day it completes: that day was restart_after.
            detail = {"streak_day": days or rule.streak.restart_after}
        elif rule.when.streak is not None:
            detail = {"streak_days": rule.when.streak.day or rule.when.streak.every}
        else:
            detail = dict(award.detail)
        detail.update(extra or {})
        detail["program_version"] = evaluation.program_version
        out.append(Award(award.rule, award.points, detail))
    return tuple(out)


def _purchase_detail(program: EngineProgram, engine: Mapping[str, Any], by_id: Mapping[str, Any]) -> dict[str, Any]:
    multipliers: dict[str, str] = dict(engine.get("multipliers", {}))
    tier_factor = next(
        (
            factor
            for rule_id, factor in multipliers.items()
            if isinstance(by_id[rule_id].effect, Multiply) and by_id[rule_id].effect.factor == "tier"
        ),
        "1",
    )
    detail: dict[str, Any] = {"amount": engine["amount"], "tier": engine["tier"], "tier_multiplier": tier_factor}
    if "weighted_amount" in engine:
        detail["item_bonus_amount"] = str(Decimal(engine["weighted_amount"]) - Decimal(engine["amount"]))
    others = [(rule_id, factor) for rule_id, factor in multipliers.items() if by_id[rule_id].effect.factor != "tier"]
    if others:
        rule_id, factor = others[0]
        detail.update(campaign=by_id[rule_id].description or rule_id, campaign_multiplier=factor)
    detail.update({key: engine[key] for key in ("rate", "unit", "rounding") if key in engine})
    if multipliers:
        detail["multipliers"] = multipliers
    if "capped_from" in engine:
        detail["capped_from"] = engine["capped_from"]
    return detail


def order_points(program: EngineProgram, awards: tuple[Award, ...]) -> int:
    """The points of an event that belong to its order (reversed by refunds)."""
    kinds = compiled(program).kinds
    return sum(award.points for award in awards if kinds.get(award.rule) in ORDER_EFFECTS)


def outcome_note(evaluation: Evaluation) -> str | None:
    """Why an event earned nothing, as `<event type>.<reason>`; None when some rule gave an award.

    The reason is that of the rule named after the event type when one listens; otherwise (an
    activity's rules are named for their kinds) the first refusal a note has a name for."""
    if evaluation.awards:
        return None
    event_type = evaluation.event_type
    named = next((c for c in evaluation.trace if c.rule == event_type), None)
    if named is not None:
        return _note(event_type, named.reason) or f"{event_type}.no_rule_matched"
    for considered in evaluation.trace:
        note = _note(event_type, considered.reason)
        if note is not None:
            return note
    return f"{event_type}.no_rule_matched"


def _note(event_type: str, reason: str) -> str | None:
    """The note for a refusal by streak, limit or kind; None for conditions that did not hold."""
    if reason.startswith("already counted"):
        return (
            f"{event_type}.already_checked_in_today"
            if event_type == "check_in"
            else f"{event_type}.already_counted_today"
        )
    if "is before the streak's last day" in reason:
        return (
            f"{event_type}.earlier_than_last_check_in"
            if event_type == "check_in"
            else f"{event_type}.earlier_than_streak"
        )
    if reason.startswith("limit reached"):
        if event_type == "signup":
            return "signup.already_signed_up"
        if "per day" in reason:
            return f"{event_type}.daily_limit_reached"
        return f"{event_type}.limit_reached"
    if "is not declared by the program" in reason:
        return f"{event_type}.kind_not_declared"
    return None
