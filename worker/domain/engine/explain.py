"""Why a member got these points: an evaluation's trace as text, and as the data
`loyalty program explain` prints (text and JSON from one mapping, so they cannot disagree)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

from worker.domain.engine.compiled import evaluate
from worker.domain.engine.evaluate import Evaluation, EventData, Member, event_data
from worker.domain.engine.language import EngineProgram


def explain(evaluation: Evaluation) -> str:
    """One line per rule that listens to the event, matched (+) or not (-), then the total."""
    lines = [f"{evaluation.event_type} at {evaluation.local_at.isoformat()} (program {evaluation.program_version})"]
    lines += _rule_lines(_considered(evaluation))
    lines.append(f"  = {evaluation.points} points")
    return "\n".join(lines)


def _considered(evaluation: Evaluation) -> list[dict[str, Any]]:
    return [{"rule": c.rule, "matched": c.matched, "points": c.points, "reason": c.reason} for c in evaluation.trace]


def _rule_lines(rules: Sequence[Mapping[str, Any]]) -> list[str]:
    if not rules:
        return ["  no rule listens to this event"]
    width = max(len(rule["rule"]) for rule in rules)
    lines = []
    for rule in rules:
        mark = "+" if rule["matched"] else "-"
        points = f"{rule['points']:>+7d}" if rule["points"] is not None else " " * 7
        lines.append(f"  {mark} {rule['rule']:<{width}} {points}  {rule['reason'] or 'matched'}")
    return lines


def _multipliers(evaluation: Evaluation) -> list[dict[str, Any]]:
    """The order multipliers applied to the event's per_amount points, in the order first used."""
    seen: dict[str, str] = {}
    for award in evaluation.awards:
        for rule_id, factor in award.detail.get("multipliers", {}).items():
            seen.setdefault(rule_id, factor)
    return [{"rule": rule_id, "factor": factor} for rule_id, factor in seen.items()]


def _number(value: int | Decimal) -> int | str:
    return value if isinstance(value, int) else str(value)


def member_view(member_id: str, member: Member, known: bool) -> dict[str, Any]:
    """The snapshot an evaluation used; `known` False for a member the ledger has not seen."""
    return {
        "member_id": member_id,
        "known": known,
        "tier": member.tier,
        "qualifying": _number(member.qualifying),
        "purchase_count": member.purchase_count,
        "birthday": member.birthday.isoformat() if member.birthday else None,
        "rule_state": dict(member.state),
    }


def explanation(
    evaluation: Evaluation, event: Any, member: Mapping[str, Any], notes: Sequence[str] = ()
) -> dict[str, Any]:
    """Everything `loyalty program explain` shows about one contract event, JSON-ready:
    the event, the member snapshot, every rule considered (matched or why not, points),
    the multipliers applied and the total."""
    return {
        "event": {
            "type": event.type,
            "event_id": event.event_id,
            "source": event.source,
            "member_id": event.member_id,
            "occurred_at": event.occurred_at.isoformat(),
            "local_at": evaluation.local_at.isoformat(),
        },
        "program_version": evaluation.program_version,
        "member": dict(member),
        "rules": _considered(evaluation),
        "multipliers": _multipliers(evaluation),
        "points": evaluation.points,
        "notes": list(notes),
    }


def explain_event(
    program: EngineProgram,
    event: Any,
    member_id: str,
    member: Member | None,
    notes: Sequence[str] = (),
    *,
    payload: Mapping[str, Any] | None = None,
    conversion: str | None = None,
) -> dict[str, Any]:
    """`explanation` of a contract event evaluated for `member` as it is now; None is a new
    member, in the program's first tier with no purchases and no rule state. `payload`: the
    event's payload as the rules read it (amounts converted to the base currency, described by
    `conversion`), in place of its own."""
    known = member is not None
    subject = member if member is not None else Member(tier=program.tiers.levels[0].name)
    data = event_data(event)
    if payload is not None:
        data = EventData(data.type, data.source, data.occurred_at, dict(payload))
    explained = explanation(evaluate(program, subject, data), event, member_view(member_id, subject, known), notes)
    if conversion is not None:
        explained["conversion"] = conversion
    return explained


def render_explanation(explained: Mapping[str, Any]) -> str:
    """The text form of `explanation`."""
    event, member = explained["event"], explained["member"]
    birthday = f"birthday {member['birthday']}" if member["birthday"] else "no birthday"
    purchases = member["purchase_count"]
    lines = [
        f"member {member['member_id']} ({'as stored' if member['known'] else 'new'}): tier {member['tier']}, "
        f"qualifying {member['qualifying']}, {purchases} {'purchase' if purchases == 1 else 'purchases'} before, {birthday}",
    ]
    if member["rule_state"]:
        lines.append(f"rule state: {json.dumps(member['rule_state'], sort_keys=True)}")
    lines += [f"note: {note}" for note in explained["notes"]]
    lines.append(
        f"{event['type']} {event['event_id']} from {event['source']} at {event['local_at']} "
        f"(program {explained['program_version']})"
    )
    if explained.get("conversion"):
        lines.append(f"  amount: {explained['conversion']}")
    lines += _rule_lines(explained["rules"])
    if explained["multipliers"]:
        lines.append("  multipliers: " + ", ".join(f"{m['rule']} x{m['factor']}" for m in explained["multipliers"]))
    lines.append(f"  = {explained['points']} points")
    return "\n".join(lines)
