"""One member across channels, on the real PostgreSQL through the real intake: events named by
card and by phone for one person, linked later, end as one member equal to a member that had
all the events from the start; a merged id keeps working; concurrent links keep identities
unique; erasure removes identities."""

from __future__ import annotations

import asyncio
from datetime import datetime

from sqlalchemy import text

from tests import factories as f
from tests.conftest import NOW, truncate_all
from worker.domain.identities import identity_member_id
from worker.domain.program import DEFAULT_PROGRAM as PROGRAM
from worker.domain.reevaluation import points_by_event
from worker.services import identities, intake, member_reads, members
from worker.services.audit import audit_all
from worker.services.erasure import erase_member

CARD = {"kind": "card", "value": "8800123"}
PHONE = {"kind": "phone", "value": "+8613800000000"}


def by(identity: dict, event: dict) -> dict:
    """The event naming its member by an identity instead of member_id."""
    out = {k: v for k, v in event.items() if k != "member_id"}
    return {**out, "member": identity}


def link(member_id: str, identity: dict, event_id: str, occurred_at: str = "2026-11-20T10:00:00+08:00") -> dict:
    return {
        "event_id": event_id,
        "type": "identity_link",
        "source": "operator",
        "member_id": member_id,
        "occurred_at": occurred_at,
        "payload": identity,
    }


def history(member: str) -> list[dict]:
    """Two channels' events of one person: signup and purchases by card at the till, purchases,
    check-ins and a refund by phone in the app (phone events named `member` is replaced)."""
    return [
        f.signup(member, occurred_at="2026-11-01T09:00:00+08:00", event_id="s-1", source="app", birthday="1990-05-20"),
        f.purchase(member, "800.00", order_id="o-1", occurred_at="2026-11-02T10:00:00+08:00", event_id="p-1"),
        f.check_in(member, "2026-11-03T08:00:00+08:00", event_id="c-1", source="app"),
        f.purchase(
            member, "600.00", order_id="o-2", occurred_at="2026-11-04T10:00:00+08:00", event_id="p-2", source="app"
        ),
        f.check_in(member, "2026-11-04T08:00:00+08:00", event_id="c-2", source="app"),
        f.refund(member, "o-1", "200.00", refund_id="r-1", occurred_at="2026-11-05T10:00:00+08:00", event_id="f-1"),
        f.purchase(
            member, "4000.00", order_id="o-3", occurred_at="2026-11-06T10:00:00+08:00", event_id="p-3", source="app"
        ),
    ]


CARD_EVENTS = {"s-1", "p-1", "f-1"}  # the rest come by phone


async def apply(db, raws: list[dict]) -> list[intake.Outcome]:
    outcomes = [await intake.process(db, PROGRAM, raw, now=NOW, strict=True) for raw in raws]
    for outcome in outcomes:
        assert outcome.status in ("applied", "deferred", "duplicate"), outcome
    return outcomes


async def member(db, member_id: str) -> dict:
    async with db.connect() as conn:
        row = (
            (
                await conn.execute(
                    text(
                        "SELECT tier, available_points, pending_points, qualifying_points, lifetime_points, qualifying_amount, "
                        "birthday, first_purchase_at, rule_state, merged_into FROM members WHERE member_id = :m"
                    ),
                    {"m": member_id},
                )
            )
            .mappings()
            .one()
        )
    return dict(row)


async def first_purchase_bonuses(db, member_id: str) -> int:
    """The first-purchase points the member's ledger has booked, by the events they are for
    (earnings, corrections and what a merge moved in)."""
    async with db.connect() as conn:
        rows = (
            (
                await conn.execute(
                    text(
                        "SELECT source, event_id, kind, qualifying_points, rules FROM ledger_entries WHERE member_id = :m "
                        "ORDER BY entry_id"
                    ),
                    {"m": member_id},
                )
            )
            .mappings()
            .all()
        )
    return sum(by_rule.get("first_purchase", 0) for by_rule in points_by_event([dict(r) for r in rows]).values())


async def test_card_and_phone_events_linked_later_equal_one_member_with_all_events(db):
    # Given one member with every event from the start
    await apply(db, history("ONE"))
    one = await member(db, "ONE")
    one_bonus = await first_purchase_bonuses(db, "ONE")
    await truncate_all(db)

    # When the same events arrive, by card and by phone, as two members, and the phone is linked to the card's member
    split = [by(CARD if e["event_id"] in CARD_EVENTS else PHONE, e) for e in history("x")]
    await apply(db, split)
    card_member, phone_member = identity_member_id("card", "8800123"), identity_member_id("phone", "+8613800000000")
    assert (await member(db, card_member))["available_points"] > 0
    assert (await member(db, phone_member))["available_points"] > 0
    [linked] = await apply(db, [link(card_member, PHONE, "link-1")])

    # Then one member survives with the balance, qualifying points and tier of the one member
    survivor = linked.member_id
    merged = await member(db, survivor)
    absorbed = ({card_member, phone_member} - {survivor}).pop()
    assert linked.detail["linked"] == "merged" and linked.detail["absorbed"] == absorbed
    for key in (
        "tier",
        "available_points",
        "pending_points",
        "qualifying_points",
        "lifetime_points",
        "qualifying_amount",
        "birthday",
        "first_purchase_at",
        "rule_state",
    ):
        assert merged[key] == one[key], key
    assert (await member(db, absorbed))["merged_into"] == survivor
    assert await first_purchase_bonuses(db, survivor) == one_bonus > 0
    assert (await audit_all(db)).clean


