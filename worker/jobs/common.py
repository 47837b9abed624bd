"""Shared pieces of the calendar jobs: the member ranges they run over, and a chunk's result
(both defined with the set-based passes that write, worker/store/jobs.py)."""

from __future__ import annotations

from worker.store.jobs import IN_RANGE, ChunkResult, Range

__all__ = ["IN_RANGE", "ChunkResult", "Range"]
