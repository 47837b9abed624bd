"""Members and ledger entries as CSV or JSON Lines, streamed (`loyalty export`). Reads only.

Rows come from a server-side cursor a batch at a time and are written as they come, so memory
stays the same whatever the table's size. Personal data of erased members (birthday, locale,
labels) is never written, whatever their row still holds: the row is exported, marked with its
`erased_at`, since its balances are still the program's liability.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any, Literal, TextIO
from zoneinfo import ZoneInfo

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

# Rows fetched from the cursor per round trip: large enough that the round trips cost little
# next to formatting the rows, small enough to keep a batch in a few megabytes.
BATCH_ROWS = 5_000

Kind = Literal["members", "ledger"]
Format = Literal["csv", "jsonl"]


@dataclass(frozen=True)
class Table:
    """One export: its columns and the query giving them, in that order."""

    columns: tuple[str, ...]
    # Columns that hold JSON (JSON text in CSV, nested values in JSON Lines).
    json_columns: tuple[str, ...]
    query: str
    count: str
    # What the dates of --from/--to filter on.
    date_column: str


MEMBERS = Table(
    columns=(
        "member_id",
        "tier",
        "available_points",
        "pending_points",
        "lifetime_points",
        "qualifying_points",
        "birthday",
        "locale",
        "labels",
        "enrolled_at",
        "erased_at",
    ),
    json_columns=("labels",),
    # An erased member's personal data stays out even if a later write put some back.
    query="""
    SELECT member_id, tier, available_points, pending_points, lifetime_points, qualifying_points,
           CASE WHEN erased_at IS NULL THEN birthday END,
           CASE WHEN erased_at IS NULL THEN locale END,
           CASE WHEN erased_at IS NULL THEN array_to_json(labels)::text ELSE '[]' END,
           enrolled_at, erased_at
    FROM members
    WHERE enrolled_at >= :start AND enrolled_at < :end
    ORDER BY member_id
    """,
    count="SELECT count(*) FROM members WHERE enrolled_at >= :start AND enrolled_at < :end",
    date_column="enrolled_at",
)

LEDGER = Table(
    columns=(
        "entry_id",
        "kind",
        "points",
        "pending_points",
        "qualifying_points",
        "member_id",
        "source",
        "event_id",
        "event_type",
        "occurred_at",
        "created_at",
        "program_version",
        "rules",
    ),
    json_columns=("rules",),
    # Entries have no version column: each rule application in `rules` records the version
    # that gave it; the first one found is the entry's (entries that no rule version produced,
    # such as a refund's reversal or an expiry, have none).
    query="""
    SELECT entry_id, kind, points, pending_points, qualifying_points, member_id, source, event_id, event_type,
           occurred_at, created_at, jsonb_path_query_first(rules, '$[*].program_version') #>> '{}', rules::text
    FROM ledger_entries
    WHERE occurred_at >= :start AND occurred_at < :end
    ORDER BY entry_id
    """,
    count="SELECT count(*) FROM ledger_entries WHERE occurred_at >= :start AND occurred_at < :end",
    date_column="occurred_at",
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


def _text(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    return value


def _json_text(value: str | None) -> str:
    return "null" if value is None else value


class _Csv:
    def __init__(self, out: TextIO, table: Table):
        self._writer = csv.writer(out, lineterminator="\n")
        self._writer.writerow(table.columns)

    def write(self, rows: Sequence[Sequence[Any]]) -> None:
        # JSON columns arrive as JSON text already; None is an empty field.
        self._writer.writerows([[_text(value) for value in row] for row in rows])


class _Jsonl:
    def __init__(self, out: TextIO, table: Table):
        self._out = out
        self._columns = table.columns
        self._json = {table.columns.index(name) for name in table.json_columns}

    def write(self, rows: Sequence[Sequence[Any]]) -> None:
        lines = []
        for row in rows:
            # The JSON columns are spliced in as PostgreSQL wrote them: valid JSON, not re-parsed.
            fields = [
                f"{json.dumps(name)}: {_json_text(value) if index in self._json else json.dumps(_text(value), ensure_ascii=False)}"
                for index, (name, value) in enumerate(zip(self._columns, row, strict=True))
            ]
            lines.append("{" + ", ".join(fields) + "}\n")
        self._out.write("".join(lines))


async def count(engine: AsyncEngine, kind: Kind, window: dict[str, datetime]) -> int:
    """How many rows `export` would write, for a progress bar."""
    async with engine.connect() as conn:
        return int((await conn.execute(text(TABLES[kind].count), window)).scalar_one())


async def export(
    engine: AsyncEngine,
    kind: Kind,
    fmt: Format,
    out: TextIO,
    window: dict[str, datetime],
    progress: Callable[[int], None] | None = None,
) -> int:
    """Write the rows of `kind` within `window` (`bounds`) to `out`, in `fmt`, a batch at a
    time; `progress` hears how many rows each batch wrote. Returns the rows written."""
    table = TABLES[kind]
    writer = _Csv(out, table) if fmt == "csv" else _Jsonl(out, table)
    written = 0
    async with engine.connect() as conn:
        # stream() reads through a server-side cursor, BATCH_ROWS rows per fetch.
        result = await conn.stream(text(table.query).execution_options(yield_per=BATCH_ROWS), window)
        async for batch in result.partitions(BATCH_ROWS):
            writer.write(batch)
            written += len(batch)
            if progress is not None:
                progress(len(batch))
    return written
