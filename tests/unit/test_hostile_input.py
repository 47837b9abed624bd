"""Hostile input found before the ledger: one definition of each limit, money exactly as the
published schema says, times and birthdays in range, safe text, bounded nesting, messages
that fit their actor and their queue, and firing times that are not in the future."""

from __future__ import annotations

import copy
import inspect
import json
import logging
from datetime import UTC, datetime

import dramatiq
import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from worker import logs
from worker.actors import all_specs
from worker.actors.events import PRODUCER_ACTORS, QUEUE
from worker.actors.jobs import firing_problem
from worker.domain.errors import InvalidEvent
from worker.domain.events import (
    EVENT_BYTES_MAX,
    MONEY_PATTERN,
    check_against_program,
    check_size,
    decode_event,
    event_json_schema,
    event_size_bytes,
    nested_deeper_than,
    parse_event,
    safe_text,
)
from worker.domain.program import DEFAULT_PROGRAM
from worker.wire import REJECT_ACTOR, TolerantJSONEncoder, queue_problem

NOW = datetime(2026, 11, 22, 3, 0, tzinfo=UTC)
EVENT = {
    "event_id": "pos-1",
    "type": "purchase",
    "source": "pos",
    "member_id": "M1",
    "occurred_at": "2026-11-22T10:15:00+08:00",
    "payload": {"order_id": "o1", "amount": "350.00", "currency": "CNY"},
}
NOT_MONEY = 'payload.amount: must be a decimal string such as "350.00"'


def with_payload(**changes) -> dict:
    event = copy.deepcopy(EVENT)
    event["payload"].update(changes)
    return event


def reason_of(raw) -> str:
    with pytest.raises(InvalidEvent) as caught:
        decode_event(raw if isinstance(raw, str) else json.dumps(raw))
    return caught.value.reason


@pytest.mark.parametrize(
    "amount",
    [
        "+10.00",
        " 10.00 ",
        "10.00 ",
        "350.00\n",
        "1e2",
        "1E2",
        "1_000.00",
        "１００.００",
        "١٠٠",
        "10.",
        ".50",
        "0x10",
        "10,00",
        "",
        "1.2.3",
    ],
)
def test_money_strings_outside_the_schema_pattern_are_refused(amount):
    assert reason_of(with_payload(amount=amount)) == NOT_MONEY


@pytest.mark.parametrize(
    ("amount", "reason"),
    [
        ("-1.00", "payload.amount: must be greater than 0"),
        ("0.00", "payload.amount: must be greater than 0"),
        ("1.234", "payload.amount: must have at most 2 decimal places"),
        ("1000000000000", "payload.amount: must be less than 1000000000000"),
        ("Infinity", "payload.amount: must be a finite number"),
    ],
)
def test_money_refusals_say_which_rule_is_broken(amount, reason):
    assert reason_of(with_payload(amount=amount)) == reason


MONEY_ALPHABET = st.sampled_from(list("0123456789.+- e_\n") + ["１", "٣", "\u00a0"])


@settings(max_examples=400, deadline=None)
@given(st.text(MONEY_ALPHABET, min_size=1, max_size=16))
def test_the_worker_accepts_an_amount_exactly_when_the_published_schema_does(amount):
    # ECMA-262 (the schema's dialect) has no "$ before a final newline": say so explicitly.
    schema_ok = "\n" not in amount and jsonschema.Draft202012Validator(
        {"type": "string", "pattern": MONEY_PATTERN}
    ).is_valid(amount)
    try:
        parse_event(with_payload(amount=amount))
        worker_ok = True
    except InvalidEvent:
        worker_ok = False
    # The pattern allows "0" and "0.00"; the worker also requires more than 0.
    assert worker_ok == (schema_ok and float(amount) > 0)


def test_the_published_schema_uses_the_validators_money_pattern():
    definitions = json.dumps(event_json_schema())
    assert json.dumps(MONEY_PATTERN) in definitions
    assert "^[0-9]{1,12}(\\\\.[0-9]{1,2})?$" in definitions


