"""Program versions: program files published to the database, the one in force now, and the
timeline that decides each event by the version in force at its `occurred_at`.

`publish` stores a validated file under its `version` key, in force from `effective_from`
(now, or a later time for a campaign published ahead, never earlier). A version never
changes: the same key with other content is refused, the same content again changes nothing.

`ProgramInForce` is what a worker, API or scheduler process holds: `program`, the published
version with the latest `effective_from` at or before now, else the process's own program (its
LOYALTY_PROGRAM_FILE or the built-in default), so with nothing published everything is as
it was; and `timeline`, every version by its start (worker/domain/program_timeline.py), from
which events and calendar firings take the version in force at their own time. It re-reads
the table at most every `reload_s` seconds (one indexed query returning the version in force
and every version's id, checksum and start; a version's content only the first time it is
seen) and also when a scheduled version's start passes. A stored version that does not parse,
or a database that cannot be read, is logged and the current program kept: neither stops a
process.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

import structlog
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from worker.domain.engine import parse_program_text, program_version, version_id
from worker.domain.errors import ProgramError, PublishRefused
from worker.domain.program import Program
from worker.domain.program_timeline import ProgramTimeline, Start

log = structlog.get_logger(__name__)

# `program versions` lists at most this many, newest first: operators read them, nothing pages.
LIST_LIMIT_MAX = 500
# Between two refreshes at least this long, so the loop can never spin on the database.
WAIT_MIN_S = 0.05
# How long a starting process waits for the first read of the program in force before it
# starts with its own program (the reload task keeps trying).
FIRST_READ_TIMEOUT_S = 10

_PUBLISH = text(
    """
    INSERT INTO program_versions (version, name, content, checksum, effective_from, published_at, published_by)
    VALUES (:version, :name, :content, :checksum, :effective_from, :published_at, :published_by)
    ON CONFLICT (version) DO NOTHING
    RETURNING version
    """
)
_STORED = text(
    "SELECT checksum, effective_from, published_at, published_by FROM program_versions WHERE version = :version"
)
# The version in force at :now, the next start after it and every version's start (a small
# table: operators publish a handful a month), in one round trip.
_IN_FORCE = text(
    """
    SELECT f.version, f.checksum,
           (SELECT min(effective_from) FROM program_versions WHERE effective_from > :now) AS next_at,
           t.versions, t.checksums, t.starts, t.published
    FROM (SELECT 1) AS one
    LEFT JOIN LATERAL (
        SELECT version, checksum FROM program_versions WHERE effective_from <= :now
        ORDER BY effective_from DESC, published_at DESC, version DESC LIMIT 1
    ) AS f ON true
    CROSS JOIN LATERAL (
        SELECT array_agg(version ORDER BY effective_from, published_at, version) AS versions,
               array_agg(checksum ORDER BY effective_from, published_at, version) AS checksums,
               array_agg(effective_from ORDER BY effective_from, published_at, version) AS starts,
               array_agg(published_at ORDER BY effective_from, published_at, version) AS published
        FROM program_versions
    ) AS t
    """
)
# The tiers members hold, by a loose scan of the members_tier_member_id index: one probe per
# distinct tier, however many members there are.
_HELD_TIERS = text(
    """
    WITH RECURSIVE held(tier) AS (
        (SELECT tier FROM members ORDER BY tier LIMIT 1)
        UNION ALL
        SELECT (SELECT m.tier FROM members m WHERE m.tier > held.tier ORDER BY m.tier LIMIT 1)
        FROM held WHERE held.tier IS NOT NULL
    )
    SELECT tier FROM held WHERE tier IS NOT NULL
    """
)
_CONTENT = text("SELECT content FROM program_versions WHERE version = :version AND checksum = :checksum")
_LIST = text(
    """
    SELECT version, name, checksum, effective_from, published_at, published_by FROM program_versions
    ORDER BY effective_from DESC, published_at DESC, version DESC LIMIT :limit
    """
)


def checksum(content: str) -> str:
    return hashlib.sha256(content.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Published:
    version: str
    name: str
    effective_from: datetime
    published_at: datetime
    published_by: str
    # False: this content was already published under this version; nothing was written.
    created: bool


async def publish(
    engine: AsyncEngine, content: str, origin: str, *, by: str, now: datetime, effective_from: datetime | None = None
) -> Published:
    """Store a program file's text as the version its `version` key names. The same content
    again is a no-op (`created` False, the stored start kept), whenever it is repeated.

    ProgramError (naming the key, as `program check` does) for a file that does not validate;
    PublishRefused for a start in the past, a version already published otherwise, or one
    without a tier that members hold (their events could not be applied).
    """
    version = version_id(content, origin)
    program = parse_program_text(content, origin, version=version)
    digest = checksum(content)
    start = effective_from or now
    async with engine.begin() as conn:
        stored = (await conn.execute(_STORED, {"version": version})).mappings().first()
        if stored is None:
            if start < now:
                raise PublishRefused(
                    f"--effective-from: {start.isoformat()} is in the past; a version takes effect now or later "
                    "(leave the option out for now)"
                )
            held = (await conn.execute(_HELD_TIERS)).scalars().all()
            missing = [tier for tier in held if tier not in {t.name for t in program.tiers}]
            if missing:
                raise PublishRefused(
                    f"{origin}: tiers: {', '.join(repr(t) for t in missing)} held by members; a version keeps "
                    "every tier members hold"
                )
            row = (
                await conn.execute(
                    _PUBLISH,
                    {
                        "version": version,
                        "name": program.name,
                        "content": content,
                        "checksum": digest,
                        "effective_from": start,
                        "published_at": now,
                        "published_by": by,
                    },
                )
            ).first()
            if row is not None:
                return Published(version, program.name, start, now, by, created=True)
            # Published by another command at the same moment: compared as any earlier one.
            stored = (await conn.execute(_STORED, {"version": version})).mappings().one()
    said = f"published {stored['published_at'].isoformat()} by {stored['published_by']}"
    if stored["checksum"] != digest:
        raise PublishRefused(
            f"version {version!r} is already published with other content ({said}); a published version never "
            "changes: give this file a new version key"
        )
    if effective_from is not None and effective_from != stored["effective_from"]:
        raise PublishRefused(
            f"version {version!r} is already published, in force from {stored['effective_from'].isoformat()} "
            f"({said}); a published version never changes: give this file a new version key"
        )
    return Published(
        version, program.name, stored["effective_from"], stored["published_at"], stored["published_by"], created=False
    )


async def list_versions(engine: AsyncEngine, now: datetime, limit: int = 50) -> list[dict[str, Any]]:
    """The newest versions first, each with its status at `now`: in force, scheduled or superseded."""
    async with engine.connect() as conn:
        current = (await conn.execute(_IN_FORCE, {"now": now})).mappings().one()["version"]
        rows = (await conn.execute(_LIST, {"limit": max(1, min(limit, LIST_LIMIT_MAX))})).mappings().all()
    out = []
    for row in rows:
        status = (
            "in force" if row["version"] == current else "scheduled" if row["effective_from"] > now else "superseded"
        )
        out.append(
            {
                "version": row["version"],
                "name": row["name"],
                "status": status,
                "in_force": status == "in force",
                "effective_from": row["effective_from"].isoformat(),
                "published_at": row["published_at"].isoformat(),
                "published_by": row["published_by"],
                "checksum": row["checksum"],
            }
        )
    return out


async def program_in_force(engine: AsyncEngine, fallback: Program, now: datetime) -> Program:
    """The program in force at `now` for a one-off command: the published version, else
    `fallback`. Unlike a process's ProgramInForce, a problem is raised, not logged."""
    store = StoredVersions(engine)
    found = await store.in_force(now)
    if found.version is None or found.checksum is None:
        return fallback
    content = await store.content(found.version, found.checksum)
    return fallback if content is None else stored_program(found.version, content)


