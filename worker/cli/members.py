"""member show / history, notifications list."""

from __future__ import annotations

from typing import Optional

import typer

from worker.cli import notifications
from worker.cli.common import emit_json, fail, program, run, settings


def register(app: typer.Typer) -> None:
    member_app = typer.Typer(help="Look up members.")
    app.add_typer(member_app, name="member")
    member_app.command("show", help="Tier, points and the next tier of one member; exit 1 when unknown.")(member_show)
    member_app.command("history", help="The member's ledger entries with the rules behind each; exit 1 when unknown.")(member_history)
    member_app.command("erase", help="Erase the member's personal data; ledger amounts stay.")(member_erase)
    notifications_app = typer.Typer(help="The notification outbox.")
    app.add_typer(notifications_app, name="notifications")
    notifications_app.command("list", help="Outbox rows with kind, status and the rendered text.")(notifications_list)
    notifications.register(notifications_app)


def member_show(member_id: str = typer.Argument(..., help="The member id."), as_json: bool = typer.Option(False, "--json", help="Machine-readable JSON on standard output.")) -> None:
    from worker.services.members import member_view

    s = settings()
    prog = program(s)
    view = run(lambda engine: member_view(engine, prog, member_id), s)
    if view is None:
        fail(f"no member {member_id!r}", code=1)
    if as_json:
        emit_json(view)
        return
    for key, value in view.items():
        typer.echo(f"{key:>20}: {value}")


def member_history(
    member_id: str = typer.Argument(..., help="The member id."),
    limit: int = typer.Option(100, help="The latest N entries."),
    show_all: bool = typer.Option(
        False, "--all", help="Also the outcomes that moved no points, with their reason."
    ),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable JSON on standard output."),
) -> None:
    from datetime import datetime

    from worker.domain.explain import describe_rules
    from worker.services.members import history

    s = settings()
    prog = program(s)
    entries = run(lambda engine: history(engine, member_id, limit, zero_point=show_all), s)
    if entries is None:
        fail(f"no member {member_id!r}", code=1)
    if as_json:
        emit_json(entries)
        return
    for e in entries:
        # Program-local time: the days the rules (member day, check-in streaks) count in.
        at = datetime.fromisoformat(e["occurred_at"]).astimezone(prog.zone).strftime("%Y-%m-%d %H:%M")
        why = describe_rules(e["rules"]) if e["kind"] != "none" else f"{e['note']} ({e['status']})"
        typer.echo(f"{at}  {e['kind']:<8} {e['points']:>+7}  {e['event']['type'] or '':<10} {why}".rstrip())


def notifications_list(
    member: Optional[str] = typer.Option(None, "--member", help="Only this member."),
    status: Optional[str] = typer.Option(None, "--status", help="pending, sending, sent, failed, dead or suppressed."),
    limit: int = typer.Option(100, help="At most this many rows."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable JSON on standard output."),
) -> None:
    from worker.domain.delivery import STATUSES
    from worker.services.members import notification_list

    if status is not None and status not in STATUSES:
        fail(f"--status must be one of {', '.join(STATUSES)}")
    s = settings()
    prog = program(s)
    rows = run(lambda engine: notification_list(engine, prog, member, status, limit), s)
    if as_json:
        emit_json(rows)
        return
    for r in rows:
        error = f"  [{r['last_error']}]" if r.get("last_error") and r["status"] != "sent" else ""
        typer.echo(f"#{r['notification_id']} {r['member_id']} {r['kind']:<14} {r['status']:<8} {r['text']}{error}")


def member_erase(member_id: str = typer.Argument(..., help="The member id."), as_json: bool = typer.Option(False, "--json", help="Machine-readable JSON on standard output.")) -> None:
    from worker.runtime import utc_now
    from worker.services.erasure import erase_member

    done = run(lambda engine: erase_member(engine, member_id, utc_now()))
    if done is None:
        fail(f"no member {member_id!r}", code=1)
    if as_json:
        emit_json(done.__dict__)
        return
    state = "was already erased" if done.already_erased else "erased"
    typer.echo(f"member {member_id} {state} at {done.erased_at.isoformat()}; "
               f"{done.identities_removed} identities removed, {done.rejected_redacted} rejected events redacted")