def test_occurred_at_must_be_after_2000_so_no_offset_can_overflow():
    assert reason_of({**EVENT, "occurred_at": "0001-01-01T00:00:00+14:00"}) == "occurred_at: must be after 2000-01-01"
    assert reason_of({**EVENT, "occurred_at": "1999-12-31T23:59:59+00:00"}) == "occurred_at: must be after 2000-01-01"


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("occurred_at", "1700000000", "occurred_at: must be an ISO 8601 string with a UTC offset"),
        (
            "category",
            "a\x85b",
            "payload.items.0.category: must be 1-64 printable characters (no control or invisible format characters)",
        ),
        (
            "category",
            "Shoes\u202eseohS",
            "payload.items.0.category: must be 1-64 printable characters (no control or invisible format characters)",
        ),
        (
            "category",
            "zero\u200bwidth",
            "payload.items.0.category: must be 1-64 printable characters (no control or invisible format characters)",
        ),
    ],
)
def test_text_fields_take_only_what_they_say(field, value, reason):
    event = with_payload(items=[{"sku": "S1", "category": "beauty", "amount": "1.00", "quantity": 1}])
    if field == "category":
        event["payload"]["items"][0]["category"] = value
    else:
        event[field] = value
    assert reason_of(event) == reason


def test_integers_too_long_to_convert_are_invalid_json_not_a_crash():
    assert reason_of('{"event_id": ' + "9" * 5000 + "}").startswith(
        "event: not valid JSON: Exceeds the limit (4300 digits) for integer string conversion"
    )
    decoded = _decoder().decode(b'{"options": {"redis_message_id": "rid-9"}, "x": ' + b"9" * 5000 + b"}")
    assert decoded["args"][1] == "message: not valid JSON (ValueError)"


def test_birthdays_before_1900_or_in_the_future_are_refused():
    signup = {**EVENT, "type": "signup", "payload": {"birthday": "0001-01-01"}}
    assert reason_of(signup) == "payload.birthday: must be on or after 1900-01-01"
    as_time = {**signup, "payload": {"birthday": "1990-01-01T00:00:00Z"}}
    assert reason_of(as_time) == "payload.birthday: must be a calendar date as YYYY-MM-DD, e.g. 1990-05-20"
    future = decode_event(json.dumps({**signup, "payload": {"birthday": "2026-11-23"}}))
    with pytest.raises(InvalidEvent) as caught:
        check_against_program(future, DEFAULT_PROGRAM, NOW)
    assert caught.value.reason == "payload.birthday: must not be in the future"


def test_line_amounts_may_not_add_up_to_more_than_the_order():
    items = [{"sku": "S1", "category": "beauty", "amount": "10000.00", "quantity": 1}]
    assert reason_of(with_payload(amount="10.00", items=items)) == (
        "payload.items: the line amounts add up to 10000.00, more than the order amount 10.00"
    )
    two = [
        {"sku": "S1", "category": "a", "amount": "6.00", "quantity": 1},
        {"sku": "S2", "category": "b", "amount": "4.00", "quantity": 2},
    ]
    assert decode_event(json.dumps(with_payload(amount="10.00", items=two))).payload.amount == 10


@pytest.mark.parametrize("levels", [17, 900, 30_000])
def test_deep_nesting_is_refused_without_recursion(levels):
    raw = '{"event_id": ' + "[" * levels + "]" * levels + "}"
    assert reason_of(raw) == "event: nests arrays and objects deeper than 16 levels"


def test_nesting_depth_counts_containers_not_scalars():
    assert nested_deeper_than([[[1]]], 3) is False
    assert nested_deeper_than([[[[]]]], 3) is True
    assert nested_deeper_than({"a": {"b": "[[[[[[[[[["}}, 2) is False


