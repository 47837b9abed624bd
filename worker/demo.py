"""`loyalty demo`: the real worker on an embedded PostgreSQL and an in-process broker.

The scenario is a month of one retailer's traffic across POS, web shop, app and mini program,
chosen to show each earning rule once: signup, a check-in streak, a first purchase, member
day, a review with photos, a referral, a refund, a birthday purchase that lands a member 400
points below Gold, the Gold upgrade, a duplicate delivery and an invalid event.
"""

from __future__ import annotations

import asyncio
import itertools
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from worker.config import Settings
from worker.domain.explain import describe_rules
from worker.domain.program import DEFAULT_PROGRAM, Program

ALICE, BOB, CAROL = "M1001", "M1002", "M1003"


def _event(n: int, kind: str, source: str, member: str, at: str, **payload: Any) -> dict:
    return {
        "event_id": f"{source}-{n:05d}",
        "type": kind,
        "source": source,
        "member_id": member,
        "occurred_at": f"2026-10-{at}+08:00",
        "payload": payload,
    }


def scenario() -> list[dict]:
    events = [
        _event(1, "signup", "app", ALICE, "01T09:00:00", birthday="1990-10-20", locale="en"),
    ]
    for day in range(1, 8):
        events.append(_event(10 + day, "check_in", "mini_program", ALICE, f"{day:02d}T08:30:00"))
    events += [
        _event(
            20,
            "purchase",
            "pos",
            ALICE,
            "03T18:20:00",
            order_id="P-1001",
            amount="350.00",
            currency="CNY",
            items=[{"sku": "TEA-01", "category": "beverage", "amount": "350.00", "quantity": 2}],
        ),
        # The 8th is member day: double points.
        _event(21, "purchase", "ecommerce", ALICE, "08T21:05:00", order_id="W-2001", amount="1200.00", currency="CNY"),
        _event(
            22,
            "review",
            "app",
            ALICE,
            "09T10:00:00",
            review_id="R-1",
            order_id="W-2001",
            sku="JACKET-7",
            has_media=True,
        ),
        # Bob is referred before his own signup arrives: the referral enrolls him.
        _event(23, "referral", "app", ALICE, "12T12:00:00", referee_member_id=BOB),
        _event(24, "signup", "app", BOB, "12T12:01:00", locale="zh-Hans"),
        _event(25, "purchase", "mini_program", BOB, "13T15:00:00", order_id="MP-77", amount="88.00", currency="CNY"),
        # A quarter of the member-day order comes back.
        _event(26, "refund", "ecommerce", ALICE, "15T11:00:00", order_id="W-2001", refund_id="RF-1", amount="300.00"),
        # Alice's birthday: triple points on top of her Silver multiplier.
        _event(27, "purchase", "pos", ALICE, "20T19:45:00", order_id="P-1002", amount="536.12", currency="CNY"),
        _event(28, "purchase", "pos", ALICE, "25T13:10:00", order_id="P-1003", amount="340.00", currency="CNY"),
        _event(30, "purchase", "pos", CAROL, "05T10:00:00", order_id="P-3001", amount="99.90", currency="CNY"),
        _event(31, "check_in", "app", CAROL, "05T10:05:00"),
    ]
    duplicate = dict(events[-2])  # the POS resends an event it already sent
    invalid = _event(32, "purchase", "pos", CAROL, "06T10:00:00", order_id="P-3002", amount="12.345", currency="CNY")
    return events + [duplicate, invalid]


@dataclass
class DemoResult:
    members: list[dict]
    history: list[dict]
    notifications: list[dict]
    rejected: list[dict]
    outcomes: dict[str, int]
    audit_clean: bool


async def _upgrade(url: str) -> None:
    from db import migrate

    await migrate.upgrade(url)


async def _dispatch(url: str, program: Program) -> None:
    """Deliver the outbox through the log channel, as a worker's scheduled dispatcher would."""
    from db.engine import create_engine
    from worker.outbox.channels import LogChannel
    from worker.outbox.dispatch import dispatch
    from worker.runtime import utc_now

    engine = create_engine(url, pool_size=1)
    try:
        await dispatch(engine, program, LogChannel(), clock=utc_now, budget_s=60)
    finally:
        await engine.dispose()


