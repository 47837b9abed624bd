"""Tiers as the program declares them: money spent as a qualifying basis, operator floors with
an end date and a record of who set them, and the event time of each tier change.

Revision ID: 0009_tiers
Revises: 0001_core

A feature branch off the core revision like the other feature migrations (`loyalty db
upgrade` applies every head). Points stay integers: the amount basis has columns of its own
(`qualifying_amount` and its review baseline), filled from the orders as they stand.
"""

from db.migrations.script import run

revision = "0009_tiers"
down_revision = "0001_core"
branch_labels = None
depends_on = None

UPGRADE = """
-- Money spent less refunded (orders.amount less orders.refunded_amount, which never exceeds
-- the amount), and the part of it below which nothing counts after a tier review.
ALTER TABLE members
    ADD COLUMN qualifying_amount numeric(16, 2) NOT NULL DEFAULT 0,
    ADD COLUMN qualifying_amount_baseline numeric(16, 2) NOT NULL DEFAULT 0,
    ADD COLUMN tier_floor_ends_on date;

UPDATE members m SET qualifying_amount = o.spent
FROM (SELECT member_id, sum(amount - refunded_amount) AS spent FROM orders WHERE amount IS NOT NULL GROUP BY member_id) o
WHERE o.member_id = m.member_id;

-- Every floor an operator set or removed (tier NULL), with who and why. The member row keeps
-- the one in force (members.tier_floor, tier_floor_ends_on), which the ledger reads.
CREATE TABLE tier_floors (
    floor_id   bigserial PRIMARY KEY,
    member_id  text NOT NULL,
    tier       text,
    ends_on    date,
    reason     text NOT NULL,
    set_by     text NOT NULL,
    set_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX tier_floors_member ON tier_floors (member_id, floor_id);

INSERT INTO tier_floors (member_id, tier, reason, set_by, set_at)
SELECT member_id, tier_floor, 'set before floors were recorded', 'unknown', updated_at
FROM members WHERE tier_floor IS NOT NULL;

-- When the cause of a tier change happened (the event's occurred_at, the review's firing
-- time), as opposed to changed_at, when it was processed: grace periods count from it.
ALTER TABLE tier_changes ADD COLUMN occurred_at timestamptz;
UPDATE tier_changes t SET occurred_at = p.occurred_at
FROM processed_events p WHERE p.source = t.source AND p.event_id = t.event_id;
UPDATE tier_changes SET occurred_at = changed_at WHERE occurred_at IS NULL;
ALTER TABLE tier_changes ALTER COLUMN occurred_at SET DEFAULT now();
ALTER TABLE tier_changes ALTER COLUMN occurred_at SET NOT NULL;
"""

DOWNGRADE = """
ALTER TABLE tier_changes DROP COLUMN occurred_at;
DROP TABLE tier_floors;
ALTER TABLE members
    DROP COLUMN tier_floor_ends_on,
    DROP COLUMN qualifying_amount_baseline,
    DROP COLUMN qualifying_amount;
"""


def upgrade() -> None:
    run(UPGRADE)


def downgrade() -> None:
    run(DOWNGRADE)
