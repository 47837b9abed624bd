"""Points as payment at checkout: hold, capture, void, expiry, and refunds of paid orders.

A hold takes its points from the member's lots at once (earliest-expiring first) as a `hold`
entry, so `available_points`, the entries and the lots agree throughout and `loyalty audit`
needs no notion of holds. Capture books a zero-point `spend` entry naming the order (the
points already left with the hold); void and expiry write a `restore` entry that gives every
point back to the lot it came from. When the order is later refunded (the worker applies
the refund event and raises `orders.refunded_amount`), the same share of the points paid is
restored to the hold's lots that have not expired, latest-expiring first.

Every change runs in one transaction with the member's row locked, so concurrent holds on
one member are serialised and can never reserve more than the balance. What each step writes is
decided in `worker/domain/holds.py` on the rows read here; the store writes it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from worker.domain import holds as decide
from worker.domain.holds import Hold, HoldRefused, Movement
from worker.domain.lots import Lot
from worker.domain.program import Program
from worker.services import audit
from worker.store import accounts
from worker.store import holds as store_holds
from worker.store.accounts import Account, Origin

# A till's hold lasts as long as a checkout: 15 minutes unless it asks otherwise, at most a day
# (a longer reservation is an order, not a checkout).
HOLD_EXPIRES_IN_S_DEFAULT = 15 * 60
HOLD_EXPIRES_IN_S_MAX = 24 * 60 * 60
# The `source` of the ledger entries written here.
SOURCE = "api"
# Members settled per sweep: one short transaction each, and a sweep ends well inside its period.
SWEEP_MEMBERS_MAX = 200
# Refunds are followed for captured holds settled within this window (the refund period of
# any sane shop); older ones are still settled when the member is read or holds again.
REFUND_WINDOW = timedelta(days=180)

_HOLD = text("SELECT * FROM holds WHERE hold_id = :hold_id")
_HOLD_FOR_UPDATE = text("SELECT * FROM holds WHERE hold_id = :hold_id FOR UPDATE")
_SPENDABLE_LOTS = text(
    """
    SELECT lot_id, remaining, expires_at FROM lots
    WHERE member_id = :member_id AND remaining > 0 AND pending_until IS NULL AND expires_at > :now
    ORDER BY expires_at, lot_id
    """
)
_TAKES = text("SELECT lot_id, points FROM lot_takes WHERE entry_id = :entry_id ORDER BY lot_id")
# Due work of one member: open holds past their expiry, captured holds whose order was refunded further.
_DUE_EXPIRED = text(
    "SELECT * FROM holds WHERE member_id = :member_id AND status = 'held' AND expires_at <= :now ORDER BY hold_id"
)
_DUE_REFUNDED = text(
    """
    SELECT h.*, o.amount AS order_amount, o.refunded_amount AS order_refunded
    FROM holds h JOIN orders o ON o.member_id = h.member_id AND o.order_id = h.order_id
    WHERE h.member_id = :member_id AND h.status = 'captured'
      AND o.amount > 0 AND o.refunded_amount > h.refunded_amount AND h.points_refunded < h.points
    ORDER BY h.hold_id
    FOR UPDATE OF h
    """
)
# Whether anything of one member is due (an SQL boolean, also used inside the member read).
DUE_SQL = """
    EXISTS (SELECT 1 FROM holds WHERE member_id = :member_id AND status = 'held' AND expires_at <= :now)
    OR EXISTS (SELECT 1 FROM holds h JOIN orders o ON o.member_id = h.member_id AND o.order_id = h.order_id
               WHERE h.member_id = :member_id AND h.status = 'captured'
                 AND o.amount > 0 AND o.refunded_amount > h.refunded_amount AND h.points_refunded < h.points)
