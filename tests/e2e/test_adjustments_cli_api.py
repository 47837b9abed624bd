"""Adjustments through the processes: a CRM's `adjustment` event through `loyalty publish` and
the worker, `loyalty member adjust`, and `POST /v1/members/{id}/adjustments` of `loyalty api`;
exact balances, lots with their expiry days, refusals as each way in answers them."""

from __future__ import annotations

import json
import re

import httpx

from tests.e2e.test_api import api, drain, make_key, server, sql  # noqa: F401  (api, server are fixtures)
from tests.e2e.test_cli import clean, line, loyalty  # noqa: F401  (clean is a fixture)

MEMBER_FUNDS = [
    # 300 + the first-purchase 100, expiring 2027-01-10; 200 expiring 2027-06-01.
    line(
        event_id="p-1",
        type="purchase",
        member_id="M1",
        occurred_at="2026-01-10T10:00:00+08:00",
        payload={"order_id": "o-1", "amount": "300.00", "currency": "CNY"},
    ),
    line(
        event_id="p-2",
        type="purchase",
        member_id="M1",
        occurred_at="2026-06-01T10:00:00+08:00",
        payload={"order_id": "o-2", "amount": "200.00", "currency": "CNY"},
    ),
    # A CRM's debit through the queue: 40 from the earliest-expiring lot, 560 left.
    line(
        event_id="crm-1",
        type="adjustment",
        member_id="M1",
        source="crm",
        occurred_at="2026-11-20T10:00:00+08:00",
        payload={"points": -40, "reason": "double bonus", "by": "crm-agent-7"},
    ),
]


def lots(env, member_id: str) -> list[tuple]:
    """Each lot's points, remaining and program-local expiry day, earliest-expiring first."""
    return sql(
        env,
        "SELECT points, remaining, to_char(expires_at AT TIME ZONE 'Asia/Shanghai', 'YYYY-MM-DD') FROM lots "
        f"WHERE member_id = '{member_id}' ORDER BY expires_at, lot_id",
    )


