"""Bring an existing program's members and opening balances in (`loyalty import`).

A file is read as a stream, in chunks of `CHUNK_ROWS` rows: a reader thread parses each chunk
(pure, worker/domain/imports.py) while the database writes the one before; the chunk is
copied into a temporary table and written from it with a fixed number of set-based statements
(worker/store/imports.py), in one transaction per chunk. Memory does not grow with the file;
an import cut short keeps the chunks it committed, and running the file again finds their
rows and goes on.

A chunk whose every row can go in is written without reading first: its rows' unique keys
(member, identity, lot) say whether any was there already, and if one was, the chunk is rolled
back and done again reading what is stored (the chunk after it too, since a file run again
has its rows there). Either way each row ends in one status: `imported`, `unchanged`
(imported before with the same values), `conflict` (imported before with other values, a
member enrolled otherwise, an identity naming another member: nothing of the row is written)
or `bad` (a column that cannot be read, or a member the lot cannot go to), each conflict and
bad row with its line and reason. A dry run does the same in one transaction that it rolls
back, so its counts are the real run's. Nothing here queues a notification: imported members
get no welcome, nudge or `points_earned` message.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import csv
import queue
import sys
import threading
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
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
# reads and writes; each attempt sees that writer's rows, so a second attempt settles it. (A
# chunk first written without reading has one attempt more.)
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
    # Lines of the rows not written (unchanged, conflicts, bad for a reason found here).
    skip: list[int] = field(default_factory=list)
    # Whether some row was there before: the next chunk reads before it writes.
    found: bool = False


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
            yield line, dict(zip(self.header, cells, strict=False))  # the lengths are equal


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
    today = now.astimezone(rules.zone).date()

    def parse(line: int, row: dict[str, str]) -> tuple[rows.MemberRow, tuple]:
        member = rows.parse_member(row, tiers, rules.zone)
        tier, floor = _tier_of(rules, member, today)
        return member, store.member_record(member, tier, floor, member.tier_floor_until if floor else None)

    async def write(conn: AsyncConnection, parsed: list[tuple[int, Any, tuple]], careful: bool) -> _Chunk:
        return await _members_chunk(conn, parsed, careful, today, now)

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
    zone = rules_engine.rules_of(program).zone
    today = now.astimezone(zone).date()

    def parse(line: int, row: dict[str, str]) -> tuple[rows.LotRow, tuple]:
        lot = rows.parse_lot(row)
        earned_at = rows.local_midnight(lot.earned_on, zone) if lot.earned_on is not None else now
        return lot, store.lot_record(lot, earned_at, rows.local_midnight(lot.expires_on, zone))

    async def write(conn: AsyncConnection, parsed: list[tuple[int, Any, tuple]], careful: bool) -> _Chunk:
        return await _lots_chunk(conn, parsed, careful, today, now)

    return await _run(engine, "balances", reader, parse, write, dry_run, on_problem, on_progress)


# parse(line, cells) -> (the row parsed, its record for the temporary table); BadRow when bad.
Parse = Callable[[int, dict[str, str]], tuple[Any, tuple]]
# write(conn, chunk, careful) -> its outcome; careful: read what is stored before writing.
Write = Callable[[AsyncConnection, list[tuple[int, Any, tuple]], bool], Awaitable[_Chunk]]


@dataclass
class _Parsed:
    """One chunk as the reader thread hands it over: its rows parsed (line, row, record), its
    bad rows, and how far into the file it ends."""

    rows: int
    parsed: list[tuple[int, Any, tuple]]
    problems: list[Problem]
    bytes_read: int


# Parsed chunks waiting for the database: one being written and one ready keeps both the
# parser and the database busy; more would only hold memory.
CHUNKS_AHEAD = 2
# How long the reader thread may hold the interpreter lock while the event loop waits for it
# (Python's default: 5 ms). A chunk takes half a dozen round trips, and each answer could wait
# that long before the event loop read it and gave the database its next statement. Restored
# when the import ends.
GIL_SWITCH_INTERVAL_S = 0.0005


def _parse_chunks(reader: CsvRows, parse: Parse, out: queue.Queue, stop: threading.Event) -> None:
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
                    parsed.append((line, *parse(line, row)))
                except rows.BadRow as error:
                    problems.append(Problem(line, "bad", str(error)))
            if not hand_over(_Parsed(len(chunk), parsed, problems, reader.bytes_read)):
                return
        hand_over(None)
    except BaseException as error:  # handed to the caller, which raises it
        hand_over(error)


async def _run(
    engine: AsyncEngine,
    what: str,
    reader: CsvRows,
    parse: Parse,
    write: Write,
    dry_run: bool,
    on_problem: Callable[[Problem], None] | None,
    on_progress: Callable[[int], None] | None,
) -> ImportReport:
    """The one driver of both files: parse in a thread, write chunk by chunk, count."""
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
    switch_interval_s = sys.getswitchinterval()
    sys.setswitchinterval(min(switch_interval_s, GIL_SWITCH_INTERVAL_S))
    parser.start()
    try:
        async with engine.connect() as conn:
            # A dry run writes every chunk in one transaction it rolls back at the end, so later
            # chunks see the earlier ones as the real run would.
            outer = await conn.begin() if dry_run else None
            careful = False
            try:
                while (item := await asyncio.to_thread(chunks.get)) is not None:
                    if isinstance(item, BaseException):
                        raise item
                    report.rows += item.rows
                    done = _Chunk()
                    if item.parsed:
                        done = await _in_transaction(conn, dry_run, write, item.parsed, careful)
                        careful = done.found
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
        sys.setswitchinterval(switch_interval_s)
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


async def _in_transaction(
    conn: AsyncConnection, dry_run: bool, write: Write, parsed: list[tuple[int, Any, tuple]], careful: bool
) -> _Chunk:
    """`write` in a transaction of its own (a savepoint in a dry run): first without reading
    unless `careful`, then reading, again when raced."""
    attempts = CHUNK_ATTEMPTS_MAX if careful else CHUNK_ATTEMPTS_MAX + 1
    for attempt in range(1, attempts + 1):
        try:
            async with conn.begin_nested() if dry_run else conn.begin():
                return await write(conn, parsed, careful)
        except ImportRaced:
            if attempt == attempts:
                raise
            careful = True
    raise AssertionError("unreachable")


def _tier_of(rules: EngineProgram, member: rows.MemberRow, today: date) -> tuple[str, str | None]:
    """The member's tier and floor: the file's tier (kept at least until tier_floor_until when
    given), else the tier the qualifying points reach on the program's points basis."""
    lowest = rules.tiers.levels[0].name
    if member.tier is not None:
        floor = member.tier if member.tier_floor_until is not None and member.tier != lowest else None
        return member.tier, floor
    value: int | Decimal = member.qualifying_points if rules.tiers.basis == "points" else Decimal(0)
    return tiering.tier_after(rules, lowest, value, on=today), None


