"""Rows a group of events writes, staged in memory and written with one statement.

A group transaction (worker/services/group_apply.py) runs the ledger's deciders with each
account's `staged` set to one `Staged`: the write helpers in accounts.py and decisions.py add
their rows here instead of sending a statement per row, and `flush` writes them all with one
data-modifying statement over arrays, sent to asyncpg directly (prepared once per connection).

What the deciders read comes from here too, read for the whole group up front with a fixed
number of statements: the orders the group's purchases, refunds and reviews name, with the
refunds and reviews waiting for them (`read_orders`), the members' purchase counts, and the
open lots of members whose refunds take points back (`read_lots`). Each event leaves them as
its decision did, so the group's next event reads what one transaction per event would.
Entry and lot ids come from the tables' sequences up front (`reserve`), so a decision has its
lot id before the row is written.

Anything that reads rows back (a re-evaluation's history, a referral's facts, a redemption's
spendable lots) runs after a flush on an account with `staged` None, and `Account.direct`
refuses lot moves on a staged account.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, fields
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import asyncpg
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection

from worker.domain.deciders import Facts
from worker.domain.decisions import OrderState, RefundRow, ReviewRow

_RESERVE = """
    SELECT nextval('ledger_entries_entry_id_seq'), nextval('lots_lot_id_seq') FROM generate_series(1, $1)
"""

# What the group reads up front of the orders its events name: the rows, with the refund ids
# and reviewed skus each has seen; the refunds and reviews waiting for orders not bought yet;
# the members' purchase counts; the open lots of members whose refunds take points back.
_ORDERS = """
    SELECT o.member_id, o.order_id, o.amount, o.currency, o.purchased_at, o.points_earned, o.points_reversed,
        o.refunded_amount, o.lot_id, o.bonus_points, o.bonus_reversed,
        ARRAY(SELECT r.refund_id FROM refunds r WHERE r.member_id = o.member_id AND r.order_id = o.order_id)
            AS refund_ids,
        ARRAY(SELECT v.sku FROM reviews v WHERE v.member_id = o.member_id AND v.order_id = o.order_id)
            AS review_skus
    FROM orders o JOIN unnest($1::text[], $2::text[]) AS k(m, id) ON o.member_id = k.m AND o.order_id = k.id
"""
_WAITING_REFUNDS = """
    SELECT r.member_id, r.order_id, r.refund_id, r.amount, r.source, r.event_id, r.occurred_at, r.status
    FROM refunds r JOIN unnest($1::text[], $2::text[]) AS k(m, id) ON r.member_id = k.m AND r.order_id = k.id
    WHERE r.status = 'waiting'
"""
_WAITING_REVIEWS = """
    SELECT v.member_id, v.order_id, v.sku, v.review_id, v.source, v.event_id, v.status, v.has_media, v.occurred_at
    FROM reviews v JOIN unnest($1::text[], $2::text[]) AS k(m, id) ON v.member_id = k.m AND v.order_id = k.id
    WHERE v.status = 'waiting'
"""
_PURCHASE_COUNTS = """
    SELECT member_id, count(*) FROM orders WHERE member_id = ANY($1::text[]) AND amount IS NOT NULL GROUP BY member_id
"""
_CLAIM_REFERRALS = """
    INSERT INTO referrals (referee_member_id, referrer_member_id, source, event_id, pair_key)
    SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[])
    ON CONFLICT DO NOTHING
    RETURNING referee_member_id
"""
_OPEN_LOTS = """
    SELECT member_id, lot_id, remaining, expires_at, pending_until FROM lots
    WHERE member_id = ANY($1::text[]) AND remaining > 0
