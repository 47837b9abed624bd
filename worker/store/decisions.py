"""A decision written: the rows of orders, refunds, reviews and referrals, and the state they hold.

The live path (worker/services/ledger.py) loads the order an event names (`load_order`), has the
event's decider decide on it, and writes the decision's steps here (`write_decision`): entries
and lots through `accounts`, the order, refund and review rows and the outcomes of events that
waited, in the steps' order.
"""

from __future__ import annotations

from sqlalchemy import bindparam, text
from sqlalchemy.dialects.postgresql import JSONB

from worker.domain.decisions import (
    Adjust,
    Decision,
    DropReview,
    Earn,
    MarkApplied,
    MemberState,
    Origin,
    PutOrder,
    PutRefund,
    PutReview,
    RefundRow,
    Reverse,
    ReviewRow,
    WaitFor,
)
from worker.domain.program import Program
from worker.domain.result import Result
from worker.store import accounts
from worker.store.accounts import Account
from worker.store.staged import order_state

_UPSERT_ORDER = text(
    """
    INSERT INTO orders AS o (member_id, order_id, amount, currency, points_earned, lot_id, purchased_at, bonus_points)
    VALUES (:member_id, :order_id, :amount, :currency, :points_earned, :lot_id, :purchased_at, :bonus_points)
    ON CONFLICT (member_id, order_id) DO UPDATE SET
        amount = EXCLUDED.amount, currency = EXCLUDED.currency, points_earned = EXCLUDED.points_earned,
        lot_id = EXCLUDED.lot_id, purchased_at = EXCLUDED.purchased_at, bonus_points = EXCLUDED.bonus_points
    """
)

# A refund or review that waited for its purchase, applied with it: its outcome and points
# (the waiting note goes), as the event's own would read had it arrived after the purchase.
_DEFERRED_APPLIED = text(
    """
    UPDATE processed_events SET status = 'applied', result = :result
    WHERE source = :source AND event_id = :event_id AND status = 'deferred'
    """
).bindparams(bindparam("result", type_=JSONB))

_WAITING_ORDER = text(
    """
    INSERT INTO orders (member_id, order_id) VALUES (:member_id, :order_id)
    ON CONFLICT (member_id, order_id) DO NOTHING
    """
)

_ORDER_REFUNDED = text(
    """
    UPDATE orders SET refunded_amount = :refunded_amount, points_reversed = :points_reversed,
        bonus_reversed = :bonus_reversed
    WHERE member_id = :member_id AND order_id = :order_id
    """
)

_INSERT_REFUND = text(
    """
    INSERT INTO refunds (member_id, order_id, refund_id, amount, source, event_id, occurred_at, status,
        points_reversed)
    VALUES (:member_id, :order_id, :refund_id, :amount, :source, :event_id, :occurred_at, :status, :points_reversed)
    """
)

_REFUND_APPLIED = text(
    """
    UPDATE refunds SET status = 'applied', points_reversed = :points_reversed
    WHERE member_id = :member_id AND order_id = :order_id AND refund_id = :refund_id
    """
)

# One review is rewarded per (order, sku); a review of an order the member has not bought
# (yet) waits in this table with status 'waiting' and is rewarded when the purchase arrives.
_CLAIM_REVIEW = text(
    """
    INSERT INTO reviews (member_id, order_id, sku, review_id, source, event_id, status, has_media, occurred_at)
    VALUES (:member_id, :order_id, :sku, :review_id, :source, :event_id, :status, :has_media, :occurred_at)
    """
)

_REVIEW_REWARDED = text(
    "UPDATE reviews SET status = 'applied' WHERE member_id = :member_id AND order_id = :order_id AND sku = :sku"
)

# A waiting review that finds the daily limit reached earns nothing and gives up its claim,
# as a review over the limit does when it arrives after its purchase.
_REVIEW_UNCLAIMED = text(
    "DELETE FROM reviews WHERE member_id = :member_id AND order_id = :order_id AND sku = :sku AND status = 'waiting'"
)

