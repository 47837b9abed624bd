"""Bring an existing program's members and opening balances in (`loyalty import`).

A file is read as a stream, in chunks of `CHUNK_ROWS` rows: each chunk is parsed (pure,
worker/domain/imports.py), checked against what is stored with two statements, and written
with a fixed number of set-based statements (worker/store/imports.py), in one transaction
per chunk. Memory does not grow with the file; an import cut short keeps the chunks it
committed, and running the file again finds their rows and goes on.

Every row ends in one status: `imported`, `unchanged` (imported before with the same values),
`conflict` (imported before with other values, a member enrolled otherwise, an identity
naming another member: nothing of the row is written) or `bad` (a column that cannot be
read, or a member the lot cannot go to), each conflict and bad row with its line and reason.
A dry run does the same in one transaction that it rolls back, so its counts are the real
run's. Nothing here queues a notification: imported members get no welcome, nudge or
`points_earned` message.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import csv
import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, BinaryIO

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from worker.domain import engine as rules_engine
from worker.domain import imports as rows
from worker.domain.engine import EngineProgram, tiering
from worker.domain.program import Program
from worker.store import imports as store
from worker.store.imports import ImportRaced

# Rows per transaction: large enough that a statement's round trip is small next to its work
# (5,000 rows take about a quarter of a second), small enough that a chunk's arrays and its
# row locks stay small and an interrupted import loses at most one chunk's work.
CHUNK_ROWS = 5000
# A chunk read again after another writer took one of its members or identities between its
# reads and writes; each attempt sees that writer's rows, so a second attempt settles it.
CHUNK_ATTEMPTS_MAX = 3


class ImportFileError(ValueError):
    """A file that cannot be imported at all (its header, its encoding); names what is wrong."""


@dataclass(frozen=True)
class Problem:
    line: int
    status: str  # "bad" or "conflict"
    reason: str

    def __str__(self) -> str:
        prefix = "conflict: " if self.status == "conflict" else ""
        return f"line {self.line}: {prefix}{self.reason}"

    def as_json(self) -> dict[str, Any]:
        return {"line": self.line, "status": self.status, "reason": self.reason}


@dataclass
class ImportReport:
    what: str  # "members" or "balances"
    dry_run: bool
    rows: int = 0
    imported: int = 0
    unchanged: int = 0
    conflicts: int = 0
    bad: int = 0
    # Balances: points and lots of the rows imported.
    points: int = 0

    @property
    def clean(self) -> bool:
        return not (self.conflicts or self.bad)

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "file": self.what,
            "dry_run": self.dry_run,
            "rows": self.rows,
            "imported": self.imported,
            "unchanged": self.unchanged,
            "conflicts": self.conflicts,
            "bad": self.bad,
        }
        if self.what == "balances":
            out["points"] = self.points
        return out


@dataclass
class _Chunk:
    """One chunk's outcome, counted into the report once its transaction committed."""

    imported: int = 0
    unchanged: int = 0
    points: int = 0
    problems: list[Problem] = field(default_factory=list)


class CsvRows:
    """(line number, cells) of a UTF-8 CSV file after its header, read line by line; the line
    is the one a row starts on. `bytes_read` says how far the reader is."""

    def __init__(self, stream: BinaryIO, columns: tuple[str, ...], required: tuple[str, ...]) -> None:
        self.bytes_read = 0
        self._line = 0
        self._decoder = codecs.getincrementaldecoder("utf-8-sig")()
        self._reader = csv.reader(self._lines(stream), strict=False)
        try:
            header = next(self._reader)
        except StopIteration:
            raise ImportFileError("header: the file is empty; the first row names the columns") from None
        problem = rows.check_header(header, columns, required)
        if problem is not None:
            raise ImportFileError(f"line 1: {problem}")
        self.header = [name.strip() for name in header]

    def _lines(self, stream: BinaryIO) -> Iterator[str]:
        for raw in stream:
            self._line += 1
            self.bytes_read += len(raw)
            try:
                yield self._decoder.decode(raw)
            except UnicodeDecodeError:
                raise ImportFileError(f"line {self._line}: is not UTF-8 text") from None

    def __iter__(self) -> Iterator[tuple[int, dict[str, str] | int]]:
        """Each row as column -> cell, or the number of its cells when that is not the
        header's (reported by the caller). Blank lines are skipped."""
        width = len(self.header)
        started = self._reader.line_num + 1
        while True:
            try:
                cells = next(self._reader)
            except StopIteration:
                return
            except csv.Error as error:  # an unclosed quote that ran into the size limit, a NUL
                raise ImportFileError(f"line {started}: {error}") from None
            line, started = started, self._reader.line_num + 1
            if not cells or (len(cells) == 1 and not cells[0].strip()):
                continue
            if len(cells) != width:
                yield line, len(cells)
                continue
            yield line, dict(zip(self.header, cells, strict=True))


