"""release-pending: purchase points held for the return window become available when it closes.

A refund inside the window has already taken its points from the order's own pending lot
(see accounts.reverse), so only what is left is released. One set-based pass per chunk
(worker/store/jobs.py `release_pending`).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncConnection

from worker.domain.firings import firing_key
from worker.domain.program import Program
from worker.jobs.common import ChunkResult, Range
from worker.store import jobs as store_jobs


async def run(conn: AsyncConnection, program: Program, now: datetime, span: Range) -> ChunkResult:
    return await store_jobs.release_pending(conn, span, now, firing_key("release-pending", now))
