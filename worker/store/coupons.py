"""Coupon codes: the only code that writes the coupons table.

A pool's codes are loaded as `available`; a redemption takes them (or inserts generated ones)
as `issued`, naming itself; a till marks one `used`; a cancelled redemption marks its codes
`cancelled`. The callers decide (worker/services/mall.py, worker/services/coupons.py); this
module writes, each transition in one statement guarded by the status it moves from.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from worker.domain.coupons import AVAILABLE, ISSUED

# Codes inserted per statement when a pool is loaded: one array parameter of this many codes
# is a few hundred kilobytes, and a million-code file is a hundred statements.
LOAD_CHUNK_CODES = 10_000

_LOAD = text(
    f"""
    WITH inserted AS (
        INSERT INTO coupons (code, reward_id, status)
        SELECT t.code, :reward_id, '{AVAILABLE}' FROM unnest(CAST(:codes AS text[])) WITH ORDINALITY AS t(code, n)
        ORDER BY t.n
        ON CONFLICT (code) DO NOTHING
        RETURNING 1
    )
    SELECT count(*) FROM inserted
    """
)
# All or nothing: the codes are taken only when the pool has `n` of them. Redemptions of one
# reward are serialised by the reward's row (its stock update), so the pick is the pool's
# first `n` by load order; SKIP LOCKED keeps any other taker from waiting on them.
_TAKE = text(
    f"""
    WITH pick AS (
        SELECT code FROM coupons WHERE reward_id = :reward_id AND status = '{AVAILABLE}'
        ORDER BY seq LIMIT :n FOR UPDATE SKIP LOCKED
    ), taken AS (
        UPDATE coupons c SET status = '{ISSUED}', source = :source, event_id = :event_id,
            issued_at = :issued_at, expires_on = :expires_on
        FROM pick WHERE c.code = pick.code AND (SELECT count(*) FROM pick) = :n
        RETURNING c.code, c.seq
    )
    SELECT code FROM taken ORDER BY seq
    """
)
# The primary key makes a generated code unique; a clash (never seen with 80 random bits)
# is skipped here and the caller draws again.
_INSERT_ISSUED = text(
    f"""
    INSERT INTO coupons (code, reward_id, status, source, event_id, issued_at, expires_on)
    SELECT t.code, :reward_id, '{ISSUED}', :source, :event_id, :issued_at, :expires_on
    FROM unnest(CAST(:codes AS text[])) AS t(code)
    ON CONFLICT (code) DO NOTHING
    RETURNING code
    """
)
_LOCK_OF_REDEMPTION = text(
    """
    SELECT code, status, used_at FROM coupons WHERE source = :source AND event_id = :event_id
    ORDER BY seq FOR UPDATE
    """
)
_CANCEL = text(
    f"""
    UPDATE coupons SET status = 'cancelled', cancelled_at = :at
    WHERE source = :source AND event_id = :event_id AND status = '{ISSUED}'
    RETURNING code
    """
)
# The till's use: the row lock serialises two tills using one code, and the condition is
# re-checked on the committed row, so exactly one of them moves it from issued to used.
_USE = text(
    f"""
    UPDATE coupons SET status = 'used', used_at = :now, used_by = :used_by
    WHERE code = :code AND status = '{ISSUED}' AND expires_on >= :today
    RETURNING code
    """
)


async def load_pool(conn: AsyncConnection, reward_id: str, codes: Sequence[str]) -> int:
    """Add codes to a reward's pool in their order; codes already known (to any reward) are
    skipped. How many were added."""
    added = 0
    for start in range(0, len(codes), LOAD_CHUNK_CODES):
        chunk = list(codes[start : start + LOAD_CHUNK_CODES])
        added += (await conn.execute(_LOAD, {"reward_id": reward_id, "codes": chunk})).scalar_one()
    return added


def _issue_params(source: str, event_id: str, issued_at: datetime, expires_on: date) -> dict[str, Any]:
    return {"source": source, "event_id": event_id, "issued_at": issued_at, "expires_on": expires_on}


async def take_from_pool(
    conn: AsyncConnection, reward_id: str, n: int, *, source: str, event_id: str, issued_at: datetime, expires_on: date
) -> list[str]:
    """The pool's first `n` codes, issued to the redemption; empty (nothing taken) when fewer are left."""
    params = {"reward_id": reward_id, "n": n, **_issue_params(source, event_id, issued_at, expires_on)}
    return list((await conn.execute(_TAKE, params)).scalars())


async def insert_issued(
    conn: AsyncConnection,
    reward_id: str,
    codes: Sequence[str],
    *,
    source: str,
    event_id: str,
    issued_at: datetime,
    expires_on: date,
) -> set[str]:
    """Generated codes, issued to the redemption; the ones inserted (a clash is left out)."""
    params = {"reward_id": reward_id, "codes": list(codes), **_issue_params(source, event_id, issued_at, expires_on)}
    return set((await conn.execute(_INSERT_ISSUED, params)).scalars())


async def lock_of_redemption(conn: AsyncConnection, source: str, event_id: str) -> list[Any]:
    """The redemption's coupons (code, status, used_at), locked against a till's use until commit."""
    return list(await conn.execute(_LOCK_OF_REDEMPTION, {"source": source, "event_id": event_id}))


async def cancel_of_redemption(conn: AsyncConnection, source: str, event_id: str, at: datetime) -> list[str]:
    """Mark the redemption's unused coupons cancelled; the codes marked."""
    params = {"source": source, "event_id": event_id, "at": at}
    return list((await conn.execute(_CANCEL, params)).scalars())


async def use(conn: AsyncConnection, code: str, *, today: date, now: datetime, used_by: str | None) -> bool:
    """Mark an issued coupon whose last day is not before `today` used; False when it is not one."""
    params = {"code": code, "today": today, "now": now, "used_by": used_by}
    return (await conn.execute(_USE, params)).first() is not None
