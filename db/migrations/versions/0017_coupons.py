"""Coupons: rewards that hand the member a code, from a loaded pool or generated.

Revision ID: 0017_coupons
Revises: 0001_core

`rewards` gains the reward's kind (`item`, the default, or `coupon`) and a coupon's terms: where
its codes come from (`pool`: loaded with `loyalty rewards codes load`; `generated`: made at
redemption, after `code_prefix`) and `valid_days`. `coupons` holds every code: pool codes not
yet handed out (`available`) and codes issued by a redemption (`issued`, `used`, `cancelled`).
Depends on 0004_mall, which created the rewards and redemptions tables.
"""

from db.migrations.script import run

revision = "0017_coupons"
down_revision = "0001_core"
branch_labels = None
depends_on = ("0004_mall",)

UPGRADE = """
ALTER TABLE rewards
    ADD COLUMN kind text NOT NULL DEFAULT 'item' CHECK (kind IN ('item', 'coupon')),
    ADD COLUMN codes text CHECK (codes IN ('pool', 'generated')),
    ADD COLUMN code_prefix text,
    ADD COLUMN valid_days integer CHECK (valid_days > 0),
    ADD CONSTRAINT rewards_coupon_terms
        CHECK ((kind = 'coupon') = (codes IS NOT NULL AND valid_days IS NOT NULL)
               AND (code_prefix IS NULL OR codes = 'generated'));

-- One row per code. The primary key makes a code unique across all rewards, pooled or
-- generated. seq is the load order: a pool hands out its codes first loaded, first issued.
-- An issued code names its redemption (source, event_id), whose row names the member; the
-- redemption row is written after its code is taken, in the same transaction, hence the
-- deferred foreign key. Expired is not stored: it is an issued code past expires_on (the
-- program-local last day it may be used).
CREATE TABLE coupons (
    code          text PRIMARY KEY,
    reward_id     text NOT NULL REFERENCES rewards (reward_id),
    seq           bigserial NOT NULL,
    status        text NOT NULL CHECK (status IN ('available', 'issued', 'used', 'cancelled')),
    source        text,
    event_id      text,
    issued_at     timestamptz,
    expires_on    date,
    used_at       timestamptz,
    used_by       text,
    cancelled_at  timestamptz,
    loaded_at     timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (source, event_id) REFERENCES redemptions (source, event_id) DEFERRABLE INITIALLY DEFERRED,
    CHECK ((status = 'available') = (event_id IS NULL)),
    CHECK ((event_id IS NULL) = (source IS NULL)),
    CHECK ((event_id IS NULL) = (issued_at IS NULL) AND (event_id IS NULL) = (expires_on IS NULL)),
    CHECK ((status = 'used') = (used_at IS NOT NULL)),
    CHECK ((status = 'cancelled') = (cancelled_at IS NOT NULL))
);
CREATE INDEX coupons_pool ON coupons (reward_id, seq) WHERE status = 'available';
CREATE INDEX coupons_redemption ON coupons (source, event_id) WHERE event_id IS NOT NULL;
"""

DOWNGRADE = """
DROP TABLE coupons;
ALTER TABLE rewards DROP CONSTRAINT rewards_coupon_terms;
ALTER TABLE rewards DROP COLUMN valid_days, DROP COLUMN code_prefix, DROP COLUMN codes, DROP COLUMN kind;
"""


def upgrade() -> None:
    run(UPGRADE)


def downgrade() -> None:
    run(DOWNGRADE)
