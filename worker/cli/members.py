"""member show / history / set-tier / tier-history / adjust / label / list, notifications list."""

from __future__ import annotations

import typer

from worker.cli import adjustments, notifications
from worker.cli.common import emit_json, fail, program, run, settings, timeline


def register(app: typer.Typer) -> None:
    member_app = typer.Typer(help="Look up members.")
    app.add_typer(member_app, name="member")
    member_app.command("show", help="Tier, points and the next tier of one member; exit 1 when unknown.")(member_show)
    member_app.command("history", help="The member's ledger entries with the rules behind each; exit 1 when unknown.")(
        member_history
    )
    member_app.command(
        "set-tier",
        help="Keep the member at least at TIER until --until (or without end); the lowest tier or --clear removes "
        "the floor. Exit 1 for an unknown member, 2 for an unknown tier.",
    )(member_set_tier)
    member_app.command(
        "tier-history", help="The member's tier changes with their reasons, and the floors set; exit 1 when unknown."
    )(member_tier_history)
    member_app.command(
        "erase",
        help="Erase the member's personal data (birthday, locale, identities) wherever it is stored; "
        "ledger amounts and their rules stay (docs/reliability.md).",
    )(member_erase)
    member_app.command(
        "link",
        help="Give the member an identity (KIND:VALUE, e.g. phone:+8613800000000); when another member has it, "
        "the two are merged into the older one. Exit 1 when refused.",
    )(member_link)
    member_app.command("unlink", help="Refused: a merge is not undone automatically (docs/identities.md).")(
        member_unlink
    )
    member_app.command("adjust", help=adjustments.HELP, context_settings=adjustments.CONTEXT)(adjustments.member_adjust)
    member_app.command(
        "label",
        help="Add and remove the member's segment labels (a member_update event from source cli, applied at once); "
        "exit 1 for an unknown member, 2 for a label out of form.",
    )(member_label)
    member_app.command(
        "list",
        help="Members by member id, of a tier and/or with a label (erased and merged-away members left out); "
        "one page, the next with --cursor.",
    )(member_list)
    notifications_app = typer.Typer(help="The notification outbox.")
    app.add_typer(notifications_app, name="notifications")
    notifications_app.command("list", help="Outbox rows with kind, status and the rendered text.")(notifications_list)
    notifications.register(notifications_app)


def _member_named(name: str, s) -> str:
    """The member id an argument names: a member id, or an identity as KIND:VALUE."""
    from worker.domain.identities import IdentityError
    from worker.services.identities import member_named

    try:
        found = run(lambda engine: member_named(engine, name), s)
    except IdentityError as error:
        fail(str(error))
    if found is None:
        fail(f"no member has this {name.partition(':')[0]}", code=1)
    return found


