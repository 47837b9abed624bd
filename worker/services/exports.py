"""Members and ledger entries as CSV or JSON Lines, streamed (`loyalty export`). Reads only.

Rows come from a server-side cursor a batch at a time and are written as they come, so memory
stays the same whatever the table's size. Personal data of erased members (birthday, locale,
labels) is never written, whatever their row still holds: the row is exported, marked with its
`erased_at`, since its balances are still the program's liability.
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Literal, TextIO
from zoneinfo import ZoneInfo

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

# Rows fetched from the cursor per round trip: large enough that the round trips cost little
# next to formatting the rows, small enough to keep a batch in a few megabytes.
BATCH_ROWS = 5_000

Kind = Literal["members", "ledger"]
Format = Literal["csv", "jsonl"]


# How a column is written: text (quoted in CSV when needed), a number, a time (ISO 8601, UTC),
# or JSON (JSON text in CSV, a nested value in JSON Lines).
ColumnKind = Literal["text", "number", "time", "json"]


@dataclass(frozen=True)
class Column:
    name: str
    sql: str  # the expression giving it
    kind: ColumnKind = "text"


def _csv_value(column: Column) -> str:
    """The column as the CSV writer takes it: text, or a number; times as ISO 8601 text."""
    if column.kind == "time":
        return f"to_json({column.sql}) #>> '{{}}'"
    if column.kind == "number":
        return column.sql
    return f"({column.sql})::text"


@dataclass(frozen=True)
class Table:
    """One export: its columns, where they come from and the order of its rows. PostgreSQL
    writes each line (CSV or JSON), so Python only passes the text on."""

    columns: tuple[Column, ...]
    source: str  # FROM ... WHERE ...: the rows, with :start and :end on the date filtered on
    order: str

    def query(self, fmt: Format) -> str:
        """JSON Lines: PostgreSQL writes each line. CSV: it gives each value as text (or a
        number), and Python's csv writer quotes them (it does so faster than SQL can)."""
        if fmt == "jsonl":
            line = "json_build_object(" + ", ".join(f"'{c.name}', {c.sql}" for c in self.columns) + ")::text"
            return f"SELECT {line} FROM {self.source} ORDER BY {self.order}"
        values = ", ".join(_csv_value(column) for column in self.columns)
        return f"SELECT {values} FROM {self.source} ORDER BY {self.order}"

    def count(self) -> str:
        return f"SELECT count(*) FROM {self.source}"


# An erased member's personal data stays out even if a later write put some back.
def _unless_erased(sql: str, otherwise: str = "NULL") -> str:
    return f"CASE WHEN erased_at IS NULL THEN {sql} ELSE {otherwise} END"


MEMBERS = Table(
    columns=(
        Column("member_id", "member_id"),
        Column("tier", "tier"),
        Column("available_points", "available_points", "number"),
        Column("pending_points", "pending_points", "number"),
        Column("lifetime_points", "lifetime_points", "number"),
        Column("qualifying_points", "qualifying_points", "number"),
        Column("birthday", _unless_erased("birthday")),
        Column("locale", _unless_erased("locale")),
        Column("labels", _unless_erased("array_to_json(labels)", "'[]'::json"), "json"),
        Column("enrolled_at", "enrolled_at", "time"),
        Column("erased_at", "erased_at", "time"),
    ),
    source="members WHERE enrolled_at >= :start AND enrolled_at < :end",
    order="member_id",
)

LEDGER = Table(
    columns=(
        Column("entry_id", "entry_id", "number"),
        Column("kind", "kind"),
        Column("points", "points", "number"),
        Column("pending_points", "pending_points", "number"),
        Column("qualifying_points", "qualifying_points", "number"),
        Column("member_id", "member_id"),
        Column("source", "source"),
        Column("event_id", "event_id"),
        Column("event_type", "event_type"),
        Column("occurred_at", "occurred_at", "time"),
        Column("created_at", "created_at", "time"),
        # Entries have no version column: each rule application in `rules` records the version
        # that gave it; the first one found is the entry's (entries that no rule version
        # produced, such as a refund's reversal or an expiry, have none).
        Column("program_version", "jsonb_path_query_first(rules, '$[*].program_version') #>> '{}'"),
        Column("rules", "rules", "json"),
    ),
    source="ledger_entries WHERE occurred_at >= :start AND occurred_at < :end",
    order="entry_id",
)

TABLES: dict[str, Table] = {"members": MEMBERS, "ledger": LEDGER}

# Wider than any stored time: the bounds of an export without --from or --to.
_BEGINNING = datetime(1900, 1, 1, tzinfo=ZoneInfo("UTC"))
_END = datetime(9999, 1, 1, tzinfo=ZoneInfo("UTC"))


def bounds(zone: str, date_from: date | None, date_to: date | None) -> dict[str, datetime]:
    """Whole days in the program's time zone, both ends included."""
    tz = ZoneInfo(zone)
    start = datetime.combine(date_from, time(), tz) if date_from else _BEGINNING
    end = datetime.combine(date_to + timedelta(days=1), time(), tz) if date_to else _END
    return {"start": start, "end": end}


async def count(engine: AsyncEngine, kind: Kind, window: dict[str, datetime]) -> int:
    """How many rows `export` would write, for a progress bar."""
    async with engine.connect() as conn:
        return int((await conn.execute(text(TABLES[kind].count()), window)).scalar_one())


async def export(
    engine: AsyncEngine,
    kind: Kind,
    fmt: Format,
    out: TextIO,
    window: dict[str, datetime],
    progress: Callable[[int], None] | None = None,
) -> int:
    """Write the rows of `kind` within `window` (`bounds`) to `out`, in `fmt` (CSV with a header
    line, or JSON Lines), a batch at a time; `progress` hears how many rows each batch wrote.
    Returns the rows written."""
    table = TABLES[kind]
    if fmt == "csv":
        csv_out = csv.writer(out, lineterminator="\n")
        csv_out.writerow([column.name for column in table.columns])
    written = 0
    async with engine.connect() as conn:
        # Times are written in UTC (ISO 8601 with +00:00), whatever the server's zone.
        await conn.execute(text("SET LOCAL TIME ZONE 'UTC'"))
        # stream() reads through a server-side cursor, BATCH_ROWS rows per fetch.
        result = await conn.stream(text(table.query(fmt)).execution_options(yield_per=BATCH_ROWS), window)
        async for batch in result.partitions(BATCH_ROWS):
            if fmt == "csv":
                csv_out.writerows(batch)
            else:
                out.write("".join(f"{line}\n" for (line,) in batch))
            written += len(batch)
            if progress is not None:
                progress(len(batch))
    return written