def test_adjustments_through_the_cli_and_the_api_share_one_ledger(api, clean, tmp_path):  # noqa: F811
    env, url = clean, api
    events = tmp_path / "events.jsonl"
    events.write_text("\n".join(MEMBER_FUNDS) + "\n")
    assert loyalty(env, "publish", str(events)).returncode == 0
    drain(env)
    # An adjustment through the API is of source `api`: a key restricted to sources must list it.
    headers = make_key(env, "crm-desk", "points:adjust,members:read", "api,crm")
    reader = make_key(env, "reader", "members:read")
    till = make_key(env, "till-7", "points:adjust,events:write", "pos")

    def post(body: dict, key: str | None = None, with_headers=headers, member_id="M1") -> httpx.Response:
        sent = {**with_headers, **({"Idempotency-Key": key} if key else {})}
        return httpx.post(f"{url}/v1/members/{member_id}/adjustments", headers=sent, json=body)

    def adjust(*args: str):
        return loyalty(env, "member", "adjust", "M1", *args)

    # Refused, nothing written: 560 available (the CRM's debit took 40 through the worker).
    no_scope = post({"points": 5, "reason": "x"}, with_headers=reader)
    not_its_source = post({"points": 5, "reason": "x"}, "k-0", with_headers=till)
    bad_key = post({"points": 5, "reason": "x"}, "k" * 129)
    too_much = post({"points": -800, "reason": "typo"}, "k-1")
    too_much_again = post({"points": -800, "reason": "typo"}, "k-1")
    zero = post({"points": 0, "reason": "typo"}, "k-2")
    no_reason = post({"points": 5}, "k-3")
    unknown = post({"points": 5, "reason": "x"}, member_id="NOBODY")
    cli_too_much = adjust("-800", "--reason", "typo")
    cli_no_reason = adjust("+5")

    assert (no_scope.status_code, no_scope.json()) == (
        403,
        {"error": "missing_scope", "detail": "this key does not have the points:adjust scope"},
    )
    assert (bad_key.status_code, bad_key.json()) == (
        400,
        {
            "error": "invalid_idempotency_key",
            "detail": "Idempotency-Key: send a printable key of 1 to 128 characters",
            "field": "Idempotency-Key",
        },
    )
    assert (not_its_source.status_code, not_its_source.json()) == (
        403,
        {
            "error": "source_not_allowed",
            "detail": "source: this key may not send events from source 'api'",
            "field": "source",
        },
    )
    assert (too_much.status_code, too_much.json()) == (
        409,
        {"error": "not_enough_points", "detail": "points: 800 requested but 560 available", "field": "points"},
    )
    assert (too_much_again.status_code, too_much_again.json()) == (409, too_much.json())
    assert (zero.status_code, zero.json()) == (
        422,
        {
            "error": "invalid_request",
            "detail": "points: must not be 0: give a credit (+500) or a debit (-200)",
            "field": "points",
        },
    )
    assert (no_reason.status_code, no_reason.json()) == (
        422,
        {"error": "invalid_request", "detail": "reason: is required", "field": "reason"},
    )
    assert (unknown.status_code, unknown.json()) == (
        404,
        {"error": "unknown_member", "detail": "member_id: no member 'NOBODY'", "field": "member_id"},
    )
    assert (cli_too_much.returncode, cli_too_much.stderr) == (1, "error: points: 800 requested but 560 available\n")
    assert (cli_no_reason.returncode, cli_no_reason.stderr) == (2, "error: reason: is required\n")
    assert sql(env, "SELECT count(*) FROM ledger_entries WHERE kind = 'adjust'") == [(1,)]

    # Credits, each a lot of its own; a retry of the API's gets the first answer back.
    credit = post({"points": 300, "reason": "late delivery", "expires_on": "2027-02-01"}, "k-4")
    replay = post({"points": 300, "reason": "late delivery", "expires_on": "2027-02-01"}, "k-4")
    reused = post({"points": 301, "reason": "late delivery", "expires_on": "2027-02-01"}, "k-4")
    cli_credit = adjust("+500", "--reason", "complaint 8812", "--by", "alice", "--expires-on", "2027-03-31", "--json")

    assert credit.status_code == 201, credit.text
    body = credit.json()
    assert (body["status"], body["source"], body["by"], body["points"], body["available_points"]) == (
        "applied",
        "api",
        "crm-desk",
        300,
        860,
    )
    assert (body["lot"]["points"], body["lot"]["expires_on"], body["taken"]) == (300, "2027-02-01", [])
    assert (replay.status_code, replay.json()) == (201, body)
    assert (reused.status_code, reused.json()) == (
        422,
        {
            "error": "idempotency_key_reused",
            "detail": "Idempotency-Key: already used for a different request",
            "field": "Idempotency-Key",
        },
    )
    assert cli_credit.returncode == 0, cli_credit.stderr
    done = json.loads(cli_credit.stdout)
    assert (done["source"], done["by"], done["reason"], done["points"], done["available_points"]) == (
        "cli",
        "alice",
        "complaint 8812",
        500,
        1360,
    )
    assert (done["lot"]["points"], done["lot"]["expires_on"], done["qualifying_points"]) == (500, "2027-03-31", 0)

    # Debits take the earliest-expiring points first.
    cli_debit = adjust("-450", "--reason", "duplicate credit", "--by", "bob")
    debit = post({"points": -500, "reason": "goodwill undone"}, "k-5")
    cli_qualifying = adjust("+500", "--reason", "vip", "--by", "alice", "--qualifying")

    assert cli_debit.returncode == 0, cli_debit.stderr
    assert re.fullmatch(
        r"member M1: -450 \(entry \d+, taken from lot \d+ \(360\), lot \d+ \(90\)\) by bob: duplicate credit; "
        r"available 910\n",
        cli_debit.stdout,
    ), cli_debit.stdout
    assert debit.status_code == 201, debit.text
    assert ([t["points"] for t in debit.json()["taken"]], debit.json()["available_points"]) == ([210, 290], 410)
    assert re.fullmatch(
        r"member M1: \+500 \(entry \d+, lot \d+ expiring on \d{4}-\d\d-\d\d, qualifying\) by alice: vip; "
        r"available 910\n",
        cli_qualifying.stdout,
    ), cli_qualifying.stdout
    assert lots(env, "M1")[:4] == [
        (400, 0, "2027-01-10"),
        (300, 0, "2027-02-01"),
        (500, 210, "2027-03-31"),
        (200, 200, "2027-06-01"),
    ]
    assert [(points, remaining) for points, remaining, _ in lots(env, "M1")[4:]] == [(500, 500)]
    assert sql(
        env,
        "SELECT available_points, qualifying_points, lifetime_points, tier FROM members WHERE member_id = 'M1'",
    ) == [(910, 1100, 600, "Silver")]

    # Who and why in both histories, and the report's adjusted line.
    history = loyalty(env, "member", "history", "M1").stdout
    report = json.loads(loyalty(env, "report", "--json").stdout)
    api_history = httpx.get(f"{url}/v1/members/M1/history", headers=headers).json()

    for said in (
        "adjustment -40 by crm-agent-7: double bonus",
        "adjustment +300 by crm-desk: late delivery (expires on 2027-02-01)",
        "adjustment +500 by alice: complaint 8812 (expires on 2027-03-31)",
        "adjustment -450 by bob: duplicate credit",
        "adjustment -500 by crm-desk: goodwill undone",
        "adjustment +500 by alice: vip (qualifying)",
    ):
        assert said in history, history
    assert report["reconciliation"]["adjusted"] == -40 + 300 + 500 - 450 - 500 + 500
    assert report["reconciliation"]["balanced"] is True
    api_entries = [e for e in api_history["entries"] if e["event"]["source"] == "api"]
    assert sorted((e["points"], e["rules"][0]["by"], e["rules"][0]["reason"]) for e in api_entries) == [
        (-500, "crm-desk", "goodwill undone"),
        (300, "crm-desk", "late delivery"),
    ]
