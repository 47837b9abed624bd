"""Today's Program (the section-per-rule file of docs/program.md) as a rule list.

Existing program files keep working: `from_program(load_program(path))` gives the engine
program with the same numbers, campaigns and category/SKU line multipliers. The
equivalence tests hold this translation to the results of worker/domain/engine/reference_rules.py.
"""

from __future__ import annotations

from typing import Any

from worker.domain.engine.language import EngineProgram, parse_engine_program
from worker.domain.engine.reference_rules import MemberState
from worker.domain.program import Program


def program_rules(program: Program) -> list[dict[str, Any]]:
    """The rule tables (as a program file would hold them) for today's earning rules."""
    rules: list[dict[str, Any]] = [
        {"id": "purchase", "on": ["purchase"], "effect": {"kind": "per_amount", "rate": "1", "unit": "1"}},
        {"id": "tier_multiplier", "on": ["purchase"], "effect": {"kind": "multiply", "factor": "tier"}},
    ]
    # SKU rules before category rules: the "first" line group makes a SKU's multiplier win.
    for index, (sku, factor) in enumerate(program.multipliers.skus.items()):
        rules.append(
            {
                "id": f"line_sku_{index}",
                "on": ["purchase"],
                "description": f"SKU {sku}",
                "when": {"items": {"skus": [sku]}},
                "effect": {"kind": "multiply", "factor": str(factor), "target": "lines", "group": "line"},
            }
        )
    for index, (category, factor) in enumerate(program.multipliers.categories.items()):
        rules.append(
            {
                "id": f"line_category_{index}",
                "on": ["purchase"],
                "description": f"category {category}",
                "when": {"items": {"categories": [category]}},
                "effect": {"kind": "multiply", "factor": str(factor), "target": "lines", "group": "line"},
            }
        )
    if program.member_day.enabled:
        rules.append(
            {
                "id": "member_day",
                "on": ["purchase"],
                "when": (
                    {"weekdays": list(program.member_day.weekdays)}
                    if program.member_day.weekdays is not None
                    else {"days_of_month": [program.member_day.day_of_month]}
                ),
                "effect": {"kind": "multiply", "factor": str(program.member_day.multiplier), "group": "campaign"},
            }
        )
    rules.append(
        {
            "id": "birthday",
            "on": ["purchase"],
            "when": {"birthday": "day"},
            "effect": {"kind": "multiply", "factor": str(program.birthday.multiplier), "group": "campaign"},
        }
    )
    for index, campaign in enumerate(program.campaigns):
        when: dict[str, Any] = {"starts_on": campaign.starts_on, "ends_on": campaign.ends_on}
        if campaign.sources is not None:
            when["sources"] = list(campaign.sources)
        rules.append(
            {
                "id": f"campaign_{index}",
                "on": ["purchase"],
                "description": campaign.name,
                "when": when,
                "effect": {"kind": "multiply", "factor": str(campaign.multiplier), "group": "campaign"},
            }
        )
    if program.purchase.first_purchase_bonus:
        rules.append(
            {
                "id": "first_purchase",
                "on": ["purchase"],
                "when": {"nth_purchase": [1]},
                "effect": {"kind": "fixed", "points": program.purchase.first_purchase_bonus},
            }
        )
    rules.append(
        {
            "id": "signup",
            "on": ["signup"],
            "effect": {"kind": "fixed", "points": program.signup.points},
            "limits": [{"per": "ever", "count": 1}],
        }
    )
    check_in = program.check_in
    rules.append(
        {
            "id": "check_in",
            "on": ["check_in"],
            "streak": {"restart_after": check_in.streak_days},
            "effect": {"kind": "fixed", "points": check_in.points},
        }
    )
    rules.append(
        {
            "id": "check_in_streak",
            "on": ["check_in"],
            "when": {"streak": {"rule": "check_in", "day": check_in.streak_days}},
            "effect": {"kind": "fixed", "points": check_in.streak_bonus},
        }
    )
    review = program.review
    rules.append(
        {
            "id": "review",
            "on": ["review"],
            "effect": {"kind": "fixed", "points": review.points},
            "limits": [{"per": "day", "count": review.daily_limit}],
        }
    )
    if review.media_bonus:
        rules.append(
            {
                "id": "review_media",
                "on": ["review"],
                "when": {"after_rules": ["review"], "payload": {"has_media": True}},
                "effect": {"kind": "fixed", "points": review.media_bonus},
            }
        )
    rules.append(
        {
            "id": "referral_referrer",
            "on": ["referral"],
            "effect": {"kind": "fixed", "points": program.referral.referrer_points},
        }
    )
    rules.append(
        {
            "id": "referral_referee",
            "on": ["referral_referee"],
            "effect": {"kind": "fixed", "points": program.referral.referee_points},
        }
    )
    return rules