async def test_the_first_purchase_bonus_is_paid_once_after_a_merge(db):
    # Given two members who each made a first purchase
    await apply(
        db,
        [
            f.purchase("A", "100.00", order_id="oa", occurred_at="2026-11-02T10:00:00+08:00", event_id="pa"),
            by(CARD, f.purchase("x", "100.00", order_id="ob", occurred_at="2026-11-03T10:00:00+08:00", event_id="pb")),
        ],
    )
    card_member = identity_member_id("card", "8800123")
    both = await first_purchase_bonuses(db, "A") + await first_purchase_bonuses(db, card_member)

    # When the card is linked to A (A is older: A survives)
    [linked] = await apply(db, [link("A", CARD, "link-a")])

    # Then one first-purchase bonus is left, on the earlier purchase
    assert linked.member_id == "A" and both > 0
    assert await first_purchase_bonuses(db, "A") == both // 2
    assert (await audit_all(db)).clean


async def test_a_merged_id_and_its_identities_keep_working_and_resent_events_are_duplicates(db):
    first = f.purchase("OLD", "100.00", order_id="o1", occurred_at="2026-11-02T10:00:00+08:00", event_id="p1")
    await apply(db, [first, by(CARD, f.check_in("x", "2026-11-03T10:00:00+08:00", event_id="c1"))])
    await apply(db, [link("OLD", CARD, "link-1")])
    card_member = identity_member_id("card", "8800123")

    later = await apply(
        db,
        [
            f.purchase(card_member, "100.00", order_id="o2", occurred_at="2026-11-04T10:00:00+08:00", event_id="p2"),
            by(CARD, f.check_in("x", "2026-11-05T10:00:00+08:00", event_id="c2")),
            first,
        ],
    )

    assert [(o.status, o.member_id) for o in later] == [("applied", "OLD"), ("applied", "OLD"), ("duplicate", "OLD")]
    async with db.connect() as conn:
        assert await identities.find_member(conn, "card", " 8800123") == "OLD"
        owners = (await conn.execute(text("SELECT DISTINCT member_id FROM processed_events"))).scalars().all()
    assert owners == ["OLD"]
    assert (await audit_all(db)).clean


async def test_eight_concurrent_links_of_one_phone_end_as_one_member_with_nothing_lost(db):
    # Given 8 members, each with a purchase, enrolled one after another
    members = [f"M{i}" for i in range(8)]
    for i, m in enumerate(members):
        await apply(
            db,
            [
                f.purchase(
                    m, "100.00", order_id=f"o-{m}", occurred_at=f"2026-11-0{i + 1}T10:00:00+08:00", event_id=f"p-{m}"
                )
            ],
        )
    async with db.connect() as conn:
        total = (await conn.execute(text("SELECT sum(available_points + pending_points) FROM members"))).scalar_one()

    # When all 8 link the same phone at once
    outcomes = await asyncio.gather(
        *(intake.process(db, PROGRAM, link(m, PHONE, f"link-{m}"), now=NOW, strict=True) for m in members)
    )

    # Then one identity row, one member left (the oldest), every other merged into it, nothing lost
    assert [o.status for o in outcomes] == ["applied"] * 8
    assert sorted(o.detail["linked"] for o in outcomes) == ["attached"] + ["merged"] * 7
    async with db.connect() as conn:
        rows = (await conn.execute(text("SELECT member_id FROM member_identities"))).scalars().all()
        merged = dict((await conn.execute(text("SELECT member_id, merged_into FROM members"))).all())
        balance = (
            await conn.execute(text("SELECT available_points + pending_points FROM members WHERE member_id = 'M0'"))
        ).scalar_one()
    assert rows == ["M0"]
    assert merged == {"M0": None, **{m: "M0" for m in members[1:]}}
    first_purchase = await first_purchase_bonuses(db, "M0")
    assert first_purchase > 0
    assert balance == total - 7 * first_purchase  # every purchase's points, one first-purchase bonus
    assert (await audit_all(db)).clean


