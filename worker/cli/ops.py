"""Operations: dead letters, queue and backlog stats, program reports, the dashboard."""

from __future__ import annotations

import typer

from worker.cli.common import emit_json, fail, run, settings


def register(app: typer.Typer) -> None:
    dlq_app = typer.Typer(help="Dead-lettered broker messages (retries exhausted).")
    app.add_typer(dlq_app, name="dlq")
    dlq_app.command("list", help="List dead-lettered messages.")(dlq_list)
    dlq_app.command("replay", help="Move dead-lettered messages back to their queue (--all, or one ID).")(dlq_replay)
    app.command(help="Queue depths (ready, in flight, delayed, dead), rejected, outbox backlog, lag.")(stats)
    app.command(help="Serve the operations dashboard (password from LOYALTY_DASHBOARD_PASSWORD).")(dashboard)
    app.command(help="Points liability, breakage, redemption rate, tiers and earn by source, for a date range.")(report)


def _redis(s):
    import redis

    return redis.Redis.from_url(s.redis_url)


def dlq_list(as_json: bool = typer.Option(False, "--json", help="Machine-readable output.")) -> None:
    from worker.actors import queue_names
    from worker.services import dlq

    s = settings()
    rows = dlq.list_dead(_redis(s), s.namespace, queue_names())
    if as_json:
        emit_json(rows)
        return
    for r in rows:
        typer.echo(
            f"{r['id']} {r['queue']} {r['actor']} event {r['event_id'] or '-'} dead {r['dead_at']}: {r['error'] or '-'}"
        )
    typer.echo(f"{len(rows)} dead messages")


def dlq_replay(
    message: str | None = typer.Argument(None, help="Dead message id (from `dlq list`)."),
    all_: bool = typer.Option(False, "--all", help="Replay every dead message."),
) -> None:
    from worker.actors import queue_names
    from worker.broker import build_broker
    from worker.services import dlq

    if bool(message) == all_:
        fail("give one message ID or --all")
    s = settings()
    broker = build_broker(s)
    replayed = dlq.replay(broker, _redis(s), s.namespace, queue_names(), only_id=message)
    if message and not replayed:
        fail(f"no dead message {message}", code=1)
    for r in replayed:
        typer.echo(f"replayed {r['id']} to {r['queue']} ({r['actor']})")
    typer.echo(f"{len(replayed)} messages replayed")


def stats(as_json: bool = typer.Option(False, "--json", help="Machine-readable output.")) -> None:
    from worker.actors import queue_names
    from worker.domain.units import human_duration
    from worker.services import stats as stats_service

    s = settings()
    data = run(lambda engine: stats_service.collect(engine, _redis(s), s.namespace, queue_names()), s)
    if as_json:
        emit_json(data)
        return
    for queue, q in data["queues"].items():
        typer.echo(
            f"queue {queue}: ready {q['ready']}, in flight {q['in_flight']}, delayed {q['delayed']}, dead {q['dead']}"
        )
    typer.echo(f"rejected open: {data['rejected_open']}")
    typer.echo("outbox: " + (", ".join(f"{k} {v}" for k, v in data["outbox"].items()) or "empty"))
    lag = data["lag"]
    if lag["events"]:
        typer.echo(
            f"lag over {lag['window_minutes']} min: {lag['events']} events, "
            f"avg {human_duration(lag['avg_seconds'])}, max {human_duration(lag['max_seconds'])}"
        )
    for w in data["workers"]:
        typer.echo(
            f"worker {w['host']} pid {w['pid']}: last heartbeat {w['last_heartbeat_at']} "
            f"({human_duration(w['age_seconds'])} ago)"
        )
    if not data["workers"]:
        typer.echo("workers: none has sent a heartbeat")


def _date(value: str | None, name: str):
    from datetime import date

    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        fail(f"{name}: {value!r} is not a date (YYYY-MM-DD)")


def report(
    date_from: str | None = typer.Option(None, "--from", help="First day (YYYY-MM-DD, program time zone)."),
    date_to: str | None = typer.Option(None, "--to", help="Last day, included."),
    html: str | None = typer.Option(None, "--html", help="Also write a self-contained HTML page here."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    from pathlib import Path

    from worker.cli.common import program
    from worker.runtime import utc_now
    from worker.services.report import build_report
    from worker.web.report_html import html_report, text_report

    start, end = _date(date_from, "--from"), _date(date_to, "--to")
    if start and end and end < start:
        fail("--to is before --from")
    s = settings()
    prog = program(s)
    result = run(lambda engine: build_report(engine, prog, start, end), s)
    if as_json:
        emit_json(result.as_json())
    else:
        typer.echo(text_report(result))
    if html:
        Path(html).write_text(html_report(result, utc_now().strftime("%Y-%m-%d %H:%M UTC")), encoding="utf-8")
        typer.echo(f"wrote {html}", err=as_json)


def dashboard(
    host: str = typer.Option("127.0.0.1", help="Address to bind; localhost unless told otherwise."),
    port: int = typer.Option(8089, help="Port to listen on."),
) -> None:
    import os

    from worker import logs
    from worker.preflight import PreflightError, bind_port, check_servers, check_urls
    from worker.web.dashboard import bind, serve

    password = os.environ.get("LOYALTY_DASHBOARD_PASSWORD", "")
    if not password:
        fail("set LOYALTY_DASHBOARD_PASSWORD: the dashboard does not start without a password")
    logs.configure()
    s = settings()
    try:
        check_urls(s)
        server = bind_port(port, lambda: bind(s, password, host, port))
        check_servers(s)
    except PreflightError as error:
        fail(str(error), code=error.code)
    serve(server)
