"""scheduler: run the calendar, list its jobs, fire one by hand."""

from __future__ import annotations

import os
from datetime import datetime, timedelta

import typer

from worker.cli.common import emit_json, fail, parse_time, program, settings


def register(app: typer.Typer) -> None:
    scheduler_app = typer.Typer(
        help="Calendar jobs: expiry, warnings, pending release, birthdays, member days, tier review."
    )
    app.add_typer(scheduler_app, name="scheduler")
    scheduler_app.callback(invoke_without_command=True)(scheduler_main)
    scheduler_app.command("jobs", help="List the jobs, whether enabled, and their next run times.")(scheduler_jobs)
    scheduler_app.command("run", help="Enqueue one firing of JOB now (or for --now); `loyalty drain` processes it.")(
        scheduler_run
    )


def scheduler_main(ctx: typer.Context) -> None:
    """Run the schedule (the default when no sub-command is given)."""
    if ctx.invoked_subcommand is not None:
        return
    import redis

    from scheduler.runner import Scheduler, redis_claim
    from worker import logs, metrics
    from worker.broker import build_broker
    from worker.preflight import METRICS_PORT_HINT, PreflightError, bind_port, check_files, check_servers, check_urls
    from worker.runtime import programs_in_thread, utc_now

    logs.configure()
    s = settings()
    try:
        check_urls(s)
        prog = check_files(s)
        check_servers(s)
    except PreflightError as error:
        fail(str(error), code=error.code)
    # The calendar of the published version in force, followed as versions are published; with
    # the database out of reach later on, the scheduler keeps the version it has and keeps trying.
    programs = programs_in_thread(s, prog)
    broker = build_broker(s)
    plan = broker.get_actor("plan_job")
    dispatch = (
        broker.get_actor("dispatch_notifications") if "dispatch_notifications" in broker.get_declared_actors() else None
    )
    try:
        runner = Scheduler(
            programs.program,
            plan.send,
            redis_claim(redis.Redis.from_url(s.redis_url), s.namespace),
            utc_now,
            send_dispatch=dispatch.send if dispatch else None,
            program_source=lambda: programs.program,
            follow_s=s.program_reload_s,
        )
    except ValueError as error:
        fail(str(error))
    # Only when asked for: a scheduler beside a worker on one host would take its port.
    port = os.environ.get("LOYALTY_METRICS_PORT", "")
    if port not in ("", "0"):
        try:
            bind_port(
                int(port),
                lambda: metrics.serve_in_process(int(port), host=os.environ.get("LOYALTY_METRICS_HOST", "0.0.0.0")),
                "metrics port",
                METRICS_PORT_HINT,
            )
        except PreflightError as error:
            fail(str(error), code=error.code)
    runner.run()


def _parse_now(now: str | None) -> datetime:
    from worker.runtime import utc_now

    if now is None:
        return utc_now()
    return parse_time(now, "--now")


def scheduler_jobs(
    as_json: bool = typer.Option(False, "--json", help="Machine-readable JSON on standard output."),
) -> None:
    from scheduler.schedule import job_specs, next_fire_time
    from worker.runtime import utc_now

    prog = program(settings())
    try:
        specs = job_specs(prog)
    except ValueError as error:
        fail(str(error))
    now = utc_now().astimezone(prog.zone)
    rows = [
        {
            "job": s.name,
            "enabled": s.enabled,
            "cron": s.cron,
            "next_run_at": next_fire_time(s.trigger, now).isoformat() if s.enabled else None,
        }
        for s in specs
    ]
    if as_json:
        emit_json(rows)
        return
    for r in rows:
        typer.echo(f"{r['job']:<16} {'on ' if r['enabled'] else 'off'}  {r['cron']:<14} {r['next_run_at'] or '-'}")


# What a firing does, said before it is enqueued for a time far from now.
JOB_EFFECTS = {
    "expire-points": "expire every lot whose expiry is before then, taking those points from members",
    "expiry-warnings": "warn members of points expiring within the warning window after then",
    "release-pending": "make available every pending purchase whose return window closed before then",
    "birthday": "give the birthday gift to members whose birthday is that day",
    "member-day": "send the member-day notice for that day if it is a member day",
    "tier-review": "move members down to the tier their qualifying value in the window up to then reaches",
}
# A firing more than this ahead of the clock acts on the future (e.g. expires points that are
# still valid); it needs --force. Catching up on a missed firing in the past does not.
AHEAD_WITHOUT_FORCE = timedelta(days=1)


def scheduler_run(
    job: str = typer.Argument(
        ..., help="expire-points, expiry-warnings, release-pending, birthday, member-day, tier-review"
    ),
    now: str | None = typer.Option(None, "--now", help="The firing time (ISO 8601 with offset); default: now."),
    force: bool = typer.Option(False, "--force", help="Enqueue a firing more than a day ahead of the clock."),
) -> None:
    from worker.broker import build_broker
    from worker.domain.firings import JOB_KEYS
    from worker.runtime import utc_now

    if job not in JOB_KEYS:
        fail(f"unknown job {job!r}; jobs: {', '.join(JOB_KEYS)}")
    at = _parse_now(now)
    ahead = at - utc_now()
    if ahead > AHEAD_WITHOUT_FORCE:
        said = f"{job} for {at.isoformat()} is {_days(ahead)} ahead of the clock: it will {JOB_EFFECTS[job]}"
        if not force:
            fail(f"{said}; pass --force to enqueue it", code=1)
        typer.echo(f"warning: {said}", err=True)
    broker = build_broker(settings())
    # The workers refuse a firing ahead of their clock unless it is marked as the operator's
    # own (worker.actors.jobs.FIRING_AHEAD_MAX); this command is that operator.
    broker.get_actor("plan_job").send(job, at.isoformat(), force=ahead > timedelta(0))
    typer.echo(f"enqueued {job} for {at.isoformat()}")


def _days(span: timedelta) -> str:
    days = span.total_seconds() / 86400
    return f"{days:.0f} days" if days >= 2 else f"{span.total_seconds() / 3600:.0f} hours"
