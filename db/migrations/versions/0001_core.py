"""Core ledger: members, entries, lots, idempotency, orders, rejected events, outbox.

Revision ID: 0001_core
Revises:
"""

from db.migrations.script import run

revision = "0001_core"
down_revision = None
branch_labels = None
depends_on = None

UPGRADE = """
CREATE TABLE members (
    member_id          text PRIMARY KEY,
    tier               text NOT NULL,
    tier_floor         text,
    available_points   bigint NOT NULL DEFAULT 0 CHECK (available_points >= 0),
    pending_points     bigint NOT NULL DEFAULT 0 CHECK (pending_points >= 0),
    qualifying_points  bigint NOT NULL DEFAULT 0,
    lifetime_points    bigint NOT NULL DEFAULT 0 CHECK (lifetime_points >= 0),
    birthday           date,
    locale             text,
    signed_up_at       timestamptz,
    first_purchase_at  timestamptz,
    check_in_last_on   date,
    check_in_streak    integer NOT NULL DEFAULT 0,
    review_day         date,
    reviews_on_day     integer NOT NULL DEFAULT 0,
    enrolled_at        timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    erased_at          timestamptz
);
CREATE INDEX members_tier ON members (tier);

-- Append-only: corrections are new rows. A trigger refuses UPDATE and DELETE.
CREATE TABLE ledger_entries (
    entry_id           bigserial PRIMARY KEY,
    member_id          text NOT NULL,
    kind               text NOT NULL CHECK (kind IN ('earn', 'reverse', 'redeem', 'restore', 'expire', 'adjust', 'release')),
    points             bigint NOT NULL,
    pending_points     bigint NOT NULL DEFAULT 0,
    qualifying_points  bigint NOT NULL DEFAULT 0,
    source             text,
    event_id           text,
    event_type         text,
    rules              jsonb NOT NULL DEFAULT '[]',
    occurred_at        timestamptz NOT NULL,
    created_at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ledger_entries_member ON ledger_entries (member_id, entry_id);
CREATE INDEX ledger_entries_event ON ledger_entries (source, event_id);
CREATE INDEX ledger_entries_occurred ON ledger_entries (occurred_at);

CREATE FUNCTION ledger_entries_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'ledger_entries is append-only: % refused', TG_OP;
END $$;
CREATE TRIGGER ledger_entries_append_only BEFORE UPDATE OR DELETE ON ledger_entries
    FOR EACH ROW EXECUTE FUNCTION ledger_entries_append_only();

-- Earned points, spent and expired earliest-expiring first. pending_until is set while
-- a purchase's return window is open; those points count as pending, not available.
CREATE TABLE lots (
    lot_id         bigserial PRIMARY KEY,
    member_id      text NOT NULL,
    entry_id       bigint NOT NULL REFERENCES ledger_entries (entry_id),
    points         bigint NOT NULL CHECK (points > 0),
    remaining      bigint NOT NULL CHECK (remaining >= 0 AND remaining <= points),
    earned_at      timestamptz NOT NULL,
    expires_at     timestamptz NOT NULL,
    pending_until  timestamptz
);
CREATE INDEX lots_member_open ON lots (member_id, expires_at) WHERE remaining > 0;
CREATE INDEX lots_expiring ON lots (expires_at) WHERE remaining > 0;
CREATE INDEX lots_pending ON lots (pending_until) WHERE pending_until IS NOT NULL AND remaining > 0;

-- Which lots each spending entry drew on, so a cancellation can give back to the same lots.
CREATE TABLE lot_takes (
    entry_id  bigint NOT NULL REFERENCES ledger_entries (entry_id),
    lot_id    bigint NOT NULL REFERENCES lots (lot_id),
    points    bigint NOT NULL,
    PRIMARY KEY (entry_id, lot_id)
);
CREATE INDEX lot_takes_lot ON lot_takes (lot_id);

-- Idempotency: (source, event_id) is claimed in the transaction that applies the event.
CREATE TABLE processed_events (
    source        text NOT NULL,
    event_id      text NOT NULL,
    payload_hash  text NOT NULL,
    member_id     text NOT NULL,
    event_type    text NOT NULL,
    status        text NOT NULL CHECK (status IN ('applied', 'deferred')),
    result        jsonb NOT NULL DEFAULT '{}',
    occurred_at   timestamptz NOT NULL,
    processed_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (source, event_id)
);
CREATE INDEX processed_events_processed ON processed_events (processed_at);

-- amount is NULL while only refunds for the order have been seen (they wait here).
CREATE TABLE orders (
    member_id        text NOT NULL,
    order_id         text NOT NULL,
    amount           numeric(14, 2),
    currency         text,
    points_earned    bigint NOT NULL DEFAULT 0,
    points_reversed  bigint NOT NULL DEFAULT 0,
    refunded_amount  numeric(14, 2) NOT NULL DEFAULT 0,
    lot_id           bigint REFERENCES lots (lot_id),
    purchased_at     timestamptz,
    PRIMARY KEY (member_id, order_id),
    CHECK (points_reversed <= points_earned OR amount IS NULL)
);

CREATE TABLE refunds (
    member_id        text NOT NULL,
    order_id         text NOT NULL,
    refund_id        text NOT NULL,
    amount           numeric(14, 2) NOT NULL,
    source           text NOT NULL,
    event_id         text NOT NULL,
    occurred_at      timestamptz NOT NULL,
    status           text NOT NULL CHECK (status IN ('waiting', 'applied')),
    points_reversed  bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (member_id, order_id, refund_id)
);
CREATE INDEX refunds_waiting ON refunds (member_id, order_id) WHERE status = 'waiting';

CREATE TABLE reviews (
    member_id  text NOT NULL,
    order_id   text NOT NULL,
    sku        text NOT NULL,
    review_id  text NOT NULL,
    source     text NOT NULL,
    event_id   text NOT NULL,
    PRIMARY KEY (member_id, order_id, sku)
);

CREATE TABLE referrals (
    referee_member_id   text PRIMARY KEY,
    referrer_member_id  text NOT NULL,
    source              text NOT NULL,
    event_id            text NOT NULL,
    created_at          timestamptz NOT NULL DEFAULT now()
);

-- Events that break the contract or the program: kept with the reason and the raw text.
CREATE TABLE rejected_events (
    rejected_id    bigserial PRIMARY KEY,
    raw_hash       text NOT NULL UNIQUE,
    source         text,
    event_id       text,
    member_id      text,
    event_type     text,
    reason         text NOT NULL,
    raw            text NOT NULL,
    attempts       integer NOT NULL DEFAULT 1,
    status         text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'replayed')),
    first_seen_at  timestamptz NOT NULL DEFAULT now(),
    last_seen_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX rejected_events_open ON rejected_events (rejected_id) WHERE status = 'open';

CREATE TABLE tier_changes (
    change_id   bigserial PRIMARY KEY,
    member_id   text NOT NULL,
    from_tier   text NOT NULL,
    to_tier     text NOT NULL,
    reason      text NOT NULL,
    source      text,
    event_id    text,
    changed_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX tier_changes_member ON tier_changes (member_id, change_id);
CREATE INDEX tier_changes_changed ON tier_changes (changed_at);

-- The outbox: written in the ledger's transaction, delivered after commit.
CREATE TABLE notifications (
    notification_id  bigserial PRIMARY KEY,
    member_id        text NOT NULL,
    kind             text NOT NULL,
    params           jsonb NOT NULL DEFAULT '{}',
    dedupe_key       text UNIQUE,
    status           text NOT NULL DEFAULT 'pending',
    attempts         integer NOT NULL DEFAULT 0,
    last_error       text,
    source           text,
    event_id         text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    deliver_after    timestamptz,
    sent_at          timestamptz
);
CREATE INDEX notifications_member ON notifications (member_id, notification_id);
CREATE INDEX notifications_pending ON notifications (notification_id) WHERE status = 'pending';
"""

DOWNGRADE = """
DROP TABLE notifications, tier_changes, rejected_events, referrals, reviews, refunds, orders,
    processed_events, lot_takes, lots, ledger_entries, members;
DROP FUNCTION ledger_entries_append_only();
"""


def upgrade() -> None:
    run(UPGRADE)


def downgrade() -> None:
    run(DOWNGRADE)
