"""The version in force at an event's time decides it, on the real PostgreSQL through the real
intake: an offline till's purchase made during a double-points campaign and uploaded after the
campaign ended earns double, and the same events processed in any order, at any time, one by
one or as a batch, leave the same ledger; a late event's re-evaluation decides every event of
the history by its own version."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import text

from tests import factories as f
from tests.conftest import truncate_all
from tests.ledger_views import earned_by_event
from worker.domain.engine.language import DEFAULT_PROGRAM_PATH
from worker.domain.program import DEFAULT_PROGRAM
from worker.domain.reevaluation import points_by_event
from worker.services import intake
from worker.services.audit import audit_all
from worker.services.program_versions import ProgramInForce, StoredVersions, publish

SHANGHAI = ZoneInfo("Asia/Shanghai")
MEMBER = "TILL1"
DEFAULT_TOML = DEFAULT_PROGRAM_PATH.read_text(encoding="utf-8")


def day(d: int, hour: int = 0) -> datetime:
    """December 2026, program-local (none of these days is the 8th, the member day)."""
    return datetime(2026, 12, d, hour, tzinfo=SHANGHAI)


def version_text(version: str, rate: str) -> str:
    """The built-in program as a version earning `rate` points per 1.00."""
    return DEFAULT_TOML.replace('version = "default-1"', f'version = "{version}"').replace(
        'effect = { kind = "per_amount", rate = "1"', f'effect = {{ kind = "per_amount", rate = "{rate}"'
    )


async def publish_campaign(db) -> None:
    """V1 (1 point per 1.00) from the 1st, V2 doubling from the 10th, V3 back to 1 from the 12th,
    all published on the 1st (a version never starts in the past)."""
    for version, rate, start in (("v1", "1", day(1)), ("v2-double", "2", day(10)), ("v3", "1", day(12))):
        await publish(db, version_text(version, rate), f"{version}.toml", by="test", now=day(1), effective_from=start)


async def timeline_at(db, now: datetime):
    """The timeline a worker process holds at `now`, read as its ProgramInForce reads it."""
    programs = ProgramInForce(DEFAULT_PROGRAM, StoredVersions(db), reload_s=5)
    await programs.refresh(now)
    return programs


# Purchases of 50.00 on the 9th (V1), the 11th (V2: the offline till) and the 12th (V3): the
# member stays far from Silver, so no nudge depends on the order.
def events() -> list[dict]:
    return [
        f.purchase(MEMBER, "50.00", order_id=f"o-{d}", occurred_at=day(d, 10).isoformat(), event_id=f"p-{d}")
        for d in (9, 11, 12)
    ]


async def ledger_state(db) -> dict[str, Any]:
    """What the events decided: balances and rule state, points per event and rule, lots,
    order rows, and each event's status and the version recorded for it (no ids, no
    wall-clock times, no entry counts: corrections add entries that depend on arrival order)."""
    async with db.connect() as conn:

        async def q(sql: str) -> list:
            return [tuple(r) for r in (await conn.execute(text(sql))).all()]

        entries = (
            (
                await conn.execute(
                    text(
                        "SELECT source, event_id, kind, qualifying_points, rules FROM ledger_entries ORDER BY entry_id"
                    )
                )
            )
            .mappings()
            .all()
        )
        return {
            "members": await q(
                "SELECT member_id, tier, available_points, pending_points, qualifying_points, lifetime_points, "
                "first_purchase_at, rule_state FROM members ORDER BY member_id"
            ),
            "points": points_by_event(entries),
            "lots": await q("SELECT sum(remaining) FROM lots"),
            "orders": await q("SELECT order_id, amount, points_earned, bonus_points FROM orders ORDER BY order_id"),
            "processed": await q("SELECT event_id, status, program_version FROM processed_events ORDER BY event_id"),
        }


async def test_a_purchase_of_the_11th_uploaded_on_the_13th_earns_by_the_campaign_of_the_11th(db):
    # Given the campaign's versions, and the purchases of the 9th and 12th already applied.
    await publish_campaign(db)
    early, offline, later = events()
    on_the_12th = await timeline_at(db, day(12, 20))
    for event in (early, later):
        assert (await intake.process(db, on_the_12th.timeline, event, now=day(12, 20), strict=True)).status == "applied"

    # When the till comes back online on the 13th, after V3 took over, and uploads the 11th.
    on_the_13th = await timeline_at(db, day(13, 9))
    outcome = await intake.process(db, on_the_13th.timeline, offline, now=day(13, 9), strict=True)

    # Then it earns by V2, the version in force on the 11th: 2 x 50.00, while V3 is in force.
    assert on_the_13th.version == "v3"
    assert (outcome.status, outcome.points) == ("applied", 100)
    assert await earned_by_event(db, MEMBER) == {"p-9": 150, "p-11": 100, "p-12": 50}  # p-9 with the +100 bonus
    async with db.connect() as conn:
        recorded = (
            await conn.execute(
                text(
                    "SELECT e.event_id, e.rules -> 0 ->> 'program_version', p.program_version FROM ledger_entries e "
                    "JOIN processed_events p USING (source, event_id) WHERE e.kind = 'earn' ORDER BY e.event_id"
                )
            )
        ).all()
    assert [tuple(r) for r in recorded] == [
        ("p-11", "v2-double", "v2-double"),
        ("p-12", "v3", "v3"),
        ("p-9", "v1", "v1"),
    ]
    assert (await audit_all(db)).clean


async def test_the_same_events_in_any_order_at_any_processing_time_leave_the_same_ledger(db):
    orders = {
        "in order, each on its day": [(e, day(int(e["event_id"][2:]), 20)) for e in events()],
        "the 11th last, on the 13th": [(e, day(13, 9)) for e in (events()[0], events()[2], events()[1])],
        "newest first, a month later": [(e, day(31, 9) + timedelta(days=14)) for e in reversed(events())],
        "the 12th, the 9th, then the 11th twice": [
            (e, day(31, 9)) for e in (events()[2], events()[0], events()[1], events()[1])
        ],
    }
    states: dict[str, dict] = {}
    for name, deliveries in orders.items():
        await truncate_all(db)
        await publish_campaign(db)
        for event, processed_at in deliveries:
            programs = await timeline_at(db, processed_at)
            outcome = await intake.process(db, programs.timeline, event, now=processed_at, strict=True)
            assert outcome.status in ("applied", "duplicate"), (name, outcome)
        assert (await audit_all(db)).clean, name
        states[name] = await ledger_state(db)
    # And as one batch message, shuffled, in January.
    await truncate_all(db)
    await publish_campaign(db)
    in_january = await timeline_at(db, day(31) + timedelta(days=10))
    batch = [events()[1], events()[2], events()[0]]
    outcomes = await intake.process_batch(db, in_january.timeline, batch, now=day(31) + timedelta(days=10), strict=True)
    assert [o.status for o in outcomes] == ["applied"] * 3
    states["as a batch in January"] = await ledger_state(db)

    expected = states["in order, each on its day"]
    assert expected["points"] == {
        ("pos", "p-9"): {"purchase": 50, "first_purchase": 100},
        ("pos", "p-11"): {"purchase": 100},
        ("pos", "p-12"): {"purchase": 50},
    }
    assert expected["processed"] == [
        ("p-11", "applied", "v2-double"),
        ("p-12", "applied", "v3"),
        ("p-9", "applied", "v1"),
    ]
    for name, state in states.items():
        assert state == expected, name


async def test_a_late_event_re_evaluates_each_event_by_its_own_version(db):
    # Given the purchases of the 11th and the 12th applied, the first with the first-purchase
    # bonus; then the purchase of the 9th arrives on the 13th, late: the member's first.
    await publish_campaign(db)
    early, offline, later = events()
    on_the_13th = await timeline_at(db, day(13, 9))
    for event in (offline, later, early):
        await intake.process(db, on_the_13th.timeline, event, now=day(13, 9), strict=True)

    # Then the re-evaluation moves the bonus to the 9th and re-decides nothing else: the 11th
    # keeps V2's double, the 12th V3's single rate (one program for all would change one).
    assert await earned_by_event(db, MEMBER) == {"p-9": 150, "p-11": 100, "p-12": 50}
    async with db.connect() as conn:
        re_evaluated = (
            await conn.execute(text("SELECT result -> 're_evaluated' FROM processed_events WHERE event_id = 'p-9'"))
        ).scalar_one()
    assert re_evaluated == {"events": 3, "corrected_events": 2, "points": 0}  # the bonus moved: 100 - 100
    assert (await audit_all(db)).clean