"""

# Every staged row in one statement: the sub-statements touch different rows and read none of
# each other's results (a lot the group earned and took from is inserted with what is left of
# it; `taken` moves only lots that were there before); foreign keys (a lot's entry, an
# order's lot, a take's entry and lot) are checked at its end.
_FLUSH = """
WITH entries AS (
    INSERT INTO ledger_entries
        (entry_id, member_id, kind, points, pending_points, qualifying_points, source, event_id, event_type,
         rules, occurred_at)
    SELECT id, m, k, av, pe, q, s, e, t, r::jsonb, o
    FROM unnest($1::bigint[], $2::text[], $3::text[], $4::bigint[], $5::bigint[], $6::bigint[], $7::text[],
                $8::text[], $9::text[], $10::text[], $11::timestamptz[]) AS x(id, m, k, av, pe, q, s, e, t, r, o)
), lots AS (
    INSERT INTO lots (lot_id, member_id, entry_id, points, remaining, earned_at, expires_at, pending_until)
    SELECT * FROM unnest($12::bigint[], $13::text[], $14::bigint[], $15::bigint[], $16::bigint[], $17::timestamptz[],
                         $18::timestamptz[], $19::timestamptz[])
), taken AS (
    UPDATE lots SET remaining = lots.remaining - t.points
    FROM unnest($20::bigint[], $21::bigint[]) AS t(lot_id, points)
    WHERE lots.lot_id = t.lot_id
), takes AS (
    INSERT INTO lot_takes (entry_id, lot_id, points)
    SELECT * FROM unnest($22::bigint[], $23::bigint[], $24::bigint[])
), orders AS (
    INSERT INTO orders AS o (member_id, order_id, amount, currency, points_earned, lot_id, purchased_at, bonus_points,
                             refunded_amount, points_reversed, bonus_reversed)
    SELECT * FROM unnest($25::text[], $26::text[], $27::numeric[], $28::text[], $29::bigint[], $30::bigint[],
                         $31::timestamptz[], $32::bigint[], $33::numeric[], $34::bigint[], $35::bigint[])
    ON CONFLICT (member_id, order_id) DO UPDATE SET
        amount = EXCLUDED.amount, currency = EXCLUDED.currency, points_earned = EXCLUDED.points_earned,
        lot_id = EXCLUDED.lot_id, purchased_at = EXCLUDED.purchased_at, bonus_points = EXCLUDED.bonus_points,
        refunded_amount = EXCLUDED.refunded_amount, points_reversed = EXCLUDED.points_reversed,
        bonus_reversed = EXCLUDED.bonus_reversed
), refunds AS (
    INSERT INTO refunds AS r (member_id, order_id, refund_id, amount, source, event_id, occurred_at, status,
                              points_reversed)
    SELECT * FROM unnest($36::text[], $37::text[], $38::text[], $39::numeric[], $40::text[], $41::text[],
                         $42::timestamptz[], $43::text[], $44::bigint[])
    ON CONFLICT (member_id, order_id, refund_id) DO UPDATE SET
        status = EXCLUDED.status, points_reversed = EXCLUDED.points_reversed
), reviews AS (
    INSERT INTO reviews AS v (member_id, order_id, sku, review_id, source, event_id, status, has_media, occurred_at)
    SELECT * FROM unnest($45::text[], $46::text[], $47::text[], $48::text[], $49::text[], $50::text[], $51::text[],
                         $52::boolean[], $53::timestamptz[])
    ON CONFLICT (member_id, order_id, sku) DO UPDATE SET
        review_id = EXCLUDED.review_id, source = EXCLUDED.source, event_id = EXCLUDED.event_id,
        status = EXCLUDED.status, has_media = EXCLUDED.has_media, occurred_at = EXCLUDED.occurred_at
), unclaimed AS (
    DELETE FROM reviews v USING unnest($54::text[], $55::text[], $56::text[]) AS d(m, o, sku)
    WHERE v.member_id = d.m AND v.order_id = d.o AND v.sku = d.sku
), tiers AS (
    INSERT INTO tier_changes (member_id, from_tier, to_tier, reason, source, event_id, occurred_at)
    SELECT * FROM unnest($57::text[], $58::text[], $59::text[], $60::text[], $61::text[], $62::text[],
                         $63::timestamptz[])
), outbox AS (
    INSERT INTO notifications (member_id, kind, params, dedupe_key, source, event_id)
    SELECT m, k, p::jsonb, d, s, e
    FROM unnest($64::text[], $65::text[], $66::text[], $67::text[], $68::text[], $69::text[])
         WITH ORDINALITY AS n(m, k, p, d, s, e, position)
    ORDER BY position
    ON CONFLICT (dedupe_key) DO NOTHING
), outcomes AS (
    -- A waiting event applied with its purchase (`guard`) is marked only while it reads deferred.
    UPDATE processed_events p SET status = u.st, result = u.r::jsonb
    FROM unnest($70::text[], $71::text[], $72::text[], $73::text[], $74::boolean[]) AS u(s, e, st, r, guard)
    WHERE p.source = u.s AND p.event_id = u.e AND (NOT u.guard OR p.status = 'deferred')
)
UPDATE members AS m SET
    tier = u.tier, available_points = u.available, pending_points = u.pending, qualifying_points = u.qualifying,
    lifetime_points = u.lifetime, qualifying_amount = u.amount, tier_floor = u.floor,
    tier_floor_ends_on = u.floor_ends_on, birthday = u.birthday, locale = u.locale, signed_up_at = u.signed_up_at,
    first_purchase_at = u.first_purchase_at, rule_state = u.rule_state::jsonb, latest_event_at = u.latest_at,
    latest_event_source = u.latest_source, latest_event_id = u.latest_id,
    labels = ARRAY(SELECT jsonb_array_elements_text(u.labels::jsonb)), updated_at = now()
