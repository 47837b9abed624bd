"""Member labels on the real PostgreSQL through the real intake and ledger: a label change is a
member_update event that purchases after it (and only those) are decided with, in whatever
order the events arrive; the documented staff rule pays a labelled member nothing; order lines'
labels reach the item filters; the listing pages by member id on its indexes."""

from __future__ import annotations

import itertools
import re
import tomllib
from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy import text

from tests import factories as f
from tests.conftest import NOW
from worker.domain import engine
from worker.domain.engine.language import DEFAULT_PROGRAM_PATH
from worker.domain.errors import UnknownMember
from worker.domain.labels import LabelError
from worker.domain.program import DEFAULT_PROGRAM
from worker.domain.reevaluation import points_by_event
from worker.services import intake, members
from worker.services.audit import audit_all
from worker.services.erasure import erase_member
from worker.services.segments import list_members, list_statement, set_labels

ROOT = Path(__file__).resolve().parents[2]
SEGMENT_RULES = """
[[rules]]
id = "vip_double"
on = "purchase"
when = { labels = ["vip"] }
effect = { kind = "multiply", factor = "2", group = "campaign" }

[[rules]]
id = "eco_lines"
on = "purchase"
when = { items = { labels = ["eco"], exclude_labels = ["tobacco"] } }
effect = { kind = "per_quantity", points = 5 }
"""


def documented_staff_rule() -> str:
    """The `staff_earn_nothing` rule exactly as docs/rules.md shows it."""
    doc = (ROOT / "docs" / "rules.md").read_text()
    block = next(b for b in re.findall(r"```toml\n(.*?)```", doc, re.S) if 'id = "staff_earn_nothing"' in b)
    return block[block.index('[[rules]]\nid = "staff_earn_nothing"') :]


def segment_program():
    data = tomllib.loads(DEFAULT_PROGRAM_PATH.read_text() + SEGMENT_RULES + documented_staff_rule())
    return engine.with_rules(DEFAULT_PROGRAM, engine.parse_engine_program(data, version="segments-1"))


PROGRAM = segment_program()


def at(day: int, hour: int = 10) -> str:
    """A November time in the program's zone (never the 8th, the member day)."""
    return f"2026-11-{day:02d}T{hour:02d}:00:00+08:00"


def moment(day: int, hour: int = 10) -> datetime:
    return datetime.fromisoformat(at(day, hour))


async def process(db, events: list[dict]) -> list:
    return [await intake.process(db, PROGRAM, raw, now=NOW, strict=True) for raw in events]


async def balance(db, member_id: str) -> tuple:
    async with db.connect() as conn:
        row = (
            await conn.execute(
                text("SELECT available_points, qualifying_points, labels FROM members WHERE member_id = :m"),
                {"m": member_id},
            )
        ).one()
    return row.available_points, row.qualifying_points, sorted(row.labels)


async def points_of(db, member_id: str) -> dict:
    """Net points by event id and rule, corrections included."""
    async with db.connect() as conn:
        rows = (
            (
                await conn.execute(
                    text(
                        "SELECT source, event_id, kind, qualifying_points, rules FROM ledger_entries "
                        "WHERE member_id = :m ORDER BY entry_id"
                    ),
                    {"m": member_id},
                )
            )
            .mappings()
            .all()
        )
    by_event = points_by_event([dict(r) for r in rows])
    return {event_id: {r: p for r, p in rules.items() if p} for (_, event_id), rules in by_event.items()}


async def test_a_label_change_changes_what_later_purchases_earn(db):
    # Given a member whose first purchase earns 100 and the first-purchase bonus 100
    await process(db, [f.purchase("M1", "100.00", order_id="o-1", occurred_at=at(2), event_id="p-1")])

    # When an operator labels them vip, and later employee, each followed by a purchase
    vip = await set_labels(db, PROGRAM, "M1", now=moment(3), source="cli", add=("vip", "new"), remove=("new",))
    second = await process(db, [f.purchase("M1", "100.00", order_id="o-2", occurred_at=at(4), event_id="p-2")])
    staff = await set_labels(db, PROGRAM, "M1", now=moment(5), source="api", labels=["employee", "vip", "vip"])
    third = await process(db, [f.purchase("M1", "500.00", order_id="o-3", occurred_at=at(6), event_id="p-3")])

    # Then the vip purchase is doubled and the labelled employee earns nothing at all
    assert (vip.member_id, vip.labels, vip.status) == ("M1", ["vip"], "applied")
    assert (staff.labels, staff.status) == (["employee", "vip"], "applied")
    assert [(o.status, o.points) for o in second + third] == [("applied", 200), ("applied", 0)]
    assert await balance(db, "M1") == (400, 400, ["employee", "vip"])
    assert (await points_of(db, "M1"))["p-2"] == {"purchase": 200}
    # The changes are events of their own sources, recorded as applied, earning nothing
    async with db.connect() as conn:
        changes = (
            await conn.execute(
                text(
                    "SELECT source, event_type, status, payload -> 'payload' AS payload FROM processed_events "
                    "WHERE event_type = 'member_update' ORDER BY occurred_at"
                )
            )
        ).all()
    assert [tuple(c) for c in changes] == [
        ("cli", "member_update", "applied", {"labels": ["vip"], "birthday": None, "locale": None}),
        ("api", "member_update", "applied", {"labels": ["employee", "vip"], "birthday": None, "locale": None}),
    ]
    view = await members.member_view(db, PROGRAM, "M1")
    assert view["labels"] == ["employee", "vip"]
    assert (await audit_all(db)).clean


