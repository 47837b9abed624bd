"""Event time: each accepted event's normalised form, and the latest event a member has had.

Revision ID: 0010_event_time
Revises: 0001_core

A member's earning is a function of their accepted events in occurrence order. An event that
arrives after a later one is applied and then the member's history is evaluated again from
the stored events (worker/services/replay.py). `processed_events.payload` holds what that
needs; events accepted before this revision have none, and a member with such events is not
re-evaluated (docs/reliability.md); `program_version` is the version that applied the
event, which a replay evaluates it with again. `members.latest_event_*` is the occurrence key
(occurred_at, source, event_id) of the latest event applied, which tells a late event apart.
"""

from db.migrations.script import run

revision = "0010_event_time"
down_revision = "0001_core"
branch_labels = None
depends_on = None

UPGRADE = """
ALTER TABLE processed_events ADD COLUMN payload jsonb, ADD COLUMN program_version text;
CREATE INDEX processed_events_member ON processed_events (member_id, occurred_at);
ALTER TABLE members
    ADD COLUMN latest_event_at timestamptz,
    ADD COLUMN latest_event_source text,
    ADD COLUMN latest_event_id text;
"""

DOWNGRADE = """
ALTER TABLE members DROP COLUMN latest_event_at, DROP COLUMN latest_event_source, DROP COLUMN latest_event_id;
DROP INDEX processed_events_member;
ALTER TABLE processed_events DROP COLUMN payload, DROP COLUMN program_version;
"""


def upgrade() -> None:
    run(UPGRADE)


def downgrade() -> None:
    run(DOWNGRADE)
