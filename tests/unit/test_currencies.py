"""A program's [currencies]: validation naming the key, conversion to the base with its rounding,
and the exact refusal of a currency the program does not accept. Plain data."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from tests import factories as f
from worker.domain import currencies, deciders
from worker.domain.decisions import Earn, MemberState
from worker.domain.engine import parse_program_text
from worker.domain.errors import InvalidEvent, ProgramError
from worker.domain.events import check_against_program, parse_event, payload_hash
from worker.domain.program import DEFAULT_PROGRAM

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
TABLE = """
[currencies]
base = "CNY"
accepted = { USD = { rate = "7.2" }, HKD = { rate = "0.92" } }
"""
PROGRAM = parse_program_text(TABLE, "program.toml")


def refused(text: str) -> str:
    with pytest.raises(ProgramError) as error:
        parse_program_text(text, "program.toml")
    return str(error.value)


def test_the_accepted_currencies_are_the_base_then_the_others_by_code():
    assert PROGRAM.accepted_currencies == ("CNY", "HKD", "USD")
    assert PROGRAM.base_currency == "CNY"


def test_a_program_without_the_table_accepts_its_purchase_currencies_as_listed_and_converts_nothing():
    listed = parse_program_text('[purchase]\ncurrencies = ["CNY", "USD"]\n', "program.toml")

    assert listed.accepted_currencies == ("CNY", "USD")
    assert (listed.base_currency, DEFAULT_PROGRAM.accepted_currencies) == ("CNY", ("CNY",))
    assert currencies.convert(listed, "USD", Decimal("100.00")) is None


def test_the_table_is_checked_naming_the_bad_key():
    assert refused('[currencies]\nbase = "CNY"\naccepted = { USD = { rate = 7.2 } }\n') == (
        'program.toml: currencies.accepted.USD.rate: must be a decimal string such as "7.2", not a TOML float'
    )
    assert refused('[currencies]\nbase = "CNY"\naccepted = { USD = { rate = "0" } }\n') == (
        "program.toml: currencies.accepted.USD.rate: must be greater than 0"
    )
    assert refused('[currencies]\nbase = "cny"\n') == (
        "program.toml: currencies.base: 'cny' is not a currency code: three capital letters (ISO 4217), e.g. CNY"
    )
    assert refused('[currencies]\nbase = "CNY"\naccepted = { usd = { rate = "7.2" } }\n') == (
        "program.toml: currencies.accepted.usd: 'usd' is not a currency code: three capital letters (ISO 4217), "
        "e.g. CNY"
    )
    assert refused('[currencies]\nbase = "CNY"\naccepted = { CNY = { rate = "1" } }\n') == (
        "program.toml: currencies.accepted.CNY: the base currency needs no rate; remove this key"
    )
    assert refused('[purchase]\ncurrencies = ["CNY"]\n\n[currencies]\nbase = "CNY"\n') == (
        "program.toml: purchase.currencies: [currencies] lists the accepted currencies; remove this key"
    )
    assert refused('[currencies]\nbase = "CNY"\naccepted = { USD = { rate = "7.2", fee = "1" } }\n') == (
        "program.toml: currencies.accepted.USD.fee: unknown key"
    )


def test_tiers_on_the_amount_basis_take_the_base_currency_only():
    amount_basis = (
        '[tiers]\nbasis = "amount"\n\n[[tiers.levels]]\nname = "Member"\nthreshold = 0\n\n'
        '[[rules]]\nid = "purchase"\non = "purchase"\neffect = { kind = "per_amount" }\n\n'
    )

    assert refused(amount_basis + TABLE) == (
        "program.toml: currencies.accepted: tiers on the amount basis count each order's amount as sent; "
        'with tiers.basis = "amount" accept the base currency only'
    )
    assert parse_program_text(amount_basis + '[currencies]\nbase = "CNY"\n', "program.toml").accepted_currencies == (
        "CNY",
    )


def test_an_amount_converts_to_the_cent_rounding_half_up():
    usd = currencies.convert(PROGRAM, "USD", Decimal("100.00"))
    assert usd is not None
    assert (usd.base_amount, usd.describe()) == (Decimal("720.00"), "USD 100.00 = CNY 720.00 at 7.2")
    # 10.01 x 0.92 = 9.2092; 0.01 x 0.5 = 0.005 goes up to 0.01 (half-even would give 0.00).
    assert currencies.to_base(Decimal("10.01"), Decimal("0.92")) == Decimal("9.21")
    assert currencies.to_base(Decimal("0.01"), Decimal("0.5")) == Decimal("0.01")
    assert currencies.to_base(Decimal("0.03"), Decimal("0.5")) == Decimal("0.02")
    assert currencies.convert(PROGRAM, "CNY", Decimal("100.00")) is None


def test_a_purchase_payload_has_its_order_and_line_amounts_in_the_base_and_keeps_its_currency():
    payload = {
        "order_id": "o-1",
        "amount": Decimal("10.01"),
        "currency": "HKD",
        "items": ({"sku": "A", "category": "x", "amount": Decimal("5.00"), "quantity": 1},),
    }

    converted, conversion = currencies.purchase_in_base(PROGRAM, payload)

    assert converted["amount"] == Decimal("9.21")
    assert converted["items"][0]["amount"] == Decimal("4.60")
    assert converted["currency"] == "HKD"
    assert conversion is not None
    assert conversion.provenance() == {"currency": "HKD", "currency_amount": "10.01", "currency_rate": "0.92"}


def test_an_event_in_a_currency_the_program_does_not_accept_is_refused_with_the_list():
    eur = parse_event(f.purchase("M1", "100.00", currency="EUR"))
    usd_only_listed = parse_program_text(TABLE.replace('USD = { rate = "7.2" }, ', ""), "program.toml")
    usd = parse_event(f.purchase("M1", "100.00", currency="USD"))
    refund_usd = parse_event(f.refund("M1", "o-1", "10.00", currency="USD"))

    with pytest.raises(InvalidEvent) as error:
        check_against_program(usd, usd_only_listed, NOW)
    assert error.value.reason == "payload.currency: USD is not accepted by this program (accepted: CNY, HKD)"
    with pytest.raises(InvalidEvent) as error:
        check_against_program(refund_usd, usd_only_listed, NOW)
    assert error.value.reason == "payload.currency: USD is not accepted by this program (accepted: CNY, HKD)"
    with pytest.raises(InvalidEvent) as error:
        check_against_program(eur, PROGRAM, NOW)
    assert error.value.reason == "payload.currency: EUR is not accepted by this program (accepted: CNY, HKD, USD)"
    check_against_program(usd, PROGRAM, NOW)
    check_against_program(refund_usd, PROGRAM, NOW)


def test_a_refund_without_a_currency_is_what_it_was_before_the_field_and_one_in_another_currency_is_refused():
    raw = f.refund("M1", "o-1", "10.00", refund_id="r-1", event_id="e-1")
    plain = parse_event(raw)

    assert "currency" not in plain.model_dump(mode="json")["payload"]
    assert payload_hash(plain) != payload_hash(parse_event({**raw, "payload": {**raw["payload"], "currency": "CNY"}}))
    assert currencies.refund_refusal("USD", "o-1", None) is None
    assert currencies.refund_refusal("USD", "o-1", "USD") is None
    assert (
        currencies.refund_refusal("USD", "o-1", "HKD") == "payload.currency: HKD is not the currency of order o-1 (USD)"
    )


def test_the_purchase_decider_earns_on_the_converted_amount_and_records_the_conversion():
    state = MemberState("M1", "Regular", 0, Decimal(0), {"birthday": None, "first_purchase_at": None}, {})
    event = parse_event(f.purchase("M1", "100.00", order_id="o-1", currency="USD"))

    decision = deciders.decide(state, event, PROGRAM)

    earn = next(step for step in decision.steps if isinstance(step, Earn))
    by_rule = {award.rule: award for award in earn.awards}
    assert decision.outcome.points == 820  # 720.00 at 1 point per 1.00, +100 first purchase
    assert by_rule["purchase"].points == 720
    assert by_rule["purchase"].detail["amount"] == "720.00"
    assert (by_rule["purchase"].detail["currency"], by_rule["purchase"].detail["currency_rate"]) == ("USD", "7.2")
    # The order keeps the amount as sent, in its currency: refunds in it reverse in proportion.
    assert (state.orders["o-1"].amount, state.orders["o-1"].currency, state.orders["o-1"].points_earned) == (
        Decimal("100.00"),
        "USD",
        720,
    )
