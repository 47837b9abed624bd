"""Labels on plain data: their syntax and the errors naming the field, the member_update decider,
the member's labels reaching the engine, order lines' labels in the contract."""

from __future__ import annotations

import tomllib
from decimal import Decimal

import pytest
from typer.testing import CliRunner

from tests import factories as f
from worker.cli import app
from worker.domain import engine
from worker.domain.deciders import decide
from worker.domain.decisions import Decision, MemberState, Outcome
from worker.domain.engine.language import DEFAULT_PROGRAM_PATH
from worker.domain.errors import InvalidEvent
from worker.domain.events import parse_event, payload_hash
from worker.domain.labels import LabelError, changed, check_label, check_labels
from worker.domain.program import DEFAULT_PROGRAM

RULE = "must be 1-64 characters: letters, digits and _ - . :"
VIP_DOUBLE = """
[[rules]]
id = "vip_double"
on = "purchase"
when = { labels = ["vip"] }
effect = { kind = "multiply", factor = "2", group = "campaign" }
"""


def state(**profile) -> MemberState:
    return MemberState(
        member_id="M1",
        tier="Regular",
        qualifying=0,
        qualifying_amount=Decimal(0),
        profile={
            "birthday": None,
            "locale": None,
            "signed_up_at": None,
            "first_purchase_at": None,
            "labels": frozenset(),
            **profile,
        },
        rule_state={},
    )


def reason(raw: dict) -> str:
    with pytest.raises(InvalidEvent) as refused:
        parse_event(raw)
    return refused.value.reason


# ---------------------------------------------------------------- syntax


@pytest.mark.parametrize("label", ["vip", "a", "x" * 64, "tier:gold", "staff-2026", "eco_line", "B2B.partner"])
def test_labels_of_letters_digits_and_separators_are_accepted(label):
    assert check_label(label) == label


@pytest.mark.parametrize("label", ["", "x" * 65, "a b", "vip!", "员工", "tab\t", 7, None])
def test_other_labels_are_refused_naming_the_field(label):
    with pytest.raises(LabelError) as refused:
        check_label(label)
    assert str(refused.value) == f"label: {RULE}"


def test_a_list_of_labels_is_a_sorted_set_and_its_errors_name_the_index():
    assert check_labels(["vip", "new", "vip"]) == ("new", "vip")
    assert check_labels([]) == ()
    with pytest.raises(LabelError, match=rf"^labels\.2: {RULE}$"):
        check_labels(["vip", "new", "a b"])
    with pytest.raises(LabelError, match=r"^labels: must be a list of at most 32 labels$"):
        check_labels("vip")
    with pytest.raises(LabelError, match=r"^labels: 33 labels is over the limit of 32$"):
        check_labels([f"l{n}" for n in range(33)])


def test_adding_and_removing_labels():
    assert changed(["new"], add=["vip", "new"], remove=["new"]) == ("vip",)
    assert changed(["vip"], remove=["absent"]) == ("vip",)
    with pytest.raises(LabelError, match=rf"^--remove: 'a b' is not a label: {RULE}$"):
        changed([], remove=["a b"])
    with pytest.raises(LabelError, match=r"^--add: the member would have 33 labels, over the limit of 32$"):
        changed([f"l{n}" for n in range(30)], add=["x", "y", "z"])


# ---------------------------------------------------------------- the contract


def test_member_update_refusals_name_the_field():
    update = f.member_update("M1", labels=["vip"])
    assert reason({**update, "payload": {"labels": ["vip", "a b"]}}) == f"payload.labels.1: {RULE}"
    assert reason({**update, "payload": {"labels": "vip"}}) == "payload.labels: must be a list of at most 32 labels"
    assert reason({**update, "payload": {"locale": "fr"}}) == "payload.locale: must be 'en', 'zh-Hans' or 'zh-Hant'"
    assert reason({**update, "payload": {"birthday": "20-05-1990"}}) == (
        "payload.birthday: must be a calendar date as YYYY-MM-DD, e.g. 1990-05-20"
    )
    assert reason({**update, "payload": {"labels": [], "tier": "Gold"}}) == "payload.tier: is not a known field"


