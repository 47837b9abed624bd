"""Plain-text rendering of an evaluation's trace: why a member got these points."""

from __future__ import annotations

from worker.domain.engine.evaluate import Evaluation


def explain(evaluation: Evaluation) -> str:
    """One line per rule that listens to the event, matched (+) or not (-), then the total."""
    lines = [f"{evaluation.event_type} at {evaluation.local_at.isoformat()} (program {evaluation.program_version})"]
    width = max((len(c.rule) for c in evaluation.trace), default=0)
    for considered in evaluation.trace:
        mark = "+" if considered.matched else "-"
        points = f"{considered.points:>+7d}" if considered.points is not None else " " * 7
        reason = considered.reason or "matched"
        lines.append(f"  {mark} {considered.rule:<{width}} {points}  {reason}")
    if not evaluation.trace:
        lines.append("  no rule listens to this event")
    lines.append(f"  = {evaluation.points} points")
    return "\n".join(lines)
