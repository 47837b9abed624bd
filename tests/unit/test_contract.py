"""The event contract: every refusal names the field and says what is expected."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from worker.domain.engine import default_engine_program, with_rules
from worker.domain.engine.language import Activity
from worker.domain.errors import InvalidEvent
from worker.domain.events import (
    EVENT_TYPES,
    ActivityEvent,
    PurchaseEvent,
    check_against_program,
    decode_event,
    event_json_schema,
    payload_hash,
)
from worker.domain.program import DEFAULT_PROGRAM

NOW = datetime(2026, 11, 22, 3, 0, tzinfo=UTC)
VALID = {
    "event_id": "pos-042-000123",
    "type": "purchase",
    "source": "pos",
    "member_id": "M1001",
    "occurred_at": "2026-11-22T10:15:00+08:00",
    "payload": {
        "order_id": "o1",
        "amount": "350.00",
        "currency": "CNY",
        "items": [{"sku": "SKU-1", "category": "beauty", "amount": "350.00", "quantity": 1}],
    },
}


def edited(path: str, value=None, *, delete: bool = False) -> str:
    data = copy.deepcopy(VALID)
    *parents, last = path.split(".")
    target = data
    for key in parents:
        target = target[int(key)] if isinstance(target, list) else target[key]
    if delete:
        del target[last]
    else:
        target[last] = value
    return json.dumps(data)


def reason(raw: str) -> str:
    with pytest.raises(InvalidEvent) as caught:
        decode_event(raw)
    return caught.value.reason


def test_a_valid_purchase_parses_with_decimal_amounts():
    event = decode_event(json.dumps(VALID))

    assert isinstance(event, PurchaseEvent)
    assert str(event.payload.amount) == "350.00"
    assert event.occurred_at.utcoffset().total_seconds() == 8 * 3600


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (
            "{not json",
            "event: not valid JSON: Expecting property name enclosed in double quotes: line 1 column 2 (char 1)",
        ),
        ("[1, 2]", "event: must be a JSON object, got list"),
        (edited("event_id", delete=True), "event_id: is required"),
        (edited("color", "red"), "color: is not a known field"),
        (
            edited("type", "teleport"),
            "type: must be one of purchase, refund, review, referral, check_in, signup, activity, redemption, redemption_cancel, identity_link, adjustment, member_update",
        ),
        (edited("type", delete=True), "type: is required"),
        (edited("payload.amount", "-1.00"), "payload.amount: must be greater than 0"),
        (edited("payload.amount", "0.00"), "payload.amount: must be greater than 0"),
        (edited("payload.amount", "NaN"), "payload.amount: must be a finite number"),
        (edited("payload.amount", "1000000000000.00"), "payload.amount: must be less than 1000000000000"),
        (edited("payload.amount", "12.345"), "payload.amount: must have at most 2 decimal places"),
        (edited("payload.amount", "abc"), 'payload.amount: must be a decimal string such as "350.00"'),
        (edited("payload.amount", 350), 'payload.amount: must be a decimal string such as "350.00"'),
        (
            json.dumps(VALID).replace('"amount": "350.00", "currency"', '"amount": 350.5, "currency"'),
            'payload.amount: must be a decimal string such as "350.00"',
        ),
        (json.dumps(VALID).replace('"350.00", "currency"', 'NaN, "currency"'), "event: NaN is not valid JSON"),
        (
            edited("occurred_at", "2026-11-22T10:15:00"),
            "occurred_at: must include a UTC offset, e.g. 2026-11-22T10:15:00+08:00",
        ),
        (edited("occurred_at", 1763777700), "occurred_at: must be an ISO 8601 string with a UTC offset"),
        (
            edited("member_id", "M1'; DROP TABLE members;--"),
            "member_id: must be 1-128 characters: letters, digits and . _ : @ # / + - (starting with a letter or digit)",
        ),
        (
            edited("member_id", "M\u0000"),
            "member_id: must be 1-128 characters: letters, digits and . _ : @ # / + - (starting with a letter or digit)",
        ),
        (
            edited("member_id", "M" * 129),
            "member_id: must be 1-128 characters: letters, digits and . _ : @ # / + - (starting with a letter or digit)",
        ),
        (edited("source", "POS"), "source: must be 1-32 characters of a-z, 0-9, _ and -"),
        (edited("payload.currency", "cny"), "payload.currency: must be a three-letter ISO 4217 code such as CNY"),
        (edited("payload.items.0.quantity", 0), "payload.items.0.quantity: must be greater than or equal to 1"),
        (edited("payload.items.0.quantity", "1"), "payload.items.0.quantity: must be a valid integer"),
        (edited("payload.order_id", delete=True), "payload.order_id: is required"),
        ("x" * 70_000, "event: 70000 bytes is over the limit of 65536 bytes"),
    ],
)
def test_refusals_name_the_field(raw, expected):
    assert reason(raw) == expected


def test_several_problems_are_all_reported():
    data = copy.deepcopy(VALID)
    data["payload"]["amount"] = "-5"
    del data["member_id"]

    assert reason(json.dumps(data)) == "member_id: is required; payload.amount: must be greater than 0"


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        (
            {"type": "review", "payload": {"review_id": "r1", "order_id": "o1", "sku": "S", "has_media": "yes"}},
            "payload.has_media: must be a valid boolean",
        ),
        ({"type": "refund", "payload": {"order_id": "o1", "amount": "5.00"}}, "payload.refund_id: is required"),
        ({"type": "signup", "payload": {"locale": "fr"}}, "payload.locale: must be 'en', 'zh-Hans' or 'zh-Hant'"),
        (
            {"type": "signup", "payload": {"birthday": "1990-02-30"}},
            "payload.birthday: must be a calendar date as YYYY-MM-DD, e.g. 1990-05-20",
        ),
        ({"type": "check_in", "payload": {"bonus": 1}}, "payload.bonus: is not a known field"),
        ({"type": "referral", "payload": {}}, "payload.referee_member_id: is required"),
        ({"type": "activity", "payload": {}}, "payload.kind: is required"),
        (
            {"type": "activity", "payload": {"kind": "Share"}},
            "payload.kind: must be 1-64 characters of a-z, 0-9, _ . and - (starting with a letter or digit)",
        ),
        ({"type": "activity", "payload": {"kind": "share", "points": 5}}, "payload.points: is not a known field"),
        (
            {"type": "activity", "payload": {"kind": "share", "attributes": ["wechat"]}},
            "payload.attributes: must be an object of attribute names and values",
        ),
        (
            {"type": "activity", "payload": {"kind": "share", "attributes": {f"a{i}": i for i in range(17)}}},
            "payload.attributes: 17 attributes is over the limit of 16",
        ),
        (
            {"type": "activity", "payload": {"kind": "share", "attributes": {"Channel": "wechat"}}},
            "payload.attributes: 'Channel' is not an attribute name: use 1-32 of a-z, 0-9 and _, starting with a letter",
        ),
        (
            {"type": "activity", "payload": {"kind": "share", "attributes": {"x\u0000\u001b[31m": 1}}},
            "payload.attributes: 'x\\u0000\\u001b[31m' is not an attribute name: use 1-32 of a-z, 0-9 and _, starting with a letter",
        ),
        (
            {"type": "activity", "payload": {"kind": "share", "attributes": {"kind": "survey"}}},
            "payload.attributes: 'kind' is the activity's own field, not an attribute",
        ),
        (
            {"type": "activity", "payload": {"kind": "share", "attributes": {"to": {"channel": "wechat"}}}},
            "payload.attributes.to: must be a string, an integer or true/false",
        ),
        (
            {"type": "activity", "payload": {"kind": "share", "attributes": {"to": None}}},
            "payload.attributes.to: must be a string, an integer or true/false",
        ),
        (
            {"type": "activity", "payload": {"kind": "share", "attributes": {"to": "wechat\u200b"}}},
            "payload.attributes.to: must be 1-128 printable characters (no control or invisible format characters)",
        ),
        (
            {"type": "activity", "payload": {"kind": "share", "attributes": {"to": "x" * 129}}},
            "payload.attributes.to: must be 1-128 printable characters (no control or invisible format characters)",
        ),
        (
            {"type": "activity", "payload": {"kind": "game", "attributes": {"score": 2**53}}},
            "payload.attributes.score: must be an integer from -9007199254740991 to 9007199254740991",
        ),
    ],
)
def test_payload_refusals_for_each_type(event, expected):
    assert reason(json.dumps({**VALID, **event})) == expected


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            {"occurred_at": "2026-11-24T03:00:01+00:00"},
            "occurred_at: 2026-11-24T03:00:01+00:00 is more than 24 hours in the future",
        ),
        (
            {"payload": {**VALID["payload"], "currency": "USD"}},
            "payload.currency: USD is not accepted by this program (accepted: CNY)",
        ),
        (
            {"payload": {**VALID["payload"], "amount": "1000000.01", "items": []}},
            "payload.amount: 1000000.01 is over the program's limit of 1000000.00",
        ),
        (
            {"type": "referral", "payload": {"referee_member_id": "M1001"}},
            "payload.referee_member_id: a member cannot refer themselves",
        ),
    ],
)
def test_program_checks(change, expected):
    event = decode_event(json.dumps({**VALID, **change}))
    with pytest.raises(InvalidEvent) as caught:
        check_against_program(event, DEFAULT_PROGRAM, NOW)
    assert caught.value.reason == expected


def test_an_activity_carries_its_kind_and_flat_attributes():
    event = decode_event(
        json.dumps(
            {
                **VALID,
                "type": "activity",
                "payload": {"kind": "share", "attributes": {"channel": "wechat", "friends": 3, "first": True}},
            }
        )
    )

    assert isinstance(event, ActivityEvent)
    assert event.payload.model_dump() == {
        "kind": "share",
        "attributes": {"channel": "wechat", "friends": 3, "first": True},
    }
    assert decode_event(json.dumps({**VALID, "type": "activity", "payload": {"kind": "game"}})).payload.attributes == {}


def test_a_decimal_attribute_is_refused_as_a_float_is_for_money():
    raw = json.dumps({**VALID, "type": "activity", "payload": {"kind": "game", "attributes": {"score": 4.5}}})

    assert reason(raw) == 'payload.attributes.score: must be an integer; send a decimal as a string, e.g. "4.5"'


def test_an_activity_kind_must_be_one_the_program_in_force_knows():
    watch = decode_event(json.dumps({**VALID, "type": "activity", "payload": {"kind": "watch_live"}}))
    rules = default_engine_program().model_copy(update={"activity": Activity(kinds=("watch_live",))})
    declaring = with_rules(DEFAULT_PROGRAM, rules)

    with pytest.raises(InvalidEvent) as caught:
        check_against_program(watch, DEFAULT_PROGRAM, NOW)
    check_against_program(watch, declaring, NOW)

    assert caught.value.reason == (
        "payload.kind: watch_live is not an activity kind of this program "
        "(kinds: share, survey, trial, profile_completed, game)"
    )


def test_payload_hash_ignores_formatting_but_not_content():
    a = decode_event(json.dumps(VALID))
    b = decode_event(json.dumps(VALID, indent=2, sort_keys=True))
    c = decode_event(edited("payload.amount", "350.01"))

    assert payload_hash(a) == payload_hash(b) != payload_hash(c)


def test_published_json_schema_is_current():
    published = json.loads((Path(__file__).parents[2] / "docs" / "event.schema.json").read_text())

    assert published == event_json_schema(), "regenerate with: loyalty schema > docs/event.schema.json"


def test_schema_covers_every_event_type():
    schema = event_json_schema()

    assert sorted(schema["discriminator"]["mapping"]) == sorted(EVENT_TYPES)


def test_the_event_docs_list_every_event_type_and_its_payload():
    text = (Path(__file__).parents[2] / "docs" / "events.md").read_text()
    type_row = next(line for line in text.splitlines() if line.startswith("| `type` |"))
    payload_rows = [
        line.split("|")[1].strip().strip("`")
        for line in text.splitlines()
        if line.startswith("| `") and "{" in line.split("|")[2]
    ]

    assert type_row == f"| `type` | string | {', '.join(f'`{t}`' for t in EVENT_TYPES)} |"
    assert payload_rows == list(EVENT_TYPES)


def test_the_published_schema_accepts_what_the_worker_accepts_and_refuses_float_amounts():
    import jsonschema

    validator = jsonschema.Draft202012Validator(event_json_schema())
    float_amount = copy.deepcopy(VALID)
    float_amount["payload"]["amount"] = 350.0

    assert list(validator.iter_errors(VALID)) == []
    assert not validator.is_valid(float_amount)
    assert not validator.is_valid({**VALID, "type": "teleport"})
