"""expire-points: lots past their expiry lose what remains, as one `expire` entry per member.

Set-based per chunk (worker/store/jobs.py `expire`): one statement locks the chunk's members
that have due lots, one statement expires every due lot of theirs, writes the entries with
their lot takes (as every other entry that moves lots has), the balances and the
notifications. Qualifying points are not touched: expiry never lowers a tier.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncConnection

from worker.domain.firings import firing_key
from worker.domain.program import Program
from worker.services.jobs.common import ChunkResult, Range
from worker.store import jobs as store_jobs


async def run(conn: AsyncConnection, program: Program, now: datetime, span: Range) -> ChunkResult:
    return await store_jobs.expire(conn, span, now, firing_key("expire-points", now))
