"""Event time through the real processes: `loyalty publish` of one file, `loyalty worker` with
2 processes x 8 threads (which do not keep a member's order), then `loyalty member show` and
`loyalty member history`: the numbers of occurrence order, every time."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import redis
from sqlalchemy import text

from tests.conftest import NOW, REDIS_URL, truncate_all
from worker.domain.program import DEFAULT_PROGRAM
from worker.domain.reevaluation import points_by_event
from worker.services import intake

LOYALTY = str(Path(sys.executable).parent / "loyalty")


def loyalty(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([LOYALTY, *args], env=env, capture_output=True, text=True, timeout=120)


def ev(event_id: str, kind: str, member: str, at: str, source: str = "pos", **payload) -> dict:
    return {
        "event_id": event_id,
        "type": kind,
        "source": source,
        "member_id": member,
        "occurred_at": at,
        "payload": payload,
    }


def buy(event_id: str, member: str, at: str, amount: str, order: str) -> dict:
    return ev(event_id, "purchase", member, at, order_id=order, amount=amount, currency="CNY")


CHECK_INS = [
    ev(f"ci-{d}", "check_in", "C1", f"2026-11-{10 + d:02d}T08:00:00+08:00", source="mini_program") for d in range(7)
]

# One member's month: signup (birthday 5 Nov), purchases that cross Silver and Gold (one on
# the member day, the 8th, one on the birthday), a partial refund, reviews past the daily
# cap of 3, three check-ins, and a referral of a second member who signs up and buys.
MIXED = [
    ev("s-1", "signup", "A1", "2026-11-01T09:00:00+08:00", source="app", birthday="1990-11-05", locale="en"),
    buy("p-1", "A1", "2026-11-01T12:00:00+08:00", "800.00", "o-1"),
    buy("p-2", "A1", "2026-11-03T12:00:00+08:00", "300.00", "o-2"),
    buy("p-3", "A1", "2026-11-05T12:00:00+08:00", "1000.00", "o-3"),
    buy("p-4", "A1", "2026-11-08T12:00:00+08:00", "1500.00", "o-4"),
    buy("p-5", "A1", "2026-11-12T12:00:00+08:00", "900.00", "o-5"),
    ev("r-1", "refund", "A1", "2026-11-13T12:00:00+08:00", order_id="o-4", refund_id="rf-1", amount="500.00"),
    ev(
        "v-1",
        "review",
        "A1",
        "2026-11-14T10:00:00+08:00",
        source="app",
        order_id="o-1",
        sku="sku-1",
        review_id="rv-1",
        has_media=True,
    ),
    ev(
        "v-2",
        "review",
        "A1",
        "2026-11-14T10:05:00+08:00",
        source="app",
        order_id="o-2",
        sku="sku-2",
        review_id="rv-2",
        has_media=False,
    ),
    ev(
        "v-3",
        "review",
        "A1",
        "2026-11-14T10:10:00+08:00",
        source="app",
        order_id="o-3",
        sku="sku-3",
        review_id="rv-3",
        has_media=False,
    ),
    ev(
        "v-4",
        "review",
        "A1",
        "2026-11-14T10:15:00+08:00",
        source="app",
        order_id="o-4",
        sku="sku-4",
        review_id="rv-4",
        has_media=True,
    ),
    ev("c-1", "check_in", "A1", "2026-11-15T08:00:00+08:00", source="mini_program"),
    ev("c-2", "check_in", "A1", "2026-11-16T08:00:00+08:00", source="mini_program"),
    ev("c-3", "check_in", "A1", "2026-11-17T08:00:00+08:00", source="mini_program"),
    ev("f-1", "referral", "A1", "2026-11-18T09:00:00+08:00", source="app", referee_member_id="B1"),
    ev("s-2", "signup", "B1", "2026-11-18T09:30:00+08:00", source="app", locale="zh-Hans"),
    buy("p-6", "B1", "2026-11-18T12:00:00+08:00", "120.00", "o-6"),
    buy("p-7", "A1", "2026-11-19T12:00:00+08:00", "2000.00", "o-7"),
    ev(
        "v-5",
        "review",
        "B1",
        "2026-11-19T13:00:00+08:00",
        source="app",
        order_id="o-6",
        sku="sku-6",
        review_id="rv-6",
        has_media=False,
    ),
    buy("p-8", "B1", "2026-11-20T12:00:00+08:00", "80.00", "o-8"),
    ev("c-4", "check_in", "B1", "2026-11-20T08:00:00+08:00", source="mini_program"),
]


async def processed(db) -> int:
    async with db.connect() as conn:
        return (await conn.execute(text("SELECT count(*) FROM processed_events"))).scalar_one()


async def publish_and_work(env: dict, db, tmp_path: Path, events: list[dict], expected: int) -> None:
    """An empty ledger and queue; `loyalty publish FILE`; `loyalty worker --processes 2
    --threads 8` until `expected` events (and follow-ups) are processed, then SIGTERM."""
    await truncate_all(db)
    client = redis.Redis.from_url(REDIS_URL)
    for key in client.scan_iter(f"{env['LOYALTY_NAMESPACE']}:*"):
        client.delete(key)
    path = tmp_path / "events.jsonl"
    path.write_text("".join(json.dumps(e) + "\n" for e in events))
    published = loyalty(env, "publish", str(path))
    assert published.returncode == 0, published.stderr
    log = tmp_path / "worker.log"
    with open(log, "w") as output:  # a file: a full pipe would block the worker
        proc = subprocess.Popen(
            [LOYALTY, "worker", "--processes", "2", "--threads", "8"],
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 90
        while await processed(db) < expected:
            assert proc.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            await asyncio.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGTERM)  # to the main process, which stops its children
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def member_state(env: dict, member_id: str) -> dict:
    shown = loyalty(env, "member", "show", member_id, "--json")
    assert shown.returncode == 0, shown.stderr
    view = json.loads(shown.stdout)
    return {k: view[k] for k in ("tier", "available_points", "qualifying_points", "lifetime_points")}


def earned(env: dict, member_id: str) -> dict[tuple[str, str], dict[str, int]]:
    """(source, event id) -> points by rule, read from `loyalty member history --json`
    (a correction counts for the event it names)."""
    history = loyalty(env, "member", "history", member_id, "--json")
    assert history.returncode == 0, history.stderr
    rows = [
        {**e["event"], "kind": e["kind"], "qualifying_points": e["qualifying_points"], "rules": e["rules"]}
        for e in json.loads(history.stdout)
    ]
    return points_by_event(rows)


async def test_seven_daily_check_ins_in_one_file_pay_120_points(db, env, tmp_path):
    await publish_and_work(env, db, tmp_path, CHECK_INS, expected=7)

    # 7 x 10, and the 50-point bonus on the 7th consecutive day, whatever order 16 threads took.
    assert member_state(env, "C1") == {
        "tier": "Regular",
        "available_points": 120,
        "qualifying_points": 120,
        "lifetime_points": 120,
    }
    audit = loyalty(env, "audit", "--json")
    assert json.loads(audit.stdout)["clean"] is True


async def test_the_mixed_file_gives_the_same_members_on_three_fresh_databases(db, env, tmp_path):
    # The reference: each event applied alone, in occurrence order.
    await truncate_all(db)
    for event in MIXED:
        await intake.process(db, DEFAULT_PROGRAM, dict(event), now=NOW, strict=True)
    reference = {m: member_state(env, m) for m in ("A1", "B1")}
    reference_earned = {m: earned(env, m) for m in ("A1", "B1")}

    runs = []
    for _ in range(3):
        # 21 events and the referee's bonus, its own claim.
        await publish_and_work(env, db, tmp_path, MIXED, expected=len(MIXED) + 1)
        runs.append(({m: member_state(env, m) for m in ("A1", "B1")}, {m: earned(env, m) for m in ("A1", "B1")}))

    assert runs == [(reference, reference_earned)] * 3
    assert reference["A1"]["tier"] == "Gold" and reference["B1"]["tier"] == "Regular"
