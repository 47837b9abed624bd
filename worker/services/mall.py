"""The points mall: catalog loading, redemption and cancellation in the ledger transaction.

`redeem` and `cancel` are ledger handlers (registered in `ledger._HANDLERS`): they run with
the member's row locked, inside the transaction that claims the event id, so a redelivered
event changes nothing. A business rejection (not enough points, out of stock, ...) is a
processed outcome: a `rejected` redemption row and a notification, no ledger entry. A
redemption made at once, not queued, is `worker.services.redeem`, above the ledger. A coupon
reward issues one code per unit (worker/store/coupons.py writes them), and a redemption whose
coupon a till has used cannot be cancelled.
"""

from __future__ import annotations

import secrets
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from worker.domain import coupons, mall
from worker.domain.errors import InvariantViolation, ProgramError
from worker.domain.events import RedemptionCancelEvent, RedemptionEvent
from worker.domain.lots import Lot
from worker.domain.program import Program
from worker.domain.result import Result
from worker.store import accounts
from worker.store import coupons as coupon_store
from worker.store.accounts import Account, Origin

_UPSERT_REWARD = text(
    """
    INSERT INTO rewards AS r (reward_id, name, cost_points, min_tier, stock, limit_count, limit_period,
                              available_from, available_until, early_access_tier, early_access_hours,
                              kind, codes, code_prefix, valid_days)
    VALUES (:reward_id, :name, :cost_points, :min_tier, :stock, :limit_count, :limit_period,
            :available_from, :available_until, :early_access_tier, :early_access_hours,
            :kind, :codes, :code_prefix, :valid_days)
    ON CONFLICT (reward_id) DO UPDATE SET
        name = EXCLUDED.name, cost_points = EXCLUDED.cost_points, min_tier = EXCLUDED.min_tier,
        stock = EXCLUDED.stock, limit_count = EXCLUDED.limit_count, limit_period = EXCLUDED.limit_period,
        available_from = EXCLUDED.available_from, available_until = EXCLUDED.available_until,
        early_access_tier = EXCLUDED.early_access_tier, early_access_hours = EXCLUDED.early_access_hours,
        kind = EXCLUDED.kind, codes = EXCLUDED.codes, code_prefix = EXCLUDED.code_prefix,
        valid_days = EXCLUDED.valid_days,
        loaded_at = now()
    WHERE (r.name, r.cost_points, r.min_tier, r.stock, r.limit_count, r.limit_period, r.available_from,
           r.available_until, r.early_access_tier, r.early_access_hours, r.kind, r.codes, r.code_prefix,
           r.valid_days)
          IS DISTINCT FROM
          (EXCLUDED.name, EXCLUDED.cost_points, EXCLUDED.min_tier, EXCLUDED.stock, EXCLUDED.limit_count,
           EXCLUDED.limit_period, EXCLUDED.available_from, EXCLUDED.available_until,
           EXCLUDED.early_access_tier, EXCLUDED.early_access_hours, EXCLUDED.kind, EXCLUDED.codes,
           EXCLUDED.code_prefix, EXCLUDED.valid_days)
    RETURNING (xmax = 0) AS inserted
    """
)
_REDEEMED_OF = text("SELECT reward_id, redeemed FROM rewards WHERE reward_id = ANY(:ids) FOR UPDATE")
# The codes left in a reward `w`'s pool, counted up to :codes_counted_max (a redemption needs
# to know only whether its quantity is there; a pool may hold a million codes); NULL for a
# reward without a pool.
CODES_LEFT_SQL = f"""
    CASE WHEN w.kind = '{mall.COUPON}' AND w.codes = '{mall.POOL}' THEN (
        SELECT count(*) FROM (
            SELECT 1 FROM coupons c WHERE c.reward_id = w.reward_id AND c.status = '{coupons.AVAILABLE}'
            LIMIT :codes_counted_max
        ) pool
    ) END AS codes_left
"""
# Listing the catalog counts every pool in full: an operator's view, not a hot path.
_LIST_COUNT_MAX = 2**62
_LIST_REWARDS = text(f"SELECT w.*, {CODES_LEFT_SQL} FROM rewards w ORDER BY w.reward_id")
_REWARD = text(f"SELECT w.*, {CODES_LEFT_SQL} FROM rewards w WHERE w.reward_id = :reward_id")
# A fresh draw for a generated code that clashed with one already issued (never seen with 80
# random bits); running out of draws means the generator is broken, not unlucky.
GENERATED_DRAWS_MAX = 5
# The guard against overselling: the row lock serialises concurrent redemptions of one
# reward, and the WHERE is re-checked on the committed row, so stock never goes below zero.
_TAKE_STOCK = text(
    """
    UPDATE rewards SET redeemed = redeemed + :quantity
    WHERE reward_id = :reward_id AND (stock IS NULL OR stock - redeemed >= :quantity)
    RETURNING 1
    """
)
# The rewards a group's redemptions and cancellations take and give back stock of, locked in
# reward-id order before any of them runs, so that two groups touching the same rewards in
# different orders wait on each other in one order instead of in a cycle.
_LOCK_REWARDS = text(
    """
    SELECT count(*) FROM (
        SELECT 1 FROM rewards w
        WHERE w.reward_id = ANY(CAST(:reward_ids AS text[])) OR w.reward_id IN (
            SELECT r.reward_id FROM redemptions r
            JOIN unnest(CAST(:member_ids AS text[]), CAST(:event_ids AS text[])) AS k(m, e)
                ON r.member_id = k.m AND r.event_id = k.e
        )
        ORDER BY w.reward_id
        FOR NO KEY UPDATE OF w
    ) AS locked
    """
)
_RETURN_STOCK = text("UPDATE rewards SET redeemed = redeemed - :quantity WHERE reward_id = :reward_id")
_HELD_IN_PERIOD = text(
    """
    SELECT coalesce(sum(quantity), 0) FROM redemptions
    WHERE member_id = :member_id AND reward_id = :reward_id AND status = 'confirmed'
      AND (CAST(:start AS timestamptz) IS NULL OR occurred_at >= :start)
      AND (CAST(:end AS timestamptz) IS NULL OR occurred_at < :end)
    """
)
_SPENDABLE_LOTS = text(
    """
    SELECT lot_id, remaining, expires_at FROM lots
    WHERE member_id = :member_id AND remaining > 0 AND pending_until IS NULL AND expires_at > :at
    ORDER BY expires_at, lot_id
    """
)
_RECORD = text(
    """
    INSERT INTO redemptions (source, event_id, member_id, reward_id, quantity, points, status, reason, entry_id, occurred_at)
    VALUES (:source, :event_id, :member_id, :reward_id, :quantity, :points, :status, :reason, :entry_id, :occurred_at)
    """
)
_FIND_REDEMPTION = text(
    """
    SELECT r.*, w.name AS reward_name FROM redemptions r LEFT JOIN rewards w USING (reward_id)
    WHERE r.member_id = :member_id AND r.event_id = :event_id
    ORDER BY (r.source = :source) DESC, r.source
    LIMIT 1
    """
)
_TAKES_OF = text(
    """
    SELECT t.lot_id, t.points, l.expires_at FROM lot_takes t JOIN lots l USING (lot_id)
    WHERE t.entry_id = :entry_id ORDER BY l.expires_at, t.lot_id
    """
)
_MARK_CANCELLED = text(
    """
    UPDATE redemptions SET status = 'cancelled', cancel_source = :cancel_source, cancel_event_id = :cancel_event_id,
        points_restored = :points_restored, cancelled_at = :cancelled_at
    WHERE source = :source AND event_id = :event_id AND status = 'confirmed'
    """
)
# Stock bookkeeping: each reward's redeemed count equals the confirmed units.
_STOCK_AUDIT = text(
    """
    SELECT w.reward_id, w.redeemed, coalesce(sum(r.quantity) FILTER (WHERE r.status = 'confirmed'), 0) AS confirmed
    FROM rewards w LEFT JOIN redemptions r USING (reward_id)
    GROUP BY w.reward_id, w.redeemed
    HAVING w.redeemed <> coalesce(sum(r.quantity) FILTER (WHERE r.status = 'confirmed'), 0)
    ORDER BY w.reward_id
    """
)


