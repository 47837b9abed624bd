"""The HTTP API against a real `loyalty api` process, real PostgreSQL and Redis, and a real worker (`loyalty drain`)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx
import pytest
from sqlalchemy.engine import make_url

from tests.conftest import REDIS_URL
from tests.e2e.api_server import api_process
from tests.e2e.test_cli import clean, loyalty  # noqa: F401  (clean is a fixture)

RATE_PER_KEY = 40
BODY_BYTES_MAX = 512 * 1024
# A date that is no member day (the 8th) and no birthday: purchases earn exactly amount x multiplier.
PAST = "2026-11-03T10:00:00+08:00"


@pytest.fixture(scope="module")
def server(database_url, redis_namespace, tmp_path_factory):
    env = {
        **os.environ,
        "LOYALTY_DATABASE_URL": database_url,
        "LOYALTY_REDIS_URL": REDIS_URL,
        "LOYALTY_NAMESPACE": redis_namespace,
        "LOYALTY_STRICT_CHECKS": "1",
        "LOYALTY_LOG_FORMAT": "json",
    }
    log_path = tmp_path_factory.mktemp("api") / "api.log"
    with api_process(
        env,
        log_path,
        LOYALTY_API_RATE_PER_KEY=str(RATE_PER_KEY),
        LOYALTY_API_BODY_BYTES_MAX=str(BODY_BYTES_MAX),
        LOYALTY_API_SWEEP_S="0",
    ) as url:
        yield url, log_path


@pytest.fixture
def api(server, clean):  # noqa: F811
    """The server's URL on an empty schema and queue; the audit must be clean after the test."""
    url, _ = server
    yield url
    audit = loyalty(clean, "audit", "--json")
    assert json.loads(audit.stdout)["clean"] is True, audit.stdout
    assert audit.returncode == 0


def sql(env, query: str) -> list[tuple]:
    async def go():
        url = make_url(env["LOYALTY_DATABASE_URL"]).set(drivername="postgresql").render_as_string(hide_password=False)
        conn = await asyncpg.connect(url)
        try:
            return [tuple(r) for r in await conn.fetch(query)]
        finally:
            await conn.close()

    return asyncio.run(go())


def make_key(env, name: str, scopes: str, sources: str | None = None) -> dict[str, str]:
    args = ["api-key", "create", "--name", name, "--scopes", scopes, "--json"]
    if sources:
        args += ["--sources", sources]
    result = loyalty(env, *args)
    assert result.returncode == 0, result.stderr
    return {"Authorization": f"Bearer {json.loads(result.stdout)['key']}"}


ALL = "events:write,members:read,points:spend,rewards:redeem"


def ev(event_id: str, type_: str, member_id: str, source: str = "pos", occurred_at: str = PAST, **payload) -> dict:
    return {
        "event_id": event_id,
        "type": type_,
        "source": source,
        "member_id": member_id,
        "occurred_at": occurred_at,
        "payload": payload,
    }


def purchase(event_id: str, member_id: str, order_id: str, amount: str, **kw) -> dict:
    return ev(event_id, "purchase", member_id, order_id=order_id, amount=amount, currency="CNY", **kw)


def drain(env) -> None:
    result = loyalty(env, "drain", "--timeout", "60", "--threads", "1")
    assert result.returncode == 0, result.stderr


def fund(url, env, headers, member_id: str, amount: str = "1000.00") -> None:
    """A member with floor(amount) + 100 (first purchase) available points."""
    response = httpx.post(
        f"{url}/v1/events", headers=headers, json=purchase(f"fund-{member_id}", member_id, f"o-{member_id}", amount)
    )
    assert response.status_code == 202, response.text
    drain(env)


