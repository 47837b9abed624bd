"""expire-points: lots past their expiry lose what remains, as one `expire` entry per member.

Set-based per chunk (worker/store/jobs.py `expire`): one statement locks the chunk's members
that have due lots, one statement expires every due lot of theirs, writes the entries, the
balances and the notifications. An expire entry has no lot takes: takes are kept to undo an
entry (a cancelled redemption, a voided hold) and expiry is never undone, while a million of
them would double the job's time; the entry's rule names how many lots it emptied and the
earliest expiry. Qualifying points are not touched: expiry never lowers a tier.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncConnection

from worker.domain.firings import firing_key
from worker.domain.program import Program
from worker.jobs.common import ChunkResult, Range
from worker.store import jobs as store_jobs


async def run(conn: AsyncConnection, program: Program, now: datetime, span: Range) -> ChunkResult:
    return await store_jobs.expire(conn, span, now, firing_key("expire-points", now))
