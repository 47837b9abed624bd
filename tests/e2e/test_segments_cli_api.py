"""Member labels through the processes: `loyalty member label` and `PUT /v1/members/{id}/labels`
set them (as member_update events the worker's ledger folds), the documented staff rule then
pays a labelled member nothing, and `loyalty member list` and `GET /v1/members` page through
members by tier and label with the same answer."""

from __future__ import annotations

import json
import os
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import pytest

from tests.conftest import REDIS_URL
from tests.e2e.api_server import api_process
from tests.e2e.test_cli import clean, line, loyalty  # noqa: F401  (clean is a fixture)
from worker.domain.engine.language import DEFAULT_PROGRAM_PATH

ROOT = Path(__file__).resolve().parents[2]
LABEL_RULE = "must be 1-64 characters: letters, digits and _ - . :"


def program_with_the_staff_rule(path: Path) -> Path:
    """The built-in program and the `staff_earn_nothing` rule exactly as docs/rules.md shows it."""
    doc = (ROOT / "docs" / "rules.md").read_text()
    block = next(b for b in re.findall(r"```toml\n(.*?)```", doc, re.S) if 'id = "staff_earn_nothing"' in b)
    rule = block[block.index('[[rules]]\nid = "staff_earn_nothing"') :]
    path.write_text(DEFAULT_PROGRAM_PATH.read_text() + "\n" + rule)
    return path


@pytest.fixture(scope="module")
def program_file(tmp_path_factory) -> Path:
    return program_with_the_staff_rule(tmp_path_factory.mktemp("program") / "program.toml")


@pytest.fixture(scope="module")
def server(database_url, redis_namespace, program_file, tmp_path_factory):
    env = {
        **os.environ,
        "LOYALTY_DATABASE_URL": database_url,
        "LOYALTY_REDIS_URL": REDIS_URL,
        "LOYALTY_NAMESPACE": redis_namespace,
        "LOYALTY_STRICT_CHECKS": "1",
        "LOYALTY_LOG_FORMAT": "json",
        "LOYALTY_PROGRAM_FILE": str(program_file),
        "LOYALTY_API_SWEEP_S": "0",
    }
    with api_process(env, tmp_path_factory.mktemp("api") / "api.log") as url:
        yield url


@pytest.fixture
def setup(server, clean, program_file):  # noqa: F811
    """The API's URL and the environment of the commands, on an empty schema and queue."""
    return server, {**clean, "LOYALTY_PROGRAM_FILE": str(program_file)}


def key(env: dict, name: str, scopes: str) -> dict[str, str]:
    created = loyalty(env, "api-key", "create", "--name", name, "--scopes", scopes, "--json")
    assert created.returncode == 0, created.stderr
    return {"Authorization": f"Bearer {json.loads(created.stdout)['key']}"}


def event(kind: str, member: str, occurred_at: str, **payload) -> dict:
    return json.loads(
        line(event_id=f"{kind}-{member}", type=kind, member_id=member, occurred_at=occurred_at, payload=payload)
    )


