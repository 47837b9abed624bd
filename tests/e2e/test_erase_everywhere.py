"""`loyalty member erase` against a member written through every path: events through the worker,
identities linked (and a member merged in), rejected events that named the member only by an
identity, notifications rendered in the member's locale, an API redemption with an
Idempotency-Key. Afterwards every text, varchar, json and jsonb column of every table is
searched for the member's personal data."""

from __future__ import annotations

import json
from datetime import date

import httpx
from sqlalchemy import text

from tests.conftest import NOW
from tests.e2e.api_server import api_process
from tests.e2e.test_cli import clean, line, loyalty  # noqa: F401  (clean is a fixture)
from worker.domain.identities import identity_member_id
from worker.domain.program import DEFAULT_PROGRAM
from worker.services import intake
from worker.services.erasure import ERASED_RAW
from worker.services.ledger import stored_event

# The member erased, M1, and what is personal about it, as sent and as stored.
BIRTHDAY = "1990-05-17"
LOCALE = "zh-Hant"
PHONE = "+8613800000000"
PHONE_AS_SENT = "+86 138 0000 0000"
CARD = "LC-8800123"
EMAIL = "ann.lee@example.com"
OPENID = "o6_bmjrPTlm6_2sgVt7hMZOPfL2M"
PERSONAL = (BIRTHDAY, LOCALE, PHONE, CARD, EMAIL, OPENID)
# A member who is not erased: its data stays where it was.
OTHER = ("1985-01-02", "+8613900000000")
# What an erased member's late events bring again: taken in nowhere.
LATE = ("1991-02-03", "zh-Hans", "+8613700000000")
PHONE_MEMBER = identity_member_id("phone", PHONE)


def at(day: int, hour: int = 10) -> str:
    return f"2026-11-{day:02d}T{hour:02d}:00:00+08:00"


def purchase(event_id: str, order_id: str, amount: str, occurred_at: str, **member) -> str:
    payload = {"order_id": order_id, "amount": amount, "currency": "CNY"}
    return line(event_id=event_id, type="purchase", occurred_at=occurred_at, payload=payload, **member)


def publish_and_drain(env, tmp_path, name: str, *lines: str) -> None:
    events = tmp_path / name
    events.write_text("\n".join(lines) + "\n")
    published = loyalty(env, "publish", str(events))
    assert published.returncode == 0, published.stderr
    drained = loyalty(env, "drain", "--timeout", "60", "--threads", "1")  # one thread: queue order
    assert drained.returncode == 0, drained.stderr


async def columns(db) -> list[tuple[str, str]]:
    """Every text, varchar, json and jsonb column (and text array) of every table in the schema."""
    async with db.connect() as conn:
        rows = await conn.execute(
            text(
                """
                SELECT c.table_name, c.column_name FROM information_schema.columns c
                JOIN information_schema.tables t USING (table_schema, table_name)
                WHERE c.table_schema = current_schema() AND t.table_type = 'BASE TABLE'
                  AND (c.data_type IN ('text', 'character varying', 'character', 'json', 'jsonb')
                       OR c.udt_name IN ('_text', '_varchar'))
                ORDER BY 1, 2
                """
            )
        )
        return [(r.table_name, r.column_name) for r in rows]


async def found(db, values) -> dict[str, set[str]]:
    """For each value, the `table.column`s where some row holds it (case-insensitively)."""
    where: dict[str, set[str]] = {value: set() for value in values}
    async with db.connect() as conn:
        for table, column in await columns(db):
            for value in values:
                # Names from information_schema, quoted; the value is a parameter.
                hit = await conn.execute(
                    text(
                        f'SELECT 1 FROM "{table}" WHERE strpos(lower(CAST("{column}" AS text)), lower(:v)) > 0 LIMIT 1'
                    ),
                    {"v": value},
                )
                if hit.first() is not None:
                    where[value].add(f"{table}.{column}")
    return where


async def ledger(db) -> list[tuple]:
    async with db.connect() as conn:
        rows = await conn.execute(
            text(
                """
                SELECT entry_id, member_id, kind, points, pending_points, qualifying_points, source, event_id,
                       event_type, CAST(rules AS text), occurred_at
                FROM ledger_entries ORDER BY entry_id
                """
            )
        )
        return [tuple(r) for r in rows]


async def rows(db, query: str) -> list[tuple]:
    async with db.connect() as conn:
        return [tuple(r) for r in await conn.execute(text(query))]


async def reject(db, raw) -> None:
    outcome = await intake.process(db, DEFAULT_PROGRAM, raw, now=NOW)
    assert outcome.status == "rejected", outcome