async def test_the_documented_staff_rule_pays_a_labelled_member_nothing(db):
    # Given an employee (labelled by a queued member_update) and a member without the label
    await process(
        db,
        [
            f.member_update("S1", labels=["employee"], occurred_at=at(1), event_id="mu-s1"),
            f.signup("S1", occurred_at=at(1, 11), event_id="su-s1"),
            f.signup("C1", occurred_at=at(1, 11), event_id="su-c1"),
        ],
    )

    # When both buy the same
    outcomes = await process(
        db,
        [
            f.purchase("S1", "300.00", order_id="o-s", occurred_at=at(2), event_id="p-s"),
            f.purchase("C1", "300.00", order_id="o-c", occurred_at=at(2), event_id="p-c"),
        ],
    )

    # Then the employee's purchase (and signup) earn nothing, the other member's earn as usual
    assert [(o.member_id, o.status, o.points) for o in outcomes] == [("S1", "applied", 0), ("C1", "applied", 400)]
    assert await balance(db, "S1") == (50, 50, ["employee"])  # the signup bonus is not a purchase rule
    assert await points_of(db, "S1") == {"su-s1": {"signup": 50}}


async def test_a_late_label_change_re_evaluates_the_purchases_after_it(db):
    # Given two purchases applied without labels
    events = [
        f.purchase("L1", "100.00", order_id="o-1", occurred_at=at(2), event_id="p-1"),
        f.purchase("L1", "100.00", order_id="o-2", occurred_at=at(4), event_id="p-2"),
    ]
    await process(db, events)
    assert await balance(db, "L1") == (300, 300, [])

    # When a vip label that occurred between them arrives late
    late = f.member_update("L1", labels=["vip"], occurred_at=at(3), event_id="mu-1", source="crm")
    (outcome,) = await process(db, [late])

    # Then the second purchase is re-evaluated as a vip's: +100 booked as a correction by the
    # late event, the first purchase unchanged
    assert (outcome.status, outcome.points) == ("applied", 0)
    assert outcome.detail["re_evaluated"] == {"events": 3, "corrected_events": 1, "points": 100}
    assert await balance(db, "L1") == (400, 400, ["vip"])
    assert await points_of(db, "L1") == {"p-1": {"purchase": 100, "first_purchase": 100}, "p-2": {"purchase": 200}}
    assert (await audit_all(db)).clean


async def test_label_changes_and_purchases_in_any_arrival_order_give_one_ledger(db):
    def events(member: str) -> list[dict]:
        return [
            f.member_update(member, labels=["vip"], occurred_at=at(3), event_id=f"{member}-mu-vip"),
            f.purchase(member, "100.00", order_id="o-1", occurred_at=at(4), event_id=f"{member}-p-1"),
            f.member_update(member, labels=["employee"], occurred_at=at(5), event_id=f"{member}-mu-staff"),
            f.purchase(member, "120.00", order_id="o-2", occurred_at=at(6), event_id=f"{member}-p-2"),
            f.member_update(member, labels=[], occurred_at=at(7), event_id=f"{member}-mu-none"),
            f.purchase(member, "50.00", order_id="o-3", occurred_at=at(9), event_id=f"{member}-p-3"),
        ]

    # Given the events in occurrence order (vip: 200 + 100 bonus; staff: 0; no label: 50)
    await process(db, events("IN-ORDER"))
    expected = await points_of(db, "IN-ORDER")
    assert expected == {
        "IN-ORDER-p-1": {"purchase": 200, "first_purchase": 100},
        "IN-ORDER-p-3": {"purchase": 50},
    }
    assert await balance(db, "IN-ORDER") == (350, 350, [])

    # When the same events arrive in other orders (every 60th of the 720 orders, and backwards)
    orders = [*list(itertools.permutations(range(6)))[59::60], (5, 4, 3, 2, 1, 0)]
    for n, order in enumerate(orders):
        member = f"SH-{n}"
        shuffled = events(member)
        await process(db, [shuffled[i] for i in order])

        # Then every member ends with the same points per event, balance and labels
        got = await points_of(db, member)
        assert {key.removeprefix(member): rules for key, rules in got.items()} == {
            key.removeprefix("IN-ORDER"): rules for key, rules in expected.items()
        }, order
        assert await balance(db, member) == (350, 350, []), order
    assert (await audit_all(db)).clean


