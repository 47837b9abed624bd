"""db upgrade, publish, worker, drain, audit, rejected."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import typer

from worker.cli.common import emit_json, fail, program_file, run, settings, timeline
from worker.services.intake import BATCH_EVENTS_MAX
from worker.stopping import DEFAULT_SHUTDOWN_TIMEOUT_S, SHUTDOWN_TIMEOUT_MIN_S


def register(app: typer.Typer) -> None:
    db_app = typer.Typer(help="Schema management.")
    app.add_typer(db_app, name="db")
    db_app.command("upgrade", help="Create or migrate the schema; safe to run twice.")(db_upgrade)
    app.command(
        help="Validate JSON Lines from FILE (or - for stdin) against the program in force and enqueue the valid events."
    )(publish)
    app.command(help="Run the dramatiq worker processes.")(worker)
    app.command(help="Process messages until the loyalty queues are empty, then exit.")(drain)
    app.command(help="Recompute every balance from entries and lots; exit 1 on any difference.")(audit)
    rejected_app = typer.Typer(help="Events that were rejected, with their reasons.")
    app.add_typer(rejected_app, name="rejected")
    rejected_app.command("list", help="Open rejected events, oldest first, with the reason naming the field.")(
        rejected_list
    )
    rejected_app.command("replay", help="Validate a rejected event again with the current program and process it.")(
        rejected_replay
    )


def db_upgrade() -> None:
    from db import migrate

    s = settings()
    revision = asyncio.run(migrate.upgrade(s.database_url))
    typer.echo(f"schema at revision(s) {revision}")


def publish(
    file: str = typer.Argument("-", help="JSON Lines file, or - for standard input."),
    batch: int = typer.Option(0, help=f"Send events in batch messages of up to this many (max {BATCH_EVENTS_MAX})."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Validate and report; enqueue nothing (no Redis needed)."),
) -> None:
    from worker.runtime import utc_now
    from worker.services.publish import publish_lines

    if batch < 0 or batch > BATCH_EVENTS_MAX:
        fail(f"--batch must be between 0 and {BATCH_EVENTS_MAX}")
    s = settings()
    prog = _program_for_publish(s)
    if dry_run:
        send_one = send_many = _Discard()
    else:
        from worker.broker import build_broker

        broker = build_broker(s)
        send_one, send_many = broker.get_actor("process_event"), broker.get_actor("process_batch")
    stream = sys.stdin if file == "-" else None
    try:
        handle = stream or Path(file).open(encoding="utf-8", errors="replace")
    except OSError as error:
        fail(f"{file}: {error.strerror}")
    with handle:
        report = publish_lines(handle, prog, utc_now(), send_one.send, send_many.send, batch)
    for number, reason in report.invalid:
        typer.echo(f"line {number}: {reason}", err=True)
    if dry_run:
        typer.echo(f"dry run: {report.accepted} valid events, {len(report.invalid)} invalid lines; nothing enqueued")
    else:
        typer.echo(
            f"published {report.accepted} events in {report.messages} messages; {len(report.invalid)} invalid lines"
        )
    if report.invalid:
        raise typer.Exit(1)


def _program_for_publish(s):
    """The programs the workers check events with: each event against the published version in
    force at its occurred_at, else the program file's. Without the database, the program
    file's, and a note says so (events are queued all the same; the workers check them again)."""
    from sqlalchemy.exc import DBAPIError

    from worker.preflight import describe_postgres

    try:
        return timeline(s)
    except (TimeoutError, OSError, DBAPIError) as error:
        problem = describe_postgres(error, s.database_url)
        if problem is None:
            raise
    typer.echo(
        f"note: the database could not be read ({problem}): events checked against "
        f"{s.program_file or 'the built-in program'}, not a published version",
        err=True,
    )
    return program_file(s)


class _Discard:
    """Stands in for an actor in a dry run: takes messages and sends them nowhere."""

    def send(self, *args) -> None:
        pass


