"""The outbox dispatcher: claim due notifications, render, deliver, record the outcome.

Three short steps, so no transaction stays open while a receiver is called:
1. claim: one transaction takes up to a batch of due rows (FOR UPDATE SKIP LOCKED, so
   concurrent dispatchers split the work), drops what is no longer true (a tier nudge is
   worked out again from the member's points now), applies quiet hours, the daily cap and
   the nudges' quiet period, renders the text and marks the rest 'sending' with a lease;
   then commits.
2. deliver: every claimed row is sent concurrently, each bounded by the channel timeout.
3. record: one transaction marks each row sent, failed (retried later with exponential
   backoff) or dead (after the program's max_attempts), guarded by the attempt number so a
   dispatcher whose lease ran out cannot overwrite a newer attempt's outcome.
A dispatcher that dies between 1 and 3 leaves rows 'sending'; they are claimed again once
their lease has passed. Receivers dedupe on delivery_id, which never changes.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import structlog
from sqlalchemy import bindparam, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.types import Text

from worker import metrics
from worker.domain import delivery as rules
from worker.domain import messages
from worker.domain.engine import rules_of
from worker.domain.messages import Catalog, RenderError
from worker.domain.program import Program
from worker.outbox.channels import Channel, Delivery, DeliveryError
from worker.store import outbox

log = structlog.get_logger(__name__)

# Rows claimed per transaction: large enough to keep the receiver busy, small enough that
# a claim transaction (and the row locks it holds) stays in the low milliseconds.
BATCH_SIZE = 100
# Sends in flight at once per dispatcher; matches the webhook client's connection limit.
SEND_CONCURRENCY_MAX = 32
# Lease on a claimed row beyond the time its batch can take to send; after it, another
# dispatcher may claim the row again (this one is presumed dead).
LEASE_MARGIN_S = 60
# One dispatch run stops claiming new batches after this long, so runs triggered every
# few seconds by the scheduler do not pile up behind a large backlog.
RUN_BUDGET_S = 4.0

_CLAIM = text(
    """
    SELECT n.notification_id, n.delivery_id::text AS delivery_id, n.member_id, n.kind, n.params,
           n.attempts, n.released_at, n.created_at, m.locale AS member_locale, m.erased_at,
           n.dedupe_key, m.tier AS member_tier, m.qualifying_points - m.qualifying_baseline AS member_points
    FROM notifications n LEFT JOIN members m ON m.member_id = n.member_id
    WHERE (n.status IN ('pending', 'failed')
           AND (n.next_attempt_at IS NULL OR n.next_attempt_at <= :now)
           AND (n.deliver_after IS NULL OR n.deliver_after <= :now))
       OR (n.status = 'sending' AND n.lease_until <= :now)
    ORDER BY n.notification_id
    LIMIT :limit
    FOR UPDATE OF n SKIP LOCKED
    """
)

# Serialises the cap check per member across dispatchers: the count and the release of a
# member's promotional rows happen under this lock (held to the end of the claim).
_LOCK_MEMBER_CAP = text("SELECT pg_advisory_xact_lock(hashtextextended('notifications-cap:' || :member_id, 0))")

_PROMOTIONAL_TODAY = text(
    """
    SELECT member_id, count(*) AS n FROM notifications
    WHERE member_id = ANY(:member_ids) AND kind = ANY(:kinds)
      AND released_at >= :day_start AND released_at < :day_end AND status <> 'suppressed'
    GROUP BY member_id
    """
).bindparams(bindparam("member_ids", type_=ARRAY(Text)), bindparam("kinds", type_=ARRAY(Text)))

_LAST_NUDGES = text(
    """
    SELECT member_id, max(released_at) AS released_at FROM notifications
    WHERE member_id = ANY(:member_ids) AND kind = 'tier_nudge' AND status IN ('sending', 'sent', 'failed')
      AND released_at > :since
    GROUP BY member_id
    """
).bindparams(bindparam("member_ids", type_=ARRAY(Text)))


@dataclass
class DispatchReport:
    claimed: int = 0
    sent: int = 0
    failed: int = 0
    dead: int = 0
    held: int = 0
    suppressed: int = 0

    def add(self, other: DispatchReport) -> None:
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def as_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


@dataclass
class _Claim:
    deliveries: list[Delivery] = field(default_factory=list)
    report: DispatchReport = field(default_factory=DispatchReport)


def lease_s(program: Program, batch_size: int) -> float:
    waves = math.ceil(batch_size / SEND_CONCURRENCY_MAX)
    return LEASE_MARGIN_S + waves * program.notifications.webhook_timeout_ms / 1000


async def claim(
    engine: AsyncEngine, program: Program, catalog: Catalog, channel_name: str, now: datetime, batch_size: int
) -> _Claim:
    out = _Claim()
    policy, zone = program.notifications, program.zone
    tiers = rules_of(program).tiers
    levels = [(level.name, int(level.threshold)) for level in tiers.levels] if tiers.basis == "points" else []
    lease_until = now + timedelta(seconds=lease_s(program, batch_size))
    async with engine.begin() as conn:
        rows = (await conn.execute(_CLAIM, {"now": now, "limit": batch_size})).mappings().all()
        if not rows:
            return out
        deciding = sorted(
            {r["member_id"] for r in rows if r["released_at"] is None and rules.is_promotional(r["kind"])}
        )
        for member_id in deciding:
            await conn.execute(_LOCK_MEMBER_CAP, {"member_id": member_id})
        today: dict[str, int] = {}
        if deciding:
            day_start, day_end = rules.local_day(zone, now)
            counted = await conn.execute(
                _PROMOTIONAL_TODAY,
                {
                    "member_ids": deciding,
                    "kinds": sorted(rules.PROMOTIONAL_KINDS),
                    "day_start": day_start,
                    "day_end": day_end,
                },
            )
            today = {r.member_id: r.n for r in counted}
        nudged = sorted({r["member_id"] for r in rows if r["released_at"] is None and r["kind"] == "tier_nudge"})
        last_nudge: dict[str, datetime] = {}
        if nudged and program.nudge.quiet_period_days > 0:
            found = await conn.execute(
                _LAST_NUDGES,
                {"member_ids": nudged, "since": now - timedelta(days=program.nudge.quiet_period_days)},
            )
            last_nudge = {r.member_id: r.released_at for r in found}
        updates = []
        for row in rows:
            update = {
                "notification_id": row["notification_id"],
                "status": "sending",
                "params": dict(row["params"]),
                "attempts": row["attempts"],
                "lease_until": None,
                "next_attempt_at": None,
                "released_at": row["released_at"],
                "last_attempt_at": None,
                "channel": channel_name,
                "locale": None,
                "text": None,
                "last_error": None,
            }
            updates.append(update)
            if row["erased_at"] is not None:
                update.update(status="suppressed", last_error="member erased", channel=None)
                out.report.suppressed += 1
                continue
            stale = None
            if row["kind"] == "tier_nudge":
                nudge = rules.nudge_now(
                    row["params"], row["member_tier"], row["member_points"] or 0, levels, program.nudge.window_points
                )
                update["params"], stale = nudge.params, nudge.reason
            elif row["kind"] == "member_day":
                about = rules.member_day_of(row["dedupe_key"], row["created_at"], zone)
                stale = rules.member_day_stale(about, now, zone)
            if stale is not None:
                update.update(status="suppressed", last_error=stale, channel=None)
                out.report.suppressed += 1
                continue
            if row["released_at"] is None:
                decision = rules.decide(policy, zone, row["kind"], now, today.get(row["member_id"], 0))
                if decision.action == "hold":
                    update.update(
                        status="pending",
                        next_attempt_at=decision.until,
                        last_error=f"held: {decision.reason}",
                        channel=None,
                    )
                    out.report.held += 1
                    continue
                if decision.action == "suppress":
                    update.update(status="suppressed", last_error=decision.reason, channel=None)
                    out.report.suppressed += 1
                    continue
                if row["kind"] == "tier_nudge":
                    quiet = rules.nudge_quiet_reason(
                        last_nudge.get(row["member_id"]), program.nudge.quiet_period_days, now
                    )
                    if quiet is not None:
                        update.update(status="suppressed", last_error=quiet, channel=None)
                        out.report.suppressed += 1
                        continue
                    last_nudge[row["member_id"]] = now
                update["released_at"] = now
                if rules.is_promotional(row["kind"]):
                    today[row["member_id"]] = today.get(row["member_id"], 0) + 1
            locale = catalog.resolve_locale(row["member_locale"], program.default_locale)
            attempt = row["attempts"] + 1
            update.update(attempts=attempt, last_attempt_at=now, locale=locale)
            try:
                body = catalog.render(row["kind"], update["params"], locale)
            except (RenderError, KeyError, ValueError) as error:
                update.update(status="dead", last_error=f"render: {error}", channel=None)
                out.report.dead += 1
                continue
            update.update(lease_until=lease_until, text=body)
            out.deliveries.append(
                Delivery(
                    delivery_id=row["delivery_id"],
                    notification_id=row["notification_id"],
                    member_id=row["member_id"],
                    kind=row["kind"],
                    locale=locale,
                    text=body,
                    params=dict(update["params"]),
                    attempt=attempt,
                    created_at=row["created_at"].isoformat(),
                )
            )
        await outbox.update_claimed(conn, updates)
    out.report.claimed = len(rows)
    return out


async def deliver(channel: Channel, deliveries: list[Delivery], timeout_s: float) -> list[str | None]:
    """Send all concurrently; the error text for each failed delivery, None for each success."""
    gate = asyncio.Semaphore(SEND_CONCURRENCY_MAX)

    async def one(item: Delivery) -> str | None:
        async with gate:
            try:
                # A hard bound on top of the channel's own timeouts, so nothing can hang a run.
                async with asyncio.timeout(timeout_s + 1):
                    await channel.send(item)
            except DeliveryError as error:
                return str(error)
            except TimeoutError:
                return f"timeout: no answer within {timeout_s:g} s"
            except Exception as error:  # a channel bug must not lose the batch's outcomes
                log.exception("notification_channel_error", delivery_id=item.delivery_id)
                return f"channel error: {type(error).__name__}: {error}"
            return None

    return list(await asyncio.gather(*(one(d) for d in deliveries)))


async def record(
    engine: AsyncEngine, program: Program, deliveries: list[Delivery], errors: list[str | None], now: datetime
) -> DispatchReport:
    report = DispatchReport()
    updates = []
    for item, error in zip(deliveries, errors, strict=True):
        if error is None:
            updates.append(
                {
                    "notification_id": item.notification_id,
                    "attempts": item.attempt,
                    "status": "sent",
                    "sent_at": now,
                    "last_error": None,
                    "next_attempt_at": None,
                }
            )
            report.sent += 1
            continue
        after = rules.after_failure(item.attempt, program.notifications.max_attempts, now)
        updates.append(
            {
                "notification_id": item.notification_id,
                "attempts": item.attempt,
                "status": after.status,
                "sent_at": None,
                "last_error": error,
                "next_attempt_at": after.next_attempt_at,
            }
        )
        if after.status == "dead":
            report.dead += 1
        else:
            report.failed += 1
        log.warning(
            "notification_failed",
            notification_id=item.notification_id,
            delivery_id=item.delivery_id,
            attempt=item.attempt,
            status=after.status,
            error=error,
        )
    if updates:
        async with engine.begin() as conn:
            await outbox.record_attempts(conn, updates)
        for item, update in zip(deliveries, updates, strict=True):
            metrics.count_delivery(item.kind, update["status"])
    return report


async def dispatch_once(
    engine: AsyncEngine,
    program: Program,
    channel: Channel,
    *,
    clock: Callable[[], datetime],
    batch_size: int = BATCH_SIZE,
    catalog: Catalog | None = None,
) -> DispatchReport:
    """Claim, deliver and record one batch."""
    catalog = catalog or messages.catalog()
    claimed = await claim(engine, program, catalog, channel.name, clock(), batch_size)
    report = claimed.report
    if claimed.deliveries:
        errors = await deliver(channel, claimed.deliveries, program.notifications.webhook_timeout_ms / 1000)
        report.add(await record(engine, program, claimed.deliveries, errors, clock()))
    return report


async def dispatch(
    engine: AsyncEngine,
    program: Program,
    channel: Channel,
    *,
    clock: Callable[[], datetime],
    batch_size: int = BATCH_SIZE,
    budget_s: float = RUN_BUDGET_S,
    catalog: Catalog | None = None,
) -> DispatchReport:
    """Batches until nothing is due or the time budget is spent."""
    total = DispatchReport()
    started = time.monotonic()
    while True:
        report = await dispatch_once(engine, program, channel, clock=clock, batch_size=batch_size, catalog=catalog)
        total.add(report)
        if report.claimed < batch_size or time.monotonic() - started >= budget_s:
            return total


async def retry(engine: AsyncEngine, notification_id: int | None = None) -> list[int]:
    """Queue failed or dead notifications again, now, with a fresh attempt count: one by id,
    or all of them. The delivery id stays the same, so receivers can still dedupe."""
    async with engine.begin() as conn:
        return await outbox.retry(conn, notification_id)
