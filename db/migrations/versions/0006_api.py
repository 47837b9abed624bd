"""HTTP API: keys, points holds at checkout, stored outcomes of idempotent requests.

Revision ID: 0006_api
Revises: 0001_core

A feature branch off the core revision like the other feature migrations (`loyalty db
upgrade` applies every head); it only adds its own tables and widens the ledger's entry kinds.
"""

from db.migrations.script import run

revision = "0006_api"
down_revision = "0001_core"
branch_labels = None
depends_on = None

UPGRADE = """
-- Only a SHA-256 of each key is stored; the key itself is printed once by `api-key create`.
-- sources NULL: the key may send events of any source.
CREATE TABLE api_keys (
    name        text PRIMARY KEY,
    key_hash    text NOT NULL UNIQUE,
    scopes      text[] NOT NULL,
    sources     text[],
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz
);

-- Points reserved at checkout. The hold entry takes the points from the member's lots at
-- once (so available_points, entries and lots agree for the audit); capture books a 'spend'
-- entry against the order, void or expiry a 'restore' entry giving them back to the same
-- lots. refunded_amount / points_refunded follow the order's refunds (points restored).
CREATE TABLE holds (
    hold_id          text PRIMARY KEY,
    member_id        text NOT NULL,
    order_id         text NOT NULL,
    points           bigint NOT NULL CHECK (points > 0),
    status           text NOT NULL CHECK (status IN ('held', 'captured', 'voided', 'expired')),
    key_name         text NOT NULL,
    hold_entry_id    bigint NOT NULL REFERENCES ledger_entries (entry_id),
    settle_entry_id  bigint REFERENCES ledger_entries (entry_id),
    created_at       timestamptz NOT NULL,
    expires_at       timestamptz NOT NULL,
    settled_at       timestamptz,
    refunded_amount  numeric(14, 2) NOT NULL DEFAULT 0,
    points_refunded  bigint NOT NULL DEFAULT 0 CHECK (points_refunded >= 0 AND points_refunded <= points),
    CHECK ((status = 'held') = (settled_at IS NULL))
);
CREATE INDEX holds_open ON holds (expires_at) WHERE status = 'held';
CREATE INDEX holds_member_open ON holds (member_id, expires_at) WHERE status = 'held';
CREATE INDEX holds_order ON holds (member_id, order_id) WHERE status = 'captured';

-- The first answer to a request carrying an Idempotency-Key, per API key: a retry with the
-- same key and the same request gets it back; the same key with another request is refused.
CREATE TABLE api_idempotency (
    key_name         text NOT NULL,
    idempotency_key  text NOT NULL,
    request_hash     text NOT NULL,
    status_code      integer NOT NULL,
    response         jsonb NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (key_name, idempotency_key)
);

ALTER TABLE ledger_entries DROP CONSTRAINT ledger_entries_kind_check;
ALTER TABLE ledger_entries ADD CONSTRAINT ledger_entries_kind_check
    CHECK (kind IN ('earn', 'reverse', 'redeem', 'restore', 'expire', 'adjust', 'release', 'hold', 'spend'));
"""

DOWNGRADE = """
DROP TABLE api_idempotency, holds, api_keys;
ALTER TABLE ledger_entries DROP CONSTRAINT ledger_entries_kind_check;
ALTER TABLE ledger_entries ADD CONSTRAINT ledger_entries_kind_check
    CHECK (kind IN ('earn', 'reverse', 'redeem', 'restore', 'expire', 'adjust', 'release'));
"""


def upgrade() -> None:
    run(UPGRADE)


def downgrade() -> None:
    run(DOWNGRADE)
