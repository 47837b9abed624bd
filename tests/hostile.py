"""Hostile inputs and the exact reason each must be rejected with (publish and worker alike)."""

from __future__ import annotations

import json

ID_RULE = "must be 1-128 characters: letters, digits and . _ : @ # / + - (starting with a letter or digit)"


def _purchase(n: int, **changes) -> dict:
    event = {
        "event_id": f"hostile-{n}",
        "type": "purchase",
        "source": "pos",
        "member_id": "H1",
        "occurred_at": "2026-11-02T10:00:00+08:00",
        "payload": {"order_id": f"o-h-{n}", "amount": "10.00", "currency": "CNY"},
    }
    for key, value in changes.items():
        if key.startswith("payload_"):
            event["payload"][key[len("payload_") :]] = value
        else:
            event[key] = value
    return event


def _without(n: int, key: str) -> dict:
    event = _purchase(n)
    del event[key]
    return event


NAN_LITERAL = (
    '{"event_id":"nan","type":"purchase","source":"pos","member_id":"H1","occurred_at":'
    '"2026-11-02T10:00:00+08:00","payload":{"order_id":"o","amount":NaN,"currency":"CNY"}}'
)

# (raw JSON line, reason): one line each, every one distinct.
CASES: list[tuple[str, str]] = [
    ("{bad json", "event: not valid JSON: Expecting property name enclosed in double quotes: line 1 column 2 (char 1)"),
    (json.dumps(_without(1, "member_id")), "member_id: is required"),
    (json.dumps(_purchase(2, extra=1)), "extra: is not a known field"),
    (json.dumps(_purchase(3, member_id=123)), "member_id: must be a valid string"),
    (json.dumps(_purchase(4, payload_amount=12.5)), 'payload.amount: must be a decimal string such as "350.00"'),
    (json.dumps(_purchase(5, payload_amount="-5.00")), "payload.amount: must be greater than 0"),
    (json.dumps(_purchase(6, payload_amount="0.00")), "payload.amount: must be greater than 0"),
    (json.dumps(_purchase(7, payload_amount="NaN")), "payload.amount: must be a finite number"),
    (NAN_LITERAL, "event: NaN is not valid JSON"),
    (json.dumps(_purchase(8, payload_amount="1e15")), 'payload.amount: must be a decimal string such as "350.00"'),
    (json.dumps(_purchase(9, payload_amount="99999999999999.99")), "payload.amount: must be less than 1000000000000"),
    (json.dumps(_purchase(10, payload_amount="1.001")), "payload.amount: must have at most 2 decimal places"),
    (
        json.dumps(_purchase(11, payload_currency="XYZ")),
        "payload.currency: XYZ is not accepted by this program (accepted: CNY)",
    ),
    (
        json.dumps(_purchase(12, payload_currency="usd")),
        "payload.currency: must be a three-letter ISO 4217 code such as CNY",
    ),
    (
        json.dumps(_purchase(13, occurred_at="2026-11-02T10:00:00")),
        "occurred_at: must include a UTC offset, e.g. 2026-11-22T10:15:00+08:00",
    ),
    (
        json.dumps(_purchase(14, occurred_at="2099-01-01T00:00:00+00:00")),
        "occurred_at: 2099-01-01T00:00:00+00:00 is more than 24 hours in the future",
    ),
    (
        json.dumps(_purchase(15, payload_order_id="x" * (1024 * 1024))),
        "event: 1048769 bytes is over the limit of 65536 bytes",
    ),
    (json.dumps(_purchase(16, event_id="x'; DROP TABLE members;--")), f"event_id: {ID_RULE}"),
    (json.dumps(_purchase(17, member_id='M"1')), f"member_id: {ID_RULE}"),
    (json.dumps(_purchase(18, member_id="M\u00001")), f"member_id: {ID_RULE}"),
    (json.dumps(_purchase(19, member_id="M\n1\x1b[2J")), f"member_id: {ID_RULE}"),
    (
        json.dumps(_purchase(20, type="purchase_v2")),
        "type: must be one of purchase, refund, review, referral, check_in, signup, activity, redemption, redemption_cancel, identity_link, adjustment, member_update",
    ),
    (json.dumps(_without(21, "type")), "type: is required"),
    (json.dumps([_purchase(22)]), "event: must be a JSON object, got list"),
    ("null", "event: must be a JSON object, got NoneType"),
]


def valid(n: int) -> dict:
    return _purchase(1000 + n)