def test_unknown_keys_with_control_characters_give_a_storable_reason():
    event = {**EVENT, "bad\x00key\x1b[31m\u202e": 1}
    assert reason_of(event) == "bad\\u0000key\\u001b[31m\\u202e: is not a known field"
    assert (
        reason_of({**EVENT, "x\ud800": 1})
        == "event: must be valid Unicode text (a lone surrogate such as \\ud800 is not)"
    )
    assert reason_of({**EVENT, "event_id": "a\udc00"}).startswith("event_id: must be valid Unicode text")


def test_safe_text_escapes_what_cannot_be_stored_or_shown_and_cuts_long_text():
    assert safe_text("a\x00b\nc\u202ed\ud800中") == "a\\u0000b\\u000ac\\u202ed\\ud800中"
    assert safe_text("x" * 50, 10) == "xxxxxxx..."


def test_size_is_utf8_bytes_and_the_worker_never_measures_more_than_publish():
    categories = [
        {"sku": f"S{i}", "category": "家居用品与厨房电器" * 2, "amount": "0.01", "quantity": 1} for i in range(500)
    ]
    event = with_payload(amount="10.00", items=categories)
    line = json.dumps(event, ensure_ascii=False)
    assert 50_000 < len(line.encode()) <= EVENT_BYTES_MAX < len(json.dumps(event).encode())
    decode_event(line)  # publish accepts the line
    on_the_wire = json.loads(json.dumps({"args": [event]}))["args"][0]  # dramatiq escapes non-ASCII
    assert event_size_bytes(on_the_wire) == len(json.dumps(event, ensure_ascii=False, separators=(",", ":")).encode())
    check_size(on_the_wire)  # ... and so does the worker, with the same measure
    parse_event(on_the_wire)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.text(max_size=8), st.one_of(st.text(max_size=20), st.integers(), st.booleans()), max_size=6))
def test_the_compact_measure_is_never_larger_than_the_text_as_sent(value):
    for text in (json.dumps(value), json.dumps(value, ensure_ascii=False, indent=2)):
        if "\\ud8" in text or "\\udc" in text or any(0xD800 <= ord(c) <= 0xDFFF for c in text):
            continue  # lone surrogates are refused as invalid text elsewhere
        assert event_size_bytes(json.loads(text)) <= event_size_bytes(text)


def _decoder() -> TolerantJSONEncoder:
    return TolerantJSONEncoder({spec.name: inspect.signature(spec.fn) for spec in all_specs()})


def _wire(actor: str, args: list, kwargs: dict | None = None, queue: str = "events") -> bytes:
    return json.dumps(
        {
            "queue_name": queue,
            "actor_name": actor,
            "args": args,
            "kwargs": kwargs or {},
            "options": {"redis_message_id": "rid-1"},
            "message_id": "m-1",
            "message_timestamp": 1,
        }
    ).encode()


@pytest.mark.parametrize(
    ("actor", "args", "kwargs", "reason"),
    [
        (
            "reject_message",
            [],
            {},
            "message.args: reject_message(raw, reason) cannot take 0 positional and 0 keyword arguments",
        ),
        (
            "process_event",
            [1, 2],
            {},
            "message.args: process_event(event) cannot take 2 positional and 0 keyword arguments",
        ),
        (
            "process_event",
            [],
            {"evil": 1},
            "message.args: process_event(event) cannot take 0 positional and 1 keyword arguments",
        ),
        (
            "plan_job",
            [],
            {},
            "message.args: plan_job(job, scheduled_for, force) cannot take 0 positional and 0 keyword arguments",
        ),
        ("no_such\x00actor", [1], {}, "message.actor_name: 'no_such\\\\u0000actor' is not an actor of this worker"),
    ],
)
def test_messages_whose_arguments_do_not_fit_become_rejections(actor, args, kwargs, reason):
    decoded = _decoder().decode(_wire(actor, args, kwargs))
    assert (decoded["actor_name"], decoded["args"][1], decoded["options"]) == (
        REJECT_ACTOR,
        reason,
        {"redis_message_id": "rid-1"},
    )