def worker(
    processes: int = typer.Option(2, help="Worker processes."),
    # 32: with group commit the threads are mostly waiting for their group to commit, and
    # more of them in flight make larger groups (docs/performance.md, measured 8 to 64).
    threads: int = typer.Option(32, help="Worker threads per process."),
    shutdown_timeout: int = typer.Option(
        DEFAULT_SHUTDOWN_TIMEOUT_S,
        "--shutdown-timeout",
        min=SHUTDOWN_TIMEOUT_MIN_S,
        help="On SIGTERM, exit within this many seconds; messages not finished by then are redelivered.",
    ),
) -> None:
    from worker.config import metrics_host, metrics_port
    from worker.preflight import METRICS_PORT_HINT, PreflightError, check_all, check_port_free

    metrics_on = os.environ.get("LOYALTY_METRICS_PORT", "") != "0"
    # Refuse to start, before forking anything, when the workers could only fail messages,
    # or would run unwatched (the compose health check reads /metrics).
    try:
        check_all(settings())
        if metrics_on:
            try:
                port = metrics_port()
            except ValueError:
                raise PreflightError("LOYALTY_METRICS_PORT must be a port number, or 0", code=2) from None
            check_port_free(metrics_host(), port, "metrics port", METRICS_PORT_HINT)
    except PreflightError as error:
        fail(str(error), code=error.code)
    if metrics_on:
        import tempfile

        # Per-run directory for prometheus_client's multiprocess files, shared by this run's
        # worker processes and its /metrics process only (never by another worker on the host).
        metrics_dir = tempfile.mkdtemp(prefix="loyalty-metrics-")
        os.environ.update(PROMETHEUS_MULTIPROC_DIR=metrics_dir, dramatiq_prom_db=metrics_dir)
    # A fresh interpreter (same pid) forks the worker processes: this one has imported
    # prometheus_client before PROMETHEUS_MULTIPROC_DIR was set, and much else they do not need.
    args = [str(processes), str(threads), str(shutdown_timeout)]
    os.execv(sys.executable, [sys.executable, "-m", "worker.stopping", sys.argv[0], *args])


def drain(
    timeout: float = typer.Option(600, help="Give up after this many seconds."),
    threads: int = typer.Option(8, help="Worker threads."),
) -> None:
    from worker import logs
    from worker.broker import build_broker, name_worker
    from worker.drain import DrainTimeout
    from worker.drain import drain as drain_queues
    from worker.preflight import PreflightError, check_all

    logs.configure()
    s = settings()
    try:
        check_all(s)
    except PreflightError as error:
        fail(str(error), code=error.code)
    broker = build_broker(s)
    name_worker(broker)
    try:
        drain_queues(broker, timeout_s=timeout, threads=threads)
    except DrainTimeout as error:
        fail(f"timed out after {timeout:g}s with messages left: {error.left}", code=1)
    typer.echo("queues drained")


def audit(as_json: bool = typer.Option(False, "--json", help="Machine-readable output.")) -> None:
    from worker.services.audit import audit_all

    report = run(audit_all)
    if as_json:
        emit_json(
            {
                "members_checked": report.members_checked,
                "clean": report.clean,
                "differences": [d.__dict__ for d in report.differences],
            }
        )
    else:
        for difference in report.differences:
            typer.echo(str(difference))
        typer.echo(f"{report.members_checked} members checked, {len(report.differences)} differences")
    if not report.clean:
        raise typer.Exit(1)


def rejected_list(
    limit: int = typer.Option(100, help="At most this many rows."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable JSON on standard output."),
) -> None:
    from worker.services.rejected import list_rejected

    rows = run(lambda engine: list_rejected(engine, limit=limit))
    if as_json:
        emit_json(rows)
        return
    for r in rows:
        typer.echo(f"#{r['rejected_id']} {r['source'] or '-'}/{r['event_id'] or '-'}: {r['reason']}")


def rejected_replay(rejected_id: int = typer.Argument(..., help="Id from `rejected list`.")) -> None:
    from worker.runtime import utc_now
    from worker.services.rejected import NotReplayable, replay_rejected

    s = settings()
    programs = timeline(s)
    try:
        result = run(lambda engine: replay_rejected(engine, programs, rejected_id, now=utc_now()), s)
    except NotReplayable as error:
        fail(str(error), code=1)
    if result["status"] == "rejected":
        fail(f"#{rejected_id} rejected again: {result['reason']}", code=1)
    typer.echo(f"#{rejected_id} {result['status']}, {result['points']} points")
