"""The HTTP API and the dashboard with PostgreSQL or Redis gone (private servers, stopped under
the running process): every route of the API's route table answers 503 `unavailable` in JSON
with Retry-After, the dashboard an "Unavailable" banner; both answer as before once the server
is back."""

from __future__ import annotations

import base64
import json
import re
import subprocess

import httpx
import pytest
from sqlalchemy.engine import make_url

from db import migrate
from tests.e2e.api_server import LOYALTY, api_process, free_port
from tests.factories import purchase
from tests.fault.servers import PrivatePostgres, PrivateRedis, have_redis_server, loyalty, postgres_bin, wait_for
from worker.api.app import create_app

pytestmark = [
    pytest.mark.fault,
    pytest.mark.skipif(not have_redis_server(), reason="needs redis-server"),
    pytest.mark.skipif(postgres_bin() is None, reason="needs PostgreSQL server binaries"),
]

PATH_VALUES = {"member_id": "M1", "source": "pos", "event_id": "pos-1", "hold_id": "h-1", "code": "CAFE-001"}
# A valid body for every route that takes one: an outage must be the only thing wrong.
BODIES = {
    ("POST", "/v1/events"): purchase("M1", "100.00", event_id="pos-1"),
    ("POST", "/v1/members/{member_id}/holds"): {"hold_id": "h-1", "points": 100, "order_id": "o-1"},
    ("POST", "/v1/holds/{hold_id}/capture"): None,
    ("POST", "/v1/holds/{hold_id}/void"): None,
    ("POST", "/v1/members/{member_id}/redemptions"): {"reward_id": "R1", "quantity": 1},
    ("POST", "/v1/members/{member_id}/adjustments"): {"points": 500, "reason": "goodwill"},
    ("PUT", "/v1/members/{member_id}/labels"): {"labels": ["vip"]},
    ("POST", "/v1/coupons/{code}/use"): None,
}
# Left out of the loop: /healthz needs no server (the process is up whatever PostgreSQL and
# Redis do); /readyz says which server is down, checked on its own.
HEALTH = {"/healthz", "/readyz"}
BACK_S = 30


def routes() -> list[tuple[str, str]]:
    """(method, path template) of every route the API declares (its OpenAPI document)."""
    paths = create_app().openapi()["paths"]
    found = [
        (method.upper(), path) for path, operations in paths.items() if path not in HEALTH for method in operations
    ]
    assert ("POST", "/v1/events") in found and ("GET", "/v1/members/{member_id}") in found
    return found


def call(url: str, key: str, method: str, template: str) -> httpx.Response:
    path = re.sub(r"\{(\w+)(?::\w+)?\}", lambda m: PATH_VALUES[m.group(1)], template)
    headers = {"Authorization": f"Bearer {key}", "Idempotency-Key": "idem-1"}
    if method == "POST":
        assert (method, template) in BODIES, f"no body for {method} {template}: add one to BODIES"
        content = BODIES[(method, template)]
        return httpx.request(method, url + path, headers=headers, json=content, timeout=30)
    return httpx.request(method, url + path, headers=headers, timeout=30)


def answers(url: str, key: str) -> dict[tuple[str, str], tuple]:
    out = {}
    for method, template in routes():
        response = call(url, key, method, template)
        out[(method, template)] = (
            response.status_code,
            response.headers.get("content-type"),
            response.headers.get("retry-after"),
            response.json(),
        )
    return out


@pytest.fixture
def private_servers(tmp_path):
    pg = PrivatePostgres()
    pg.init()
    pg.start()
    redis_server = PrivateRedis(tmp_path / "redis")
    redis_server.start()
    yield pg, redis_server
    redis_server.kill()
    pg.remove()


async def migrated_env(private_servers, fault_env, **extra: str) -> dict[str, str]:
    """The environment of a process on the private servers, their schema created."""
    pg, redis_server = private_servers
    database_url = make_url(pg.url).set(database="loyalty").render_as_string(hide_password=False)
    await migrate.upgrade(database_url)
    return {
        **fault_env,
        "LOYALTY_DATABASE_URL": database_url,
        "LOYALTY_REDIS_URL": redis_server.url,
        "LOYALTY_LOG_FORMAT": "json",
        **extra,
    }