def member(url, headers, member_id: str) -> dict:
    response = httpx.get(f"{url}/v1/members/{member_id}", headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


# ---------------------------------------------------------------- process, keys, auth


def test_health_ready_openapi_and_docs(api):
    assert httpx.get(f"{api}/healthz").json() == {"status": "ok"}
    ready = httpx.get(f"{api}/readyz")
    assert (ready.status_code, ready.json()) == (200, {"status": "ready", "postgresql": "ok", "redis": "ok"})
    paths = set(httpx.get(f"{api}/openapi.json").json()["paths"])
    assert paths == {
        "/healthz",
        "/readyz",
        "/v1/events",
        "/v1/events/{source}/{event_id}",
        "/v1/members/{member_id}",
        "/v1/members/{member_id}/history",
        "/v1/members/{member_id}/rewards",
        "/v1/members/{member_id}/holds",
        "/v1/holds/{hold_id}/capture",
        "/v1/holds/{hold_id}/void",
        "/v1/members/{member_id}/redemptions",
        "/v1/members/{member_id}/adjustments",
        "/v1/coupons/{code}",
        "/v1/coupons/{code}/use",
        "/v1/members",
        "/v1/members/{member_id}/labels",
    }
    docs = httpx.get(f"{api}/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()


def test_keys_are_shown_once_stored_hashed_and_checked(api, clean):  # noqa: F811
    created = loyalty(clean, "api-key", "create", "--name", "app-1", "--scopes", "members:read", "--json")
    key = json.loads(created.stdout)["key"]
    duplicate = loyalty(clean, "api-key", "create", "--name", "app-1", "--scopes", "members:read")
    bad_scope = loyalty(clean, "api-key", "create", "--name", "app-2", "--scopes", "members:delete")
    listed = loyalty(clean, "api-key", "list", "--json")

    assert created.returncode == 0 and key.startswith("lk_") and len(key) > 40
    assert duplicate.returncode == 2
    assert (
        duplicate.stderr.strip() == "error: --name: a key named 'app-1' already exists (revoked keys keep their name)"
    )
    assert bad_scope.stderr.strip() == (
        "error: --scopes: unknown value 'members:delete' (one of events:write, members:read, members:write, "
        "points:spend, rewards:redeem, points:adjust, coupons:read, coupons:use)"
    )
    rows = json.loads(listed.stdout)
    assert [(r["name"], r["scopes"], r["sources"], r["revoked_at"]) for r in rows] == [
        ("app-1", ["members:read"], None, None)
    ]
    assert key not in listed.stdout and hashlib.sha256(key.encode()).hexdigest() not in listed.stdout
    assert sql(clean, "SELECT key_hash FROM api_keys") == [(hashlib.sha256(key.encode()).hexdigest(),)]

    no_key = httpx.get(f"{api}/v1/members/M1")
    unknown = httpx.get(f"{api}/v1/members/M1", headers={"Authorization": "Bearer lk_nope"})
    wrong_scope = httpx.post(f"{api}/v1/events", headers={"Authorization": f"Bearer {key}"}, json={})
    allowed = httpx.get(f"{api}/v1/members/M1", headers={"Authorization": f"Bearer {key}"})
    assert (no_key.status_code, no_key.json()) == (
        401,
        {"error": "missing_key", "detail": "Authorization: send `Bearer KEY`"},
    )
    assert (unknown.status_code, unknown.json()["error"]) == (401, "unknown_key")
    assert (wrong_scope.status_code, wrong_scope.json()) == (
        403,
        {"error": "missing_scope", "detail": "this key does not have the events:write scope"},
    )
    assert (allowed.status_code, allowed.json()) == (
        404,
        {"error": "unknown_member", "detail": "member_id: no member 'M1'", "field": "member_id"},
    )

    revoked = loyalty(clean, "api-key", "revoke", "app-1")
    assert revoked.returncode == 0 and revoked.stdout.startswith("key 'app-1' revoked at ")
    assert json.loads(loyalty(clean, "api-key", "list", "--json").stdout)[0]["revoked_at"] is not None
    deadline = time.monotonic() + 15  # each API process caches a key for up to 5 s
    while httpx.get(f"{api}/v1/members/M1", headers={"Authorization": f"Bearer {key}"}).status_code != 401:
        assert time.monotonic() < deadline, "a revoked key was still accepted after 15 s"
        time.sleep(0.2)
    assert loyalty(clean, "api-key", "revoke", "nobody").stderr.strip() == "error: no key named 'nobody'"


# ---------------------------------------------------------------- events


def test_events_validated_like_publish_queued_and_their_outcomes(api, clean, tmp_path):  # noqa: F811
    till = make_key(clean, "till-1", "events:write", sources="pos")
    shop = make_key(clean, "shop-1", "events:write,members:read", sources="web")

    one = httpx.post(f"{api}/v1/events", headers=till, json=purchase("p-1", "M1", "o-1", "350.00"))
    ecommerce = httpx.post(f"{api}/v1/events", headers=till, json=purchase("w-1", "M1", "o-2", "10.00", source="web"))
    shop_reads_pos = httpx.get(f"{api}/v1/events/pos/p-1", headers=shop)
    bad = purchase("p-3", "M1", "o-3", "1.999")
    mixed = httpx.post(
        f"{api}/v1/events", headers=till, json=[purchase("p-2", "M1", "o-2", "20.00"), bad, {"event_id": "x"}]
    )
    queued = httpx.get(f"{api}/v1/events/pos/p-1", headers=till)
    not_queued = httpx.get(f"{api}/v1/events/pos/p-2", headers=till)
    slashed = httpx.post(
        f"{api}/v1/events",
        headers=till,
        json=[
            purchase("till-7/000123", "M2", "o-7", "10.00"),
            {**purchase("p-9", "M2", "o-9", "1.00"), "source": ["web"]},
        ],
    )
    slashed_ok = httpx.post(f"{api}/v1/events", headers=till, json=purchase("till-7/000123", "M2", "o-7", "10.00"))
    slashed_queued = httpx.get(f"{api}/v1/events/pos/till-7/000123", headers=till)

    assert (one.status_code, one.json()) == (202, {"accepted": 1, "events": [{"source": "pos", "event_id": "p-1"}]})
    assert (ecommerce.status_code, ecommerce.json()) == (
        403,
        {
            "error": "source_not_allowed",
            "detail": "source: this key may not send events from source 'web'",
            "field": "source",
        },
    )
    assert shop_reads_pos.status_code == 403
    assert mixed.status_code == 422
    # The same reasons as `loyalty publish` gives for the same lines.
    lines = tmp_path / "bad.jsonl"
    lines.write_text(json.dumps(bad) + "\n" + json.dumps({"event_id": "x"}) + "\n")
    published = loyalty(clean, "publish", str(lines)).stderr.strip().splitlines()
    assert mixed.json() == {
        "error": "invalid_events",
        "detail": "2 of 3 events are invalid; none was queued",
        "events": [
            {"index": 1, "reason": published[0].split(": ", 1)[1]},
            {"index": 2, "reason": published[1].split(": ", 1)[1]},
        ],
    }
    assert mixed.json()["events"][0]["reason"] == "payload.amount: must have at most 2 decimal places"
    assert (queued.status_code, queued.json()) == (
        200,
        {
            "source": "pos",
            "event_id": "p-1",
            "status": "queued",
            "points": 0,
            "reason": None,
            "processed_at": None,
            "conflicts": [],
        },
    )
    assert (not_queued.status_code, not_queued.json()["error"]) == (404, "unknown_event")
    assert (slashed.status_code, slashed.json()["events"]) == (
        422,
        [{"index": 1, "reason": "source: must be a valid string"}],
    )
    assert slashed_ok.status_code == 202
    assert (slashed_queued.status_code, slashed_queued.json()["event_id"], slashed_queued.json()["status"]) == (
        200,
        "till-7/000123",
        "queued",
    )

    single_bad = httpx.post(f"{api}/v1/events", headers=till, json=bad)
    assert (single_bad.status_code, single_bad.json()) == (
        422,
        {
            "error": "invalid_events",
            "detail": "payload.amount: must have at most 2 decimal places",
            "events": [{"index": 0, "reason": "payload.amount: must have at most 2 decimal places"}],
        },
    )

    drain(clean)
    applied = httpx.get(f"{api}/v1/events/pos/p-1", headers=till).json()
    resent = httpx.post(f"{api}/v1/events", headers=till, json=purchase("p-1", "M1", "o-1", "350.00"))
    duplicate = httpx.get(f"{api}/v1/events/pos/p-1", headers=till).json()
    reused = httpx.post(f"{api}/v1/events", headers=till, json=purchase("p-1", "M1", "o-1", "999.00"))
    drain(clean)
    conflict = httpx.get(f"{api}/v1/events/pos/p-1", headers=till).json()
    refund_first = httpx.post(
        f"{api}/v1/events",
        headers=till,
        json=ev("r-9", "refund", "M1", order_id="o-9", refund_id="rf-9", amount="5.00"),
    )
    drain(clean)
    deferred = httpx.get(f"{api}/v1/events/pos/r-9", headers=till).json()

    assert (applied["status"], applied["points"], applied["reason"]) == (
        "applied",
        450,
        None,
    )  # 350 + 100 first purchase
    assert applied["processed_at"] is not None
    assert resent.status_code == 202 and reused.status_code == 202 and refund_first.status_code == 202
    # The first delivery's outcome stands: an identical resend changes nothing, and a resend
    # with another payload is listed beside it, the points staying with the applied event.
    [(processed_at,)] = sql(clean, "SELECT processed_at FROM processed_events WHERE event_id = 'p-1'")
    [(first_seen, last_seen)] = sql(
        clean, "SELECT first_seen_at, last_seen_at FROM rejected_events WHERE event_id = 'p-1'"
    )
    first_outcome = {
        "source": "pos",
        "event_id": "p-1",
        "status": "applied",
        "points": 450,
        "reason": None,
        "processed_at": processed_at.isoformat(),
    }
    assert applied == duplicate == {**first_outcome, "conflicts": []}
    assert conflict == {
        **first_outcome,
        "conflicts": [
            {
                "status": "conflict",
                "reason": "event_id: 'p-1' from source 'pos' was already used with a different payload",
                "attempts": 1,
                "first_seen_at": first_seen.isoformat(),
                "last_seen_at": last_seen.isoformat(),
            }
        ],
    }
    assert (deferred["status"], deferred["points"], deferred["conflicts"]) == ("deferred", 0, [])


def test_event_limits_array_length_and_body_size(api, clean):  # noqa: F811
    till = make_key(clean, "till-1", "events:write", sources="pos")
    too_many = httpx.post(f"{api}/v1/events", headers=till, json=[{"event_id": str(i)} for i in range(1001)])
    too_big = httpx.post(
        f"{api}/v1/events",
        headers={**till, "Content-Type": "application/json"},
        content=b"[" + b" " * BODY_BYTES_MAX + b"]",
    )
    not_json = httpx.post(f"{api}/v1/events", headers=till, content=b"{nope")
    # No Content-Length (chunked): counted while reading.
    chunked = httpx.post(
        f"{api}/v1/events", headers=till, content=(b" " * 65536 for _ in range(BODY_BYTES_MAX // 65536 + 1))
    )

    assert (too_many.status_code, too_many.json()) == (
        413,
        {"error": "too_many_events", "detail": "body: 1001 events is over the limit of 1000", "field": "body"},
    )
    assert (too_big.status_code, too_big.json()) == (
        413,
        {"error": "body_too_large", "detail": f"body: over the limit of {BODY_BYTES_MAX} bytes"},
    )
    assert (chunked.status_code, chunked.json()["error"]) == (413, "body_too_large")
    assert (not_json.status_code, not_json.json()) == (
        400,
        {"error": "invalid_json", "detail": "body: is not valid JSON"},
    )


def test_rate_limit_answers_429_with_retry_after(api, clean):  # noqa: F811
    app = make_key(clean, "app-1", "members:read")
    statuses, limited = [], None
    client = httpx.Client(base_url=api, headers=app)  # one connection: well over RATE_PER_KEY a second
    for _ in range(3 * RATE_PER_KEY):
        response = client.get("/v1/members/M1")
        statuses.append(response.status_code)
        if response.status_code == 429:
            limited = response
            break

    assert limited is not None, f"no 429 in {len(statuses)} requests"
    # The first 429 comes once a one-second window has had its RATE_PER_KEY requests.
    assert RATE_PER_KEY <= len(statuses) - 1 <= 2 * RATE_PER_KEY
    assert limited.headers["retry-after"] == "1"
    assert limited.json() == {
        "error": "rate_limited",
        "detail": f"over {RATE_PER_KEY} requests per second for this key",
    }


# ---------------------------------------------------------------- members


def test_member_state_history_and_rewards_as_the_member_sees_them(api, clean, tmp_path):  # noqa: F811
    key = make_key(clean, "app-1", ALL)
    now = datetime.now(UTC)
    old = now - timedelta(days=350)  # expires in 15 days
    if old.astimezone(__import__("zoneinfo").ZoneInfo("Asia/Shanghai")).day == 8:
        old -= timedelta(days=1)
    catalog = tmp_path / "rewards.toml"
    catalog.write_text(
        '[[reward]]\nreward_id = "mug"\nname = "Mug"\ncost_points = 500\nmin_tier = "Regular"\n'
        '\n[[reward]]\nreward_id = "bag"\nname = "Bag"\ncost_points = 800\nmin_tier = "Gold"\n'
        '\n[[reward]]\nreward_id = "tv"\nname = "TV"\ncost_points = 90000\nmin_tier = "Regular"\n'
    )
    assert loyalty(clean, "rewards", "load", str(catalog)).returncode == 0
    posted = httpx.post(
        f"{api}/v1/events",
        headers=key,
        json=[
            ev("s-1", "signup", "M1", source="app", locale="zh-Hans"),
            purchase("p-old", "M1", "o-0", "300.00", occurred_at=old.isoformat()),
            purchase("p-1", "M1", "o-1", "500.00"),
        ],
    )
    assert posted.status_code == 202, posted.text
    drain(clean)

    state = member(api, key, "M1")
    first = httpx.get(f"{api}/v1/members/M1/history", params={"limit": 2}, headers=key).json()
    second = httpx.get(
        f"{api}/v1/members/M1/history", params={"limit": 2, "before": first["next_before"]}, headers=key
    ).json()
    bad_page = httpx.get(f"{api}/v1/members/M1/history", params={"limit": 0}, headers=key)
    rewards = httpx.get(f"{api}/v1/members/M1/rewards", headers=key).json()
    unknown = [httpx.get(f"{api}/v1/members/M404{p}", headers=key) for p in ("", "/history", "/rewards")]

    # 50 signup + 300 + 100 first purchase + 500; Regular (850 qualifying < Silver 1000).
    shown = json.loads(loyalty(clean, "member", "show", "M1", "--json").stdout)
    assert {k: state[k] for k in shown} == shown
    assert (
        state["available_points"],
        state["pending_points"],
        state["qualifying_points"],
        state["lifetime_points"],
        state["tier"],
        state["next_tier"],
        state["points_to_next_tier"],
    ) == (950, 0, 950, 950, "Regular", "Silver", 50)
    assert (state["held_points"], state["points_expiring_in_30_days"]) == (0, 400)
    assert [e["kind"] for e in first["entries"]] == ["earn", "earn"] and first["next_before"] is not None
    # Newest first; a batch applies each member's events in occurrence order, the old purchase first.
    assert [e["event"]["event_id"] for e in first["entries"] + second["entries"]] == ["p-1", "s-1", "p-old"]
    assert second["next_before"] is None
    assert [r["rule"] for r in second["entries"][0]["rules"]] == ["purchase", "first_purchase"]
    assert (bad_page.status_code, bad_page.json()["error"], bad_page.json()["field"]) == (
        422,
        "invalid_request",
        "limit",
    )
    assert [(r["reward_id"], r["eligible"], r["locked"]) for r in rewards["rewards"]] == [
        ("mug", True, None),
        ("bag", False, {"reason": "tier_too_low", "text": "Gold及以上会员专享。"}),
        ("tv", False, {"reason": "not_enough_points", "text": "还差 89050 积分。"}),
    ]
    assert [(r.status_code, r.json()["error"]) for r in unknown] == [(404, "unknown_member")] * 3


def test_history_is_in_occurrence_order_like_member_history(api, clean):  # noqa: F811
    # Given a member whose events arrive out of order: the latest first, an earlier one late.
    key = make_key(clean, "app-1", ALL)
    for event in (
        purchase("p-3", "M1", "o-3", "300.00", occurred_at="2026-11-03T10:00:00+08:00"),
        ev("c-4", "check_in", "M1", source="app", occurred_at="2026-11-04T09:00:00+08:00"),
        purchase("p-2", "M1", "o-2", "200.00", occurred_at="2026-11-02T10:00:00+08:00"),
        ev("s-9", "signup", "M2", source="app", occurred_at="2026-11-02T10:00:00+08:00"),
    ):
        assert httpx.post(f"{api}/v1/events", headers=key, json=event).status_code == 202
        drain(clean)

    # When the history is read whole, and a page of one entry at a time.
    whole = httpx.get(f"{api}/v1/members/M1/history", headers=key).json()
    pages, before = [], None
    while True:
        params = {"limit": 1} if before is None else {"limit": 1, "before": before}
        page = httpx.get(f"{api}/v1/members/M1/history", params=params, headers=key).json()
        pages += page["entries"]
        before = page["next_before"]
        if before is None:
            break
    cli = json.loads(loyalty(clean, "member", "history", "M1", "--json").stdout)
    foreign = httpx.get(f"{api}/v1/members/M2/history", params={"before": whole["entries"][0]["entry_id"]}, headers=key)

    # Then it is newest occurrence first, the late purchase below the one it preceded: the
    # CLI's order (oldest first), read from the other end.
    listed = [(e["event"]["event_id"], e["kind"], e["points"], e["occurred_at"]) for e in whole["entries"]]
    # (p-2 took the first-purchase bonus from p-3: its correction sits at p-3's time.)
    assert listed == [
        ("c-4", "earn", 10, "2026-11-04T01:00:00+00:00"),
        ("p-2", "reverse", -100, "2026-11-03T02:00:00+00:00"),
        ("p-3", "earn", 400, "2026-11-03T02:00:00+00:00"),
        ("p-2", "earn", 100, "2026-11-02T02:00:00+00:00"),
        ("p-2", "earn", 200, "2026-11-02T02:00:00+00:00"),
    ]
    assert whole["entries"] == pages == list(reversed(cli))
    assert whole["next_before"] is None
    assert (foreign.status_code, foreign.json()) == (
        422,
        {
            "error": "invalid_request",
            "detail": f"before: {whole['entries'][0]['entry_id']} is not an entry of member 'M2'",
            "field": "before",
        },
    )


# ---------------------------------------------------------------- points at checkout


def hold(url, headers, member_id, hold_id, points, order_id="order-1", **extra):
    return httpx.post(
        f"{url}/v1/members/{member_id}/holds",
        headers=headers,
        json={"hold_id": hold_id, "points": points, "order_id": order_id, **extra},
    )


def test_concurrent_holds_never_reserve_more_than_the_balance(api, clean):  # noqa: F811
    key = make_key(clean, "till-1", ALL, sources="pos")
    fund(api, clean, key, "M1", "1000.00")  # 1100 points

    with ThreadPoolExecutor(max_workers=20) as pool:
        answers = list(pool.map(lambda i: hold(api, key, "M1", f"h-{i}", 100, f"order-{i}"), range(20)))
    state = member(api, key, "M1")

    assert sorted(a.status_code for a in answers) == [201] * 11 + [409] * 9
    refused = [a.json() for a in answers if a.status_code == 409]
    assert {r["error"] for r in refused} == {"not_enough_points"}
    assert refused[0]["detail"] == "points: 100 requested but 0 available"
    assert (state["available_points"], state["held_points"]) == (0, 1100)


def test_hold_capture_void_are_idempotent_and_capture_books_once(api, clean):  # noqa: F811
    key = make_key(clean, "till-1", ALL, sources="pos")
    fund(api, clean, key, "M1", "1000.00")

    created = hold(api, key, "M1", "h-1", 300, "order-1")
    repeated = hold(api, key, "M1", "h-1", 300, "order-1")
    other_terms = hold(api, key, "M1", "h-1", 301, "order-1")
    too_much = hold(api, key, "M1", "h-2", 801)
    unknown_member = hold(api, key, "M404", "h-3", 1)
    invalid = hold(api, key, "M1", "h-4", 0)
    held = member(api, key, "M1")
    captured = httpx.post(f"{api}/v1/holds/h-1/capture", headers=key)
    captured_again = httpx.post(f"{api}/v1/holds/h-1/capture", headers=key)
    void_captured = httpx.post(f"{api}/v1/holds/h-1/void", headers=key)
    second = hold(api, key, "M1", "h-5", 200, "order-5")
    voided = httpx.post(f"{api}/v1/holds/h-5/void", headers=key)
    voided_again = httpx.post(f"{api}/v1/holds/h-5/void", headers=key)
    capture_voided = httpx.post(f"{api}/v1/holds/h-5/capture", headers=key)
    unknown_hold = httpx.post(f"{api}/v1/holds/nope/capture", headers=key)
    after = member(api, key, "M1")
    entries = httpx.get(f"{api}/v1/members/M1/history", headers=key).json()["entries"]

    assert created.status_code == 201
    assert {k: created.json()[k] for k in ("hold_id", "member_id", "order_id", "points", "status", "settled_at")} == {
        "hold_id": "h-1",
        "member_id": "M1",
        "order_id": "order-1",
        "points": 300,
        "status": "held",
        "settled_at": None,
    }
    assert (repeated.status_code, repeated.json()) == (200, created.json())
    assert (other_terms.status_code, other_terms.json()["error"]) == (409, "hold_id_conflict")
    assert (too_much.status_code, too_much.json()) == (
        409,
        {"error": "not_enough_points", "detail": "points: 801 requested but 800 available", "field": "points"},
    )
    assert (unknown_member.status_code, unknown_member.json()["error"]) == (404, "unknown_member")
    assert (invalid.status_code, invalid.json()) == (
        422,
        {"error": "invalid_request", "detail": "points: must be greater than or equal to 1", "field": "points"},
    )
    assert (held["available_points"], held["held_points"]) == (800, 300)
    assert (captured.status_code, captured.json()["status"]) == (200, "captured")
    assert (captured_again.status_code, captured_again.json()) == (200, captured.json())
    assert (void_captured.status_code, void_captured.json()["error"]) == (409, "hold_captured")
    assert second.status_code == 201
    assert (voided.status_code, voided.json()["status"]) == (200, "voided")
    assert (voided_again.status_code, voided_again.json()) == (200, voided.json())
    assert (capture_voided.status_code, capture_voided.json()["error"]) == (409, "hold_voided")
    assert (unknown_hold.status_code, unknown_hold.json()) == (
        404,
        {"error": "unknown_hold", "detail": "hold_id: no hold 'nope'", "field": "hold_id"},
    )
    assert (after["available_points"], after["held_points"]) == (800, 0)
    # One hold entry and one spend entry for h-1 (the capture booked once), hold and restore for h-5.
    assert [(e["kind"], e["points"], e["event"]["event_id"]) for e in entries] == [
        ("restore", 200, "hold:h-5"),
        ("hold", -200, "hold:h-5"),
        ("spend", 0, "hold:h-1"),
        ("hold", -300, "hold:h-1"),
        ("earn", 1100, "fund-M1"),
    ]
    assert entries[2]["rules"][0] == {
        "rule": "points_payment",
        "hold_id": "h-1",
        "order_id": "order-1",
        "points": 300,
        "hold_entry_id": entries[3]["entry_id"],
    }


def test_an_expired_hold_is_released(api, clean):  # noqa: F811
    key = make_key(clean, "till-1", ALL, sources="pos")
    fund(api, clean, key, "M1", "1000.00")

    created = hold(api, key, "M1", "h-1", 500, expires_in_s=1)
    deadline = time.monotonic() + 15
    while (state := member(api, key, "M1"))["available_points"] != 1100:
        assert time.monotonic() < deadline, f"the hold was not released: {state}"
        time.sleep(0.2)
    capture = httpx.post(f"{api}/v1/holds/h-1/capture", headers=key)
    void = httpx.post(f"{api}/v1/holds/h-1/void", headers=key)

    assert created.status_code == 201
    assert state["held_points"] == 0
    assert (capture.status_code, capture.json()["error"]) == (409, "hold_expired")
    assert (void.status_code, void.json()["status"]) == (200, "expired")


def test_refund_of_an_order_paid_with_points_restores_them(api, clean):  # noqa: F811
    key = make_key(clean, "till-1", ALL, sources="pos")
    fund(api, clean, key, "M1", "500.00")  # 600 points, Regular

    assert hold(api, key, "M1", "h-1", 400, "o-2").status_code == 201
    assert httpx.post(f"{api}/v1/holds/h-1/capture", headers=key).status_code == 200
    # The cash part of the order: 100.00, earning 100 points.
    assert httpx.post(f"{api}/v1/events", headers=key, json=purchase("p-2", "M1", "o-2", "100.00")).status_code == 202
    drain(clean)
    paid = member(api, key, "M1")
    assert (
        httpx.post(
            f"{api}/v1/events",
            headers=key,
            json=ev("r-1", "refund", "M1", order_id="o-2", refund_id="rf-1", amount="50.00"),
        ).status_code
        == 202
    )
    drain(clean)
    half = member(api, key, "M1")
    assert (
        httpx.post(
            f"{api}/v1/events",
            headers=key,
            json=ev("r-2", "refund", "M1", order_id="o-2", refund_id="rf-2", amount="50.00"),
        ).status_code
        == 202
    )
    drain(clean)
    whole = member(api, key, "M1")
    entries = httpx.get(f"{api}/v1/members/M1/history", headers=key).json()["entries"]

    assert paid["available_points"] == 600 - 400 + 100
    assert half["available_points"] == 300 - 50 + 200  # half the cash points back, half the paid points restored
    assert whole["available_points"] == 450 - 50 + 200
    # In occurrence order: the hold's entries happen when the till acts (now), the refunds when they occurred.
    assert [(e["kind"], e["points"], e["event"]["event_id"]) for e in entries] == [
        ("restore", 200, "hold:h-1"),
        ("restore", 200, "hold:h-1"),
        ("spend", 0, "hold:h-1"),
        ("hold", -400, "hold:h-1"),
        ("reverse", -50, "r-2"),
        ("reverse", -50, "r-1"),
        ("earn", 100, "p-2"),
        ("earn", 600, "fund-M1"),
    ]
    assert entries[0]["rules"][0]["points_due"] == 200 and entries[0]["rules"][0]["points_expired"] == 0


def test_a_retried_redemption_returns_the_first_outcome(api, clean, tmp_path):  # noqa: F811
    key = make_key(clean, "app-1", ALL, sources="app")
    till = make_key(clean, "till-1", "events:write", sources="pos")
    catalog = tmp_path / "rewards.toml"
    catalog.write_text(
        '[[reward]]\nreward_id = "mug"\nname = "Mug"\ncost_points = 500\nmin_tier = "Regular"\nstock = 1\n'
    )
    assert loyalty(clean, "rewards", "load", str(catalog)).returncode == 0
    fund(api, clean, till, "M1", "1000.00")

    def redeem(idem, reward_id="mug", quantity=1, member_id="M1"):
        headers = {**key, "Idempotency-Key": idem} if idem else key
        return httpx.post(
            f"{api}/v1/members/{member_id}/redemptions",
            headers=headers,
            json={"reward_id": reward_id, "quantity": quantity},
        )

    first = redeem("k-1")
    retry = redeem("k-1")
    reused = redeem("k-1", quantity=2)
    sold_out = redeem("k-2")
    sold_out_retry = redeem("k-2")
    missing = redeem(None)
    unknown = redeem("k-3", member_id="M404")
    state = member(api, key, "M1")

    assert first.status_code == 201
    assert first.json() == {
        "status": "confirmed",
        "event_id": first.json()["event_id"],
        "member_id": "M1",
        "reward_id": "mug",
        "reward_name": "Mug",
        "quantity": 1,
        "points": 500,
        "reason": None,
        "available_points": 600,
        "coupons": [],
    }
    assert (retry.status_code, retry.json()) == (201, first.json())
    assert (reused.status_code, reused.json()["error"]) == (422, "idempotency_key_reused")
    assert (sold_out.status_code, sold_out.json()["error"], sold_out.json()["redemption"]["status"]) == (
        409,
        "out_of_stock",
        "rejected",
    )
    assert (sold_out_retry.status_code, sold_out_retry.json()) == (409, sold_out.json())
    assert (missing.status_code, missing.json()["error"]) == (400, "missing_idempotency_key")
    assert (unknown.status_code, unknown.json()["error"]) == (404, "unknown_member")
    assert state["available_points"] == 600


def test_access_log_names_routes_not_members_or_keys(server, api, clean):  # noqa: F811
    _, log_path = server
    key = make_key(clean, "app-1", "members:read")
    httpx.get(f"{api}/v1/members/SECRET-MEMBER-77?x=1", headers=key)

    # The access line is written after the answer is sent: wait for this key's own line (the
    # route's template is in the log already, from the tests before).
    deadline = time.monotonic() + 10
    while "SECRET" not in log_path.read_text() and '"key": "app-1"' not in log_path.read_text():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    text = log_path.read_text()
    lines = [json.loads(line) for line in text.splitlines() if line.startswith("{") and "http_request" in line]
    assert "SECRET-MEMBER-77" not in text
    assert key["Authorization"].split()[1] not in text
    assert {"method": "GET", "route": "/v1/members/{member_id}", "status": 404, "key": "app-1"}.items() <= lines[
        -1
    ].items()


def test_the_sweep_releases_expired_holds_nobody_reads(clean, tmp_path):  # noqa: F811
    with api_process(clean, tmp_path / "api.log", LOYALTY_API_SWEEP_S="1") as url:
        key = make_key(clean, "till-1", ALL, sources="pos")
        fund(url, clean, key, "M1", "1000.00")
        assert hold(url, key, "M1", "h-1", 700, expires_in_s=1).status_code == 201

        deadline = time.monotonic() + 20
        while sql(clean, "SELECT status FROM holds") != [("expired",)]:
            assert time.monotonic() < deadline, "the sweep did not release the hold within 20 s"
            time.sleep(0.2)
        balance = sql(clean, "SELECT available_points FROM members WHERE member_id = 'M1'")

    assert balance == [(1100,)]
    audit = loyalty(clean, "audit", "--json")
    assert (audit.returncode, json.loads(audit.stdout)["clean"]) == (0, True)
