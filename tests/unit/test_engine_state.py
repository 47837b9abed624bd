"""Limits per period, streaks, missions and activity events: the rule state they keep."""

from __future__ import annotations

import itertools
import json
from datetime import timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.unit.engine_programs import UTC, at, event, points, program, purchase, replay, run
from worker.domain.engine import EventData, Member, evaluate, open_missions, outcome_note, validate_state
from worker.domain.errors import RuleStateError


def limited(limit: str, on: str = "review", fixed: int = 20) -> str:
    return (
        f'[[rules]]\nid = "capped"\non = "{on}"\neffect = {{ kind = "fixed", points = {fixed} }}\nlimits = [{limit}]\n'
    )


def test_count_per_local_day_resets_at_local_midnight_not_utc():
    prog = program(limited('{ per = "day", count = 2 }'))
    # 15:59 UTC is 23:59 in Shanghai; 16:01 UTC is the next local day.
    events = [
        event("review", at(2026, 11, 24, 15, 0, zone=UTC)),
        event("review", at(2026, 11, 24, 15, 30, zone=UTC)),
        event("review", at(2026, 11, 24, 15, 59, zone=UTC)),
        event("review", at(2026, 11, 24, 16, 1, zone=UTC)),
    ]

    assert replay(prog, events) == [{"capped": 20}, {"capped": 20}, {}, {"capped": 20}]


def test_the_limit_state_is_keyed_by_rule_and_period():
    prog = program(limited('{ per = "day", count = 3 }'))

    first = run(prog, event("review", at(2026, 11, 24, 9)))
    assert first.state == {"capped": {"day:2026-11-24": {"count": 1, "points": 20}}}
    assert json.loads(json.dumps(first.state)) == first.state
    second = run(prog, event("review", at(2026, 11, 24, 10)), Member(tier="Regular", state=first.state))
    assert second.state == {"capped": {"day:2026-11-24": {"count": 2, "points": 40}}}
    assert first.state == {"capped": {"day:2026-11-24": {"count": 1, "points": 20}}}  # not mutated


def test_count_per_iso_week_starts_on_monday():
    prog = program(limited('{ per = "week", count = 1 }'))
    # Sunday 29 November, then Monday 30 November (a new ISO week), then Sunday 6 December.
    events = [
        event("review", at(2026, 11, 28)),
        event("review", at(2026, 11, 29, 23, 59)),
        event("review", at(2026, 11, 30, 0, 1)),
        event("review", at(2026, 12, 6)),
    ]

    assert replay(prog, events) == [{"capped": 20}, {}, {"capped": 20}, {}]


def test_iso_week_across_the_new_year():
    prog = program(limited('{ per = "week", count = 1 }'))
    events = [event("review", at(2026, 12, 31)), event("review", at(2027, 1, 3)), event("review", at(2027, 1, 4))]

    assert replay(prog, events) == [{"capped": 20}, {}, {"capped": 20}]


def test_count_per_month_and_per_year_at_their_local_boundaries():
    month = program(limited('{ per = "month", count = 1 }'))
    year = program(limited('{ per = "year", count = 1 }'))
    # 31 December 16:30 UTC is already 1 January in Shanghai.
    events = [
        event("review", at(2026, 12, 1)),
        event("review", at(2026, 12, 31, 15, 59, zone=UTC)),
        event("review", at(2026, 12, 31, 16, 30, zone=UTC)),
    ]

    assert replay(month, events) == [{"capped": 20}, {}, {"capped": 20}]
    assert replay(year, events) == [{"capped": 20}, {}, {"capped": 20}]


def test_points_per_period_cap_clips_the_award():
    prog = program(
        '[[rules]]\nid = "earn"\non = "purchase"\neffect = { kind = "per_amount" }\n'
        'limits = [{ per = "day", points = 150 }]\n'
    )
    events = [
        purchase("100.00", when=at(2026, 11, 2, 9)),
        purchase("100.00", when=at(2026, 11, 2, 10)),
        purchase("100.00", when=at(2026, 11, 2, 11)),
        purchase("100.00", when=at(2026, 11, 3, 9)),
    ]

    assert replay(prog, events) == [{"earn": 100}, {"earn": 50}, {}, {"earn": 100}]


