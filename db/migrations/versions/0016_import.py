"""Imports: the members and opening balances brought in from an existing loyalty program.

Revision ID: 0016_import
Revises: 0001_core

One row per member imported (`import_members`) and per lot imported (`import_lots`, keyed by
the member and the old program's own lot reference), each with a digest of the file's row:
running a file again finds its rows and changes nothing, a row changed since is reported as a
conflict, and an import cut short resumes where it stopped (`loyalty import`,
worker/services/imports.py). A lot's row names the `import` entry and the lot it wrote.
Depends on 0013_back_office, which adds the `import` entry kind and members' labels.
"""

from db.migrations.script import run

revision = "0016_import"
down_revision = "0001_core"
branch_labels = None
depends_on = ("0013_back_office",)

UPGRADE = """
-- row_hash: SHA-256 (hex) of the row as parsed; set to 'erased' when the member is erased, so
-- that no digest of their personal data outlives them.
-- tier, qualifying_points, birthday, locale, labels: what the member brought in, from which a
-- re-evaluation of their history starts (worker/services/fold.py); birthday and locale are
-- cleared with the member's other personal data.
CREATE TABLE import_members (
    member_id          text PRIMARY KEY,
    row_hash           text NOT NULL,
    tier               text NOT NULL,
    qualifying_points  bigint NOT NULL,
    birthday           date,
    locale             text,
    labels             text[] NOT NULL DEFAULT '{}',
    imported_at        timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE import_lots (
    member_id    text NOT NULL,
    lot_ref      text NOT NULL,
    row_hash     text NOT NULL,
    -- Written with the entry and the lot by one statement; no foreign keys, whose per-row
    -- checks would cost the import a third of its time.
    entry_id     bigint NOT NULL,
    lot_id       bigint NOT NULL,
    imported_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (member_id, lot_ref)
);
"""

DOWNGRADE = """
DROP TABLE import_lots, import_members;
"""


def upgrade() -> None:
    run(UPGRADE)


def downgrade() -> None:
    run(DOWNGRADE)
