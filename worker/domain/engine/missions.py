"""A member's open missions and how far they are, from the program and the rule state (pure)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from worker.domain.engine.language import EngineProgram


def open_missions(program: EngineProgram, state: Mapping[str, Any] | None, now: datetime) -> list[dict[str, Any]]:
    """Every mission rule the member can still complete on `now`, in the program's order.

    A mission not started yet is listed with no step done and no window; one completed or
    expired is not listed, nor one whose window closed before `now` (the mission is marked
    expired only by the member's next event), nor one whose rule has ended (`when.ends_on`).
    """
    today = now.astimezone(program.zone).date()
    out = []
    for rule in program.rules:
        mission = rule.mission
        if mission is None or (rule.when.ends_on is not None and rule.when.ends_on < today):
            continue
        progress = ((state or {}).get(rule.id) or {}).get("mission")
        started_at = ends_at = None
        done: list[str] = []
        if progress is not None:
            if progress["status"] != "open":
                continue
            started_at = datetime.fromisoformat(progress["started_at"])
            ends_at = started_at + timedelta(days=mission.within_days)
            if ends_at < now:
                continue
            done = list(progress["done"])
        out.append(
            {
                "rule": rule.id,
                "description": rule.description,
                "steps_done": len(done),
                "steps_total": len(mission.steps),
                "done": done,
                "remaining": [step.name for step in mission.steps if step.name not in done],
                "started_at": started_at.isoformat() if started_at else None,
                "ends_at": ends_at.isoformat() if ends_at else None,
            }
        )
    return out
