"""notifications dispatch / retry / check-templates (list is in worker.cli.members)."""

from __future__ import annotations

import asyncio

import typer

from worker.cli.common import emit_json, engine_for, fail, program, run, settings

# Pause between runs of `notifications dispatch --loop` when nothing was due.
LOOP_INTERVAL_S_DEFAULT = 2.0


def register(notifications_app: typer.Typer) -> None:
    notifications_app.command("dispatch", help="Deliver due notifications now (once, or --loop until stopped).")(
        notifications_dispatch
    )
    notifications_app.command("retry", help="Queue a failed or dead notification again (ID, or --failed for all).")(
        notifications_retry
    )
    notifications_app.command("check-templates", help="Load and check the notification templates.")(check_templates)


def _catalog(templates_dir: str | None):
    from worker.domain import messages

    try:
        catalog = messages.load_catalog(templates_dir)
    except messages.TemplateError as error:
        fail(str(error))
    messages.install_catalog(catalog)
    return catalog


def notifications_dispatch(
    loop: bool = typer.Option(False, "--loop", help="Keep dispatching until interrupted."),
    interval: float = typer.Option(LOOP_INTERVAL_S_DEFAULT, help="Seconds between runs with --loop."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable JSON on standard output."),
) -> None:
    from worker import logs
    from worker.outbox import dispatch
    from worker.outbox.channels import ChannelConfigError, open_channel
    from worker.runtime import utc_now

    logs.configure()
    s = settings()
    prog = program(s)
    catalog = _catalog(s.templates_dir)

    async def go():
        async with engine_for(s) as engine, open_channel(s, prog) as channel:
            total = dispatch.DispatchReport()
            while True:
                report = await dispatch.dispatch(engine, prog, channel, clock=utc_now, catalog=catalog)
                total.add(report)
                if not loop:
                    return total
                if report.claimed == 0:
                    await asyncio.sleep(interval)

    try:
        total = asyncio.run(go())
    except ChannelConfigError as error:
        fail(str(error))
    except KeyboardInterrupt:
        return
    if as_json:
        emit_json(total.as_dict())
    else:
        typer.echo(", ".join(f"{v} {k}" for k, v in total.as_dict().items()))


def notifications_retry(
    notification_id: int | None = typer.Argument(None, help="The notification to retry."),
    failed: bool = typer.Option(False, "--failed", help="Retry every failed and dead notification."),
) -> None:
    from worker.outbox.dispatch import retry

    if failed == (notification_id is not None):
        fail("give a notification ID or --failed (not both)")
    ids = run(lambda engine: retry(engine, None if failed else notification_id))
    if notification_id is not None and not ids:
        fail(f"notification {notification_id} is not failed or dead (or does not exist)", code=1)
    typer.echo(f"queued {len(ids)} notifications again" + (f": {', '.join(map(str, ids))}" if ids else ""))


def check_templates(
    directory: str | None = typer.Argument(
        None, help="Template directory (default: LOYALTY_TEMPLATES_DIR or built-in)."
    ),
) -> None:
    from worker.domain.messages import LOCALES

    s = settings()
    catalog = _catalog(directory or s.templates_dir)
    typer.echo(f"templates ok: {catalog.origin} ({', '.join(LOCALES)})")