FROM unnest($75::text[], $76::text[], $77::bigint[], $78::bigint[], $79::bigint[], $80::bigint[], $81::numeric[],
            $82::text[], $83::date[], $84::date[], $85::text[], $86::timestamptz[], $87::timestamptz[], $88::text[],
            $89::timestamptz[], $90::text[], $91::text[], $92::text[])
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
    # A JSON array per member (an array of arrays cannot be unnested row by row).
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
class Staged:
    """One group transaction's staged rows (see the module docstring)."""

    conn: AsyncConnection
    # (member_id, order_id) -> the order as the group has it (read up front, then as its events
    # left it); the refunds and reviews waiting for orders not bought; members' purchase counts.
    orders: dict[tuple[str, str], OrderState] = field(default_factory=dict)
    waiting_refunds: dict[tuple[str, str], dict[str, RefundRow]] = field(default_factory=dict)
    waiting_reviews: dict[tuple[str, str], dict[str, ReviewRow]] = field(default_factory=dict)
    purchase_counts: dict[str, int] = field(default_factory=dict)
    # member_id -> lot_id -> the open lot (lot_id, remaining, expires_at, pending_until), for the
    # members whose events take points back (read up front, then as the group's earns and takes
    # leave them).
    lots: dict[str, dict[int, dict]] = field(default_factory=dict)
    # (type, source, event_id) of a referral or referee bonus -> whether it pays (ledger.py).
    referral_facts: dict[tuple[str, str, str], Facts] = field(default_factory=dict)
    _ids: Iterator[tuple[int, int]] = field(default_factory=lambda: iter(()))
    _entries: list[tuple] = field(default_factory=list)
    _lots: dict[int, list] = field(default_factory=dict)  # lot_id -> the new lot's row (remaining last)
    _taken: dict[int, int] = field(default_factory=dict)  # lot_id -> points taken from a lot already there
    _takes: list[tuple] = field(default_factory=list)
    _orders: set[tuple[str, str]] = field(default_factory=set)
    _refunds: dict[tuple[str, str, str], tuple] = field(default_factory=dict)
    _reviews: dict[tuple[str, str, str], tuple | None] = field(default_factory=dict)  # None: unclaimed
    _tier_changes: list[tuple] = field(default_factory=list)
    _notifications: list[tuple] = field(default_factory=list)
    _outcomes: dict[tuple[str, str], tuple] = field(default_factory=dict)
    _members: dict[str, tuple] = field(default_factory=dict)
    # Statements sent through asyncpg (fetch, reserve, flush), for the tests that count them.
    statements: int = 0

    async def read_orders(self, named: list[tuple[str, str]], purchasers: list[str]) -> None:
        """Read the orders `named` ((member_id, order_id) pairs) with what waits for them, and
        the purchase counts of `purchasers`."""
        if named:
            members, order_ids = [m for m, _ in named], [o for _, o in named]
            waiting = []
            for r in await self.fetch(_ORDERS, members, order_ids):
                self.orders[(r["member_id"], r["order_id"])] = order_state(r)
                if r["amount"] is None and (r["refund_ids"] or r["review_skus"]):
                    waiting.append((r["member_id"], r["order_id"]))
            if waiting:
                members, order_ids = [m for m, _ in waiting], [o for _, o in waiting]
                for r in await self.fetch(_WAITING_REFUNDS, members, order_ids):
                    row = RefundRow(**{k: v for k, v in r.items() if k != "member_id"})
                    self.waiting_refunds.setdefault((r["member_id"], r["order_id"]), {})[row.refund_id] = row
                for r in await self.fetch(_WAITING_REVIEWS, members, order_ids):
                    review = ReviewRow(**{k: v for k, v in r.items() if k != "member_id"})
                    self.waiting_reviews.setdefault((r["member_id"], r["order_id"]), {})[review.sku] = review
        if purchasers:
            counts = await self.fetch(_PURCHASE_COUNTS, purchasers)
            self.purchase_counts = {r["member_id"]: r["count"] for r in counts}

    async def claim_referrals(self, rows: list[tuple[str, str, str, str, str]]) -> set[str]:
        """Record referrals, (referee, referrer, source, event_id, pair_key) rows in referee
        order; returns the referees recorded (a referee or pair already recorded is not)."""
        claimed = await self.fetch(_CLAIM_REFERRALS, *[[row[i] for row in rows] for i in range(5)])
        return {r["referee_member_id"] for r in claimed}

    def waiting_count(self) -> int:
        """How many refunds and reviews wait for the orders read (each may book one entry)."""
        return sum(len(rows) for rows in self.waiting_refunds.values()) + sum(
            len(rows) for rows in self.waiting_reviews.values()
        )

    async def read_lots(self, member_ids: list[str]) -> None:
        """Read the open lots of `member_ids` (members whose events may take points back)."""
        if not member_ids:
            return
        for member_id in member_ids:
            self.lots[member_id] = {}
        for r in await self.fetch(_OPEN_LOTS, member_ids):
            self.lots[r["member_id"]][r["lot_id"]] = {
                k: r[k] for k in ("lot_id", "remaining", "expires_at", "pending_until")
            }

    async def reserve(self, count: int) -> None:
        """Take `count` entry and lot ids from the sequences (one per entry the group may book)."""
        if count <= 0:
            return
        rows = await self.fetch(_RESERVE, count)
        self._ids = iter([(row[0], row[1]) for row in rows])

    def _next_ids(self) -> tuple[int, int]:
        try:
            return next(self._ids)
        except StopIteration:
            raise RuntimeError("staged: more entries than ids reserved") from None

    def earn(self, row: dict) -> int:
        """Stage an earn entry and its lot; returns the lot id. `row` has _WRITE_EARN's keys."""
        entry_id, lot_id = self._next_ids()
        self._entries.append(
            (
                entry_id,
                row["member_id"],
                "earn",
                row["available"],
                row["pending"],
                row["points"],
                row["source"],
                row["event_id"],
                row["event_type"],
                json_text(row["rules"]),
                row["occurred_at"],
            )
        )
        self._lots[lot_id] = [
            lot_id,
            row["member_id"],
            entry_id,
            row["points"],
            row["occurred_at"],
            row["expires_at"],
            row["pending_until"],
            row["points"],  # remaining
        ]
        member_lots = self.lots.get(row["member_id"])
        if member_lots is not None:
            member_lots[lot_id] = {
                "lot_id": lot_id,
                "remaining": row["points"],
                "expires_at": row["expires_at"],
                "pending_until": row["pending_until"],
            }
        return lot_id

    def open_lots(self, member_id: str) -> list[dict]:
        """The member's open lots as the group has them (read_lots must have read them)."""
        member_lots = self.lots.get(member_id)
        if member_lots is None:
            raise RuntimeError(f"staged: the lots of member {member_id} were not read")
        return sorted(member_lots.values(), key=lambda lot: (lot["expires_at"], lot["lot_id"]))

    def entry(self, row: dict) -> int:
        """Stage an entry that moves no lot of its own (a reversal); returns its id. `row` has
        the keys of accounts._WRITE_ENTRY."""
        entry_id, _ = self._next_ids()
        self._entries.append(
            (
                entry_id,
                row["member_id"],
                row["kind"],
                row["points"],
                row["pending"],
                row["qualifying"],
                row["source"],
                row["event_id"],
                row["event_type"],
                json_text(row["rules"]),
                row["occurred_at"],
            )
        )
        return entry_id

    def take(self, member_id: str, entry_id: int, takes: list[tuple[int, int]]) -> None:
        """Stage what an entry takes from the member's lots, (lot_id, points) pairs."""
        member_lots = self.lots[member_id]
        for lot_id, points in takes:
            lot = member_lots[lot_id]
            lot["remaining"] -= points
            if lot["remaining"] == 0:
                del member_lots[lot_id]
            if lot_id in self._lots:
                self._lots[lot_id][-1] -= points
            else:
                self._taken[lot_id] = self._taken.get(lot_id, 0) + points
            self._takes.append((entry_id, lot_id, points))

    def put_order(self, member_id: str, order_id: str, order: OrderState, *, purchase: bool) -> None:
        """Stage the order's row as `order` leaves it (`purchase`: its purchase is new)."""
        key = (member_id, order_id)
        self.orders[key] = order
        self._orders.add(key)
        if purchase:
            self.purchase_counts[member_id] = self.purchase_counts.get(member_id, 0) + 1

    def keep_order(self, member_id: str, order_id: str, order: OrderState) -> None:
        """The order as an event left it, for the group's next events (no row to write)."""
        self.orders[(member_id, order_id)] = order

    def put_refund(self, member_id: str, row: RefundRow) -> None:
        _still_waiting(self.waiting_refunds.setdefault((member_id, row.order_id), {}), row.refund_id, row)
        self._refunds[(member_id, row.order_id, row.refund_id)] = (member_id, *_values(row))

    def put_review(self, member_id: str, row: ReviewRow) -> None:
        _still_waiting(self.waiting_reviews.setdefault((member_id, row.order_id), {}), row.sku, row)
        self._reviews[(member_id, row.order_id, row.sku)] = (member_id, *_values(row))

    def drop_review(self, member_id: str, order_id: str, sku: str) -> None:
        self.waiting_reviews.get((member_id, order_id), {}).pop(sku, None)
        self._reviews[(member_id, order_id, sku)] = None

    def mark_applied(self, source: str, event_id: str, result: dict) -> None:
        """Stage a waiting event's outcome, applied with its purchase: only while it reads
        deferred, unless the group itself recorded it deferred (then it is staged here)."""
        key = (source, event_id)
        guard = key not in self._outcomes
        self._outcomes[key] = (source, event_id, "applied", json_text(result), guard)

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
                False,
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
        tables = (
            self._entries,
            self._lots,
            self._taken,
            self._takes,
            self._orders,
            self._refunds,
            self._reviews,
            self._tier_changes,
            self._notifications,
            self._outcomes,
            self._members,
        )
        if not any(tables):
            return
        orders = [_order_row(key, self.orders[key]) for key in sorted(self._orders)]
        reviews = [row for row in self._reviews.values() if row is not None]
        unclaimed = [key for key, row in self._reviews.items() if row is None]
        columns = [
            *_columns(self._entries, range(11)),
            *_columns(list(self._lots.values()), (0, 1, 2, 3, 7, 4, 5, 6)),
            list(self._taken),
            list(self._taken.values()),
            *_columns(self._takes, range(3)),
            *_columns(orders, range(11)),
            *_columns(list(self._refunds.values()), range(9)),
            *_columns(reviews, range(9)),
            *_columns(unclaimed, range(3)),
            *_columns(self._tier_changes, range(7)),
            *_columns(self._notifications, range(6)),
            *_columns(list(self._outcomes.values()), range(5)),
            *_columns(list(self._members.values()), range(len(_MEMBER_COLUMNS))),
        ]
        driver = await self._driver()
        self.statements += 1
        async with _as_sqlalchemy_errors(_FLUSH):
            await driver.execute(_FLUSH, *columns)
        for table in tables:
            table.clear()