async def timeline_in_force(engine: AsyncEngine, fallback: Program, now: datetime) -> ProgramTimeline:
    """Every version by its start, as a process has them at `now`, for a one-off command that
    applies events (each decided by the version in force at its time). A version that does not
    parse is raised, not skipped."""
    store = StoredVersions(engine)
    found = await store.in_force(now)
    versions = []
    for stored in found.starts or ():
        content = await store.content(stored.version, stored.checksum)
        if content is not None:
            program = stored_program(stored.version, content)
            versions.append(Start(stored.effective_from, stored.published_at, stored.version, program))
    return ProgramTimeline.build(versions, fallback, now)


def stored_program(version: str, content: str) -> Program:
    """A stored version's program, whose entries record its id."""
    return parse_program_text(content, f"program version {version!r}", version=version)


@dataclass(frozen=True)
class StoredStart:
    """A stored version's id, checksum and start (its content is read once, when first seen)."""

    version: str
    checksum: str
    effective_from: datetime
    published_at: datetime


@dataclass(frozen=True)
class InForce:
    """Which version is in force at a time (None: none published by then), and the next start.

    `starts`: every stored version, oldest start first; None from a store that tells only the
    version in force (every event then goes by the program in force)."""

    version: str | None
    checksum: str | None
    next_at: datetime | None
    starts: tuple[StoredStart, ...] | None = None


