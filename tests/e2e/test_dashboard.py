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


def test_overview_shows_each_workers_last_heartbeat_and_lag_in_human_units(dashboard, env):
    import re

    import redis

    from tests.conftest import REDIS_URL

    client = redis.Redis.from_url(REDIS_URL)
    key = f"{env['LOYALTY_NAMESPACE']}:__heartbeats__"
    client.zadd(key, {"worker-abc": time.time() * 1000 - 3_000})
    try:
        status, page = get(dashboard, "/", PASSWORD)
    finally:
        client.zrem(key, "worker-abc")

    assert status == 200
    assert re.search(r"<td>worker-abc</td><td>[0-9T:+-]+</td><td[^>]*>[0-9.]+ s</td>", page), page
