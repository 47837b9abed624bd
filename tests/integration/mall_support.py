"""What the mall's and the coupons' integration tests share: redemption and cancellation
events of the app, applying them, and the checks that balances and stock add up."""

from __future__ import annotations

from sqlalchemy import text

from tests.conftest import NOW
from tests.factories import event
from worker.domain.program import DEFAULT_PROGRAM as P
from worker.services import intake, mall, members
from worker.services.audit import audit_all


async def process(db, raw):
    return await intake.process(db, P, raw, now=NOW, strict=True)


def redemption(member_id, reward_id, quantity=1, at="2026-11-10T10:00:00+08:00", **kw):
    return event("redemption", member_id, at, source="app", reward_id=reward_id, quantity=quantity, **kw)


def cancel(member_id, redemption_event_id, at="2026-11-12T10:00:00+08:00", **kw):
    return event("redemption_cancel", member_id, at, source="app", redemption_event_id=redemption_event_id, **kw)


async def available(db, member_id):
    return (await members.member_view(db, P, member_id))["available_points"]


async def rows(db, sql, **params):
    async with db.connect() as conn:
        return [tuple(r) for r in await conn.execute(text(sql), params)]


async def assert_clean(db):
    report = await audit_all(db)
    assert report.clean, report.differences
    assert await mall.stock_differences(db) == []