# Advisory locks on the members a referral row names (its referee and its referrer), taken in
# key order before any referral row is written: two transactions that may write conflicting
# rows (one referee, or one pair either way round) meet on a lock they take in the same order,
# so the unique indexes of referrals never make them wait for each other in a cycle. A group
# takes all of its referrals' locks at once, after its member locks (group_apply.py).
_LOCK_REFERRALS = text(
    """
    SELECT count(pg_advisory_xact_lock(k)) FROM (
        SELECT DISTINCT hashtextextended('referral:' || id, 0) AS k FROM unnest(CAST(:member_ids AS text[])) AS id
        ORDER BY k
    ) AS keys
    """
)

_CLAIM_REFERRAL = text(
    """
    INSERT INTO referrals (referee_member_id, referrer_member_id, source, event_id, pair_key)
    VALUES (:referee, :referrer, :source, :event_id, :pair_key)
    ON CONFLICT DO NOTHING
    RETURNING 1
    """
)

# One read for the order an event names: its row (if any), the refund ids and reviewed skus it
# has seen, and the member's purchase count (for a purchase).
_ORDER_STATE = text(
    """
    SELECT o.order_id IS NOT NULL AS found, o.amount, o.currency, o.purchased_at, o.points_earned,
        o.points_reversed, o.refunded_amount, o.lot_id, o.bonus_points, o.bonus_reversed,
        ARRAY(SELECT r.refund_id FROM refunds r WHERE r.member_id = :member_id AND r.order_id = :order_id)
            AS refund_ids,
        ARRAY(SELECT v.sku FROM reviews v WHERE v.member_id = :member_id AND v.order_id = :order_id) AS review_skus,
        CASE WHEN :count THEN (SELECT count(*) FROM orders c WHERE c.member_id = :member_id AND c.amount IS NOT NULL)
        END AS purchases
    FROM (SELECT 1) AS one LEFT JOIN orders o ON o.member_id = :member_id AND o.order_id = :order_id
    """
)

_WAITING_ROWS = text(
    """
    SELECT refund_id, amount, source, event_id, occurred_at, status FROM refunds
    WHERE member_id = :member_id AND order_id = :order_id AND status = 'waiting'
    """
)

_WAITING_REVIEW_ROWS = text(
    """
    SELECT sku, review_id, source, event_id, status, has_media, occurred_at FROM reviews
    WHERE member_id = :member_id AND order_id = :order_id AND status = 'waiting'
    """
)


def member_state(account: Account) -> MemberState:
    """A decider's state from a locked account (the profile copied: deciders move it on)."""
    return MemberState(
        member_id=account.member_id,
        tier=account.tier,
        qualifying=account.qualifying,
        qualifying_amount=account.qualifying_amount,
        profile=dict(account.profile),
        rule_state=account.rule_state,
    )


async def load_order(conn, account: Account, state: MemberState, order_id: str, *, purchase: bool) -> None:
    """Put the order an event names into `state`, with what its decider reads of it: for a
    purchase, the member's purchase count and the refunds and reviews waiting for it."""
    staged = account.staged
    if staged is not None:  # the group read the orders its events name (staged.py)
        key = (account.member_id, order_id)
        known = staged.orders.get(key)
        state.purchases = staged.purchase_counts.get(account.member_id, 0)
        if known is None:
            return
        state.orders[order_id] = known
        if purchase and known.amount is None:
            for refund in staged.waiting_refunds.get(key, {}).values():
                state.refunds[(order_id, refund.refund_id)] = refund
            for review in staged.waiting_reviews.get(key, {}).values():
                state.reviews[(order_id, review.sku)] = review
        return
    key = {"member_id": account.member_id, "order_id": order_id}
    row = (await conn.execute(_ORDER_STATE, {**key, "count": purchase})).mappings().one()
    state.purchases = row["purchases"] or 0
    if not row["found"]:
        return
    state.orders[order_id] = order_state(row)
    if purchase and row["amount"] is None:
        for r in (await conn.execute(_WAITING_ROWS, key)).mappings():
            state.refunds[(order_id, r["refund_id"])] = RefundRow(order_id=order_id, **r)
        for r in (await conn.execute(_WAITING_REVIEW_ROWS, key)).mappings():
            state.reviews[(order_id, r["sku"])] = ReviewRow(order_id=order_id, **r)


