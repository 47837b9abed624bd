"""Literal programs and events for the rule-engine tests: plain data, no fixtures."""

from __future__ import annotations

import tomllib
from datetime import datetime
from zoneinfo import ZoneInfo

from worker.domain.engine import EngineProgram, Evaluation, EventData, Member, evaluate, parse_engine_program

ZONE = ZoneInfo("Asia/Shanghai")
UTC = ZoneInfo("UTC")

HEAD = 'version = 7\ntimezone = "Asia/Shanghai"\n'
TIERS = """
[tiers]
{settings}
[[tiers.levels]]
name = "Regular"
threshold = 0
[[tiers.levels]]
name = "Silver"
threshold = 1000
multiplier = "1.5"
[[tiers.levels]]
name = "Gold"
threshold = 5000
multiplier = "2"
[[tiers.levels]]
name = "Diamond"
threshold = 15000
multiplier = "3"
"""
REGULAR = Member(tier="Regular")


def program(rules: str, extra: str = "", tiers: str = "") -> EngineProgram:
    """A program from TOML text: `extra` holds top-level tables ([groups], [activity], [items])."""
    return parse_engine_program(tomllib.loads(HEAD + extra + TIERS.format(settings=tiers) + rules))


def at(year: int, month: int, day: int, hour: int = 12, minute: int = 0, zone=ZONE) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=zone)


def item(sku: str, amount: str, category: str = "general", quantity: int = 1, labels: tuple = ()) -> dict:
    return {"sku": sku, "category": category, "amount": amount, "quantity": quantity, "labels": list(labels)}


def purchase(amount: str, *items: dict, when: datetime | None = None, source: str = "pos") -> EventData:
    return EventData(
        "purchase", source, when or at(2026, 11, 2), {"order_id": "O1", "amount": amount, "items": list(items)}
    )


def event(type_: str, when: datetime | None = None, source: str = "app", **payload) -> EventData:
    return EventData(type_, source, when or at(2026, 11, 2), payload)


def run(prog: EngineProgram, ev: EventData, member: Member = REGULAR) -> Evaluation:
    return evaluate(prog, member, ev)


def points(prog: EngineProgram, ev: EventData, member: Member = REGULAR) -> dict[str, int]:
    return run(prog, ev, member).points_by_rule()


def replay(prog: EngineProgram, events, member: Member = REGULAR) -> list[dict[str, int]]:
    """Each event's points by rule, carrying the rule state from one event to the next."""
    results = []
    state: dict = dict(member.state)
    for ev in events:
        result = evaluate(
            prog,
            Member(member.tier, member.qualifying, member.labels, member.birthday, member.purchase_count, state),
            ev,
        )
        results.append(result.points_by_rule())
        state = result.state
    return results