async def test_every_route_answers_503_unavailable_while_postgresql_or_redis_is_down(
    private_servers, fault_env, tmp_path
):
    pg, redis_server = private_servers
    env = await migrated_env(private_servers, fault_env)
    created = loyalty(
        [
            "api-key",
            "create",
            "--name",
            "till-1",
            "--scopes",
            "events:write,members:read,members:write,points:spend,rewards:redeem,points:adjust,coupons:read,coupons:use",
            "--json",
        ],
        env,
    )
    assert created.returncode == 0, created.stderr
    key = json.loads(created.stdout)["key"]
    log = tmp_path / "api.log"
    postgres_down = {
        route: (503, "application/json", "5", {"error": "unavailable", "detail": "PostgreSQL is unavailable"})
        for route in routes()
    }
    redis_down = {
        route: (503, "application/json", "5", {"error": "unavailable", "detail": "Redis is unavailable"})
        for route in routes()
    }
    # The hold sweep runs every second: in an outage it says so in one line, without a traceback.
    with api_process(env, log, LOYALTY_API_SWEEP_S="1") as url:
        assert httpx.get(f"{url}/readyz").status_code == 200

        # Given PostgreSQL stopped under the running API (no key looked up yet, so none is cached)
        pg.stop("fast")
        without_postgres = answers(url, key)
        ready_without_postgres = httpx.get(f"{url}/readyz", timeout=30)
        health_without_postgres = httpx.get(f"{url}/healthz")
        wait_for(lambda: "holds_sweep_failed" in log.read_text(), BACK_S, "a hold sweep during the outage")

        # Back: the same process answers again.
        pg.start()
        wait_for(lambda: httpx.get(f"{url}/readyz").status_code == 200, BACK_S, "PostgreSQL back")
        member_back = call(url, key, "GET", "/v1/members/{member_id}")

        redis_server.kill()
        without_redis = answers(url, key)
        ready_without_redis = httpx.get(f"{url}/readyz", timeout=30)

        redis_server.start()
        wait_for(lambda: httpx.get(f"{url}/readyz").status_code == 200, BACK_S, "Redis back")
        event_back = call(url, key, "POST", "/v1/events")

    assert without_postgres == postgres_down
    assert without_redis == redis_down
    assert health_without_postgres.status_code == 200
    for ready, down in ((ready_without_postgres, "postgresql"), (ready_without_redis, "redis")):
        assert (ready.status_code, ready.headers["retry-after"]) == (503, "5")
        assert {k: ready.json()[k] for k in ("error", "detail", down)} == {
            "error": "unavailable",
            "detail": f"unreachable: {down}",
            down: "ConnectionRefusedError" if down == "postgresql" else "ConnectionError",
        }
    assert (member_back.status_code, member_back.json()["error"]) == (404, "unknown_member")
    assert (event_back.status_code, event_back.json()["accepted"]) == (202, 1)
    lines = log.read_text().splitlines()
    assert "Traceback" not in log.read_text()
    records = [json.loads(line) for line in lines if line.startswith("{")]
    assert all(line.startswith("{") for line in lines), [line for line in lines if not line.startswith("{")]
    sweeps = {(r["level"], r["unavailable"]) for r in records if r["event"] == "holds_sweep_failed"}
    assert sweeps == {("warning", "PostgreSQL")}
    unavailable = [r for r in records if r["event"] == "request_unavailable"]
    assert len(unavailable) == len(postgres_down) + len(redis_down)
    assert {r["reason"] for r in unavailable} == {
        f"cannot connect to PostgreSQL at 127.0.0.1:{pg.port}: connection refused",
        f"cannot connect to Redis at 127.0.0.1:{redis_server.port}: connection refused",
    }


def dashboard_get(port: int, path: str) -> httpx.Response:
    auth = "Basic " + base64.b64encode(b"ops:pw").decode()
    return httpx.get(f"http://127.0.0.1:{port}{path}", headers={"Authorization": auth}, timeout=30)


def banner(problem: str) -> str:
    return (
        f'<div class="banner" role="alert"><strong>Unavailable:</strong> {problem}. '
        "This page tries again every 10 s.</div>"
    )


async def test_the_dashboard_shows_an_unavailable_banner_while_postgresql_or_redis_is_down(
    private_servers, fault_env, tmp_path
):
    pg, redis_server = private_servers
    env = await migrated_env(private_servers, fault_env, LOYALTY_DASHBOARD_PASSWORD="pw")
    port = free_port()
    log = tmp_path / "dashboard.log"
    no_postgres = f"cannot connect to PostgreSQL at 127.0.0.1:{pg.port}: connection refused"
    no_redis = f"cannot connect to Redis at 127.0.0.1:{redis_server.port}: connection refused"
    with open(log, "w") as output:
        proc = subprocess.Popen(
            [LOYALTY, "dashboard", "--port", str(port)], env=env, stdout=output, stderr=subprocess.STDOUT
        )
    try:
        wait_for(lambda: dashboard_get(port, "/").status_code == 200, BACK_S, "the dashboard")

        pg.stop("fast")
        page, stats, dead = dashboard_get(port, "/"), dashboard_get(port, "/stats.json"), dashboard_get(port, "/dead")

        pg.start()
        wait_for(lambda: dashboard_get(port, "/").status_code == 200, BACK_S, "PostgreSQL back")
        redis_server.kill()
        page_without_redis, dead_without_redis = dashboard_get(port, "/"), dashboard_get(port, "/dead")
    finally:
        proc.terminate()
        proc.wait(30)

    assert (page.status_code, page.headers["content-type"]) == (503, "text/html; charset=utf-8")
    assert banner(no_postgres) in page.text
    assert '<meta http-equiv="refresh" content="10">' in page.text
    assert (stats.status_code, stats.json()) == (503, {"error": "unavailable", "detail": no_postgres})
    assert dead.status_code == 200  # dead letters are in Redis, which is up
    assert page_without_redis.status_code == 503 and banner(no_redis) in page_without_redis.text
    assert dead_without_redis.status_code == 503 and banner(no_redis) in dead_without_redis.text
    text = log.read_text()
    assert "Traceback" not in text and "A server error occurred" not in text
    reasons = [json.loads(x)["reason"] for x in text.splitlines() if '"dashboard_unavailable"' in x]
    assert reasons == [no_postgres, no_postgres, no_redis, no_redis]
