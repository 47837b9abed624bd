"""Program versions: program files published to the database, each in force from a time.

Revision ID: 0008_program_versions
Revises: 0001_core

A feature branch off the core revision like the other feature migrations (`loyalty db
upgrade` applies every head); it only adds its own table. Rows are never updated: a
version's content is fixed once published (`loyalty program publish`), and the version in
force at a time is the one with the latest `effective_from` at or before it.
"""

from db.migrations.script import run

revision = "0008_program_versions"
down_revision = "0001_core"
branch_labels = None
depends_on = None

UPGRADE = """
CREATE TABLE program_versions (
    version         text PRIMARY KEY CHECK (version ~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$'),
    name            text NOT NULL,
    content         text NOT NULL,
    -- SHA-256 of content (hex): workers compare it, not the content, every few seconds.
    checksum        text NOT NULL,
    effective_from  timestamptz NOT NULL,
    published_at    timestamptz NOT NULL DEFAULT now(),
    published_by    text NOT NULL
);
-- The version in force: the latest effective_from at or before now (ties: latest published).
CREATE INDEX program_versions_in_force ON program_versions (effective_from DESC, published_at DESC, version DESC);
"""

DOWNGRADE = """
DROP TABLE program_versions;
"""


def upgrade() -> None:
    run(UPGRADE)


def downgrade() -> None:
    run(DOWNGRADE)
