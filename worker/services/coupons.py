"""Coupons outside the ledger: loading a reward's pool of codes, looking a code up, a till using it.

Issuing and cancelling happen in the ledger's transaction with the redemption
(worker/services/mall.py); the coupons table is written by worker/store/coupons.py only.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from worker.domain import coupons, mall
from worker.domain.errors import CouponRefused
from worker.domain.program import Program
from worker.store import coupons as coupon_store

# FOR SHARE: a rewards file loaded at the same time cannot turn the reward into another kind
# between the check and the load.
_REWARD_KIND = text("SELECT kind, codes FROM rewards WHERE reward_id = :reward_id FOR SHARE")
_POOL_LEFT = text("SELECT count(*) FROM coupons WHERE reward_id = :reward_id AND status = 'available'")
# A pool code not yet handed out is no coupon: only issued codes are found.
_COUPON = text(
    """
    SELECT c.code, c.status, c.reward_id, w.name AS reward_name, r.member_id, c.source, c.event_id,
           c.issued_at, c.expires_on, c.used_at, c.used_by, c.cancelled_at
    FROM coupons c
    JOIN redemptions r ON (r.source, r.event_id) = (c.source, c.event_id)
    LEFT JOIN rewards w ON w.reward_id = c.reward_id
    WHERE c.code = :code AND c.status <> 'available'
    """
)


async def load_codes(engine: AsyncEngine, reward_id: str, code_file: coupons.CodeFile) -> dict[str, Any]:
    """Add a file's codes to a coupon reward's pool, in one transaction; safe to run twice.

    Codes repeated in the file or already loaded (for any reward) are skipped and counted.
    Raises CouponRefused when the reward is unknown, not a coupon, or generates its codes.
    """
    async with engine.begin() as conn:
        reward = (await conn.execute(_REWARD_KIND, {"reward_id": reward_id})).first()
        if reward is None:
            raise CouponRefused(f"reward {reward_id!r}: no such reward (load the rewards file first)")
        if reward.kind != mall.COUPON:
            raise CouponRefused(f'reward {reward_id!r}: not a coupon reward (kind = "coupon" in the rewards file)')
        if reward.codes != mall.POOL:
            raise CouponRefused(f"reward {reward_id!r}: its codes are generated at redemption; it has no pool to load")
        loaded = await coupon_store.load_pool(conn, reward_id, code_file.codes)
        left = (await conn.execute(_POOL_LEFT, {"reward_id": reward_id})).scalar_one()
    return {
        "reward_id": reward_id,
        "loaded": loaded,
        "skipped": code_file.duplicates + len(code_file.codes) - loaded,
        "codes_left": left,
    }


def _view(row, today) -> dict[str, Any]:
    return {
        "code": row.code,
        "status": coupons.status_on(row.status, row.expires_on, today),
        "reward_id": row.reward_id,
        "reward_name": row.reward_name,
        "member_id": row.member_id,
        "redemption": {"source": row.source, "event_id": row.event_id},
        "issued_at": row.issued_at.isoformat(),
        "expires_on": row.expires_on.isoformat(),
        "used_at": row.used_at.isoformat() if row.used_at else None,
        "used_by": row.used_by,
        "cancelled_at": row.cancelled_at.isoformat() if row.cancelled_at else None,
    }


async def _read(conn: AsyncConnection, code: str, today) -> dict[str, Any] | None:
    row = (await conn.execute(_COUPON, {"code": code})).first()
    return _view(row, today) if row is not None else None


async def coupon_view(engine: AsyncEngine, program: Program, code: str, *, now: datetime) -> dict[str, Any] | None:
    """An issued coupon as `GET /v1/coupons/{code}` shows it (expired on the program-local day
    after its last); None for a code no member was given."""
    async with engine.connect() as conn:
        return await _read(conn, code, now.astimezone(program.zone).date())


@dataclass(frozen=True)
class UseOutcome:
    """A till's use: the coupon as it is after the attempt (None: no such coupon) and, when
    the use was refused, why (`coupon_used`, `coupon_expired`, `coupon_cancelled`)."""

    coupon: dict[str, Any] | None
    refusal: str | None = None


async def use_coupon(
    engine: AsyncEngine, program: Program, code: str, *, now: datetime, used_by: str | None
) -> UseOutcome:
    """Mark an issued, unexpired coupon used, once: of two tills using one code at once, one
    succeeds and the other is refused with `coupon_used`."""
    today = now.astimezone(program.zone).date()
    async with engine.begin() as conn:
        used = await coupon_store.use(conn, code, today=today, now=now, used_by=used_by)
        coupon = await _read(conn, code, today)
    if used:
        assert coupon is not None and coupon["status"] == coupons.USED, coupon
        return UseOutcome(coupon)
    if coupon is None:
        return UseOutcome(None)
    refusal = coupons.use_refusal(coupon["status"])
    assert refusal is not None, coupon  # an issued, unexpired coupon was used above
    return UseOutcome(coupon, refusal)
