"""orjson on the hot path reads and measures exactly as the standard library does."""

from __future__ import annotations

import json

import pytest

from worker.domain.events import event_size_bytes
from worker.wire import TolerantJSONEncoder


def message(args_json: str) -> bytes:
    return (
        '{"queue_name":"events","actor_name":"process_event","args":' + args_json + ',"kwargs":{},'
        '"options":{"redis_message_id":"r-1"},"message_id":"m-1","message_timestamp":1}'
    ).encode()


@pytest.mark.parametrize(
    "args_json",
    [
        '[{"quantity": 3, "amount": "10.00", "name": "\u5496\u5561"}]',
        '[{"quantity": 100000000000000000000000000}]',  # over 64 bits: an exact int, not a float
        '[{"quantity": 18446744073709551616}]',
        '[{"ratio": NaN}]',  # outside JSON proper, as the standard library reads it
        '[{"ratio": 1e400}]',
        '[{"note": "\\ud800"}]',  # a lone surrogate
    ],
)
def test_a_message_decodes_as_the_standard_library_decodes_it(args_json):
    decoded = TolerantJSONEncoder().decode(message(args_json))
    expected = json.loads(message(args_json))
    assert repr(decoded) == repr(expected)
    assert [type(v) for v in decoded["args"][0].values()] == [type(v) for v in expected["args"][0].values()]


@pytest.mark.parametrize(
    "raw",
    [
        {"event_id": "e-1", "payload": {"name": "\u5496\u5561", "items": [{"sku": "A", "quantity": 2}]}},
        {"quantity": 10**25},
        {"note": "\ud800"},
        {1: "a key that is not a string"},
        [{"event_id": f"e-{i}", "amount": "1.50"} for i in range(3)],
    ],
)
def test_an_event_is_measured_as_the_compact_utf8_encoding(raw):
    encoded = json.dumps(raw, ensure_ascii=False, separators=(",", ":"), default=str)
    assert event_size_bytes(raw) == len(encoded.encode("utf-8", errors="surrogatepass"))
