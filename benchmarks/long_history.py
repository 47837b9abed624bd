"""Benchmark phase: one member with a long history, then one late event.

A member's 10,000 events (a year of purchases, check-ins, reviews and refunds, in occurrence
order) go through the batch path, 1,000 per message as a till's backfill would send them.
Then, in turns, one event on time, one dated an hour before the member's latest (an app's
retry) and one dated a day before it (an offline till's upload: the member's day of about 27
events comes after it, and a re-evaluation folds them all) are applied, each in a transaction of
its own, through the same intake service the worker runs, in this process, so that each is
timed from its start to its commit without the queue's polling in the figure. A late event's
extra time is the median of the late ones less the median of the in-order ones; the target is
20 ms.
"""

from __future__ import annotations

import asyncio
import random
import statistics
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from db.engine import create_engine
from worker.domain.program import DEFAULT_PROGRAM
from worker.services import intake

HISTORY_EVENTS = 10_000
# One batch message's events (intake.BATCH_EVENTS_MAX).
BATCH_EVENTS = 1_000
# Rounds of (in-order event, an hour late, a day late) timed; the medians are reported.
ROUNDS = 5
TARGET_MS = 20.0
# How late the late events are: an app's retry, and an offline till that uploads the next day.
LATE_BY = {"hour": timedelta(hours=1), "day": timedelta(days=1)}


def _history(member: str, prefix: str, now: datetime, rng: random.Random) -> tuple[list[dict], datetime]:
    """The member's events over the past year, in occurrence order, and the latest one's time."""
    step = timedelta(days=365) / HISTORY_EVENTS
    at = now - timedelta(days=367)
    orders: list[tuple[str, Decimal]] = []
    events = []
    for n in range(HISTORY_EVENTS):
        at += step
        roll = rng.random()
        base = {"event_id": f"{prefix}-{n}", "member_id": member, "occurred_at": at.isoformat()}
        if roll < 0.6 or not orders:
            amount = Decimal(rng.randint(500, 50_000)) / 100
            order_id = f"{prefix}-o{n}"
            orders.append((order_id, amount))
            item = {"sku": f"SKU{rng.randrange(500):04d}", "category": "grocery", "amount": str(amount), "quantity": 1}
            payload = {"order_id": order_id, "amount": str(amount), "currency": "CNY", "items": [item]}
            events.append({**base, "type": "purchase", "source": "pos", "payload": payload})
        elif roll < 0.85:
            events.append({**base, "type": "check_in", "source": "app", "payload": {}})
        elif roll < 0.95:
            order_id, _ = rng.choice(orders[-50:])
            payload = {"review_id": f"{prefix}-rv{n}", "order_id": order_id, "sku": "SKU0001", "has_media": False}
            events.append({**base, "type": "review", "source": "app", "payload": payload})
        else:
            order_id, amount = rng.choice(orders[-50:])
            part = max((amount * Decimal("0.2")).quantize(Decimal("0.01")), Decimal("0.01"))
            payload = {"order_id": order_id, "refund_id": f"{prefix}-rf{n}", "amount": str(part)}
            events.append({**base, "type": "refund", "source": "pos", "payload": payload})
    return events, at


def _purchase(member: str, event_id: str, at: datetime) -> dict:
    item = {"sku": "SKU0002", "category": "grocery", "amount": "88.00", "quantity": 1}
    return {
        "event_id": event_id,
        "type": "purchase",
        "source": "pos",
        "member_id": member,
        "occurred_at": at.isoformat(),
        "payload": {"order_id": f"{event_id}-o", "amount": "88.00", "currency": "CNY", "items": [item]},
    }


async def _timed(engine, raw: dict, now: datetime) -> float:
    started = time.perf_counter()
    outcome = await intake.process(engine, DEFAULT_PROGRAM, raw, now=now)
    elapsed_ms = (time.perf_counter() - started) * 1000
    if outcome.status != "applied":
        raise RuntimeError(f"long history: {raw['event_id']} was {outcome.status}: {outcome.reason}")
    return elapsed_ms


async def _run(url: str, run_id: str) -> dict:
    rng = random.Random(20261207)
    now = datetime.now(UTC)
    member = f"LONG{run_id}"
    events, latest = _history(member, f"lh{run_id}", now, rng)
    engine = create_engine(url, pool_size=2, max_overflow=0)
    try:
        started = time.perf_counter()
        for start in range(0, len(events), BATCH_EVENTS):
            outcomes = await intake.process_batch(
                engine, DEFAULT_PROGRAM, events[start : start + BATCH_EVENTS], now=now
            )
            refused = [o for o in outcomes if o.status == "rejected"]
            if refused:
                raise RuntimeError(f"long history: {len(refused)} events rejected, first: {refused[0].reason}")
        load_s = time.perf_counter() - started
        in_order_ms: list[float] = []
        late_ms: dict[str, list[float]] = {name: [] for name in LATE_BY}
        for n in range(ROUNDS):
            latest += timedelta(minutes=1)
            in_order_ms.append(await _timed(engine, _purchase(member, f"lh{run_id}-on-time-{n}", latest), now))
            for name, by in LATE_BY.items():
                raw = _purchase(member, f"lh{run_id}-late-{name}-{n}", latest - by)
                late_ms[name].append(await _timed(engine, raw, now))
    finally:
        await engine.dispose()
    in_order = statistics.median(in_order_ms)
    result: dict = {
        "history_events": HISTORY_EVENTS,
        "load_s": round(load_s, 2),
        "in_order_ms": round(in_order, 2),
        "in_order_all_ms": [round(m, 2) for m in in_order_ms],
        "target_ms": TARGET_MS,
    }
    for name, timings in late_ms.items():
        extra = statistics.median(timings) - in_order
        result[f"late_{name}_ms"] = round(statistics.median(timings), 2)
        result[f"late_{name}_all_ms"] = [round(m, 2) for m in timings]
        result[f"extra_{name}_ms"] = round(extra, 2)
        result[f"extra_{name}_vs_target"] = round(extra / TARGET_MS, 3)
    result["ids"] = [e["event_id"] for e in events] + [
        f"lh{run_id}-{kind}-{n}" for n in range(ROUNDS) for kind in ("on-time", *(f"late-{k}" for k in LATE_BY))
    ]
    return result


def run(url: str, run_id: str) -> dict:
    """The phase's figures (medians of ROUNDS events each), on the benchmark's database."""
    return asyncio.run(_run(url, run_id))
