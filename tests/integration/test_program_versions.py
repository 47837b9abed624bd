"""Published program versions on the real PostgreSQL and Redis: a worker running in this
process switches to a version within its reload interval, not before a scheduled start, and
a stored version that does not parse never stops it."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from datetime import datetime, timedelta

import dramatiq
import pytest
from sqlalchemy import text

from tests.factories import purchase
from worker import runtime
from worker.broker import build_broker
from worker.domain.engine.language import DEFAULT_PROGRAM_PATH
from worker.domain.errors import PublishRefused
from worker.services.program_versions import checksum, list_versions, publish

# A worker polls every second in these tests; every wait below is for a condition, bounded.
RELOAD_S = 1
DEADLINE_S = 15
POLL_S = 0.05
DEFAULT_TOML = DEFAULT_PROGRAM_PATH.read_text(encoding="utf-8")


def version_text(version: str, rate: str = "1") -> str:
    """The built-in program as a version to publish, earning `rate` points per 1.00."""
    return (
        DEFAULT_TOML.replace('version = "default-1"', f'version = "{version}"')
        .replace('name = "default"', 'name = "campaign"')
        .replace('effect = { kind = "per_amount", rate = "1"', f'effect = {{ kind = "per_amount", rate = "{rate}"')
    )


async def wait_until(condition, what: str, timeout_s: float = DEADLINE_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        await asyncio.sleep(POLL_S)


@pytest.fixture
def worker(settings, db):
    """A running in-process worker on the real broker, re-reading versions every second."""
    broker = build_broker(replace(settings, program_reload_s=RELOAD_S))
    broker.flush_all()
    running = dramatiq.Worker(broker, worker_threads=2, worker_timeout=50)
    running.start()
    yield broker
    running.stop()
    broker.flush_all()
    broker.close()


async def earned(db, event_id: str):
    """(points, program_version of the purchase award) of an event's earn entry, or None yet."""
    async with db.connect() as conn:
        row = (
            await conn.execute(
                text("SELECT points, rules FROM ledger_entries WHERE event_id = :id AND kind = 'earn'"),
                {"id": event_id},
            )
        ).first()
    return None if row is None else (row.points, row.rules[0]["program_version"])


async def await_earned(db, event_id: str):
    deadline = time.monotonic() + DEADLINE_S
    while (found := await earned(db, event_id)) is None:
        assert time.monotonic() < deadline, f"no earn entry for {event_id} within {DEADLINE_S} s"
        await asyncio.sleep(POLL_S)
    return found


async def test_a_version_published_while_the_worker_runs_applies_to_events_after_the_reload(worker, db):
    send = worker.get_actor("process_event").send
    send(purchase("M1", "100.00", event_id="before", order_id="o-1"))
    assert await await_earned(db, "before") == (200, "file:default")  # with the first-purchase bonus

    # When a version doubling the purchase rate is published, with the worker running.
    published_at = time.monotonic()
    await publish(
        db, version_text("v2026-12-double", rate="2"), "double.toml", by="test", now=runtime.current().clock()
    )
    await wait_until(lambda: runtime.current().programs.version == "v2026-12-double", "the worker to switch")
    switched_s = time.monotonic() - published_at
    send(purchase("M1", "100.00", event_id="after", order_id="o-2"))

    # Then the next event earns by it and its entry names it.
    assert await await_earned(db, "after") == (200, "v2026-12-double")
    assert switched_s < RELOAD_S + 2


async def test_a_scheduled_version_is_not_used_before_its_start(worker, db):
    send = worker.get_actor("process_event").send
    clock = runtime.current().clock
    start = clock() + timedelta(seconds=4)
    await publish(db, version_text("v-later", rate="3"), "later.toml", by="test", now=clock(), effective_from=start)

    send(purchase("M2", "100.00", event_id="early", order_id="o-1"))
    early = await await_earned(db, "early")
    processed_early = clock()
    await wait_until(
        lambda: runtime.current().programs.version == "v-later", "the scheduled start", timeout_s=DEADLINE_S
    )
    switched_at = clock()
    send(purchase("M2", "100.00", event_id="late", order_id="o-2"))

    assert processed_early < start and early == (200, "file:default")
    assert start <= switched_at < start + timedelta(seconds=RELOAD_S + 2)
    assert await await_earned(db, "late") == (300, "v-later")
    versions = await list_versions(db, clock())
    assert [(v["version"], v["status"]) for v in versions] == [("v-later", "in force")]


