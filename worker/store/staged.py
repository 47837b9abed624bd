"""Rows a group of events writes, staged in memory and written with one statement.

A group transaction (worker/services/group_apply.py) runs the ledger's handlers with each
account's `staged` set to one `Staged`: the helpers in accounts.py and the purchase handler add
their rows here instead of sending a statement per row, and `flush` writes them all with one
data-modifying statement over arrays, sent to asyncpg directly (prepared once per connection).
Entry and lot ids come from the tables' sequences up front (`reserve`), so a handler has its
lot id before the row is written; the group also reads the orders its purchases name
(`orders`, `purchase_counts`) up front, and the purchase handler reads them here.

Only members whose events write nothing else are staged; anything that reads rows back (a
refund's lots, a re-evaluation's history) runs after a flush on an account with `staged` None,
and `Account.direct` refuses lot moves on a staged account.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import asyncpg
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection

_RESERVE = """
    SELECT nextval('ledger_entries_entry_id_seq'), nextval('lots_lot_id_seq') FROM generate_series(1, $1)
"""

# Every staged row in one statement: the sub-statements touch different rows and read none of
# each other's results; foreign keys (a lot's entry, an order's lot) are checked at its end.
_FLUSH = """
WITH entries AS (
    INSERT INTO ledger_entries
        (entry_id, member_id, kind, points, pending_points, qualifying_points, source, event_id, event_type,
         rules, occurred_at)
    SELECT id, m, 'earn', av, pe, q, s, e, t, r::jsonb, o
    FROM unnest($1::bigint[], $2::text[], $3::bigint[], $4::bigint[], $5::bigint[], $6::text[], $7::text[],
                $8::text[], $9::text[], $10::timestamptz[]) AS x(id, m, av, pe, q, s, e, t, r, o)
), lots AS (
    INSERT INTO lots (lot_id, member_id, entry_id, points, remaining, earned_at, expires_at, pending_until)
    SELECT l, m, id, q, q, o, x, pu
    FROM unnest($11::bigint[], $2::text[], $1::bigint[], $5::bigint[], $10::timestamptz[], $12::timestamptz[],
                $13::timestamptz[]) AS x(l, m, id, q, o, x, pu)
), orders AS (
    INSERT INTO orders AS o (member_id, order_id, amount, currency, points_earned, lot_id, purchased_at, bonus_points)
    SELECT * FROM unnest($14::text[], $15::text[], $16::numeric[], $17::text[], $18::bigint[], $19::bigint[],
                         $20::timestamptz[], $55::bigint[])
    ON CONFLICT (member_id, order_id) DO UPDATE SET
        amount = EXCLUDED.amount, currency = EXCLUDED.currency, points_earned = EXCLUDED.points_earned,
        lot_id = EXCLUDED.lot_id, purchased_at = EXCLUDED.purchased_at, bonus_points = EXCLUDED.bonus_points
), tiers AS (
    INSERT INTO tier_changes (member_id, from_tier, to_tier, reason, source, event_id, occurred_at)
    SELECT * FROM unnest($21::text[], $22::text[], $23::text[], $24::text[], $25::text[], $26::text[],
                         $27::timestamptz[])
), outbox AS (
    INSERT INTO notifications (member_id, kind, params, dedupe_key, source, event_id)
    SELECT m, k, p::jsonb, d, s, e
    FROM unnest($28::text[], $29::text[], $30::text[], $31::text[], $32::text[], $33::text[])
         WITH ORDINALITY AS n(m, k, p, d, s, e, position)
    ORDER BY position
    ON CONFLICT (dedupe_key) DO NOTHING
), outcomes AS (
    UPDATE processed_events p SET status = u.st, result = u.r::jsonb
    FROM unnest($34::text[], $35::text[], $36::text[], $37::text[]) AS u(s, e, st, r)
    WHERE p.source = u.s AND p.event_id = u.e
)
UPDATE members AS m SET
    tier = u.tier, available_points = u.available, pending_points = u.pending, qualifying_points = u.qualifying,
    lifetime_points = u.lifetime, qualifying_amount = u.amount, tier_floor = u.floor,
    tier_floor_ends_on = u.floor_ends_on, birthday = u.birthday, locale = u.locale, signed_up_at = u.signed_up_at,
    first_purchase_at = u.first_purchase_at, rule_state = u.rule_state::jsonb, latest_event_at = u.latest_at,
    latest_event_source = u.latest_source, latest_event_id = u.latest_id,
    labels = ARRAY(SELECT jsonb_array_elements_text(u.labels::jsonb)), updated_at = now()
FROM unnest($38::text[], $39::text[], $40::bigint[], $41::bigint[], $42::bigint[], $43::bigint[], $44::numeric[],
            $45::text[], $46::date[], $47::date[], $48::text[], $49::timestamptz[], $50::timestamptz[], $51::text[],
            $52::timestamptz[], $53::text[], $54::text[], $56::text[])
     AS u(member_id, tier, available, pending, qualifying, lifetime, amount, floor, floor_ends_on, birthday, locale,
          signed_up_at, first_purchase_at, rule_state, latest_at, latest_source, latest_id, labels)
