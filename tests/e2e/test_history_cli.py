"""`member history` explains each entry: the rules' inputs, occurrence order, program-local time."""

from __future__ import annotations

from tests.e2e.test_cli import clean, line, loyalty  # noqa: F401  (clean is a fixture)


def test_history_explains_entries_in_occurrence_order_and_local_time(clean, tmp_path):  # noqa: F811
    env = clean
    events = tmp_path / "events.jsonl"
    # Sent out of order: the later check-in is processed first; the earlier one earns nothing
    # as it arrives, and then its 10 points in its place in occurrence order.
    events.write_text(
        "\n".join(
            [
                line(
                    event_id="c-2",
                    type="check_in",
                    member_id="M1",
                    source="app",
                    occurred_at="2026-11-09T09:00:00+08:00",
                ),
                line(
                    event_id="p-1",
                    type="purchase",
                    member_id="M1",
                    occurred_at="2026-11-08T23:30:00+08:00",
                    payload={"order_id": "o-1", "amount": "1299.00", "currency": "CNY"},
                ),
                line(
                    event_id="c-1",
                    type="check_in",
                    member_id="M1",
                    source="app",
                    occurred_at="2026-11-08T08:00:00+08:00",
                ),
            ]
        )
        + "\n"
    )
    assert loyalty(env, "db", "upgrade").returncode == 0
    assert loyalty(env, "publish", str(events)).returncode == 0
    assert loyalty(env, "drain", "--timeout", "60", "--threads", "1").returncode == 0

    text = loyalty(env, "member", "history", "M1")
    everything = loyalty(env, "member", "history", "M1", "--all")

    assert text.returncode == 0, text.stderr
    assert text.stdout.splitlines() == [
        "2026-11-08 08:00  earn         +10  check_in   check_in +10 (check_in c-1 re-earned in its place in "
        "occurrence order: +10)",
        "2026-11-08 23:30  earn       +2698  purchase   1299.00 x1.0 (Regular) x2 (member_day) = 2598; first_purchase 100",
        "2026-11-09 09:00  earn         +10  check_in   check_in 10",
    ]
    # No zero-point row: the check-in earned in its place, so its first outcome is superseded.
    assert everything.stdout.splitlines() == text.stdout.splitlines()


def test_history_of_an_unknown_member_is_an_error(clean):  # noqa: F811
    assert loyalty(clean, "db", "upgrade").returncode == 0

    done = loyalty(clean, "member", "history", "NOBODY")

    assert (done.returncode, done.stdout, done.stderr) == (1, "", "error: no member 'NOBODY'\n")
