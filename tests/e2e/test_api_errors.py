"""What no route handler expects is still a JSON answer: a real `loyalty api` reading a row it
cannot make sense of answers 500 `internal`, and logs the traceback once, in one JSON line."""

from __future__ import annotations

import json
import re

import httpx

from tests.e2e.api_server import api_process
from tests.e2e.test_api import make_key, sql
from tests.e2e.test_cli import clean  # noqa: F401  (a fixture)


def test_an_unexpected_error_is_a_json_500_with_a_reference_and_one_log_line(clean, tmp_path):  # noqa: F811
    # Given a stored outcome edited by hand into something no code writes (points as a word)
    sql(
        clean,
        "INSERT INTO processed_events (source, event_id, payload_hash, member_id, event_type, status, result,"
        " occurred_at) VALUES ('pos', 'odd-1', 'x', 'M1', 'purchase', 'applied', '{\"points\": \"many\"}', now())",
    )
    log = tmp_path / "api.log"
    with api_process({**clean, "LOYALTY_LOG_FORMAT": "json"}, log, LOYALTY_API_SWEEP_S="0") as url:
        key = make_key(clean, "till-1", "events:write")
        answer = httpx.get(f"{url}/v1/events/pos/odd-1", headers=key)

    assert (answer.status_code, answer.headers["content-type"]) == (500, "application/json")
    assert set(answer.json()) == {"error", "detail"}
    assert answer.json()["error"] == "internal"
    reference = re.fullmatch(
        r"unexpected error; the API log has it under reference ([0-9a-f]{12})", answer.json()["detail"]
    )
    assert reference, answer.json()
    lines = log.read_text().splitlines()
    assert [line for line in lines if not line.startswith("{")] == []  # no plain-text traceback
    failed = [json.loads(line) for line in lines if "Traceback" in line]
    assert [(r["event"], r["level"], r["reference"], r["route"]) for r in failed] == [
        ("request_failed", "error", reference.group(1), "/v1/events/{source}/{event_id:path}")
    ]
    assert "ValueError: invalid literal for int()" in failed[0]["exception"]
    access = [json.loads(line) for line in lines if '"http_request"' in line]
    assert [(r["route"], r["status"]) for r in access if r["route"] != "/healthz"] == [
        ("/v1/events/{source}/{event_id:path}", 500)
    ]
