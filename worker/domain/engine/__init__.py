"""The rule engine: program-file rules evaluated as a pure function (docs/rules.md).

The ledger earns through `evaluate`, with the rules `rules_of(program)` gives; `load_program`
reads a program file in either shape (program_file.py).
"""

from worker.domain.engine.compiled import evaluate
from worker.domain.engine.entries import entry_awards, order_points, outcome_note
from worker.domain.engine.evaluate import Award, Considered, Evaluation, EventData, Member, event_data
from worker.domain.engine.explain import explain, explain_event, explanation, member_view, render_explanation
from worker.domain.engine.language import (
    EngineProgram,
    TierFloor,
    default_engine_program,
    load_engine_program,
    parse_engine_program,
)
from worker.domain.engine.legacy import (
    file_version,
    from_program,
    has_rules,
    rules_of,
    state_from_member,
    with_rules,
)
from worker.domain.engine.missions import open_missions
from worker.domain.engine.program_file import (
    load_program,
    load_program_as_published,
    parse_program_data,
    parse_program_text,
    program_version,
    version_id,
)
from worker.domain.engine.state import period_key, validate_state
from worker.domain.engine.tiering import (
    Downgrade,
    ReviewCandidate,
    floor_in_force,
    level_for,
    qualifying_change,
    review_member,
    review_tier,
    review_window,
    tier_after,
    tier_at_review,
    tier_value,
    to_next,
)

__all__ = [
    "Award",
    "Downgrade",
    "ReviewCandidate",
    "Considered",
    "EngineProgram",
    "Evaluation",
    "EventData",
    "Member",
    "TierFloor",
    "default_engine_program",
    "entry_awards",
    "evaluate",
    "event_data",
    "explain",
    "explain_event",
    "explanation",
    "file_version",
    "floor_in_force",
    "from_program",
    "has_rules",
    "level_for",
    "load_engine_program",
    "load_program",
    "load_program_as_published",
    "member_view",
    "open_missions",
    "order_points",
    "outcome_note",
    "parse_engine_program",
    "parse_program_data",
    "parse_program_text",
    "period_key",
    "program_version",
    "qualifying_change",
    "render_explanation",
    "review_member",
    "review_tier",
    "review_window",
    "rules_of",
    "state_from_member",
    "tier_after",
    "tier_value",
    "tier_at_review",
    "to_next",
    "validate_state",
    "version_id",
    "with_rules",
]
