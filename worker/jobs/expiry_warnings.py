"""expiry-warnings: tell members what expires next, once per lot.

Per member, the lots expiring on the earliest program-local date within
`expiry.warning_days` that no warning has named yet: one `points_expiring` notification with
their points and that date; the lots are marked so later runs never repeat them.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncConnection

from worker.domain.firings import firing_key
from worker.domain.program import Program
from worker.jobs.common import ChunkResult, Range
from worker.store import jobs as store_jobs


async def run(conn: AsyncConnection, program: Program, now: datetime, span: Range) -> ChunkResult:
    until = now + timedelta(days=program.expiry.warning_days)
    key = firing_key("expiry-warnings", now)
    row = await store_jobs.warn_expiring(conn, span, now, until, program.timezone, key)
    return ChunkResult(members=row.members, points=int(row.points))