# ---------------------------------------------------------------- catalog


async def load_rewards(engine: AsyncEngine, catalog: mall.Catalog) -> dict[str, int]:
    """Upsert every reward in the file (others are left as they are); safe to run twice.

    Refuses the whole file when a reward's stock would be below what is already redeemed.
    """
    counts = {"rewards": len(catalog.reward), "inserted": 0, "updated": 0, "unchanged": 0}
    async with engine.begin() as conn:
        ids = [r.reward_id for r in catalog.reward]
        redeemed = {row.reward_id: row.redeemed for row in await conn.execute(_REDEEMED_OF, {"ids": ids})}
        for index, reward in enumerate(catalog.reward):
            taken = redeemed.get(reward.reward_id, 0)
            if reward.stock is not None and reward.stock < taken:
                raise ProgramError(
                    f"reward.{index}.stock: {reward.stock} is below the {taken} already redeemed of {reward.reward_id!r}"
                )
        for reward in catalog.reward:
            row = (await conn.execute(_UPSERT_REWARD, _reward_params(reward))).first()
            if row is None:
                counts["unchanged"] += 1
            elif row.inserted:
                counts["inserted"] += 1
            else:
                counts["updated"] += 1
    return counts


def _reward_params(reward: mall.Reward) -> dict[str, Any]:
    return {
        "reward_id": reward.reward_id,
        "name": reward.name,
        "cost_points": reward.cost_points,
        "min_tier": reward.min_tier,
        "stock": reward.stock,
        "limit_count": reward.limit.count if reward.limit else None,
        "limit_period": reward.limit.period if reward.limit else None,
        "available_from": reward.available_from,
        "available_until": reward.available_until,
        "early_access_tier": reward.early_access.tier if reward.early_access else None,
        "early_access_hours": reward.early_access.hours if reward.early_access else None,
        "kind": reward.kind,
        "codes": reward.code_source,
        "code_prefix": reward.code_prefix,
        "valid_days": reward.valid_days,
    }


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