def test_count_ever_gives_once():
    prog = program(limited('{ per = "ever", count = 1 }', on="signup", fixed=50))

    assert replay(prog, [event("signup"), event("signup", at(2027, 5, 1))]) == [{"capped": 50}, {}]


def test_several_limits_on_one_rule_all_hold():
    prog = program(limited('{ per = "day", count = 2 }, { per = "week", count = 3 }'))
    days = [at(2026, 11, 2, 9), at(2026, 11, 2, 10), at(2026, 11, 2, 11), at(2026, 11, 3), at(2026, 11, 4)]

    assert replay(prog, [event("review", d) for d in days]) == [{"capped": 20}, {"capped": 20}, {}, {"capped": 20}, {}]


def test_old_day_counters_are_pruned_and_very_late_events_refused():
    prog = program(limited('{ per = "day", count = 1 }'))
    state: dict = {}
    for day in range(1, 13):
        state = run(prog, event("review", at(2026, 11, day)), Member(tier="Regular", state=state)).state

    assert sorted(state["capped"]) == [f"day:2026-11-{d:02d}" for d in range(5, 13)]
    late = run(prog, event("review", at(2026, 11, 1)), Member(tier="Regular", state=state))
    assert late.awards == ()
    assert "older than the periods kept" in late.trace[0].reason


STREAK = """
[[rules]]
id = "check_in"
on = "check_in"
streak = { restart_after = 3 }
effect = { kind = "fixed", points = 10 }
[[rules]]
id = "streak_bonus"
on = "check_in"
when = { streak = { rule = "check_in", day = 3 } }
effect = { kind = "fixed", points = 50 }
"""


def test_streak_bonus_on_the_nth_consecutive_day_then_the_streak_restarts():
    prog = program(STREAK)
    days = [at(2026, 11, d) for d in (1, 2, 3, 4, 5, 6)]

    assert replay(prog, [event("check_in", d) for d in days]) == [
        {"check_in": 10},
        {"check_in": 10},
        {"check_in": 10, "streak_bonus": 50},
        {"check_in": 10},
        {"check_in": 10},
        {"check_in": 10, "streak_bonus": 50},
    ]


def test_a_missed_day_restarts_the_streak_and_a_day_counts_once():
    prog = program(STREAK)
    days = [
        at(2026, 11, 1),
        at(2026, 11, 2),
        at(2026, 11, 2, 20),
        at(2026, 11, 4),
        at(2026, 11, 5),
        at(2026, 11, 6),
        at(2026, 11, 3),
    ]

    assert replay(prog, [event("check_in", d) for d in days]) == [
        {"check_in": 10},
        {"check_in": 10},
        {},
        {"check_in": 10},
        {"check_in": 10},
        {"check_in": 10, "streak_bonus": 50},
        {},
    ]  # an earlier day after a later one counts nothing


def test_streak_state_shape():
    result = run(program(STREAK), event("check_in", at(2026, 11, 1)))

    assert result.state == {"check_in": {"streak": {"last_on": "2026-11-01", "days": 1}}}


def test_streak_every_nth_day_without_restart_on_any_event_type():
    prog = program("""
[[rules]]
id = "daily_buyer"
on = "purchase"
streak = {}
effect = { kind = "fixed", points = 0 }
[[rules]]
id = "weekly_buyer_bonus"
on = "purchase"
when = { streak = { rule = "daily_buyer", every = 2 } }
effect = { kind = "fixed", points = 5 }
""")
    got = replay(prog, [purchase("1.00", when=at(2026, 11, d)) for d in (1, 2, 3, 4)])

    assert [r.get("weekly_buyer_bonus", 0) for r in got] == [0, 5, 0, 5]


MISSION = """
[[rules]]
id = "welcome"
effect = { kind = "fixed", points = 300 }
mission = { within_days = 7, steps = [
  { name = "signup", on = "signup" },
  { name = "first_check_in", on = "check_in" },
  { name = "first_purchase", on = "purchase" },
] }
"""


def test_mission_completed_inside_its_window():
    prog = program(MISSION)
    events = [
        event("signup", at(2026, 11, 1, 10)),
        event("purchase", at(2026, 11, 3), amount="10.00"),
        event("purchase", at(2026, 11, 4), amount="10.00"),
        event("check_in", at(2026, 11, 8, 9, 59)),
    ]

    assert replay(prog, events) == [{}, {}, {}, {"welcome": 300}]