def from_program(program: Program, version: str | int = "legacy") -> EngineProgram:
    """The engine program equivalent to today's Program: tiers never go down, or, with
    `[schedule.tier_review]` enabled, only at that review (its window and grace days)."""
    data = {
        "version": version,
        "name": program.name,
        "timezone": program.timezone,
        "groups": {"campaign": "highest", "line": "first"},
        "tiers": {
            "basis": "points",
            "downgrade": "review" if program.schedule.tier_review.enabled else "never",
            "review_window_days": program.schedule.tier_review.window_days,
            "review_grace_days": program.schedule.tier_review.grace_days,
            "levels": [
                {"name": t.name, "threshold": t.threshold, "multiplier": str(t.multiplier)} for t in program.tiers
            ],
        },
        "rules": program_rules(program),
    }
    return parse_engine_program(data, origin=f"program {program.name!r}")


def state_from_member(state: MemberState) -> dict[str, Any]:
    """Today's rule columns of a member as engine rule state (for moving members over)."""
    rule_state: dict[str, Any] = {}
    if state.signed_up:
        rule_state["signup"] = {"ever": {"count": 1, "points": 0}}
    if state.check_in_last_on is not None:
        rule_state["check_in"] = {
            "streak": {"last_on": state.check_in_last_on.isoformat(), "days": state.check_in_streak}
        }
    if state.review_day is not None:
        rule_state["review"] = {f"day:{state.review_day.isoformat()}": {"count": state.reviews_on_day, "points": 0}}
    return rule_state


# Engine programs derived from Programs, by id (the Program is kept with it so its id is not
# reused). Few Programs live in a process: the runtime's, and a test's or the CLI's.
_DERIVED: dict[int, tuple[Program, EngineProgram]] = {}
_DERIVED_MAX = 64


def file_version(program: Program) -> str:
    """The version recorded for rules that come from a program file: `file:<program name>`."""
    return f"file:{program.name}"


def rules_of(program: Program) -> EngineProgram:
    """The earning rules in force for `program`: the ones set by `with_rules`, else its own
    sections translated by `from_program` (computed once per Program)."""
    # The private attribute read from pydantic's own dict: `program._rules` goes through the
    # model's __getattr__, a cost on every event.
    private = program.__pydantic_private__
    rules: EngineProgram | None = private.get("_rules") if private else None  # set by with_rules
    if rules is not None:
        return rules
    held = _DERIVED.get(id(program))
    if held is not None and held[0] is program:
        return held[1]
    derived = from_program(program, version=file_version(program))
    if len(_DERIVED) >= _DERIVED_MAX:
        _DERIVED.pop(next(iter(_DERIVED)))
    _DERIVED[id(program)] = (program, derived)
    return derived


def has_rules(program: Program) -> bool:
    """Whether the program's earning rules were set (a rule-language file, a published version)
    rather than derived from its sections."""
    return program._rules is not None


def with_rules(program: Program, rules: EngineProgram) -> Program:
    """A copy of `program` whose earning rules and tier settings are `rules`' (jobs and the
    mall stay the program's)."""
    copy = program.model_copy()
    copy._rules = rules
    return copy