def _still_waiting(waiting: dict[str, Any], key: str, row: RefundRow | ReviewRow) -> None:
    """Keep `row` among its order's waiting rows while it waits, and drop it once applied."""
    if row.status == "waiting":
        waiting[key] = row
    else:
        waiting.pop(key, None)


def _values(row: RefundRow | ReviewRow) -> tuple:
    """A refund's or review's columns after member_id, in the table's (and the row's) order."""
    return tuple(getattr(row, f.name) for f in fields(row))


def order_state(row: Mapping[str, Any]) -> OrderState:
    """An orders row (with the refund ids and reviewed skus it has seen) as a decider reads it."""
    return OrderState(
        amount=row["amount"],
        currency=row["currency"],
        purchased_at=row["purchased_at"],
        points_earned=row["points_earned"],
        points_reversed=row["points_reversed"],
        refunded_amount=row["refunded_amount"],
        bonus_points=row["bonus_points"],
        bonus_reversed=row["bonus_reversed"],
        lot_id=row["lot_id"],
        refund_ids=set(row["refund_ids"]),
        review_skus=set(row["review_skus"]),
    )


def _order_row(key: tuple[str, str], order: OrderState) -> tuple:
    return (
        *key,
        order.amount,
        order.currency,
        order.points_earned,
        order.lot_id,
        order.purchased_at,
        order.bonus_points,
        order.refunded_amount,
        order.points_reversed,
        order.bonus_reversed,
    )


@asynccontextmanager
async def _as_sqlalchemy_errors(sql: str) -> AsyncIterator[None]:
    """A database error raised as SQLAlchemy raises it (DBAPIError with the driver's error as
    `orig`), so that intake tells a refused value from an outage as it does for the rest."""
    try:
        yield
    except asyncpg.PostgresError as error:
        raise DBAPIError(sql, None, error) from error


def _columns(rows: list, indexes: range | tuple[int, ...]) -> list[list]:
    """Rows as one list per column (what unnest takes)."""
    return [[row[i] for row in rows] for i in indexes]
