"""`loyalty program publish` / `program versions` as operators run them, and a real
`loyalty worker` switching to a published version without a restart."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import text

from tests.e2e.test_cli import LOYALTY, clean, line, loyalty  # noqa: F401 - clean: fixture
from tests.factories import activity, purchase
from worker.broker import build_broker
from worker.config import Settings
from worker.domain.engine.language import DEFAULT_PROGRAM_PATH

# The brief promise: a published version is in force in running workers within 10 s.
SWITCH_S_MAX = 10
DEADLINE_S = 60
POLL_S = 0.05
DEFAULT_TOML = DEFAULT_PROGRAM_PATH.read_text(encoding="utf-8")
UNREACHABLE = "postgresql://postgres@127.0.0.1:1/loyalty"


def program_file(tmp_path: Path, version: str, rate: str = "1", name: str = "campaign") -> Path:
    """The built-in program under another version and name, earning `rate` points per 1.00."""
    path = tmp_path / f"{version}.toml"
    path.write_text(
        DEFAULT_TOML.replace('version = "default-1"', f'version = "{version}"')
        .replace('name = "default"', f'name = "{name}"')
        .replace('effect = { kind = "per_amount", rate = "1"', f'effect = {{ kind = "per_amount", rate = "{rate}"'),
        encoding="utf-8",
    )
    return path


def test_publish_list_show_and_refusals(clean, tmp_path):  # noqa: F811
    env = {**clean, "USER": "ops-anna"}
    assert loyalty(env, "db", "upgrade").returncode == 0
    spring = program_file(tmp_path, "v2026-12-spring", rate="2", name="spring")
    summer_at = (datetime.now(UTC) + timedelta(days=30)).replace(microsecond=0)
    summer = program_file(tmp_path, "v2027-summer", name="summer")
    changed = tmp_path / "changed.toml"
    changed.write_text(spring.read_text().replace("points = 50", "points = 60"))
    unversioned = tmp_path / "unversioned.toml"
    unversioned.write_text("[signup]\npoints = 80\n")
    bad = tmp_path / "bad.toml"
    bad.write_text(
        'version = "v-bad"\n'
        + DEFAULT_TOML.replace('version = "default-1"\n', "").replace("days_of_month = 8", "days_of_month = 32")
    )

    empty = loyalty(env, "program", "versions")
    first = loyalty(env, "program", "publish", str(spring))
    again = loyalty(env, "program", "publish", str(spring))
    other = loyalty(env, "program", "publish", str(changed))
    scheduled = loyalty(
        env, "program", "publish", str(summer), "--effective-from", summer_at.isoformat(), "--by", "ops-ben", "--json"
    )
    naive = loyalty(env, "program", "publish", str(summer), "--effective-from", "2027-01-01T00:00:00")
    missing_version = loyalty(env, "program", "publish", str(unversioned))
    invalid = loyalty(env, "program", "publish", str(bad))
    listed = loyalty(env, "program", "versions", "--json")
    table = loyalty(env, "program", "versions")
    shown = loyalty(env, "program", "show")

    assert (empty.returncode, empty.stdout) == (
        0,
        "no published versions; the workers use LOYALTY_PROGRAM_FILE or the built-in program\n",
    )
    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith("published version 'v2026-12-spring' (program 'spring'), in force from ")
    assert again.returncode == 0
    assert again.stdout.startswith("version 'v2026-12-spring' is already published with this content")
    assert other.returncode == 2
    assert other.stderr.startswith(
        "error: version 'v2026-12-spring' is already published with other content (published "
    )
    assert other.stderr.rstrip().endswith(
        "by ops-anna); a published version never changes: give this file a new version key"
    )
    assert scheduled.returncode == 0, scheduled.stderr
    assert {k: json.loads(scheduled.stdout)[k] for k in ("version", "name", "published_by", "created")} == {
        "version": "v2027-summer",
        "name": "summer",
        "published_by": "ops-ben",
        "created": True,
    }
    assert datetime.fromisoformat(json.loads(scheduled.stdout)["effective_from"]) == summer_at
    assert (naive.returncode, naive.stderr) == (
        2,
        "error: --effective-from: '2027-01-01T00:00:00' needs a UTC offset, e.g. 2026-01-02T00:05:00+08:00\n",
    )
    assert (missing_version.returncode, missing_version.stderr) == (
        2,
        f'error: {unversioned}: version: is required to publish, e.g. version = "2026-12-spring"\n',
    )
    assert (invalid.returncode, invalid.stderr) == (
        2,
        f"error: {bad}: rules.2.when.days_of_month.0: must be less than or equal to 31\n",
    )
    rows = json.loads(listed.stdout)
    assert [(r["version"], r["name"], r["status"], r["in_force"], r["published_by"]) for r in rows] == [
        ("v2027-summer", "summer", "scheduled", False, "ops-ben"),
        ("v2026-12-spring", "spring", "in force", True, "ops-anna"),
    ]
    assert [row.split()[:2] for row in table.stdout.splitlines()] == [
        ["v2027-summer", "scheduled"],
        ["v2026-12-spring", "in"],
    ]
    view = json.loads(shown.stdout)
    assert (view["name"], view["program_version"], view["rules"]["rules"][0]["effect"]["rate"]) == (
        "spring",
        "v2026-12-spring",
        "2",
    )


def test_drain_earns_by_the_version_in_force_and_history_names_it(clean, tmp_path):  # noqa: F811
    env = clean
    events = tmp_path / "events.jsonl"
    events.write_text(
        line(
            event_id="p-1",
            type="purchase",
            member_id="M1",
            payload={"order_id": "o-1", "amount": "100.00", "currency": "CNY"},
        )
        + "\n"
    )
    assert loyalty(env, "db", "upgrade").returncode == 0
    assert loyalty(env, "program", "publish", str(program_file(tmp_path, "v-triple", rate="3"))).returncode == 0

    assert loyalty(env, "publish", str(events)).returncode == 0
    drained = loyalty(env, "drain", "--timeout", "60", "--threads", "1")
    history = json.loads(loyalty(env, "member", "history", "M1", "--json").stdout)

    assert drained.returncode == 0, drained.stderr
    assert [(r["rule"], r["points"], r["program_version"]) for r in history[0]["rules"]] == [
        ("purchase", 300, "v-triple"),
        ("first_purchase", 100, "v-triple"),
    ]


@pytest.fixture
def running_worker(clean, tmp_path):  # noqa: F811
    """`loyalty worker` re-reading program versions every second; its log lines in a file."""
    env = {**clean, "LOYALTY_PROGRAM_RELOAD_S": "1", "LOYALTY_METRICS_PORT": "0"}
    assert loyalty(env, "db", "upgrade").returncode == 0
    log_path = tmp_path / "worker.log"
    with open(log_path, "w") as output:  # a file: a full pipe would block the worker
        proc = subprocess.Popen(
            [LOYALTY, "worker", "--processes", "1", "--threads", "2"],
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    yield env, log_path
    proc.send_signal(signal.SIGTERM)  # to the main process only, which stops its children
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        raise AssertionError("the worker did not stop within 30 s of SIGTERM") from None


def logged(log_path: Path, event: str, **fields) -> bool:
    for raw in log_path.read_text(errors="replace").splitlines():
        try:
            entry = json.loads(raw)
        except ValueError:
            continue
        if entry.get("event") == event and all(entry.get(k) == v for k, v in fields.items()):
            return True
    return False


async def earned(db, event_id: str):
    async with db.connect() as conn:
        row = (
            await conn.execute(
                text("SELECT points, rules FROM ledger_entries WHERE event_id = :id AND kind = 'earn'"),
                {"id": event_id},
            )
        ).first()
    return None if row is None else (row.points, row.rules[0]["program_version"])


async def await_earned(db, event_id: str):
    import asyncio

    deadline = time.monotonic() + DEADLINE_S
    while (found := await earned(db, event_id)) is None:
        assert time.monotonic() < deadline, f"no earn entry for {event_id} within {DEADLINE_S} s"
        await asyncio.sleep(POLL_S)
    return found


def wait_for(condition, what: str, timeout_s: float) -> float:
    """Seconds it took for `condition` to hold; AssertionError after `timeout_s`."""
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < timeout_s, f"timed out after {timeout_s} s waiting for {what}"
        time.sleep(POLL_S)
    return time.monotonic() - started


async def test_a_running_worker_process_switches_to_a_published_version_without_restart(running_worker, db, tmp_path):
    env, log_path = running_worker
    send = build_broker(Settings.from_env(env)).get_actor("process_event").send
    wait_for(lambda: logged(log_path, "worker_runtime_ready"), "the worker to boot", DEADLINE_S)
    send(purchase("W1", "100.00", event_id="before", order_id="o-1"))
    assert await await_earned(db, "before") == (200, "file:default")

    published = loyalty(env, "program", "publish", str(program_file(tmp_path, "v2026-12-double", rate="2")))
    assert published.returncode == 0, published.stderr
    switch_s = wait_for(
        lambda: logged(log_path, "program_in_force", version="v2026-12-double"), "the worker to switch", SWITCH_S_MAX
    )
    send(purchase("W1", "100.00", event_id="after", order_id="o-2"))

    assert await await_earned(db, "after") == (200, "v2026-12-double")
    assert switch_s < SWITCH_S_MAX


def test_the_api_answers_with_the_program_in_force_without_restart(clean, tmp_path):  # noqa: F811
    import httpx

    from tests.e2e.api_server import api_process

    env = clean
    events = tmp_path / "events.jsonl"
    events.write_text(
        line(
            event_id="p-1",
            type="purchase",
            member_id="A1",
            payload={"order_id": "o-1", "amount": "300.00", "currency": "CNY"},
        )
        + "\n"
    )
    assert loyalty(env, "db", "upgrade").returncode == 0
    assert loyalty(env, "publish", str(events)).returncode == 0
    assert loyalty(env, "drain", "--timeout", "60", "--threads", "1").returncode == 0
    created = loyalty(env, "api-key", "create", "--name", "app", "--scopes", "members:read", "--json")
    headers = {"Authorization": f"Bearer {json.loads(created.stdout)['key']}"}
    silver_at_600 = program_file(tmp_path, "v-low-silver").read_text().replace("threshold = 1000", "threshold = 600")
    (tmp_path / "low.toml").write_text(silver_at_600)

    with api_process(env, tmp_path / "api.log", LOYALTY_PROGRAM_RELOAD_S="1", LOYALTY_API_SWEEP_S="0") as url:

        def away() -> int:
            return httpx.get(f"{url}/v1/members/A1", headers=headers, timeout=10).json()["points_to_next_tier"]

        before = away()
        assert loyalty(env, "program", "publish", str(tmp_path / "low.toml")).returncode == 0
        switch_s = wait_for(lambda: away() != before, "the API to switch", SWITCH_S_MAX)

        # 400 qualifying points (300 + the first-purchase bonus): Silver is 600 away, then 200.
        assert (before, away(), switch_s < SWITCH_S_MAX) == (600, 200, True)


def test_publish_checks_events_against_the_version_in_force_then_the_program_file(clean, tmp_path):  # noqa: F811
    # Given LOYALTY_PROGRAM_FILE declaring the activity kind "dance", and a version declaring "watch_live".
    local = tmp_path / "local.toml"
    local.write_text(DEFAULT_TOML + '\n[activity]\nkinds = ["dance"]\n', encoding="utf-8")
    live = tmp_path / "live.toml"
    live.write_text(
        DEFAULT_TOML.replace('version = "default-1"', 'version = "v-live"') + '\n[activity]\nkinds = ["watch_live"]\n',
        encoding="utf-8",
    )
    env = {**clean, "LOYALTY_PROGRAM_FILE": str(local)}
    events = tmp_path / "events.jsonl"
    events.write_text(
        json.dumps(activity("M1", "watch_live", "2026-11-03T10:00:00+08:00", event_id="a-1"))
        + "\n"
        + json.dumps(activity("M1", "dance", "2026-11-03T10:00:00+08:00", event_id="a-2"))
        + "\n"
    )
    kinds = "share, survey, trial, profile_completed, game"

    # When events are published before and after the version is, and without the database.
    before = loyalty(env, "publish", "--dry-run", str(events))
    published = loyalty(env, "program", "publish", str(live))
    after = loyalty(env, "publish", "--dry-run", str(events))
    sent = loyalty(env, "publish", str(events))
    offline = loyalty({**env, "LOYALTY_DATABASE_URL": UNREACHABLE}, "publish", "--dry-run", str(events))

    # Then the program in force decides, as in the workers: the file's kinds, then the version's.
    assert (before.returncode, before.stderr, before.stdout) == (
        1,
        f"line 1: payload.kind: watch_live is not an activity kind of this program (kinds: {kinds}, dance)\n",
        "dry run: 1 valid events, 1 invalid lines; nothing enqueued\n",
    )
    assert published.returncode == 0, published.stderr
    assert (after.returncode, after.stderr, after.stdout) == (
        1,
        f"line 2: payload.kind: dance is not an activity kind of this program (kinds: {kinds}, watch_live)\n",
        "dry run: 1 valid events, 1 invalid lines; nothing enqueued\n",
    )
    assert (sent.returncode, sent.stdout) == (1, "published 1 events in 1 messages; 1 invalid lines\n")
    # Without the database the file is all there is, and a note says so.
    assert (offline.returncode, offline.stderr.splitlines()) == (
        1,
        [
            "note: the database could not be read (cannot connect to PostgreSQL at 127.0.0.1:1: connection "
            f"refused): events checked against {local}, not a published version",
            f"line 1: payload.kind: watch_live is not an activity kind of this program (kinds: {kinds}, dance)",
        ],
    )
