"""Notification delivery: delivery ids, channels, rendered text, retries, leases, statuses.

Revision ID: 0003_notify
Revises: 0001_core
"""

from db.migrations.script import run

revision = "0003_notify"
down_revision = "0001_core"
branch_labels = None
depends_on = None

UPGRADE = """
-- delivery_id: stable across retries, sent to receivers so they can drop duplicates.
-- locale/text/channel: what was (last) sent and how. next_attempt_at: retry or quiet-hours
-- hold. lease_until: a dispatcher is delivering the row ('sending'); after it passes the
-- row may be claimed again (the dispatcher died). released_at: when the spam rules let the
-- row through, which is what counts towards the daily cap.
ALTER TABLE notifications
    ADD COLUMN delivery_id      uuid NOT NULL DEFAULT gen_random_uuid(),
    ADD COLUMN channel          text,
    ADD COLUMN locale           text,
    ADD COLUMN text             text,
    ADD COLUMN next_attempt_at  timestamptz,
    ADD COLUMN lease_until      timestamptz,
    ADD COLUMN released_at      timestamptz,
    ADD COLUMN last_attempt_at  timestamptz;
ALTER TABLE notifications ADD CONSTRAINT notifications_delivery_id UNIQUE (delivery_id);
ALTER TABLE notifications ADD CONSTRAINT notifications_status_known
    CHECK (status IN ('pending', 'sending', 'sent', 'failed', 'dead', 'suppressed'));
CREATE INDEX notifications_active ON notifications (notification_id)
    WHERE status IN ('pending', 'sending', 'failed');
CREATE INDEX notifications_released ON notifications (member_id, released_at)
    WHERE released_at IS NOT NULL;
"""

DOWNGRADE = """
DROP INDEX notifications_released;
DROP INDEX notifications_active;
ALTER TABLE notifications DROP CONSTRAINT notifications_status_known;
ALTER TABLE notifications DROP CONSTRAINT notifications_delivery_id;
ALTER TABLE notifications
    DROP COLUMN delivery_id, DROP COLUMN channel, DROP COLUMN locale, DROP COLUMN text,
    DROP COLUMN next_attempt_at, DROP COLUMN lease_until, DROP COLUMN released_at,
    DROP COLUMN last_attempt_at;
"""


def upgrade() -> None:
    run(UPGRADE)


def downgrade() -> None:
    run(DOWNGRADE)