def test_mission_outside_its_window_expires_and_never_pays():
    prog = program(MISSION)
    events = [
        event("signup", at(2026, 11, 1, 10)),
        event("check_in", at(2026, 11, 2)),
        event("purchase", at(2026, 11, 8, 10, 1), amount="10.00"),
        event("purchase", at(2026, 11, 9), amount="1"),
    ]
    state: dict = {}
    reasons = []
    for ev in events:
        result = run(prog, ev, Member(tier="Regular", state=state))
        assert result.awards == ()
        state = result.state
        reasons.append(result.trace[0].reason)

    assert state["welcome"]["mission"]["status"] == "expired"
    assert reasons[1] == "mission step 'first_check_in' done (2 of 3)"
    assert reasons[2].startswith("mission window of 7 days closed")
    assert reasons[3] == "mission already expired"


def test_mission_starts_with_whichever_step_comes_first_and_pays_once():
    prog = program(MISSION)
    events = [
        event("check_in", at(2026, 11, 1)),
        event("signup", at(2026, 11, 2)),
        event("check_in", at(2026, 11, 3)),
        event("purchase", at(2026, 11, 4), amount="5"),
        event("purchase", at(2026, 11, 5), amount="5"),
    ]

    assert replay(prog, events) == [{}, {}, {}, {"welcome": 300}, {}]
    first = run(prog, events[0])
    assert first.trace[0].reason == "mission step 'first_check_in' done (1 of 3)"
    assert first.state["welcome"]["mission"] == {
        "started_at": "2026-11-01T12:00:00+08:00",
        "done": ["first_check_in"],
        "status": "open",
    }


STEP_EVENTS = {
    "signup": lambda when: event("signup", when),
    "first_check_in": lambda when: event("check_in", when),
    "first_purchase": lambda when: event("purchase", when, amount="10.00"),
}


@pytest.mark.parametrize("order", list(itertools.permutations(STEP_EVENTS)), ids="-".join)
def test_mission_completes_in_every_order_of_its_steps(order):
    prog = program(MISSION)
    events = [STEP_EVENTS[step](at(2026, 11, 1 + day)) for day, step in enumerate(order)]
    state: dict = {}
    reasons = []
    for ev in events[:-1]:
        result = run(prog, ev, Member(tier="Regular", state=state))
        state = result.state
        reasons.append(result.trace[0].reason)

    last = run(prog, events[-1], Member(tier="Regular", state=state))

    assert reasons == [f"mission step {order[0]!r} done (1 of 3)", f"mission step {order[1]!r} done (2 of 3)"]
    assert last.points_by_rule() == {"welcome": 300}
    assert last.state["welcome"]["mission"]["done"] == list(order)
    assert last.state["welcome"]["mission"]["status"] == "completed"
    assert replay(prog, events) == [{}, {}, {"welcome": 300}]


def test_mission_step_repeated_counts_once():
    prog = program(MISSION)
    events = [
        event("purchase", at(2026, 11, 1), amount="5"),
        event("purchase", at(2026, 11, 2), amount="5"),
        event("signup", at(2026, 11, 3)),
    ]
    state: dict = {}
    for ev in events:
        result = run(prog, ev, Member(tier="Regular", state=state))
        state = result.state

    assert result.trace[0].reason == "mission step 'signup' done (2 of 3)"
    assert state["welcome"]["mission"]["done"] == ["first_purchase", "signup"]


def test_mission_window_runs_from_whichever_step_came_first():
    prog = program(MISSION)
    events = [
        event("purchase", at(2026, 11, 1, 10), amount="5"),
        event("signup", at(2026, 11, 5)),
        event("check_in", at(2026, 11, 8, 10, 1)),
    ]

    assert replay(prog, events) == [{}, {}, {}]
    state: dict = {}
    for ev in events:
        result = run(prog, ev, Member(tier="Regular", state=state))
        state = result.state
    assert state["welcome"]["mission"]["status"] == "expired"
    assert result.trace[0].reason == "mission window of 7 days closed at 2026-11-08T10:00:00+08:00"


