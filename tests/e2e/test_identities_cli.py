"""Identities through the command line as processes: events by card and by phone, `member link`
merging the two members, `member show` by identity, `member history` showing the merge."""

from __future__ import annotations

import json

from tests.e2e.test_cli import clean, line, loyalty  # noqa: F401, F811  (clean is a fixture)
from worker.domain.identities import identity_member_id

CARD = {"kind": "card", "value": "8800123"}
PHONE = {"kind": "phone", "value": "+86 138 0000 0000"}


def by(identity: dict, **event) -> str:
    return line(member=identity, **event)


def test_link_merges_card_and_phone_members_and_show_finds_them_by_identity(clean, tmp_path):  # noqa: F811
    env = clean
    events = tmp_path / "events.jsonl"
    events.write_text(
        "\n".join(
            [
                by(
                    CARD,
                    event_id="p-1",
                    type="purchase",
                    occurred_at="2026-11-02T10:00:00+08:00",
                    payload={"order_id": "o-1", "amount": "300.00", "currency": "CNY"},
                ),
                by(
                    PHONE,
                    event_id="p-2",
                    type="purchase",
                    source="app",
                    occurred_at="2026-11-03T10:00:00+08:00",
                    payload={"order_id": "o-2", "amount": "500.00", "currency": "CNY"},
                ),
            ]
        )
        + "\n"
    )
    card_member = identity_member_id("card", "8800123")
    phone_member = identity_member_id("phone", "+8613800000000")

    assert loyalty(env, "db", "upgrade").returncode == 0
    assert loyalty(env, "publish", str(events)).returncode == 0
    assert loyalty(env, "drain", "--timeout", "60", "--threads", "1").returncode == 0
    before = json.loads(loyalty(env, "member", "show", "phone:+8613800000000", "--json").stdout)
    linked = loyalty(env, "member", "link", card_member, "phone:+86-138-0000-0000", "--json")
    again = loyalty(env, "member", "link", card_member, "phone:+8613800000000")
    by_phone = loyalty(env, "member", "show", "phone:+8613800000000", "--json")
    by_card = loyalty(env, "member", "show", "card:8800123", "--json")
    absorbed = loyalty(env, "member", "show", phone_member, "--json")
    history = loyalty(env, "member", "history", "card:8800123")
    unknown = loyalty(env, "member", "show", "email:nobody@example.com")
    malformed = loyalty(env, "member", "link", card_member, "phone:13800000000")
    unlink = loyalty(env, "member", "unlink", card_member, "phone:+8613800000000")
    audit = loyalty(env, "audit", "--json")

    assert before["member_id"] == phone_member
    assert linked.returncode == 0, linked.stderr
    merge = json.loads(linked.stdout)
    survivor = merge["survivor"]
    assert merge["status"] == "applied" and merge["linked"] == "merged"
    assert {merge["survivor"], merge["absorbed"]} == {card_member, phone_member}
    assert again.returncode == 0 and "already has this phone" in again.stdout
    shown = json.loads(by_phone.stdout)
    assert shown == json.loads(by_card.stdout) and shown["member_id"] == survivor
    assert shown["available_points"] > before["available_points"]
    if survivor == card_member:
        assert json.loads(absorbed.stdout)["merged_into"] == survivor
    assert f"merged into {survivor}" in history.stdout and "transfer" in history.stdout
    assert unknown.returncode == 1 and "no member has this email" in unknown.stderr
    assert malformed.returncode == 2 and "E.164" in malformed.stderr
    assert unlink.returncode == 2 and "not undone automatically" in unlink.stderr
    assert audit.returncode == 0, audit.stdout
    assert "13800000000" not in linked.stderr + history.stdout  # identities are not logged