async def test_erase_leaves_no_personal_data_in_any_column_and_keeps_the_books(db, clean, tmp_path):  # noqa: F811
    env = clean
    # Given a member written through every path.
    publish_and_drain(
        env,
        tmp_path,
        "first.jsonl",
        line(
            event_id="s-1",
            type="signup",
            member_id="M1",
            source="app",
            occurred_at=at(1, 9),
            payload={"birthday": BIRTHDAY, "locale": LOCALE},
        ),
        purchase("p-1", "o-1", "300.00", at(2), member={"kind": "phone", "value": PHONE_AS_SENT}),
        purchase("p-2", "o-2", "500.00", at(5), member_id="M1"),
        # A refund before its purchase: a deferred event.
        line(
            event_id="r-1",
            type="refund",
            member_id="M1",
            occurred_at=at(5, 11),
            payload={"order_id": "o-9", "refund_id": "rf-1", "amount": "10.00"},
        ),
        line(
            event_id="s-2",
            type="signup",
            member_id="M2",
            source="app",
            occurred_at=at(1, 9),
            payload={"birthday": OTHER[0], "locale": "en"},
        ),
        purchase("p-3", "o-3", "1000.00", at(3), member_id="M2"),
    )
    for member_id, identity in (
        ("M1", f"phone:{PHONE_AS_SENT}"),  # merges the member the phone enrolled into M1
        ("M1", f"card:{CARD}"),
        ("M1", "email:Ann.Lee@Example.com"),
        ("M1", f"wechat_openid:{OPENID}"),
        ("M2", f"phone:{OTHER[1]}"),
    ):
        linked = loyalty(env, "member", "link", member_id, identity)
        assert linked.returncode == 0, linked.stderr
    publish_and_drain(
        env,
        tmp_path,
        "second.jsonl",
        purchase("p-4", "o-4", "200.00", at(6), member={"kind": "card", "value": CARD}),
        # Late: now the first purchase, it takes the first-purchase bonus from p-2 (corrections).
        purchase("p-0", "o-0", "100.00", at(1, 12), member_id="M1"),
    )
    await reject(db, purchase("bad-1", "o-x", "1.999", at(7), member={"kind": "phone", "value": "+86 (138) 0000-0000"}))
    await reject(db, purchase("bad-2", "o-y", "1.999", at(7), member={"kind": "email", "value": "ANN.LEE@EXAMPLE.COM"}))
    await reject(db, f'{{"event_id": "bad-3", "member": {{"kind": "wechat_openid", "value": "{OPENID}"')
    await reject(db, {**json.loads(line(event_id="bad-4", type="signup", member_id="M1")), "extra": BIRTHDAY})
    await reject(db, purchase("bad-5", "o-z", "1.999", at(7), member={"kind": "phone", "value": OTHER[1]}))
    dispatched = loyalty(env, "notifications", "dispatch")
    assert dispatched.returncode == 0, dispatched.stderr
    catalog = tmp_path / "rewards.toml"
    catalog.write_text('[[reward]]\nreward_id = "mug"\nname = "Mug"\ncost_points = 100\nmin_tier = "Regular"\n')
    assert loyalty(env, "rewards", "load", str(catalog)).returncode == 0
    created = loyalty(env, "api-key", "create", "--name", "app-1", "--scopes", "rewards:redeem", "--json")
    key = {"Authorization": f"Bearer {json.loads(created.stdout)['key']}"}

    def redeem(api: str, member_id: str) -> httpx.Response:
        return httpx.post(
            f"{api}/v1/members/{member_id}/redemptions",
            headers={**key, "Idempotency-Key": f"redeem-{member_id}"},
            json={"reward_id": "mug"},
        )

    with api_process(env, tmp_path / "api.log") as api:
        redeemed = {member_id: redeem(api, member_id) for member_id in ("M1", "M2")}
    assert [r.status_code for r in redeemed.values()] == [201, 201], redeemed["M1"].text

    before = await found(db, (*PERSONAL, *OTHER))
    books = await ledger(db)
    answers = await rows(db, "SELECT idempotency_key FROM api_idempotency ORDER BY 1")
    # Every path did write the member's data, where this test then looks for it.
    assert before == {
        BIRTHDAY: {"processed_events.payload", "rejected_events.raw"},
        LOCALE: {"members.locale", "processed_events.payload", "notifications.locale"},
        PHONE: {"member_identities.value"},
        CARD: {"member_identities.value"},
        EMAIL: {"member_identities.value", "rejected_events.raw"},
        OPENID: {"member_identities.value", "rejected_events.raw"},
        OTHER[0]: {"processed_events.payload"},
        OTHER[1]: {"member_identities.value", "rejected_events.raw"},
    }
    texts = "SELECT member_id, count(*) FROM notifications WHERE text IS NOT NULL OR locale IS NOT NULL GROUP BY 1"
    # Rendered: M1's in its locale, the merged member's in the default one.
    assert sorted(await rows(db, texts)) == [("M1", 7), ("M2", 3), (PHONE_MEMBER, 1)]
    assert answers == [("redeem-M1",), ("redeem-M2",)]
    assert any('"corrects"' in entry[9] for entry in books)

    # When the member is erased.
    erased = loyalty(env, "member", "erase", "M1")

    # Then none of its personal data is left in any column, the other member's stays, the
    # books are unchanged and audit clean.
    [(erased_at,)] = await rows(db, "SELECT erased_at FROM members WHERE member_id = 'M1'")
    assert (erased.returncode, erased.stderr) == (0, "")
    assert erased.stdout == (
        f"member M1 erased at {erased_at.isoformat()}; 4 identities removed, 1 stored events, "
        "4 rejected events and 8 notifications redacted, 1 API answers removed\n"
    )
    after = await found(db, (*PERSONAL, *OTHER))
    assert after == {value: set() for value in PERSONAL} | {value: before[value] for value in OTHER}
    assert await rows(db, "SELECT member_id, birthday, locale FROM members ORDER BY 1") == [
        ("M1", None, None),
        ("M2", date(1985, 1, 2), "en"),
        (PHONE_MEMBER, None, None),
    ]
    assert await ledger(db) == books
    assert await rows(db, texts) == [("M2", 3)]
    assert await rows(db, "SELECT idempotency_key FROM api_idempotency") == [("redeem-M2",)]
    assert await rows(db, f"SELECT count(*) FROM rejected_events WHERE raw = '{ERASED_RAW}'") == [(4,)]
    audit = loyalty(env, "audit")
    assert (audit.returncode, audit.stdout) == (0, "3 members checked, 0 differences\n")
    # A retry of the erased member's request gets the same outcome from the ledger's record.
    with api_process(env, tmp_path / "api-again.log") as api:
        retried = redeem(api, "M1")
    assert (retried.status_code, retried.json()) == (201, redeemed["M1"].json())
    # The stored events a re-evaluation reads still parse, without the member's data.
    stored = await rows(
        db,
        "SELECT event_id, event_type, payload FROM processed_events WHERE member_id = 'M1' AND jsonb_typeof(payload) = 'object'",
    )
    assert sorted(stored_event(event_type, payload).event_id for _, event_type, payload in stored) == [
        "p-0",
        "p-1",
        "p-2",
        "p-4",
        "r-1",
        "s-1",
    ]
    assert [payload["payload"] for event_id, _, payload in stored if event_id == "s-1"] == [{}]

    # And the erased member's later events (a late signup with a birthday and a locale, a late
    # purchase, a new identity) are applied or refused without taking any of it in again.
    publish_and_drain(
        env,
        tmp_path,
        "after.jsonl",
        line(
            event_id="s-9",
            type="signup",
            member_id="M1",
            source="app",
            occurred_at=at(1, 8),
            payload={"birthday": LATE[0], "locale": LATE[1]},
        ),
        purchase("p-9", "o-9", "100.00", at(2, 12), member_id="M1"),
        # By the phone erased: the member it enrolled (merged into M1) is found by its id.
        purchase("p-8", "o-8", "50.00", at(7), member={"kind": "phone", "value": PHONE_AS_SENT}),
    )
    relinked = loyalty(env, "member", "link", "M1", f"phone:{LATE[2]}")
    show = json.loads(loyalty(env, "member", "show", "M1", "--json").stdout)

    assert (relinked.returncode, relinked.stderr) == (
        1,
        "error: member_id: member M1 is erased; an erased member takes no identity\n",
    )
    assert await found(db, (*PERSONAL, *LATE)) == {value: set() for value in (*PERSONAL, *LATE)}
    assert (show["birthday"], show["locale"]) == (None, None)
    # The late purchase earns as it arrives (1 point per yuan at Silver's 1.2) and the refund
    # waiting for its order takes 10% back; an erased member's history is not re-evaluated
    # (no correction entries), and the late signup earns nothing (its bonus was paid).
    new_entries = f"SELECT event_id, kind, points FROM ledger_entries WHERE entry_id > {books[-1][0]} ORDER BY entry_id"
    assert await rows(db, new_entries) == [
        ("p-9", "earn", 120),
        ("r-1", "reverse", -12),
        ("p-8", "earn", 60),
    ]
    # Erasing again finds only the answer the retry stored (it names the member by id).
    again = loyalty(env, "member", "erase", "M1")
    assert again.stdout == (
        f"member M1 was already erased at {erased_at.isoformat()}; 0 identities removed, 0 stored events, "
        "0 rejected events and 0 notifications redacted, 1 API answers removed\n"
    )
    audit = loyalty(env, "audit")
    assert (audit.returncode, audit.stdout) == (0, "3 members checked, 0 differences\n")