class VersionStore(Protocol):
    async def in_force(self, now: datetime) -> InForce: ...

    async def content(self, version: str, digest: str) -> str | None: ...


class StoredVersions:
    """The program_versions table as ProgramInForce reads it."""

    def __init__(self, engine: AsyncEngine):
        self.engine = engine

    async def in_force(self, now: datetime) -> InForce:
        async with self.engine.connect() as conn:
            row = (await conn.execute(_IN_FORCE, {"now": now})).mappings().one()
        starts = tuple(
            StoredStart(*columns)
            for columns in zip(
                row["versions"] or (), row["checksums"] or (), row["starts"] or (), row["published"] or (), strict=True
            )
        )
        return InForce(row["version"], row["checksum"], row["next_at"], starts)

    async def content(self, version: str, digest: str) -> str | None:
        async with self.engine.connect() as conn:
            return (await conn.execute(_CONTENT, {"version": version, "checksum": digest})).scalar()


class ProgramInForce:
    """The program a process works with now, and the timeline of versions events are decided
    by; a message or request reads `program` or `timeline` once and keeps it to its end.

    Without a store the program is fixed (the demo, tests that pin one).
    """

    def __init__(self, fallback: Program, store: VersionStore | None = None, reload_s: float = 5):
        self.fallback = fallback
        self.program = fallback
        self.timeline = ProgramTimeline.fixed(fallback)
        self.store = store
        self.reload_s = reload_s
        # The published version in force and its checksum; None while the fallback is.
        self.version: str | None = None
        self._checksum: str | None = None
        # When the table was last read (the process clock).
        self.checked_at: datetime | None = None
        self._next_at: datetime | None = None
        # Every stored version's program by (version, checksum), parsed once (a version never
        # changes); None: it did not parse, and is not read again.
        self._parsed: dict[tuple[str, str], Program | None] = {}
        # What the timeline was built from: the stored starts and whether the first had begun.
        self._timeline_of: tuple[tuple[StoredStart, ...], bool] | None = None

    @property
    def version_label(self) -> str:
        """What the program's entries record: the published version id, or `file:<name>`."""
        return program_version(self.program)

    def wait_s(self, now: datetime) -> float:
        """Seconds until the next refresh is due: the reload interval, or a scheduled start."""
        if self.checked_at is None:
            return 0.0
        due = self.checked_at + timedelta(seconds=self.reload_s)
        if self._next_at is not None and self._next_at < due:
            due = self._next_at
        return max((due - now).total_seconds(), 0.0)

    async def refresh(self, now: datetime) -> Program:
        """Read which version is in force at `now` and switch to it, and the timeline of every
        version; the program in force after."""
        if self.store is None:
            return self.program
        self.checked_at = now
        try:
            found = await self.store.in_force(now)
        except Exception as error:  # an outage must not stop the process: the current program stays
            self._next_at = None
            log.warning("program_versions_unreadable", error=_first_line(error))
            return self.program
        self._next_at = found.next_at
        await self._follow_in_force(self.store, found)
        await self._follow_timeline(self.store, found, now)
        return self.program

    async def _follow_in_force(self, store: VersionStore, found: InForce) -> None:
        if (found.version, found.checksum) == (self.version, self._checksum):
            return
        if found.version is None or found.checksum is None:
            self._switch(self.fallback, None, None)
            return
        digest = (found.version, found.checksum)
        if digest in self._parsed:
            known = self._parsed[digest]
            if known is not None:  # None: a version that did not parse is not read again
                self._switch(known, found.version, found.checksum)
            return
        try:
            content = await store.content(found.version, found.checksum)
        except Exception as error:
            self._next_at = None
            log.warning("program_versions_unreadable", error=_first_line(error))
            return
        if content is None:  # removed between the two reads: the next refresh sees what is left
            return
        try:
            program = stored_program(found.version, content)
        except ProgramError as error:
            self._parsed[digest] = None
            log.error(
                "program_version_unusable", version=found.version, reason=str(error), kept=program_version(self.program)
            )
            return
        self._parsed[digest] = program
        self._switch(program, found.version, found.checksum)

    async def _follow_timeline(self, store: VersionStore, found: InForce, now: datetime) -> None:
        """Rebuild the timeline when the stored versions changed or the first one started. A
        version that does not parse is left off it (its time goes by the version before)."""
        if found.starts is None:  # a store that tells only the version in force
            self.timeline = ProgramTimeline.fixed(self.program)
            return
        key = (found.starts, bool(found.starts) and found.starts[0].effective_from <= now)
        if key == self._timeline_of:
            return
        versions = []
        for stored in found.starts:
            digest = (stored.version, stored.checksum)
            if digest not in self._parsed:
                try:
                    content = await store.content(stored.version, stored.checksum)
                except Exception as error:  # the timeline stays; the next refresh tries again
                    self._next_at = None
                    log.warning("program_versions_unreadable", error=_first_line(error))
                    return
                if content is None:  # removed meanwhile: the next refresh sees what is left
                    continue
                try:
                    self._parsed[digest] = stored_program(stored.version, content)
                except ProgramError as error:
                    self._parsed[digest] = None
                    log.error("program_version_unusable", version=stored.version, reason=str(error))
            program = self._parsed[digest]
            if program is not None:
                versions.append(Start(stored.effective_from, stored.published_at, stored.version, program))
        self.timeline = ProgramTimeline.build(versions, self.fallback, now)
        self._timeline_of = key

    def _switch(self, program: Program, version: str | None, digest: str | None) -> None:
        before = self.version_label
        self.program, self.version, self._checksum = program, version, digest
        log.info("program_in_force", version=self.version_label, previous=before, name=program.name)

    async def start(self, clock: Callable[[], datetime]) -> asyncio.Task | None:
        """The first read (bounded), then the task that keeps reading on this event loop;
        None when the program is fixed. The caller cancels the task when the process stops."""
        if self.store is None:
            return None
        try:
            await asyncio.wait_for(self.refresh(clock()), FIRST_READ_TIMEOUT_S)
        except TimeoutError:
            self._next_at = None
            log.warning("program_versions_unreadable", error=f"no answer within {FIRST_READ_TIMEOUT_S} s")
        return asyncio.get_running_loop().create_task(self.run(clock))

    async def run(self, clock: Callable[[], datetime]) -> None:
        """Refresh whenever due, until cancelled."""
        while True:
            await asyncio.sleep(max(self.wait_s(clock()), WAIT_MIN_S))
            await self.refresh(clock())


def _first_line(error: BaseException) -> str:
    message = str(error).strip()
    return f"{type(error).__name__}: {message.splitlines()[0]}" if message else type(error).__name__