WHERE m.member_id = u.member_id
"""

_MEMBER_COLUMNS = (
    "member_id",
    "tier",
    "available_points",
    "pending_points",
    "qualifying_points",
    "lifetime_points",
    "qualifying_amount",
    "tier_floor",
    "tier_floor_ends_on",
    "birthday",
    "locale",
    "signed_up_at",
    "first_purchase_at",
    "rule_state",
    "latest_event_at",
    "latest_event_source",
    "latest_event_id",
    # A JSON array per member (an array of arrays cannot be unnested row by row); added last.
    "labels",
)


def json_text(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), default=_json_default)


def _json_default(value: Any) -> Any:
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON")


@dataclass
class Order:
    """What the purchase handler reads of an orders row: whether it has earned (`amount`)."""

    amount: Decimal | None


@dataclass
class Staged:
    """One group transaction's staged rows (see the module docstring)."""

    conn: AsyncConnection
    # (member_id, order_id) -> the orders row as the group has it; members' purchase counts.
    orders: dict[tuple[str, str], Order] = field(default_factory=dict)
    purchase_counts: dict[str, int] = field(default_factory=dict)
    _ids: Iterator[tuple[int, int]] = field(default_factory=lambda: iter(()))
    _earns: list[tuple] = field(default_factory=list)
    _orders: dict[tuple[str, str], tuple] = field(default_factory=dict)
    _tier_changes: list[tuple] = field(default_factory=list)
    _notifications: list[tuple] = field(default_factory=list)
    _outcomes: dict[tuple[str, str], tuple] = field(default_factory=dict)
    _members: dict[str, tuple] = field(default_factory=dict)
    # Statements sent through asyncpg (fetch, reserve, flush), for the tests that count them.
    statements: int = 0

    async def reserve(self, count: int) -> None:
        """Take `count` entry and lot ids from the sequences (at most one earn per event)."""
        if count <= 0:
            return
        rows = await self.fetch(_RESERVE, count)
        self._ids = iter([(row[0], row[1]) for row in rows])

    def earn(self, row: dict) -> int:
        """Stage an earn entry and its lot; returns the lot id. `row` has _WRITE_EARN's keys."""
        try:
            entry_id, lot_id = next(self._ids)
        except StopIteration:
            raise RuntimeError("staged: more earn entries than ids reserved") from None
        self._earns.append(
            (
                entry_id,
                row["member_id"],
                row["available"],
                row["pending"],
                row["points"],
                row["source"],
                row["event_id"],
                row["event_type"],
                json_text(row["rules"]),
                row["occurred_at"],
                lot_id,
                row["expires_at"],
                row["pending_until"],
            )
        )
        return lot_id

    def upsert_order(self, row: dict) -> None:
        key = (row["member_id"], row["order_id"])
        self.orders[key] = Order(row["amount"])
        self._orders[key] = tuple(
            row[k]
            for k in (
                "member_id",
                "order_id",
                "amount",
                "currency",
                "points_earned",
                "lot_id",
                "purchased_at",
                "bonus_points",
            )
        )
        if row["amount"] is not None:
            self.purchase_counts[row["member_id"]] = self.purchase_counts.get(row["member_id"], 0) + 1

    def tier_change(self, row: dict) -> None:
        self._tier_changes.append(
            tuple(row[k] for k in ("member_id", "from_tier", "to_tier", "reason", "source", "event_id", "occurred_at"))
        )

    def member(self, row: dict, notifications: list[dict], record: dict | None) -> None:
        """Stage the balance row (the last one per member is written), its outbox rows and the
        event's outcome, as `accounts.close` writes them in one statement."""
        self._members[row["member_id"]] = tuple(
            json_text(row[k]) if k in ("rule_state", "labels") else row[k] for k in _MEMBER_COLUMNS
        )
        for note in notifications:
            self._notifications.append(
                (
                    note["member_id"],
                    note["kind"],
                    json_text(note["params"]),
                    note["dedupe_key"],
                    note["source"],
                    note["event_id"],
                )
            )
        if record is not None:
            self._outcomes[(record["source"], record["event_id"])] = (
                record["source"],
                record["event_id"],
                record["status"],
                json_text(record["result"]),
            )

    async def fetch(self, sql: str, *args: Any) -> list:
        """Rows of one asyncpg statement in the group's transaction (after its first statement,
        which SQLAlchemy sends with BEGIN)."""
        driver = await self._driver()
        self.statements += 1
        async with _as_sqlalchemy_errors(sql):
            return list(await driver.fetch(sql, *args))

    async def _driver(self) -> Any:
        raw = await self.conn.get_raw_connection()
        return raw.driver_connection

    async def flush(self) -> None:
        """Write everything staged, in one statement, and start empty."""
        tables = (self._earns, self._orders, self._tier_changes, self._notifications, self._outcomes, self._members)
        if not any(tables):
            return
        columns = [
            *_columns(self._earns, range(13)),  # the entry's 10 columns, then the lot's own 3
            *_columns(list(self._orders.values()), range(7)),
            *_columns(self._tier_changes, range(7)),
            *_columns(self._notifications, range(6)),
            *_columns(list(self._outcomes.values()), range(4)),
            *_columns(list(self._members.values()), range(len(_MEMBER_COLUMNS) - 1)),
            *_columns(list(self._orders.values()), range(7, 8)),  # the order's bonus_points, added later
            *_columns(list(self._members.values()), range(len(_MEMBER_COLUMNS) - 1, len(_MEMBER_COLUMNS))),  # labels
        ]
        driver = await self._driver()
        self.statements += 1
        async with _as_sqlalchemy_errors(_FLUSH):
            await driver.execute(_FLUSH, *columns)
        for table in tables:
            table.clear()


@asynccontextmanager
async def _as_sqlalchemy_errors(sql: str) -> AsyncIterator[None]:
    """A database error raised as SQLAlchemy raises it (DBAPIError with the driver's error as
    `orig`), so that intake tells a refused value from an outage as it does for the rest."""
    try:
        yield
    except asyncpg.PostgresError as error:
        raise DBAPIError(sql, None, error) from error


def _columns(rows: list[tuple], indexes: range) -> list[list]:
    """Rows as one list per column (what unnest takes)."""
    return [[row[i] for row in rows] for i in indexes]
