"""Back office: member labels (segments) and opening balances imported from another program.

Revision ID: 0013_back_office
Revises: 0001_core

`members.labels`: the member's segment labels (`vip`, `staff`), matched by rules'
`when.labels`/`exclude_labels` and listed with `loyalty member list --label`; a GIN index
serves the label filter. The entry kind `import` is an opening balance brought in from an
existing program (one entry per imported lot). Depends on 0011_identities, the last revision
that redefined the entry kinds.
"""

from db.migrations.script import run

revision = "0013_back_office"
down_revision = "0001_core"
branch_labels = None
depends_on = ("0011_identities",)

UPGRADE = """
ALTER TABLE members ADD COLUMN labels text[] NOT NULL DEFAULT '{}';
CREATE INDEX members_labels ON members USING gin (labels);

ALTER TABLE ledger_entries DROP CONSTRAINT ledger_entries_kind_check;
ALTER TABLE ledger_entries ADD CONSTRAINT ledger_entries_kind_check
    CHECK (kind IN ('earn', 'reverse', 'redeem', 'restore', 'expire', 'adjust', 'release', 'hold', 'spend',
                    'transfer', 'import'));
"""

DOWNGRADE = """
ALTER TABLE ledger_entries DROP CONSTRAINT ledger_entries_kind_check;
ALTER TABLE ledger_entries ADD CONSTRAINT ledger_entries_kind_check
    CHECK (kind IN ('earn', 'reverse', 'redeem', 'restore', 'expire', 'adjust', 'release', 'hold', 'spend',
                    'transfer'));
DROP INDEX members_labels;
ALTER TABLE members DROP COLUMN labels;
"""


def upgrade() -> None:
    run(UPGRADE)


def downgrade() -> None:
    run(DOWNGRADE)
