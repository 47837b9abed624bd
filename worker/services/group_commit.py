"""Group commit for one-event messages: the events a worker process has in flight share one
transaction.

Each `process_event` actor validates its event as before and then awaits `GroupCommit.apply`
instead of opening a transaction of its own. A collector task on the process's event loop
takes what has gathered (up to `group_max` events, waiting at most `wait_ms` for more once a
connection is free) and applies it with the batch path's `intake.apply_group`: members
locked in sorted order, each member's events in occurrence order, and, should the ledger
refuse an event, the group applied again with a savepoint per event so that only that event
is rejected. Every future resolves after COMMIT (or with the error that stopped it), so an
actor returns, and its message is acknowledged, only once its effects are durable; a worker
killed mid-group leaves every message of the group unacknowledged, and redelivery meets the
claimed keys as duplicates or the rolled-back ones as new.

One instance per worker process, used from its event-loop thread only.
"""

from __future__ import annotations

import asyncio
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from worker.domain.errors import InvalidEvent
from worker.domain.program import Program
from worker.domain.program_timeline import ProgramTimeline, timeline_of
from worker.domain.result import Result
from worker.services import identities, intake


@dataclass
class _Pending:
    programs: ProgramTimeline
    event: Any
    future: asyncio.Future[Result]


class GroupCommit:
    """Collects events on the event loop and commits them in groups (see the module docstring).

    `concurrency` groups may be committing at once, each on its own pooled connection; while
    they are, new events gather for the next group, so the group size follows the load
    (one event per transaction when idle, up to `group_max` when busy).
    """

    def __init__(self, engine: AsyncEngine, *, group_max: int, wait_ms: float, concurrency: int, strict: bool = False):
        assert group_max >= 1 and concurrency >= 1 and wait_ms >= 0
        self.engine, self.group_max, self.wait_s, self.strict = engine, group_max, wait_ms / 1000, strict
        self._pending: list[_Pending] = []
        self._arrived = asyncio.Event()
        self._slots = asyncio.Semaphore(concurrency)
        self._collector: asyncio.Task[None] | None = None
        self._flushes: set[asyncio.Task[None]] = set()
        # Transactions committed and events they carried: what tests and logs look at.
        self.groups_committed = 0
        self.events_committed = 0

    async def apply(self, programs: Program | ProgramTimeline, event: Any) -> Result:
        """The event's ledger result once its group has committed, decided by the version in
        force at its occurred_at. Raises InvalidEvent with the ledger's reason when the ledger
        refused this event (the others still apply), or the database error that failed the
        whole group (an outage: the message is retried)."""
        future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self._pending.append(_Pending(timeline_of(programs), event, future))
        if self._collector is None or self._collector.done():
            self._collector = asyncio.create_task(self._collect(), name="group-commit")
        self._arrived.set()
        return await future

    async def _collect(self) -> None:
        while True:
            await self._arrived.wait()
            self._arrived.clear()
            while self._pending:
                await self._slots.acquire()
                if self.wait_s and len(self._pending) < self.group_max:
                    # A short wait lets concurrent messages join; it is paid only when a
                    # connection is free anyway, so it adds at most wait_ms to latency.
                    await asyncio.sleep(self.wait_s)
                group, self._pending = self._pending[: self.group_max], self._pending[self.group_max :]
                flush = asyncio.create_task(self._flush(group))
                self._flushes.add(flush)
                flush.add_done_callback(self._flushes.discard)

    async def _flush(self, group: list[_Pending]) -> None:
        try:
            # A program reload between two messages may put two timelines in one group: each
            # message keeps the timeline it read, so each timeline gets its own transaction.
            # (One timeline serves events of any time: each takes its version from it.)
            by_program: dict[tuple[object, ...], list[_Pending]] = {}
            for item in group:
                by_program.setdefault(item.programs.key, []).append(item)
            for items in by_program.values():
                await self._commit(items)
        finally:
            self._slots.release()

    async def _commit(self, items: list[_Pending]) -> None:
        try:
            # Identities and merges first, in a short transaction of their own (as a batch does):
            # an event named by an identity, or for a merged member, lands on its member.
            async with self.engine.begin() as conn:
                resolved = await identities.resolve_many(conn, items[0].programs, [item.event for item in items])
        except Exception as error:
            for item in items:
                if not item.future.done():
                    item.future.set_exception(error)
            return
        for item, event in zip(items, resolved, strict=True):
            item.event = event
        by_member: dict[str, list[tuple[int, Any]]] = {}
        for index, item in enumerate(items):
            by_member.setdefault(item.event.member_id, []).append((index, item.event))
        for shares in by_member.values():
            shares.sort(key=lambda share: (share[1].occurred_at, share[1].source, share[1].event_id))
        group = [(member_id, by_member[member_id]) for member_id in sorted(by_member)]
        try:
            async with self.engine.connect() as conn:
                done = await intake.apply_group(conn, items[0].programs, group, self.strict)
        except Exception as error:
            for item in items:
                if not item.future.done():
                    item.future.set_exception(error)
            return
        except BaseException:
            for item in items:
                item.future.cancel()
            raise
        self.groups_committed += 1
        self.events_committed += len(items)
        for applied in done:
            future = items[applied.index].future
            if applied.result is None:
                if not future.done():
                    future.set_exception(InvalidEvent(applied.reason or "event: refused by the ledger"))
                continue
            intake.count_committed(applied.event, applied.result)
            if not future.done():
                future.set_result(applied.result)

    async def stop(self) -> None:
        """Let the groups being committed finish, then stop collecting."""
        if self._flushes:
            await asyncio.gather(*self._flushes, return_exceptions=True)
        if self._collector is not None:
            self._collector.cancel()
            with suppress(asyncio.CancelledError):
                await self._collector