async def import_members(
    engine: AsyncEngine,
    program: Program,
    stream: BinaryIO,
    *,
    now: datetime,
    dry_run: bool = False,
    on_problem: Callable[[Problem], None] | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> ImportReport:
    """Import a members file (columns: worker/domain/imports.MEMBER_COLUMNS)."""
    reader = CsvRows(stream, rows.MEMBER_COLUMNS, rows.MEMBER_REQUIRED)
    rules = rules_engine.rules_of(program)
    tiers = [level.name for level in rules.tiers.levels]

    def parse(row: dict[str, str]) -> rows.MemberRow:
        return rows.parse_member(row, tiers, rules.zone)

    async def write(conn: AsyncConnection, parsed: list[tuple[int, Any]]) -> _Chunk:
        return await _members_chunk(conn, program, parsed, now)

    return await _run(engine, "members", reader, parse, write, dry_run, on_problem, on_progress)


async def import_balances(
    engine: AsyncEngine,
    program: Program,
    stream: BinaryIO,
    *,
    now: datetime,
    dry_run: bool = False,
    on_problem: Callable[[Problem], None] | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> ImportReport:
    """Import a balances file (columns: worker/domain/imports.BALANCE_COLUMNS)."""
    reader = CsvRows(stream, rows.BALANCE_COLUMNS, rows.BALANCE_REQUIRED)

    async def write(conn: AsyncConnection, parsed: list[tuple[int, Any]]) -> _Chunk:
        return await _lots_chunk(conn, program, parsed, now)

    return await _run(engine, "balances", reader, rows.parse_lot, write, dry_run, on_problem, on_progress)


@dataclass
class _Parsed:
    """One chunk as the reader thread hands it over: its rows parsed, its bad rows, and how
    far into the file it ends."""

    rows: int
    parsed: list[tuple[int, Any]]
    problems: list[Problem]
    bytes_read: int


# Parsed chunks waiting for the database: one being written and one ready keeps both the
# parser and the database busy; more would only hold memory.
CHUNKS_AHEAD = 2


def _parse_chunks(reader: CsvRows, parse, out: queue.Queue, stop: threading.Event) -> None:
    """Read and parse the file chunk by chunk into `out`, ending with None (or the error that
    stopped it). Runs in a thread of its own, so that parsing the next chunk overlaps the
    database's work on this one (the event loop waits on its socket meanwhile)."""
    width = len(reader.header)

    def hand_over(item: Any) -> bool:
        while not stop.is_set():
            try:
                out.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    try:
        for chunk in _chunks(reader, CHUNK_ROWS):
            parsed, problems = [], []
            for line, row in chunk:
                if isinstance(row, int):
                    problems.append(Problem(line, "bad", f"columns: the row has {row} cells, the header {width}"))
                    continue
                try:
                    parsed.append((line, parse(row)))
                except rows.BadRow as error:
                    problems.append(Problem(line, "bad", str(error)))
            if not hand_over(_Parsed(len(chunk), parsed, problems, reader.bytes_read)):
                return
        hand_over(None)
    except BaseException as error:  # handed to the caller, which raises it
        hand_over(error)


async def _run(engine, what, reader, parse, write, dry_run, on_problem, on_progress) -> ImportReport:
    report = ImportReport(what, dry_run)

    def tell(problems: list[Problem]) -> None:
        for problem in sorted(problems, key=lambda p: p.line):
            if problem.status == "bad":
                report.bad += 1
            else:
                report.conflicts += 1
            if on_problem is not None:
                on_problem(problem)

    chunks: queue.Queue = queue.Queue(maxsize=CHUNKS_AHEAD)
    stop = threading.Event()
    parser = threading.Thread(target=_parse_chunks, args=(reader, parse, chunks, stop), daemon=True)
    parser.start()
    try:
        async with engine.connect() as conn:
            # A dry run writes every chunk in one transaction it rolls back at the end, so later
            # chunks see the earlier ones as the real run would.
            outer = await conn.begin() if dry_run else None
            try:
                while (item := await asyncio.to_thread(chunks.get)) is not None:
                    if isinstance(item, BaseException):
                        raise item
                    report.rows += item.rows
                    done = _Chunk()
                    if item.parsed:
                        done = await _in_transaction(conn, dry_run, lambda p=item.parsed: write(conn, p))
                    report.imported += done.imported
                    report.unchanged += done.unchanged
                    report.points += done.points
                    tell(item.problems + done.problems)
                    if on_progress is not None:
                        on_progress(item.bytes_read)
            finally:
                if outer is not None:
                    await outer.rollback()
    finally:
        stop.set()
        parser.join()
        # A wait for the next chunk cut short (a cancelled run) still has a thread in get().
        with contextlib.suppress(queue.Full):
            chunks.put_nowait(None)
    return report


def _chunks(reader: CsvRows, size: int) -> Iterator[list[tuple[int, Any]]]:
    chunk: list[tuple[int, Any]] = []
    for item in reader:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


async def _in_transaction(conn: AsyncConnection, dry_run: bool, work) -> _Chunk:
    """`work` in a transaction of its own (a savepoint in a dry run), read again when raced."""
    for attempt in range(1, CHUNK_ATTEMPTS_MAX + 1):
        try:
            async with conn.begin_nested() if dry_run else conn.begin():
                return await work()
        except ImportRaced:
            if attempt == CHUNK_ATTEMPTS_MAX:
                raise
    raise AssertionError("unreachable")


def _tier_of(rules: EngineProgram, member: rows.MemberRow, today) -> tuple[str, str | None]:
    """The member's tier and floor: the file's tier (kept at least until tier_floor_until when
    given), else the tier the qualifying points reach on the program's points basis."""
    lowest = rules.tiers.levels[0].name
    if member.tier is not None:
        floor = member.tier if member.tier_floor_until is not None and member.tier != lowest else None
        return member.tier, floor
    value: int | Decimal = member.qualifying_points if rules.tiers.basis == "points" else Decimal(0)
    return tiering.tier_after(rules, lowest, value, on=today), None


async def _members_chunk(
    conn: AsyncConnection, program: Program, parsed: list[tuple[int, rows.MemberRow]], now: datetime
) -> _Chunk:
    out = _Chunk()
    rules = rules_engine.rules_of(program)
    today = now.astimezone(rules.zone).date()
    known = await store.known_members(conn, sorted({m.member_id for _, m in parsed}))
    # Only rows that may go in need their identities' owners (a file run again needs none).
    wanted = sorted({identity for _, m in parsed if m.member_id not in known for identity in m.identities})
    owners = await store.identity_owners(conn, wanted)
    accepted: dict[str, tuple[int, str]] = {}
    new: list[store.NewMember] = []
    for line, member in parsed:
        mid = member.member_id
        found = known.get(mid)
        if found is not None:
            if found.row_hash == member.row_hash and not found.erased:
                out.unchanged += 1
                continue
            if found.erased:
                reason = f"member_id: {mid} was erased"
            elif found.row_hash is None:
                reason = f"member_id: {mid} is already a member, not one imported"
            else:
                reason = f"member_id: {mid} was imported with other values; not changed"
            out.problems.append(Problem(line, "conflict", reason))
            continue
        if mid in accepted:
            first_line, first_hash = accepted[mid]
            if first_hash == member.row_hash:
                out.unchanged += 1
            else:
                out.problems.append(
                    Problem(line, "conflict", f"member_id: {mid} is on line {first_line} too, with other values")
                )
            continue
        late = rows.member_late(member, today)
        if late is not None:
            out.problems.append(Problem(line, "bad", late))
            continue
        taken = next(
            (
                (kind, owners[(kind, value)])
                for kind, value in member.identities
                if owners.get((kind, value), mid) != mid
            ),
            None,
        )
        if taken is not None:
            out.problems.append(Problem(line, "conflict", f"{taken[0]}: already names member {taken[1]}"))
            continue
        for identity in member.identities:
            owners[identity] = mid
        accepted[mid] = (line, member.row_hash)
        tier, floor = _tier_of(rules, member, today)
        new.append(
            store.NewMember(
                member_id=mid,
                tier=tier,
                floor_tier=floor,
                floor_ends_on=member.tier_floor_until if floor is not None else None,
                qualifying_points=member.qualifying_points,
                lifetime_points=member.lifetime_points,
                birthday=member.birthday,
                locale=member.locale,
                labels=member.labels,
                enrolled_at=member.enrolled_at,
                identities=member.identities,
                row_hash=member.row_hash,
            )
        )
    await store.write_members(conn, new, now)
    out.imported = len(new)
    return out


async def _lots_chunk(
    conn: AsyncConnection, program: Program, parsed: list[tuple[int, rows.LotRow]], now: datetime
) -> _Chunk:
    out = _Chunk()
    zone = rules_engine.rules_of(program).zone
    today = now.astimezone(zone).date()
    members = await store.lock_members(conn, [lot.member_id for _, lot in parsed])
    known = await store.known_lots(conn, sorted({(lot.member_id, lot.lot_ref) for _, lot in parsed}))
    accepted: dict[tuple[str, str], tuple[int, str]] = {}
    new: list[store.NewLot] = []
    for line, lot in parsed:
        key = (lot.member_id, lot.lot_ref)
        if key in known:
            if known[key] == lot.row_hash:
                out.unchanged += 1
            else:
                reason = f"lot_ref: {lot.lot_ref} of member {lot.member_id} was imported with other values; not changed"
                out.problems.append(Problem(line, "conflict", reason))
            continue
        if key in accepted:
            first_line, first_hash = accepted[key]
            if first_hash == lot.row_hash:
                out.unchanged += 1
            else:
                reason = (
                    f"lot_ref: {lot.lot_ref} of member {lot.member_id} is on line {first_line} too, with other values"
                )
                out.problems.append(Problem(line, "conflict", reason))
            continue
        member = members.get(lot.member_id)
        if member is None:
            reason = f"member_id: {lot.member_id} is not a member (import it with `loyalty import members` first)"
        elif member.erased:
            reason = f"member_id: {lot.member_id} was erased"
        elif member.merged_into is not None:
            reason = f"member_id: {lot.member_id} was merged into {member.merged_into}; import its lots for that member"
        else:
            reason = rows.lot_late(lot, today)
        if reason is not None:
            out.problems.append(Problem(line, "bad", reason))
            continue
        accepted[key] = (line, lot.row_hash)
        new.append(
            store.NewLot(
                member_id=lot.member_id,
                lot_ref=lot.lot_ref,
                points=lot.points,
                earned_at=rows.local_midnight(lot.earned_on, zone) if lot.earned_on is not None else now,
                expires_at=rows.local_midnight(lot.expires_on, zone),
                expires_on=lot.expires_on,
                note=lot.note,
                row_hash=lot.row_hash,
            )
        )
    await store.write_lots(conn, new, now)
    out.imported = len(new)
    out.points = sum(lot.points for lot in new)
    return out
