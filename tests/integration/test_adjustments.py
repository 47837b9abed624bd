"""Operators' adjustments on real PostgreSQL: the CLI/API service and the queued `adjustment`
event share one path; exact lots, refusals, tiers, exactly-once, history, report and audit."""

from __future__ import annotations

import itertools
from datetime import date, datetime, timedelta

import pytest
from sqlalchemy import text

from tests.conftest import NOW
from tests.factories import event, purchase
from worker.domain.errors import UnknownMember
from worker.domain.program import DEFAULT_PROGRAM as P
from worker.domain.program_timeline import timeline_of
from worker.services import intake, members
from worker.services.adjustments import Adjustment, AdjustmentRefused, adjust_now
from worker.services.audit import audit_all
from worker.services.erasure import erase_member
from worker.services.member_reads import history_page
from worker.services.report import build_report

PROGRAMS = timeline_of(P)


async def process(db, raw):
    return await intake.process(db, P, raw, now=NOW, strict=True)


async def member_with_two_lots(db, member_id="M"):
    """400 points expiring 2027-01-10 (300 + the first-purchase 100) and 160 expiring 2027-06-01."""
    await process(db, purchase(member_id, "300.00", order_id="o1", occurred_at="2026-01-10T10:00:00+08:00"))
    await process(db, purchase(member_id, "160.00", order_id="o2", occurred_at="2026-06-01T10:00:00+08:00"))


_seconds = itertools.count()


async def adjust(db, points, reason="complaint 8812", member_id="M", **kw):
    """One adjustment through the CLI's and API's service, a second after the one before (as an
    operator makes them: each after the member's latest event, so none is late)."""
    source = kw.pop("source", "cli")
    event_id = kw.pop("event_id", None)
    asked = Adjustment(member_id, points, reason, kw.pop("by", "alice"), **kw)
    now = NOW + timedelta(seconds=next(_seconds))
    return await adjust_now(db, PROGRAMS, asked, source=source, now=now, event_id=event_id)


def adjustment(points, event_id, member_id="M", at="2026-11-20T10:00:00+08:00", **payload):
    payload.setdefault("reason", "crm goodwill")
    payload.setdefault("by", "crm-agent-7")
    return event("adjustment", member_id, at, source="crm", event_id=event_id, points=points, **payload)


async def rows(db, sql, **params):
    async with db.connect() as conn:
        return [tuple(r) for r in await conn.execute(text(sql), params)]


async def lots(db, member_id="M"):
    return await rows(
        db,
        "SELECT points, remaining, expires_at FROM lots WHERE member_id = :m ORDER BY expires_at, lot_id",
        m=member_id,
    )


async def view(db, member_id="M"):
    return await members.member_view(db, P, member_id)


async def assert_clean(db):
    report = await audit_all(db)
    assert report.clean, report.differences


def local(*args) -> datetime:
    return datetime(*args, tzinfo=P.zone)


async def test_a_credit_with_expires_on_is_a_lot_of_its_own_with_who_and_why(db):
    await member_with_two_lots(db)

    done = await adjust(db, 500, expires_on="2027-03-31")

    assert (done["status"], done["points"], done["available_points"]) == ("applied", 500, 1060)
    assert (done["by"], done["reason"], done["expires_on"], done["taken"]) == (
        "alice",
        "complaint 8812",
        "2027-03-31",
        [],
    )
    assert datetime.fromisoformat(done["lot"]["expires_at"]) == local(2027, 3, 31)
    assert done["lot"]["expires_on"] == "2027-03-31"
    assert await lots(db) == [
        (400, 400, local(2027, 1, 10, 10)),
        (500, 500, local(2027, 3, 31)),
        (160, 160, local(2027, 6, 1, 10)),
    ]
    assert await rows(
        db,
        "SELECT kind, points, qualifying_points, source, event_type, rules FROM ledger_entries WHERE kind = 'adjust'",
    ) == [
        (
            "adjust",
            500,
            0,
            "cli",
            "adjustment",
            [
                {
                    "rule": "adjustment",
                    "points": 500,
                    "reason": "complaint 8812",
                    "by": "alice",
                    "qualifying": False,
                    "expires_on": "2027-03-31",
                }
            ],
        )
    ]
    state = await view(db)
    assert (state["available_points"], state["qualifying_points"], state["lifetime_points"]) == (1060, 560, 560)
    assert await rows(db, "SELECT kind, params FROM notifications WHERE kind = 'points_adjusted'") == [
        ("points_adjusted", {"points": "+500", "available_points": 1060, "operator": True})
    ]
    [entry] = [e for e in await members.history(db, "M") if e["kind"] == "adjust"]
    assert (entry["points"], entry["event"]["type"], entry["rules"][0]["by"], entry["rules"][0]["reason"]) == (
        500,
        "adjustment",
        "alice",
        "complaint 8812",
    )
    await assert_clean(db)


