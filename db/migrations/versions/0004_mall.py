"""Points mall: the reward catalog and redemptions.

Revision ID: 0004_mall
Revises: 0001_core
"""

from db.migrations.script import run

revision = "0004_mall"
down_revision = "0001_core"
branch_labels = None
depends_on = None

UPGRADE = """
-- The catalog, loaded from the operator's rewards file. stock is the allotment from the
-- file (NULL: unlimited); redeemed counts units confirmed and not cancelled, so reloading
-- the file never hands out the same stock twice. Stock left = stock - redeemed.
CREATE TABLE rewards (
    reward_id           text PRIMARY KEY,
    name                text NOT NULL,
    cost_points         bigint NOT NULL CHECK (cost_points > 0),
    min_tier            text NOT NULL,
    stock               bigint CHECK (stock >= 0),
    redeemed            bigint NOT NULL DEFAULT 0 CHECK (redeemed >= 0),
    limit_count         integer CHECK (limit_count > 0),
    limit_period        text CHECK (limit_period IN ('day', 'month', 'ever')),
    available_from      timestamptz,
    available_until     timestamptz,
    early_access_tier   text,
    early_access_hours  integer CHECK (early_access_hours > 0),
    loaded_at           timestamptz NOT NULL DEFAULT now(),
    CHECK (stock IS NULL OR redeemed <= stock),
    CHECK ((limit_count IS NULL) = (limit_period IS NULL)),
    CHECK ((early_access_tier IS NULL) = (early_access_hours IS NULL))
);

-- One row per redemption event, confirmed or rejected (with the reason); a cancellation
-- turns a confirmed row into a cancelled one. entry_id is the redeem entry whose lot_takes
-- say which lots paid for it.
CREATE TABLE redemptions (
    source           text NOT NULL,
    event_id         text NOT NULL,
    member_id        text NOT NULL,
    reward_id        text NOT NULL,
    quantity         integer NOT NULL CHECK (quantity > 0),
    points           bigint NOT NULL DEFAULT 0 CHECK (points >= 0),
    status           text NOT NULL CHECK (status IN ('confirmed', 'rejected', 'cancelled')),
    reason           text,
    entry_id         bigint REFERENCES ledger_entries (entry_id),
    occurred_at      timestamptz NOT NULL,
    cancel_source    text,
    cancel_event_id  text,
    points_restored  bigint,
    cancelled_at     timestamptz,
    PRIMARY KEY (source, event_id),
    CHECK ((status = 'rejected') = (reason IS NOT NULL))
);
CREATE INDEX redemptions_member_reward ON redemptions (member_id, reward_id, occurred_at)
    WHERE status = 'confirmed';
CREATE INDEX redemptions_member_event ON redemptions (member_id, event_id);
"""

DOWNGRADE = """
DROP TABLE redemptions, rewards;
"""


def upgrade() -> None:
    run(UPGRADE)


def downgrade() -> None:
    run(DOWNGRADE)