async def test_order_lines_labels_reach_the_item_filters(db):
    # Given a purchase whose lines carry labels: eco (2 units), eco and tobacco, none
    items = [
        {"sku": "BAG", "category": "home", "amount": "40.00", "quantity": 2, "labels": ["eco"]},
        {"sku": "CIG", "category": "tobacco", "amount": "30.00", "quantity": 1, "labels": ["eco", "tobacco"]},
        {"sku": "TEA", "category": "food", "amount": "30.00", "quantity": 3},
    ]
    raw = f.purchase("I1", "100.00", order_id="o-1", occurred_at=at(2), event_id="p-1", items=items)

    # When it is applied, and a line with a label out of form is sent
    (outcome,) = await process(db, [raw])
    bad = f.purchase(
        "I1", "10.00", order_id="o-2", occurred_at=at(3), event_id="p-2", items=[{**items[0], "labels": ["e co"]}]
    )
    (refused,) = await process(db, [bad])

    # Then only the eco line without tobacco earns its 5 a unit, beside the order's points
    assert (outcome.status, outcome.points) == ("applied", 210)
    assert await points_of(db, "I1") == {"p-1": {"purchase": 100, "first_purchase": 100, "eco_lines": 10}}
    assert (refused.status, refused.reason) == (
        "rejected",
        "payload.items.0.labels.0: must be 1-64 characters: letters, digits and _ - . :",
    )
    # The stored event keeps the lines' labels for a re-evaluation, and lines without any as before
    async with db.connect() as conn:
        stored = (
            await conn.execute(
                text("SELECT payload -> 'payload' -> 'items' FROM processed_events WHERE event_id = 'p-1'")
            )
        ).scalar_one()
    assert [line.get("labels") for line in stored] == [["eco"], ["eco", "tobacco"], None]


async def test_label_changes_refuse_bad_labels_and_unknown_members_and_write_nothing(db):
    await process(db, [f.signup("B1", occurred_at=at(1), event_id="su-b1")])

    with pytest.raises(LabelError, match=r"^labels\.1: must be 1-64 characters: letters, digits and _ - \. :$"):
        await set_labels(db, PROGRAM, "B1", now=moment(2), source="api", labels=["vip", "x" * 65])
    with pytest.raises(LabelError, match=r"^--add: 'a b' is not a label: must be 1-64 characters"):
        await set_labels(db, PROGRAM, "B1", now=moment(2), source="cli", add=("a b",))
    with pytest.raises(UnknownMember):
        await set_labels(db, PROGRAM, "NOBODY", now=moment(2), source="cli", add=("vip",))

    async with db.connect() as conn:
        updates = (
            await conn.execute(text("SELECT count(*) FROM processed_events WHERE event_type = 'member_update'"))
        ).scalar_one()
        known = (await conn.execute(text("SELECT count(*) FROM members"))).scalar_one()
    assert (updates, known) == (0, 1)
    assert await balance(db, "B1") == (50, 50, [])


async def test_a_member_update_sets_birthday_and_locale_and_a_merged_id_is_labelled_on_the_member_kept(db):
    # Given a member who signed up, and another merged into them by a shared card
    card = {"kind": "card", "value": "8800123"}
    await process(
        db,
        [
            f.signup("K1", occurred_at=at(1), event_id="su-k1", locale="en"),
            f.signup("K2", occurred_at=at(2), event_id="su-k2"),
            {**f.event("identity_link", "K1", at(3), source="operator", event_id="ln-1"), "payload": card},
            {**f.event("identity_link", "K2", at(4), source="operator", event_id="ln-2"), "payload": card},
        ],
    )

    # When a member_update changes the birthday and locale, and the merged id is labelled
    await process(db, [f.member_update("K1", birthday="1990-05-20", locale="zh-Hans", occurred_at=at(5))])
    done = await set_labels(db, PROGRAM, "K2", now=moment(6), source="cli", add=("vip",))

    # Then the member kept has them all
    assert (done.member_id, done.labels) == ("K1", ["vip"])
    view = await members.member_view(db, PROGRAM, "K1")
    assert (view["birthday"], view["locale"], view["labels"]) == ("1990-05-20", "zh-Hans", ["vip"])


