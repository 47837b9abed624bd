"""Identities in their normal form, and events naming a member by one: pure, no services."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from worker.domain.errors import InvalidEvent
from worker.domain.events import PERSONAL_PAYLOAD_FIELDS, named_member, parse_event, payload_hash, without_personal
from worker.domain.identities import (
    IdentityError,
    identity_member_id,
    looks_like_identity,
    names_identity,
    normalise,
    parse_identity,
    survivor_of,
)

BASE = {"event_id": "e-1", "source": "pos", "occurred_at": "2026-11-03T10:00:00+08:00", "type": "check_in"}


@pytest.mark.parametrize(
    ("kind", "value", "normal"),
    [
        ("phone", "+8613800000000", "+8613800000000"),
        ("phone", " +86 138-0000-0000 ", "+8613800000000"),
        ("phone", "+1 (415) 555.0100", "+14155550100"),
        ("email", "  Ann.Lee@Example.COM ", "ann.lee@example.com"),
        ("card", " 8800123 ", "8800123"),
        ("wechat_openid", "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o", "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"),
    ],
)
def test_identities_have_one_normal_form(kind, value, normal):
    assert normalise(kind, value) == normal


@pytest.mark.parametrize(
    ("kind", "value", "message"),
    [
        (
            "phone",
            "13800000000",
            "value: must be a phone number in E.164 form with its country code, e.g. +8613800000000",
        ),
        (
            "phone",
            "+0861380000",
            "value: must be a phone number in E.164 form with its country code, e.g. +8613800000000",
        ),
        (
            "phone",
            "+86138000000001234",
            "value: must be a phone number in E.164 form with its country code, e.g. +8613800000000",
        ),
        ("email", "ann@", "value: must be an e-mail address such as name@example.com"),
        ("email", "ann@example", "value: must be an e-mail address such as name@example.com"),
        ("card", "88 00", "value: must be 1-64 characters of letters, digits, _ and -"),
        ("card", "   ", "value: must be 1-64 characters of letters, digits, _ and -"),
        ("wechat_openid", "o\u200bx", "value: must be 1-128 characters of letters, digits, _ and -"),
        ("fax", "1", "kind: must be one of phone, card, wechat_openid, email"),
    ],
)
def test_identities_out_of_form_are_refused_naming_the_field(kind, value, message):
    with pytest.raises(IdentityError) as refused:
        normalise(kind, value)
    assert str(refused.value) == message


def test_an_operator_names_an_identity_as_kind_colon_value():
    assert parse_identity("phone:+86 13800000000") == ("phone", "+8613800000000")
    assert looks_like_identity("card:8800123") and not looks_like_identity("M1") and not looks_like_identity("pos:M1")
    with pytest.raises(IdentityError, match="^identity: must be KIND:VALUE, e.g. phone:"):
        parse_identity("8800123")


def test_the_generated_member_id_is_the_same_for_the_same_identity_and_hides_it():
    member_id = identity_member_id("card", "8800123")
    assert member_id == identity_member_id("card", "8800123")
    assert member_id != identity_member_id("phone", "8800123")
    assert member_id.startswith("id-") and len(member_id) == 19 and "8800123" not in member_id


def test_the_member_whose_first_event_occurred_earliest_survives_a_merge_and_a_tie_goes_to_the_lower_id():
    early, late = datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 2, 1, tzinfo=UTC)
    assert survivor_of((late, "A"), (early, "B")) == "B"
    assert survivor_of((early, "B"), (early, "A")) == "A"
    # A member with no event yet (enrolled by a link alone) comes after any member with one,
    # and of two without, the lower id stays.
    assert survivor_of((None, "A"), (late, "id-0123456789abcdef")) == "id-0123456789abcdef"
    assert survivor_of((late, "B"), (None, "A")) == "B"
    assert survivor_of((None, "id-0123456789abcdef"), (None, "M1001")) == "M1001"


def reason(data):
    with pytest.raises(InvalidEvent) as refused:
        parse_event(data)
    return refused.value.reason


def test_an_event_names_its_member_by_id_or_by_identity_exactly_once():
    by_card = parse_event({**BASE, "member": {"kind": "card", "value": " 8800123"}})

    assert by_card.member_id is None and by_card.member.value == "8800123"
    assert reason(BASE) == "member_id: is required"
    assert reason({**BASE, "member_id": "M1", "member": {"kind": "card", "value": "1"}}) == (
        "member: give member_id or member, not both"
    )
    assert reason({**BASE, "member": {"kind": "phone", "value": "138 0000 0000"}}) == (
        "member.value: must be a phone number in E.164 form with its country code, e.g. +8613800000000"
    )
    assert reason({**BASE, "member": {"kind": "qq", "value": "1"}}) == (
        "member.kind: must be one of phone, card, wechat_openid, email"
    )
    assert reason({**BASE, "member": {"kind": "card"}}) == "member.value: is required"


def test_an_identity_link_names_its_member_by_id():
    link = {**BASE, "type": "identity_link", "payload": {"kind": "email", "value": " Ann@Example.com"}}

    assert parse_event({**link, "member_id": "M1"}).payload.value == "ann@example.com"
    assert reason({**link, "member": {"kind": "card", "value": "1"}}) == (
        "member: an identity_link names the member that gets the identity by member_id"
    )


def test_the_digest_is_of_the_event_as_sent_whichever_member_it_lands_on():
    by_card = parse_event({**BASE, "member": {"kind": "card", "value": "8800123"}})
    by_id = parse_event({**BASE, "member_id": "M1"})

    assert payload_hash(named_member(by_card, "id-1")) == payload_hash(by_card)
    assert payload_hash(named_member(named_member(by_id, "M0"), "S")) == payload_hash(by_id)
    assert payload_hash(by_id) != payload_hash(parse_event({**BASE, "member_id": "M2"}))


ANN = [("phone", "+8613800000000"), ("email", "ann@example.com")]


@pytest.mark.parametrize(
    "raw",
    [
        '{"member": {"kind": "phone", "value": "+86 (138) 0000-0000"}, "payload": {"amount": "1.999"}}',
        '{"type": "identity_link", "member_id": "X", "payload": {"kind": "email", "value": " Ann@Example.com "}}',
        '{"event_id": "e-1", "member": {"kind": "email", "value": "ANN@EXAMPLE.COM"',  # cut short: not JSON
        "+8613800000000 sent by hand",
    ],
)
def test_names_identity_finds_an_identity_in_any_form_it_was_sent(raw):
    assert names_identity(raw, ANN) is True


@pytest.mark.parametrize(
    "raw",
    [
        '{"member": {"kind": "phone", "value": "+86 139 0000 0000"}}',
        '{"member": {"kind": "card", "value": "+8613800000001"}}',
        '{"member": {"kind": "phone", "value": "not a phone"}}',
        '{"member_id": "M1", "payload": {"kind": "share"}}',
        "[" * 5000,
    ],
)
def test_names_identity_is_false_for_other_identities_and_other_text(raw):
    assert names_identity(raw, ANN) is False


def test_without_personal_keeps_an_event_but_its_birthday_locale_and_identity():
    stored = {
        "event_id": "s-1",
        "type": "signup",
        "member_id": "M1",
        "member": {"kind": "phone", "value": "+8613800000000"},
        "payload": {"birthday": "1990-05-17", "locale": "zh-Hant"},
    }
    purchase = {"event_id": "p-1", "type": "purchase", "payload": {"order_id": "o-1", "amount": "1.00"}}

    assert without_personal(stored) == {"event_id": "s-1", "type": "signup", "member_id": "M1", "payload": {}}
    assert without_personal(purchase) == purchase
    assert PERSONAL_PAYLOAD_FIELDS == ("birthday", "locale")