async def _collect(url: str, program: Program) -> DemoResult:
    from db.engine import create_engine
    from worker.services import audit, members, rejected

    engine = create_engine(url, pool_size=2)
    try:
        views = [await members.member_view(engine, program, m) for m in (ALICE, BOB, CAROL)]
        return DemoResult(
            members=[v for v in views if v],
            history=await members.history(engine, ALICE),
            notifications=await members.notification_list(engine, program),
            rejected=await rejected.list_rejected(engine),
            outcomes={},
            audit_clean=(await audit.audit_all(engine)).clean,
        )
    finally:
        await engine.dispose()


def run_demo(data_dir: Path | None = None, program: Program = DEFAULT_PROGRAM) -> DemoResult:
    import pgserver

    from worker import metrics
    from worker.broker import build_broker
    from worker.drain import drain

    with tempfile.TemporaryDirectory(prefix="loyalty-demo-") as tmp:
        server = pgserver.get_server(Path(data_dir or tmp), cleanup_mode="stop")
        try:
            socket_dir = Path(server.get_uri().split("host=", 1)[1])
            url = f"postgresql+asyncpg://postgres@/postgres?host={socket_dir}"
            asyncio.run(_upgrade(url))
            broker = build_broker(Settings(database_url=url, strict_checks=True), stub=True, program=program)
            before = metrics.outcome_totals()
            send = broker.get_actor("process_event").send
            # The story day by day: one thread applies the day's events in order, then the
            # outbox goes out as the scheduler's dispatcher would send it, so each notice says
            # what was true that day (a nudge is written when it is sent).
            for _, day in itertools.groupby(scenario(), key=lambda event: event["occurred_at"][:10]):
                for event in day:
                    send(event)
                drain(broker, timeout_s=120, threads=1)
                asyncio.run(_dispatch(url, program))
            after = metrics.outcome_totals()
            result = asyncio.run(_collect(url, program))
            result.outcomes = {
                k: after.get(k, 0) - before.get(k, 0) for k in after if after.get(k, 0) - before.get(k, 0)
            }
            return result
        finally:
            server.cleanup()


def format_summary(result: DemoResult) -> str:
    lines = ["Loyalty demo: one month across POS, web shop, app and mini program", ""]
    total = sum(result.outcomes.values())
    lines.append(
        f"Events: {total} processed - "
        + ", ".join(f"{result.outcomes.get(k, 0)} {k}" for k in ("applied", "duplicate", "deferred", "rejected"))
    )
    lines += ["", f"{'member':<8} {'tier':<8} {'available':>9} {'qualifying':>10}  next tier"]
    for m in result.members:
        nxt = f"{m['points_to_next_tier']} points to {m['next_tier']}" if m["next_tier"] else "top tier"
        lines.append(
            f"{m['member_id']:<8} {m['tier']:<8} {m['available_points']:>9} {m['qualifying_points']:>10}  {nxt}"
        )
    lines += ["", f"Why {ALICE} has her points (member history):"]
    for e in result.history:
        why = describe_rules(e["rules"])
        lines.append(f"  {e['occurred_at'][:10]}  {e['kind']:<7} {e['points']:>+6}  {e['event']['type']:<8} {why}")
    lines += ["", "Notifications (outbox):"]
    for n in result.notifications:
        why = f" ({n['last_error']})" if n["status"] == "suppressed" and n["last_error"] else ""
        lines.append(f"  {n['member_id']}  {n['kind']:<13} {n['status']:<5} {n['text']}{why}")
    lines += ["", "Rejected events:"]
    for r in result.rejected:
        lines.append(f"  {r['source']}/{r['event_id']}: {r['reason']}")
    lines += ["", f"Audit: balances {'match' if result.audit_clean else 'DO NOT match'} entries and lots."]
    return "\n".join(lines)
