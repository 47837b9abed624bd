"""`loyalty member adjust`: an operator's goodwill credit or debit of a member's points."""

from __future__ import annotations

import typer

from worker.cli.common import emit_json, fail, run, settings, timeline

HELP = (
    "Credit (+500) or debit (-200) the member's points, with the reason and who made it; a credit is a lot of its "
    "own (expiring on --expires-on, or by the program's rule), a debit takes the earliest-expiring points first. "
    "Exit 1 when refused or the member is unknown, 2 for bad input."
)
# A negative POINTS (-200) is an argument, not an option.
CONTEXT = {"ignore_unknown_options": True}


def member_adjust(
    member_id: str = typer.Argument(..., help="The member id."),
    points: str = typer.Argument(..., help="Signed points: +500 credits, -200 debits."),
    reason: str | None = typer.Option(None, "--reason", help="Why; recorded with the entry (required)."),
    by: str | None = typer.Option(None, "--by", help="Who makes it; default: $USER."),
    expires_on: str | None = typer.Option(
        None,
        "--expires-on",
        help="A credit's expiry day, YYYY-MM-DD in the program's time zone (its points last "
        "until that day starts); default: the program's expiry rule.",
    ),
    qualifying: bool = typer.Option(False, "--qualifying", help="Count the points towards tiers."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable JSON on standard output."),
) -> None:
    import os

    from worker import logs
    from worker.domain.errors import UnknownMember
    from worker.runtime import utc_now
    from worker.services.adjustments import Adjustment, AdjustmentRefused, adjust_now

    logs.configure()  # to standard error: standard output is the command's answer
    try:
        signed = int(points)
    except ValueError:
        fail(f"points: {points!r} is not a whole number of points such as +500 or -200")
    s = settings()
    programs = timeline(s)
    now = utc_now()
    asked = Adjustment(
        member_id,
        signed,
        reason,
        by or os.environ.get("USER") or "unknown",
        expires_on=expires_on,
        qualifying=qualifying,
    )
    try:
        done = run(lambda engine: adjust_now(engine, programs, asked, source="cli", now=now), s)
    except UnknownMember as error:
        fail(str(error), code=1)
    except AdjustmentRefused as error:
        fail(error.detail, code=2 if error.kind == "invalid" else 1)
    if as_json:
        emit_json(done)
        return
    typer.echo(f"member {member_id}: {describe(done, programs.at(now).zone)}; available {done['available_points']}")


def describe(done: dict, zone) -> str:
    """`+500 (entry 41, lot 17 expiring on 2027-03-31) by alice: complaint 8812`."""
    from datetime import datetime

    def day(at: str) -> str:
        return str(datetime.fromisoformat(at).astimezone(zone).date())

    if done["lot"] is not None:
        where = f"lot {done['lot']['lot_id']} expiring on {day(done['lot']['expires_at'])}"
    else:
        where = "taken from " + ", ".join(f"lot {t['lot_id']} ({t['points']})" for t in done["taken"])
    qualifying = ", qualifying" if done["qualifying_points"] else ""
    return f"{done['points']:+d} (entry {done['entry_id']}, {where}{qualifying}) by {done['by']}: {done['reason']}"
