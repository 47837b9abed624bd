"""Why a ledger entry has its points, in words: the rule's inputs as stored with the entry. Pure."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def describe_rule(rule: Mapping[str, Any]) -> str:
    """One rule application as the operator reads it: `1299.00 x1.0 (Regular) x2 (member_day) = 2598`."""
    name = rule.get("rule")
    if "merge" in rule:  # a merge's transfer entry (docs/identities.md)
        merge = rule["merge"]
        return f"member {merge.get('absorbed')} merged into {merge.get('survivor')}"
    if "moves" in rule:
        moves = rule["moves"]
        return f"{name} {rule.get('points', 0):+d} of {moves.get('event_type') or 'event'} {moves.get('event_id')}"
    if "corrects" in rule:  # a correction booked by a late event's re-evaluation (its note follows)
        return f"{name} {rule.get('points', 0):+d}"
    if name == "purchase":
        text = f"{rule['amount']} x{rule['tier_multiplier']} ({rule['tier']})"
        if "campaign" in rule:
            text += f" x{rule['campaign_multiplier']} ({rule['campaign']})"
        return f"{text} = {rule['points']}"
    if name == "refund":
        return f"refund {rule['amount']} of {rule['order_amount']} on {rule['order_id']}"
    if name == "redemption":
        text = f"{rule['quantity']} x {rule['reward_id']} at {rule['cost_points']}"
        for coupon in rule.get("coupons", ()):  # a coupon reward's codes, one per unit
            text += f", coupon {coupon['code']} until {coupon['expires_on']}"
        return text
    if name == "adjustment":  # an operator's: who and why (docs/operations.md)
        text = f"adjustment {rule.get('points', 0):+d} by {rule.get('by')}: {rule.get('reason')}"
        notes = [f"expires on {rule['expires_on']}"] if rule.get("expires_on") else []
        if rule.get("qualifying"):
            notes.append("qualifying")
        return f"{text} ({', '.join(notes)})" if notes else text
    if name is None:
        return f"took back {rule.get('points_due')}"
    return f"{name} {rule.get('points', '')}".strip()


def describe_rules(rules: list[Mapping[str, Any]] | None) -> str:
    """`check_in 10; ...`; a correction ends with why: `first_purchase -100 (purchase p-2
    re-earned after the late purchase p-1: -100)`."""
    text = "; ".join(describe_rule(r) for r in rules or [])
    note = next((r["note"] for r in rules or [] if "corrects" in r and r.get("note")), None)
    return f"{text} ({note})" if note else text
