"""Erasure of free text in ledger entries: the one UPDATE `ledger_entries` accepts.

Revision ID: 0018_erasure_texts
Revises: 0001_core

An entry's rule provenance may hold text an operator wrote about the member (an adjustment's
`reason`). Erasing a member replaces that text with "(erased)" (worker/store/erasure.py). The
append-only trigger lets exactly that through: an UPDATE that changes nothing but `rules`, keeps
every rule and every key of each, and changes only text values, each to "(erased)". Any other
UPDATE, and every DELETE, is refused as before.
"""

from db.migrations.script import run

revision = "0018_erasure_texts"
down_revision = "0001_core"
branch_labels = None
depends_on = ()

UPGRADE = """
CREATE OR REPLACE FUNCTION ledger_entries_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE'
       AND (to_jsonb(NEW) - 'rules') = (to_jsonb(OLD) - 'rules')
       AND jsonb_typeof(NEW.rules) = 'array' AND jsonb_typeof(OLD.rules) = 'array'
       AND jsonb_array_length(NEW.rules) = jsonb_array_length(OLD.rules)
       AND NOT EXISTS (
           SELECT 1
           FROM jsonb_array_elements(OLD.rules) WITH ORDINALITY AS o(r, n)
           JOIN jsonb_array_elements(NEW.rules) WITH ORDINALITY AS m(r, n) ON m.n = o.n
           WHERE m.r IS DISTINCT FROM o.r AND (
               jsonb_typeof(o.r) <> 'object' OR jsonb_typeof(m.r) <> 'object'
               OR EXISTS (SELECT 1 FROM jsonb_object_keys(o.r) AS k(key) WHERE NOT m.r ? k.key)
               OR EXISTS (
                   SELECT 1 FROM jsonb_each(m.r) AS e(key, value)
                   WHERE e.value IS DISTINCT FROM o.r -> e.key
                     AND (jsonb_typeof(o.r -> e.key) = 'string' AND e.value = '"(erased)"') IS NOT TRUE)))
    THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'ledger_entries is append-only: % refused', TG_OP;
END $$;
"""

DOWNGRADE = """
CREATE OR REPLACE FUNCTION ledger_entries_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'ledger_entries is append-only: % refused', TG_OP;
END $$;
"""


def upgrade() -> None:
    run(UPGRADE)


def downgrade() -> None:
    run(DOWNGRADE)