def member_show(
    member_id: str = typer.Argument(..., help="The member id, or an identity as KIND:VALUE (card:8800123)."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable JSON on standard output."),
) -> None:
    from worker.services.members import member_view

    s = settings()
    prog = program(s)
    member_id = _member_named(member_id, s)
    view = run(lambda engine: member_view(engine, prog, member_id), s)
    if view is None:
        fail(f"no member {member_id!r}", code=1)
    if as_json:
        emit_json(view)
        return
    for key, value in view.items():
        if key == "tier_floor" and value is not None:
            value = _floor_text(value, prog.zone)
        if key == "missions":
            lines = [_mission_text(mission, prog.zone) for mission in value] or ["none open"]
            typer.echo(f"{key:>20}: {lines[0]}")
            for line in lines[1:]:
                typer.echo(f"{'':>22}{line}")
            continue
        typer.echo(f"{key:>20}: {value}")


def _mission_text(mission: dict, zone) -> str:
    """`starter: 2 of 3 steps done, remaining first_review, until 2026-12-01 10:00` (program-local)."""
    from datetime import datetime

    text = f"{mission['rule']}: {mission['steps_done']} of {mission['steps_total']} steps done"
    text += f", remaining {', '.join(mission['remaining'])}"
    if mission["ends_at"]:
        text += f", until {datetime.fromisoformat(mission['ends_at']).astimezone(zone):%Y-%m-%d %H:%M}"
    return text


def _floor_text(floor: dict, zone) -> str:
    """`Gold until 2026-12-31 (set by alice on 2026-11-24: complaint handled)`, dates program-local."""
    from datetime import datetime

    until = f"until {floor['ends_on']}" if floor["ends_on"] else "without end"
    state = "" if floor["in_force"] else ", ended"
    when = f" on {datetime.fromisoformat(floor['set_at']).astimezone(zone).date()}" if floor["set_at"] else ""
    return f"{floor['tier']} {until}{state} (set by {floor['set_by'] or 'unknown'}{when}: {floor['reason'] or 'no reason recorded'})"


def member_set_tier(
    member_id: str = typer.Argument(..., help="The member id."),
    tier: str | None = typer.Argument(None, help="The lowest tier the member keeps."),
    until: str | None = typer.Option(
        None,
        "--until",
        help="The floor's last day, YYYY-MM-DD in the program's time zone (included); default: without end.",
    ),
    clear: bool = typer.Option(False, "--clear", help="Remove the member's floor."),
    reason: str = typer.Option(..., "--reason", help="Why; recorded with the floor and in tier history (required)."),
    by: str | None = typer.Option(None, "--by", help="Who sets it; default: $USER."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable JSON on standard output."),
) -> None:
    import os
    from datetime import date

    from worker.domain.engine import rules_of
    from worker.domain.engine.tiering import operator_floor
    from worker.domain.errors import InvalidFloor, UnknownMember
    from worker.runtime import utc_now
    from worker.services.floors import set_tier_floor

    if (tier is None) == (not clear):
        fail("give a tier, or --clear to remove the floor" if tier is None else "give a tier or --clear, not both")
    if clear and until is not None:
        fail("--until goes with a tier, not with --clear")
    ends_on = None
    if until is not None:
        try:
            ends_on = date.fromisoformat(until)
        except ValueError:
            fail(f"--until: {until!r} is not a date (YYYY-MM-DD)")
    s = settings()
    prog = program(s)
    rules = rules_of(prog)
    now = utc_now()
    try:
        floor = None if clear else operator_floor(rules, tier, ends_on, today=now.astimezone(rules.zone).date())
        done = run(
            lambda engine: set_tier_floor(
                engine, prog, member_id, floor, reason=reason, by=by or os.environ.get("USER") or "unknown", now=now
            ),
            s,
        )
    except InvalidFloor as error:
        fail(str(error))
    except UnknownMember as error:
        fail(str(error), code=1)
    if as_json:
        emit_json(done.as_json())
        return
    if done.floor is not None:
        until_text = f"until {done.floor['ends_on']}" if done.floor["ends_on"] else "without end"
        said = f"floor {done.floor['tier']} {until_text}, set by {done.floor['set_by']}"
    elif done.floor_id is not None:
        said = "floor removed"
    else:
        said = "no floor to remove"
    moved = f"tier {done.tier_before} -> {done.tier}" if done.tier != done.tier_before else f"tier stays {done.tier}"
    typer.echo(f"member {member_id}: {said}; {moved}")


def member_tier_history(
    member_id: str = typer.Argument(..., help="The member id."),
    limit: int = typer.Option(100, help="The latest N rows."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable JSON on standard output."),
) -> None:
    from datetime import datetime

    from worker.services.members import tier_history

    s = settings()
    prog = program(s)
    rows = run(lambda engine: tier_history(engine, member_id, limit), s)
    if rows is None:
        fail(f"no member {member_id!r}", code=1)
    if as_json:
        emit_json(rows)
        return
    for r in rows:
        at = datetime.fromisoformat(r["at"]).astimezone(prog.zone).strftime("%Y-%m-%d %H:%M")
        if r["kind"] == "change":
            event = f" ({r['event']['source']} {r['event']['event_id']})" if r["event"]["event_id"] else ""
            typer.echo(f"{at}  {r['from_tier']} -> {r['to_tier']}  {r['reason']}{event}")
        elif r["tier"] is None:
            typer.echo(f"{at}  floor removed by {r['set_by']}: {r['reason']}")
        else:
            until = f"until {r['ends_on']}" if r["ends_on"] else "without end"
            typer.echo(f"{at}  floor {r['tier']} {until} set by {r['set_by']}: {r['reason']}")


def member_history(
    member_id: str = typer.Argument(..., help="The member id, or an identity as KIND:VALUE."),
    limit: int = typer.Option(100, help="The latest N entries."),
    show_all: bool = typer.Option(False, "--all", help="Also the outcomes that moved no points, with their reason."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable JSON on standard output."),
) -> None:
    from datetime import datetime

    from worker.domain.explain import describe_rules
    from worker.services.members import history

    s = settings()
    prog = program(s)
    member_id = _member_named(member_id, s)
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
    member: str | None = typer.Option(None, "--member", help="Only this member."),
    status: str | None = typer.Option(None, "--status", help="pending, sending, sent, failed, dead or suppressed."),
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


def member_erase(
    member_id: str = typer.Argument(..., help="The member id."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable JSON on standard output."),
) -> None:
    from worker.runtime import utc_now
    from worker.services.erasure import erase_member

    done = run(lambda engine: erase_member(engine, member_id, utc_now()))
    if done is None:
        fail(f"no member {member_id!r}", code=1)
    if as_json:
        emit_json(done.__dict__)
        return
    state = "was already erased" if done.already_erased else "erased"
    typer.echo(
        f"member {member_id} {state} at {done.erased_at.isoformat()}; "
        f"{done.identities_removed} identities removed, {done.events_redacted} stored events, "
        f"{done.rejected_redacted} rejected events and {done.notifications_redacted} notifications redacted, "
        f"{done.api_answers_removed} API answers removed"
    )


def member_link(
    member_id: str = typer.Argument(..., help="The member that gets the identity."),
    identity: str = typer.Argument(..., help="KIND:VALUE, KIND one of phone, card, wechat_openid, email."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable JSON on standard output."),
) -> None:
    from worker import logs
    from worker.domain.identities import IdentityError, parse_identity
    from worker.runtime import utc_now
    from worker.services.identities import link_event
    from worker.services.intake import process

    logs.configure()  # to standard error: standard output is the command's answer
    try:
        kind, value = parse_identity(identity)
    except IdentityError as error:
        fail(str(error))
    s = settings()
    programs = timeline(s)
    now = utc_now()
    outcome = run(lambda engine: process(engine, programs, link_event(member_id, kind, value, now), now=now), s)
    if as_json:
        emit_json(
            {"status": outcome.status, "member_id": outcome.member_id, "reason": outcome.reason, **outcome.detail}
        )
    if outcome.status == "rejected":
        if not as_json:
            fail(outcome.reason or "refused", code=1)
        raise typer.Exit(1)
    if as_json:
        return
    detail = outcome.detail
    if outcome.status == "duplicate":
        typer.echo(f"member {member_id}: this link was applied before")
    elif detail.get("linked") == "merged":
        replayed = detail.get("re_evaluated") or {}
        typer.echo(
            f"member {detail['absorbed']} merged into {detail['survivor']} (the older); "
            f"{replayed.get('events', 0)} events re-evaluated, {outcome.points:+d} points corrected"
        )
    elif detail.get("linked") == "already_linked":
        typer.echo(f"member {outcome.member_id} already has this {kind}")
    else:
        typer.echo(f"member {outcome.member_id}: {kind} linked")


def member_unlink(
    member_id: str = typer.Argument(..., help="The member."),
    identity: str = typer.Argument(..., help="KIND:VALUE."),
) -> None:
    fail(
        "a merge is not undone automatically: the members' events and lots are one history now; an operator "
        "adjusts by hand (docs/identities.md)"
    )


def member_label(
    member_id: str = typer.Argument(..., help="The member id, or an identity as KIND:VALUE."),
    add: list[str] = typer.Option([], "--add", help="A label to add (repeatable), e.g. vip."),
    remove: list[str] = typer.Option([], "--remove", help="A label to remove (repeatable)."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable JSON on standard output."),
) -> None:
    from worker import logs
    from worker.domain.errors import UnknownMember
    from worker.domain.labels import LabelError
    from worker.runtime import utc_now
    from worker.services.segments import set_labels

    if not add and not remove:
        fail("give --add LABEL or --remove LABEL (each repeatable)")
    logs.configure()  # to standard error: standard output is the command's answer
    s = settings()
    programs = timeline(s)
    member_id = _member_named(member_id, s)
    now = utc_now()
    try:
        done = run(
            lambda engine: set_labels(
                engine, programs, member_id, now=now, source="cli", add=tuple(add), remove=tuple(remove)
            ),
            s,
        )
    except LabelError as error:
        fail(str(error))
    except UnknownMember as error:
        fail(str(error), code=1)
    if as_json:
        emit_json(done.as_json())
        return
    typer.echo(f"member {done.member_id}: labels {', '.join(done.labels) if done.labels else '(none)'}")


def member_list(
    tier: str | None = typer.Option(None, "--tier", help="Only members of this tier."),
    label: str | None = typer.Option(None, "--label", help="Only members with this label."),
    limit: int = typer.Option(100, "--limit", help="At most this many members (1-500)."),
    cursor: str | None = typer.Option(None, "--cursor", help="The next_cursor of the previous page."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable JSON on standard output."),
) -> None:
    from worker.domain.labels import LabelError
    from worker.services.segments import LIST_PAGE_MAX, list_members

    if not 1 <= limit <= LIST_PAGE_MAX:
        fail(f"--limit: must be from 1 to {LIST_PAGE_MAX}")
    s = settings()
    prog = program(s)
    tiers = [t.name for t in prog.tiers]
    if tier is not None and tier not in tiers:
        fail(f"--tier: {tier!r} is not a tier of the program ({', '.join(tiers)})")
    try:
        page = run(lambda engine: list_members(engine, tier=tier, label=label, cursor=cursor, limit=limit), s)
    except LabelError as error:
        fail(f"--{error}")
    if as_json:
        emit_json(page)
        return
    for m in page["members"]:
        labels = ",".join(m["labels"]) or "-"
        typer.echo(f"{m['member_id']}  {m['tier']:<10} {m['available_points']:>9} points  {labels}")
    if page["next_cursor"] is not None:
        typer.echo(f"more: loyalty member list ... --cursor {page['next_cursor']}", err=True)