async def test_the_listing_pages_by_member_id_without_erased_or_merged_members(db):
    # Given members of two tiers, some labelled vip, one erased and one merged into another
    card = {"kind": "card", "value": "8800999"}
    events = [f.signup(m, occurred_at=at(1), event_id=f"su-{m}") for m in ("A", "B", "C", "D", "E", "F", "G", "H")]
    events += [f.purchase(m, "1000.00", occurred_at=at(2), event_id=f"p-{m}") for m in ("B", "D", "G")]  # Silver
    events += [
        {**f.event("identity_link", "E", at(3), source="operator", event_id="ln-e"), "payload": card},
        {**f.event("identity_link", "F", at(4), source="operator", event_id="ln-f"), "payload": card},
    ]
    events += [f.member_update(m, labels=["vip"], occurred_at=at(5), event_id=f"mu-{m}") for m in "ABCDFGH"]
    await process(db, events)
    await erase_member(db, "H", NOW)

    async def pages(**filters) -> list:
        found, cursor = [], None
        while True:
            page = await list_members(db, cursor=cursor, limit=2, **filters)
            found.append([m["member_id"] for m in page["members"]])
            cursor = page["next_cursor"]
            if cursor is None:
                return found

    # Then each filter pages through exactly its members, in member-id order (F merged into E)
    assert await pages() == [["A", "B"], ["C", "D"], ["E", "G"]]
    assert await pages(label="vip") == [["A", "B"], ["C", "D"], ["E", "G"]]
    assert await pages(tier="Silver") == [["B", "D"], ["G"]]
    assert await pages(tier="Silver", label="vip") == [["B", "D"], ["G"]]
    assert await pages(tier="Regular", label="vip") == [["A", "C"], ["E"]]
    assert await pages(label="staff") == [[]]
    first = await list_members(db, tier="Silver", limit=1)
    assert first == {
        "members": [
            {
                "member_id": "B",
                "tier": "Silver",
                "labels": ["vip"],
                "available_points": 1150,
                "pending_points": 0,
                "qualifying_points": 1150,
                "enrolled_at": first["members"][0]["enrolled_at"],
            }
        ],
        "next_cursor": "B",
    }
    with pytest.raises(LabelError, match=r"^label: must be 1-64 characters"):
        await list_members(db, label="no spaces")


async def test_the_listing_reads_its_indexes(db):
    # Given 20,000 members, a few of them Diamond and a few labelled vip, with fresh statistics
    async with db.begin() as conn:
        await conn.execute(
            text(
                """
                INSERT INTO members (member_id, tier, labels)
                SELECT 'M' || lpad(n::text, 6, '0'),
                       CASE WHEN n % 1000 = 0 THEN 'Diamond' ELSE 'Regular' END,
                       CASE WHEN n % 997 = 0 THEN ARRAY['vip'] ELSE ARRAY['new'] END
                FROM generate_series(1, 20000) AS n
                """
            )
        )
    async with db.connect() as conn:
        await conn.execute(text("ANALYZE members"))

        async def plan(**filters) -> str:
            statement = list_statement(**{k: k in filters for k in ("tier", "label", "cursor")})
            explained = await conn.execute(text("EXPLAIN " + statement.text), {**filters, "n": 51})
            return "\n".join(r[0] for r in explained)

        # Then a label is looked up in the GIN index and a tier in (tier, member_id)
        assert "members_labels" in await plan(label="vip")
        assert "members_labels" in await plan(label="vip", cursor="M010000")
        assert "members_tier_member_id" in await plan(tier="Diamond")
        assert "members_tier_member_id" in await plan(tier="Diamond", cursor="M010000")
        page = await list_members(db, label="vip", limit=50)
    assert [m["member_id"] for m in page["members"]] == [f"M{n:06d}" for n in range(997, 20001, 997)]


async def test_label_changes_in_batches_go_through_the_group_path_alike(db):
    # Given a batch of purchases of two members
    first = [
        f.purchase(m, "100.00", order_id=f"o-{n}", occurred_at=at(2 * n + 2), event_id=f"{m}-p-{n}")
        for m in ("G1", "G2")
        for n in (1, 2)
    ]
    await intake.process_batch(db, PROGRAM, first, now=NOW, strict=True)

    # When a second batch labels G1 vip late (between its purchases) and G2 vip with a purchase after
    second = [
        f.member_update("G1", labels=["vip"], occurred_at=at(5), event_id="G1-mu"),
        f.member_update("G2", labels=["vip"], occurred_at=at(9), event_id="G2-mu"),
        f.purchase("G2", "100.00", order_id="o-3", occurred_at=at(10), event_id="G2-p-3"),
    ]
    outcomes = await intake.process_batch(db, PROGRAM, second, now=NOW, strict=True)

    # Then G1's later purchase is corrected to a vip's, and G2's new purchase earns as one
    assert [(o.member_id, o.status, o.points) for o in outcomes] == [
        ("G1", "applied", 0),
        ("G2", "applied", 0),
        ("G2", "applied", 200),
    ]
    assert await balance(db, "G1") == (400, 400, ["vip"])
    assert await balance(db, "G2") == (500, 500, ["vip"])
    assert (await audit_all(db)).clean
