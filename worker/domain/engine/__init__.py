"""The rule engine: program-file rules evaluated as a pure function (docs/rules.md).

Not yet wired into the worker: the ledger still calls worker/domain/rules.py.
"""

from worker.domain.engine.evaluate import Award, Considered, Evaluation, EventData, Member, evaluate, event_data
from worker.domain.engine.explain import explain
from worker.domain.engine.language import (
    EngineProgram,
    TierFloor,
    default_engine_program,
    load_engine_program,
    parse_engine_program,
)
from worker.domain.engine.legacy import from_program, state_from_member
from worker.domain.engine.state import period_key, validate_state
from worker.domain.engine.tiering import level_for, qualifying_change, review_tier, tier_after

__all__ = [
    "Award", "Considered", "EngineProgram", "Evaluation", "EventData", "Member", "TierFloor",
    "default_engine_program", "evaluate", "event_data", "explain", "from_program", "level_for", "load_engine_program",
    "parse_engine_program", "period_key", "qualifying_change", "review_tier", "state_from_member",
    "tier_after", "validate_state",
]