async def load_spendable(conn, account: Account, state: MemberState, at) -> None:
    """Put the points the member can spend at `at` into `state`: the available balance, less
    what lots past their expiry still hold until the expiry job sweeps them."""
    account.direct()
    lots = await accounts.spendable_lots(conn, account.member_id, at)
    state.spendable = min(account.available, sum(lot.remaining for lot in lots))


async def write_decision(
    conn, program: Program, account: Account, state: MemberState, decision: Decision, origin: Origin
) -> int | None:
    """Write a decision's steps in order; returns the lot id of the event's own points earned."""
    own_lot: int | None = None
    lots: dict[tuple[str, str], int] = {}  # the lot each event's points earned, by the event's key
    member_id = account.member_id
    staged = account.staged
    for step in decision.steps:
        if isinstance(step, Adjust):
            _, lot_id = await accounts.adjust(
                conn,
                account,
                step.origin,
                step.points,
                qualifying=step.qualifying,
                expires_at=step.expires_at,
                rules=list(step.rules),
            )
            if lot_id is not None and step.origin.key == origin.key:
                own_lot = lot_id
            # The kind a re-evaluation's corrections send, in its wording for an operator's change.
            accounts.notify(
                account,
                "points_adjusted",
                step.origin,
                dedupe_key=f"adjustment:{member_id}:{step.origin.source}:{step.origin.event_id}",
                points=f"{step.points:+d}",
                available_points=account.available,
                operator=True,
            )
        elif isinstance(step, Earn):
            lot_id = await accounts.earn(conn, program, account, step.origin, step.awards, pending=step.pending)
            if lot_id is not None:
                lots[step.origin.key] = lot_id
            if step.order_id is not None:
                state.orders[step.order_id].lot_id = lot_id
            if step.notify == "points_earned":
                if own_lot is None and step.origin.key == origin.key:
                    own_lot = lot_id
                accounts.notify(
                    account,
                    "points_earned",
                    step.origin,
                    points=step.points,
                    pending=step.pending,
                    available_points=account.available,
                    rules=[a.rule for a in step.awards],
                )
            elif step.notify is not None:
                accounts.notify(account, step.notify, step.origin, dedupe_key=step.dedupe_key, **step.params)
        elif isinstance(step, Reverse):
            own_lot_id = state.orders[step.order_id].lot_id
            await accounts.reverse(
                conn, account, step.origin, step.points, own_lot_id=own_lot_id, rules=list(step.rules)
            )
        elif isinstance(step, PutOrder):
            order = state.orders[step.order_id]
            key = {"member_id": member_id, "order_id": step.order_id}
            if staged is not None:
                staged.put_order(member_id, step.order_id, order, purchase=step.purchase)
            elif step.purchase:
                row = {
                    **key,
                    "amount": order.amount,
                    "currency": order.currency,
                    "points_earned": order.points_earned,
                    "lot_id": order.lot_id,
                    "purchased_at": order.purchased_at,
                    "bonus_points": order.bonus_points,
                }
                await conn.execute(_UPSERT_ORDER, row)
            else:
                refunded = {
                    "refunded_amount": order.refunded_amount,
                    "points_reversed": order.points_reversed,
                    "bonus_reversed": order.bonus_reversed,
                }
                await conn.execute(_ORDER_REFUNDED, {**key, **refunded})
        elif isinstance(step, WaitFor):
            if staged is not None:
                staged.put_order(member_id, step.order_id, state.orders[step.order_id], purchase=False)
            else:
                await conn.execute(_WAITING_ORDER, {"member_id": member_id, "order_id": step.order_id})
        elif isinstance(step, PutRefund):
            if staged is not None:
                staged.put_refund(member_id, step.row)
            else:
                row = {"member_id": member_id, **step.row.__dict__}
                await conn.execute(_INSERT_REFUND if step.new else _REFUND_APPLIED, row)
        elif isinstance(step, PutReview):
            if staged is not None:
                staged.put_review(member_id, step.row)
            else:
                row = {"member_id": member_id, **step.row.__dict__}
                await conn.execute(_CLAIM_REVIEW if step.new else _REVIEW_REWARDED, row)
        elif isinstance(step, DropReview):
            if staged is not None:
                staged.drop_review(member_id, step.order_id, step.sku)
            else:
                key = {"member_id": member_id, "order_id": step.order_id, "sku": step.sku}
                await conn.execute(_REVIEW_UNCLAIMED, key)
        elif isinstance(step, MarkApplied):
            lot_id = lots.get((step.source, step.event_id))
            applied = Result("applied", member_id, step.points, step.note, {"lot_id": lot_id} if lot_id else {})
            # What the event's own row would read had it arrived after its purchase.
            if staged is not None:
                staged.mark_applied(step.source, step.event_id, applied.recorded())
            else:
                params = {"source": step.source, "event_id": step.event_id, "result": applied.recorded()}
                await conn.execute(_DEFERRED_APPLIED, params)
        else:  # pragma: no cover - the Step union is closed
            raise TypeError(f"unknown decision step {step!r}")
    if staged is not None:  # the orders as this event left them, for the group's next events
        for order_id, order in state.orders.items():
            staged.keep_order(member_id, order_id, order)
    return own_lot