"""
_ANY_DUE = text("SELECT " + DUE_SQL)
_RESTORED_FOR_HOLD = text(
    """
    SELECT t.lot_id, (-sum(t.points))::bigint AS points FROM lot_takes t JOIN ledger_entries e USING (entry_id)
    WHERE e.member_id = :member_id AND e.kind = 'restore' AND e.source = :source AND e.event_id = :event_id
    GROUP BY t.lot_id
    """
)
_LOT_EXPIRY = text("SELECT lot_id, expires_at FROM lots WHERE lot_id = ANY(:lot_ids)")
_SWEEP_MEMBERS = text(
    """
    SELECT member_id FROM (
        SELECT member_id FROM holds WHERE status = 'held' AND expires_at <= :now
        UNION
        SELECT h.member_id FROM holds h JOIN orders o ON o.member_id = h.member_id AND o.order_id = h.order_id
        WHERE h.status = 'captured' AND h.settled_at >= :since
          AND o.amount > 0 AND o.refunded_amount > h.refunded_amount AND h.points_refunded < h.points
    ) due ORDER BY member_id LIMIT :n
    """
)
_HELD_POINTS = text("SELECT coalesce(sum(points), 0) FROM holds WHERE member_id = :member_id AND status = 'held'")


__all__ = ["HoldRefused", "HoldResult", "capture", "held_points", "place_hold", "settle_member", "sweep", "void"]


class _LostRace(Exception):
    """Another request created the same hold id first; this transaction is rolled back."""


@dataclass(frozen=True)
class HoldResult:
    created: bool  # False: the answer to a repeated request
    hold: dict[str, Any]


def hold_view(row: Any) -> dict[str, Any]:
    return {
        "hold_id": row["hold_id"],
        "member_id": row["member_id"],
        "order_id": row["order_id"],
        "points": row["points"],
        "status": row["status"],
        "created_at": _iso(row["created_at"]),
        "expires_at": _iso(row["expires_at"]),
        "settled_at": _iso(row["settled_at"]),
        "points_refunded": row["points_refunded"],
    }


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _origin(hold_id: str, what: str, now: datetime) -> Origin:
    # One (source, event_id) per hold: every entry of a hold's life shares it.
    return Origin(SOURCE, f"hold:{hold_id}", what, now)


async def _write(conn: AsyncConnection, account: Account, hold_id: str, movement: Movement, now: datetime) -> int:
    origin = _origin(hold_id, movement.what, now)
    return await accounts.move_points(conn, account, origin, movement.kind, list(movement.takes), [movement.rule])


async def _held_takes(conn: AsyncConnection, hold: Hold) -> list[tuple[int, int]]:
    return [(r.lot_id, r.points) for r in await conn.execute(_TAKES, {"entry_id": hold.hold_entry_id})]


async def _finish(conn: AsyncConnection, program: Program, account: Account) -> None:
    if account.available != account.opened["available"]:
        await accounts.close(conn, program, account, None)
        await audit.assert_member_consistent(conn, account.member_id)


async def place_hold(
    engine: AsyncEngine,
    program: Program,
    *,
    hold_id: str,
    member_id: str,
    points: int,
    order_id: str,
    expires_in_s: int,
    key_name: str,
    now: datetime,
) -> HoldResult:
    """Reserve `points` of the member's available points for an order. Repeating the same
    request answers with the existing hold; the same hold id with other terms is refused."""
    try:
        return await _place_hold(engine, program, hold_id, member_id, points, order_id, expires_in_s, key_name, now)
    except _LostRace:
        async with engine.connect() as conn:
            row = (await conn.execute(_HOLD, {"hold_id": hold_id})).mappings().one()
        return _same_hold(row, member_id, points, order_id)


def _same_hold(row: Any, member_id: str, points: int, order_id: str) -> HoldResult:
    decide.same_terms(Hold.of(row), member_id, points, order_id)
    return HoldResult(False, hold_view(row))


async def _place_hold(engine, program, hold_id, member_id, points, order_id, expires_in_s, key_name, now) -> HoldResult:
    async with engine.begin() as conn:
        account = await accounts.lock_existing_member(conn, member_id)
        if account is None:
            raise HoldRefused(404, "unknown_member", f"member_id: no member {member_id!r}")
        await _settle_due(conn, account, now)
        existing = (await conn.execute(_HOLD, {"hold_id": hold_id})).mappings().first()
        if existing is not None:
            result = _same_hold(existing, member_id, points, order_id)
            await _finish(conn, program, account)
            return result
        # Lots past their expiry that the expiry job has not swept yet cannot be spent.
        lots = [
            Lot(r.lot_id, r.remaining, r.expires_at)
            for r in await conn.execute(_SPENDABLE_LOTS, {"member_id": member_id, "now": now})
        ]
        try:
            movement = decide.place(hold_id, order_id, points, account.available, lots)
        except HoldRefused:
            await _finish(conn, program, account)
            raise
        entry_id = await _write(conn, account, hold_id, movement, now)
        row = await store_holds.insert_hold(
            conn,
            {
                "hold_id": hold_id,
                "member_id": member_id,
                "order_id": order_id,
                "points": points,
                "key_name": key_name,
                "hold_entry_id": entry_id,
                "now": now,
                "expires_at": now + timedelta(seconds=expires_in_s),
            },
        )
        if row is None:
            raise _LostRace()
        await _finish(conn, program, account)
        return HoldResult(True, hold_view(row))


async def capture(engine: AsyncEngine, program: Program, hold_id: str, *, now: datetime) -> dict[str, Any]:
    """Book the held points as spent on the hold's order; a repeat answers with the same hold."""
    return await _settle_one(engine, program, hold_id, "captured", now)


