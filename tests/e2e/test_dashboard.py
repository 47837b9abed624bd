"""`loyalty dashboard`: refuses to start without a password, answers 401 without it, 200 with it."""

from __future__ import annotations

import base64
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.e2e.test_metrics import free_port

LOYALTY = str(Path(sys.executable).with_name("loyalty"))
PASSWORD = "correct horse"


def get(port: int, path: str, password: str | None = None) -> tuple[int, str]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}")
    if password is not None:
        request.add_header("Authorization", "Basic " + base64.b64encode(f"ops:{password}".encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


@pytest.fixture
def dashboard(env, db):
    port = free_port()
    proc = subprocess.Popen(
        [LOYALTY, "dashboard", "--port", str(port)],
        env={**env, "LOYALTY_DASHBOARD_PASSWORD": PASSWORD},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            get(port, "/")
            break
        except OSError:
            time.sleep(0.1)
    yield port
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(timeout=10)


def test_refuses_to_start_without_a_password(env):
    done = subprocess.run(
        [LOYALTY, "dashboard"],
        env={**env, "LOYALTY_DASHBOARD_PASSWORD": ""},
        capture_output=True,
        text=True,
        timeout=30,
    )

    assert done.returncode == 2
    assert "LOYALTY_DASHBOARD_PASSWORD" in done.stderr


def test_pages_need_the_password(dashboard):
    for path in ("/", "/dead", "/stats.json"):
        assert get(dashboard, path)[0] == 401
        assert get(dashboard, path, "wrong")[0] == 401
    status, page = get(dashboard, "/", PASSWORD)
    dead_status, dead = get(dashboard, "/dead", PASSWORD)

    assert status == 200 and dead_status == 200
    assert "<h2>Queues</h2>" in page and "<td>events</td>" in page
    assert "<h2>Last scheduler runs</h2>" in page
    assert "<h2>Workers: last heartbeat</h2>" in page
    assert "<h1>Dead letters</h1>" in dead


def test_overview_lists_workers_by_host_and_pid_and_no_other_process(dashboard, env):
    import re

    import redis

    from tests.conftest import REDIS_URL

    client = redis.Redis.from_url(REDIS_URL)
    key = f"{env['LOYALTY_NAMESPACE']}:__heartbeats__"
    now_ms = time.time() * 1000
    # A worker's broker id (worker.services.stats.worker_id) and an API process's bare one:
    # every process that sends a message leaves a heartbeat, only workers are listed.
    worker, api = "worker:till-host:4242:0123456789ab", "6f1c2e64-1d7b-4c57-9d0c-2f1f0b7e8a11"
    # Workers of earlier tests in this run's namespace leave their last heartbeats behind.
    client.delete(key)
    client.zadd(key, {worker: now_ms - 3_000, api: now_ms - 1_000})
    try:
        status, page = get(dashboard, "/", PASSWORD)
    finally:
        client.zrem(key, worker, api)

    assert status == 200
    section = page[page.index("<h2>Workers: last heartbeat</h2>") : page.index("<h2>Last scheduler runs</h2>")]
    assert '<thead><tr><th>host</th><th class="n">pid</th><th>last heartbeat</th><th>age</th></tr></thead>' in section
    rows = re.findall(r"<tr><td>.*?</tr>", section)
    assert len(rows) == 1, section
    assert re.fullmatch(
        r'<tr><td>till-host</td><td class="n">4242</td><td>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC</td><td>3\.\d s</td></tr>',
        rows[0],
    ), rows[0]
    assert api not in page


async def test_scheduler_runs_have_readable_headings_and_times(dashboard, db):
    from sqlalchemy import text

    async with db.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO scheduler_firings (job, scheduled_for, chunks_planned, chunks_done, members, points,"
                " planned_at, finished_at) VALUES ('expire-points', '2026-11-24T01:00Z', 2, 2, 17, 3400,"
                " '2026-11-24T01:00:01.5Z', '2026-11-24T01:00:04Z'), ('birthday', '2026-11-24T00:00Z', 1, 0, 0, 0,"
                " '2026-11-24T00:00:01Z', NULL)"
            )
        )

    status, page = get(dashboard, "/", PASSWORD)

    assert status == 200
    runs = page[page.index("<h2>Last scheduler runs</h2>") :]
    assert runs.startswith(
        "<h2>Last scheduler runs</h2><table><thead><tr><th>job</th><th>scheduled for</th><th>planned at</th>"
        '<th>finished at</th><th class="n">chunks planned</th><th class="n">chunks done</th>'
        '<th class="n">members</th><th class="n">points</th><th>note</th></tr></thead><tbody>'
        "<tr><td>expire-points</td><td>2026-11-24 01:00:00 UTC</td><td>2026-11-24 01:00:01 UTC</td>"
        '<td>2026-11-24 01:00:04 UTC</td><td class="n">2</td><td class="n">2</td><td class="n">17</td>'
        '<td class="n">3400</td><td>-</td></tr>'
        "<tr><td>birthday</td><td>2026-11-24 00:00:00 UTC</td><td>2026-11-24 00:00:01 UTC</td>"
        '<td>-</td><td class="n">1</td><td class="n">0</td><td class="n">0</td><td class="n">0</td><td>-</td></tr>'
    ), runs[:1500]
