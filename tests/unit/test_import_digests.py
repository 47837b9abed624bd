"""The digests `loyalty import` stores: parse_member and parse_lot spell digest() out for speed,
and must give the digest of the parsed values, or a file imported before would be all conflicts."""

from __future__ import annotations

from zoneinfo import ZoneInfo

import pytest

from worker.domain import imports

SHANGHAI = ZoneInfo("Asia/Shanghai")
TIERS = ("Regular", "Silver", "Gold", "Diamond")


@pytest.mark.parametrize(
    "cells",
    [
        {"member_id": "M1"},
        {"member_id": "M1", "lifetime_points": "0", "qualifying_points": "007"},
        {
            "member_id": "X00000001",
            "phone": "+86 139-0000-0001",
            "card": "C1",
            "email": "A@Example.com",
            "wechat_openid": "oid",
            "birthday": "1961-02-11",
            "locale": "en",
            "labels": "vip|staff",
            "tier": "Gold",
            "tier_floor_until": "2027-12-31",
            "enrolled_at": "2020-01-01",
            "lifetime_points": "1001",
            "qualifying_points": "1",
        },
        {"member_id": "M2", "enrolled_at": "2019-03-01T10:00:00+08:00", "tier": "Silver"},
    ],
)
def test_a_member_row_digest_is_the_digest_of_its_parsed_values(cells):
    row = imports.parse_member(cells, TIERS, SHANGHAI)

    expected = imports.digest(
        (
            row.member_id,
            "|".join(f"{kind}:{value}" for kind, value in row.identities),
            row.birthday,
            row.locale,
            "|".join(row.labels),
            row.tier,
            row.tier_floor_until,
            row.enrolled_at,
            int(cells["lifetime_points"]) if cells.get("lifetime_points") else None,
            int(cells["qualifying_points"]) if cells.get("qualifying_points") else None,
        )
    )
    assert row.row_hash == expected


def test_digests_stay_those_of_files_imported_before():
    # As the first version of the import computed and stored them.
    member = imports.parse_member(
        {"member_id": "M1", "phone": "+86 138 0000 0001", "lifetime_points": "5"}, TIERS, SHANGHAI
    )
    lot = imports.parse_lot({"member_id": "M1", "lot_ref": "L1", "points": "100", "expires_on": "2027-12-31"})

    assert member.row_hash == "183485d19f45fdfe99b76cb3f177157ed76e2767a77cd71b54005b07382843a3"
    assert lot.row_hash == "44e9d3871a237956e8af733e8cd07f8e958fe825ace81e5f29975870e7ed89c3"
