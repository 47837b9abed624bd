"""Members and ledger entries as CSV or JSON Lines, streamed (`loyalty export`). Reads only.

Rows come from a server-side cursor a batch at a time and are written as they come, so memory
stays the same whatever the table's size. Personal data of erased members (birthday, locale,
labels) is never written, whatever their row still holds: the row is exported, marked with its
`erased_at`, since its balances are still the program's liability.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any, Literal, TextIO
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

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


def _csv_field(column: Column, value: str) -> str:
    """The CSV field (RFC 4180) of `value`, the column's value computed once by the query: quoted
    when it holds a comma, a quote or a line break, its quotes doubled; empty for NULL."""
    if column.kind == "number":
        return f"coalesce({value}::text, '')"
    if column.kind == "time":  # digits, '-', ':', 'T', '+' and '.' only
        return f"coalesce((to_json({value}) #>> '{{}}'), '')"
    text = f"coalesce({value}::text, '')"
    special = " + ".join(f"strpos({text}, {char})" for char in ("','", "'\"'", "E'\\n'", "E'\\r'"))
    return f"""CASE WHEN {special} > 0 THEN '"' || replace({text}, '"', '""') || '"' ELSE {text} END"""


_SPECIAL = (",", '"', "\n", "\r")


def _csv_text(value: object) -> str:
    """`_csv_field` in Python, for the last column: usually a large JSON text, which Python
    quotes faster than SQL does."""
    if value is None:
        return ""
    text = str(value)
    if any(char in text for char in _SPECIAL):
        return '"' + text.replace('"', '""') + '"'
    return text


@dataclass(frozen=True)
class Table:
    """One export: its columns, where they come from and the order of its rows. PostgreSQL
    formats the lines (all of a JSON line, a CSV line but its last field), so the client
    mostly passes text on."""

    columns: tuple[Column, ...]
    source: str  # FROM ... WHERE ...: the rows, with $1 (start) and $2 (end) on the date filtered on
    order: str

    def query(self, fmt: Format) -> str:
        """JSON Lines: PostgreSQL writes each line. CSV: it writes each line but its last
        column, which comes beside it for `_csv_text` (a CSV writer in Python, or quoting every
        field in SQL, costs several times as much)."""
        if fmt == "jsonl":
            line = "json_build_object(" + ", ".join(f"'{c.name}', {c.sql}" for c in self.columns) + ")::text"
            return f"SELECT {line} FROM {self.source} ORDER BY {self.order}"
        *head, last = self.columns
        values = ", ".join(f"{c.sql} AS c{i}" for i, c in enumerate(self.columns))
        line = " || ',' || ".join(_csv_field(c, f"q.c{i}") for i, c in enumerate(head))
        last_value = f"(to_json(q.c{len(head)}) #>> '{{}}')" if last.kind == "time" else f"q.c{len(head)}::text"
        # OFFSET 0 keeps the planner from folding the subquery into the line, where most values
        # are named several times: each is computed once.
        return f"SELECT {line}, {last_value} FROM (SELECT {values} FROM {self.source} ORDER BY {self.order} OFFSET 0) q"

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
    source="members WHERE enrolled_at >= $1 AND enrolled_at < $2",
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
    source="ledger_entries WHERE occurred_at >= $1 AND occurred_at < $2",
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


async def _driver(conn: AsyncConnection) -> Any:
    """The asyncpg connection under `conn`: the export's hot loop reads records without
    SQLAlchemy's row objects around them."""
    return (await conn.get_raw_connection()).driver_connection


async def count(engine: AsyncEngine, kind: Kind, window: dict[str, datetime]) -> int:
    """How many rows `export` would write, for a progress bar."""
    async with engine.connect() as conn:
        return int(await (await _driver(conn)).fetchval(TABLES[kind].count(), window["start"], window["end"]))


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
        out.write(",".join(column.name for column in table.columns) + "\n")
    written = 0
    async with engine.connect() as conn:
        driver = await _driver(conn)
        # One read-only transaction: the cursor lives in it, and its one statement sees one
        # snapshot of the table while the workers go on writing.
        async with driver.transaction(readonly=True):
            # Times are written in UTC (ISO 8601 with +00:00), whatever the server's zone.
            await driver.execute("SET LOCAL TIME ZONE 'UTC'")
            cursor = await driver.cursor(table.query(fmt), window["start"], window["end"])
            while batch := await cursor.fetch(BATCH_ROWS):
                if fmt == "csv":
                    out.write("".join(f"{head},{_csv_text(last)}\n" for head, last in batch))
                else:
                    out.write("".join(f"{line}\n" for (line,) in batch))
                written += len(batch)
                if progress is not None:
                    progress(len(batch))
    return written
