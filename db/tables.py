"""SQLAlchemy Core tables for queries. The schema itself is defined by the migrations."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    Integer,
    MetaData,
    Numeric,
    Table,
    Text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID

metadata = MetaData()

TS = DateTime(timezone=True)

members = Table(
    "members",
    metadata,
    Column("member_id", Text, primary_key=True),
    Column("tier", Text, nullable=False),
    Column("tier_floor", Text),
    Column("available_points", BigInteger, nullable=False),
    Column("pending_points", BigInteger, nullable=False),
    Column("qualifying_points", BigInteger, nullable=False),
    Column("lifetime_points", BigInteger, nullable=False),
    Column("birthday", Date),
    Column("locale", Text),
    Column("signed_up_at", TS),
    Column("first_purchase_at", TS),
    Column("check_in_last_on", Date),
    Column("check_in_streak", Integer, nullable=False),
    Column("review_day", Date),
    Column("reviews_on_day", Integer, nullable=False),
    Column("rule_state", JSONB, nullable=False, server_default="{}"),
    Column("enrolled_at", TS, nullable=False),
    Column("updated_at", TS, nullable=False),
    Column("erased_at", TS),
    Column("qualifying_baseline", BigInteger, nullable=False, server_default="0"),
    # Tiers on the amount basis, and the floor's end (migration 0009_tiers).
    Column("qualifying_amount", Numeric(16, 2), nullable=False, server_default="0"),
    Column("qualifying_amount_baseline", Numeric(16, 2), nullable=False, server_default="0"),
    Column("tier_floor_ends_on", Date),
    # Segment labels (migration 0013_back_office).
    Column("labels", ARRAY(Text), nullable=False, server_default="{}"),
)

ledger_entries = Table(
    "ledger_entries",
    metadata,
    Column("entry_id", BigInteger, primary_key=True),
    Column("member_id", Text, nullable=False),
    Column("kind", Text, nullable=False),
    Column("points", BigInteger, nullable=False),
    Column("pending_points", BigInteger, nullable=False),
    Column("qualifying_points", BigInteger, nullable=False),
    Column("source", Text),
    Column("event_id", Text),
    Column("event_type", Text),
    Column("rules", JSONB, nullable=False),
    Column("occurred_at", TS, nullable=False),
    Column("created_at", TS, nullable=False),
)

lots = Table(
    "lots",
    metadata,
    Column("lot_id", BigInteger, primary_key=True),
    Column("member_id", Text, nullable=False),
    Column("entry_id", BigInteger, nullable=False),
    Column("points", BigInteger, nullable=False),
    Column("remaining", BigInteger, nullable=False),
    Column("earned_at", TS, nullable=False),
    Column("expires_at", TS, nullable=False),
    Column("pending_until", TS),
    Column("warned_at", TS),
)

lot_takes = Table(
    "lot_takes",
    metadata,
    Column("entry_id", BigInteger, primary_key=True),
    Column("lot_id", BigInteger, primary_key=True),
    Column("points", BigInteger, nullable=False),
)

processed_events = Table(
    "processed_events",
    metadata,
    Column("source", Text, primary_key=True),
    Column("event_id", Text, primary_key=True),
    Column("payload_hash", Text, nullable=False),
    Column("member_id", Text, nullable=False),
    Column("event_type", Text, nullable=False),
    Column("status", Text, nullable=False),
    Column("result", JSONB, nullable=False),
    Column("occurred_at", TS, nullable=False),
    Column("processed_at", TS, nullable=False),
)

orders = Table(
    "orders",
    metadata,
    Column("member_id", Text, primary_key=True),
    Column("order_id", Text, primary_key=True),
    Column("amount", Numeric(14, 2)),
    Column("currency", Text),
    Column("points_earned", BigInteger, nullable=False),
    Column("points_reversed", BigInteger, nullable=False),
    Column("refunded_amount", Numeric(14, 2), nullable=False),
    Column("lot_id", BigInteger),
    Column("purchased_at", TS),
    Column("bonus_points", BigInteger, nullable=False),
    Column("bonus_reversed", BigInteger, nullable=False),
)

refunds = Table(
    "refunds",
    metadata,
    Column("member_id", Text, primary_key=True),
    Column("order_id", Text, primary_key=True),
    Column("refund_id", Text, primary_key=True),
    Column("amount", Numeric(14, 2), nullable=False),
    Column("source", Text, nullable=False),
    Column("event_id", Text, nullable=False),
    Column("occurred_at", TS, nullable=False),
    Column("status", Text, nullable=False),
    Column("points_reversed", BigInteger, nullable=False),
)

reviews = Table(
    "reviews",
    metadata,
    Column("member_id", Text, primary_key=True),
    Column("order_id", Text, primary_key=True),
    Column("sku", Text, primary_key=True),
    Column("review_id", Text, nullable=False),
    Column("source", Text, nullable=False),
    Column("event_id", Text, nullable=False),
    Column("status", Text, nullable=False),
    Column("has_media", Boolean, nullable=False),
    Column("occurred_at", DateTime(timezone=True)),
)

referrals = Table(
    "referrals",
    metadata,
    Column("referee_member_id", Text, primary_key=True),
    Column("referrer_member_id", Text, nullable=False),
    Column("source", Text, nullable=False),
    Column("event_id", Text, nullable=False),
    Column("created_at", TS, nullable=False),
    Column("pair_key", Text),
)

rejected_events = Table(
    "rejected_events",
    metadata,
    Column("rejected_id", BigInteger, primary_key=True),
    Column("raw_hash", Text, nullable=False),
    Column("source", Text),
    Column("event_id", Text),
    Column("member_id", Text),
    Column("event_type", Text),
    Column("reason", Text, nullable=False),
    Column("raw", Text, nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("status", Text, nullable=False),
    Column("first_seen_at", TS, nullable=False),
    Column("last_seen_at", TS, nullable=False),
)

tier_changes = Table(
    "tier_changes",
    metadata,
    Column("change_id", BigInteger, primary_key=True),
    Column("member_id", Text, nullable=False),
    Column("from_tier", Text, nullable=False),
    Column("to_tier", Text, nullable=False),
    Column("reason", Text, nullable=False),
    Column("source", Text),
    Column("event_id", Text),
    Column("changed_at", TS, nullable=False),
    Column("occurred_at", TS, nullable=False),
)

tier_floors = Table(
    "tier_floors",
    metadata,
    Column("floor_id", BigInteger, primary_key=True),
    Column("member_id", Text, nullable=False),
    Column("tier", Text),
    Column("ends_on", Date),
    Column("reason", Text, nullable=False),
    Column("set_by", Text, nullable=False),
    Column("set_at", TS, nullable=False),
)

notifications = Table(
    "notifications",
    metadata,
    Column("notification_id", BigInteger, primary_key=True),
    Column("member_id", Text, nullable=False),
    Column("kind", Text, nullable=False),
    Column("params", JSONB, nullable=False),
    Column("dedupe_key", Text),
    Column("status", Text, nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("last_error", Text),
    Column("source", Text),
    Column("event_id", Text),
    Column("created_at", TS, nullable=False),
    Column("deliver_after", TS),
    Column("sent_at", TS),
    # Delivery (migration 0003_notify).
    Column("delivery_id", UUID(as_uuid=False)),
    Column("channel", Text),
    Column("locale", Text),
    Column("text", Text),
    Column("next_attempt_at", TS),
    Column("lease_until", TS),
    Column("released_at", TS),
    Column("last_attempt_at", TS),
)

# HTTP API (migration 0006_api).
api_keys = Table(
    "api_keys",
    metadata,
    Column("name", Text, primary_key=True),
    Column("key_hash", Text, nullable=False),
    Column("scopes", ARRAY(Text), nullable=False),
    Column("sources", ARRAY(Text)),
    Column("created_at", TS, nullable=False),
    Column("revoked_at", TS),
)

holds = Table(
    "holds",
    metadata,
    Column("hold_id", Text, primary_key=True),
    Column("member_id", Text, nullable=False),
    Column("order_id", Text, nullable=False),
    Column("points", BigInteger, nullable=False),
    Column("status", Text, nullable=False),
    Column("key_name", Text, nullable=False),
    Column("hold_entry_id", BigInteger, nullable=False),
    Column("settle_entry_id", BigInteger),
    Column("created_at", TS, nullable=False),
    Column("expires_at", TS, nullable=False),
    Column("settled_at", TS),
    Column("refunded_amount", Numeric(14, 2), nullable=False),
    Column("points_refunded", BigInteger, nullable=False),
)

api_idempotency = Table(
    "api_idempotency",
    metadata,
    Column("key_name", Text, primary_key=True),
    Column("idempotency_key", Text, primary_key=True),
    Column("request_hash", Text, nullable=False),
    Column("status_code", Integer, nullable=False),
    Column("response", JSONB, nullable=False),
    Column("created_at", TS, nullable=False),
)

# Published program files (migration 0008_program_versions).
program_versions = Table(
    "program_versions",
    metadata,
    Column("version", Text, primary_key=True),
    Column("name", Text, nullable=False),
    Column("content", Text, nullable=False),
    Column("checksum", Text, nullable=False),
    Column("effective_from", TS, nullable=False),
    Column("published_at", TS, nullable=False),
    Column("published_by", Text, nullable=False),
)

# Coupon codes, pooled and issued (migration 0017_coupons; it also adds the rewards' kind,
# codes, code_prefix and valid_days).
coupons = Table(
    "coupons",
    metadata,
    Column("code", Text, primary_key=True),
    Column("reward_id", Text, nullable=False),
    Column("seq", BigInteger, nullable=False),
    Column("status", Text, nullable=False),
    Column("source", Text),
    Column("event_id", Text),
    Column("issued_at", TS),
    Column("expires_on", Date),
    Column("used_at", TS),
    Column("used_by", Text),
    Column("cancelled_at", TS),
    Column("loaded_at", TS, nullable=False),
)

# Members and lots brought in from another program (migration 0016_import).
import_members = Table(
    "import_members",
    metadata,
    Column("member_id", Text, primary_key=True),
    Column("row_hash", Text, nullable=False),
    Column("tier", Text, nullable=False),
    Column("qualifying_points", BigInteger, nullable=False),
    Column("birthday", Date),
    Column("locale", Text),
    Column("labels", ARRAY(Text), nullable=False, server_default="{}"),
    Column("imported_at", TS, nullable=False),
)

import_lots = Table(
    "import_lots",
    metadata,
    Column("member_id", Text, primary_key=True),
    Column("lot_ref", Text, primary_key=True),
    Column("row_hash", Text, nullable=False),
    Column("entry_id", BigInteger, nullable=False),
    Column("lot_id", BigInteger, nullable=False),
    Column("imported_at", TS, nullable=False),
)
