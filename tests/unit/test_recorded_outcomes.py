"""An event's recorded outcome made the ledger's after a re-evaluation: pure, on plain data."""

from __future__ import annotations

from worker.domain.reevaluation import Recorded, outcome_updates


def recorded(event_id: str, event_type: str, status: str, result: dict | None, source: str = "pos") -> Recorded:
    return Recorded((source, event_id), (source, event_id), event_type, status, result)


def test_a_deferred_refund_the_replay_applied_reads_applied_with_its_negative_points_and_no_waiting_note():
    refund = recorded("f-1", "refund", "deferred", {"points": 0, "note": "refund.waiting_for_purchase"})

    updates = outcome_updates([refund], {("pos", "f-1"): {"refund": -200}}, waiting=set())

    assert updates == [{"source": "pos", "event_id": "f-1", "status": "applied", "result": {"points": -200}}]


def test_an_applied_review_that_earned_nothing_loses_its_waiting_note_too():
    review = recorded("v-1", "review", "deferred", {"points": 0, "note": "review.waiting_for_purchase"})

    assert outcome_updates([review], {}, waiting=set()) == [
        {"source": "pos", "event_id": "v-1", "status": "applied", "result": {"points": 0}}
    ]


def test_a_corrected_event_reads_its_net_points_and_keeps_the_rest_of_its_result():
    # Given a purchase recorded with 900 (800 and the first-purchase bonus) and its lot
    purchase = recorded("p-2", "purchase", "applied", {"points": 900, "lot_id": 7})

    # When an earlier purchase took the bonus: the ledger now has 800 for it
    updates = outcome_updates([purchase], {("pos", "p-2"): {"purchase": 800, "first_purchase": 0}}, waiting=set())

    assert updates == [
        {"source": "pos", "event_id": "p-2", "status": "applied", "result": {"points": 800, "lot_id": 7}}
    ]


def test_an_event_that_now_earns_loses_its_reason_for_earning_nothing_and_one_that_still_earns_nothing_keeps_it():
    duplicate_order = recorded("p-1", "purchase", "applied", {"points": 0, "note": "purchase.order_already_earned"})
    capped = recorded("c-1", "check_in", "applied", {"points": 0, "note": "check_in.daily_cap"})

    updates = outcome_updates([duplicate_order, capped], {("pos", "p-1"): {"purchase": 350}}, waiting=set())

    assert updates == [{"source": "pos", "event_id": "p-1", "status": "applied", "result": {"points": 350}}]


def test_a_refund_still_waiting_and_an_event_recorded_as_the_ledger_has_it_are_left_alone():
    waiting = recorded("f-2", "refund", "deferred", {"points": 0, "note": "refund.waiting_for_purchase"})
    unchanged = recorded("p-3", "purchase", "applied", {"points": 120, "lot_id": 3})
    silent = recorded("c-2", "check_in", "applied", None)  # nothing to say: no result at all

    updates = outcome_updates(
        [waiting, unchanged, silent], {("pos", "p-3"): {"purchase": 120}}, waiting={("pos", "f-2")}
    )

    assert updates == []


def test_an_event_claimed_under_another_key_than_its_entries_name_is_found_by_the_entries_key():
    # A referee bonus is claimed as `app:referee` but its entries name the referral (app, r-1).
    bonus = Recorded(("app:referee", "r-1"), ("app", "r-1"), "referral_referee", "applied", {"points": 100})

    updates = outcome_updates([bonus], {("app", "r-1"): {"referral_referee": 0}}, waiting=set())

    assert updates == [{"source": "app:referee", "event_id": "r-1", "status": "applied", "result": {"points": 0}}]


def test_an_event_the_replay_leaves_waiting_reads_deferred_with_the_waiting_note():
    refund = recorded("f-3", "refund", "applied", {"points": -50})

    updates = outcome_updates([refund], {}, waiting={("pos", "f-3")})

    assert updates == [
        {
            "source": "pos",
            "event_id": "f-3",
            "status": "deferred",
            "result": {"points": 0, "note": "refund.waiting_for_purchase"},
        }
    ]
