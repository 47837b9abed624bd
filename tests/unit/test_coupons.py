"""Coupons on literals: the pool file, generated codes, expiry, what a till may do, the
catalog's coupon keys and the redemption check's pool."""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pytest

from worker.domain import coupons
from worker.domain.errors import CouponRefused, ProgramError
from worker.domain.explain import describe_rule
from worker.domain.mall import RewardTerms, check_redemption, parse_catalog
from worker.domain.program import DEFAULT_PROGRAM as P

SHANGHAI = ZoneInfo("Asia/Shanghai")
AT = datetime(2026, 12, 1, 2, 0, tzinfo=UTC)  # 10:00 in Shanghai


# ---------------------------------------------------------------- the pool file


def test_codes_keep_file_order_and_repeats_are_counted_once_each():
    parsed = coupons.parse_codes(["  CAFE-001\n", "\n", "CAFE-002", "CAFE-001", "cafe-001", "CAFE-002\r\n", "   "], "f")

    assert parsed == coupons.CodeFile(codes=("CAFE-001", "CAFE-002", "cafe-001"), duplicates=2)


def test_an_empty_file_has_no_codes():
    assert coupons.parse_codes([], "f") == coupons.CodeFile(codes=(), duplicates=0)


def test_bad_lines_are_named_by_number_and_the_file_is_refused_whole():
    with pytest.raises(CouponRefused) as error:
        coupons.parse_codes(["GOOD-1", "has space", "GOOD-2", "a/b"], "codes.txt")

    assert str(error.value) == (
        "codes.txt:2: code 'has space' must be 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit; "
        "codes.txt:4: code 'a/b' must be 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit"
    )


def test_many_bad_lines_name_the_first_five_and_count_the_rest():
    with pytest.raises(CouponRefused) as error:
        coupons.parse_codes([f"-bad{i}" for i in range(8)], "f")

    message = str(error.value)
    assert message.count("must be 1-64") == 5
    assert message.startswith("f:1: code '-bad0' ")
    assert message.endswith("(and 3 more bad lines)")


def test_a_code_of_64_characters_is_the_longest():
    assert coupons.parse_codes(["A" * 64], "f").codes == ("A" * 64,)
    with pytest.raises(CouponRefused):
        coupons.parse_codes(["A" * 65], "f")


# ---------------------------------------------------------------- generated codes, expiry, use


def test_a_generated_code_is_the_prefix_and_the_bytes_in_base32():
    assert coupons.generated_code("SHOP50-", bytes(10)) == "SHOP50-AAAAAAAAAAAAAAAA"
    assert coupons.generated_code(None, b"\xff" * 10) == "7777777777777777"
    assert coupons.generated_code("X", bytes(range(10))) == "XAAAQEAYEAUDAOCAJ"
    assert all(coupons.CODE_PATTERN.match(coupons.generated_code("P-", bytes([b] * 10))) for b in range(256))


def test_the_day_of_issue_is_the_first_valid_day_in_program_local_time():
    late_utc = datetime(2026, 11, 30, 20, 0, tzinfo=UTC)  # 1 December, 04:00 in Shanghai

    assert coupons.expires_on(late_utc, SHANGHAI, 1) == date(2026, 12, 1)
    assert coupons.expires_on(late_utc, SHANGHAI, 30) == date(2026, 12, 30)
    assert coupons.expires_on(late_utc, ZoneInfo("UTC"), 30) == date(2026, 12, 29)
    with pytest.raises(ValueError):
        coupons.expires_on(late_utc, SHANGHAI, 0)


def test_an_issued_coupon_is_expired_from_the_day_after_its_last():
    last = date(2026, 12, 30)

    assert coupons.status_on("issued", last, date(2026, 12, 30)) == "issued"
    assert coupons.status_on("issued", last, date(2026, 12, 31)) == "expired"
    assert coupons.status_on("used", last, date(2027, 1, 5)) == "used"
    assert coupons.status_on("cancelled", last, date(2027, 1, 5)) == "cancelled"