def test_labels_set_by_cli_and_api_decide_earning_and_the_listings_page_alike(setup):
    api, env = setup
    headers = key(env, "back-office", "events:write,members:read,members:write")
    # Given three members who signed up, M2 Silver after a purchase of 1000, and purchases of M1
    # and M3 a few minutes from now, applied by the worker before any label is set
    before = "2026-11-03T10:00:00+08:00"
    after = datetime.now(UTC) + timedelta(minutes=5)
    events = [
        *(event("signup", m, before) for m in ("M1", "M2", "M3")),
        {**event("purchase", "M2", before, order_id="o-2", amount="1000.00", currency="CNY"), "event_id": "p-o-2"},
        *(
            event("purchase", m, after.isoformat(), order_id=f"o-{m}", amount="300.00", currency="CNY")
            for m in ("M1", "M3")
        ),
    ]
    queued = httpx.post(f"{api}/v1/events", headers=headers, json=events)
    assert queued.status_code == 202, queued.text
    drained = loyalty(env, "drain", "--timeout", "60", "--threads", "1")
    assert drained.returncode == 0, drained.stderr
    # 300 a purchase, doubled on the member day (the 8th), the first-purchase bonus, the signup's
    earned = 50 + 100 + 300 * (2 if after.astimezone(ZoneInfo("Asia/Shanghai")).day == 8 else 1)
    assert httpx.get(f"{api}/v1/members/M1", headers=headers).json()["available_points"] == earned

    # When the operator labels M1 employee on the command line (now: before M1's purchase) and
    # the back office labels M2 over HTTP
    labelled = loyalty(env, "member", "label", "M1", "--add", "employee", "--add", "vip", "--json")
    bad_label = loyalty(env, "member", "label", "M1", "--add", "a b")
    unknown = loyalty(env, "member", "label", "NOBODY", "--add", "vip")
    put = httpx.put(f"{api}/v1/members/M2/labels", headers=headers, json={"labels": ["vip", "staff", "vip"]})
    put_bad = httpx.put(f"{api}/v1/members/M2/labels", headers=headers, json={"labels": ["vip", "a b"]})
    put_extra = httpx.put(f"{api}/v1/members/M2/labels", headers=headers, json={"labels": [], "tier": "Gold"})
    put_unknown = httpx.put(f"{api}/v1/members/NOBODY/labels", headers=headers, json={"labels": ["vip"]})

    # Then each answers with the member's labels, or names what is wrong
    assert labelled.returncode == 0, labelled.stderr
    assert {k: v for k, v in json.loads(labelled.stdout).items() if k != "event_id"} == {
        "member_id": "M1",
        "labels": ["employee", "vip"],
        "status": "applied",
    }
    assert (bad_label.returncode, bad_label.stderr) == (2, f"error: --add: 'a b' is not a label: {LABEL_RULE}\n")
    assert (unknown.returncode, unknown.stderr) == (1, "error: no member 'NOBODY'\n")
    assert (put.status_code, put.json()) == (200, {"member_id": "M2", "labels": ["staff", "vip"]})
    assert (put_bad.status_code, put_bad.json()) == (
        422,
        {"error": "invalid_request", "detail": f"labels.1: {LABEL_RULE}", "field": "labels.1"},
    )
    assert (put_extra.status_code, put_extra.json()["detail"]) == (422, "tier: is not a known field")
    assert (put_unknown.status_code, put_unknown.json()) == (
        404,
        {"error": "unknown_member", "detail": "member_id: no member 'NOBODY'", "field": "member_id"},
    )
    # And M1's purchase, which occurred after the label, is re-evaluated at once: the documented
    # staff rule pays an employee nothing; M3, without the label, keeps what it earned
    shown = {m: httpx.get(f"{api}/v1/members/{m}", headers=headers).json() for m in ("M1", "M3")}
    assert {m: (view["available_points"], view["labels"]) for m, view in shown.items()} == {
        "M1": (50, ["employee", "vip"]),
        "M3": (earned, []),
    }

    # And the listings page by member id, the command line and the API alike
    first = httpx.get(f"{api}/v1/members", headers=headers, params={"label": "vip", "limit": 1})
    second = httpx.get(
        f"{api}/v1/members", headers=headers, params={"label": "vip", "limit": 1, "cursor": first.json()["next_cursor"]}
    )
    silver = httpx.get(f"{api}/v1/members", headers=headers, params={"tier": "Silver"})
    bad_tier = httpx.get(f"{api}/v1/members", headers=headers, params={"tier": "Platinum"})
    too_many = httpx.get(f"{api}/v1/members", headers=headers, params={"limit": 501})
    by_cli = loyalty(env, "member", "list", "--label", "vip", "--limit", "1", "--json")

    assert [(m["member_id"], m["labels"]) for m in first.json()["members"]] == [("M1", ["employee", "vip"])]
    assert first.json()["next_cursor"] == "M1"
    assert [(m["member_id"], m["labels"]) for m in second.json()["members"]] == [("M2", ["staff", "vip"])]
    assert second.json()["next_cursor"] is None
    assert [(m["member_id"], m["tier"]) for m in silver.json()["members"]] == [("M2", "Silver")]
    assert (bad_tier.status_code, bad_tier.json()["detail"]) == (
        422,
        "tier: 'Platinum' is not a tier of the program (Regular, Silver, Gold, Diamond)",
    )
    assert (too_many.status_code, too_many.json()["field"]) == (422, "limit")
    assert by_cli.returncode == 0, by_cli.stderr
    assert json.loads(by_cli.stdout) == first.json()
