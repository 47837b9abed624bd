"""Counting the SQL statements this process sends to PostgreSQL, for tests that hold a code path
to a fixed number of round trips."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from asyncpg.connection import Connection
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

# asyncpg methods that send a statement. SQLAlchemy's asyncpg dialect sends its statements as
# prepared statements (counted by its cursor event instead), and BEGIN, COMMIT, ROLLBACK and
# savepoints through Connection.execute; code that uses the driver directly calls these.
_DRIVER_METHODS = (
    "execute",
    "executemany",
    "fetch",
    "fetchrow",
    "fetchval",
    "copy_records_to_table",
    "copy_to_table",
    "copy_from_query",
    "copy_from_table",
)
_TRANSACTION_CONTROL = ("BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE", "START TRANSACTION", "END")


@dataclass
class Statements:
    """What was sent, in order: each statement's text (for COPY, the method and table)."""

    sent: list[str] = field(default_factory=list)

    @property
    def transaction_control(self) -> list[str]:
        """BEGIN, COMMIT, ROLLBACK and savepoint statements."""
        return [s for s in self.sent if _is_transaction_control(s)]

    @property
    def pings(self) -> list[str]:
        """The empty statements with which the pool checks a connection it hands out."""
        return [s for s in self.sent if _is_ping(s)]

    @property
    def queries(self) -> list[str]:
        """Everything else: the statements that read or write rows."""
        return [s for s in self.sent if not (_is_transaction_control(s) or _is_ping(s))]

    def __len__(self) -> int:
        return len(self.sent)


def _is_ping(statement: str) -> bool:
    return statement.strip() == ";"


def _is_transaction_control(statement: str) -> bool:
    return statement.lstrip().upper().startswith(_TRANSACTION_CONTROL)


@contextmanager
def count_statements(engine: AsyncEngine) -> Iterator[Statements]:
    """Every statement sent while the block runs: SQLAlchemy's on `engine` (its
    before_cursor_execute event), and those sent straight through any asyncpg connection of
    this process, transaction control included. Not thread-safe: for one event loop's tests."""
    counted = Statements()

    def on_cursor(conn, cursor, statement, parameters, context, executemany) -> None:
        counted.sent.append(statement)

    originals: dict[str, Any] = {name: getattr(Connection, name) for name in _DRIVER_METHODS}

    def counting(name: str, method: Any) -> Any:
        async def sent(self: Connection, *args: Any, **kwargs: Any) -> Any:
            first = args[0] if args else kwargs.get("query", kwargs.get("table_name", ""))
            counted.sent.append(
                first if name in ("execute", "executemany", "fetch", "fetchrow", "fetchval") else f"{name} {first}"
            )
            return await method(self, *args, **kwargs)

        return sent

    event.listen(engine.sync_engine, "before_cursor_execute", on_cursor)
    for name, method in originals.items():
        setattr(Connection, name, counting(name, method))
    try:
        yield counted
    finally:
        for name, method in originals.items():
            setattr(Connection, name, method)
        event.remove(engine.sync_engine, "before_cursor_execute", on_cursor)
