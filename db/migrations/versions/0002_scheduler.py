"""Calendar jobs: firings and their chunks (exactly once), expiry warnings, tier review baseline.

Revision ID: 0002_scheduler
Revises: 0001_core
"""

from db.migrations.script import run

revision = "0002_scheduler"
down_revision = "0001_core"
branch_labels = None
depends_on = None

UPGRADE = """
-- One row per (job, scheduled time): whoever inserts it first runs the firing; a second
-- scheduler, a redelivered message or a repeated `scheduler run` finds it and does nothing.
CREATE TABLE scheduler_firings (
    job             text NOT NULL,
    scheduled_for   timestamptz NOT NULL,
    chunks_planned  integer NOT NULL DEFAULT 0,
    chunks_done     integer NOT NULL DEFAULT 0,
    members         bigint NOT NULL DEFAULT 0,
    points          bigint NOT NULL DEFAULT 0,
    note            text,
    planned_at      timestamptz NOT NULL DEFAULT now(),
    finished_at     timestamptz,
    PRIMARY KEY (job, scheduled_for)
);
CREATE INDEX scheduler_firings_planned ON scheduler_firings (planned_at);

-- A firing's work in member-id ranges (after, upto]; each range is done once.
CREATE TABLE scheduler_chunks (
    job            text NOT NULL,
    scheduled_for  timestamptz NOT NULL,
    after_member   text NOT NULL,
    members        bigint NOT NULL DEFAULT 0,
    points         bigint NOT NULL DEFAULT 0,
    done_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (job, scheduled_for, after_member)
);

-- Set when an expiry warning has named the lot, so no lot is announced twice.
ALTER TABLE lots ADD COLUMN warned_at timestamptz;
CREATE INDEX lots_warnable ON lots (member_id, expires_at) WHERE remaining > 0 AND warned_at IS NULL;

-- Tier review on a rolling window: upgrades count qualifying points above this baseline,
-- which a downgrade moves up so that only the window's points count again.
ALTER TABLE members ADD COLUMN qualifying_baseline bigint NOT NULL DEFAULT 0;
"""

DOWNGRADE = """
ALTER TABLE members DROP COLUMN qualifying_baseline;
DROP INDEX lots_warnable;
ALTER TABLE lots DROP COLUMN warned_at;
DROP TABLE scheduler_chunks, scheduler_firings;
"""


def upgrade() -> None:
    run(UPGRADE)


def downgrade() -> None:
    run(DOWNGRADE)