def test_order_lines_take_labels_and_lines_without_keep_their_stored_form_and_digest():
    line = {"sku": "BAG", "category": "home", "amount": "40.00", "quantity": 2}
    plain = f.purchase("M1", "100.00", order_id="o-1", event_id="p-1", items=[line])
    labelled = f.purchase("M1", "100.00", order_id="o-1", event_id="p-1", items=[{**line, "labels": ["eco"]}])

    assert parse_event(plain).model_dump(mode="json")["payload"]["items"] == [line]
    assert parse_event(labelled).model_dump(mode="json")["payload"]["items"] == [{**line, "labels": ["eco"]}]
    # The digest of a line without labels is what it was before lines had labels
    assert payload_hash(parse_event(plain)) == "fbab132b47981edcdc4636c50bec820024971744473945dcfea3eb2d7b480ae2"
    assert payload_hash(parse_event(labelled)) != payload_hash(parse_event(plain))
    assert reason({**labelled, "payload": {**labelled["payload"], "items": [{**line, "labels": ["eco", ""]}]}}) == (
        f"payload.items.0.labels.1: {RULE}"
    )


# ---------------------------------------------------------------- the decider


def test_an_empty_member_update_changes_nothing():
    member = state(labels=frozenset({"vip"}), locale="en")
    before = dict(member.profile)

    decision = decide(member, parse_event({**f.member_update("M1"), "payload": {}}), DEFAULT_PROGRAM)

    assert decision == Decision(Outcome("applied"), [])
    assert member.profile == before


def test_member_update_sets_what_it_gives_and_earns_nothing():
    member = state(labels=frozenset({"new"}), locale="en")
    event = parse_event(f.member_update("M1", labels=["vip", "staff"], birthday="1990-05-20"))

    decision = decide(member, event, DEFAULT_PROGRAM)

    assert decision == Decision(Outcome("applied"), [])
    assert member.profile["labels"] == frozenset({"vip", "staff"})
    assert str(member.profile["birthday"]) == "1990-05-20"
    assert member.profile["locale"] == "en"  # left out: unchanged
    assert (member.qualifying, member.rule_state) == (0, {})


def test_an_empty_label_list_clears_the_labels_and_a_later_purchase_earns_by_them():
    program = engine.with_rules(
        DEFAULT_PROGRAM,
        engine.parse_engine_program(tomllib.loads(DEFAULT_PROGRAM_PATH.read_text() + VIP_DOUBLE), version="vip-1"),
    )
    member = state()
    events = [
        f.member_update("M1", labels=["vip"], occurred_at="2026-11-02T10:00:00+08:00"),
        f.purchase("M1", "100.00", occurred_at="2026-11-03T10:00:00+08:00"),
        f.member_update("M1", labels=[], occurred_at="2026-11-04T10:00:00+08:00"),
        f.purchase("M1", "100.00", occurred_at="2026-11-05T10:00:00+08:00"),
    ]

    outcomes = [decide(member, parse_event(raw), program).outcome.points for raw in events]

    assert outcomes == [0, 200 + 100, 0, 100]  # the first purchase's bonus is not doubled
    assert member.profile["labels"] == frozenset()


# ---------------------------------------------------------------- the command line, before any server


def test_the_commands_refuse_missing_or_out_of_range_options_before_connecting():
    runner = CliRunner()
    nothing = runner.invoke(app, ["member", "label", "M1"])
    too_many = runner.invoke(app, ["member", "list", "--limit", "501"])

    assert (nothing.exit_code, nothing.output) == (2, "error: give --add LABEL or --remove LABEL (each repeatable)\n")
    assert (too_many.exit_code, too_many.output) == (2, "error: --limit: must be from 1 to 500\n")
