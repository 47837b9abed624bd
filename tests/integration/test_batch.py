"""Batch messages: members commit together in groups, each event still has its own outcome."""

from __future__ import annotations

from sqlalchemy import text

from tests.conftest import NOW
from tests.factories import purchase, refund
from worker.domain.program import DEFAULT_PROGRAM
from worker.services import intake
from worker.services.audit import audit_all


async def test_batch_over_many_members_commits_in_groups_with_an_outcome_per_event(db):
    members = [f"B{n:03d}" for n in range(120)]
    first = purchase("B007", "200.00", order_id="o-7", event_id="pos-b7")
    batch = [purchase(m, "100.00", event_id=f"pos-{m}") for m in members]
    batch += [
        first,
        refund("B007", "o-7", "50.00", refund_id="r-7", event_id="pos-b7-refund"),
        dict(first),  # the same event again in the same batch
        purchase("B008", "999.00", event_id="pos-B008"),  # a reused id with another payload
    ]

    outcomes = await intake.process_batch(db, DEFAULT_PROGRAM, batch, now=NOW, strict=True)

    assert [o.status for o in outcomes] == ["applied"] * 122 + ["duplicate", "rejected"]
    assert outcomes[-1].reason == "event_id: 'pos-B008' from source 'pos' was already used with a different payload"
    async with db.connect() as conn:
        balances = dict((await conn.execute(text("SELECT member_id, available_points FROM members"))).all())
        # Rows written by one transaction share its xmin: 120 members in groups of 50 is 3 transactions.
        transactions = (await conn.execute(text("SELECT count(DISTINCT xmin::text) FROM members"))).scalar_one()
    assert len(balances) == 120
    assert balances["B001"] == 200  # 100 points for 100.00 plus the first-purchase bonus of 100
    assert balances["B007"] == 200 + 200 - 50  # both orders, then half of the second refunded
    assert transactions == 3
    report = await audit_all(db)
    assert report.clean
