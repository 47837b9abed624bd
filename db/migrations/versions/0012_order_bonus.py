"""Orders keep the fixed points their purchase earned, so a full refund can take them back.

Revision ID: 0012_order_bonus
Revises: 0001_core

`bonus_points`: what the purchase earned beyond the order's amount-based points (first-purchase
and minimum-order bonuses); `bonus_reversed`: how much of it refunds took back. Orders stored
before this revision start at 0: their bonuses are not known here and stay with the member.
"""

from db.migrations.script import run

revision = "0012_order_bonus"
down_revision = "0001_core"
branch_labels = None
depends_on = None

UPGRADE = """
ALTER TABLE orders ADD COLUMN bonus_points bigint NOT NULL DEFAULT 0,
    ADD COLUMN bonus_reversed bigint NOT NULL DEFAULT 0;
ALTER TABLE orders ADD CONSTRAINT orders_bonus_reversed CHECK (bonus_reversed BETWEEN 0 AND bonus_points);
"""

DOWNGRADE = """
ALTER TABLE orders DROP COLUMN bonus_reversed, DROP COLUMN bonus_points;
"""


def upgrade() -> None:
    run(UPGRADE)


def downgrade() -> None:
    run(DOWNGRADE)