async def void(engine: AsyncEngine, program: Program, hold_id: str, *, now: datetime) -> dict[str, Any]:
    """Give the held points back; a repeat, or a hold that has already expired, answers as it is."""
    return await _settle_one(engine, program, hold_id, "voided", now)


async def _settle_one(engine: AsyncEngine, program: Program, hold_id: str, wanted: str, now: datetime) -> dict:
    async with engine.connect() as conn:
        found = (await conn.execute(_HOLD, {"hold_id": hold_id})).mappings().first()
    if found is None:
        raise HoldRefused(404, "unknown_hold", f"hold_id: no hold {hold_id!r}")
    async with engine.begin() as conn:
        # The member's lock first, as everywhere else, then the hold's row.
        account = await accounts.lock_existing_member(conn, found["member_id"])
        await _settle_due(conn, account, now)
        row = (await conn.execute(_HOLD_FOR_UPDATE, {"hold_id": hold_id})).mappings().one()
        hold = Hold.of(row)
        try:
            movement = decide.settle(hold, wanted, await _held_takes(conn, hold) if hold.status == "held" else [])
        except HoldRefused:
            await _finish(conn, program, account)
            raise
        if movement is not None:
            entry_id = await _write(conn, account, hold_id, movement, now)
            row = await store_holds.settle(conn, hold_id, wanted, entry_id, now)
        await _finish(conn, program, account)
        return hold_view(row)


async def _settle_due(conn: AsyncConnection, account: Account, now: datetime) -> None:
    """Release the member's holds past their expiry and restore points of refunded orders."""
    for row in (await conn.execute(_DUE_EXPIRED, {"member_id": account.member_id, "now": now})).mappings().all():
        hold = Hold.of(row)
        movement = decide.give_back(hold, "hold_expired", await _held_takes(conn, hold))
        entry_id = await _write(conn, account, hold.hold_id, movement, now)
        await store_holds.settle(conn, hold.hold_id, "expired", entry_id, now)
    for row in (await conn.execute(_DUE_REFUNDED, {"member_id": account.member_id})).mappings().all():
        await _restore_refunded(conn, account, row, now)


async def _restore_refunded(conn: AsyncConnection, account: Account, row: Any, now: datetime) -> None:
    """The order's newly refunded share of the points paid, back to the hold's lots."""
    hold = Hold.of(row)
    taken = dict(await _held_takes(conn, hold))
    given = {
        r.lot_id: r.points
        for r in await conn.execute(
            _RESTORED_FOR_HOLD, {"member_id": account.member_id, "source": SOURCE, "event_id": f"hold:{hold.hold_id}"}
        )
    }
    expiry = {r.lot_id: r.expires_at for r in await conn.execute(_LOT_EXPIRY, {"lot_ids": list(taken)})}
    amount = Decimal(row["order_amount"])
    restore = decide.refund_restore(hold, amount, Decimal(row["order_refunded"]), taken, given, expiry, now)
    await store_holds.mark_refunded(conn, hold.hold_id, restore.refunded_amount, restore.points_refunded)
    if restore.movement is not None:
        await _write(conn, account, hold.hold_id, restore.movement, now)


async def settle_member(engine: AsyncEngine, program: Program, member_id: str, *, now: datetime) -> bool:
    """Settle one member's due holds and refunds if there are any; True when something was due.
    One cheap read when nothing is due (the common case on every member read)."""
    async with engine.connect() as conn:
        due = (await conn.execute(_ANY_DUE, {"member_id": member_id, "now": now})).scalar()
    if not due:
        return False
    async with engine.begin() as conn:
        account = await accounts.lock_existing_member(conn, member_id)
        if account is None:
            return False
        await _settle_due(conn, account, now)
        await _finish(conn, program, account)
    return True


async def sweep(engine: AsyncEngine, program: Program, *, now: datetime, members_max: int = SWEEP_MEMBERS_MAX) -> int:
    """Settle up to `members_max` members with expired holds or newly refunded paid orders."""
    async with engine.connect() as conn:
        member_ids = (
            (await conn.execute(_SWEEP_MEMBERS, {"now": now, "since": now - REFUND_WINDOW, "n": members_max}))
            .scalars()
            .all()
        )
    for member_id in member_ids:
        await settle_member(engine, program, member_id, now=now)
    return len(member_ids)


async def held_points(conn: AsyncConnection, member_id: str) -> int:
    return (await conn.execute(_HELD_POINTS, {"member_id": member_id})).scalar_one()