def test_only_an_issued_coupon_may_be_used():
    assert [coupons.use_refusal(s) for s in ("issued", "used", "expired", "cancelled")] == [
        None,
        "coupon_used",
        "coupon_expired",
        "coupon_cancelled",
    ]


# ---------------------------------------------------------------- the catalog's coupon keys

BASE = {"reward_id": "coffee", "name": "Coffee", "cost_points": 300, "min_tier": "Regular"}


def test_a_coupon_takes_its_codes_from_a_pool_unless_generated():
    catalog = parse_catalog(
        {
            "reward": [
                {**BASE, "kind": "coupon", "valid_days": 30},
                {
                    **BASE,
                    "reward_id": "shop",
                    "kind": "coupon",
                    "codes": "generated",
                    "code_prefix": "S-",
                    "valid_days": 1,
                },
            ]
        },
        P,
    )

    assert [(r.kind, r.code_source, r.code_prefix, r.valid_days) for r in catalog.reward] == [
        ("coupon", "pool", None, 30),
        ("coupon", "generated", "S-", 1),
    ]


@pytest.mark.parametrize(
    "reward, message",
    [
        (
            {"kind": "coupon"},
            "rewards: reward.0.valid_days: a coupon needs valid_days (the days its code may be used, from the day of issue)",
        ),
        ({"valid_days": 30}, 'rewards: reward.0.valid_days: only a coupon reward (kind = "coupon") has valid_days'),
        ({"codes": "pool"}, 'rewards: reward.0.codes: only a coupon reward (kind = "coupon") has codes'),
        (
            {"kind": "coupon", "valid_days": 30, "code_prefix": "C-"},
            'rewards: reward.0.code_prefix: only generated codes (codes = "generated") have a prefix',
        ),
        ({"kind": "voucher"}, "rewards: reward.0.kind: must be 'item' or 'coupon'"),
        ({"kind": "coupon", "valid_days": 0}, "rewards: reward.0.valid_days: must be greater than or equal to 1"),
        (
            {"kind": "coupon", "valid_days": 30, "codes": "random"},
            "rewards: reward.0.codes: must be 'pool' or 'generated'",
        ),
    ],
)
def test_coupon_keys_are_checked_naming_the_key(reward, message):
    with pytest.raises(ProgramError) as error:
        parse_catalog({"reward": [{**BASE, **reward}]}, P)

    assert str(error.value) == message


def test_a_prefix_is_capitals_digits_and_dashes():
    reward = {**BASE, "kind": "coupon", "codes": "generated", "valid_days": 5, "code_prefix": "shop 50"}
    with pytest.raises(ProgramError) as error:
        parse_catalog({"reward": [reward]}, P)

    assert str(error.value).startswith("rewards: reward.0.code_prefix: ")


# ---------------------------------------------------------------- redeeming from a pool


def check(reward, points=10_000, quantity=1):
    return check_redemption(
        P, reward, tier="Regular", spendable_points=points, quantity=quantity, at=AT, already_in_period=0
    )


def test_an_empty_pool_refuses_after_stock_and_before_points():
    def coffee(**kw):
        return RewardTerms("coffee", "Coffee", 300, "Regular", **kw)

    assert check(coffee(codes_left=1)) is None
    assert check(coffee(codes_left=0)) == "no_codes_left"
    assert check(coffee(codes_left=1), quantity=2) == "no_codes_left"
    assert check(coffee(codes_left=0, stock_left=0)) == "out_of_stock"
    assert check(coffee(codes_left=0), points=0) == "no_codes_left"
    assert check(coffee(codes_left=None), points=299) == "not_enough_points"


def test_history_shows_a_redemptions_codes():
    rule = {
        "rule": "redemption",
        "reward_id": "coffee",
        "quantity": 1,
        "cost_points": 300,
        "coupons": [{"code": "CAFE-001", "expires_on": "2026-12-30"}],
    }

    assert describe_rule(rule) == "1 x coffee at 300, coupon CAFE-001 until 2026-12-30"