async def _members_chunk(
    conn: AsyncConnection, parsed: list[tuple[int, rows.MemberRow, tuple]], careful: bool, today: date, now: datetime
) -> _Chunk:
    if not careful:
        out = _members_decided(parsed, {}, {}, today)
        if not out.skip:
            await store.write_members(conn, [record for _, _, record in parsed], now)
            return out
    known = await store.known_members(conn, sorted({m.member_id for _, m, _ in parsed}))
    # Only rows that may go in need their identities' owners (a file run again needs none).
    wanted = sorted({identity for _, m, _ in parsed if m.member_id not in known for identity in m.identities})
    owners = await store.identity_owners(conn, wanted)
    out = _members_decided(parsed, known, owners, today)
    out.found = bool(known)
    await store.write_members(conn, _written(parsed, out.skip), now)
    return out


def _written(parsed: list[tuple[int, Any, tuple]], skip: list[int]) -> list[tuple]:
    """The records of the rows not skipped."""
    left_out = set(skip)
    return [record for line, _, record in parsed if line not in left_out]


def _members_decided(
    parsed: list[tuple[int, rows.MemberRow, tuple]],
    known: dict[str, store.KnownMember],
    owners: dict[tuple[str, str], str],
    today: date,
) -> _Chunk:
    """Each row's status, given the members stored before and their identities' owners."""
    out = _Chunk()
    owners = dict(owners)
    accepted: dict[str, tuple[int, str]] = {}
    for line, member, _ in parsed:
        mid = member.member_id
        found = known.get(mid)
        if found is not None:
            out.skip.append(line)
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
            out.skip.append(line)
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
            out.skip.append(line)
            out.problems.append(Problem(line, "bad", late))
            continue
        taken = None
        for identity in member.identities:
            owner = owners.get(identity, mid)
            if owner != mid:
                taken = f"{identity[0]}: already names member {owner}"
                break
        if taken is not None:
            out.skip.append(line)
            out.problems.append(Problem(line, "conflict", taken))
            continue
        for identity in member.identities:
            owners[identity] = mid
        accepted[mid] = (line, member.row_hash)
    out.imported = len(accepted)
    return out