def test_deep_and_huge_messages_are_refused_before_they_reach_an_actor():
    deep = _decoder().decode(b'{"options": {"redis_message_id": "rid-2"}, "args": ' + b"[" * 5000 + b"]" * 5000 + b"}")
    assert deep["args"][1] == "message: nests arrays and objects deeper than 19 levels"
    nested = _decoder().decode(_wire("process_event", [json.loads("[" * 30 + "]" * 30)]))
    assert nested["args"][1] == "message: nests arrays and objects deeper than 19 levels"
    huge = _decoder().decode(b'{"options": {"redis_message_id": "rid-3"}, "x": "' + b"x" * (17 << 20) + b'"}')
    assert huge["args"][1].startswith("message: 17825") and huge["args"][1].endswith(
        "bytes is over the limit of 16777216 bytes"
    )


def test_a_valid_message_decodes_unchanged():
    assert _decoder().decode(_wire("process_event", [EVENT]))["args"] == [EVENT]


@pytest.mark.parametrize(
    ("actor_queue", "message_queue", "consumed", "reason"),
    [
        ("calendar", "events", "events", "message.actor_name: the actor belongs to queue 'calendar', not 'events'"),
        ("calendar", "calendar", "events", "message.queue_name: 'calendar' was read from queue 'events'"),
        ("events", "calendar.DQ", "events.DQ", "message.queue_name: 'calendar.DQ' was read from queue 'events'"),
        ("events", "events", "events", None),
        ("events", "events.DQ", "events.DQ", None),
        ("calendar", "calendar", "calendar", None),
    ],
)
def test_a_message_runs_only_from_its_actors_queue(actor_queue, message_queue, consumed, reason):
    assert queue_problem(actor_queue, message_queue, consumed) == reason


def test_the_producers_queue_carries_only_event_actors():
    on_events = sorted(spec.name for spec in all_specs() if spec.queue_name == QUEUE)
    assert on_events == sorted([*PRODUCER_ACTORS, REJECT_ACTOR])


def test_a_firing_far_ahead_of_the_clock_is_refused_unless_forced():
    assert firing_problem("expire-points", "2099-01-01T00:00:00+00:00", NOW, force=False) == (
        "scheduled_for: 2099-01-01T00:00:00+00:00 is more than 5 minutes ahead of the worker's clock "
        "(2026-11-22T03:00:00+00:00); `loyalty scheduler run JOB --now T --force` runs a firing early"
    )
    assert firing_problem("expire-points", "2026-11-22T03:04:00+00:00", NOW, force=False) is None
    assert firing_problem("expire-points", "2099-01-01T00:00:00+00:00", NOW, force=True) is None
    assert firing_problem("drop-tables", "2026-11-22T03:00:00+00:00", NOW, force=False).startswith(
        "job: 'drop-tables' is not a calendar job (known: "
    )
    assert (
        firing_problem("birthday", "tomorrow", NOW, force=False)
        == "scheduled_for: must be an ISO 8601 time with a UTC offset"
    )
    assert (
        firing_problem("birthday", "2026-11-22T03:00:00", NOW, force=False)
        == "scheduled_for: must include a UTC offset"
    )


def test_log_records_name_a_message_by_actor_and_id_never_by_its_arguments():
    logs.redact_messages()
    records: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(record.getMessage())

    logger = logging.getLogger("dramatiq.worker.test")
    handler = Keep()
    logger.addHandler(handler)
    try:
        message = dramatiq.Message(
            queue_name="events",
            actor_name="process_event",
            args=({"payload": {"birthday": "1990-05-20"}},),
            kwargs={},
            options={},
        )
        logger.error("Failed to process message %s with unhandled exception.", message)
    finally:
        logger.removeHandler(handler)
    assert records == [f"Failed to process message process_event[{message.message_id}] with unhandled exception."]