def test_mission_steps_can_have_conditions():
    prog = program(
        MISSION.replace(
            '{ name = "first_purchase", on = "purchase" }',
            '{ name = "first_purchase", on = "purchase", when = { min_amount = "100" } }',
        )
    )
    events = [
        event("signup", at(2026, 11, 1)),
        event("check_in", at(2026, 11, 2)),
        event("purchase", at(2026, 11, 3), amount="99"),
        event("purchase", at(2026, 11, 4), amount="100"),
    ]

    assert replay(prog, events) == [{}, {}, {}, {"welcome": 300}]


ACTIVITY = """
[activity]
kinds = ["watch_live"]
"""
SHARE = """
[[rules]]
id = "share"
on = "activity"
when = { kinds = ["share"] }
effect = { kind = "fixed", points = 5 }
limits = [{ per = "day", count = 3 }]
[[rules]]
id = "live"
on = "activity"
when = { kinds = ["watch_live"], payload = { channel = "spring" } }
effect = { kind = "fixed", points = 8 }
"""


def test_a_share_earns_5_points_at_most_3_a_day():
    prog = program(SHARE, extra=ACTIVITY)
    shares = [event("activity", at(2026, 11, 2, h), kind="share", target="wechat") for h in (9, 10, 11, 12)]

    assert replay(prog, shares + [event("activity", at(2026, 11, 3), kind="share")]) == [
        {"share": 5},
        {"share": 5},
        {"share": 5},
        {},
        {"share": 5},
    ]


def test_activity_kinds_the_program_declares_with_attributes():
    prog = program(SHARE, extra=ACTIVITY)

    assert points(prog, event("activity", kind="watch_live", channel="spring")) == {"live": 8}
    assert points(prog, event("activity", kind="watch_live", channel="autumn")) == {}


def test_when_payload_reads_an_activity_event_s_attributes_as_the_contract_nests_them():
    prog = program(SHARE, extra=ACTIVITY)

    assert points(prog, event("activity", kind="watch_live", attributes={"channel": "spring"})) == {"live": 8}
    assert run(prog, event("activity", kind="watch_live", attributes={})).trace[1].reason == (
        "payload.channel is missing, not 'spring'"
    )


def test_when_payload_values_match_in_type_too():
    prog = program(SHARE.replace('channel = "spring"', "round = 1"), extra=ACTIVITY)

    assert points(prog, event("activity", kind="watch_live", attributes={"round": 1})) == {"live": 8}
    assert run(prog, event("activity", kind="watch_live", attributes={"round": True})).trace[1].reason == (
        "payload.round is True, not 1"
    )
    assert points(prog, event("activity", kind="watch_live", attributes={"round": "1"})) == {}


def test_the_note_of_an_activity_over_its_limit_names_the_limit():
    prog = program(SHARE, extra=ACTIVITY)
    state: dict = {}
    for hour in (9, 10, 11, 12):
        result = evaluate(prog, Member("Regular", state=state), event("activity", at(2026, 11, 2, hour), kind="share"))
        state = result.state

    assert (result.points, outcome_note(result)) == (0, "activity.daily_limit_reached")
    assert outcome_note(run(prog, event("activity", kind="survey"))) == "activity.no_rule_matched"
    assert outcome_note(run(prog, event("activity", kind="dance"))) == "activity.kind_not_declared"


def test_an_undeclared_activity_kind_earns_nothing_and_says_why():
    result = run(program(SHARE, extra=ACTIVITY), event("activity", kind="dance"))

    assert result.awards == ()
    assert {c.reason for c in result.trace} == {"activity kind 'dance' is not declared by the program"}


@pytest.mark.parametrize(
    ("state", "message"),
    [
        ([], "state: must be a mapping of rule id to rule state"),
        (
            {"review": {"day:2026-11-24": {"count": -1}}},
            "state.review.day:2026-11-24.count: must be a non-negative integer",
        ),
        (
            {"review": {"day:2026-11-24": {"count": 1, "extra": 2}}},
            "state.review.day:2026-11-24: may hold only count and points",
        ),
        ({"review": {"fortnight:1": {"count": 1}}}, "state.review.fortnight:1: unknown key"),
        (
            {"check_in": {"streak": {"last_on": "yesterday", "days": 1}}},
            "state.check_in.streak.last_on: must be a date",
        ),
        (
            {"welcome": {"mission": {"started_at": "2026-11-01T10:00:00", "done": [], "status": "open"}}},
            "state.welcome.mission.started_at: must include a UTC offset",
        ),
        (
            {"welcome": {"mission": {"started_at": "2026-11-01T10:00:00+08:00", "done": [], "status": "won"}}},
            "state.welcome.mission.status: must be one of open, completed, expired",
        ),
    ],
)
def test_rule_state_is_validated_naming_the_key(state, message):
    with pytest.raises(RuleStateError) as error:
        validate_state(state)

    assert str(error.value).startswith(message)