async def test_erasing_a_member_removes_its_identities(db):
    await apply(db, [by(CARD, f.check_in("x", "2026-11-03T10:00:00+08:00", event_id="c1"))])
    await apply(db, [link(identity_member_id("card", "8800123"), PHONE, "link-1")])

    done = await erase_member(db, identity_member_id("card", "8800123"), datetime(2026, 11, 24, tzinfo=NOW.tzinfo))

    assert done.identities_removed == 2
    async with db.connect() as conn:
        assert (await conn.execute(text("SELECT count(*) FROM member_identities"))).scalar_one() == 0
        assert await identities.find_member(conn, "phone", "+8613800000000") is None


# One person: M1001 signed up in the app (by id) on the 1st and has the phone; a card at the
# till, not linked yet, bought order o-7 on the 3rd (a member `id-...` of its own); the app
# then sent a refund and a review of o-7 under the phone; later the card is linked to M1001.
PERSON = [
    link("M1001", PHONE, "link-phone", occurred_at="2026-11-01T08:00:00+08:00"),
    f.signup("M1001", occurred_at="2026-11-01T09:00:00+08:00", event_id="s-1", source="app"),
    by(CARD, f.purchase("x", "800.00", order_id="o-7", occurred_at="2026-11-03T10:00:00+08:00", event_id="p-7")),
    by(PHONE, f.refund("x", "o-7", "200.00", refund_id="r-7", occurred_at="2026-11-05T10:00:00+08:00", event_id="f-7")),
    by(PHONE, f.review("x", "o-7", "sku-1", occurred_at="2026-11-06T10:00:00+08:00", event_id="v-7", source="app")),
]
LINK_CARD = link("M1001", CARD, "link-card", occurred_at="2026-11-20T10:00:00+08:00")
# Orders the events before the link are processed in, as indexes into PERSON: occurrence order;
# the card's purchase first (its member is created before M1001); the refund and review first
# (they enrol the phone's own member, merged into M1001 by the phone's link); and two more.
ARRIVALS = [(0, 1, 2, 3, 4), (2, 3, 4, 0, 1), (3, 4, 2, 1, 0), (4, 2, 0, 3, 1), (1, 3, 2, 0, 4)]


async def recorded(db) -> dict[tuple[str, str], tuple[str, int, str | None]]:
    """Every event's outcome as `GET /v1/events/...` reads it: status, points, reason."""
    async with db.connect() as conn:
        keys = (await conn.execute(text("SELECT source, event_id FROM processed_events"))).all()
        outcomes = {(s, e): await member_reads.recorded_outcome(conn, s, e) for s, e in keys}
    return {key: (o["status"], o["points"], o["reason"]) for key, o in outcomes.items()}


async def test_the_member_whose_first_event_occurred_earliest_survives_whatever_order_the_events_arrive_in(db):
    # Given the same person's events by member id alone, in occurrence order: the ledger to match
    await apply(db, [{**{k: v for k, v in e.items() if k != "member"}, "member_id": "ONE"} for e in PERSON[1:]])
    one = await member(db, "ONE")
    await truncate_all(db)

    seen = []
    for arrival in ARRIVALS:
        # When the events arrive in this order and then the card is linked to M1001
        await apply(db, [PERSON[i] for i in arrival])
        [linked] = await apply(db, [LINK_CARD])

        # Then M1001 is kept (its signup on the 1st is the earliest first event), with the one member's ledger
        assert (linked.member_id, linked.detail["linked"]) == ("M1001", "merged"), arrival
        kept = await member(db, "M1001")
        assert {k: kept[k] for k in one if k != "merged_into"} == {k: one[k] for k in one if k != "merged_into"}
        assert (await member(db, identity_member_id("card", "8800123")))["merged_into"] == "M1001"
        async with db.connect() as conn:
            assert await identities.find_member(conn, "phone", PHONE["value"]) == "M1001"
        # and the refund that waited for the card's purchase reads applied with its points, on
        # the API's read and in `member history --all` (no row saying it waits)
        outcomes = await recorded(db)
        listed = await members.history(db, "M1001", zero_point=True)
        assert [row for row in listed if row["kind"] == "none"] == [], arrival
        assert (await audit_all(db)).clean
        seen.append((kept, outcomes))
        await truncate_all(db)

    kept, outcomes = seen[0]
    assert all(other == seen[0] for other in seen[1:])
    # signup 50, purchase 800 and the first-purchase 100, the refund takes 200/800 of the 800, the review 20
    assert (kept["available_points"], kept["qualifying_points"], kept["lifetime_points"]) == (770, 770, 970)
    assert outcomes == {
        ("operator", "link-phone"): ("applied", 0, None),
        ("app", "s-1"): ("applied", 50, None),
        ("pos", "p-7"): ("applied", 900, None),
        ("pos", "f-7"): ("applied", -200, None),
        ("app", "v-7"): ("applied", 20, None),
        ("operator", "link-card"): ("applied", -180, None),  # what the merge's re-evaluation booked
    }
