"""Rows of `loyalty import` files: parsed values and the exact reason for each bad column."""

from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo

import pytest

from worker.domain import imports
from worker.domain.imports import BadRow

SHANGHAI = ZoneInfo("Asia/Shanghai")
TIERS = ("Regular", "Silver", "Gold", "Diamond")


def member(**cells: str) -> imports.MemberRow:
    return imports.parse_member({"member_id": "M1", **cells}, TIERS, SHANGHAI)


def lot(**cells: str) -> imports.LotRow:
    return imports.parse_lot({"member_id": "M1", "lot_ref": "L1", "points": "100", "expires_on": "2027-12-31", **cells})


def test_a_full_member_row_is_parsed_into_normal_forms():
    row = member(
        phone=" +86 138-0000-0001 ",
        card="C-9",
        email="Ann@Example.COM",
        wechat_openid="oid_1",
        birthday="1990-04-02",
        locale="zh-Hant",
        labels="vip| staff |vip",
        tier="Gold",
        tier_floor_until="2027-06-30",
        enrolled_at="2019-03-01",
        lifetime_points="9000",
        qualifying_points="0",
    )

    assert (
        row.member_id,
        row.identities,
        row.birthday,
        row.locale,
        row.labels,
        row.tier,
        row.tier_floor_until,
        row.enrolled_at,
        row.lifetime_points,
        row.qualifying_points,
    ) == (
        "M1",
        (("phone", "+8613800000001"), ("card", "C-9"), ("wechat_openid", "oid_1"), ("email", "ann@example.com")),
        date(1990, 4, 2),
        "zh-Hant",
        ("staff", "vip"),
        "Gold",
        date(2027, 6, 30),
        datetime(2019, 3, 1, tzinfo=SHANGHAI),
        9000,
        0,
    )


def test_only_member_id_is_required_and_empty_cells_are_absent():
    row = member(phone="", tier="  ", lifetime_points="")
    assert (row.identities, row.tier, row.enrolled_at, row.lifetime_points, row.labels) == ((), None, None, 0, ())


def test_two_spellings_of_one_row_have_one_digest_and_another_value_another():
    assert (
        member(phone="+8613800000001", labels="a|b").row_hash
        == member(phone="+86 1380000 0001", labels=" a|b").row_hash
    )
    assert member(lifetime_points="1").row_hash != member(lifetime_points="2").row_hash
    assert lot(note="x").row_hash != lot(note="y").row_hash


@pytest.mark.parametrize(
    ("cells", "reason"),
    [
        ({"member_id": ""}, "member_id: is empty"),
        (
            {"member_id": "has space"},
            "member_id: has space must be 1-128 letters, digits and ._:@#/+- starting with a letter or digit",
        ),
        ({"birthday": "1990-13-01"}, "birthday: 1990-13-01 is not a date (YYYY-MM-DD)"),
        ({"birthday": "19900101"}, "birthday: 19900101 is not a date (YYYY-MM-DD)"),
        ({"birthday": "1899-12-31"}, "birthday: 1899-12-31 is before 1900-01-01"),
        (
            {"phone": "13800000000"},
            "phone: must be a phone number in E.164 form with its country code, e.g. +8613800000000",
        ),
        ({"email": "not-an-address"}, "email: must be an e-mail address such as name@example.com"),
        ({"card": "C 1"}, "card: must be 1-64 characters of letters, digits, _ and -"),
        ({"wechat_openid": "o!d"}, "wechat_openid: must be 1-128 characters of letters, digits, _ and -"),
        ({"locale": "fr"}, "locale: fr is not one of en, zh-Hans, zh-Hant"),
        (
            {"labels": "vip;staff"},
            "labels: 'vip;staff' is not a label: must be 1-64 characters: letters, digits and _ - . : "
            "(labels are separated by |)",
        ),
        ({"tier": "Platinum"}, "tier: Platinum is not a tier of the program (Regular, Silver, Gold, Diamond)"),
        ({"tier_floor_until": "2027-01-01"}, "tier_floor_until: needs the tier it keeps (column tier)"),
        ({"tier": "Gold", "tier_floor_until": "31/12/2027"}, "tier_floor_until: 31/12/2027 is not a date (YYYY-MM-DD)"),
        (
            {"enrolled_at": "2019-03-01T10:00:00"},
            "enrolled_at: 2019-03-01T10:00:00 is not a date (YYYY-MM-DD) or a time with its offset "
            "(YYYY-MM-DDTHH:MM:SS+08:00)",
        ),
        ({"lifetime_points": "12.5"}, "lifetime_points: 12.5 is not a whole number of points (0 to 1000000000000)"),
        ({"qualifying_points": "-1"}, "qualifying_points: -1 is not a whole number of points (0 to 1000000000000)"),
    ],
)
def test_each_bad_member_column_is_named_with_its_reason(cells, reason):
    with pytest.raises(BadRow) as raised:
        member(**cells)
    assert str(raised.value) == reason