async def test_a_credit_without_expires_on_expires_by_the_program_rule(db):
    await member_with_two_lots(db)

    done = await adjust(db, 300)

    made_at = datetime.fromisoformat(done["occurred_at"])
    assert made_at - NOW < timedelta(minutes=1)
    assert datetime.fromisoformat(done["lot"]["expires_at"]) == made_at + timedelta(days=365)
    assert done["lot"]["expires_on"] == "2027-11-24"
    assert (await lots(db))[-1] == (300, 300, made_at + timedelta(days=365))
    await assert_clean(db)


async def test_a_debit_takes_the_earliest_expiring_points_first(db):
    await member_with_two_lots(db)

    done = await adjust(db, -450, reason="duplicate credit")

    assert (done["points"], done["lot"], done["available_points"]) == (-450, None, 110)
    assert [(t["points"], datetime.fromisoformat(t["expires_at"])) for t in done["taken"]] == [
        (400, local(2027, 1, 10, 10)),
        (50, local(2027, 6, 1, 10)),
    ]
    assert await lots(db) == [(400, 0, local(2027, 1, 10, 10)), (160, 110, local(2027, 6, 1, 10))]
    state = await view(db)
    assert (state["available_points"], state["qualifying_points"], state["lifetime_points"]) == (110, 560, 560)
    await assert_clean(db)


async def test_a_debit_beyond_the_available_points_is_refused_and_writes_nothing(db):
    await member_with_two_lots(db)
    before = await rows(db, "SELECT count(*) FROM ledger_entries")

    with pytest.raises(AdjustmentRefused) as refused:
        await adjust(db, -800)

    assert (refused.value.kind, refused.value.detail, refused.value.field) == (
        "refused",
        "points: 800 requested but 560 available",
        "points",
    )
    assert await rows(db, "SELECT count(*) FROM ledger_entries") == before
    assert await lots(db) == [(400, 400, local(2027, 1, 10, 10)), (160, 160, local(2027, 6, 1, 10))]
    assert await rows(db, "SELECT source, event_type, reason FROM rejected_events") == [
        ("cli", "adjustment", "payload.points: 800 requested but 560 available")
    ]
    # Exactly the available points can be taken.
    assert (await adjust(db, -560))["available_points"] == 0
    await assert_clean(db)


async def test_points_past_their_expiry_are_not_available_to_a_debit(db):
    await process(db, purchase("M", "300.00", order_id="o1", occurred_at="2025-11-01T10:00:00+08:00"))  # expired
    await process(db, purchase("M", "160.00", order_id="o2", occurred_at="2026-06-01T10:00:00+08:00"))

    with pytest.raises(AdjustmentRefused) as refused:
        await adjust(db, -200)

    assert refused.value.detail == "points: 200 requested but 160 available"


BAD_INPUT = [
    (0, "goodwill", {}, "points: must not be 0: give a credit (+500) or a debit (-200)"),
    (500, None, {}, "reason: is required"),
    (500, "  ", {}, "reason: is required"),
    (500, "goodwill", {"expires_on": "2026-11-24"}, "expires_on: 2026-11-24 must be after 2026-11-24"),
    (-5, "goodwill", {"expires_on": "2027-01-01"}, "expires_on: goes with a credit (positive points) only"),
]


async def test_bad_input_names_the_field_and_writes_nothing_and_an_unknown_member_is_not_enrolled(db):
    await member_with_two_lots(db)

    for points, reason, extra, detail in BAD_INPUT:
        with pytest.raises(AdjustmentRefused) as refused:
            await adjust(db, points, reason, **extra)
        assert (refused.value.kind, refused.value.detail) == ("invalid", detail)
    with pytest.raises(UnknownMember):
        await adjust(db, 500, member_id="NOBODY")

    assert await rows(db, "SELECT count(*) FROM ledger_entries WHERE kind = 'adjust'") == [(0,)]
    assert await rows(db, "SELECT count(*) FROM rejected_events") == [(0,)]
    assert await rows(db, "SELECT member_id FROM members") == [("M",)]


async def test_qualifying_points_move_the_tier_only_when_asked(db):
    await member_with_two_lots(db)  # 560 qualifying; Silver at 1000

    await adjust(db, 500)
    plain = await view(db)
    await adjust(db, 500, qualifying=True)
    counted = await view(db)

    assert (plain["tier"], plain["qualifying_points"], plain["available_points"]) == ("Regular", 560, 1060)
    assert (counted["tier"], counted["qualifying_points"], counted["available_points"]) == ("Silver", 1060, 1560)
    assert await rows(db, "SELECT from_tier, to_tier, reason, source FROM tier_changes") == [
        ("Regular", "Silver", "upgrade", "cli")
    ]
    # A qualifying debit takes them back towards tiers too (the tier stays: no downgrade).
    await adjust(db, -500, qualifying=True)
    assert ((await view(db))["qualifying_points"], (await view(db))["tier"]) == (560, "Silver")
    await assert_clean(db)


