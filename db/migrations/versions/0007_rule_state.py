"""Rule state: one jsonb mapping per member for every stateful rule of the rule engine.

Revision ID: 0007_rule_state
Revises: 0001_core

A feature branch off the core revision like the other feature migrations (`loyalty db
upgrade` applies every head). Existing members keep their signup, check-in streak and daily
review count: the old columns are copied into the shape worker/domain/engine/state.py
validates. The old columns stay (nothing reads or writes them any more) so a rollback to
the previous release still finds them.
"""

from db.migrations.script import run

revision = "0007_rule_state"
down_revision = "0001_core"
branch_labels = None
depends_on = None

UPGRADE = """
ALTER TABLE members ADD COLUMN rule_state jsonb NOT NULL DEFAULT '{}';

UPDATE members SET rule_state = jsonb_strip_nulls(jsonb_build_object(
    'signup', CASE WHEN signed_up_at IS NOT NULL THEN '{"ever": {"count": 1, "points": 0}}'::jsonb END,
    'check_in', CASE WHEN check_in_last_on IS NOT NULL THEN jsonb_build_object('streak', jsonb_build_object(
        'last_on', to_char(check_in_last_on, 'YYYY-MM-DD'), 'days', check_in_streak)) END,
    'review', CASE WHEN review_day IS NOT NULL THEN jsonb_build_object(
        'day:' || to_char(review_day, 'YYYY-MM-DD'), jsonb_build_object('count', reviews_on_day, 'points', 0)) END
))
WHERE signed_up_at IS NOT NULL OR check_in_last_on IS NOT NULL OR review_day IS NOT NULL;
"""

DOWNGRADE = """
ALTER TABLE members DROP COLUMN rule_state;
"""


def upgrade() -> None:
    run(UPGRADE)


def downgrade() -> None:
    run(DOWNGRADE)