async def list_rewards(engine: AsyncEngine) -> list[dict[str, Any]]:
    async with engine.connect() as conn:
        rows = (await conn.execute(_LIST_REWARDS, {"codes_counted_max": _LIST_COUNT_MAX})).mappings().all()
    return [
        {
            "reward_id": r["reward_id"],
            "name": r["name"],
            "cost_points": r["cost_points"],
            "min_tier": r["min_tier"],
            "stock": r["stock"],
            "redeemed": r["redeemed"],
            "stock_left": None if r["stock"] is None else r["stock"] - r["redeemed"],
            "limit": {"count": r["limit_count"], "period": r["limit_period"]} if r["limit_count"] else None,
            "available_from": _iso(r["available_from"]),
            "available_until": _iso(r["available_until"]),
            "early_access": {"tier": r["early_access_tier"], "hours": r["early_access_hours"]}
            if r["early_access_tier"]
            else None,
            "kind": r["kind"],
            "coupon": {
                "codes": r["codes"],
                "code_prefix": r["code_prefix"],
                "valid_days": r["valid_days"],
                "codes_left": r["codes_left"],
            }
            if r["kind"] == mall.COUPON
            else None,
        }
        for r in rows
    ]


def _terms(row) -> mall.RewardTerms:
    return mall.RewardTerms(
        reward_id=row["reward_id"],
        name=row["name"],
        cost_points=row["cost_points"],
        min_tier=row["min_tier"],
        stock_left=None if row["stock"] is None else row["stock"] - row["redeemed"],
        limit_count=row["limit_count"],
        limit_period=row["limit_period"],
        available_from=row["available_from"],
        available_until=row["available_until"],
        early_access_tier=row["early_access_tier"],
        early_access_hours=row["early_access_hours"],
        codes_left=row.get("codes_left"),
    )


# ---------------------------------------------------------------- ledger handlers


async def lock_rewards(conn: AsyncConnection, events: list[Any]) -> None:
    """Lock the rewards the redemptions and cancellations among `events` will touch, in
    reward-id order (a group's, after its member locks)."""
    redeemed = [e.payload.reward_id for e in events if isinstance(e, RedemptionEvent)]
    cancels = [e for e in events if isinstance(e, RedemptionCancelEvent)]
    if not redeemed and not cancels:
        return
    params = {
        "reward_ids": sorted(set(redeemed)),
        "member_ids": [e.member_id for e in cancels],
        "event_ids": [e.payload.redemption_event_id for e in cancels],
    }
    await conn.execute(_LOCK_REWARDS, params)