def test_an_enrolment_time_keeps_its_offset():
    assert member(enrolled_at="2019-03-01T10:00:00+08:00").enrolled_at == datetime(2019, 3, 1, 10, tzinfo=SHANGHAI)


def test_a_floor_already_ended_is_late_only_on_the_day_after_it():
    row = member(tier="Gold", tier_floor_until="2026-12-07")
    assert imports.member_late(row, date(2026, 12, 7)) is None
    assert imports.member_late(row, date(2026, 12, 8)) == "tier_floor_until: 2026-12-07 is before today (2026-12-08)"


def test_a_lot_row_is_parsed():
    row = lot(earned_on="2026-01-15", note=" spring ")
    assert (row.member_id, row.lot_ref, row.points, row.earned_on, row.expires_on, row.note) == (
        "M1",
        "L1",
        100,
        date(2026, 1, 15),
        date(2027, 12, 31),
        "spring",
    )


@pytest.mark.parametrize(
    ("cells", "reason"),
    [
        ({"lot_ref": ""}, "lot_ref: is empty"),
        ({"points": ""}, "points: is empty"),
        ({"points": "0"}, "points: 0 is not a whole number of points (1 to 1000000000000)"),
        ({"points": "1e3"}, "points: 1e3 is not a whole number of points (1 to 1000000000000)"),
        ({"expires_on": ""}, "expires_on: is empty"),
        ({"expires_on": "2027-02-30"}, "expires_on: 2027-02-30 is not a date (YYYY-MM-DD)"),
        ({"earned_on": "2027-12-31"}, "expires_on: 2027-12-31 is not after earned_on (2027-12-31)"),
    ],
)
def test_each_bad_lot_column_is_named_with_its_reason(cells, reason):
    with pytest.raises(BadRow) as raised:
        lot(**cells)
    assert str(raised.value) == reason


def test_a_lot_expired_or_earned_in_the_future_is_late():
    today = date(2026, 12, 7)
    assert imports.lot_late(lot(expires_on="2026-12-08"), today) is None
    assert (
        imports.lot_late(lot(expires_on="2026-12-07"), today)
        == "expires_on: 2026-12-07 is not after today (2026-12-07)"
    )
    assert imports.lot_late(lot(earned_on="2026-12-08"), today) == "earned_on: 2026-12-08 is after today (2026-12-07)"


@pytest.mark.parametrize(
    ("header", "problem"),
    [
        (["member_id", "phone"], None),
        (["phone"], "header: missing column member_id"),
        (
            ["member_id", "nickname"],
            "header: unknown column 'nickname'; the columns are " + ", ".join(imports.MEMBER_COLUMNS),
        ),
        (["member_id", "phone", "phone"], "header: column phone appears 2 times"),
    ],
)
def test_the_header_names_known_columns_once_with_the_required_ones(header, problem):
    assert imports.check_header(header, imports.MEMBER_COLUMNS, imports.MEMBER_REQUIRED) == problem


def test_imported_lots_expire_at_the_start_of_their_day_in_the_program_zone():
    assert imports.local_midnight(date(2027, 1, 31), SHANGHAI) == datetime(2027, 1, 30, 16, 0, tzinfo=ZoneInfo("UTC"))
