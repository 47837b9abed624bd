"""Identities: the phone numbers, cards, openids and e-mail addresses that name a member, and
merges of two members found to be one person.

Revision ID: 0011_identities
Revises: 0001_core

`member_identities` holds personal data only (erased with the member). A member merged into
another keeps its row with `merged_into` set to the member kept (always the final one: a
merge of the kept member re-points the rows that named it), and `member_merges` records each
merge. The ledger's `transfer` entries move the absorbed member's lots to the member kept.
Depends on 0006_api, which also redefines the entry kinds, so that this one is applied after it.
"""

from db.migrations.script import run

revision = "0011_identities"
down_revision = "0001_core"
branch_labels = None
depends_on = ("0006_api",)

UPGRADE = """
CREATE TABLE member_identities (
    kind        text NOT NULL CHECK (kind IN ('phone', 'card', 'wechat_openid', 'email')),
    value       text NOT NULL,
    member_id   text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (kind, value)
);
CREATE INDEX member_identities_member ON member_identities (member_id);

ALTER TABLE members ADD COLUMN merged_into text, ADD COLUMN merged_at timestamptz;
CREATE INDEX members_merged_into ON members (merged_into) WHERE merged_into IS NOT NULL;

-- No identity value here: the kind only, since this row outlives an erasure.
CREATE TABLE member_merges (
    merge_id       bigserial PRIMARY KEY,
    survivor_id    text NOT NULL,
    absorbed_id    text NOT NULL,
    identity_kind  text NOT NULL,
    source         text NOT NULL,
    event_id       text NOT NULL,
    detail         jsonb NOT NULL DEFAULT '{}',
    merged_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX member_merges_survivor ON member_merges (survivor_id);
CREATE INDEX member_merges_absorbed ON member_merges (absorbed_id);

ALTER TABLE ledger_entries DROP CONSTRAINT ledger_entries_kind_check;
ALTER TABLE ledger_entries ADD CONSTRAINT ledger_entries_kind_check
    CHECK (kind IN ('earn', 'reverse', 'redeem', 'restore', 'expire', 'adjust', 'release', 'hold', 'spend', 'transfer'));
"""

DOWNGRADE = """
ALTER TABLE ledger_entries DROP CONSTRAINT ledger_entries_kind_check;
ALTER TABLE ledger_entries ADD CONSTRAINT ledger_entries_kind_check
    CHECK (kind IN ('earn', 'reverse', 'redeem', 'restore', 'expire', 'adjust', 'release', 'hold', 'spend'));
DROP TABLE member_merges;
ALTER TABLE members DROP COLUMN merged_into, DROP COLUMN merged_at;
DROP TABLE member_identities;
"""


def upgrade() -> None:
    run(UPGRADE)


def downgrade() -> None:
    run(DOWNGRADE)
