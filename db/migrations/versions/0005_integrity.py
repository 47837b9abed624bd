"""Earning integrity: reviews wait for their order; internal claims get a namespace of their own.

Revision ID: 0005_integrity
Revises: 0001_core
"""

from db.migrations.script import run

revision = "0005_integrity"
down_revision = "0001_core"
branch_labels = None
depends_on = None

UPGRADE = """
-- A review of an order the member has not bought (yet) waits here; the purchase rewards it.
ALTER TABLE reviews
    ADD COLUMN status text NOT NULL DEFAULT 'applied' CHECK (status IN ('applied', 'waiting')),
    ADD COLUMN has_media boolean NOT NULL DEFAULT false,
    ADD COLUMN occurred_at timestamptz;
-- Two members referring each other share one pair key ("A B", ids sorted): unique, so a
-- mutual referral is refused even when both arrive at once. Rows from before stay NULL.
ALTER TABLE referrals ADD COLUMN pair_key text;
CREATE UNIQUE INDEX referrals_pair_key ON referrals (pair_key);
-- Effects the engine derives (the referee's bonus, the birthday gift) are claimed under a
-- source with ':', which producers' sources cannot contain; earlier rows move there too.
-- (chr(58) is ':', spelled so that it is not read as a bind parameter.)
UPDATE processed_events SET source = source || chr(58) || 'referee', event_id = left(event_id, -length('#referee'))
    WHERE event_type = 'referral_referee' AND event_id LIKE '%#referee';
UPDATE processed_events SET source = 'job' || chr(58) || 'birthday', event_id = substr(event_id, length('birthday:') + 1)
    WHERE event_type = 'birthday_gift' AND source = 'scheduler' AND event_id LIKE 'birthday:%';
"""

DOWNGRADE = """
UPDATE processed_events SET source = 'scheduler', event_id = 'birthday:' || event_id
    WHERE event_type = 'birthday_gift' AND source = 'job' || chr(58) || 'birthday';
UPDATE processed_events SET source = left(source, -length('#referee')), event_id = event_id || '#referee'
    WHERE event_type = 'referral_referee' AND source LIKE '%' || chr(58) || 'referee';
DROP INDEX referrals_pair_key;
ALTER TABLE referrals DROP COLUMN pair_key;
DELETE FROM reviews WHERE status = 'waiting';
ALTER TABLE reviews DROP COLUMN status, DROP COLUMN has_media, DROP COLUMN occurred_at;
"""


def upgrade() -> None:
    run(UPGRADE)


def downgrade() -> None:
    run(DOWNGRADE)