def test_evaluate_refuses_malformed_state():
    with pytest.raises(RuleStateError):
        run(program(STREAK), event("check_in"), Member(tier="Regular", state={"check_in": {"streak": {"days": 1}}}))


def test_all_state_kinds_round_trip_through_json():
    prog = program(STREAK + MISSION + limited('{ per = "week", count = 5 }'))
    state: dict = {}
    for ev in (event("check_in", at(2026, 11, 1)), event("signup", at(2026, 11, 1)), event("review", at(2026, 11, 1))):
        state = run(prog, ev, Member(tier="Regular", state=state)).state

    assert validate_state(json.loads(json.dumps(state))) == state
    assert set(state) == {"check_in", "welcome", "capped"}


def test_event_local_time_can_be_given_by_the_caller():
    prog = program(limited('{ per = "day", count = 1 }'))
    given = EventData("review", "app", at(2026, 11, 2, 1, 0), {}, local_at=at(2026, 11, 1, 23, 0))

    assert run(prog, given).state == {"capped": {"day:2026-11-01": {"count": 1, "points": 20}}}


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 40), st.integers(0, 23), st.sampled_from(["10.00", "35.50", "99.99"])),
        min_size=1,
        max_size=30,
    ),
    st.integers(1, 3),
    st.integers(20, 120),
)
def test_limits_hold_for_any_sequence_of_events(steps, per_day, weekly_points):
    prog = program(
        '[[rules]]\nid = "earn"\non = "purchase"\neffect = { kind = "per_amount" }\n'
        f'limits = [{{ per = "day", count = {per_day} }}, {{ per = "week", points = {weekly_points} }}]\n'
    )
    steps = sorted(steps)
    events = [purchase(amount, when=at(2026, 11, 1, hour) + timedelta(days=day)) for day, hour, amount in steps]
    by_day: dict = {}
    by_week: dict = {}
    for ev, got in zip(events, replay(prog, events), strict=True):
        local = ev.occurred_at.date()
        by_day[local] = by_day.get(local, 0) + (1 if got else 0)
        week = local.isocalendar()[:2]
        by_week[week] = by_week.get(week, 0) + got.get("earn", 0)

    assert max(by_day.values()) <= per_day
    assert max(by_week.values()) <= weekly_points


def test_open_missions_show_progress_and_leave_out_finished_ones():
    prog = program(MISSION + MISSION.replace('id = "welcome"', 'id = "second"'))
    started = {"started_at": "2026-11-01T10:00:00+08:00", "done": ["first_purchase"], "status": "open"}

    assert open_missions(prog, {"welcome": {"mission": started}}, at(2026, 11, 3)) == [
        {
            "rule": "welcome",
            "description": "",
            "steps_done": 1,
            "steps_total": 3,
            "done": ["first_purchase"],
            "remaining": ["signup", "first_check_in"],
            "started_at": "2026-11-01T10:00:00+08:00",
            "ends_at": "2026-11-08T10:00:00+08:00",
        },
        {
            "rule": "second",
            "description": "",
            "steps_done": 0,
            "steps_total": 3,
            "done": [],
            "remaining": ["signup", "first_check_in", "first_purchase"],
            "started_at": None,
            "ends_at": None,
        },
    ]
    # Past its window (not yet marked expired), completed or expired: not open.
    assert [m["rule"] for m in open_missions(prog, {"welcome": {"mission": started}}, at(2026, 11, 8, 10, 1))] == [
        "second"
    ]
    for status in ("completed", "expired"):
        state = {"welcome": {"mission": {**started, "status": status}}}
        assert [m["rule"] for m in open_missions(prog, state, at(2026, 11, 3))] == ["second"]
