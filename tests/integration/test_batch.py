"""Batch messages: members commit together in groups, each event still has its own outcome."""

from __future__ import annotations

from sqlalchemy import event, text

from tests.conftest import NOW
from tests.factories import purchase, refund
from worker.domain.program import DEFAULT_PROGRAM
from worker.services import group_apply, intake
from worker.services.audit import audit_all
from worker.store import staged


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


async def test_a_batch_of_purchases_is_a_handful_of_statements_and_rows_per_purchase(db, monkeypatch):
    """1,000 purchases of 1,000 new members: statements counted on both drivers (SQLAlchemy's
    cursor executions, asyncpg's through staged.py), rows counted by table."""
    executed: list[str] = []
    groups: list[staged.Staged] = []

    class Counted(staged.Staged):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            groups.append(self)

    def count(conn, cursor, statement, parameters, context, executemany) -> None:
        executed.append(statement)

    monkeypatch.setattr(group_apply, "Staged", Counted)
    event.listen(db.sync_engine, "before_cursor_execute", count)
    try:
        batch = [purchase(f"S{n:04d}", "100.00", event_id=f"pos-s{n}") for n in range(1000)]
        outcomes = await intake.process_batch(db, DEFAULT_PROGRAM, batch, now=NOW)
    finally:
        event.remove(db.sync_engine, "before_cursor_execute", count)

    assert [o.status for o in outcomes] == ["applied"] * 1000
    assert {o.points for o in outcomes} == {200}  # 100 for 100.00 and the first-purchase bonus
    transactions = -(-1000 // intake.BATCH_MEMBERS_PER_TRANSACTION)
    # Each transaction: the claim (SQLAlchemy), then lock, orders, purchase counts, ids, flush.
    assert len(groups) == transactions
    assert [g.statements for g in groups] == [5] * transactions
    claims = [s for s in executed if "INSERT INTO processed_events" in s]
    assert len(claims) == transactions
    resolve = len(executed) - len(claims)
    assert resolve == 1  # identities: one statement for the batch (its own transaction)
    async with db.connect() as conn:
        rows = dict(
            (
                await conn.execute(
                    text(
                        "SELECT 'processed_events', count(*) FROM processed_events UNION ALL "
                        "SELECT 'members', count(*) FROM members UNION ALL "
                        "SELECT 'orders', count(*) FROM orders UNION ALL "
                        "SELECT 'ledger_entries', count(*) FROM ledger_entries UNION ALL "
                        "SELECT 'lots', count(*) FROM lots UNION ALL "
                        "SELECT 'notifications', count(*) FROM notifications"
                    )
                )
            ).all()
        )
    # Rows per purchase: its claim, its member, its order, one earn entry and its lot, and the
    # points_earned notification.
    assert rows == {
        "processed_events": 1000,
        "members": 1000,
        "orders": 1000,
        "ledger_entries": 1000,
        "lots": 1000,
        "notifications": 1000,
    }
    assert (await audit_all(db)).clean
