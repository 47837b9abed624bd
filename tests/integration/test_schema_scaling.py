"""Scale-out readiness of the schema: which member-keyed tables could be distributed by member_id
(a Citus-style distribution needs every primary and unique key to contain the distribution
column). The exceptions are listed with what a distribution would need (docs/scaling.md);
the test fails when a new table adds one, or when one is fixed and the list is out of date."""

from __future__ import annotations

from sqlalchemy import text

# Keys on member-keyed tables that do not contain member_id, as the migrations create them.
KEYS_WITHOUT_MEMBER_ID = {
    # Surrogate keys from a sequence: (member_id, <id>) would do, or the id alone made
    # unique per shard, since every reader already filters by member.
    ("ledger_entries", "PRIMARY KEY (entry_id)"),
    ("lots", "PRIMARY KEY (lot_id)"),
    ("tier_changes", "PRIMARY KEY (change_id)"),
    ("tier_floors", "PRIMARY KEY (floor_id)"),
    ("holds", "PRIMARY KEY (hold_id)"),
    ("notifications", "PRIMARY KEY (notification_id)"),
    # Idempotency keys of producers' events are global: (source, event_id) says nothing of the
    # member, so a distributed claim needs member_id in the key (a producer's event_id is
    # unique per source, and an event names exactly one member) or a reference table.
    ("processed_events", "PRIMARY KEY (source, event_id)"),
    ("redemptions", "PRIMARY KEY (source, event_id)"),
    # Delivery and dedupe keys of notifications, unique across all members.
    ("notifications", "UNIQUE (delivery_id)"),
    ("notifications", "UNIQUE (dedupe_key)"),
    # A channel identity belongs to one member across all of them: the lookup from identity to
    # member is by identity, so the table is distributed by (kind, value), or is a reference table.
    ("member_identities", "PRIMARY KEY (kind, value)"),
    # Rejected input may name no member at all: stays a local (undistributed) table.
    ("rejected_events", "PRIMARY KEY (rejected_id)"),
    ("rejected_events", "UNIQUE (raw_hash)"),
}

_KEYS = text(
    """
    SELECT c.conrelid::regclass::text AS table_name, pg_get_constraintdef(c.oid) AS definition,
           bool_or(a.attname = 'member_id') AS has_member_id
    FROM pg_constraint c
    JOIN pg_namespace n ON n.oid = c.connamespace AND n.nspname = current_schema()
    JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = ANY (c.conkey)
    WHERE c.contype IN ('p', 'u')
      AND EXISTS (SELECT 1 FROM information_schema.columns col
                  WHERE col.table_schema = n.nspname AND col.table_name = c.conrelid::regclass::text
                    AND col.column_name = 'member_id')
    GROUP BY 1, 2
    UNION ALL
    -- unique indexes that are not constraints
    SELECT t.relname, pg_get_indexdef(i.indexrelid), bool_or(a.attname = 'member_id')
    FROM pg_index i
    JOIN pg_class t ON t.oid = i.indrelid
    JOIN pg_namespace n ON n.oid = t.relnamespace AND n.nspname = current_schema()
    JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
    WHERE i.indisunique AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid)
      AND EXISTS (SELECT 1 FROM information_schema.columns col
                  WHERE col.table_schema = n.nspname AND col.table_name = t.relname AND col.column_name = 'member_id')
    GROUP BY 1, 2
    """
)


async def test_every_key_of_a_member_keyed_table_contains_member_id_except_the_listed_ones(engine):
    async with engine.connect() as conn:
        keys = (await conn.execute(_KEYS)).all()

    without = {(table, definition) for table, definition, has_member_id in keys if not has_member_id}
    with_member = {table for table, _, has_member_id in keys if has_member_id}

    assert without == KEYS_WITHOUT_MEMBER_ID
    # The tables already keyed by member, which a distribution by member_id takes as they are.
    assert {"members", "orders", "refunds", "reviews"} <= with_member