async def redeem(
    conn: AsyncConnection, program: Program, account: Account, origin: Origin, event: RedemptionEvent
) -> Result:
    """One redemption, under the member's lock: check, take stock, spend lots earliest-expiring first."""
    payload = event.payload
    quantity = payload.quantity
    row = (
        (await conn.execute(_REWARD, {"reward_id": payload.reward_id, "codes_counted_max": quantity}))
        .mappings()
        .first()
    )
    terms = _terms(row) if row is not None else None
    at = origin.occurred_at
    lots = [
        Lot(r.lot_id, r.remaining, r.expires_at)
        for r in await conn.execute(_SPENDABLE_LOTS, {"member_id": account.member_id, "at": at})
    ]
    # Lots past their expiry that the expiry job has not swept yet cannot be spent.
    spendable = min(account.available, sum(lot.remaining for lot in lots))
    held = 0
    if terms is not None and terms.limit_period is not None:
        start, end = mall.period_bounds(program.zone, terms.limit_period, at)
        held = (
            await conn.execute(
                _HELD_IN_PERIOD,
                {"member_id": account.member_id, "reward_id": terms.reward_id, "start": start, "end": end},
            )
        ).scalar_one()
    reason = mall.check_redemption(
        program, terms, tier=account.tier, spendable_points=spendable, quantity=quantity, at=at, already_in_period=held
    )
    if reason is None:
        took = (await conn.execute(_TAKE_STOCK, {"reward_id": payload.reward_id, "quantity": quantity})).first()
        if took is None:
            reason = mall.OUT_OF_STOCK
    issued: list[dict[str, str]] = []
    if reason is None and row["kind"] == mall.COUPON:
        issued = await _issue_coupons(conn, program, row, origin, quantity)
        if not issued:  # the pool ran dry since it was counted: nothing was taken, stock goes back
            await conn.execute(_RETURN_STOCK, {"reward_id": payload.reward_id, "quantity": quantity})
            reason = mall.NO_CODES_LEFT
    record = {
        "source": origin.source,
        "event_id": origin.event_id,
        "member_id": account.member_id,
        "reward_id": payload.reward_id,
        "quantity": quantity,
        "occurred_at": at,
    }
    reward_name = terms.name if terms is not None else payload.reward_id
    if reason is not None:
        await conn.execute(_RECORD, {**record, "points": 0, "status": "rejected", "reason": reason, "entry_id": None})
        accounts.notify(account, "redemption_rejected", origin, reward_name=reward_name, reason=reason)
        return Result(
            "applied",
            account.member_id,
            note=f"redemption.{reason}",
            detail={"redemption": "rejected", "reason": reason, "reward_id": payload.reward_id},
        )

    payment = mall.spend(terms, quantity, lots, issued)
    points = payment.points
    entry_id = await accounts.move_points(conn, account, origin, "redeem", payment.takes, [payment.rule])
    await conn.execute(
        _RECORD, {**record, "points": points, "status": "confirmed", "reason": None, "entry_id": entry_id}
    )
    accounts.notify(
        account,
        "redemption_confirmed",
        origin,
        reward_name=reward_name,
        quantity=quantity,
        points=points,
        available_points=account.available,
        **_coupon_params(issued),
    )
    return Result(
        "applied",
        account.member_id,
        points=-points,
        detail={
            "redemption": "confirmed",
            "reward_id": terms.reward_id,
            "entry_id": entry_id,
            **({"coupons": issued} if issued else {}),
        },
    )


def _coupon_params(issued: list[dict]) -> dict[str, Any]:
    """A coupon redemption's notification carries its codes and their last valid day (the
    `redemption_confirmed_coupon` text shows them); an item's carries none."""
    if not issued:
        return {}
    return {
        "coupon": True,
        "coupon_codes": ", ".join(c["code"] for c in issued),
        "coupon_expires_on": issued[0]["expires_on"],
    }


