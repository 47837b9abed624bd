"""Which version decides an event: the one in force at its occurred_at, whenever it is
processed. Plain labels stand in for programs; `now` is passed, never read."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from worker.domain.program import DEFAULT_PROGRAM
from worker.domain.program_timeline import ProgramTimeline, Start, timeline_of, version_at

DAY = timedelta(days=1)
D1 = datetime(2026, 12, 1, tzinfo=UTC)
D10, D12 = D1 + 9 * DAY, D1 + 11 * DAY
V1, V2, V3 = (Start(at, D1, name, name) for at, name in ((D1, "V1"), (D10, "V2-double"), (D12, "V3")))


def test_version_at_is_the_latest_start_at_or_before_the_time():
    starts = [D1, D10, D12]

    assert version_at(starts, D1 - timedelta(microseconds=1)) is None
    assert version_at(starts, D1) == 0
    assert version_at(starts, D10 - timedelta(microseconds=1)) == 0
    assert version_at(starts, D10) == 1
    assert version_at(starts, D12 + 30 * DAY) == 2
    assert version_at([], D1) is None


def test_a_purchase_of_the_11th_uploaded_on_the_13th_goes_by_the_campaign_of_the_11th():
    timeline = ProgramTimeline.build([V3, V1, V2], "file", now=D12 + DAY)

    assert timeline.at(D1 + 10 * DAY + timedelta(hours=10)) == "V2-double"
    assert [timeline.at(D1 + d * DAY) for d in (0, 8, 9, 10, 11, 30)] == [
        "V1",
        "V1",
        "V2-double",
        "V2-double",
        "V3",
        "V3",
    ]


def test_the_choice_does_not_depend_on_when_the_timeline_was_read_once_the_first_version_started():
    events = [D1 + d * DAY + timedelta(hours=h) for d in range(15) for h in (0, 13)]
    read_on_the_11th = ProgramTimeline.build([V1, V2, V3], "file", now=D1 + 10 * DAY)
    read_a_month_later = ProgramTimeline.build([V1, V2, V3], "file", now=D1 + 40 * DAY)

    assert [read_on_the_11th.at(t) for t in events] == [read_a_month_later.at(t) for t in events]


def test_before_the_first_start_the_first_version_decides_once_it_has_started():
    timeline = ProgramTimeline.build([V2, V3], "file", now=D10)

    assert timeline.at(D1) == "V2-double"


def test_before_any_version_has_started_the_process_program_decides_what_is_dated_before_them():
    timeline = ProgramTimeline.build([V2, V3], "file", now=D10 - timedelta(seconds=1))

    # A till whose clock runs ahead sends an event dated after the start: the version decides it.
    assert (timeline.at(D1), timeline.at(D10 - timedelta(seconds=2)), timeline.at(D10)) == ("file", "file", "V2-double")


def test_with_no_versions_the_process_program_decides_everything():
    timeline = ProgramTimeline.build([], "file", now=D12)

    assert (timeline.at(D1), timeline.at(D12 + 365 * DAY)) == ("file", "file")


def test_two_versions_with_one_start_the_one_published_last_wins():
    earlier = Start(D10, D1, "v-a", "published first")
    later = Start(D10, D1 + timedelta(hours=1), "v-0", "published last")

    timeline = ProgramTimeline.build([later, earlier, V1], "file", now=D12)

    assert (timeline.starts, timeline.at(D10)) == ((D1, D10), "published last")


def test_a_single_program_decides_every_time_and_keeps_its_grouping_key():
    one, again = timeline_of(DEFAULT_PROGRAM), timeline_of(DEFAULT_PROGRAM)

    assert one.at(D1) is DEFAULT_PROGRAM and one.at(D12 + 365 * DAY) is DEFAULT_PROGRAM
    assert timeline_of(one) is one
    assert one.key == again.key
    assert one.key != ProgramTimeline.build([V1], DEFAULT_PROGRAM, now=D12).key