async def test_a_stored_version_that_does_not_parse_is_skipped_and_the_worker_goes_on(worker, db):
    send = worker.get_actor("process_event").send
    clock = runtime.current().clock
    await publish(db, version_text("v-good", rate="2"), "good.toml", by="test", now=clock())
    await wait_until(lambda: runtime.current().programs.version == "v-good", "the worker to switch")
    # Given a row that `program publish` would have refused, written behind its back.
    broken = 'version = "v-broken"\n[signup]\npoints = -1\n'
    async with db.begin() as conn:
        await conn.execute(
            text(
                """
            INSERT INTO program_versions (version, name, content, checksum, effective_from, published_by)
            VALUES ('v-broken', 'broken', :content, :checksum, :now, 'hand')
            """
            ),
            {"content": broken, "checksum": checksum(broken), "now": clock()},
        )

    # When the worker's next reloads find it in force.
    reads_after = clock() + timedelta(seconds=RELOAD_S * 2)
    await wait_until(
        lambda: runtime.current().programs.checked_at > reads_after, "two more reloads", timeout_s=DEADLINE_S
    )
    send(purchase("M3", "100.00", event_id="still", order_id="o-1"))

    # Then it keeps the last good program and goes on processing.
    assert runtime.current().programs.version == "v-good"
    assert await await_earned(db, "still") == (300, "v-good")


async def test_the_same_version_again_is_a_no_op_and_with_other_content_is_refused(db):
    now = datetime.fromisoformat("2026-12-01T10:00:00+08:00")
    first = await publish(db, version_text("v1"), "a.toml", by="ana", now=now)
    again = await publish(db, version_text("v1"), "a.toml", by="bo", now=now + timedelta(minutes=5))
    rerun = await publish(db, version_text("v1"), "a.toml", by="bo", now=now + timedelta(days=1), effective_from=now)

    with pytest.raises(
        PublishRefused,
        match=r"^version 'v1' is already published with other content "
        r"\(published 2026-12-01T02:00:00\+00:00 by ana\)",
    ):
        await publish(db, version_text("v1", rate="2"), "b.toml", by="bo", now=now)
    with pytest.raises(PublishRefused, match=r"^version 'v1' is already published, in force from "):
        await publish(db, version_text("v1"), "a.toml", by="bo", now=now, effective_from=now + timedelta(days=1))
    with pytest.raises(PublishRefused, match=r"^--effective-from: .* is in the past"):
        await publish(db, version_text("v2"), "c.toml", by="bo", now=now, effective_from=now - timedelta(seconds=1))

    assert (first.created, again.created, again.published_by, again.effective_from) == (True, False, "ana", now)
    assert (rerun.created, rerun.effective_from) == (False, now)
    async with db.connect() as conn:
        assert (await conn.execute(text("SELECT count(*) FROM program_versions"))).scalar_one() == 1


async def test_a_version_without_a_tier_members_hold_is_refused(db):
    now = datetime.fromisoformat("2026-12-01T10:00:00+08:00")
    async with db.begin() as conn:
        await conn.execute(text("INSERT INTO members (member_id, tier) VALUES ('G1', 'Gold'), ('R1', 'Regular')"))
    renamed = version_text("v-renamed").replace('name = "Gold"', 'name = "Platinum"')

    with pytest.raises(
        PublishRefused, match=r"^renamed.toml: tiers: 'Gold' held by members; a version keeps every tier"
    ):
        await publish(db, renamed, "renamed.toml", by="ana", now=now)
    assert (await publish(db, version_text("v-same-tiers"), "same.toml", by="ana", now=now)).created