async def test_a_queued_adjustment_is_applied_once_and_its_resend_is_a_duplicate(db):
    await member_with_two_lots(db)
    raw = adjustment(-100, "crm-1")

    first = await process(db, raw)
    again = await process(db, raw)
    changed = await process(db, {**raw, "payload": {**raw["payload"], "points": -90}})

    assert (first.status, first.points) == ("applied", -100)
    assert again.status == "duplicate"
    assert (changed.status, changed.reason) == (
        "rejected",
        "event_id: 'crm-1' from source 'crm' was already used with a different payload",
    )
    assert await rows(db, "SELECT source, event_id, points FROM ledger_entries WHERE kind = 'adjust'") == [
        ("crm", "crm-1", -100)
    ]
    assert await lots(db) == [(400, 300, local(2027, 1, 10, 10)), (160, 160, local(2027, 6, 1, 10))]
    await assert_clean(db)


async def test_the_same_event_id_again_through_the_service_answers_the_first_entry(db):
    await member_with_two_lots(db)

    first = await adjust(db, 200, source="api", event_id="api-key-1")
    again = await adjust(db, 200, source="api", event_id="api-key-1")

    assert (first["status"], again["status"]) == ("applied", "duplicate")
    assert again["entry_id"] == first["entry_id"]
    assert again["available_points"] == first["available_points"] == 760
    with pytest.raises(AdjustmentRefused) as refused:
        await adjust(db, 300, source="api", event_id="api-key-1")
    assert refused.value.kind == "conflict"
    await assert_clean(db)


async def test_a_batch_applies_adjustments_in_order_and_rejects_only_the_one_beyond_the_balance(db):
    await member_with_two_lots(db)

    outcomes = await intake.process_batch(
        db,
        P,
        [
            adjustment(-500, "b-1", at="2026-11-20T10:00:00+08:00"),
            adjustment(-100, "b-2", at="2026-11-20T11:00:00+08:00"),  # 60 left
            adjustment(50, "b-3", at="2026-11-20T12:00:00+08:00"),
        ],
        now=NOW,
        strict=True,
    )

    assert [(o.status, o.points, o.reason) for o in outcomes] == [
        ("applied", -500, None),
        ("rejected", 0, "payload.points: 100 requested but 60 available"),
        ("applied", 50, None),
    ]
    assert (await view(db))["available_points"] == 110
    await assert_clean(db)


async def test_a_late_event_re_evaluates_around_an_adjustment_and_keeps_its_points_and_outcome(db):
    await member_with_two_lots(db)
    await process(db, adjustment(500, "q-1", qualifying=True))  # Silver at 1060 qualifying
    late = purchase("M", "100.00", order_id="o0", occurred_at="2026-01-05T10:00:00+08:00")

    outcome = await process(db, late)

    assert outcome.status == "applied"
    assert "re_evaluated" in outcome.detail
    state = await view(db)
    # The late purchase is the first now: its 100 bonus moves from o1 to it, nothing else changes.
    assert (state["tier"], state["qualifying_points"], state["available_points"]) == ("Silver", 1160, 1160)
    assert await rows(db, "SELECT status, result FROM processed_events WHERE source = 'crm' AND event_id = 'q-1'") == [
        ("applied", {"points": 500, "lot_id": await lot_of(db, "q-1")})
    ]
    await assert_clean(db)


async def lot_of(db, event_id):
    [(lot_id,)] = await rows(
        db, "SELECT l.lot_id FROM lots l JOIN ledger_entries e USING (entry_id) WHERE e.event_id = :e", e=event_id
    )
    return lot_id


async def test_the_report_counts_adjustments_in_the_adjusted_line(db):
    await member_with_two_lots(db)
    await adjust(db, 500)
    await adjust(db, -200)
    await process(db, adjustment(40, "crm-2"))

    report = await build_report(db, P, date(2026, 11, 1), date(2026, 11, 30))

    assert report.reconciliation.adjusted == 500 - 200 + 40
    assert report.reconciliation.balanced
    assert report.earned == 0  # the purchases are before the window
    assert (await build_report(db, P)).reconciliation.adjusted == 340


