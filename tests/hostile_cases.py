"""Hostile and malformed events, each with the exact reason the contract gives for it.

Shared by the `loyalty publish` test and the worker test, so both paths are held to the
same messages.
"""

from __future__ import annotations

import json
from typing import Any

_OFFSET_HINT = "must include a UTC offset, e.g. 2026-11-22T10:15:00+08:00"
_ID_RULE = "must be 1-128 characters: letters, digits and . _ : @ # / + - (starting with a letter or digit)"


def good(event_id: str, member_id: str = "H1", amount: str = "10.00", **over: Any) -> dict:
    event = {
        "event_id": event_id,
        "type": "purchase",
        "source": "pos",
        "member_id": member_id,
        "occurred_at": "2026-11-03T10:00:00+08:00",
        "payload": {"order_id": f"o-{event_id}", "amount": amount, "currency": "CNY"},
    }
    for key, value in over.items():
        if key.startswith("p_"):
            event["payload"][key[2:]] = value
        else:
            event[key] = value
    return event


def _without(key: str) -> dict:
    event = good("bad-missing")
    del event[key]
    return event


# (label, raw JSON line, exact reason). Each line is one event as a producer would send it.
CASES: list[tuple[str, str, str]] = [
    (
        "malformed JSON",
        '{"event_id": "x"',
        "event: not valid JSON: Expecting ',' delimiter: line 1 column 17 (char 16)",
    ),
    ("not an object", "[1, 2]", "event: must be a JSON object, got list"),
    ("missing field", json.dumps(_without("member_id")), "member_id: is required"),
    ("extra field", json.dumps(good("bad-extra", coupon="X")), "coupon: is not a known field"),
    ("extra payload field", json.dumps(good("bad-extra-p", p_discount="5")), "payload.discount: is not a known field"),
    (
        "amount as number",
        json.dumps(good("bad-num", p_amount=10)),
        'payload.amount: must be a decimal string such as "350.00"',
    ),
    ("member id as number", json.dumps(good("bad-mid", member_id=123)), "member_id: must be a valid string"),
    ("negative amount", json.dumps(good("bad-neg", amount="-1.00")), "payload.amount: must be greater than 0"),
    ("zero amount", json.dumps(good("bad-zero", amount="0")), "payload.amount: must be greater than 0"),
    ("NaN amount", json.dumps(good("bad-nan", amount="NaN")), "payload.amount: must be a finite number"),
    ("infinite amount", json.dumps(good("bad-inf", amount="Infinity")), "payload.amount: must be a finite number"),
    (
        "exponent amount",
        json.dumps(good("bad-huge", amount="1e30")),
        'payload.amount: must be a decimal string such as "350.00"',
    ),
    (
        "huge amount",
        json.dumps(good("bad-huge2", amount="1000000000000.00")),
        "payload.amount: must be less than 1000000000000",
    ),
    (
        "over-precise amount",
        json.dumps(good("bad-prec", amount="1.001")),
        "payload.amount: must have at most 2 decimal places",
    ),
    (
        "unknown currency",
        json.dumps(good("bad-cur", p_currency="XYZ")),
        "payload.currency: XYZ is not accepted by this program (accepted: CNY)",
    ),
    (
        "timestamp without offset",
        json.dumps(good("bad-tz", occurred_at="2026-11-03T10:00:00")),
        f"occurred_at: {_OFFSET_HINT}",
    ),
    (
        "timestamp far in the future",
        json.dumps(good("bad-fut", occurred_at="2030-01-01T00:00:00+00:00")),
        "occurred_at: 2030-01-01T00:00:00+00:00 is more than 24 hours in the future",
    ),
    (
        "1 MB payload",
        json.dumps(good("bad-big", p_order_id="x" * (1 << 20))),
        "event: 1048766 bytes is over the limit of 65536 bytes",
    ),
    (
        "id with quotes and SQL",
        json.dumps(good("bad-sql", member_id="M1'; DROP TABLE members;--")),
        f"member_id: {_ID_RULE}",
    ),
    ("id with control characters", json.dumps(good("bad\x00\n\x1b[31m", p_order_id="o-ctl")), f"event_id: {_ID_RULE}"),
    (
        "unknown event type",
        json.dumps(good("bad-type", type="gift")),
        "type: must be one of purchase, refund, review, referral, check_in, signup, activity, redemption, redemption_cancel, identity_link, adjustment, member_update",
    ),
]
