"""The `adjustment` decider and contract on plain data: an operator's credit or debit, who and
why in its provenance, refused beyond the spendable points, qualifying only when asked."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from tests import factories as f
from worker.domain.deciders import decide
from worker.domain.decisions import Adjust, Decision, MemberState, Origin, Outcome
from worker.domain.errors import InvalidEvent
from worker.domain.events import check_against_program, parse_event
from worker.domain.explain import describe_rule
from worker.domain.messages import render
from worker.domain.program import DEFAULT_PROGRAM as P
from worker.domain.reevaluation import Recorded, outcome_updates

SHANGHAI = ZoneInfo("Asia/Shanghai")
AT = "2026-11-20T15:30:00+08:00"


def state(spendable: int | None = None, qualifying: int = 0) -> MemberState:
    return MemberState(
        member_id="M1",
        tier="Regular",
        qualifying=qualifying,
        qualifying_amount=Decimal(0),
        profile={"birthday": None, "locale": None, "signed_up_at": None, "first_purchase_at": None},
        rule_state={},
        spendable=spendable,
    )


def adjustment(points, reason="complaint 8812", by="alice", event_id="adj-1", **payload):
    raw = f.event("adjustment", "M1", AT, source="crm", event_id=event_id, points=points, reason=reason, by=by)
    raw["payload"].update(payload)
    return parse_event(raw)


def rule(points, expires_on=None, qualifying=False, reason="complaint 8812", by="alice"):
    return {
        "rule": "adjustment",
        "points": points,
        "reason": reason,
        "by": by,
        "qualifying": qualifying,
        "expires_on": expires_on,
    }


def test_a_credit_is_a_lot_expiring_at_the_start_of_expires_on_in_the_program_zone():
    event = adjustment(500, expires_on="2027-03-31")
    member = state(spendable=560)

    decision = decide(member, event, P)

    expires_at = datetime(2027, 3, 31, tzinfo=SHANGHAI)
    assert decision == Decision(
        Outcome("applied", 500), [Adjust(Origin.of(event), 500, 0, expires_at, (rule(500, "2027-03-31"),))]
    )
    assert expires_at.astimezone(UTC) == datetime(2027, 3, 30, 16, 0, tzinfo=UTC)
    assert (member.qualifying, member.spendable) == (0, 1060)


def test_a_credit_without_expires_on_expires_by_the_program_rule():
    event = adjustment(300)

    [step] = decide(state(), event, P).steps

    assert step.expires_at == event.occurred_at + timedelta(days=365)
    assert step.expires_at == datetime(2027, 11, 20, 15, 30, tzinfo=SHANGHAI)


def test_a_debit_within_the_spendable_points_has_no_expiry_and_moves_them_on():
    event = adjustment(-200)
    member = state(spendable=560)

    decision = decide(member, event, P)

    assert decision == Decision(Outcome("applied", -200), [Adjust(Origin.of(event), -200, 0, None, (rule(-200),))])
    assert member.spendable == 360


def test_a_debit_of_exactly_the_spendable_points_is_taken_one_more_is_refused():
    assert decide(state(spendable=560), adjustment(-560), P).outcome == Outcome("applied", -560)
    member = state(spendable=560, qualifying=40)

    with pytest.raises(InvalidEvent) as refused:
        decide(member, adjustment(-800), P)

    assert refused.value.reason == "payload.points: 800 requested but 560 available"
    assert (member.spendable, member.qualifying) == (560, 40)


def test_a_re_evaluation_replays_an_applied_debit_without_knowing_the_balance():
    member = state(spendable=None, qualifying=1000)

    decision = decide(member, adjustment(-800, qualifying=True), P)

    assert decision.outcome == Outcome("applied", -800)
    assert member.qualifying == 200


def test_qualifying_points_only_when_asked():
    plain, counted = state(qualifying=900), state(qualifying=900)

    [not_counted] = decide(plain, adjustment(500), P).steps
    [counted_step] = decide(counted, adjustment(500, qualifying=True), P).steps

    assert (not_counted.qualifying, plain.qualifying) == (0, 900)
    assert (counted_step.qualifying, counted.qualifying) == (500, 1400)
    assert counted_step.rules == (rule(500, qualifying=True),)


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        ({"points": 0}, "payload.points: must not be 0: give a credit (+500) or a debit (-200)"),
        ({"points": "500"}, "payload.points: must be a valid integer"),
        ({"points": 100_000_001}, "payload.points: must be less than or equal to 100000000"),
        ({"reason": None}, "payload.reason: is required"),
        ({"reason": "   "}, "payload.reason: is required"),
        ({"by": ""}, "payload.by: is required"),
        ({"expires_on": "31/03/2027"}, "payload.expires_on: must be a calendar date as YYYY-MM-DD, e.g. 1990-05-20"),
        ({"points": -5, "expires_on": "2027-03-31"}, "payload.expires_on: goes with a credit (positive points) only"),
        ({"qualifying": "yes"}, "payload.qualifying: must be a valid boolean"),
    ],
)
def test_the_contract_names_the_field(payload, reason):
    raw = f.event("adjustment", "M1", AT, source="crm", points=500, reason="goodwill", by="alice")
    raw["payload"].update(payload)
    raw["payload"] = {k: v for k, v in raw["payload"].items() if v is not None}

    with pytest.raises(InvalidEvent) as refused:
        parse_event(raw)

    assert refused.value.reason == reason


def test_expires_on_must_be_after_the_adjustment_s_program_local_day():
    now = datetime(2026, 11, 24, tzinfo=UTC)
    check_against_program(adjustment(5, expires_on="2026-11-21"), P, now)

    with pytest.raises(InvalidEvent) as refused:
        check_against_program(adjustment(5, expires_on="2026-11-20"), P, now)

    assert refused.value.reason == "payload.expires_on: 2026-11-20 must be after 2026-11-20"


def test_history_says_who_and_why():
    assert describe_rule(rule(500, "2027-03-31", qualifying=True)) == (
        "adjustment +500 by alice: complaint 8812 (expires on 2027-03-31, qualifying)"
    )
    assert describe_rule(rule(-200)) == "adjustment -200 by alice: complaint 8812"


def test_an_adjustment_keeps_its_recorded_outcome_through_a_re_evaluation():
    recorded = Recorded(("crm", "adj-1"), ("crm", "adj-1"), "adjustment", "applied", {"points": 500, "lot_id": 7})

    assert outcome_updates([recorded], {}, waiting=set()) == []


def test_the_operator_s_notification_text_is_not_the_re_evaluation_s():
    params = {"points": "+500", "available_points": 1060}

    assert render("points_adjusted", {**params, "operator": True}, "en") == (
        "Your points were adjusted: +500. Available balance: 1060."
    )
    assert render("points_adjusted", params, "en").startswith("Your points were recalculated after")
    pending = render("points_earned", {"points": 5, "available_points": 5, "pending": True}, "en")
    assert "they become available when the return window closes" in pending