async def test_an_erasure_replaces_the_reasons_naming_the_member_and_keeps_points_and_operator(db):
    await member_with_two_lots(db)
    await member_with_two_lots(db, member_id="OTHER")
    await adjust(db, 50, reason="kettle broke, Mrs Li Wei called", expires_on="2027-03-31")
    await adjust(db, 30, reason="Mr Chen asked", member_id="OTHER")
    queued = await process(db, adjustment(-20, "crm-9", reason="Li Wei 13800138000 double bonus"))
    assert (queued.status, queued.points) == ("applied", -20)

    done = await erase_member(db, "M", NOW)
    again = await erase_member(db, "M", NOW + timedelta(minutes=1))

    assert (done.events_redacted, again.events_redacted) == (2, 0)
    assert await rows(
        db,
        "SELECT member_id, source, points, rules FROM ledger_entries WHERE kind = 'adjust' ORDER BY entry_id",
    ) == [
        (
            "M",
            "cli",
            50,
            [
                {
                    "rule": "adjustment",
                    "points": 50,
                    "reason": "(erased)",
                    "by": "alice",
                    "qualifying": False,
                    "expires_on": "2027-03-31",
                }
            ],
        ),
        (
            "OTHER",
            "cli",
            30,
            [
                {
                    "rule": "adjustment",
                    "points": 30,
                    "reason": "Mr Chen asked",
                    "by": "alice",
                    "qualifying": False,
                    "expires_on": None,
                }
            ],
        ),
        (
            "M",
            "crm",
            -20,
            [
                {
                    "rule": "adjustment",
                    "points": -20,
                    "reason": "(erased)",
                    "by": "crm-agent-7",
                    "qualifying": False,
                    "expires_on": None,
                }
            ],
        ),
    ]
    assert await rows(
        db,
        "SELECT member_id, payload -> 'payload' FROM processed_events WHERE event_type = 'adjustment' "
        "ORDER BY member_id, occurred_at",
    ) == [
        ("M", {"points": -20, "reason": "(erased)", "by": "crm-agent-7", "qualifying": False, "expires_on": None}),
        ("M", {"points": 50, "reason": "(erased)", "by": "alice", "qualifying": False, "expires_on": "2027-03-31"}),
        ("OTHER", {"points": 30, "reason": "Mr Chen asked", "by": "alice", "qualifying": False, "expires_on": None}),
    ]
    everything = await rows(db, "SELECT e::text FROM ledger_entries e UNION ALL SELECT p::text FROM processed_events p")
    assert not [row for row in everything if "Li Wei" in row[0] or "kettle" in row[0]]
    history = [e for e in await members.history(db, "M") if e["kind"] == "adjust"]
    page = await history_page(db, "M", limit=10, before=None)
    assert [(e["points"], e["rules"][0]["reason"], e["rules"][0]["by"]) for e in history] == [
        (-20, "(erased)", "crm-agent-7"),
        (50, "(erased)", "alice"),
    ]
    assert [(e["points"], e["rules"][0]["reason"]) for e in page["entries"] if e["kind"] == "adjust"] == [
        (50, "(erased)"),
        (-20, "(erased)"),
    ]
    state = await view(db)
    assert (state["available_points"], state["lifetime_points"]) == (590, 560)
    await assert_clean(db)


async def test_an_adjustment_after_the_erasure_is_booked_without_its_reason(db):
    await member_with_two_lots(db)
    await erase_member(db, "M", NOW)

    done = await adjust(db, 10, reason="Li Wei again")

    assert (done["status"], done["points"], done["reason"], done["by"]) == ("applied", 10, "(erased)", "alice")
    assert await rows(
        db, "SELECT payload #>> '{payload,reason}' FROM processed_events WHERE event_type = 'adjustment'"
    ) == [("(erased)",)]
    await assert_clean(db)


@pytest.mark.parametrize(
    "change",
    [
        "points = points + 1",
        """rules = jsonb_set(rules, '{0,reason}', '"something else"')""",
        """rules = jsonb_set(rules, '{0,points}', '"(erased)"')""",
        "rules = jsonb_set(rules, '{0}', (rules -> 0) - 'reason')",
        """rules = jsonb_set(rules, '{0,note}', '"(erased)"')""",
        "rules = rules || rules",
    ],
)
async def test_the_ledger_refuses_any_update_of_an_entry_but_the_erasure_of_its_text(db, change):
    await member_with_two_lots(db)
    await adjust(db, 50)

    with pytest.raises(Exception, match="ledger_entries is append-only: UPDATE refused"):
        async with db.begin() as conn:
            await conn.execute(text(f"UPDATE ledger_entries SET {change} WHERE kind = 'adjust'"))
    async with db.begin() as conn:
        erased = await conn.execute(
            text(
                """UPDATE ledger_entries SET rules = jsonb_set(rules, '{0,reason}', '"(erased)"') WHERE kind = 'adjust'"""
            )
        )
    assert erased.rowcount == 1