async def _issue_coupons(conn: AsyncConnection, program: Program, reward, origin: Origin, quantity: int) -> list[dict]:
    """One code per unit for the redemption, from the pool (first loaded, first issued) or
    generated; empty when the pool has fewer than `quantity` left (then nothing is taken)."""
    at = origin.occurred_at
    last_day = coupons.expires_on(at, program.zone, reward["valid_days"])
    issue = {"source": origin.source, "event_id": origin.event_id, "issued_at": at, "expires_on": last_day}
    if reward["codes"] == mall.POOL:
        codes = await coupon_store.take_from_pool(conn, reward["reward_id"], quantity, **issue)
    else:
        codes = []
        for _ in range(GENERATED_DRAWS_MAX):
            drawn = [
                coupons.generated_code(reward["code_prefix"], secrets.token_bytes(coupons.GENERATED_CODE_BYTES))
                for _ in range(quantity - len(codes))
            ]
            inserted = await coupon_store.insert_issued(conn, reward["reward_id"], drawn, **issue)
            codes += [code for code in drawn if code in inserted]
            if len(codes) == quantity:
                break
        else:
            raise InvariantViolation(f"{GENERATED_DRAWS_MAX} draws of generated codes clashed with issued ones")
    return [{"code": code, "expires_on": last_day.isoformat()} for code in codes]


async def cancel(
    conn: AsyncConnection, program: Program, account: Account, origin: Origin, event: RedemptionCancelEvent
) -> Result:
    """Give the points back to the lots they came from (an expired lot gets nothing) and the stock back."""
    target = event.payload.redemption_event_id
    found = (
        (
            await conn.execute(
                _FIND_REDEMPTION, {"member_id": account.member_id, "event_id": target, "source": origin.source}
            )
        )
        .mappings()
        .first()
    )
    issued: list = []
    if found is not None and found["status"] == "confirmed":
        # Locked until commit: a till cannot use a coupon while its redemption is being cancelled.
        issued = await coupon_store.lock_of_redemption(conn, found["source"], target)
    used = [mall.UsedCoupon(c.code, c.used_at) for c in issued if c.status == coupons.USED]
    refused = mall.cancel_refusal(found["status"] if found is not None else None, used)
    if refused is not None:
        note, detail = refused
        return Result("applied", account.member_id, note=note, detail=detail)
    assert found is not None
    at = origin.occurred_at
    taken = [
        mall.Taken(t.lot_id, t.points, t.expires_at)
        for t in await conn.execute(_TAKES_OF, {"entry_id": found["entry_id"]})
    ]
    give_back = mall.restore(found["source"], target, found["points"], taken, [c.code for c in issued], at)
    detail = give_back.detail
    restored = give_back.points
    # A negative take puts points back into the lot; lot_takes keeps both directions.
    await accounts.move_points(conn, account, origin, "restore", give_back.back, [detail])
    await conn.execute(_RETURN_STOCK, {"reward_id": found["reward_id"], "quantity": found["quantity"]})
    await conn.execute(
        _MARK_CANCELLED,
        {
            "cancel_source": origin.source,
            "cancel_event_id": origin.event_id,
            "points_restored": restored,
            "cancelled_at": at,
            "source": found["source"],
            "event_id": target,
        },
    )
    if issued:
        cancelled = await coupon_store.cancel_of_redemption(conn, found["source"], target, at)
        assert sorted(cancelled) == sorted(detail["coupons_cancelled"]), (cancelled, detail["coupons_cancelled"])
    accounts.notify(
        account, "redemption_cancelled", origin, reward_name=found["reward_name"] or found["reward_id"], points=restored
    )
    return Result("applied", account.member_id, points=restored, detail={"redemption": "cancelled", **detail})


async def stock_differences(engine: AsyncEngine) -> list[str]:
    """Rewards whose redeemed count disagrees with their confirmed redemptions (empty: clean)."""
    async with engine.connect() as conn:
        rows = (await conn.execute(_STOCK_AUDIT)).all()
    return [f"{r.reward_id}: redeemed is {r.redeemed} but confirmed redemptions say {r.confirmed}" for r in rows]
