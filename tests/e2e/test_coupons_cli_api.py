"""Coupons through the processes: `loyalty rewards codes load`, `loyalty redeem`, and a real
`loyalty api` redeeming, looking a code up and using it at the till."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import httpx

from db.engine import create_engine
from tests.e2e.test_api import api, fund, server  # noqa: F401  (api and server are fixtures)
from tests.e2e.test_cli import clean, loyalty  # noqa: F401  (clean is a fixture)
from worker.services.api_keys import create_key

CATALOG = """
[[reward]]
reward_id = "coffee"
name = "Coffee voucher"
cost_points = 300
min_tier = "Regular"
kind = "coupon"
valid_days = 30
"""


def keys(env, **scopes: str) -> dict[str, dict[str, str]]:
    """API keys by name, made in-process: `loyalty api-key create` has its own tests, and each
    process started here costs seconds."""

    async def go():
        engine = create_engine(env["LOYALTY_DATABASE_URL"])
        try:
            return {name: await create_key(engine, name, granted) for name, granted in scopes.items()}
        finally:
            await engine.dispose()

    return {name: {"Authorization": f"Bearer {key}"} for name, key in asyncio.run(go()).items()}


def test_load_codes_redeem_look_up_and_use_once(api, clean, tmp_path):  # noqa: F811
    env = clean
    catalog = tmp_path / "rewards.toml"
    catalog.write_text(CATALOG)
    codes = tmp_path / "codes.txt"
    codes.write_text("CAFE-001\nCAFE-002\n\nCAFE-001\n")
    made = keys(env, **{"app-1": "events:write,members:read,rewards:redeem", "till-1": "coupons:read,coupons:use"})
    admin, till = made["app-1"], made["till-1"]

    assert loyalty(env, "rewards", "load", str(catalog)).returncode == 0
    loaded = loyalty(env, "rewards", "codes", "load", "coffee", str(codes))
    fund(api, env, admin, "M1", "1000.00")  # 1100 points
    by_cli = loyalty(env, "redeem", "M1", "coffee")
    by_api = httpx.post(
        f"{api}/v1/members/M1/redemptions",
        headers={**admin, "Idempotency-Key": "k-1"},
        json={"reward_id": "coffee", "quantity": 1},
    )
    dry = httpx.post(
        f"{api}/v1/members/M1/redemptions",
        headers={**admin, "Idempotency-Key": "k-2"},
        json={"reward_id": "coffee", "quantity": 1},
    )
    looked_up = httpx.get(f"{api}/v1/coupons/CAFE-002", headers=till)
    first_use = httpx.post(f"{api}/v1/coupons/CAFE-002/use", headers=till)
    second_use = httpx.post(f"{api}/v1/coupons/CAFE-002/use", headers=till)
    after = httpx.get(f"{api}/v1/coupons/CAFE-002", headers=till)
    no_scope = httpx.post(f"{api}/v1/coupons/CAFE-001/use", headers=admin)
    unknown = httpx.get(f"{api}/v1/coupons/CAFE-404", headers=till)
    history = httpx.get(f"{api}/v1/members/M1/history", headers=admin)

    last_day = (datetime.now(ZoneInfo("Asia/Shanghai")).date() + timedelta(days=29)).isoformat()
    assert loaded.stdout.strip() == "reward coffee: 2 codes loaded, 1 skipped (duplicates); 2 left"
    assert by_cli.returncode == 0, by_cli.stderr
    assert by_cli.stdout.splitlines() == [
        "redeemed 1 x Coffee voucher for 300 points; available 800",
        f"coupon CAFE-001, valid until {last_day}",
    ]
    assert by_api.status_code == 201, by_api.text
    assert (by_api.json()["available_points"], by_api.json()["coupons"]) == (
        500,
        [{"code": "CAFE-002", "expires_on": last_day}],
    )
    assert (dry.status_code, dry.json()["error"], dry.json()["redemption"]["available_points"]) == (
        409,
        "no_codes_left",
        500,
    )
    assert looked_up.status_code == 200
    coupon = looked_up.json()
    assert {k: coupon[k] for k in ("code", "status", "reward_id", "member_id", "expires_on", "used_at")} == {
        "code": "CAFE-002",
        "status": "issued",
        "reward_id": "coffee",
        "member_id": "M1",
        "expires_on": last_day,
        "used_at": None,
    }
    assert first_use.status_code == 200, first_use.text
    assert (first_use.json()["status"], first_use.json()["used_by"]) == ("used", "till-1")
    used_at = first_use.json()["used_at"]
    assert (second_use.status_code, second_use.json()["error"], second_use.json()["detail"]) == (
        409,
        "coupon_used",
        f"coupon 'CAFE-002' used at {used_at}",
    )
    assert (after.status_code, after.json()["status"], after.json()["used_at"]) == (200, "used", used_at)
    assert (no_scope.status_code, no_scope.json()["error"]) == (403, "missing_scope")
    assert (unknown.status_code, unknown.json()) == (
        404,
        {"error": "unknown_coupon", "detail": "code: no coupon 'CAFE-404'", "field": "code"},
    )
    redeemed = [e["rules"][0]["coupons"] for e in history.json()["entries"] if e["kind"] == "redeem"]
    assert redeemed == [[{"code": "CAFE-002", "expires_on": last_day}], [{"code": "CAFE-001", "expires_on": last_day}]]
