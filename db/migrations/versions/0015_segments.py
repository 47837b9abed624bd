"""Member listings by tier, paged by member id.

Revision ID: 0015_segments
Revises: 0001_core

`loyalty member list --tier` and `GET /v1/members?tier=` page through one tier's members in
member-id order (`WHERE tier = $1 AND member_id > $cursor ORDER BY member_id LIMIT n`): an
index on (tier, member_id) reads exactly one page, where the index on tier alone read the
whole tier and sorted it. It serves everything the old one did (its first column is the
tier), so that one goes. The label filter uses the GIN index of 0013_back_office.
"""

from db.migrations.script import run

revision = "0015_segments"
down_revision = "0001_core"
branch_labels = None
depends_on = None

UPGRADE = """
CREATE INDEX members_tier_member_id ON members (tier, member_id);
DROP INDEX members_tier;
"""

DOWNGRADE = """
CREATE INDEX members_tier ON members (tier);
DROP INDEX members_tier_member_id;
"""


def upgrade() -> None:
    run(UPGRADE)


def downgrade() -> None:
    run(DOWNGRADE)