async def lock_referrals(conn, member_ids: list[str]) -> None:
    """Take the referral locks of the members named (referees and referrers), in key order."""
    if member_ids:
        await conn.execute(_LOCK_REFERRALS, {"member_ids": sorted(set(member_ids))})


async def claim_referral(conn, referee: str, referrer: str, source: str, event_id: str, pair_key: str) -> bool:
    """Record that `referrer` referred `referee`; False when the referee (or the pair) has a
    referral already. Takes the pair's referral locks first (already held in a group)."""
    await lock_referrals(conn, [referee, referrer])
    params = {"referee": referee, "referrer": referrer, "source": source, "event_id": event_id, "pair_key": pair_key}
    return (await conn.execute(_CLAIM_REFERRAL, params)).first() is not None


# A re-evaluation's per-order, per-review and per-refund rows, as its fold left them.
_SYNC_ORDERS = text(
    """
    UPDATE orders o SET amount = s.amount, currency = s.currency, purchased_at = s.purchased_at,
        points_earned = s.points_earned, points_reversed = s.points_reversed, refunded_amount = s.refunded_amount,
        bonus_points = s.bonus_points, bonus_reversed = s.bonus_reversed
    FROM jsonb_to_recordset(:rows) AS s(order_id text, amount numeric, currency text, purchased_at timestamptz,
                                        points_earned bigint, points_reversed bigint, refunded_amount numeric,
                                        bonus_points bigint, bonus_reversed bigint)
    WHERE o.member_id = :member_id AND o.order_id = s.order_id
    """
).bindparams(bindparam("rows", type_=JSONB))
_CLEAR_REVIEWS = text("DELETE FROM reviews WHERE member_id = :member_id")
_SYNC_REVIEWS = text(
    """
    INSERT INTO reviews (member_id, order_id, sku, review_id, source, event_id, status, has_media, occurred_at)
    SELECT :member_id, order_id, sku, review_id, source, event_id, status, has_media, occurred_at
    FROM jsonb_to_recordset(:rows) AS s(order_id text, sku text, review_id text, source text, event_id text,
                                        status text, has_media boolean, occurred_at timestamptz)
    """
).bindparams(bindparam("rows", type_=JSONB))
_SYNC_REFUNDS = text(
    """
    UPDATE refunds r SET status = s.status, points_reversed = s.points_reversed
    FROM jsonb_to_recordset(:rows) AS s(order_id text, refund_id text, status text, points_reversed bigint)
    WHERE r.member_id = :member_id AND r.order_id = s.order_id AND r.refund_id = s.refund_id
    """
).bindparams(bindparam("rows", type_=JSONB))


async def adopt_rows(conn, member_id: str, orders: list[dict], reviews: list[dict], refunds: list[dict]) -> None:
    """Make the member's order, review and refund rows the ones a re-evaluation's fold gives
    (worker/services/fold.py), so the next event on the live path reads the same state."""
    if orders:
        await conn.execute(_SYNC_ORDERS, {"member_id": member_id, "rows": orders})
    await conn.execute(_CLEAR_REVIEWS, {"member_id": member_id})
    if reviews:
        await conn.execute(_SYNC_REVIEWS, {"member_id": member_id, "rows": reviews})
    if refunds:
        await conn.execute(_SYNC_REFUNDS, {"member_id": member_id, "rows": refunds})