async def _lots_chunk(
    conn: AsyncConnection, parsed: list[tuple[int, rows.LotRow, tuple]], careful: bool, today: date, now: datetime
) -> _Chunk:
    unfit = await store.lock_members(conn, [lot.member_id for _, lot, _ in parsed])
    if not careful:
        out = _lots_decided(parsed, {}, unfit, today)
        if not out.skip:
            await store.write_lots(conn, [record for _, _, record in parsed], now)
            return out
    known = await store.known_lots(conn, sorted({(lot.member_id, lot.lot_ref) for _, lot, _ in parsed}))
    out = _lots_decided(parsed, known, unfit, today)
    out.found = bool(known)
    await store.write_lots(conn, _written(parsed, out.skip), now)
    return out


def _lots_decided(
    parsed: list[tuple[int, rows.LotRow, tuple]],
    known: dict[tuple[str, str], str],
    unfit: dict[str, store.LockedMember],
    today: date,
) -> _Chunk:
    """Each row's status, given the lots imported before and the members a lot cannot go to."""
    out = _Chunk()
    accepted: dict[tuple[str, str], tuple[int, str]] = {}
    for line, lot, _ in parsed:
        key = (lot.member_id, lot.lot_ref)
        if key in known:
            out.skip.append(line)
            if known[key] == lot.row_hash:
                out.unchanged += 1
            else:
                reason = f"lot_ref: {lot.lot_ref} of member {lot.member_id} was imported with other values; not changed"
                out.problems.append(Problem(line, "conflict", reason))
            continue
        if key in accepted:
            out.skip.append(line)
            first_line, first_hash = accepted[key]
            if first_hash == lot.row_hash:
                out.unchanged += 1
            else:
                reason = (
                    f"lot_ref: {lot.lot_ref} of member {lot.member_id} is on line {first_line} too, with other values"
                )
                out.problems.append(Problem(line, "conflict", reason))
            continue
        member = unfit.get(lot.member_id)
        if member is None:
            reason = rows.lot_late(lot, today)
        elif not member.found:
            reason = f"member_id: {lot.member_id} is not a member (import it with `loyalty import members` first)"
        elif member.erased:
            reason = f"member_id: {lot.member_id} was erased"
        else:
            reason = f"member_id: {lot.member_id} was merged into {member.merged_into}; import its lots for that member"
        if reason is not None:
            out.skip.append(line)
            out.problems.append(Problem(line, "bad", reason))
            continue
        accepted[key] = (line, lot.row_hash)
        out.points += lot.points
    out.imported = len(accepted)
    return out
